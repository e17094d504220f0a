#include "ef_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

#include "aihub_ref/components.h"
#include "aihub_ref/contour.h"
#include "aihub_ref/model_metadata.h"

namespace aihub::ejection_fraction {
namespace {

// The largest 8-connected component of a 2D mask, as a mask.
std::vector<uint8_t> LargestComponent2D(const std::vector<uint8_t>& mask, uint32_t rows, uint32_t columns) {
  std::vector<int32_t> labels;
  const auto comps = aihub_ref::LabelComponents(mask, 1, rows, columns, &labels);
  std::vector<uint8_t> out(mask.size(), 0);
  if (comps.empty()) return out;
  size_t best = 0;
  for (size_t i = 1; i < comps.size(); ++i) {
    if (comps[i].voxels > comps[best].voxels) best = i;
  }
  for (size_t i = 0; i < out.size(); ++i) out[i] = labels[i] == static_cast<int32_t>(best + 1);
  return out;
}

}  // namespace

std::string ParseModelMetadata(const std::string& json, ModelSpec& spec) {
  ModelSpec s = spec;
  s.grid = static_cast<uint32_t>(aihub_ref::JsonNumber(json, "grid", s.grid, 16, 1024));
  if (s.grid % 8 != 0) throw std::invalid_argument("model metadata: grid must be a multiple of 8");
  s.cell_mm = aihub_ref::JsonNumber(json, "cell_mm", s.cell_mm, 0.1, 10);
  s.low_percentile = aihub_ref::JsonNumber(json, "low_percentile", s.low_percentile, 0, 0.5);
  s.high_percentile = aihub_ref::JsonNumber(json, "high_percentile", s.high_percentile, 0.5, 1);
  s.clamp_low = aihub_ref::JsonNumber(json, "clamp_low", s.clamp_low, -10, 1);
  s.clamp_high = aihub_ref::JsonNumber(json, "clamp_high", s.clamp_high, 0, 10);
  s.cell_threshold = aihub_ref::JsonNumber(json, "cell_threshold", s.cell_threshold, 0.01, 0.99);
  s.threshold_percent = aihub_ref::JsonNumber(json, "threshold_percent", s.threshold_percent, 0, 100);
  if (!(s.clamp_low < s.clamp_high)) throw std::invalid_argument("model metadata: clamp_low must be below clamp_high");
  spec = s;
  return aihub_ref::JsonValue(json, "model_version");
}

GridMapper::Axis GridMapper::MakeAxis(uint32_t n, double spacing_mm, const ModelSpec& spec) {
  Axis a;
  a.cell = spec.cell_mm / spacing_mm;
  a.start = n / 2.0 - spec.grid / 2.0 * a.cell;
  a.first.resize(spec.grid);
  a.weights.resize(spec.grid);
  for (uint32_t i = 0; i < spec.grid; ++i) {
    const double lo = a.start + i * a.cell, hi = a.start + (i + 1) * a.cell;
    const int64_t p0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(lo)));
    const int64_t p1 = std::min<int64_t>(n, static_cast<int64_t>(std::ceil(hi)));
    a.first[i] = static_cast<uint32_t>(std::min<int64_t>(p0, n));
    for (int64_t p = p0; p < p1; ++p) {
      a.weights[i].push_back(std::max(0.0, std::min(hi, p + 1.0) - std::max(lo, static_cast<double>(p))) / a.cell);
    }
  }
  return a;
}

GridMapper::GridMapper(uint32_t rows, uint32_t columns, double row_spacing_mm, double column_spacing_mm,
                       const ModelSpec& spec)
    : rows_count_(rows), columns_count_(columns), grid_(spec.grid) {
  if (rows == 0 || columns == 0) throw std::invalid_argument("empty frame");
  if (!(row_spacing_mm > 0 && column_spacing_mm > 0 && std::isfinite(row_spacing_mm) &&
        std::isfinite(column_spacing_mm))) {
    throw std::invalid_argument("pixel spacing must be positive");
  }
  rows_ = MakeAxis(rows, row_spacing_mm, spec);
  columns_ = MakeAxis(columns, column_spacing_mm, spec);
}

void GridMapper::Map(const float* image, float* out) const {
  std::vector<double> row(columns_count_);
  for (uint32_t i = 0; i < grid_; ++i) {
    // Rows first (as efdata.py: Wr @ image), then columns (@ Wc.T); double sums.
    std::fill(row.begin(), row.end(), 0.0);
    const std::vector<double>& wr = rows_.weights[i];
    for (size_t k = 0; k < wr.size(); ++k) {
      const float* src = image + static_cast<size_t>(rows_.first[i] + k) * columns_count_;
      for (uint32_t c = 0; c < columns_count_; ++c) row[c] += wr[k] * src[c];
    }
    for (uint32_t j = 0; j < grid_; ++j) {
      const std::vector<double>& wc = columns_.weights[j];
      double v = 0;
      for (size_t k = 0; k < wc.size(); ++k) v += wc[k] * row[columns_.first[j] + k];
      out[static_cast<size_t>(i) * grid_ + j] = static_cast<float>(v);
    }
  }
}

