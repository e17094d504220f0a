"""Shared data code for the pneumothorax reference model: phantom generation, a minimal DICOM reader, the
preprocessing that the C++ plugin repeats exactly (pneumothorax_model.cpp), and the training labels.
Used by train.py and bench_accuracy.py.

Preprocessing (must match plugins/pneumothorax/pneumothorax_model.cpp):
  resample  area-average the native image (rows x columns, modality values) onto the model grid of
            GRID_ROWS x GRID_COLUMNS (256 x 208): output cell (i, j) is the mean of the native image over
            rows [i * rows / 256, (i + 1) * rows / 256) and columns [j * columns / 208, (j + 1) * columns / 208),
            partial pixels weighted by their overlap (separable; float64 sums, stored as float32)
  normalise lo, hi = the grid values at ranks floor(0.005 * (n - 1)) and floor(0.995 * (n - 1)) of the sorted grid
            x = clamp((v - lo) / (hi - lo), 0, 1); MONOCHROME1 images are inverted (x = 1 - x) so air is dark
  tensor    [1, 1, 256, 208]
Outputs: channel 0 = pneumothorax probability, channel 1 = lung-field (hemithorax) probability, per grid cell.
"""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "python"))
import phantom_dicom  # noqa: E402

GRID_ROWS = 256
GRID_COLUMNS = 208
LOW_PERCENTILE = 0.005
HIGH_PERCENTILE = 0.995

def read_dicom_image(path):
    """The modality values (float32) of the phantom's DX file."""
    return phantom_dicom.read(path)[0]


def _resample_axis(a, grid, axis):
    """Area average along `axis` onto `grid` cells via the running integral of the piecewise-constant image:
    cell i = (F(e[i + 1]) - F(e[i])) / (n / grid), e[i] = i * n / grid, F(x) = sum of the first x pixels."""
    a = np.moveaxis(a.astype(np.float64), axis, 0)
    n = a.shape[0]
    cum = np.concatenate([np.zeros((1,) + a.shape[1:]), np.cumsum(a, axis=0)])
    edges = np.arange(grid + 1) * (n / grid)
    k = np.minimum(np.floor(edges).astype(np.int64), n - 1)
    frac = (edges - k)[(slice(None),) + (None,) * (a.ndim - 1)]
    f = cum[k] + frac * a[k]
    return np.moveaxis((f[1:] - f[:-1]) / (n / grid), 0, axis)


def resample(image):
    """Native [rows, cols] -> grid [256, 208] by area averaging (float64 sums, float32 result)."""
    rows, cols = image.shape
    if rows < GRID_ROWS or cols < GRID_COLUMNS:
        raise ValueError(f"image {rows}x{cols} is smaller than the grid")
    return _resample_axis(_resample_axis(image, GRID_COLUMNS, 1), GRID_ROWS, 0).astype(np.float32)


def normalise(grid, monochrome1=False):
    flat = np.sort(grid.ravel())
    n = flat.size
    lo = flat[int(np.floor(LOW_PERCENTILE * (n - 1)))]
    hi = flat[int(np.floor(HIGH_PERCENTILE * (n - 1)))]
    x = np.clip((grid - lo) / max(hi - lo, np.float32(1e-6)), 0, 1).astype(np.float32)
    return 1 - x if monochrome1 else x


def preprocess(image, monochrome1=False):
    """Native modality values -> model input [1, 256, 208]."""
    return normalise(resample(image), monochrome1)[None]


def generate(phantom, out_dir, seed, present, side="left", size_percent=None, rows=2500, columns=2048, mask=None):
    """Runs aihub-phantom chest-xray; returns the study folder."""
    cmd = [phantom, "chest-xray", "--out", out_dir, "--seed", str(seed), "--rows", str(rows), "--columns",
           str(columns), "--pneumothorax", "present" if present else "none"]
    if present:
        cmd += ["--side", side]
        if size_percent is not None:
            cmd += ["--size-percent", f"{size_percent:.3f}"]
    if mask:
        cmd += ["--mask-out", mask]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return os.path.join(out_dir, f"chest-xray-s{seed}-" + (f"ptx-{side}" if present else "none"))


def load_truth(folder):
    with open(os.path.join(folder, "truth.json")) as f:
        return json.load(f)


