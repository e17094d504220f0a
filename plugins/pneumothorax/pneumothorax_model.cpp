#include "pneumothorax_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <stdexcept>
#include <utility>

#include "aihub_ref/contour.h"

namespace aihub::pneumothorax {
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

// One axis of the area average: native pixel k overlaps at most two cells (n >= grid); `first[k]` is the first
// cell and `weight[k]` the fraction of the pixel in it (the rest goes to first[k] + 1).
struct AxisMap {
  std::vector<uint32_t> first;
  std::vector<double> weight;
  double scale = 1;  // native pixels per cell
};

AxisMap MapAxis(uint32_t n, uint32_t grid) {
  AxisMap m;
  m.scale = static_cast<double>(n) / grid;
  m.first.resize(n);
  m.weight.resize(n);
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t cell = std::min<uint32_t>(static_cast<uint32_t>(k / m.scale), grid - 1);
    const double boundary = (cell + 1) * m.scale;  // native coordinate where the next cell starts
    m.first[k] = cell;
    m.weight[k] = cell + 1 < grid ? std::clamp(boundary - k, 0.0, 1.0) : 1.0;
  }
  return m;
}

// Directions on the grid of cell corners (x right, y down), clockwise: east, south, west, north.
constexpr std::array<int, 4> kDx{1, 0, -1, 0};
constexpr std::array<int, 4> kDy{0, 1, 0, -1};

// Outer boundary of a 4-connected set of cells (`in` is rows x columns), as corner points, clockwise with the
// region on the right; turns right first at corners where two diagonal cells meet, so it stays 4-connected.
std::vector<float> TraceOutline(const std::vector<uint8_t>& in, uint32_t rows, uint32_t columns) {
  const auto inside = [&](int64_t r, int64_t c) {
    return r >= 0 && c >= 0 && r < rows && c < columns && in[static_cast<size_t>(r) * columns + c];
  };
  // Start: the top edge of the first cell in row-major order (the top-left corner is on the outer boundary).
  size_t start = in.size();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i]) {
      start = i;
      break;
    }
  }
  std::vector<float> points;
  if (start == in.size()) return points;
  const int64_t x0 = static_cast<int64_t>(start % columns), y0 = static_cast<int64_t>(start / columns);
  // An edge from corner (x, y) in direction d bounds the region when the cell on its right is inside and the
  // cell on its left is outside. Cell to the right of east is (y, x), of south (y, x - 1), of west (y - 1, x - 1),
  // of north (y - 1, x); to the left: east (y - 1, x), south (y, x), west (y, x - 1), north (y - 1, x - 1).
  const auto is_edge = [&](int64_t x, int64_t y, int d) {
    static constexpr std::array<std::array<int, 2>, 4> kRight{{{0, 0}, {0, -1}, {-1, -1}, {-1, 0}}};
    static constexpr std::array<std::array<int, 2>, 4> kLeft{{{-1, 0}, {0, 0}, {0, -1}, {-1, -1}}};
    return inside(y + kRight[d][0], x + kRight[d][1]) && !inside(y + kLeft[d][0], x + kLeft[d][1]);
  };
  int64_t x = x0, y = y0;
  int d = 0;
  const size_t limit = 4 * in.size() + 8;
  for (size_t step = 0; step < limit; ++step) {
    points.push_back(static_cast<float>(x));
    points.push_back(static_cast<float>(y));
    x += kDx[d];
    y += kDy[d];
    if (x == x0 && y == y0) break;
    for (int turn : {1, 0, 3}) {  // right, straight, left
      const int nd = (d + turn) % 4;
      if (is_edge(x, y, nd)) {
        d = nd;
        break;
      }
    }
  }
  // Drop corners where the direction does not change.
  std::vector<float> corners;
  const size_t n = points.size() / 2;
  for (size_t i = 0; i < n; ++i) {
    const size_t p = (i + n - 1) % n, q = (i + 1) % n;
    const float ax = points[2 * i] - points[2 * p], ay = points[2 * i + 1] - points[2 * p + 1];
    const float bx = points[2 * q] - points[2 * i], by = points[2 * q + 1] - points[2 * i + 1];
    if (ax * by - ay * bx != 0) {
      corners.push_back(points[2 * i]);
      corners.push_back(points[2 * i + 1]);
    }
  }
  return corners;
}

