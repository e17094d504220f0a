#include "detector.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace aihub::hyperdensity {
namespace {

// Intracranial mask of one slice, with voxels within `rim_mm` of bone removed; returns the intracranial area
// in pixels (before the rim is removed) and adds the mask's column sum to `column_sum`.
uint64_t IntracranialMask(const float* hu, uint32_t cols, uint32_t rows, double cs, double rs,
                          const DetectorConfig& config, std::vector<uint8_t>& mask, std::vector<float>& dist,
                          std::vector<uint32_t>& stack, double& column_sum) {
  const size_t n = static_cast<size_t>(cols) * rows;
  // 0 = unknown non-bone, 1 = bone, 2 = reached from the border (outside the head).
  mask.assign(n, 0);
  const float bone = static_cast<float>(config.bone_min_hu);
  for (size_t i = 0; i < n; ++i) mask[i] = hu[i] >= bone ? 1 : 0;
  stack.clear();
  const auto seed = [&](uint32_t c, uint32_t r) {
    const size_t i = static_cast<size_t>(r) * cols + c;
    if (mask[i] == 0) {
      mask[i] = 2;
      stack.push_back(static_cast<uint32_t>(i));
    }
  };
  for (uint32_t c = 0; c < cols; ++c) {
    seed(c, 0);
    seed(c, rows - 1);
  }
  for (uint32_t r = 0; r < rows; ++r) {
    seed(0, r);
    seed(cols - 1, r);
  }
  while (!stack.empty()) {
    const uint32_t i = stack.back();
    stack.pop_back();
    const uint32_t c = i % cols, r = i / cols;
    if (c > 0) seed(c - 1, r);
    if (c + 1 < cols) seed(c + 1, r);
    if (r > 0) seed(c, r - 1);
    if (r + 1 < rows) seed(c, r + 1);
  }

  // Chamfer distance (mm) to the nearest bone pixel, two passes, 8 neighbours weighted by the spacings.
  const float inf = std::numeric_limits<float>::max() / 4;
  const float wc = static_cast<float>(cs), wr = static_cast<float>(rs);
  const float wd = static_cast<float>(std::sqrt(cs * cs + rs * rs));
  dist.resize(n);
  for (size_t i = 0; i < n; ++i) dist[i] = mask[i] == 1 ? 0 : inf;
  for (uint32_t r = 0; r < rows; ++r) {
    for (uint32_t c = 0; c < cols; ++c) {
      float& d = dist[static_cast<size_t>(r) * cols + c];
      if (c > 0) d = std::min(d, dist[static_cast<size_t>(r) * cols + c - 1] + wc);
      if (r > 0) {
        const float* up = &dist[static_cast<size_t>(r - 1) * cols];
        d = std::min(d, up[c] + wr);
        if (c > 0) d = std::min(d, up[c - 1] + wd);
        if (c + 1 < cols) d = std::min(d, up[c + 1] + wd);
      }
    }
  }
  for (uint32_t r = rows; r-- > 0;) {
    for (uint32_t c = cols; c-- > 0;) {
      float& d = dist[static_cast<size_t>(r) * cols + c];
      if (c + 1 < cols) d = std::min(d, dist[static_cast<size_t>(r) * cols + c + 1] + wc);
      if (r + 1 < rows) {
        const float* down = &dist[static_cast<size_t>(r + 1) * cols];
        d = std::min(d, down[c] + wr);
        if (c > 0) d = std::min(d, down[c - 1] + wd);
        if (c + 1 < cols) d = std::min(d, down[c + 1] + wd);
      }
    }
  }

  // 1 = intracranial beyond the rim; everything else 0.
  uint64_t area = 0;
  const float rim = static_cast<float>(config.rim_mm);
  for (size_t i = 0; i < n; ++i) {
    const bool inside = mask[i] == 0;
    if (inside) {
      ++area;
      column_sum += static_cast<double>(i % cols);
    }
    mask[i] = inside && dist[i] > rim ? 1 : 0;
  }
  return area;
}

// Moore-neighbour tracing of the outer boundary of the 8-connected blob containing `start`, which must be the
// blob's first pixel in raster order. Returns pixel indices in clockwise order (screen coordinates).
std::vector<uint32_t> TraceBoundary(const std::vector<uint8_t>& fg, uint32_t cols, uint32_t rows, uint32_t start) {
  static const int kDc[8] = {-1, -1, 0, 1, 1, 1, 0, -1};  // W, NW, N, NE, E, SE, S, SW
  static const int kDr[8] = {0, -1, -1, -1, 0, 1, 1, 1};
  const auto on = [&](long c, long r) {
    return c >= 0 && r >= 0 && c < static_cast<long>(cols) && r < static_cast<long>(rows) &&
           fg[static_cast<size_t>(r) * cols + c] != 0;
  };
  std::vector<uint32_t> out{start};
  long c = start % cols, r = start / cols;
  int back = 0;  // direction from the current pixel to the background pixel we came from (W of the start)
  const size_t limit = 4 * fg.size() + 16;
  for (size_t step = 0; step < limit; ++step) {
    int found = -1;
    for (int i = 1; i <= 8; ++i) {
      const int d = (back + i) % 8;
      if (on(c + kDc[d], r + kDr[d])) {
        found = d;
        break;
      }
    }
    if (found < 0) break;  // a single pixel
    const int prev = (found + 7) % 8;
    const long pc = c + kDc[prev], pr = r + kDr[prev];
    c += kDc[found];
    r += kDr[found];
    back = 0;
    for (int d = 0; d < 8; ++d) {
      if (c + kDc[d] == pc && r + kDr[d] == pr) back = d;
    }
    const uint32_t index = static_cast<uint32_t>(r * cols + c);
    if (index == start && back == 0) break;  // entered the start as at the beginning (Jacob's criterion)
    out.push_back(index);
  }
  return out;
}

// Contour of the largest 8-connected piece of `fg`, as (column, row) pixel-centre pairs, without collinear
// points, at most 4096 points.
std::vector<float> LargestPieceContour(std::vector<uint8_t>& fg, uint32_t cols, uint32_t rows) {
  const size_t n = fg.size();
  std::vector<uint32_t> piece(n, 0), stack;
  uint32_t best_label = 0, label = 0;
  uint64_t best_size = 0;
  uint32_t best_start = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!fg[i] || piece[i]) continue;
    ++label;
    uint64_t size = 0;
    piece[i] = label;
    stack.assign(1, static_cast<uint32_t>(i));
    while (!stack.empty()) {
      const uint32_t j = stack.back();
      stack.pop_back();
      ++size;
      const long c = j % cols, r = j / cols;
      for (long dr = -1; dr <= 1; ++dr) {
        for (long dc = -1; dc <= 1; ++dc) {
          const long cc = c + dc, rr = r + dr;
          if (cc < 0 || rr < 0 || cc >= static_cast<long>(cols) || rr >= static_cast<long>(rows)) continue;
          const size_t k = static_cast<size_t>(rr) * cols + cc;
          if (fg[k] && !piece[k]) {
            piece[k] = label;
            stack.push_back(static_cast<uint32_t>(k));
          }
        }
      }
    }
    if (size > best_size) {
      best_size = size;
      best_label = label;
      best_start = static_cast<uint32_t>(i);  // raster order: the first pixel of its piece
    }
  }
  if (best_size == 0) return {};
  for (size_t i = 0; i < n; ++i) fg[i] = piece[i] == best_label ? 1 : 0;
  const std::vector<uint32_t> boundary = TraceBoundary(fg, cols, rows, best_start);

  std::vector<uint32_t> corners;
  for (size_t i = 0; i < boundary.size(); ++i) {
    const uint32_t a = boundary[(i + boundary.size() - 1) % boundary.size()], b = boundary[i],
                   c = boundary[(i + 1) % boundary.size()];
    const long d1c = static_cast<long>(b % cols) - static_cast<long>(a % cols);
    const long d1r = static_cast<long>(b / cols) - static_cast<long>(a / cols);
    const long d2c = static_cast<long>(c % cols) - static_cast<long>(b % cols);
    const long d2r = static_cast<long>(c / cols) - static_cast<long>(b / cols);
    if (boundary.size() < 3 || d1c != d2c || d1r != d2r) corners.push_back(b);
  }
  const size_t stride = corners.size() / 4096 + 1;
  std::vector<float> points;
  for (size_t i = 0; i < corners.size(); i += stride) {
    points.push_back(static_cast<float>(corners[i] % cols) + 0.5f);
    points.push_back(static_cast<float>(corners[i] / cols) + 0.5f);
  }
  return points;
}

}  // namespace

