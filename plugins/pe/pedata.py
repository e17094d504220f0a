"""Shared data code for the PE reference model: phantom generation, a minimal DICOM reader, the preprocessing that
the C++ plugin repeats (pe_model.cpp), and labels. Used by train.py and bench_accuracy.py.

Model grid: GRID x GRID in plane (128; 2.8 mm cells for a 360 mm field of view) and slices of CELL_Z_MM (3.125 mm)
along z. Preprocessing (must match pe_model.cpp):
  per pixel  v = clamp((HU - VESSEL_LO_HU) / (VESSEL_HI_HU - VESSEL_LO_HU), 0, 1)   (window [-200, 500] HU)
             l = 1 if HU < LUNG_HU else 0                                          (lung/air indicator, -500 HU)
             c = 1 if CLOT_LO_HU <= HU < CLOT_HI_HU else 0          (clot-density indicator, [-30, 120) HU)
             e = 1 if HU >= CONTRAST_HU else 0                     (contrast-density indicator, 180 HU)
  per slice  the maps mean-pooled by f x f, f = rows / GRID (rows == columns, a multiple of GRID)
  along z    the series' extent (slices x spacing) is cut into n = max(1, round(extent / CELL_Z_MM)) equal cells;
             each cell is the overlap-weighted mean of the input slices it covers (z_weights)
  volume     -> [1, 4, n, GRID, GRID] (channels v, l, c, e)
The pooled c and e are the shares of a cell's pixels at clot and at contrast density. A 2.8 mm cell on the edge of
a 5 mm lobar artery (contrast and lung) has about the mean density of a cell full of clot; the shares tell the two
apart (the edge cell has contrast and lung pixels, hardly any at clot density), which the mean alone cannot.
Output: softmax over CLASSES per model-grid voxel.
"""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "python"))
import phantom_dicom  # noqa: E402

GRID = 128
CELL_Z_MM = 3.125
VESSEL_LO_HU = -200.0
VESSEL_HI_HU = 500.0
LUNG_HU = -500.0
CLOT_LO_HU = -30.0
CLOT_HI_HU = 120.0
CONTRAST_HU = 180.0
CHANNELS = 4
BRANCHES = ["main", "right", "left", "right_upper_lobar", "right_middle_lobar", "right_lower_lobar",
            "left_upper_lobar", "left_lower_lobar"]
# Output classes: 0 background, 1 contrast-filled artery lumen, 2.. embolus by the branch level it sits in.
CLASSES = ["background", "lumen", "clot_main", "clot_right", "clot_left", "clot_right_lobar", "clot_left_lobar"]


def clot_class(branch):
    if branch == "main":
        return 2
    if branch == "right":
        return 3
    if branch == "left":
        return 4
    return 5 if branch.startswith("right_") else 6


def read_dicom_slice(path):
    """(z, row spacing, HU float32 array) of one phantom slice."""
    hu, tags = phantom_dicom.read(path)
    return phantom_dicom.ds(tags, 0x00200032, index=2), phantom_dicom.ds(tags, 0x00280030), hu


def read_series(folder):
    """All .dcm slices of a folder sorted by z (as the host sorts them): (HU [slices, rows, cols], dz, pixel mm)."""
    files = sorted(n for n in os.listdir(folder) if n.endswith(".dcm"))
    slices = sorted((read_dicom_slice(os.path.join(folder, n)) for n in files), key=lambda s: s[0])
    dz = (slices[-1][0] - slices[0][0]) / (len(slices) - 1)
    return np.stack([s[2] for s in slices]), dz, slices[0][1]


def z_weights(slices, dz):
    """[n, slices] overlap weights of input slices in each model-grid z cell (rows sum to 1)."""
    extent = slices * dz
    n = max(1, int(np.floor(extent / CELL_Z_MM + 0.5)))
    cz = extent / n
    w = np.zeros((n, slices), dtype=np.float64)
    for j in range(n):
        lo, hi = j * cz, (j + 1) * cz
        k0, k1 = int(np.floor(lo / dz)), min(slices - 1, int(np.ceil(hi / dz)) - 1)
        for k in range(k0, k1 + 1):
            w[j, k] = max(0.0, min(hi, (k + 1) * dz) - max(lo, k * dz)) / cz
    return w


def pool_plane(a):
    s, rows, _ = a.shape
    f = rows // GRID
    return a.reshape(s, GRID, f, GRID, f).mean(axis=(2, 4), dtype=np.float64)


def preprocess(hu, dz):
    """HU volume [slices, rows, cols] -> model input float32 [4, n, GRID, GRID] (see the module comment)."""
    s, rows, cols = hu.shape
    if rows != cols or rows % GRID != 0:
        raise ValueError(f"unsupported image size {rows}x{cols}")
    v = np.clip((hu - np.float32(VESSEL_LO_HU)) / np.float32(VESSEL_HI_HU - VESSEL_LO_HU), 0, 1)
    lung = (hu < LUNG_HU).astype(np.float32)
    clot = ((hu >= CLOT_LO_HU) & (hu < CLOT_HI_HU)).astype(np.float32)
    contrast = (hu >= CONTRAST_HU).astype(np.float32)
    w = z_weights(s, dz)
    out = [np.tensordot(w, pool_plane(c), axes=(1, 0)) for c in (v, lung, clot, contrast)]
    return np.stack(out).astype(np.float32)


def labels(mask, dz):
    """Label mask [slices, rows, cols] (1 embolus, 2 lumen) -> (lumen, clot) fractions float32 [n, GRID, GRID]."""
    w = z_weights(mask.shape[0], dz)
    return tuple(np.tensordot(w, pool_plane((mask == v).astype(np.float32)), axes=(1, 0)).astype(np.float32)
                 for v in (2, 1))


def generate(phantom, out_dir, seed, branch, size=512, slices=200, mask_out=None):
    """Runs aihub-phantom; branch None = no embolus. Returns the study folder."""
    cmd = [phantom, "ctpa", "--out", out_dir, "--seed", str(seed), "--size", str(size), "--slices", str(slices)]
    cmd += ["--embolus", "none"] if branch is None else ["--embolus", "present", "--branch", branch]
    if mask_out:
        cmd += ["--mask-out", mask_out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    folders = [d for d in os.listdir(out_dir) if d.startswith(f"ctpa-s{seed}-") and
               os.path.isdir(os.path.join(out_dir, d))]
    want = "ctpa-s%d-%s" % (seed, "none" if branch is None else "pe-")
    match = [d for d in folders if d.startswith(want) if branch is not None or d == want]
    if len(match) != 1:
        raise RuntimeError(f"cannot find the phantom folder for seed {seed} in {out_dir}: {folders}")
    return os.path.join(out_dir, match[0])


def read_mask(path):
    with open(path + ".json") as f:
        shape = json.load(f)["shape"]
    return np.fromfile(path, dtype=np.uint8).reshape(shape)


def load_truth(folder):
    with open(os.path.join(folder, "truth.json")) as f:
        return json.load(f)
