"""Shared data code for the ICH reference model: phantom generation, a minimal DICOM reader, the preprocessing
that the C++ plugin repeats exactly, and blood labels. Used by train.py and bench_accuracy.py.

Preprocessing (must match plugins/ich/ich_model.cpp):
  per pixel  w = clamp(HU / 100, 0, 1)          (brain window [0, 100] HU)
             b = 1 if HU >= 300 else 0          (bone indicator; tells partial-volume skull edges from blood)
             d = 1 if 52 <= HU < 300 else 0     (blood-density indicator: acute blood 60-80 HU, grey matter <= 41)
  per slice  mean-pool the maps by f x f with f = rows / 128 (rows == columns, a multiple of 128: 128..1024)
  volume     all slices, in the series' sorted order -> tensor [1, 3, slices, 128, 128] (channels w, b, d)
The pooled d is the share of a cell's pixels at blood density: what the brain window's mean cannot tell apart
(a cell half filled with blood over CSF reads like grey matter) it can, which matters for thin subarachnoid blood.
"""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "python"))
import phantom_dicom  # noqa: E402

GRID = 128
WINDOW_HU = 100.0
BONE_HU = 300.0
BLOOD_HU = 52.0
CHANNELS = 3
TYPES = ["intraparenchymal", "subdural", "subarachnoid"]

def read_dicom_slice(path):
    """(z, HU array as float32) of one phantom slice."""
    hu, tags = phantom_dicom.read(path)
    return phantom_dicom.ds(tags, 0x00200032, index=2), hu


def read_series(folder):
    """All CT*.dcm slices of a folder sorted by z (as the host sorts them): float32 [slices, rows, cols]."""
    files = sorted(n for n in os.listdir(folder) if n.endswith(".dcm"))
    slices = sorted((read_dicom_slice(os.path.join(folder, n)) for n in files), key=lambda s: s[0])
    return np.stack([s[1] for s in slices])


def preprocess(hu):
    """HU volume [slices, rows, cols] -> model input [3, slices, 128, 128] (see the module comment)."""
    s, rows, cols = hu.shape
    if rows != cols or rows % GRID != 0:
        raise ValueError(f"unsupported image size {rows}x{cols}")
    f = rows // GRID
    w = np.clip(hu / np.float32(WINDOW_HU), 0, 1)
    b = (hu >= BONE_HU).astype(np.float32)
    d = ((hu >= BLOOD_HU) & (hu < BONE_HU)).astype(np.float32)
    pool = lambda a: a.reshape(s, GRID, f, GRID, f).mean(axis=(2, 4), dtype=np.float64).astype(np.float32)
    return np.stack([pool(w), pool(b), pool(d)])


def pool_mask(mask):
    s, rows, _ = mask.shape
    f = rows // GRID
    return mask.reshape(s, GRID, f, GRID, f).mean(axis=(2, 4)).astype(np.float32)


def generate(phantom, out_dir, seed, hemorrhage, side="left", size=512, slices=40):
    """Runs aihub-phantom; returns the study folder."""
    cmd = [phantom, "head-ct", "--out", out_dir, "--seed", str(seed), "--hemorrhage", hemorrhage, "--side", side,
           "--size", str(size), "--slices", str(slices)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    suffix = "none" if hemorrhage == "none" else f"{hemorrhage}-{side}"
    return os.path.join(out_dir, f"head-ct-s{seed}-{suffix}")


def blood_mask(positive_hu, negative_hu, truth):
    """Blood label at the native grid from a seed's pair of studies (identical anatomy and noise): per slice, the
    truth's voxel count of pixels with the largest positive difference. The difference is the painted blood
    blurred by the reconstruction kernel (edema only lowers HU), so its top-N pixels are the painted ones."""
    diff = positive_hu - negative_hu
    mask = np.zeros(diff.shape, dtype=np.uint8)
    for extent in truth["hemorrhage"].get("slices", []):
        k, n = extent["slice"], extent["voxels"]
        flat = diff[k].ravel()
        top = np.argpartition(-flat, n - 1)[:n]
        m = np.zeros(flat.shape, dtype=np.uint8)
        m[top] = 1
        mask[k] = m.reshape(diff[k].shape)
    return mask


def load_truth(folder):
    with open(os.path.join(folder, "truth.json")) as f:
        return json.load(f)
