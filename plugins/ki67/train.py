#!/usr/bin/python3
"""Trains the Ki-67 nucleus classifier (a small MLP on 10 nucleus features) on aihub-phantom whole-slide tiles;
exports TorchScript.

    /usr/bin/python3 plugins/ki67/train.py [--data-tool build/bin/ki67_data] [--cache DIR]

The features come from `ki67_data features` (tests/reference/ki67/ki67_data.cpp), which renders phantom slides
tile by tile with the phantom's C++ API and runs the plugin's own detector (plugins/ki67/ki67_analysis.cpp) on each
tile, so the model learns exactly what the plugin computes. Each detection is labelled with the generator's
nucleus (positive / negative) whose centre lies within 6 px of the detection's centroid; unmatched detections
(label -1) are left out of training.

Reproducible: fixed seeds (torch, numpy), deterministic algorithms, a fixed number of steps.
Writes plugins/ki67/model/ki67.pt and plugins/ki67/model/MODEL_VERSION.

Seeds (never overlap):
  training    5000-5119  2048 x 2048 px slides (8 x 8 tiles of 256), index 3-60 % and 0-3 hot spots by seed
  validation  6000-6029  drawn the same way; its metrics are printed and stored in the model's metadata
  held-out    80000-     only bench_accuracy.py uses these
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn

MODEL_VERSION = "ki67-ref-2026.11"
FEATURE_SET = "ki67-features-1"   # must match kFeatureSet in ki67_analysis.h
FEATURES = 10
TRAIN_SEEDS = (5000, 120)         # first seed, count
VALIDATION_SEEDS = (6000, 30)
SIZE = 2048
STEPS = 2000
BATCH = 256
LR = 3e-3
THRESHOLD = 0.5
# The detector's parameters the features were computed with (DetectionParams defaults); the plugin reads them from
# the model's metadata, so a model and its detector always travel together.
DETECTION = {"stain_threshold": 0.25, "min_area_px": 100, "max_area_px": 4000}


class Ki67Classifier(nn.Module):
    """[N, 10] nucleus features -> [N] probability that the nucleus is Ki-67 positive. Normalisation inside."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.net = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))

    def logits(self, x):
        return self.net((x - self.mean) / self.std).squeeze(1)

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


def features(tool, cache, first, count):
    path = os.path.join(cache, f"features-{first}-{count}-{SIZE}.f32")
    if not os.path.exists(path):
        r = subprocess.run([tool, "features", "--out", path + ".tmp", "--first-seed", str(first), "--count",
                            str(count), "--size", str(SIZE)], capture_output=True, text=True, check=True)
        os.replace(path + ".tmp", path)
        with open(path + ".json", "w") as f:
            f.write(r.stdout)
    summary = json.load(open(path + ".json"))
    rows = np.fromfile(path, dtype=np.float32).reshape(-1, FEATURES + 3)
    return rows, summary


def auc(scores, labels):
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(model, rows):
    x = torch.from_numpy(rows[:, :FEATURES].copy())
    with torch.no_grad():
        p = model(x).numpy()
    labels = rows[:, FEATURES]
    known = labels >= 0
    y = labels[known] == 1
    pred = p[known] >= THRESHOLD
    out = {"nuclei": int(known.sum()), "unmatched": int((~known).sum()),
           "accuracy": float((pred == y).mean()), "sensitivity": float(pred[y].mean()),
           "specificity": float((~pred[~y]).mean()), "auc": auc(p[known], y.astype(int))}
    # Slide-level index error: predicted positives / detections against the generator's labels.
    errors = []
    seeds = rows[:, FEATURES + 1]
    for s in np.unique(seeds):
        m = (seeds == s) & known
        if m.sum() == 0:
            continue
        errors.append(abs(100 * (p[m] >= THRESHOLD).mean() - 100 * (labels[m] == 1).mean()))
    out["index_error_points_median"] = float(np.median(errors))
    out["index_error_points_max"] = float(np.max(errors))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-tool", default=os.path.join(here, "..", "..", "build", "bin", "ki67_data"))
    ap.add_argument("--cache", default="/tmp/aihub-ki67-cache")
    ap.add_argument("--out", default=os.path.join(here, "model"))
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args()

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(0)
    os.makedirs(args.cache, exist_ok=True)

    t0 = time.time()
    train, train_summary = features(args.data_tool, args.cache, *TRAIN_SEEDS)
    val, val_summary = features(args.data_tool, args.cache, *VALIDATION_SEEDS)
    print(f"data: training {json.dumps(train_summary)}", flush=True)
    print(f"      validation {json.dumps(val_summary)} ({time.time() - t0:.0f} s)", flush=True)
    known = train[train[:, FEATURES] >= 0]
    x_all = known[:, :FEATURES]
    y_all = (known[:, FEATURES] == 1).astype(np.float32)
    print(f"training nuclei: {len(known)} ({int(y_all.sum())} positive)", flush=True)

    mean, std = x_all.mean(axis=0), x_all.std(axis=0) + 1e-6
    model = Ki67Classifier(mean, std)
    params = sum(p.numel() for p in model.net.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=args.steps, pct_start=0.1)
    x_t, y_t = torch.from_numpy(x_all), torch.from_numpy(y_all)
    t0 = time.time()
    for step in range(args.steps):
        idx = torch.from_numpy(rng.integers(0, len(x_t), BATCH))
        loss = nn.functional.binary_cross_entropy_with_logits(model.logits(x_t[idx]), y_t[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.5f} ({time.time() - t0:.1f} s)", flush=True)

    model.eval()
    m = evaluate(model, val)
    print("validation (seeds %d-%d): %s" % (VALIDATION_SEEDS[0], VALIDATION_SEEDS[0] + VALIDATION_SEEDS[1] - 1,
                                            json.dumps(m, indent=1)))

    os.makedirs(args.out, exist_ok=True)
    meta = {"model_version": MODEL_VERSION, "feature_set": FEATURE_SET, "features": FEATURES,
            "threshold": THRESHOLD, "pixel_spacing_um": 0.25, **DETECTION,
            "train_seeds": [TRAIN_SEEDS[0], TRAIN_SEEDS[0] + TRAIN_SEEDS[1] - 1],
            "validation_seeds": [VALIDATION_SEEDS[0], VALIDATION_SEEDS[0] + VALIDATION_SEEDS[1] - 1],
            "parameters": params, "validation": m}
    scripted = torch.jit.script(model)
    path = os.path.join(args.out, "ki67.pt")
    torch.jit.save(scripted, path, _extra_files={"aihub_model.json": json.dumps(meta, sort_keys=True)})
    with open(os.path.join(args.out, "MODEL_VERSION"), "w") as f:
        f.write(MODEL_VERSION + "\n")
    loaded = torch.jit.load(path)
    x = torch.from_numpy(val[:64, :FEATURES].copy())
    with torch.no_grad():
        diff = (loaded(x) - model(x)).abs().max().item()
    print(f"exported {path} ({os.path.getsize(path)} bytes, {params} parameters), "
          f"max |scripted - eager| = {diff:.2e}")


if __name__ == "__main__":
    # TorchScript writes some module constants in set order, which follows Python's per-process string hashing: pin
    # the hash seed so the exported file is byte-identical from run to run (the weights are deterministic anyway).
    # (Kept down here: the export records the source lines of the model code, which must not move.)
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    main()
