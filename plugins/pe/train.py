#!/usr/bin/python3
"""Trains the PE reference model (a small 3D U-Net) on aihub-phantom CTPAs and exports TorchScript.

    /usr/bin/python3 plugins/pe/train.py [--phantom build/bin/aihub-phantom] [--cache /tmp/aihub-pe-cache]
        [--init STAGE1.pt]

Three stages. Stage 1 (1800 steps from random weights, every training pair equally often, one-cycle LR to 3e-3).
Stage 2 fine-tunes it (1000 steps, one-cycle LR to 1e-3): pairs drawn by their clot's branch (small lobar clots
more often) and a tenth of the patches anywhere in the volume (stage 1 alone called the table under the patient
lumen, which doubled the lumen volume and halved the clot burden). Stage 3 (600 steps, constant LR 5e-4, sampled
as stage 2) adds a per-patch Dice term, so the small right middle lobar clots weigh as much as the large ones
(see PATCH_DICE). --init STAGE1.pt skips stage 1 and starts stage 2 from that model; each stage seeds its own
generators, so a stage continues a loaded model exactly as it continues a fresh one.
Reproducible: fixed seeds (torch, numpy), 1 thread (the machine is shared), deterministic algorithms, a fixed
number of steps. Data generation takes about 7 minutes once (cached), then about 20 minutes of training
(3400 steps at ~0.35 s on one core) plus a minute of validation.
Writes plugins/pe/model/pe.pt and plugins/pe/model/MODEL_VERSION.

Seeds (never overlap):
  training    3000-3079  each seed: one study with an embolus (branch = BRANCHES[seed % 8]) and the same seed
                         without; size by (seed // 8) % 4: 512x512x200, 256x256x128, 256x256x64, 128x128x64
  validation  4000-4023  drawn the same way; chooses the operating point; its metrics are printed at the end
  held-out    60000-     only bench_accuracy.py uses these
Preprocessing and classes: see pedata.py (the C++ plugin repeats the preprocessing).
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pedata  # noqa: E402

MODEL_VERSION = "pe-ref-2026.11.3"
TRAIN_SEEDS = range(3000, 3080)
VALIDATION_SEEDS = range(4000, 4024)
SIZES = [(512, 200), (256, 128), (256, 64), (128, 64)]
TOP_K = 8               # presence score: mean of the 8 highest clot probabilities
VOXEL_THRESHOLD = 0.5   # a model-grid voxel is clot (components, side, region) at p_clot >= 0.5
VOLUME_FLOOR = 0.2      # volumes sum p over voxels with p >= 0.2 (soft edges count by their fraction)
STEPS = 1800            # stage 1: from random weights
LR = 3e-3
FINE_STEPS = 1000       # stage 2: fine-tuning the stage-1 model
FINE_LR = 1e-3
ANYWHERE = 0.1          # stage 2: share of patches placed anywhere in the volume
# Stage 2 draws a training pair by its clot's branch: the small lobar clots (the right middle lobar artery's are
# 0.2-0.5 mL, a handful of 2.8 mm cells) were missed when every pair came equally often.
BRANCH_WEIGHT = {"main": 1.0, "right": 1.0, "left": 1.0, "right_upper_lobar": 1.5, "right_middle_lobar": 3.0,
                 "right_lower_lobar": 1.5, "left_upper_lobar": 1.5, "left_lower_lobar": 1.5}
FINAL_STEPS = 600       # stage 3: per-patch Dice, constant LR
FINAL_LR = 5e-4
# Stage 3's Dice term is half the batch's soft Dice (dominated by the large central clots) and half the mean soft
# Dice of the patches that hold clot, so a right middle lobar clot of a dozen cells counts as much as a saddle
# embolus of hundreds. Without it the network read those small clots as the artery's lumen (it had learnt where the
# artery runs, and a 5 mm artery's partial-volume edge cells are as dark as clot).
PATCH_DICE = 0.5
BATCH = 4
PATCH = (24, 48, 48)
CLOT_WEIGHT = 20.0


def block(cin, cout):
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv3d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class PeUNet(nn.Module):
    """Input [N, 4, S, H, W] (S, H, W multiples of 4), output class probabilities [N, 7, S, H, W] (pedata.CLASSES).
    Pools isotropically: the model grid is 2.8 x 2.8 x 3.1 mm."""

    def __init__(self):
        super().__init__()
        self.enc1 = block(pedata.CHANNELS, 8)
        self.enc2 = block(8, 16)
        self.mid = block(16, 32)
        self.pool = nn.MaxPool3d(2)
        self.up2 = nn.ConvTranspose3d(32, 16, 2, stride=2)
        self.dec2 = block(32, 16)
        self.up1 = nn.ConvTranspose3d(16, 8, 2, stride=2)
        self.dec1 = block(16, 8)
        self.head = nn.Conv3d(8, len(pedata.CLASSES), 1)

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=1)

    def logits(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


def plan(seed):
    return pedata.BRANCHES[seed % 8], SIZES[(seed // 8) % 4]


def cell_z_mm(slices, dz):
    extent = slices * dz
    return extent / max(1, int(np.floor(extent / pedata.CELL_Z_MM + 0.5)))


def load_pair(phantom, cache, seed):
    """(negative, positive) dicts with x [4,S,G,G] float32, lumen/clot fractions [S,G,G], truth values."""
    branch, (size, slices) = plan(seed)
    path = os.path.join(cache, f"s{seed}-{branch}-{size}-{slices}-c{pedata.CHANNELS}.npz")
    if not os.path.exists(path):
        work = os.path.join(cache, f"work-{seed}")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        pos_dir = pedata.generate(phantom, work, seed, branch, size, slices, os.path.join(work, "pos.raw"))
        neg_dir = pedata.generate(phantom, work, seed, None, size, slices, os.path.join(work, "neg.raw"))
        pos_hu, dz, _ = pedata.read_series(pos_dir)
        neg_hu, _, _ = pedata.read_series(neg_dir)
        truth = pedata.load_truth(pos_dir)
        lumen_p, clot_p = pedata.labels(pedata.read_mask(os.path.join(work, "pos.raw")), dz)
        lumen_n, _ = pedata.labels(pedata.read_mask(os.path.join(work, "neg.raw")), dz)
        vox_ml = (360.0 / size) ** 2 * dz / 1000.0
        mask = pedata.read_mask(os.path.join(work, "pos.raw"))
        np.savez_compressed(path, xp=pedata.preprocess(pos_hu, dz), xn=pedata.preprocess(neg_hu, dz),
                            lp=lumen_p, cp=clot_p, ln=lumen_n, volume_ml=truth["embolus"]["volume_ml"],
                            lumen_ml=float((mask == 2).sum()) * vox_ml, side=truth["embolus"]["side"],
                            cell_ml=(360.0 / pedata.GRID) ** 2 * cell_z_mm(pos_hu.shape[0], dz) / 1000.0)
        shutil.rmtree(work)
    z = np.load(path)
    common = {"seed": seed, "branch": branch, "size": size, "cell_ml": float(z["cell_ml"])}
    neg = dict(common, x=z["xn"], lumen=z["ln"], clot=np.zeros_like(z["cp"]), label=0, volume_ml=0.0,
               lumen_ml=float(z["lumen_ml"]), cls=0, side="none")
    pos = dict(common, x=z["xp"], lumen=z["lp"], clot=z["cp"], label=1, volume_ml=float(z["volume_ml"]),
               lumen_ml=float(z["lumen_ml"]), cls=pedata.clot_class(branch), side=str(z["side"]))
    return [neg, pos]


def target(study, sl):
    """Soft class targets [7, ...] for a slice tuple of the study's grid."""
    lumen, clot = study["lumen"][sl], study["clot"][sl]
    t = np.zeros((len(pedata.CLASSES),) + lumen.shape, dtype=np.float32)
    t[1] = lumen
    if study["cls"]:
        t[study["cls"]] = clot
    t[0] = np.clip(1 - lumen - clot, 0, 1)
    return t


