// Pre- and post-processing of the ejection-fraction reference model (plugins/ejection_fraction/ef_model.h), without
// libtorch: the grid keeps areas, the stack normalisation uses the documented ranks, and the volume curve, ED/ES,
// EF, component selection and outline come out of known probability maps.
#include "ef_model.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr double kPi = 3.14159265358979323846;

using aihub::ejection_fraction::AnalyzeCine;
using aihub::ejection_fraction::GridMapper;
using aihub::ejection_fraction::ModelSpec;

// Probability maps [phases][slices][grid][grid] with a disc of radius radius_cells(phase, slice) at the grid's
// centre: 1 inside, the overlap fraction (4 x 4 supersampling) on the edge.
std::vector<float> Discs(const ModelSpec& spec, uint32_t phases, uint32_t slices,
                         const std::function<double(uint32_t, uint32_t)>& radius_cells, double* area_cells = nullptr) {
  const uint32_t g = spec.grid;
  std::vector<float> prob(static_cast<size_t>(phases) * slices * g * g, 0.0f);
  for (uint32_t t = 0; t < phases; ++t) {
    for (uint32_t k = 0; k < slices; ++k) {
      const double rad = radius_cells(t, k);
      for (uint32_t r = 0; r < g; ++r) {
        for (uint32_t c = 0; c < g; ++c) {
          int inside = 0;
          for (int i = 0; i < 4; ++i) {
            for (int j = 0; j < 4; ++j) {
              inside += std::hypot(r + (i + 0.5) / 4 - g / 2.0, c + (j + 0.5) / 4 - g / 2.0) < rad;
            }
          }
          const float v = inside / 16.0f;
          prob[((static_cast<size_t>(t) * slices + k) * g + r) * g + c] = v;
          if (area_cells && t == 0) *area_cells += v;
        }
      }
    }
  }
  return prob;
}

}  // namespace

TEST_CASE("ejection_fraction: "
          "the grid keeps a cavity's area at any matrix size and maps grid corners back to native pixels") {
  const ModelSpec spec;
  for (const uint32_t size : {128u, 192u, 256u, 300u}) {
    const double px = 360.0 / size;  // the phantom's 360 mm field
    std::vector<float> mask(static_cast<size_t>(size) * size, 0.0f);
    double native = 0;
    for (uint32_t r = 0; r < size; ++r) {
      for (uint32_t c = 0; c < size; ++c) {
        // An off-centre ellipse, 30 x 22 mm semi-axes, well inside the 204.8 mm grid field.
        const double x = (c + 0.5) * px - 180 - 25, y = (r + 0.5) * px - 180 + 12;
        if ((x / 30) * (x / 30) + (y / 22) * (y / 22) <= 1) mask[static_cast<size_t>(r) * size + c] = 1, ++native;
      }
    }
    const GridMapper mapper(size, size, px, px, spec);
    std::vector<float> grid(static_cast<size_t>(spec.grid) * spec.grid);
    mapper.Map(mask.data(), grid.data());
    const double sum = std::accumulate(grid.begin(), grid.end(), 0.0);
    CHECK_MESSAGE(sum * spec.cell_mm * spec.cell_mm == doctest::Approx(native * px * px).epsilon(1e-5), size);
    for (float v : grid) CHECK((v >= 0 && v <= 1.00001f));
    // The grid is centred: its middle corner is the image's centre, one cell is cell_mm / px pixels.
    CHECK(mapper.NativeColumn(spec.grid / 2.0) == doctest::Approx(size / 2.0));
    CHECK(mapper.NativeRow(spec.grid / 2.0 + 1) - mapper.NativeRow(spec.grid / 2.0) ==
          doctest::Approx(spec.cell_mm / px));
  }
  // Outside the image counts as background: a uniform 64-pixel image of 1 mm pixels fills 40 x 40 cells.
  std::vector<float> ones(64 * 64, 1.0f), grid(static_cast<size_t>(spec.grid) * spec.grid);
  GridMapper(64, 64, 1.0, 1.0, spec).Map(ones.data(), grid.data());
  CHECK(std::accumulate(grid.begin(), grid.end(), 0.0) == doctest::Approx(64.0 * 64 / (1.6 * 1.6)));
  CHECK(grid[0] == 0.0f);
  CHECK(grid[static_cast<size_t>(64) * spec.grid + 64] == doctest::Approx(1.0));
  CHECK_THROWS_AS(GridMapper(64, 64, 0.0, 1.0, spec), std::invalid_argument);
  CHECK_THROWS_AS(GridMapper(0, 64, 1.0, 1.0, spec), std::invalid_argument);
}

TEST_CASE("ejection_fraction: stack normalisation maps the documented ranks to 0 and 1 and clamps") {
  ModelSpec spec;
  spec.low_percentile = 0.1;
  spec.high_percentile = 0.9;
  std::vector<float> stack(101);
  for (size_t i = 0; i < stack.size(); ++i) stack[(i * 37) % 101] = static_cast<float>(i);  // 0..100, shuffled
  aihub::ejection_fraction::Normalise(stack, spec);
  // lo = rank 10 (value 10), hi = rank 90 (value 90).
  CHECK(stack[(10 * 37) % 101] == doctest::Approx(0.0));
  CHECK(stack[(90 * 37) % 101] == doctest::Approx(1.0));
  CHECK(stack[(50 * 37) % 101] == doctest::Approx(0.5));
  CHECK(stack[0] == doctest::Approx(-0.125));                 // value 0: (0 - 10) / 80
  CHECK(stack[(100 * 37) % 101] == doctest::Approx(1.125));
  std::vector<float> wide{-1000, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1000};
  aihub::ejection_fraction::Normalise(wide, spec);
  CHECK(wide.front() == doctest::Approx(spec.clamp_low));
  CHECK(wide.back() == doctest::Approx(spec.clamp_high));
}

