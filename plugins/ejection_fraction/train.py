#!/usr/bin/python3
"""Trains the ejection-fraction reference model (a small 2D U-Net that segments the left-ventricular blood pool on
short-axis cine MR frames) on aihub-phantom cardiac cines; exports TorchScript.

    /usr/bin/python3 plugins/ejection_fraction/train.py [--phantom build/bin/aihub-phantom] [--cache DIR]

Reproducible: fixed seeds (torch, numpy), two threads, deterministic algorithms, a fixed number of steps (about
7 minutes on 2 CPU threads). Writes plugins/ejection_fraction/model/ejection_fraction.pt and model/MODEL_VERSION.

Seeds (never overlap):
  training    1000-1059  slices cycle 6, 8, 10, 12; size cycles 128, 192, 256; 6 phases; every third seed has
                         an ejection fraction drawn 10-30 % (--ef), the others the phantom's own (20-70 %)
  validation  2000-2007  10 slices, 20 phases, size 128 / 256, seeds 2000, 2003, 2006 with EF 15-30 %; its EF,
                         EDV and ESV errors are printed at the end and stored in the model's metadata
  held-out    90000-     only bench_accuracy.py uses these
Preprocessing and labels: see efdata.py (the C++ plugin repeats the preprocessing; ef_model.cpp).
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
import efdata  # noqa: E402

MODEL_VERSION = "ejection-fraction-ref-2026.11"
TRAIN_SEEDS = range(1000, 1060)
VALIDATION_SEEDS = range(2000, 2008)
TRAIN_PHASES = 6
CELL_THRESHOLD = 0.5     # post-processing: a cell is blood pool at p >= 0.5 (component selection, outline)
THRESHOLD_PERCENT = 30   # default operating point: "reduced EF" when EF < 30 %
STEPS = 3000
LR = 3e-3
BATCH = 16
CROP = 80                # training crops of 80 x 80 cells (128 mm): the network is fully convolutional


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetLite(nn.Module):
    """Input [N, 1, H, W] (H, W multiples of 8), output [N, 1, H, W]: LV blood-pool fraction per cell."""

    def __init__(self, widths=(8, 16, 32, 48)):
        super().__init__()
        a, b, c, d = widths
        self.enc1, self.enc2, self.enc3, self.mid = block(1, a), block(a, b), block(b, c), block(c, d)
        self.pool = nn.MaxPool2d(2)
        self.up3, self.dec3 = nn.ConvTranspose2d(d, c, 2, stride=2), block(2 * c, c)
        self.up2, self.dec2 = nn.ConvTranspose2d(c, b, 2, stride=2), block(2 * b, b)
        self.up1, self.dec1 = nn.ConvTranspose2d(b, a, 2, stride=2), block(2 * a, a)
        self.head = nn.Conv2d(a, 1, 1)

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
    """(slices, phases, size, ef or None) drawn for a seed."""
    rng = np.random.default_rng(seed)
    low_ef = float(np.round(rng.uniform(10, 30), 2))
    if seed in VALIDATION_SEEDS:
        i = seed - VALIDATION_SEEDS[0]
        return 10, 20, (128, 256)[i % 2], (low_ef if i % 3 == 0 else None)
    i = seed - TRAIN_SEEDS[0]
    return (6, 8, 10, 12)[i % 4], TRAIN_PHASES, (128, 192, 256)[i % 3], (low_ef if i % 3 == 2 else None)


def load(phantom, cache, seed):
    """{"x", "y" [slices, phases, GRID, GRID] float16, "truth"} for a seed, generated once into the cache."""
    slices, phases, size, ef = plan(seed)
    path = os.path.join(cache, f"s{seed}-{slices}x{phases}-{size}-{ef}.npz")
    if not os.path.exists(path):
        work = os.path.join(cache, "work")
        os.makedirs(work, exist_ok=True)
        mask_file = os.path.join(work, "mask.bin")
        folder = efdata.generate(phantom, work, seed, slices, phases, size, ef, mask=mask_file)
        truth = efdata.load_truth(folder)
        x, y = efdata.load_study(folder, truth, mask_file)
        # The labels' areas must be the phantom's: a check that the grid mapping keeps every cavity voxel.
        thickness = truth["geometry"]["slice_thickness_mm"]
        vol = y.sum(axis=(0, 2, 3)) * efdata.CELL_MM ** 2 * thickness / 1000
        if np.max(np.abs(vol - np.array(truth["volume_ml"]))) > 0.01:
            raise RuntimeError(f"seed {seed}: grid labels lose cavity volume (LV outside the model's field?)")
        small = {k: truth[k] for k in ("edv_ml", "esv_ml", "ef_percent", "ed_phase", "es_phase", "volume_ml")}
        small["slice_thickness_mm"] = thickness
        np.savez_compressed(path, x=x.astype(np.float16), y=y.astype(np.float16), truth=json.dumps(small))
        for n in os.listdir(folder):
            os.remove(os.path.join(folder, n))
        os.rmdir(folder)
    z = np.load(path)
    return {"x": z["x"], "y": z["y"], "truth": json.loads(str(z["truth"])), "seed": seed}


def sample_crop(study, rng):
    x, y = study["x"], study["y"]
    k, p = rng.integers(x.shape[0]), rng.integers(x.shape[1])
    xf, yf = x[k, p].astype(np.float32), y[k, p].astype(np.float32)
    g = efdata.GRID
    if yf.sum() > 0 and rng.random() < 0.85:  # around the ventricle, which may sit anywhere in the crop
        w = yf / yf.sum()
        r = float((w.sum(1) * np.arange(g)).sum()) + rng.integers(-22, 23)
        c = float((w.sum(0) * np.arange(g)).sum()) + rng.integers(-22, 23)
    else:
        r, c = rng.integers(CROP // 2, g - CROP // 2, 2)
    r0 = int(np.clip(round(r) - CROP // 2, 0, g - CROP))
    c0 = int(np.clip(round(c) - CROP // 2, 0, g - CROP))
    gain = rng.uniform(0.9, 1.1)  # mild contrast jitter: the stack normalisation varies with the field's content
    xc = xf[r0:r0 + CROP, c0:c0 + CROP] * gain + rng.uniform(-0.05, 0.05)
    return np.ascontiguousarray(xc[None]), np.ascontiguousarray(yf[None, r0:r0 + CROP, c0:c0 + CROP])


def predict(model, x):
    """x [slices, phases, G, G] -> probabilities of the same shape."""
    s, p, g, _ = x.shape
    out = []
    with torch.no_grad():
        flat = torch.from_numpy(x.reshape(s * p, 1, g, g).astype(np.float32))
        for i in range(0, flat.shape[0], 32):
            out.append(model(flat[i:i + 32])[:, 0].numpy())
    return np.concatenate(out).reshape(s, p, g, g)


def volumes(prob, spacing_mm):
    """Per-phase volume (mL) of prob [slices, phases, G, G]: the summed probability over the cells at or above
    CELL_THRESHOLD and their 8 in-plane neighbours, as ef_model.cpp AnalyzeCine does but without its choice of
    the largest 3D component (which matters only when the model marks a second, separate structure)."""
    core = prob >= CELL_THRESHOLD
    near = np.zeros_like(core)
    g = core.shape[-1]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            near[..., max(0, dr):g + min(0, dr), max(0, dc):g + min(0, dc)] |= \
                core[..., max(0, -dr):g + min(0, -dr), max(0, -dc):g + min(0, -dc)]
    return (prob * near).sum(axis=(0, 2, 3)) * efdata.CELL_MM ** 2 * spacing_mm / 1000


def evaluate(model, studies):
    """EF in points, EDV and ESV in % against the truth (volumes: see volumes())."""
    rows = []
    for st in studies:
        t0 = time.time()
        prob = predict(model, st["x"].astype(np.float32))
        t = st["truth"]
        vol = volumes(prob, t["slice_thickness_mm"])
        edv, esv = float(vol.max()), float(vol.min())
        ef = 100 * (edv - esv) / edv
        rows.append({"seed": st["seed"], "ef_truth": t["ef_percent"], "ef": ef,
                     "ef_error": abs(ef - t["ef_percent"]), "edv_error_pct": 100 * abs(edv / t["edv_ml"] - 1),
                     "esv_error_pct": 100 * abs(esv / t["esv_ml"] - 1),
                     "dice_ed": dice(prob[:, t["ed_phase"]], st["y"][:, t["ed_phase"]].astype(np.float32)),
                     "seconds": time.time() - t0})
    return rows


def dice(p, y):
    return float(2 * (p * y).sum() / max(1e-6, p.sum() + y.sum()))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantom", default=os.path.join(here, "..", "..", "build", "bin", "aihub-phantom"))
    ap.add_argument("--cache", default="/tmp/aihub-ejection-fraction-cache")
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
    train = [load(args.phantom, args.cache, seed) for seed in TRAIN_SEEDS]
    val = [load(args.phantom, args.cache, seed) for seed in VALIDATION_SEEDS]
    frames = sum(st["x"].shape[0] * st["x"].shape[1] for st in train)
    print(f"data: {len(train)} training studies ({frames} frames), {len(val)} validation studies "
          f"({time.time() - t0:.0f} s)", flush=True)

    model = UNetLite()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: UNetLite, {params} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=args.steps, pct_start=0.15)
    t0 = time.time()
    for step in range(args.steps):
        batch = [sample_crop(train[rng.integers(len(train))], rng) for _ in range(BATCH)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]))
        z = model.logits(x)
        # Soft targets (the fraction of each cell inside the cavity): BCE makes the probabilities those fractions,
        # so their sum is the area; the Dice term keeps small apical cavities from being ignored.
        bce = nn.functional.binary_cross_entropy_with_logits(z, y)
        p = torch.sigmoid(z)
        soft_dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
        loss = bce * 5 + 0.5 * soft_dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    train_seconds = time.time() - t0

    model.eval()
    rows = evaluate(model, val)
    for r in rows:
        print("validation seed %(seed)d: EF truth %(ef_truth)5.1f model %(ef)5.1f (error %(ef_error)4.1f points), "
              "EDV error %(edv_error_pct)4.1f %%, ESV error %(esv_error_pct)4.1f %%, Dice at ED %(dice_ed).3f, "
              "%(seconds).1f s" % r)
    summary = {
        "ef_error_points_median": float(np.median([r["ef_error"] for r in rows])),
        "ef_error_points_max": float(np.max([r["ef_error"] for r in rows])),
        "edv_error_percent_median": float(np.median([r["edv_error_pct"] for r in rows])),
        "esv_error_percent_median": float(np.median([r["esv_error_pct"] for r in rows])),
        "dice_ed_median": float(np.median([r["dice_ed"] for r in rows])),
    }
    print("validation (seeds %d-%d): %s" % (VALIDATION_SEEDS[0], VALIDATION_SEEDS[-1], json.dumps(summary)))

    os.makedirs(args.out, exist_ok=True)
    meta = {"model_version": MODEL_VERSION, "grid": efdata.GRID, "cell_mm": efdata.CELL_MM,
            "low_percentile": efdata.LOW_PERCENTILE, "high_percentile": efdata.HIGH_PERCENTILE,
            "clamp_low": efdata.CLAMP_LOW, "clamp_high": efdata.CLAMP_HIGH, "cell_threshold": CELL_THRESHOLD,
            "threshold_percent": THRESHOLD_PERCENT, "train_seeds": [TRAIN_SEEDS[0], TRAIN_SEEDS[-1]],
            "validation_seeds": [VALIDATION_SEEDS[0], VALIDATION_SEEDS[-1]], "parameters": params,
            "steps": args.steps, "train_seconds": round(train_seconds), "validation": summary}
    traced = torch.jit.trace(model, torch.zeros(1, 1, efdata.GRID, efdata.GRID))
    path = os.path.join(args.out, "ejection_fraction.pt")
    torch.jit.save(traced, path, _extra_files={"aihub_model.json": json.dumps(meta, sort_keys=True)})
    with open(os.path.join(args.out, "MODEL_VERSION"), "w") as f:
        f.write(MODEL_VERSION + "\n")
    loaded = torch.jit.load(path)
    x = torch.from_numpy(val[1]["x"][:, 0].astype(np.float32))[:, None]  # a batch of slices: any batch size
    with torch.no_grad():
        diff = (loaded(x) - model(x)).abs().max().item()
    print(f"exported {path} ({os.path.getsize(path)} bytes), max |scripted - eager| = {diff:.2e}")
    print(f"training: {args.steps} steps in {train_seconds:.0f} s on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    # TorchScript writes some module constants in set order, which follows Python's per-process string hashing: pin
    # the hash seed so the exported file is byte-identical from run to run (the weights are deterministic anyway).
    # (Kept down here: the export records the source lines of the model code, which must not move.)
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    main()
