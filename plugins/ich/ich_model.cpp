#include "ich_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <stdexcept>

namespace aihub::ich {
namespace {

// Value of "key": in flat JSON as written by Python's json.dumps, or "" when absent. Strings lose their quotes.
std::string JsonValue(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  size_t i = at + needle.size();
  while (i < json.size() && json[i] == ' ') ++i;
  if (i < json.size() && json[i] == '"') {
    const size_t end = json.find('"', i + 1);
    return end == std::string::npos ? "" : json.substr(i + 1, end - i - 1);
  }
  size_t end = i;
  while (end < json.size() && json[end] != ',' && json[end] != '}' && json[end] != ']') ++end;
  return json.substr(i, end - i);
}

double Number(const std::string& json, const std::string& key, double fallback, double lo, double hi) {
  const std::string v = JsonValue(json, key);
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || !std::isfinite(d) || d < lo || d > hi) {
    throw std::invalid_argument("model metadata: bad " + key + " '" + v + "'");
  }
  return d;
}

}  // namespace

std::string ParseModelMetadata(const std::string& json, ModelSpec& out) {
  ModelSpec spec = out;  // `out` changes only when every value is valid
  spec.grid = static_cast<uint32_t>(Number(json, "grid", spec.grid, 16, 1024));
  if (spec.grid % 4 != 0) throw std::invalid_argument("model metadata: grid must be a multiple of 4");
  spec.window_hu = Number(json, "window_hu", spec.window_hu, 1, 4000);
  spec.bone_hu = Number(json, "bone_hu", spec.bone_hu, 0, 4000);
  spec.top_k = static_cast<uint32_t>(Number(json, "top_k", spec.top_k, 1, 100000));
  spec.voxel_threshold = Number(json, "voxel_threshold", spec.voxel_threshold, 0, 1);
  spec.threshold = Number(json, "threshold", spec.threshold, 0, 1);
  out = spec;
  return JsonValue(json, "model_version");
}

uint32_t PoolingFactor(uint32_t rows, uint32_t columns, uint32_t grid) {
  if (grid == 0 || rows != columns || rows < grid || rows % grid != 0) return 0;
  const uint32_t f = rows / grid;
  return f <= 16 ? f : 0;
}

void PreprocessSlice(const float* hu, uint32_t size, uint32_t factor, const ModelSpec& spec, float* window_out,
                     float* bone_out) {
  const uint32_t grid = size / factor;
  const float window = static_cast<float>(spec.window_hu);
  const float bone = static_cast<float>(spec.bone_hu);
  const double cell = static_cast<double>(factor) * factor;
  for (uint32_t gr = 0; gr < grid; ++gr) {
    for (uint32_t gc = 0; gc < grid; ++gc) {
      double w = 0, b = 0;  // double sums, as numpy's mean(dtype=float64) in ichdata.preprocess
      for (uint32_t dr = 0; dr < factor; ++dr) {
        const float* row = hu + static_cast<size_t>(gr * factor + dr) * size + gc * factor;
        for (uint32_t dc = 0; dc < factor; ++dc) {
          w += std::clamp(row[dc] / window, 0.0f, 1.0f);
          b += row[dc] >= bone ? 1.0 : 0.0;
        }
      }
      window_out[static_cast<size_t>(gr) * grid + gc] = static_cast<float>(w / cell);
      bone_out[static_cast<size_t>(gr) * grid + gc] = static_cast<float>(b / cell);
    }
  }
}

Analysis Analyze(const std::vector<float>& prob, const std::vector<float>& input, const GridGeometry& g,
                 const ModelSpec& spec, double lateral_offset_mm) {
  const size_t plane = static_cast<size_t>(g.grid) * g.grid;
  const size_t n = plane * g.slices;
  if (prob.size() != n || input.size() != 2 * n || n == 0) {
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
  double column_sum = 0;
  uint64_t left = 0, right = 0;
  for (size_t i = 0; i < n; ++i) {
    if (prob[i] < vt) continue;
    ++a.blood_voxels;
    ++per_slice[i / plane];
    const double c = static_cast<double>(i % g.grid);
    column_sum += c;
    const bool toward_left = (c > midline) == g.columns_toward_patient_left;
    if (c != midline) ++(toward_left ? left : right);
  }
  const double cell_mm = g.factor * g.column_spacing_mm * g.factor * g.row_spacing_mm;
  a.volume_ml = static_cast<double>(a.blood_voxels) * cell_mm * g.slice_spacing_mm / 1000.0;
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
