#!/usr/bin/python3
"""Trains the ICH reference model (a tiny 3D U-Net) on aihub-phantom head CTs and exports TorchScript.

    /usr/bin/python3 plugins/ich/train.py [--phantom build/bin/aihub-phantom] [--cache /tmp/aihub-ich-cache]

Reproducible: fixed seeds (torch, numpy), one thread, deterministic algorithms, a fixed number of steps.
Runs in about 15 minutes on one CPU core (plus about 5 minutes of phantom generation on the first run). Writes plugins/ich/model/ich.pt and plugins/ich/model/MODEL_VERSION.

Seeds (never overlap):
  training    1000-1095  each seed: one study without and one with a hemorrhage (type cycles, side alternates)
  validation  2000-2035  chooses the operating point; its metrics are printed at the end
  held-out    50000-     only bench_accuracy.py uses these
Preprocessing: see ichdata.py (the C++ plugin repeats it exactly).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichdata  # noqa: E402

MODEL_VERSION = "ich-ref-2026.11.2"
TRAIN_SEEDS = range(1000, 1096)
VALIDATION_SEEDS = range(2000, 2036)
TOP_K = 16               # presence score: mean of the 16 highest voxel probabilities
VOXEL_THRESHOLD = 0.5    # a model-grid voxel counts as blood (region, laterality) at p >= 0.5
# Volume estimators the validation set chooses from (the one with the lowest worst-type median error):
#   ("count", t)  voxels with p >= t, each a whole cell
#   ("soft", t)   sum of p over voxels with p >= t (a cell half filled with blood scores about 0.5, counts half)
VOLUME_ESTIMATORS = [("count", t) for t in (0.3, 0.4, 0.5)] + [("soft", t) for t in (0.05, 0.1, 0.2, 0.3)]
SAH_WEIGHT = 2.0         # subarachnoid studies are drawn twice as often: thin blood, the hardest to measure
STEPS = 600
LR = 2e-3
BATCH = 6
PATCH = (16, 64, 64)


def block(cin, cout):
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv3d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """Input [N, 3, S, H, W] (H, W multiples of 4; any S), output blood probability [N, 1, S, H, W].
    Pools in-plane only: 5 mm slices are already coarse along z."""

    def __init__(self):
        super().__init__()
        self.enc1 = block(ichdata.CHANNELS, 8)
        self.enc2 = block(8, 16)
        self.mid = block(16, 24)
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.up2 = nn.ConvTranspose3d(24, 16, (1, 2, 2), stride=(1, 2, 2))
        self.dec2 = block(32, 16)
        self.up1 = nn.ConvTranspose3d(16, 8, (1, 2, 2), stride=(1, 2, 2))
        self.dec1 = block(16, 8)
        self.head = nn.Conv3d(8, 1, 1)
        nn.init.constant_(self.head.bias, -4.0)  # start near the background prior (blood is rare)

    def forward(self, x):
        return torch.sigmoid(self.logits(x))

    def logits(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


def study_key(seed, hemorrhage, side, size):
    return f"s{seed}-{hemorrhage}-{side}-{size}-c{ichdata.CHANNELS}"


def plan(seed):
    """The study pair drawn for a seed: (hemorrhage type, side, image size)."""
    return ichdata.TYPES[seed % 3], ("left" if (seed // 3) % 2 == 0 else "right"), (512 if seed % 2 == 0 else 256)


def load_pair(phantom, cache, seed):
    """(negative, positive) dicts with x [3,S,128,128], y [S,128,128] (blood fraction per model voxel), truth."""
    hemorrhage, side, size = plan(seed)
    path = os.path.join(cache, study_key(seed, hemorrhage, side, size) + ".npz")
    if not os.path.exists(path):
        work = os.path.join(cache, "work")
        os.makedirs(work, exist_ok=True)
        pos_dir = ichdata.generate(phantom, work, seed, hemorrhage, side, size)
        neg_dir = ichdata.generate(phantom, work, seed, "none", side, size)
        pos_hu, neg_hu = ichdata.read_series(pos_dir), ichdata.read_series(neg_dir)
        truth = ichdata.load_truth(pos_dir)
        mask = ichdata.blood_mask(pos_hu, neg_hu, truth)
        np.savez_compressed(path, xp=ichdata.preprocess(pos_hu), xn=ichdata.preprocess(neg_hu),
                            y=ichdata.pool_mask(mask), volume_ml=truth["hemorrhage"]["volume_ml"])
        for d in (pos_dir, neg_dir):
            for n in os.listdir(d):
                os.remove(os.path.join(d, n))
            os.rmdir(d)
    z = np.load(path)
    neg = {"x": z["xn"], "y": np.zeros_like(z["y"]), "volume_ml": 0.0, "label": 0, "type": "none", "side": side,
           "seed": seed}
    pos = {"x": z["xp"], "y": z["y"], "volume_ml": float(z["volume_ml"]), "label": 1, "type": hemorrhage,
           "side": side, "seed": seed}
    return [neg, pos]


def sample_patch(study, rng):
    x, y = study["x"], study["y"]
    s, h, w = y.shape
    ps, ph, pw = PATCH
    if study["label"] == 1 and rng.random() < 0.6:
        idx = np.argwhere(y > 0.25)
        k, r, c = idx[rng.integers(len(idx))]
        k += rng.integers(-4, 5)
        r += rng.integers(-20, 21)
        c += rng.integers(-20, 21)
    else:  # anywhere in the head (skull edges are the hard negatives)
        idx = np.argwhere(x[0] > 0.1)
        k, r, c = idx[rng.integers(len(idx))]
    k0 = int(np.clip(k - ps // 2, 0, s - ps))
    r0 = int(np.clip(r - ph // 2, 0, h - ph))
    c0 = int(np.clip(c - pw // 2, 0, w - pw))
    xp = x[:, k0:k0 + ps, r0:r0 + ph, c0:c0 + pw]
    yp = y[k0:k0 + ps, r0:r0 + ph, c0:c0 + pw]
    if rng.random() < 0.5:  # mirror left-right: anatomy is near-symmetric, the side is a label, not a prior
        xp, yp = xp[..., ::-1], yp[..., ::-1]
    return np.ascontiguousarray(xp), np.ascontiguousarray(yp)


def predict(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0, 0].numpy()


def score_of(prob):
    flat = prob.ravel()
    return float(np.sort(flat[np.argpartition(-flat, TOP_K - 1)[:TOP_K]]).mean())


def volume_of(prob, estimator=("count", VOXEL_THRESHOLD)):
    mode, cut = estimator
    cells = float((prob >= cut).sum()) if mode == "count" else float(prob[prob >= cut].sum(dtype=np.float64))
    return cells * (240.0 / ichdata.GRID) ** 2 * 5.0 / 1000.0


def choose_volume_estimator(model, studies):
    """The estimator with the lowest worst-type median relative volume error on `studies` (ties: listed first)."""
    probs = [(predict(model, st["x"]), st) for st in studies if st["label"] == 1]
    best, best_err = None, None
    for est in VOLUME_ESTIMATORS:
        by_type = {}
        for prob, st in probs:
            by_type.setdefault(st["type"], []).append(abs(volume_of(prob, est) - st["volume_ml"]) / st["volume_ml"])
        worst = max(float(np.median(v)) for v in by_type.values())
        print(f"volume estimator {est[0]:5s} {est[1]:.2f}: worst-type median error {100 * worst:.1f} % "
              + " ".join(f"{k} {100 * float(np.median(v)):.1f}" for k, v in sorted(by_type.items())), flush=True)
        if best_err is None or worst < best_err:
            best, best_err = est, worst
    return best


def auc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l == 1]
    neg = [s for s, l in zip(scores, labels) if l == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def evaluate(model, studies, threshold=None, estimator=("count", VOXEL_THRESHOLD)):
    rows = []
    for st in studies:
        t0 = time.time()
        prob = predict(model, st["x"])
        rows.append((score_of(prob), volume_of(prob, estimator), st, time.time() - t0))
    scores = [r[0] for r in rows]
    labels = [r[2]["label"] for r in rows]
    if threshold is None:  # midway between the classes' closest scores when separable, else best Youden J
        pos_min = min(s for s, l in zip(scores, labels) if l == 1)
        neg_max = max(s for s, l in zip(scores, labels) if l == 0)
        if pos_min > neg_max:
            threshold = 0.5 * (pos_min + neg_max)
        else:
            best = max(sorted(set(scores)), key=lambda t: sum(s >= t for s, l in zip(scores, labels) if l) / max(
                1, sum(labels)) - sum(s >= t for s, l in zip(scores, labels) if not l) / max(1, labels.count(0)))
            threshold = best
    tp = sum(s >= threshold and l == 1 for s, l in zip(scores, labels))
    tn = sum(s < threshold and l == 0 for s, l in zip(scores, labels))
    vol_err = [abs(r[1] - r[2]["volume_ml"]) / r[2]["volume_ml"] for r in rows if r[2]["label"] == 1]
    by_type = {}
    for r in rows:
        if r[2]["label"] == 1:
            by_type.setdefault(r[2]["type"], []).append(abs(r[1] - r[2]["volume_ml"]) / r[2]["volume_ml"])
    return {
        "threshold": threshold, "auc": auc(scores, labels), "sensitivity": tp / max(1, sum(labels)),
        "specificity": tn / max(1, labels.count(0)), "volume_error_median": float(np.median(vol_err)),
        "volume_error_mean": float(np.mean(vol_err)), "volume_error_max": float(np.max(vol_err)),
        "volume_error_by_type": {k: float(np.median(v)) for k, v in by_type.items()},
        "seconds_per_study": float(np.median([r[3] for r in rows])),
        "neg_score_max": max(s for s, l in zip(scores, labels) if l == 0),
        "pos_score_min": min(s for s, l in zip(scores, labels) if l == 1),
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantom", default=os.path.join(here, "..", "..", "build", "bin", "aihub-phantom"))
    ap.add_argument("--cache", default="/tmp/aihub-ich-cache")
    ap.add_argument("--out", default=os.path.join(here, "model"))
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args()

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(0)
    os.makedirs(args.cache, exist_ok=True)

    t0 = time.time()
    train = [st for seed in TRAIN_SEEDS for st in load_pair(args.phantom, args.cache, seed)]
    val = [st for seed in VALIDATION_SEEDS for st in load_pair(args.phantom, args.cache, seed)]
    print(f"data: {len(train)} training, {len(val)} validation studies ({time.time() - t0:.0f} s)", flush=True)

    model = TinyUNet()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: TinyUNet, {params} parameters", flush=True)
    weights = np.array([SAH_WEIGHT if st["type"] == "subarachnoid" else 1.0 for st in train])
    weights /= weights.sum()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=args.steps, pct_start=0.15)
    bce = nn.BCEWithLogitsLoss()
    t0 = time.time()
    for step in range(args.steps):
        batch = [sample_patch(train[rng.choice(len(train), p=weights)], rng) for _ in range(BATCH)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]))[:, None]
        z = model.logits(x)
        p = torch.sigmoid(z)
        inter = (p * y).sum()
        dice = 1 - (2 * inter + 1) / (p.sum() + y.sum() + 1)
        loss = bce(z, y) * 10 + 0.5 * dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)

    model.eval()
    estimator = choose_volume_estimator(model, val)
    m = evaluate(model, val, estimator=estimator)
    threshold = round(m["threshold"], 4)
    print("validation (seeds %d-%d): %s" % (VALIDATION_SEEDS[0], VALIDATION_SEEDS[-1], json.dumps(m, indent=1)))

    os.makedirs(args.out, exist_ok=True)
    meta = {"model_version": MODEL_VERSION, "grid": ichdata.GRID, "window_hu": ichdata.WINDOW_HU,
            "bone_hu": ichdata.BONE_HU, "blood_hu": ichdata.BLOOD_HU, "channels": ichdata.CHANNELS,
            "volume_mode": estimator[0], "volume_cut": estimator[1], "threshold": threshold, "top_k": TOP_K, "voxel_threshold": VOXEL_THRESHOLD,
            "train_seeds": [TRAIN_SEEDS[0], TRAIN_SEEDS[-1]],
            "validation_seeds": [VALIDATION_SEEDS[0], VALIDATION_SEEDS[-1]], "parameters": params,
            "validation": {k: m[k] for k in ("auc", "sensitivity", "specificity", "volume_error_median")}}
    traced = torch.jit.trace(model, torch.zeros(1, ichdata.CHANNELS, 12, ichdata.GRID, ichdata.GRID))
    path = os.path.join(args.out, "ich.pt")
    torch.jit.save(traced, path, _extra_files={"aihub_model.json": json.dumps(meta, sort_keys=True)})
    with open(os.path.join(args.out, "MODEL_VERSION"), "w") as f:
        f.write(MODEL_VERSION + "\n")
    # The exported file must reproduce the eager model, also at another slice count.
    loaded = torch.jit.load(path)
    x = torch.from_numpy(val[1]["x"])[None]
    with torch.no_grad():
        diff = (loaded(x) - model(x)).abs().max().item()
    print(f"exported {path} ({os.path.getsize(path)} bytes), max |scripted - eager| = {diff:.2e}")
    print(f"operating point: presence when the mean of the top {TOP_K} voxel probabilities >= {threshold}")
    print(f"volume: {estimator[0]} of voxel probabilities >= {estimator[1]}")


if __name__ == "__main__":
    # TorchScript writes some module constants in set order, which follows Python's per-process string hashing: pin
    # the hash seed so the exported file is byte-identical from run to run (the weights are deterministic anyway).
    # (Kept down here: the export records the source lines of the model code, which must not move.)
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    main()