TEST_CASE("ejection_fraction: volumes, ED, ES and EF come from the summed probabilities of the selected blood pool") {
  const ModelSpec spec;
  const uint32_t phases = 8, slices = 5;
  // Radius shrinks to 60 % at phase 3 and recovers; apical slices smaller.
  auto radius = [](uint32_t t, uint32_t k) {
    const double beat = t <= 3 ? 1 - 0.4 * t / 3.0 : 0.6 + 0.4 * (t - 3) / 5.0;
    return 20.0 * beat * (1 - 0.15 * k);
  };
  double ed_cells = 0;
  std::vector<float> prob = Discs(spec, phases, slices, radius, &ed_cells);
  // A spurious blob far from the ventricle (another bright structure) on phase 3: not part of the volume.
  const uint32_t g = spec.grid;
  for (uint32_t r = 5; r < 15; ++r) {
    for (uint32_t c = 5; c < 15; ++c) prob[((3 * slices + 2) * g + r) * g + c] = 0.9f;
  }
  const double spacing = 8;
  const auto a = AnalyzeCine(prob, phases, slices, spacing, spec);
  REQUIRE(a.volume_ml.size() == phases);
  CHECK(a.ed_phase == 0);
  CHECK(a.es_phase == 3);
  const double cell_ml = spec.cell_mm * spec.cell_mm * spacing / 1000;
  CHECK(a.edv_ml == doctest::Approx(ed_cells * cell_ml).epsilon(1e-6));
  double expected_es = 0;
  for (uint32_t k = 0; k < slices; ++k) expected_es += kPi * std::pow(radius(3, k), 2);
  CHECK(a.esv_ml == doctest::Approx(expected_es * cell_ml).epsilon(0.01));
  CHECK(a.ef_percent == doctest::Approx(100 * (a.edv_ml - a.esv_ml) / a.edv_ml));
  CHECK(a.ef_percent == doctest::Approx(64).epsilon(0.02));  // 1 - 0.6^2
  CHECK(a.sv_ml == doctest::Approx(a.edv_ml - a.esv_ml));
  REQUIRE(a.area_mm2.size() == phases);
  CHECK(a.area_mm2[0][0] > a.area_mm2[0][slices - 1]);

  // The outline: on the ED frame of the middle slice, around the disc (radius 20 * 0.7 = 14 cells).
  CHECK(a.contour_slice == slices / 2);
  REQUIRE(a.contour.size() >= 6);
  for (size_t i = 0; i + 1 < a.contour.size(); i += 2) {
    const double d = std::hypot(a.contour[i] - g / 2.0, a.contour[i + 1] - g / 2.0);
    CHECK(d == doctest::Approx(14).epsilon(0.15));
  }
  CHECK(a.contour.size() < 200);  // simplified, not one point per cell edge
}

TEST_CASE("ejection_fraction: "
          "an apical piece separated from the main pool still counts, and empty maps give zero volumes") {
  const ModelSpec spec;
  const uint32_t g = spec.grid, phases = 2, slices = 3;
  std::vector<float> prob = Discs(spec, phases, slices, [](uint32_t t, uint32_t k) {
    return k == 2 ? 0.0 : k == 1 ? 10.0 : (t == 0 ? 18.0 : 15.0);
  });
  // Slice 2: a small pool 14 cells off the axis, under the basal disc (slice 0) but not touching the smaller one
  // of slice 1: a separate 3D component inside the ventricle's in-plane extent.
  for (uint32_t t = 0; t < phases; ++t) {
    for (uint32_t r = g / 2 + 14; r < g / 2 + 17; ++r) {
      for (uint32_t c = g / 2 - 1; c < g / 2 + 2; ++c) prob[((t * slices + 2) * g + r) * g + c] = 1.0f;
    }
  }
  const auto a = AnalyzeCine(prob, phases, slices, 10, spec);
  CHECK(a.area_mm2[0][2] == doctest::Approx(9 * spec.cell_mm * spec.cell_mm));

  const std::vector<float> empty(static_cast<size_t>(phases) * slices * g * g, 0.0f);
  const auto none = AnalyzeCine(empty, phases, slices, 10, spec);
  CHECK(none.edv_ml == 0);
  CHECK(none.ef_percent == 0);
  CHECK(none.contour.empty());
  CHECK_THROWS_AS(AnalyzeCine(empty, phases + 1, slices, 10, spec), std::invalid_argument);
}

TEST_CASE("ejection_fraction: model metadata: values are read, bad ones are refused and leave the spec unchanged") {
  ModelSpec spec;
  const std::string json =
      "{\"cell_mm\": 1.5, \"cell_threshold\": 0.4, \"grid\": 96, \"model_version\": \"ejection-fraction-ref-x\", "
      "\"threshold_percent\": 35}";
  CHECK(aihub::ejection_fraction::ParseModelMetadata(json, spec) == "ejection-fraction-ref-x");
  CHECK(spec.grid == 96);
  CHECK(spec.cell_mm == 1.5);
  CHECK(spec.cell_threshold == 0.4);
  CHECK(spec.threshold_percent == 35);
  const ModelSpec before = spec;
  CHECK_THROWS_AS(aihub::ejection_fraction::ParseModelMetadata("{\"grid\": 100}", spec), std::invalid_argument);
  CHECK_THROWS_AS(aihub::ejection_fraction::ParseModelMetadata("{\"threshold_percent\": 120}", spec),
                  std::invalid_argument);
  CHECK(spec.grid == before.grid);
  CHECK(spec.threshold_percent == before.threshold_percent);
  CHECK(aihub::ejection_fraction::ParseModelMetadata("{}", spec).empty());
}