# ---- lung-field labels -------------------------------------------------------------------------------------
# The phantom's label mask holds the pneumothorax only; the hemithorax (lung field) comes from the phantom's own
# geometry (tools/phantom/src/chest_xray.cpp: DrawAnatomy, Anatomy::LungMargin), re-evaluated here from the
# seed's anatomy stream. train.py checks the result against truth.json's hemithorax_pixels for every positive
# study, so a change in the phantom cannot silently corrupt the labels.

_M64 = (1 << 64) - 1


class _Mt19937_64:
    """std::mt19937_64."""

    def __init__(self, seed):
        self.mt = [seed & _M64]
        for i in range(1, 312):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & _M64)
        self.index = 312

    def __call__(self):
        if self.index >= 312:
            mt = self.mt
            for i in range(312):
                x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % 312] & 0x7FFFFFFF)
                xa = x >> 1
                if x & 1:
                    xa ^= 0xB5026F5AA96619E9
                mt[i] = mt[(i + 156) % 312] ^ xa
            self.index = 0
        x = self.mt[self.index]
        self.index += 1
        x ^= (x >> 29) & 0x5555555555555555
        x ^= (x << 17) & 0x71D67FFFEDA60000
        x ^= (x << 37) & 0xFFF7EEE000000000
        x ^= x >> 43
        return x & _M64


def _mix_seed(seed, stream):
    z = (seed + 0x9E3779B97F4A7C15 * (stream + 1)) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _anatomy(seed):
    engine = _Mt19937_64(_mix_seed(seed, 1))
    uniform = lambda lo, hi: lo + (hi - lo) * ((engine() >> 11) * (1.0 / 9007199254740992.0))
    a = {"s": uniform(0.93, 1.05), "ox": uniform(-6, 6), "oy": uniform(-8, 8)}
    a["dome"] = [282 + uniform(-6, 6), 294 + uniform(-6, 6)]
    a["heart"] = uniform(0.85, 1.15)
    return a


def _interp(table, x):
    xs, ys = np.array([t[0] for t in table]), np.array([t[1] for t in table])
    return np.interp(x, xs, ys)


_HALF_WIDTH = [(0, 52), (30, 56), (60, 112), (85, 160), (150, 157), (250, 150), (330, 146), (425, 150)]


def lung_field(seed, rows, cols):
    """uint8 [rows, cols]: 1 on the right lung field (image left), 2 on the left one, as the phantom paints them."""
    a = _anatomy(seed)
    sp = max(348.0 / cols, 425.0 / rows)
    width, height = cols * sp, rows * sp
    tx = ((np.arange(cols) + 0.5) * sp - width / 2 - a["ox"]) / a["s"]
    ty = ((np.arange(rows) + 0.5) * sp - (height - 425.0) / 2 - a["oy"] - 212.5) / a["s"] + 212.5
    x, y = np.meshgrid(tx, ty)
    u = np.abs(x)
    side = (x >= 0).astype(np.int64)  # 0 = right lung (image left)
    inside_body = u < _interp(_HALF_WIDTH, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.sqrt(((u - 74) / 62) ** 2 + ((y - 188) / 142) ** 2)
        m = np.where(rho > 1e-6, np.hypot(u - 74, y - 188) * (1 / rho - 1), 62.0)
    dome = np.where(side == 0, a["dome"][0], a["dome"][1]) + 0.0065 * (u - 62) ** 2
    m = np.minimum(m, dome - y)
    bump = lambda t: np.maximum(0.0, 1 - t * t)
    right_edge = 24 + 20 * np.where(y > 235, 1.0, bump((y - 235) / 55))
    left_edge = (22 + 10 * np.exp(-(((y - 112) / 16) ** 2)) + 5 * bump((y - 150) / 20) +
                 a["heart"] * 62 * np.where(y > 250, 1.0, np.power(bump((y - 250) / 85), 0.6)))
    m = np.minimum(m, u - np.where(side == 0, right_edge, left_edge))
    valid = (y >= 40) & (y <= 345) & (u >= 10) & (u <= 142) & (rho < 1) & inside_body & (m > 0)
    return np.where(valid, side + 1, 0).astype(np.uint8)