def sample_patch(study, partner, rng, anywhere=0.0):
    """A patch and its targets; `anywhere` is the share of patches placed anywhere in the volume (stage 2)."""
    s, h, w = study["lumen"].shape
    ps, ph, pw = PATCH
    u = rng.random()
    if study["label"] == 1 and u < 0.5:
        idx = np.argwhere(study["clot"] > 0.2)
        k, r, c = idx[rng.integers(len(idx))] + rng.integers(-8, 9, size=3)
    elif study["label"] == 0 and u < 0.5:  # where the partner has its clot: normal lumen, the hard negative
        idx = np.argwhere(partner["clot"] > 0.2)
        k, r, c = idx[rng.integers(len(idx))] + rng.integers(-8, 9, size=3)
    elif u < 0.8 - anywhere / 2:  # anywhere along the arteries
        idx = np.argwhere(study["lumen"] > 0.5)
        k, r, c = idx[rng.integers(len(idx))]
    elif u < 1.0 - anywhere:  # anywhere in the body (heart chambers and veins are the hard negatives there)
        idx = np.argwhere(study["x"][0] > 0.05)
        k, r, c = idx[rng.integers(len(idx))]
    else:  # anywhere at all: stage 1 took the table under the patient (about 120 HU, outside the body) for lumen
        k, r, c = rng.integers(s), rng.integers(h), rng.integers(w)
    k0 = int(np.clip(k - ps // 2, 0, s - ps))
    r0 = int(np.clip(r - ph // 2, 0, h - ph))
    c0 = int(np.clip(c - pw // 2, 0, w - pw))
    sl = (slice(k0, k0 + ps), slice(r0, r0 + ph), slice(c0, c0 + pw))
    return np.ascontiguousarray(study["x"][(slice(None),) + sl]), target(study, sl)


def predict(model, x):
    """Class probabilities for a whole study, padded to multiples of 4 as the C++ plugin does."""
    s, h, w = x.shape[1:]
    pad = (-s) % 4
    xt = torch.from_numpy(x)[None]
    if pad:
        xt = F.pad(xt, (0, 0, 0, 0, 0, pad), mode="replicate")
    with torch.no_grad():
        return model(xt)[0, :, :s].numpy()


def analyze(prob, cell_ml):
    """Score, clot volume, lumen volume, class masses: the same rules as pe_model.cpp."""
    clot = prob[2:].sum(0)
    flat = clot.ravel()
    score = float(np.sort(flat[np.argpartition(-flat, TOP_K - 1)[:TOP_K]]).mean())
    keep = clot >= VOLUME_FLOOR
    volume = float(clot[keep].sum()) * cell_ml
    lumen = float(prob[1][prob[1] >= VOLUME_FLOOR].sum()) * cell_ml
    masses = [float(prob[c][keep].sum()) for c in range(2, len(pedata.CLASSES))]
    return score, volume, lumen, masses


def auc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l == 1]
    neg = [s for s, l in zip(scores, labels) if l == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def evaluate(model, studies, threshold=None):
    rows = []
    for st in studies:
        t0 = time.time()
        prob = predict(model, st["x"])
        rows.append(analyze(prob, st["cell_ml"]) + (st, time.time() - t0))
    scores = [r[0] for r in rows]
    labels = [r[4]["label"] for r in rows]
    if threshold is None:
        # Best Youden J over cuts midway between neighbouring scores; among equal J the cut in the widest gap, so
        # the point does not sit on one validation study's score (midway between the classes when separable).
        cuts = sorted(set(scores))
        cands = [(0.5 * (a + b), b - a) for a, b in zip(cuts, cuts[1:])] or [(cuts[0], 0.0)]
        npos, nneg = max(1, sum(labels)), max(1, labels.count(0))

        def youden(t):
            return (sum(s >= t for s, l in zip(scores, labels) if l) / npos -
                    sum(s >= t for s, l in zip(scores, labels) if not l) / nneg)
        threshold = max(cands, key=lambda c: (round(youden(c[0]), 9), c[1]))[0]
    tp = sum(s >= threshold and l == 1 for s, l in zip(scores, labels))
    tn = sum(s < threshold and l == 0 for s, l in zip(scores, labels))
    pos = [r for r in rows if r[4]["label"] == 1]
    vol_err = [abs(r[1] - r[4]["volume_ml"]) / r[4]["volume_ml"] for r in pos]
    burden_err = []
    site_ok = 0
    for r in pos:
        truth_burden = r[4]["volume_ml"] / (r[4]["volume_ml"] + r[4]["lumen_ml"])
        burden = r[1] / max(1e-9, r[1] + r[2])
        burden_err.append(abs(burden - truth_burden) / truth_burden)
        site_ok += int(2 + int(np.argmax(r[3])) == r[4]["cls"])
    return {
        "threshold": threshold, "auc": auc(scores, labels), "sensitivity": tp / max(1, sum(labels)),
        "specificity": tn / max(1, labels.count(0)), "volume_error_median": float(np.median(vol_err)),
        "volume_error_max": float(np.max(vol_err)), "burden_error_median": float(np.median(burden_err)),
        "dominant_class_correct": f"{site_ok}/{len(pos)}",
        "lumen_ml_median": float(np.median([r[2] for r in rows])),
        "seconds_per_study": float(np.median([r[5] for r in rows])),
        "neg_score_max": max(s for s, l in zip(scores, labels) if l == 0),
        "pos_score_min": min(s for s, l in zip(scores, labels) if l == 1),
    }


def train_stage(model, train, rng, steps, lr, pair_weight, anywhere, one_cycle=True, patch_dice=0.0):
    """Adam for `steps` batches, with a one-cycle LR to `lr` or a constant `lr`. pair_weight None: every pair
    equally often. patch_dice: share of the per-patch soft Dice (mean over patches holding clot) in the Dice term;
    the rest is the batch's soft Dice."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15) if one_cycle \
        else None
    pair_p = None if pair_weight is None else pair_weight / pair_weight.sum()
    t0 = time.time()
    for step in range(steps):
        batch = []
        for _ in range(BATCH):
            pair = train[rng.integers(len(train)) if pair_p is None else rng.choice(len(train), p=pair_p)]
            # Half positives, half the same chest without the clot: clot-centred patches and patches at the same
            # place in the clot-free twin come equally often, so position alone never predicts a clot.
            i = int(rng.random() < 0.5)
            batch.append(sample_patch(pair[i], pair[1 - i], rng, anywhere))
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]))
        z = model.logits(x)
        logp = torch.log_softmax(z, 1)
        clot_t = y[:, 2:].sum(1)
        weight = 1 + CLOT_WEIGHT * clot_t
        ce = (-(y * logp).sum(1) * weight).mean()
        clot_p = torch.exp(logp[:, 2:]).sum(1)
        dice = 1 - (2 * (clot_p * clot_t).sum() + 1) / (clot_p.sum() + clot_t.sum() + 1)
        if patch_dice > 0:
            per_patch = 1 - (2 * (clot_p * clot_t).sum((1, 2, 3)) + 1) / (
                clot_p.sum((1, 2, 3)) + clot_t.sum((1, 2, 3)) + 1)
            with_clot = clot_t.sum((1, 2, 3)) > 0.5
            patch_term = per_patch[with_clot].mean() if with_clot.any() else per_patch.mean() * 0
            dice = patch_dice * patch_term + (1 - patch_dice) * dice
        loss = ce + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} (ce {ce.item():.4f} dice {dice.item():.3f}) "
                  f"({time.time() - t0:.0f} s)", flush=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantom", default=os.path.join(here, "..", "..", "build", "bin", "aihub-phantom"))
    ap.add_argument("--cache", default="/tmp/aihub-pe-cache")
    ap.add_argument("--out", default=os.path.join(here, "model"))
    ap.add_argument("--steps", type=int, default=STEPS, help="stage-1 steps")
    ap.add_argument("--fine-steps", type=int, default=FINE_STEPS, help="stage-2 steps")
    ap.add_argument("--final-steps", type=int, default=FINAL_STEPS, help="stage-3 steps")
    ap.add_argument("--init", help="start stage 2 from this stage-1 model (TorchScript) instead of training stage 1")
    args = ap.parse_args()

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(0)
    os.makedirs(args.cache, exist_ok=True)

    t0 = time.time()
    train = [load_pair(args.phantom, args.cache, seed) for seed in TRAIN_SEEDS]
    val = [st for seed in VALIDATION_SEEDS for st in load_pair(args.phantom, args.cache, seed)]
    print(f"data: {2 * len(train)} training, {len(val)} validation studies ({time.time() - t0:.0f} s)", flush=True)

    model = PeUNet()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: PeUNet, {params} parameters", flush=True)
    if args.init:
        # The stage-1 model (pe-ref-2026.11 was exactly that); its traced parameters keep the module's names.
        model.load_state_dict(torch.jit.load(args.init).state_dict())
        print(f"stage 1: from {args.init}", flush=True)
    else:
        train_stage(model, train, rng, args.steps, LR, None, 0.0)
    # Stage 2 seeds its own generators, so it continues a loaded stage-1 model exactly as it continues a fresh one.
    torch.manual_seed(1)
    branch_weight = np.array([BRANCH_WEIGHT[pair[1]["branch"]] for pair in train])
    train_stage(model, train, np.random.default_rng(1), args.fine_steps, FINE_LR, branch_weight, ANYWHERE)
    # Stage 3: the small lobar clots (see PATCH_DICE), sampled as stage 2, at a constant LR.
    torch.manual_seed(5)
    train_stage(model, train, np.random.default_rng(7), args.final_steps, FINAL_LR, branch_weight, ANYWHERE,
                one_cycle=False, patch_dice=PATCH_DICE)

    export(model, val, args.out)


def export(model, val, out):
    """Chooses the operating point on validation, prints the validation metrics, writes pe.pt and MODEL_VERSION."""
    model.eval()
    m = evaluate(model, val)
    threshold = round(m["threshold"], 4)
    print("validation (seeds %d-%d): %s" % (VALIDATION_SEEDS[0], VALIDATION_SEEDS[-1], json.dumps(m, indent=1)))

    os.makedirs(out, exist_ok=True)
    meta = {"model_version": MODEL_VERSION, "grid": pedata.GRID, "cell_z_mm": pedata.CELL_Z_MM,
            "vessel_lo_hu": pedata.VESSEL_LO_HU, "vessel_hi_hu": pedata.VESSEL_HI_HU, "lung_hu": pedata.LUNG_HU,
            "clot_lo_hu": pedata.CLOT_LO_HU, "clot_hi_hu": pedata.CLOT_HI_HU, "contrast_hu": pedata.CONTRAST_HU,
            "channels": pedata.CHANNELS,
            "classes": len(pedata.CLASSES), "threshold": threshold, "top_k": TOP_K,
            "voxel_threshold": VOXEL_THRESHOLD, "volume_floor": VOLUME_FLOOR,
            "train_seeds": [TRAIN_SEEDS[0], TRAIN_SEEDS[-1]],
            "validation_seeds": [VALIDATION_SEEDS[0], VALIDATION_SEEDS[-1]], "parameters": sum(p.numel() for p in model.parameters()),
            "validation": {k: m[k] for k in ("auc", "sensitivity", "specificity", "volume_error_median")}}
    traced = torch.jit.trace(model, torch.zeros(1, pedata.CHANNELS, 16, pedata.GRID, pedata.GRID))
    path = os.path.join(out, "pe.pt")
    torch.jit.save(traced, path, _extra_files={"aihub_model.json": json.dumps(meta, sort_keys=True)})
    with open(os.path.join(out, "MODEL_VERSION"), "w") as f:
        f.write(MODEL_VERSION + "\n")
    loaded = torch.jit.load(path)
    x = torch.from_numpy(val[1]["x"][:, :32])[None]
    with torch.no_grad():
        diff = (loaded(x) - model(x)).abs().max().item()
    print(f"exported {path} ({os.path.getsize(path)} bytes), max |scripted - eager| = {diff:.2e}")
    print(f"operating point: presence when the mean of the top {TOP_K} clot probabilities >= {threshold}")


if __name__ == "__main__":
    # TorchScript writes some module constants in set order, which follows Python's per-process string hashing: pin
    # the hash seed so the exported file is byte-identical from run to run (the weights are deterministic anyway).
    # (Kept down here: the export records the source lines of the model code, which must not move.)
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    main()