// Largest 4-connected component of `mask` (rows x columns).
std::vector<uint8_t> LargestComponent(const std::vector<uint8_t>& mask, uint32_t rows, uint32_t columns) {
  std::vector<int32_t> label(mask.size(), -1);
  std::vector<size_t> stack;
  int32_t best = -1, next = 0;
  size_t best_size = 0;
  for (size_t i = 0; i < mask.size(); ++i) {
    if (!mask[i] || label[i] >= 0) continue;
    size_t size = 0;
    label[i] = next;
    stack.push_back(i);
    while (!stack.empty()) {
      const size_t j = stack.back();
      stack.pop_back();
      ++size;
      const uint32_t r = static_cast<uint32_t>(j / columns), c = static_cast<uint32_t>(j % columns);
      const size_t neighbours[4] = {r > 0 ? j - columns : j, r + 1 < rows ? j + columns : j, c > 0 ? j - 1 : j,
                                    c + 1 < columns ? j + 1 : j};
      for (size_t k : neighbours) {
        if (mask[k] && label[k] < 0) {
          label[k] = next;
          stack.push_back(k);
        }
      }
    }
    if (size > best_size) {
      best_size = size;
      best = next;
    }
    ++next;
  }
  std::vector<uint8_t> out(mask.size(), 0);
  for (size_t i = 0; i < mask.size(); ++i) out[i] = label[i] == best && best >= 0;
  return out;
}

}  // namespace

std::string ParseModelMetadata(const std::string& json, ModelSpec& out) {
  ModelSpec spec = out;  // `out` changes only when every value is valid
  spec.grid_rows = static_cast<uint32_t>(Number(json, "grid_rows", spec.grid_rows, 16, 2048));
  spec.grid_columns = static_cast<uint32_t>(Number(json, "grid_columns", spec.grid_columns, 16, 2048));
  if (spec.grid_rows % 8 != 0 || spec.grid_columns % 8 != 0) {
    throw std::invalid_argument("model metadata: the grid must be a multiple of 8");
  }
  spec.low_percentile = Number(json, "low_percentile", spec.low_percentile, 0, 0.5);
  spec.high_percentile = Number(json, "high_percentile", spec.high_percentile, 0.5, 1);
  spec.top_k = static_cast<uint32_t>(Number(json, "top_k", spec.top_k, 1, 100000));
  spec.cell_threshold = Number(json, "cell_threshold", spec.cell_threshold, 0, 1);
  spec.threshold = Number(json, "threshold", spec.threshold, 0, 1);
  out = spec;
  return JsonValue(json, "model_version");
}

std::vector<float> ResampleToGrid(const float* image, uint32_t rows, uint32_t columns, uint32_t grid_rows,
                                  uint32_t grid_columns) {
  if (grid_rows == 0 || grid_columns == 0 || rows < grid_rows || columns < grid_columns) {
    throw std::invalid_argument("image is smaller than the model grid");
  }
  const AxisMap mr = MapAxis(rows, grid_rows), mc = MapAxis(columns, grid_columns);
  std::vector<double> sums(static_cast<size_t>(grid_rows) * grid_columns, 0.0), line(grid_columns);
  for (uint32_t r = 0; r < rows; ++r) {
    std::fill(line.begin(), line.end(), 0.0);
    const float* row = image + static_cast<size_t>(r) * columns;
    for (uint32_t c = 0; c < columns; ++c) {
      const double v = row[c], w = mc.weight[c];
      line[mc.first[c]] += v * w;
      if (w < 1) line[mc.first[c] + 1] += v * (1 - w);
    }
    const double w = mr.weight[r];
    double* out = sums.data() + static_cast<size_t>(mr.first[r]) * grid_columns;
    for (uint32_t j = 0; j < grid_columns; ++j) out[j] += line[j] * w;
    if (w < 1) {
      double* below = out + grid_columns;
      for (uint32_t j = 0; j < grid_columns; ++j) below[j] += line[j] * (1 - w);
    }
  }
  std::vector<float> grid(sums.size());
  const double area = mr.scale * mc.scale;
  for (size_t i = 0; i < sums.size(); ++i) grid[i] = static_cast<float>(sums[i] / area);
  return grid;
}

