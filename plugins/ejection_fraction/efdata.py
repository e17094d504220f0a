"""Shared data code for the ejection-fraction reference model: phantom generation, a minimal DICOM reader, the
preprocessing that the C++ plugin repeats (ef_model.cpp) and the training labels. Used by train.py and
bench_accuracy.py.

Preprocessing (must match plugins/ejection_fraction/ef_model.cpp):
  grid      a GRID x GRID (128 x 128) grid of CELL_MM (1.6 mm) square cells centred on the image centre (204.8 mm
            field); cell (i, j) = area-weighted mean of the native image, each native pixel a constant square of
            (row spacing x column spacing) mm; the part of a cell outside the image counts as 0 (MR background).
            Separable: grid = Wr @ image @ Wc.T, Wr[i, p] = overlap of cell row i with pixel row p / CELL_MM.
            Float64 sums, stored as float32.
  normalise over the whole cine stack (all slices and phases on the grid): lo, hi = the values at ranks
            floor(LOW_PERCENTILE * (n - 1)) and floor(HIGH_PERCENTILE * (n - 1)) of the sorted values;
            x = clamp((v - lo) / (hi - lo), CLAMP_LOW, CLAMP_HIGH)
  tensor    [frames, 1, 128, 128] (any batch of frames)
Output: per cell the fraction of the cell that is left-ventricular blood pool (sigmoid), so sum(p) * CELL_MM^2 is
the cavity area in mm^2.
"""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "python"))
import phantom_dicom  # noqa: E402

GRID = 128
CELL_MM = 1.6
LOW_PERCENTILE = 0.01
HIGH_PERCENTILE = 0.99
CLAMP_LOW = -0.5
CLAMP_HIGH = 1.5

read_dicom = phantom_dicom.read  # (pixels float32 [rows, cols], tags) of one phantom MR file
ds = phantom_dicom.ds


def axis_weights(n, spacing_mm):
    """[GRID, n] float64: overlap of grid cell i with native pixel p along one axis, / CELL_MM. The grid is centred
    on the image centre; everything in pixel-edge coordinates (pixel p spans [p, p + 1))."""
    cell = CELL_MM / spacing_mm  # cell length in pixels
    start = n / 2 - GRID / 2 * cell
    w = np.zeros((GRID, n))
    for i in range(GRID):
        a, b = start + i * cell, start + (i + 1) * cell
        p0, p1 = max(0, int(np.floor(a))), min(n, int(np.ceil(b)))
        for p in range(p0, p1):
            w[i, p] = max(0.0, min(b, p + 1) - max(a, p)) / cell
    return w


def to_grid(image, row_spacing_mm, col_spacing_mm, weights=None):
    """Native [rows, cols] (or [k, rows, cols]) -> [GRID, GRID] (or [k, GRID, GRID]) float32."""
    rows, cols = image.shape[-2:]
    wr, wc = weights or (axis_weights(rows, row_spacing_mm), axis_weights(cols, col_spacing_mm))
    return np.matmul(np.matmul(wr, image.astype(np.float64)), wc.T).astype(np.float32)


def normalise(stack):
    """Grid stack (any shape) -> model input of the same shape (see the module comment)."""
    flat = np.sort(stack.ravel())
    n = flat.size
    lo = flat[int(np.floor(LOW_PERCENTILE * (n - 1)))]
    hi = flat[int(np.floor(HIGH_PERCENTILE * (n - 1)))]
    return np.clip((stack - lo) / max(hi - lo, np.float32(1e-6)), CLAMP_LOW, CLAMP_HIGH).astype(np.float32)


def generate(phantom, out_dir, seed, slices, phases, size, ef=None, mask=None):
    """Runs aihub-phantom cardiac-cine; returns the study folder."""
    cmd = [phantom, "cardiac-cine", "--out", out_dir, "--seed", str(seed), "--slices", str(slices), "--phases",
           str(phases), "--size", str(size)]
    if ef is not None:
        cmd += ["--ef", f"{ef:.2f}"]
    if mask:
        cmd += ["--mask-out", mask]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    name = f"cardiac-cine-s{seed}"
    if ef is not None:
        text = ("%.2f" % ef).rstrip("0").rstrip(".")
        name += "-ef" + text.replace(".", "p")
    folder = os.path.join(out_dir, name)
    if not os.path.isdir(folder):  # the folder name's number format is the phantom's: find it
        base = f"cardiac-cine-s{seed}"
        found = [d for d in os.listdir(out_dir) if d == base or d.startswith(base + "-")]
        if len(found) != 1:
            raise RuntimeError(f"cannot find the study folder of seed {seed} in {out_dir}")
        folder = os.path.join(out_dir, found[0])
    return folder


def load_truth(folder):
    with open(os.path.join(folder, "truth.json")) as f:
        return json.load(f)


def load_study(folder, truth, mask_file=None):
    """(x [slices, phases, GRID, GRID] model input, y [same] LV cavity fraction or None): frames read in
    InstanceNumber order (slice * phases + phase)."""
    slices, phases = truth["slices"], truth["phases"]
    images, spacing = [], None
    for k in range(slices):
        for p in range(phases):
            img, tags = read_dicom(os.path.join(folder, "MR%06d.dcm" % (k * phases + p + 1)))
            spacing = (ds(tags, 0x00280030, 0, 0), ds(tags, 0x00280030, 0, 1))
            images.append(img)
    stack = np.stack(images)
    rows, cols = stack.shape[1:]
    weights = (axis_weights(rows, spacing[0]), axis_weights(cols, spacing[1]))
    x = normalise(to_grid(stack, *spacing, weights=weights)).reshape(slices, phases, GRID, GRID)
    y = None
    if mask_file:
        mask = np.fromfile(mask_file, np.uint8).reshape(slices * phases, rows, cols) == 1
        y = to_grid(mask.astype(np.float32), *spacing, weights=weights).reshape(slices, phases, GRID, GRID)
    return x, y
