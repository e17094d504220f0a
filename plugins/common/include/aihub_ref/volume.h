// Reading an axial CT series through aihub::Job: suitability checks and streaming the frames as HU (grid.h maps
// them onto a model grid). Header-only and free of libtorch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "aihub/plugin.hpp"
#include "aihub_ref/format.h"
#include "aihub_ref/grid.h"

namespace aihub_ref {

constexpr uint32_t kTagModality = 0x00080060;

// What an axial CT model accepts.
struct SeriesLimits {
  uint32_t min_slices = 10;
  uint32_t max_slices = 512;
  double min_slice_mm = 0;  // spacing between slices, from the sorted positions
  double max_slice_mm = 1e9;
};

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