void Normalise(std::vector<float>& stack, const ModelSpec& spec) {
  if (stack.empty()) return;
  std::vector<float> sorted(stack);
  const size_t n = sorted.size();
  const auto rank = [n](double p) { return static_cast<size_t>(std::floor(p * static_cast<double>(n - 1))); };
  const size_t k_lo = rank(spec.low_percentile), k_hi = rank(spec.high_percentile);
  std::nth_element(sorted.begin(), sorted.begin() + k_lo, sorted.end());
  const float lo = sorted[k_lo];
  std::nth_element(sorted.begin(), sorted.begin() + k_hi, sorted.end());
  const float hi = sorted[k_hi];
  const float range = std::max(hi - lo, 1e-6f);
  const auto clamp_lo = static_cast<float>(spec.clamp_low), clamp_hi = static_cast<float>(spec.clamp_high);
  for (float& v : stack) v = std::clamp((v - lo) / range, clamp_lo, clamp_hi);
}

CineAnalysis AnalyzeCine(const std::vector<float>& prob, uint32_t phases, uint32_t slices, double slice_spacing_mm,
                         const ModelSpec& spec) {
  const uint32_t g = spec.grid;
  const size_t plane = static_cast<size_t>(g) * g, volume = plane * slices;
  if (phases == 0 || slices == 0 || prob.size() != volume * phases) {
    throw std::invalid_argument("probability maps do not match phases x slices x grid x grid");
  }
  const double cell_area = spec.cell_mm * spec.cell_mm;
  CineAnalysis a;
  a.volume_ml.assign(phases, 0);
  a.area_mm2.assign(phases, std::vector<double>(slices, 0));
  std::vector<std::vector<uint8_t>> kept(phases);  // per phase: the selected cells (before the in-plane ring)
  for (uint32_t t = 0; t < phases; ++t) {
    const std::vector<float> p(prob.begin() + static_cast<std::ptrdiff_t>(t * volume),
                               prob.begin() + static_cast<std::ptrdiff_t>((t + 1) * volume));
    std::vector<uint8_t> mask(volume);
    for (size_t i = 0; i < volume; ++i) mask[i] = p[i] >= spec.cell_threshold;
    std::vector<int32_t> labels;
    const auto comps = aihub_ref::LabelComponents(mask, slices, g, g, &labels, &p);
    kept[t].assign(volume, 0);
    if (comps.empty()) continue;
    size_t best = 0;
    for (size_t i = 1; i < comps.size(); ++i) {
      if (comps[i].weight > comps[best].weight) best = i;
    }
    const aihub_ref::Component& lv = comps[best];
    std::vector<uint8_t> keep_label(comps.size() + 1, 0);
    for (size_t i = 0; i < comps.size(); ++i) {
      const bool inside = comps[i].centroid[1] >= lv.min[1] - 2.0 && comps[i].centroid[1] <= lv.max[1] + 2.0 &&
                          comps[i].centroid[2] >= lv.min[2] - 2.0 && comps[i].centroid[2] <= lv.max[2] + 2.0;
      keep_label[i + 1] = i == best || inside;
    }
    for (size_t i = 0; i < volume; ++i) kept[t][i] = keep_label[labels[i]];
    // Partial cells at the cavity's edge fall below the threshold: count the 8 in-plane neighbours of kept cells.
    for (uint32_t k = 0; k < slices; ++k) {
      const uint8_t* in = kept[t].data() + k * plane;
      const float* pk = p.data() + k * plane;
      double sum = 0;
      for (uint32_t r = 0; r < g; ++r) {
        for (uint32_t c = 0; c < g; ++c) {
          bool near = false;
          for (int dr = -1; dr <= 1 && !near; ++dr) {
            for (int dc = -1; dc <= 1 && !near; ++dc) {
              const int64_t rr = int64_t{r} + dr, cc = int64_t{c} + dc;
              near = rr >= 0 && cc >= 0 && rr < g && cc < g && in[rr * g + cc];
            }
          }
          if (near) sum += pk[static_cast<size_t>(r) * g + c];
        }
      }
      a.area_mm2[t][k] = sum * cell_area;
      a.volume_ml[t] += sum * cell_area * slice_spacing_mm / 1000;
    }
  }
  for (uint32_t t = 1; t < phases; ++t) {
    if (a.volume_ml[t] > a.volume_ml[a.ed_phase]) a.ed_phase = t;
    if (a.volume_ml[t] < a.volume_ml[a.es_phase]) a.es_phase = t;
  }
  a.edv_ml = a.volume_ml[a.ed_phase];
  a.esv_ml = a.volume_ml[a.es_phase];
  a.sv_ml = a.edv_ml - a.esv_ml;
  a.ef_percent = a.edv_ml > 0 ? 100 * a.sv_ml / a.edv_ml : 0;

  // Outline on the end-diastolic frame of the middle slice (else the slice with the most blood pool).
  a.contour_slice = slices / 2;
  const std::vector<uint8_t>& ed = kept[a.ed_phase];
  auto slice_cells = [&](uint32_t k) {
    return std::vector<uint8_t>(ed.begin() + static_cast<std::ptrdiff_t>(k * plane),
                                ed.begin() + static_cast<std::ptrdiff_t>((k + 1) * plane));
  };
  std::vector<uint8_t> cells = slice_cells(a.contour_slice);
  if (std::find(cells.begin(), cells.end(), 1) == cells.end()) {
    for (uint32_t k = 0; k < slices; ++k) {
      if (a.area_mm2[a.ed_phase][k] > a.area_mm2[a.ed_phase][a.contour_slice]) a.contour_slice = k;
    }
    cells = slice_cells(a.contour_slice);
  }
  a.contour = aihub_ref::SimplifyClosedPolygon(aihub_ref::TraceOuterContour(LargestComponent2D(cells, g, g), g, g), 0.75);
  return a;
}

}  // namespace aihub::ejection_fraction