double ConfidenceFromVolume(double volume_ml, double min_volume_ml) {
  if (!(volume_ml > 0)) return 0;
  const double v2 = volume_ml * volume_ml;
  return v2 / (v2 + min_volume_ml * min_volume_ml);
}

std::string ValidateConfig(const DetectorConfig& c) {
  const auto bad = [](double v, double lo, double hi) { return !(std::isfinite(v) && v >= lo && v <= hi); };
  if (bad(c.min_volume_ml, 1e-3, 1000)) return "min_volume_ml must be in [0.001, 1000]";
  if (bad(c.min_component_ml, 0, 1000)) return "min_component_ml must be in [0, 1000]";
  if (bad(c.blood_min_hu, -100, 200) || bad(c.blood_max_hu, c.blood_min_hu, 300)) {
    return "blood_min_hu/blood_max_hu must satisfy -100 <= min <= max <= 300";
  }
  if (bad(c.bone_min_hu, c.blood_max_hu, 3000)) return "bone_min_hu must be in [blood_max_hu, 3000]";
  if (bad(c.rim_mm, 0, 50)) return "rim_mm must be in [0, 50]";
  if (bad(c.min_brain_area_mm2, 0, 1e6)) return "min_brain_area_mm2 must be in [0, 1e6]";
  if (bad(c.lateral_offset_mm, 0, 100)) return "lateral_offset_mm must be in [0, 100]";
  return "";
}

