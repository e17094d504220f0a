#include "ich_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "aihub_ref/model_metadata.h"

namespace aihub::ich {

std::string ParseModelMetadata(const std::string& json, ModelSpec& out) {
  using aihub_ref::JsonNumber;
  ModelSpec spec = out;  // `out` changes only when every value is valid
  // Models before ich-ref-2026.11.2 took two channels and did not say so.
  const auto channels = static_cast<uint32_t>(JsonNumber(json, "channels", 2, 1, 64));
  if (channels != kInputChannels) {
    throw std::invalid_argument("model metadata: the model takes " + std::to_string(channels) +
                                " input channels; this plugin prepares " + std::to_string(kInputChannels));
  }
  spec.grid = static_cast<uint32_t>(JsonNumber(json, "grid", spec.grid, 16, 1024));
  if (spec.grid % 4 != 0) throw std::invalid_argument("model metadata: grid must be a multiple of 4");
  spec.window_hu = JsonNumber(json, "window_hu", spec.window_hu, 1, 4000);
  spec.bone_hu = JsonNumber(json, "bone_hu", spec.bone_hu, 0, 4000);
  spec.blood_hu = JsonNumber(json, "blood_hu", spec.blood_hu, 0, 4000);
  if (!(spec.blood_hu < spec.bone_hu)) throw std::invalid_argument("model metadata: blood_hu must be below bone_hu");
  spec.top_k = static_cast<uint32_t>(JsonNumber(json, "top_k", spec.top_k, 1, 100000));
  spec.voxel_threshold = JsonNumber(json, "voxel_threshold", spec.voxel_threshold, 0, 1);
  const std::string mode = aihub_ref::JsonValue(json, "volume_mode");
  if (mode == "soft") {
    spec.volume_mode = VolumeMode::kSoft;
  } else if (mode == "count") {
    spec.volume_mode = VolumeMode::kCount;
  } else if (!mode.empty()) {
    throw std::invalid_argument("model metadata: bad volume_mode '" + mode + "' (count or soft)");
  }
  spec.volume_cut = JsonNumber(json, "volume_cut", spec.voxel_threshold, 0, 1);
  spec.threshold = JsonNumber(json, "threshold", spec.threshold, 0, 1);
  out = spec;
  return aihub_ref::JsonValue(json, "model_version");
}

void PreprocessSlice(const float* hu, uint32_t size, uint32_t factor, const ModelSpec& spec, float* out,
                     size_t channel_stride) {
  const auto window = static_cast<float>(spec.window_hu);
  const auto bone = static_cast<float>(spec.bone_hu);
  const auto blood = static_cast<float>(spec.blood_hu);
  aihub_ref::PoolSliceChannels<kInputChannels>(
      hu, size, factor,
      [&](float v) {
        return std::array<float, kInputChannels>{std::clamp(v / window, 0.0f, 1.0f), v >= bone ? 1.0f : 0.0f,
                                                 v >= blood && v < bone ? 1.0f : 0.0f};
      },
      out, channel_stride);
}

Analysis Analyze(const std::vector<float>& prob, const std::vector<float>& input, const GridGeometry& g,
                 const ModelSpec& spec, double lateral_offset_mm) {
  const size_t plane = static_cast<size_t>(g.grid) * g.grid;
  const size_t n = plane * g.slices;
  if (prob.size() != n || input.size() != kInputChannels * n || n == 0) {
    throw std::invalid_argument("probability map size does not match the grid");
  }
  Analysis a;
  // Presence score: mean of the top_k probabilities (a single voxel is too noisy to decide on).
  const size_t k = std::min<size_t>(spec.top_k, n);
  std::vector<float> top(prob);
  std::nth_element(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(k - 1), top.end(), std::greater<float>());
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += top[i];
  a.score = std::clamp(sum / k, 0.0, 1.0);
  a.present = a.score >= spec.threshold;

  // Head midline: mean column of head voxels.
  double head_columns = 0, head_count = 0;
  for (size_t i = 0; i < n; ++i) {
    if (input[i] > 0.2f || input[n + i] > 0) {
      head_columns += static_cast<double>(i % g.grid);
      head_count += 1;
    }
  }
  const double midline = head_count > 0 ? head_columns / head_count : (g.grid - 1) / 2.0;

  const float vt = static_cast<float>(spec.voxel_threshold);
  std::vector<uint64_t> per_slice(g.slices, 0);
  double column_sum = 0, volume_cells = 0;
  uint64_t left = 0, right = 0;
  const auto cut = static_cast<float>(spec.volume_cut);
  for (size_t i = 0; i < n; ++i) {
    if (prob[i] >= cut) volume_cells += spec.volume_mode == VolumeMode::kSoft ? prob[i] : 1.0;
    if (prob[i] < vt) continue;
    ++a.blood_voxels;
    ++per_slice[i / plane];
    const double c = static_cast<double>(i % g.grid);
    column_sum += c;
    const bool toward_left = (c > midline) == g.columns_toward_patient_left;
    if (c != midline) ++(toward_left ? left : right);
  }
  const double cell_mm = g.factor * g.column_spacing_mm * g.factor * g.row_spacing_mm;
  a.volume_ml = volume_cells * cell_mm * g.slice_spacing_mm / 1000.0;
  if (a.blood_voxels == 0) return a;

  const double centroid = column_sum / static_cast<double>(a.blood_voxels);
  a.offset_mm = (centroid - midline) * g.factor * g.column_spacing_mm * (g.columns_toward_patient_left ? 1 : -1);
  if (a.offset_mm > lateral_offset_mm) {
    a.side = Side::kLeft;
  } else if (a.offset_mm < -lateral_offset_mm) {
    a.side = Side::kRight;
  } else if (left >= 2 * right && left > 0) {
    a.side = Side::kLeft;
  } else if (right >= 2 * left && right > 0) {
    a.side = Side::kRight;
  } else {
    a.side = Side::kBilateral;
  }

  a.best_slice = static_cast<uint32_t>(std::max_element(per_slice.begin(), per_slice.end()) - per_slice.begin());
  uint32_t c0 = g.grid, r0 = g.grid, c1 = 0, r1 = 0;
  const float* p = prob.data() + plane * a.best_slice;
  for (uint32_t r = 0; r < g.grid; ++r) {
    for (uint32_t c = 0; c < g.grid; ++c) {
      if (p[static_cast<size_t>(r) * g.grid + c] < vt) continue;
      c0 = std::min(c0, c);
      c1 = std::max(c1, c);
      r0 = std::min(r0, r);
      r1 = std::max(r1, r);
    }
  }
  const float f = static_cast<float>(g.factor);
  a.box[0] = c0 * f;
  a.box[1] = r0 * f;
  a.box[2] = (c1 + 1) * f;
  a.box[3] = (r1 + 1) * f;
  return a;
}

}  // namespace aihub::ich
