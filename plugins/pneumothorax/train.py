#!/usr/bin/python3
"""Trains the pneumothorax reference model (a small 2D U-Net) on aihub-phantom chest X-rays; exports TorchScript.

    /usr/bin/python3 plugins/pneumothorax/train.py [--phantom build/bin/aihub-phantom] [--cache DIR]

Reproducible: fixed seeds (torch, numpy), one thread, deterministic algorithms, a fixed number of steps.
Writes plugins/pneumothorax/model/pneumothorax.pt and plugins/pneumothorax/model/MODEL_VERSION.

Seeds (never overlap):
  training    3000-3179  each seed: one study with a pneumothorax (side alternating, size drawn 4-45 % from the
                         seed) and the same seed without; native size cycles 2500x2048, 1250x1024, 625x512
  validation  4000-4039  drawn the same way; chooses the operating point, its metrics are printed at the end
  held-out    70000-     only bench_accuracy.py uses these
Preprocessing and labels: see ptxdata.py (the C++ plugin repeats the preprocessing exactly).
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
import ptxdata  # noqa: E402

MODEL_VERSION = "pneumothorax-ref-2026.11"
TRAIN_SEEDS = range(3000, 3180)
VALIDATION_SEEDS = range(4000, 4040)
SIZES = [(2500, 2048), (1250, 1024), (625, 512)]
TOP_K = 32              # presence score: mean of the 32 highest pneumothorax-cell probabilities
CELL_THRESHOLD = 0.5    # a grid cell is pneumothorax / lung field at p >= 0.5
STEPS = 1500
LR = 3e-3
BATCH = 8
PATCH = (128, 128)


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetLite(nn.Module):
    """Input [N, 1, H, W] (H, W multiples of 8), output [N, 2, H, W]: pneumothorax and lung-field probabilities."""

    def __init__(self, widths=(8, 16, 32, 48)):
        super().__init__()
        a, b, c, d = widths
        self.enc1, self.enc2, self.enc3, self.mid = block(1, a), block(a, b), block(b, c), block(c, d)
        self.pool = nn.MaxPool2d(2)
        self.up3, self.dec3 = nn.ConvTranspose2d(d, c, 2, stride=2), block(2 * c, c)
        self.up2, self.dec2 = nn.ConvTranspose2d(c, b, 2, stride=2), block(2 * b, b)
        self.up1, self.dec1 = nn.ConvTranspose2d(b, a, 2, stride=2), block(2 * a, a)
        self.head = nn.Conv2d(a, 2, 1)

    def forward(self, x):
        return torch.sigmoid(self.logits(x))

    def logits(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        m = self.mid(self.pool(e3))
        d3 = self.dec3(torch.cat([self.up3(m), e3], 1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


def plan(seed):
    """The study pair drawn for a seed: (side, requested size %, rows, columns)."""
    rng = np.random.default_rng(seed)
    size = float(np.round(rng.uniform(4, 45), 2))
    rows, cols = SIZES[seed % 3]
    return ("left" if seed % 2 == 0 else "right"), size, rows, cols


def load_pair(phantom, cache, seed):
    """(negative, positive) dicts with x [1,256,208], y [2,256,208] (pneumothorax and lung-field fractions)."""
    side, size, rows, cols = plan(seed)
    path = os.path.join(cache, f"s{seed}-{side}-{size}-{rows}x{cols}.npz")
    if not os.path.exists(path):
        work = os.path.join(cache, "work")
        os.makedirs(work, exist_ok=True)
        mask_file = os.path.join(work, "mask.bin")
        pos_dir = ptxdata.generate(phantom, work, seed, True, side, size, rows, cols, mask=mask_file)
        neg_dir = ptxdata.generate(phantom, work, seed, False, side, None, rows, cols)
        truth = ptxdata.load_truth(pos_dir)["pneumothorax"]
        ptx = np.fromfile(mask_file, np.uint8).reshape(rows, cols) == 1
        field = ptxdata.lung_field(seed, rows, cols)
        side_label = 1 if side == "right" else 2
        if int((field == side_label).sum()) != truth["hemithorax_pixels"] or np.any(ptx & (field != side_label)):
            raise RuntimeError(f"seed {seed}: lung-field labels disagree with the phantom's truth "
                               "(tools/phantom changed? update ptxdata.lung_field)")
        lung = (field > 0).astype(np.float32)
        np.savez_compressed(
            path, xp=ptxdata.preprocess(ptxdata.read_dicom_image(os.path.join(pos_dir, "DX000001.dcm"))),
            xn=ptxdata.preprocess(ptxdata.read_dicom_image(os.path.join(neg_dir, "DX000001.dcm"))),
            ptx=ptxdata.resample(ptx.astype(np.float32)), lung=ptxdata.resample(lung),
            size_percent=truth["size_percent"])
        for d in (pos_dir, neg_dir):
            for n in os.listdir(d):
                os.remove(os.path.join(d, n))
            os.rmdir(d)
    z = np.load(path)
    neg = {"x": z["xn"], "y": np.stack([np.zeros_like(z["lung"]), z["lung"]]), "label": 0, "size": 0.0,
           "side": None, "seed": seed}
    pos = {"x": z["xp"], "y": np.stack([z["ptx"], z["lung"]]), "label": 1, "size": float(z["size_percent"]),
           "side": side, "seed": seed}
    return [neg, pos]


def sample_patch(study, rng):
    x, y = study["x"], study["y"]
    _, h, w = x.shape
    ph, pw = PATCH
    if study["label"] == 1 and rng.random() < 0.6:
        idx = np.argwhere(y[0] > 0.25)
        r, c = idx[rng.integers(len(idx))] + rng.integers(-30, 31, 2)
    else:  # anywhere in the chest (lung edges, ribs and the gastric bubble are the hard negatives)
        r, c = rng.integers(0, h), rng.integers(0, w)
    r0 = int(np.clip(r - ph // 2, 0, h - ph))
    c0 = int(np.clip(c - pw // 2, 0, w - pw))
    xp, yp = x[:, r0:r0 + ph, c0:c0 + pw], y[:, r0:r0 + ph, c0:c0 + pw]
    if rng.random() < 0.5:  # mirror left-right: the side is a label of the post-processing, not a prior
        xp, yp = xp[..., ::-1], yp[..., ::-1]
    return np.ascontiguousarray(xp), np.ascontiguousarray(yp)


def predict(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


def analyse(prob):
    """Post-processing, identical to pneumothorax_model.cpp Analyze: (score, size %, image side 'L'/'R'/'B'/None)."""
    p, l = prob[0], prob[1]
    flat = p.ravel()
    score = float(np.sort(flat[np.argpartition(-flat, TOP_K - 1)[:TOP_K]]).astype(np.float64).mean())
    ptx = p >= CELL_THRESHOLD
    field = (l >= CELL_THRESHOLD) | ptx
    cols = np.nonzero(field)[1]
    if cols.size >= 100:
        s = np.sort(cols)
        mid = 0.5 * (s[int(0.01 * (s.size - 1))] + s[int(0.99 * (s.size - 1))])
    else:
        mid = 0.5 * (p.shape[1] - 1)
    c = np.arange(p.shape[1])[None, :]
    left, right = ptx & (c < mid), ptx & (c > mid)
    nl, nr = int(left.sum()), int(right.sum())
    if nl == 0 and nr == 0:
        return score, 0.0, None
    if min(nl, nr) * 2 >= max(nl, nr):
        side, region, hemi = "B", ptx & (c != mid), field & (c != mid)
    elif nl > nr:
        side, region, hemi = "L", left, field & (c < mid)
    else:
        side, region, hemi = "R", right, field & (c > mid)
    return score, 100.0 * region.sum() / max(1, hemi.sum()), side


def auc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l == 1]
    neg = [s for s, l in zip(scores, labels) if l == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def patient_side(image_side):
    """Standard PA display (PatientOrientation L\\F): the image's left is the patient's right."""
    return {"L": "right", "R": "left", "B": "bilateral"}.get(image_side)


def evaluate(model, studies, threshold=None):
    rows = []
    for st in studies:
        t0 = time.time()
        prob = predict(model, st["x"])
        rows.append(analyse(prob) + (st, time.time() - t0))
    scores, labels = [r[0] for r in rows], [r[3]["label"] for r in rows]
    if threshold is None:  # midway between the classes' closest scores when separable, else best Youden J
        pos_min = min(s for s, l in zip(scores, labels) if l == 1)
        neg_max = max(s for s, l in zip(scores, labels) if l == 0)
        if pos_min > neg_max:
            threshold = 0.5 * (pos_min + neg_max)
        else:
            npos, nneg = sum(labels), labels.count(0)
            threshold = max(sorted(set(scores)), key=lambda t: sum(s >= t for s, l in zip(scores, labels) if l) /
                            npos - sum(s >= t for s, l in zip(scores, labels) if not l) / nneg)
    tp = sum(s >= threshold and l == 1 for s, l in zip(scores, labels))
    tn = sum(s < threshold and l == 0 for s, l in zip(scores, labels))
    found = [r for r in rows if r[3]["label"] == 1 and r[0] >= threshold]
    err = [abs(r[1] - r[3]["size"]) for r in found]
    rel = [abs(r[1] - r[3]["size"]) / r[3]["size"] for r in found]
    return {
        "threshold": threshold, "auc": auc(scores, labels), "sensitivity": tp / max(1, sum(labels)),
        "specificity": tn / max(1, labels.count(0)),
        "side_correct": sum(patient_side(r[2]) == r[3]["side"] for r in found), "found": len(found),
        "size_error_points_median": float(np.median(err)) if err else None,
        "size_error_points_max": float(np.max(err)) if err else None,
        "size_error_relative_median": float(np.median(rel)) if rel else None,
        "within_20pct_or_3_points": sum(e <= 3 or q <= 0.2 for e, q in zip(err, rel)),
        "seconds_per_study": float(np.median([r[4] for r in rows])),
        "neg_score_max": max(s for s, l in zip(scores, labels) if l == 0),
        "pos_score_min": min(s for s, l in zip(scores, labels) if l == 1),
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantom", default=os.path.join(here, "..", "..", "build", "bin", "aihub-phantom"))
    ap.add_argument("--cache", default="/tmp/aihub-pneumothorax-cache")
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

    model = UNetLite()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: UNetLite, {params} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=args.steps, pct_start=0.15)
    weights = torch.tensor([4.0, 1.0]).view(1, 2, 1, 1)  # the pneumothorax channel matters most
    t0 = time.time()
    for step in range(args.steps):
        batch = [sample_patch(train[rng.integers(len(train))], rng) for _ in range(BATCH)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]))
        z = model.logits(x)
        bce = (nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none") * weights).mean()
        p = torch.sigmoid(z[:, 0])
        dice = 1 - (2 * (p * y[:, 0]).sum() + 1) / (p.sum() + y[:, 0].sum() + 1)
        loss = bce * 5 + 0.5 * dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)

    model.eval()
    m = evaluate(model, val)
    threshold = round(m["threshold"], 4)
    print("validation (seeds %d-%d): %s" % (VALIDATION_SEEDS[0], VALIDATION_SEEDS[-1],
                                            json.dumps(m, indent=1, default=lambda o: o.item())))

    os.makedirs(args.out, exist_ok=True)
    meta = {"model_version": MODEL_VERSION, "grid_rows": ptxdata.GRID_ROWS, "grid_columns": ptxdata.GRID_COLUMNS,
            "low_percentile": ptxdata.LOW_PERCENTILE, "high_percentile": ptxdata.HIGH_PERCENTILE,
            "threshold": threshold, "top_k": TOP_K, "cell_threshold": CELL_THRESHOLD,
            "train_seeds": [TRAIN_SEEDS[0], TRAIN_SEEDS[-1]],
            "validation_seeds": [VALIDATION_SEEDS[0], VALIDATION_SEEDS[-1]], "parameters": params,
            "validation": {k: float(m[k]) for k in ("auc", "sensitivity", "specificity", "size_error_points_median")}}
    traced = torch.jit.trace(model, torch.zeros(1, 1, ptxdata.GRID_ROWS, ptxdata.GRID_COLUMNS))
    path = os.path.join(args.out, "pneumothorax.pt")
    torch.jit.save(traced, path, _extra_files={"aihub_model.json": json.dumps(meta, sort_keys=True)})
    with open(os.path.join(args.out, "MODEL_VERSION"), "w") as f:
        f.write(MODEL_VERSION + "\n")
    loaded = torch.jit.load(path)
    x = torch.from_numpy(val[1]["x"])[None]
    with torch.no_grad():
        diff = (loaded(x) - model(x)).abs().max().item()
    print(f"exported {path} ({os.path.getsize(path)} bytes), max |scripted - eager| = {diff:.2e}")
    print(f"operating point: present when the mean of the top {TOP_K} pneumothorax probabilities >= {threshold}")


if __name__ == "__main__":
    # TorchScript writes some module constants in set order, which follows Python's per-process string hashing: pin
    # the hash seed so the exported file is byte-identical from run to run (the weights are deterministic anyway).
    # (Kept down here: the export records the source lines of the model code, which must not move.)
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    main()