Detection Detect(const HuVolume& v, const DetectorConfig& config, const std::function<void(double)>& progress) {
  const size_t n = v.SliceVoxels();
  if (v.columns < 3 || v.rows < 3 || v.slices == 0 || v.hu.size() != n * v.slices) {
    throw std::invalid_argument("volume size does not match its dimensions");
  }
  if (!(v.column_spacing_mm > 0 && v.row_spacing_mm > 0 && v.slice_spacing_mm > 0)) {
    throw std::invalid_argument("voxel spacing must be positive");
  }
  const std::string invalid = ValidateConfig(config);
  if (!invalid.empty()) throw std::invalid_argument(invalid);

  const uint32_t cols = v.columns, rows = v.rows;
  const double pixel_mm2 = v.column_spacing_mm * v.row_spacing_mm;
  const double voxel_ml = pixel_mm2 * v.slice_spacing_mm / 1000;
  Detection result;

  // Candidates per slice; -1 marks a candidate not yet labelled.
  std::vector<int32_t> labels(n * v.slices, 0);
  std::vector<uint8_t> mask;
  std::vector<float> dist, mean(n);
  std::vector<uint32_t> stack;
  double column_sum = 0;
  uint64_t brain_pixels = 0;
  const float lo = static_cast<float>(config.blood_min_hu), hi = static_cast<float>(config.blood_max_hu);
  for (uint32_t k = 0; k < v.slices; ++k) {
    const float* hu = v.Slice(k);
    double slice_column_sum = 0;
    const uint64_t area = IntracranialMask(hu, cols, rows, v.column_spacing_mm, v.row_spacing_mm, config, mask, dist,
                                           stack, slice_column_sum);
    if (area * pixel_mm2 >= config.min_brain_area_mm2) {
      ++result.slices_with_brain;
      column_sum += slice_column_sum;
      brain_pixels += area;
      int32_t* out = labels.data() + k * n;
      for (uint32_t r = 1; r + 1 < rows; ++r) {
        for (uint32_t c = 1; c + 1 < cols; ++c) {
          const size_t i = static_cast<size_t>(r) * cols + c;
          if (!mask[i]) continue;
          float sum = 0;
          for (int dr = -1; dr <= 1; ++dr) {
            const float* row = hu + (static_cast<long>(r) + dr) * cols + c;
            sum += row[-1] + row[0] + row[1];
          }
          const float m = sum / 9;
          if (m >= lo && m <= hi) out[i] = -1;
        }
      }
    }
    if (progress) progress(0.8 * (k + 1) / v.slices);
  }
  result.midline_column = brain_pixels > 0 ? column_sum / brain_pixels : (cols - 1) / 2.0;
  // + toward the patient's left.
  const double side_sign = v.columns_toward_patient_left ? 1 : -1;

  // 3D components.
  std::vector<size_t> queue;
  std::vector<uint64_t> per_slice(v.slices);
  int32_t next_label = 0;
  struct Kept {
    Component component;
    int32_t label;
  };
  std::vector<Kept> kept;
  for (size_t start = 0; start < labels.size(); ++start) {
    if (labels[start] != -1) continue;
    const int32_t label = ++next_label;
    labels[start] = label;
    queue.assign(1, start);
    std::fill(per_slice.begin(), per_slice.end(), 0);
    double sc = 0, sr = 0, sk = 0;
    uint64_t count = 0;
    while (!queue.empty()) {
      const size_t i = queue.back();
      queue.pop_back();
      const uint32_t k = static_cast<uint32_t>(i / n);
      const uint32_t r = static_cast<uint32_t>(i % n / cols), c = static_cast<uint32_t>(i % cols);
      ++count;
      ++per_slice[k];
      sc += c;
      sr += r;
      sk += k;
      const auto visit = [&](size_t j) {
        if (labels[j] == -1) {
          labels[j] = label;
          queue.push_back(j);
        }
      };
      for (int dr = -1; dr <= 1; ++dr) {
        for (int dc = -1; dc <= 1; ++dc) {
          const long cc = static_cast<long>(c) + dc, rr = static_cast<long>(r) + dr;
          if ((dr || dc) && cc >= 0 && rr >= 0 && cc < static_cast<long>(cols) && rr < static_cast<long>(rows)) {
            visit(static_cast<size_t>(k) * n + static_cast<size_t>(rr) * cols + cc);
          }
        }
      }
      if (k > 0) visit(i - n);
      if (k + 1 < v.slices) visit(i + n);
    }
    const double volume = count * voxel_ml;
    if (volume < config.min_component_ml) continue;
    Component comp;
    comp.voxels = count;
    comp.volume_ml = volume;
    comp.centroid_column = sc / count;
    comp.centroid_row = sr / count;
    comp.centroid_slice = sk / count;
    comp.offset_mm = (comp.centroid_column - result.midline_column) * v.column_spacing_mm * side_sign;
    const auto best = std::max_element(per_slice.begin(), per_slice.end());
    comp.best_slice = static_cast<uint32_t>(best - per_slice.begin());
    comp.best_slice_voxels = *best;
    kept.push_back({std::move(comp), label});
    result.volume_ml += volume;
  }
  std::sort(kept.begin(), kept.end(),
            [](const Kept& a, const Kept& b) { return a.component.voxels > b.component.voxels; });

  if (!kept.empty()) {
    // Contour of the largest component on its largest slice.
    Component& largest = kept.front().component;
    std::vector<uint8_t> fg(n);
    const int32_t* slice_labels = labels.data() + largest.best_slice * n;
    for (size_t i = 0; i < n; ++i) fg[i] = slice_labels[i] == kept.front().label ? 1 : 0;
    largest.contour = LargestPieceContour(fg, cols, rows);

    if (std::fabs(largest.offset_mm) >= config.lateral_offset_mm) {
      result.laterality = largest.offset_mm > 0 ? Laterality::kLeft : Laterality::kRight;
    } else {
      double left = 0, right = 0;
      for (const Kept& k : kept) {
        if (k.component.offset_mm >= config.lateral_offset_mm) left += k.component.volume_ml;
        if (k.component.offset_mm <= -config.lateral_offset_mm) right += k.component.volume_ml;
      }
      if (left > 0 && left >= 2 * right) {
        result.laterality = Laterality::kLeft;
      } else if (right > 0 && right >= 2 * left) {
        result.laterality = Laterality::kRight;
      } else if (left > 0 && right > 0) {
        result.laterality = Laterality::kBilateral;
      }
    }
  }
  for (Kept& k : kept) result.components.push_back(std::move(k.component));
  result.present = result.volume_ml >= config.min_volume_ml;
  result.confidence = ConfidenceFromVolume(result.volume_ml, config.min_volume_ml);
  if (!result.present) result.laterality = Laterality::kNone;
  if (progress) progress(1.0);
  return result;
}

