// Reading an axial CT series through aihub::Job onto a model grid: suitability checks, in-plane mean pooling and
// overlap-weighted resampling along z. Header-only and free of libtorch, so plugins and their tests share it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "aihub/plugin.hpp"

namespace aihub_ref {

constexpr uint32_t kTagModality = 0x00080060;

// What an axial CT model accepts.
struct SeriesLimits {
  uint32_t min_slices = 10;
  uint32_t max_slices = 512;
  double min_slice_mm = 0;  // spacing between slices, from the sorted positions
  double max_slice_mm = 1e9;
};

inline std::string FormatNumber(double v, const char* fmt = "%.1f") {
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// Why `series` does not suit an axial monochrome CT model, or "" when it does: slice count, modality,
// photometric interpretation, pixel spacing, axial orientation (gantry tilt up to ~25 degrees), even spacing.
inline std::string CheckAxialCtSeries(const aihub::Job& job, uint32_t series, const SeriesLimits& limits) {
  const uint32_t frames = job.frame_count(series);
  if (frames < limits.min_slices) {
    return "series has " + std::to_string(frames) + " slices; at least " + std::to_string(limits.min_slices) +
           " needed";
  }
  if (frames > limits.max_slices) {
    return "series has " + std::to_string(frames) + " slices; at most " + std::to_string(limits.max_slices) +
           " supported";
  }
  const std::string modality = job.series_tag(series, kTagModality);
  if (!modality.empty() && modality != "CT") return "modality " + modality + " is not CT";
  const aihub_frame_geometry g = job.geometry(series, 0);
  if (g.samples_per_pixel != 1 ||
      (g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME1 && g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME2)) {
    return "photometric interpretation is not monochrome";
  }
  if (!(g.pixel_spacing[0] > 0 && g.pixel_spacing[1] > 0)) return "pixel spacing is missing";
  if (!g.has_position || std::fabs(g.orientation[0]) < 0.9 || std::fabs(g.orientation[4]) < 0.9) {
    return "series is not axial";
  }
  if (!(g.spacing_between_slices > 0)) return "slices are not evenly spaced along the slice normal";
  if (g.spacing_between_slices < limits.min_slice_mm || g.spacing_between_slices > limits.max_slice_mm) {
    return "slice spacing " + FormatNumber(g.spacing_between_slices, "%.2f") + " mm is outside the model's " +
           FormatNumber(limits.min_slice_mm, "%.2f") + "-" + FormatNumber(limits.max_slice_mm, "%.2f") + " mm";
  }
  return "";
}

// Pooling factor mapping rows x columns onto grid x grid, or 0 when the size cannot be mapped (not square, not
// a multiple of the grid, or more than 16 pixels per cell).
inline uint32_t PoolingFactor(uint32_t rows, uint32_t columns, uint32_t grid) {
  if (grid == 0 || rows != columns || rows < grid || rows % grid != 0) return 0;
  const uint32_t f = rows / grid;
  return f <= 16 ? f : 0;
}

// Mean of fn(pixel) over each factor x factor cell of a size x size slice, into out[grid * grid]. Sums in double,
// as numpy's mean(dtype=float64) in the training scripts.
template <typename Fn>
void PoolSlice(const float* pixels, uint32_t size, uint32_t factor, Fn fn, float* out) {
  const uint32_t grid = size / factor;
  const double cell = static_cast<double>(factor) * factor;
  for (uint32_t gr = 0; gr < grid; ++gr) {
    for (uint32_t gc = 0; gc < grid; ++gc) {
      double sum = 0;
      for (uint32_t dr = 0; dr < factor; ++dr) {
        const float* row = pixels + static_cast<size_t>(gr * factor + dr) * size + static_cast<size_t>(gc) * factor;
        for (uint32_t dc = 0; dc < factor; ++dc) sum += fn(row[dc]);
      }
      out[static_cast<size_t>(gr) * grid + gc] = static_cast<float>(sum / cell);
    }
  }
}

// Resampling along z onto cells of about cell_mm: the series' extent (slices x spacing) is cut into
// cells = max(1, round(extent / cell_mm)) equal cells, and each cell is the overlap-weighted mean of the input
// slices it covers. Mirrors z_weights() in the training scripts.
struct ZResampling {
  uint32_t cells = 0;
  double cell_mm = 0;  // actual cell height: extent / cells
  struct Share {
    uint32_t cell;
    double weight;  // fraction of the cell covered by the input slice
  };
  std::vector<std::vector<Share>> by_slice;  // for each input slice, the cells it contributes to
  std::vector<uint32_t> center_slice;        // for each cell, the input slice that contributes most
};

inline ZResampling MakeZResampling(uint32_t slices, double spacing_mm, double cell_mm) {
  ZResampling z;
  const double extent = slices * spacing_mm;
  z.cells = std::max<uint32_t>(1, static_cast<uint32_t>(std::floor(extent / cell_mm + 0.5)));
  z.cell_mm = extent / z.cells;
  z.by_slice.assign(slices, {});
  z.center_slice.assign(z.cells, 0);
  for (uint32_t j = 0; j < z.cells; ++j) {
    const double lo = j * z.cell_mm, hi = (j + 1) * z.cell_mm;
    const auto k0 = static_cast<uint32_t>(std::floor(lo / spacing_mm));
    const auto k1 = std::min<uint32_t>(slices - 1, static_cast<uint32_t>(std::ceil(hi / spacing_mm)) - 1);
    double best = -1;
    for (uint32_t k = k0; k <= k1 && k < slices; ++k) {
      const double w = std::max(0.0, std::min(hi, (k + 1) * spacing_mm) - std::max(lo, k * spacing_mm)) / z.cell_mm;
      z.by_slice[k].push_back({j, w});
      if (w > best) {
        best = w;
        z.center_slice[j] = k;
      }
    }
  }
  return z;
}

// Streams the frames of `series` in sorted order as modality values (HU for CT) into fn(index, pixels). Checks
// cancellation before each frame and reports progress from 0 to progress_end. Throws aihub::Error on cancel,
// NotApplicable when a frame's size differs from the first's.
template <typename Fn>
void ForEachFrame(const aihub::Job& job, uint32_t series, double progress_end, Fn fn) {
  const uint32_t frames = job.frame_count(series);
  const aihub_frame_geometry first = job.geometry(series, 0);
  std::vector<float> pixels;
  for (uint32_t k = 0; k < frames; ++k) {
    if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
    const aihub_frame_geometry g = job.geometry(series, k);
    if (g.rows != first.rows || g.columns != first.columns) throw aihub::NotApplicable("slices differ in size");
    job.read_frame(series, k, pixels);
    fn(k, static_cast<const std::vector<float>&>(pixels));
    job.progress(progress_end * (k + 1) / frames);
  }
}

}  // namespace aihub_ref
