#include "pe_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "aihub_ref/components.h"
#include "aihub_ref/contour.h"
#include "aihub_ref/grid.h"
#include "aihub_ref/model_metadata.h"

namespace aihub::pe {

std::string ParseModelMetadata(const std::string& json, ModelSpec& out) {
  using aihub_ref::JsonNumber;
  ModelSpec spec = out;  // `out` changes only when every value is valid
  // Models before pe-ref-2026.11.3 took two channels and did not say so.
  const auto channels = static_cast<uint32_t>(JsonNumber(json, "channels", 2, 1, 64));
  if (channels != kInputChannels) {
    throw std::invalid_argument("model metadata: the model takes " + std::to_string(channels) +
                                " input channels; this plugin prepares " + std::to_string(kInputChannels));
  }
  spec.grid = static_cast<uint32_t>(JsonNumber(json, "grid", spec.grid, 16, 1024));
  if (spec.grid % 4 != 0) throw std::invalid_argument("model metadata: grid must be a multiple of 4");
  spec.cell_z_mm = JsonNumber(json, "cell_z_mm", spec.cell_z_mm, 0.25, 20);
  spec.vessel_lo_hu = JsonNumber(json, "vessel_lo_hu", spec.vessel_lo_hu, -2000, 4000);
  spec.vessel_hi_hu = JsonNumber(json, "vessel_hi_hu", spec.vessel_hi_hu, -2000, 4000);
  if (!(spec.vessel_hi_hu > spec.vessel_lo_hu)) {
    throw std::invalid_argument("model metadata: vessel_hi_hu must exceed vessel_lo_hu");
  }
  spec.lung_hu = JsonNumber(json, "lung_hu", spec.lung_hu, -2000, 4000);
  spec.clot_lo_hu = JsonNumber(json, "clot_lo_hu", spec.clot_lo_hu, -2000, 4000);
  spec.clot_hi_hu = JsonNumber(json, "clot_hi_hu", spec.clot_hi_hu, -2000, 4000);
  if (!(spec.clot_hi_hu > spec.clot_lo_hu)) {
    throw std::invalid_argument("model metadata: clot_hi_hu must exceed clot_lo_hu");
  }
  spec.contrast_hu = JsonNumber(json, "contrast_hu", spec.contrast_hu, -2000, 4000);
  if (JsonNumber(json, "classes", kClassCount, 1, 1000) != kClassCount) {
    throw std::invalid_argument("model metadata: the model must have 7 output classes");
  }
  spec.top_k = static_cast<uint32_t>(JsonNumber(json, "top_k", spec.top_k, 1, 100000));
  spec.voxel_threshold = JsonNumber(json, "voxel_threshold", spec.voxel_threshold, 0, 1);
  spec.volume_floor = JsonNumber(json, "volume_floor", spec.volume_floor, 0, 1);
  spec.threshold = JsonNumber(json, "threshold", spec.threshold, 0, 1);
  out = spec;
  return aihub_ref::JsonValue(json, "model_version");
}

void PreprocessSlice(const float* hu, uint32_t size, uint32_t factor, const ModelSpec& spec, float* out,
                     size_t channel_stride) {
  const auto lo = static_cast<float>(spec.vessel_lo_hu);
  const auto width = static_cast<float>(spec.vessel_hi_hu - spec.vessel_lo_hu);
  const auto lung = static_cast<float>(spec.lung_hu);
  const auto clot_lo = static_cast<float>(spec.clot_lo_hu);
  const auto clot_hi = static_cast<float>(spec.clot_hi_hu);
  const auto contrast = static_cast<float>(spec.contrast_hu);
  aihub_ref::PoolSliceChannels<kInputChannels>(
      hu, size, factor,
      [&](float v) {
        return std::array<float, kInputChannels>{std::clamp((v - lo) / width, 0.0f, 1.0f), v < lung ? 1.0f : 0.0f,
                                                 v >= clot_lo && v < clot_hi ? 1.0f : 0.0f,
                                                 v >= contrast ? 1.0f : 0.0f};
      },
      out, channel_stride);
}

double MediastinumMaxHu(const float* hu, uint32_t size, uint32_t factor, double pixel_mm, double half_width_mm,
                        double anterior_mm, double posterior_mm) {
  const uint32_t grid = size / factor;
  const double cell_mm = factor * pixel_mm, centre = grid / 2.0;
  double best = -1e9;
  for (uint32_t gr = 0; gr < grid; ++gr) {
    const double y = (gr + 0.5 - centre) * cell_mm;  // + toward the patient's back (rows run anterior -> posterior)
    if (y < -anterior_mm || y > posterior_mm) continue;
    for (uint32_t gc = 0; gc < grid; ++gc) {
      const double x = (gc + 0.5 - centre) * cell_mm;
      if (std::fabs(x) > half_width_mm) continue;
      double sum = 0;
      for (uint32_t dr = 0; dr < factor; ++dr) {
        const float* row = hu + static_cast<size_t>(gr * factor + dr) * size + static_cast<size_t>(gc) * factor;
        for (uint32_t dc = 0; dc < factor; ++dc) sum += row[dc];
      }
      best = std::max(best, sum / (static_cast<double>(factor) * factor));
    }
  }
  return best;
}

const char* SiteName(Site site) {
  switch (site) {
    case Site::kMain:
      return "main pulmonary artery";
    case Site::kRightPulmonary:
      return "right pulmonary artery";
    case Site::kLeftPulmonary:
      return "left pulmonary artery";
    case Site::kRightLobar:
      return "right lobar pulmonary artery";
    case Site::kLeftLobar:
      return "left lobar pulmonary artery";
    case Site::kNone:
      break;
  }
  return "";
}

Site SiteAt(double offset_mm, const BranchLevelLimits& limits) {
  if (offset_mm < limits.right_lobar_max) return Site::kRightLobar;
  if (offset_mm < limits.main_min) return Site::kRightPulmonary;
  if (offset_mm < limits.left_min) return Site::kMain;
  if (offset_mm < limits.left_lobar_min) return Site::kLeftPulmonary;
  return Site::kLeftLobar;
}

double BodyMidlineColumn(const std::vector<float>& input, uint32_t cells, uint32_t grid, float body_level) {
  const size_t plane = static_cast<size_t>(grid) * grid;
  double sum = 0;
  uint32_t counted = 0;
  for (uint32_t k = 0; k < cells && input.size() >= (k + 1) * plane; ++k) {
    uint32_t lo = grid, hi = 0;
    for (uint32_t r = 0; r < grid; ++r) {
      const float* row = input.data() + k * plane + static_cast<size_t>(r) * grid;
      for (uint32_t c = 0; c < grid; ++c) {
        if (row[c] > body_level) lo = std::min(lo, c), hi = std::max(hi, c);
      }
    }
    if (lo <= hi) sum += (lo + hi) / 2.0, ++counted;
  }
  return counted > 0 ? sum / counted : (grid - 1) / 2.0;
}

namespace {

Side SideOf(Site s) {
  switch (s) {
    case Site::kMain:
      return Side::kBilateral;  // a saddle embolus straddles the bifurcation
    case Site::kRightPulmonary:
    case Site::kRightLobar:
      return Side::kRight;
    case Site::kLeftPulmonary:
    case Site::kLeftLobar:
      return Side::kLeft;
    case Site::kNone:
      break;
  }
  return Side::kNone;
}

int Proximity(Site s) {  // higher = more proximal
  switch (s) {
    case Site::kMain:
      return 3;
    case Site::kRightPulmonary:
    case Site::kLeftPulmonary:
      return 2;
    case Site::kRightLobar:
    case Site::kLeftLobar:
      return 1;
    case Site::kNone:
      break;
  }
  return 0;
}

Side Combine(Side a, Side b) {
  if (a == Side::kNone) return b;
  if (b == Side::kNone || a == b) return a;
  return Side::kBilateral;
}

}  // namespace

Analysis Analyze(const std::vector<float>& prob, const GridGeometry& g, const ModelSpec& spec,
                 const BranchLevelLimits& limits) {
  const size_t plane = static_cast<size_t>(g.grid) * g.grid;
  const size_t n = plane * g.cells;
  if (n == 0 || prob.size() != kClassCount * n || g.center_slice.size() != g.cells) {
    throw std::invalid_argument("probability map size does not match the grid");
  }
  Analysis a;
  std::vector<float> clot(n);
  for (size_t i = 0; i < n; ++i) {
    float p = 0;
    for (uint32_t c = kClassClotMain; c < kClassCount; ++c) p += prob[c * n + i];
    clot[i] = std::clamp(p, 0.0f, 1.0f);
  }
  // Presence score: mean of the top_k clot probabilities (a single voxel is too noisy to decide on).
  const size_t k = std::min<size_t>(spec.top_k, n);
  std::vector<float> top(clot);
  std::nth_element(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(k - 1), top.end(), std::greater<float>());
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += top[i];
  a.score = std::clamp(sum / k, 0.0, 1.0);
  a.present = a.score >= spec.threshold;

  // Volumes: soft sums (a cell half filled by clot scores about 0.5 and counts half), cut below volume_floor so
  // the faint background over a million cells does not add up.
  const double cell_ml = g.factor * g.pixel_mm * g.factor * g.pixel_mm * g.cell_z_mm / 1000.0;
  const auto floor = static_cast<float>(spec.volume_floor);
  double clot_sum = 0, lumen_sum = 0;
  for (size_t i = 0; i < n; ++i) {
    if (clot[i] >= floor) {
      clot_sum += clot[i];
      for (uint32_t c = kClassClotMain; c < kClassCount; ++c) a.class_mass[c] += prob[c * n + i];
    }
    const float lumen = prob[kClassLumen * n + i];
    if (lumen >= floor) lumen_sum += lumen;
  }
  a.volume_ml = clot_sum * cell_ml;
  a.lumen_ml = lumen_sum * cell_ml;
  a.burden_percent = clot_sum > 0 ? 100.0 * clot_sum / (clot_sum + lumen_sum) : 0.0;
  if (!a.present) return a;

  // Components of p_clot >= voxel_threshold (26-connected). A component counts for side and site when it holds
  // at least a quarter of the largest one's clot and peaks at the operating point itself: small low-confidence
  // specks elsewhere in the chest must not turn a one-sided clot bilateral. Each counted component takes the
  // branch level at its centroid's offset from the body midline.
  const auto vt = static_cast<float>(spec.voxel_threshold);
  std::vector<uint8_t> mask(n);
  for (size_t i = 0; i < n; ++i) mask[i] = clot[i] >= vt ? 1 : 0;
  std::vector<int32_t> labels;
  const std::vector<aihub_ref::Component> comps = aihub_ref::LabelComponents(mask, g.cells, g.grid, g.grid, &labels,
                                                                           &clot);
  std::vector<float> peak(comps.size(), 0.0f);
  for (size_t i = 0; i < n; ++i) {
    if (labels[i] > 0) peak[labels[i] - 1] = std::max(peak[labels[i] - 1], clot[i]);
  }
  const double cell_x_mm = g.factor * g.pixel_mm;
  const double midline = g.midline_column >= 0 ? g.midline_column : (g.grid - 1) / 2.0;
  const double toward_left = g.row_dir[0] >= 0 ? 1.0 : -1.0;  // LPS: +x is the patient's left
  auto offset_of = [&](double column) { return (column - midline) * cell_x_mm * toward_left; };
  double largest = 0;
  size_t largest_index = 0;
  for (size_t c = 0; c < comps.size(); ++c) {
    a.clot_voxels += comps[c].voxels;
    if (comps[c].weight > largest) largest = comps[c].weight, largest_index = c;
  }
  double site_weight = 0;
  for (size_t c = 0; c < comps.size(); ++c) {
    const aihub_ref::Component& comp = comps[c];
    if (c != largest_index && (comp.weight < 0.25 * largest || peak[c] < spec.threshold)) continue;
    ++a.components;
    const Site level = SiteAt(offset_of(comp.centroid[2]), limits);
    a.side = Combine(a.side, SideOf(level));
    if (Proximity(level) > Proximity(a.site) || (Proximity(level) == Proximity(a.site) && comp.weight > site_weight)) {
      a.site = level;
      site_weight = comp.weight;
    }
  }
  if (comps.empty()) {  // clot below voxel_threshold everywhere: the most likely voxel stands for it
    const size_t at = static_cast<size_t>(std::max_element(clot.begin(), clot.end()) - clot.begin());
    a.site = SiteAt(offset_of(static_cast<double>(at % g.grid)), limits);
    a.side = SideOf(a.site);
    a.offset_mm = offset_of(static_cast<double>(at % g.grid));
    return a;
  }

  const aihub_ref::Component& big = comps[largest_index];
  a.offset_mm = offset_of(big.centroid[2]);
  const double f = g.factor;
  const double along_rows = (big.centroid[2] * f + (f - 1) / 2) * g.pixel_mm;     // along a row: columns
  const double along_columns = (big.centroid[1] * f + (f - 1) / 2) * g.pixel_mm;  // down a column: rows
  const double along_normal = (big.centroid[0] + 0.5) * g.cell_z_mm - g.slice_spacing_mm / 2;
  for (int d = 0; d < 3; ++d) {
    a.centroid_lps[d] = g.origin[d] + along_rows * g.row_dir[d] + along_columns * g.column_dir[d] +
                        along_normal * g.normal[d];
  }

  // Region: outline of the largest clot area on the z cell with the most clot, on that cell's central frame.
  std::vector<uint64_t> per_cell(g.cells, 0);
  for (size_t i = 0; i < n; ++i) per_cell[i / plane] += mask[i];
  a.best_cell = static_cast<uint32_t>(std::max_element(per_cell.begin(), per_cell.end()) - per_cell.begin());
  a.best_frame = g.center_slice[a.best_cell];
  std::vector<uint8_t> slice(mask.begin() + static_cast<std::ptrdiff_t>(a.best_cell * plane),
                             mask.begin() + static_cast<std::ptrdiff_t>((a.best_cell + 1) * plane));
  std::vector<int32_t> slice_labels;
  const auto areas = aihub_ref::LabelComponents(slice, 1, g.grid, g.grid, &slice_labels);
  if (!areas.empty()) {
    const auto biggest = static_cast<int32_t>(
        std::max_element(areas.begin(), areas.end(),
                         [](const aihub_ref::Component& x, const aihub_ref::Component& y) { return x.voxels < y.voxels; }) -
        areas.begin() + 1);
    for (size_t i = 0; i < plane; ++i) slice[i] = slice_labels[i] == biggest ? 1 : 0;
    a.contour = aihub_ref::TraceOuterContour(slice, g.grid, g.grid, static_cast<float>(g.factor));
  }
  return a;
}

}  // namespace aihub::pe