std::string RunSelfTest(const DetectorConfig& config) {
  // 64 x 64 pixels of 2 mm, 12 slices of 5 mm: an elliptic skull around 30 HU brain, and a 70 HU ball of
  // radius 9 mm on the patient's left (larger column, as with ImageOrientationPatient 1\0\0\0\1\0).
  HuVolume v;
  v.columns = v.rows = 64;
  v.slices = 12;
  v.column_spacing_mm = v.row_spacing_mm = 2;
  v.slice_spacing_mm = 5;
  v.hu.assign(v.SliceVoxels() * v.slices, -1000);
  uint64_t blob = 0;
  for (uint32_t k = 0; k < v.slices; ++k) {
    for (uint32_t r = 0; r < v.rows; ++r) {
      for (uint32_t c = 0; c < v.columns; ++c) {
        const double x = (c - 31.5) * 2, y = (r - 31.5) * 2, z = (k - 5.5) * 5;
        const double e = std::sqrt((x / 54) * (x / 54) + (y / 60) * (y / 60));
        float hu = -1000;
        if (e < 0.9) {
          hu = 30;
          if ((x - 20) * (x - 20) + y * y + z * z < 81) {
            hu = 70;
            ++blob;
          }
        } else if (e < 1.0) {
          hu = 1200;
        }
        v.hu[(static_cast<size_t>(k) * v.rows + r) * v.columns + c] = hu;
      }
    }
  }
  const double truth_ml = blob * 2 * 2 * 5 / 1000.0;
  const Detection d = Detect(v, config);
  if (!d.present) return "self-test: the known blob was not found";
  if (d.laterality != Laterality::kLeft) return "self-test: the known blob was not found on the left";
  if (std::fabs(d.volume_ml - truth_ml) > 0.35 * truth_ml) {
    return "self-test: volume " + std::to_string(d.volume_ml) + " mL, expected about " + std::to_string(truth_ml);
  }
  if (d.components.empty() || d.components.front().contour.size() < 6) return "self-test: no region contour";
  for (float& hu : v.hu) {
    if (hu == 70) hu = 30;
  }
  if (Detect(v, config).present) return "self-test: a finding on the volume without the blob";
  return "";
}

}  // namespace aihub::hyperdensity