void Normalise(std::vector<float>& grid, const ModelSpec& spec, bool monochrome1) {
  if (grid.empty()) return;
  std::vector<float> sorted(grid);
  const size_t n = sorted.size();
  const auto rank = [&](double p) {
    const size_t k = static_cast<size_t>(std::floor(p * static_cast<double>(n - 1)));
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k), sorted.end());
    return sorted[k];
  };
  const float lo = rank(spec.low_percentile), hi = rank(spec.high_percentile);
  const float range = std::max(hi - lo, 1e-6f);
  for (float& v : grid) {
    const float x = std::clamp((v - lo) / range, 0.0f, 1.0f);
    v = monochrome1 ? 1 - x : x;
  }
}

Analysis Analyze(const std::vector<float>& prob, const ModelSpec& spec) {
  const uint32_t rows = spec.grid_rows, columns = spec.grid_columns;
  const size_t n = static_cast<size_t>(rows) * columns;
  if (prob.size() != 2 * n || n == 0) throw std::invalid_argument("probability map size does not match the grid");
  Analysis a;
  // Presence score: mean of the top_k pneumothorax probabilities (one cell alone is too noisy to decide on).
  const size_t k = std::min<size_t>(spec.top_k, n);
  std::vector<float> top(prob.begin(), prob.begin() + static_cast<std::ptrdiff_t>(n));
  std::nth_element(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(k - 1), top.end(), std::greater<float>());
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += top[i];
  a.score = std::clamp(sum / k, 0.0, 1.0);
  a.present = a.score >= spec.threshold;

  const float t = static_cast<float>(spec.cell_threshold);
  std::vector<uint8_t> ptx(n), field(n);
  std::vector<uint32_t> field_columns;
  for (size_t i = 0; i < n; ++i) {
    ptx[i] = prob[i] >= t;
    field[i] = ptx[i] || prob[n + i] >= t;
    if (field[i]) field_columns.push_back(static_cast<uint32_t>(i % columns));
  }
  a.midline_column = (columns - 1) / 2.0;
  if (field_columns.size() >= 100) {
    std::sort(field_columns.begin(), field_columns.end());
    const size_t m = field_columns.size() - 1;
    a.midline_column =
        0.5 * (field_columns[static_cast<size_t>(0.01 * m)] + field_columns[static_cast<size_t>(0.99 * m)]);
  }
  const auto half = [&](size_t i) {  // -1 image left of the midline, +1 right, 0 on it
    const double c = static_cast<double>(i % columns);
    return c < a.midline_column ? -1 : (c > a.midline_column ? 1 : 0);
  };
  uint64_t left = 0, right = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!ptx[i]) continue;
    const int h = half(i);
    left += h < 0;
    right += h > 0;
  }
  if (left == 0 && right == 0) return a;
  int keep = 0;  // the half (or 0: both) the measurement and region are taken from
  if (2 * std::min(left, right) >= std::max(left, right)) {
    a.side = ImageSide::kBoth;
  } else if (left > right) {
    a.side = ImageSide::kLeft;
    keep = -1;
  } else {
    a.side = ImageSide::kRight;
    keep = 1;
  }
  std::vector<uint8_t> region(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const bool on_side = keep == 0 ? half(i) != 0 : half(i) == keep;
    if (!on_side) continue;
    a.hemithorax_cells += field[i];
    a.pneumothorax_cells += ptx[i];
    region[i] = ptx[i];
  }
  a.size_percent = a.hemithorax_cells ? 100.0 * a.pneumothorax_cells / a.hemithorax_cells : 0;
  a.contour = aihub_ref::SimplifyClosedPolygon(TraceOutline(LargestComponent(region, rows, columns), rows, columns), 0.75);
  return a;
}

}  // namespace aihub::pneumothorax
