// The PE model's pre- and post-processing (plugins/pe/pe_model.h) and the shared reference-plugin helpers
// (plugins/common/include/aihub_ref), without libtorch.
#include "pe_model.h"

#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "aihub_ref/components.h"
#include "aihub_ref/contour.h"
#include "aihub_ref/grid.h"
#include "aihub_ref/model_metadata.h"

namespace {

using aihub::pe::Analysis;
using aihub::pe::GridGeometry;
using aihub::pe::ModelSpec;
using aihub::pe::Side;
using aihub::pe::Site;

constexpr uint32_t kClasses = aihub::pe::kClassCount;

// A probability map with every voxel background, on a cells x grid x grid grid.
struct Map {
  uint32_t cells, grid;
  std::vector<float> p;
  Map(uint32_t c, uint32_t g) : cells(c), grid(g), p(kClasses * static_cast<size_t>(c) * g * g, 0) {
    for (size_t i = 0; i < N(); ++i) p[i] = 1;
  }
  size_t N() const { return static_cast<size_t>(cells) * grid * grid; }
  // Sets a box of voxels to `prob` of class `cls` (rest background).
  void Box(uint32_t cls, uint32_t k0, uint32_t k1, uint32_t r0, uint32_t r1, uint32_t c0, uint32_t c1, float prob) {
    for (uint32_t k = k0; k <= k1; ++k) {
      for (uint32_t r = r0; r <= r1; ++r) {
        for (uint32_t c = c0; c <= c1; ++c) {
          const size_t i = (static_cast<size_t>(k) * grid + r) * grid + c;
          for (uint32_t cl = 0; cl < kClasses; ++cl) p[cl * N() + i] = 0;
          p[cls * N() + i] = prob;
          p[i] += 1 - prob;
        }
      }
    }
  }
  GridGeometry Geometry() const {
    GridGeometry g;
    g.cells = cells;
    g.grid = grid;
    g.factor = 2;
    g.pixel_mm = 1.5;  // 3 mm cells in plane
    g.cell_z_mm = 2;
    g.slice_spacing_mm = 1;
    for (uint32_t k = 0; k < cells; ++k) g.center_slice.push_back(2 * k);
    return g;
  }
};

}  // namespace

TEST_CASE("model metadata: values are read with defaults and bad values throw and leave the spec unchanged") {
  ModelSpec spec;
  const std::string version = aihub::pe::ParseModelMetadata(
      R"({"cell_z_mm": 2.5, "channels": 4, "classes": 7, "clot_hi_hu": 100, "grid": 64, "model_version": "pe-ref-x", )"
      R"("threshold": 0.42, "top_k": 4})",
      spec);
  CHECK(version == "pe-ref-x");
  CHECK(spec.grid == 64);
  CHECK(spec.cell_z_mm == doctest::Approx(2.5));
  CHECK(spec.threshold == doctest::Approx(0.42));
  CHECK(spec.top_k == 4);
  CHECK(spec.clot_hi_hu == doctest::Approx(100));
  CHECK(spec.vessel_lo_hu == doctest::Approx(-200));  // default kept
  for (const char* bad : {R"("classes": 3)", R"("grid": 66)", R"("threshold": 1.5)", R"("top_k": "x")",
                          R"("vessel_lo_hu": 600)", R"("clot_lo_hu": 130)"}) {
    ModelSpec s = spec;
    // Good values beside the bad one (voxel_threshold 0.7, volume_floor 0.3) must not stick when the parse fails.
    const std::string json =
        std::string(R"({"channels": 4, "voxel_threshold": 0.7, "volume_floor": 0.3, )") + bad + "}";
    CHECK_THROWS_AS(aihub::pe::ParseModelMetadata(json, s), std::invalid_argument);
    CHECK(s.grid == 64);
    CHECK(s.threshold == doctest::Approx(0.42));
    CHECK(s.voxel_threshold == doctest::Approx(0.5));
    CHECK(s.volume_floor == doctest::Approx(0.2));
  }
  // A model trained for other preprocessing is refused, naming the mismatch (models before pe-ref-2026.11.3 did
  // not state their channel count and took two).
  ModelSpec old = spec;
  try {
    aihub::pe::ParseModelMetadata(R"({"classes": 7, "model_version": "pe-ref-2026.11.2"})", old);
    FAIL("a two-channel model was accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("takes 2 input channels; this plugin prepares 4") != std::string::npos);
  }
  CHECK(aihub_ref::JsonValue(R"({"a": [1, 2], "b": "x"})", "b") == "x");
  CHECK(aihub_ref::JsonValue(R"({"a": 1})", "missing").empty());
}

TEST_CASE("preprocessing windows and pools a slice onto the grid") {
  ModelSpec spec;
  const uint32_t size = 8, f = 2;
  std::vector<float> hu(size * size, -1000);  // air: vessel 0, lung 1
  // Top-left cell: 300 HU (vessel 5/7, contrast), 40 HU (clot density), 150 HU (neither) and -600 HU (lung).
  hu[0] = 300, hu[1] = 40, hu[size] = 150, hu[size + 1] = -600;
  // Cell 1: the clot band's edges: -30 and 119.9 count, -30.1 and 120 do not.
  hu[2] = -30, hu[3] = 119.9f, hu[size + 2] = -30.1f, hu[size + 3] = 120;
  hu[size * size - 1] = 900;  // clamps to 1 in the last cell
  constexpr size_t kPlane = 16;
  std::vector<float> out(aihub::pe::kInputChannels * kPlane + 1, -7.0f);  // the last must stay untouched
  aihub::pe::PreprocessSlice(hu.data(), size, f, spec, out.data(), kPlane);
  const float* vessel = out.data();
  const float* lung = out.data() + kPlane;
  const float* clot = out.data() + 2 * kPlane;
  const float* contrast = out.data() + 3 * kPlane;
  CHECK(vessel[0] == doctest::Approx((500.0 / 700 + 240.0 / 700 + 350.0 / 700 + 0) / 4));
  CHECK(lung[0] == doctest::Approx(0.25));
  CHECK(clot[0] == doctest::Approx(0.25));
  CHECK(contrast[0] == doctest::Approx(0.25));
  CHECK(clot[1] == doctest::Approx(0.5));
  CHECK(contrast[1] == 0);
  CHECK(lung[1] == 0);
  CHECK(vessel[2] == doctest::Approx(0));
  CHECK(lung[2] == doctest::Approx(1));
  CHECK(clot[2] == 0);
  CHECK(vessel[15] == doctest::Approx(0.25));
  CHECK(lung[15] == doctest::Approx(0.75));
  CHECK(contrast[15] == doctest::Approx(0.25));
  CHECK(out.back() == -7.0f);
  CHECK(aihub_ref::PoolingFactor(512, 512, 128) == 4);
  CHECK(aihub_ref::PoolingFactor(192, 192, 128) == 0);
  CHECK(aihub_ref::PoolingFactor(512, 256, 128) == 0);
}

TEST_CASE("z resampling: overlap weights onto cells of the model's height") {
  const auto z = aihub_ref::MakeZResampling(200, 1.0, 3.125);  // 1 mm slices -> 64 cells of 3.125 mm
  CHECK(z.cells == 64);
  CHECK(z.cell_mm == doctest::Approx(3.125));
  std::vector<double> per_cell(z.cells, 0);
  for (const auto& shares : z.by_slice) {
    for (const auto& s : shares) per_cell[s.cell] += s.weight;
  }
  for (double w : per_cell) CHECK(w == doctest::Approx(1));
  REQUIRE(z.by_slice[3].size() == 2);  // slice 3 straddles cells 0 and 1
  CHECK(z.by_slice[3][0].weight == doctest::Approx(0.125 / 3.125));
  CHECK(z.by_slice[3][1].weight == doctest::Approx(0.875 / 3.125));
  CHECK(z.center_slice[0] == 0);

  const auto thick = aihub_ref::MakeZResampling(64, 3.125, 3.125);  // already on the grid: identity
  CHECK(thick.cells == 64);
  CHECK(thick.by_slice[10].size() == 1);
  CHECK(thick.center_slice[10] == 10);
  const auto half = aihub_ref::MakeZResampling(128, 1.5625, 3.125);
  CHECK(half.cells == 64);
  CHECK(half.center_slice[5] == 10);
}

TEST_CASE("mediastinal contrast: an opacified artery near the centre is seen, soft tissue is not") {
  const uint32_t size = 128;
  std::vector<float> hu(size * size, 40);
  CHECK(aihub::pe::MediastinumMaxHu(hu.data(), size, 2, 2.8) == doctest::Approx(40));
  for (uint32_t r = 50; r < 60; ++r) {
    for (uint32_t c = 60; c < 70; ++c) hu[r * size + c] = 330;  // ~10 mm in front of the centre
  }
  CHECK(aihub::pe::MediastinumMaxHu(hu.data(), size, 2, 2.8) == doctest::Approx(330));
  std::vector<float> far(size * size, 40);
  for (uint32_t r = 120; r < 128; ++r) far[r * size] = 900;  // bone at the edge of the image
  CHECK(aihub::pe::MediastinumMaxHu(far.data(), size, 2, 2.8) == doctest::Approx(40));
}

TEST_CASE("components are 26-connected with bounding boxes and centroids") {
  const uint32_t s = 3, r = 4, c = 5;
  std::vector<uint8_t> mask(s * r * c, 0);
  auto at = [&](uint32_t k, uint32_t y, uint32_t x) -> uint8_t& { return mask[(k * r + y) * c + x]; };
  at(0, 0, 0) = at(1, 1, 1) = 1;  // diagonal neighbours: one component
  at(2, 3, 4) = at(2, 3, 3) = 1;  // another
  std::vector<int32_t> labels;
  const auto comps = aihub_ref::LabelComponents(mask, s, r, c, &labels);
  REQUIRE(comps.size() == 2);
  CHECK(comps[0].voxels == 2);
  CHECK(comps[0].centroid[0] == doctest::Approx(0.5));
  CHECK(comps[1].voxels == 2);
  CHECK(comps[1].min[2] == 3);
  CHECK(comps[1].max[2] == 4);
  CHECK(labels[(2 * r + 3) * c + 4] == 2);
  CHECK(labels[1] == 0);
}

TEST_CASE("contours trace the outer pixel edges of a region") {
  std::vector<uint8_t> one(9, 0);
  one[4] = 1;  // the centre pixel of 3x3
  const auto square = aihub_ref::TraceOuterContour(one, 3, 3, 2.0f);
  CHECK(square == std::vector<float>{2, 2, 4, 2, 4, 4, 2, 4});
  // An L: (0,0), (0,1), (1,1) as (row, col) -> 6 corners.
  std::vector<uint8_t> l = {1, 0, 1, 1};
  const auto ell = aihub_ref::TraceOuterContour(l, 2, 2);
  CHECK(ell == std::vector<float>{0, 0, 1, 0, 1, 1, 2, 1, 2, 2, 0, 2});
  CHECK(aihub_ref::TraceOuterContour(std::vector<uint8_t>(4, 0), 2, 2).empty());
}

TEST_CASE("analysis: a right pulmonary artery clot is present, right-sided, with volume, burden and contour") {
  Map m(8, 32);
  m.Box(aihub::pe::kClassLumen, 0, 7, 0, 3, 0, 31, 0.9f);                 // patent lumen
  m.Box(aihub::pe::kClassClotRight, 2, 4, 10, 12, 5, 8, 0.9f);           // 3 x 3 x 4 clot cells
  ModelSpec spec;
  spec.threshold = 0.5;
  const Analysis a = aihub::pe::Analyze(m.p, m.Geometry(), spec);
  CHECK(a.present);
  CHECK(a.score == doctest::Approx(0.9));
  CHECK(a.side == Side::kRight);
  CHECK(a.site == Site::kRightPulmonary);
  CHECK(a.clot_voxels == 36);
  const double cell_ml = 3.0 * 3.0 * 2.0 / 1000.0;
  CHECK(a.volume_ml == doctest::Approx(36 * 0.9 * cell_ml));
  CHECK(a.lumen_ml == doctest::Approx(8 * 4 * 32 * 0.9 * cell_ml));
  CHECK(a.burden_percent == doctest::Approx(100.0 * 36 / (36 + 8 * 4 * 32)));
  CHECK(a.components == 1);
  CHECK(a.best_cell == 2);  // the first cell with the largest area
  CHECK(a.best_frame == 4);
  // Contour on the original pixels (factor 2): columns 5..8 and rows 10..12 of the grid.
  CHECK(a.contour == std::vector<float>{10, 20, 18, 20, 18, 26, 10, 26});
}

TEST_CASE("analysis: side and most proximal branch follow the clot centroids' offsets from the body midline") {
  ModelSpec spec;
  {
    Map m(8, 32);  // midline at column 15.5; columns 18-22 centre 13.5 mm left of it: the saddle zone
    m.Box(aihub::pe::kClassClotRight, 2, 5, 10, 14, 18, 22, 0.8f);  // the (unused) branch class does not matter
    const Analysis a = aihub::pe::Analyze(m.p, m.Geometry(), spec);
    CHECK(a.present);
    CHECK(a.offset_mm == doctest::Approx(13.5));
    CHECK(a.site == Site::kMain);
    CHECK(a.side == Side::kBilateral);
  }
  {
    Map m(8, 64);  // midline 31.5: a right lobar clot (-61.5 mm) and a larger left lobar one (+60 mm)
    m.Box(aihub::pe::kClassClotRightLobar, 1, 3, 5, 7, 10, 12, 0.8f);
    m.Box(aihub::pe::kClassClotLeftLobar, 4, 6, 5, 7, 50, 53, 0.8f);
    const Analysis a = aihub::pe::Analyze(m.p, m.Geometry(), spec);
    CHECK(a.side == Side::kBilateral);
    CHECK(a.site == Site::kLeftLobar);  // same level: the larger clot
    CHECK(a.components == 2);
  }
  {
    Map m(8, 64);  // a left pulmonary artery clot (+30 mm) and a right lobar one: the proximal one is the site
    m.Box(aihub::pe::kClassClotLeft, 1, 3, 5, 7, 40, 43, 0.8f);
    m.Box(aihub::pe::kClassClotRightLobar, 4, 6, 5, 7, 8, 12, 0.8f);
    const Analysis a = aihub::pe::Analyze(m.p, m.Geometry(), spec);
    CHECK(a.site == Site::kLeftPulmonary);
    CHECK(a.side == Side::kBilateral);
  }
  {
    Map m(8, 64);  // the same left clot with the image mirrored (row cosine x < 0): now on the patient's right
    m.Box(aihub::pe::kClassClotLeft, 1, 2, 5, 6, 41, 42, 0.8f);
    GridGeometry g = m.Geometry();
    g.row_dir = {-1, 0, 0};
    const Analysis a = aihub::pe::Analyze(m.p, g, spec);
    CHECK(a.site == Site::kRightPulmonary);
    CHECK(a.side == Side::kRight);
    CHECK(a.offset_mm == doctest::Approx(-30));
  }
  {
    Map m(8, 64);  // speckle under a quarter of the largest clot does not change the side
    m.Box(aihub::pe::kClassClotLeft, 1, 4, 5, 8, 41, 44, 0.8f);  // 64 cells
    m.Box(aihub::pe::kClassClotLeft, 7, 7, 20, 20, 5, 5, 0.8f);  // 1 cell far right
    const Analysis a = aihub::pe::Analyze(m.p, m.Geometry(), spec);
    CHECK(a.components == 1);
    CHECK(a.side == Side::kLeft);
  }
  {
    Map m(8, 64);  // a sizeable second clot below the operating point does not count either
    m.Box(aihub::pe::kClassClotLeft, 1, 4, 5, 8, 41, 44, 0.9f);
    m.Box(aihub::pe::kClassClotRight, 5, 7, 20, 23, 20, 23, 0.6f);  // 48 cells at 0.6
    ModelSpec strict = spec;
    strict.threshold = 0.8;
    CHECK(aihub::pe::Analyze(m.p, m.Geometry(), strict).side == Side::kLeft);
    CHECK(aihub::pe::Analyze(m.p, m.Geometry(), spec).side == Side::kBilateral);  // at 0.5 it counts
  }
}

TEST_CASE("branch levels and the body midline") {
  CHECK(aihub::pe::SiteAt(-60) == Site::kRightLobar);
  CHECK(aihub::pe::SiteAt(-10) == Site::kRightPulmonary);
  CHECK(aihub::pe::SiteAt(15) == Site::kMain);
  CHECK(aihub::pe::SiteAt(30) == Site::kLeftPulmonary);
  CHECK(aihub::pe::SiteAt(55) == Site::kLeftLobar);
  const uint32_t cells = 2, grid = 16;
  std::vector<float> input(aihub::pe::kInputChannels * cells * grid * grid, 0);
  for (uint32_t r = 4; r < 12; ++r) {
    for (uint32_t c = 3; c <= 9; ++c) input[r * grid + c] = 0.5f;       // cell 0: body over columns 3..9
    for (uint32_t c = 7; c <= 13; ++c) input[(grid + r) * grid + c] = 0.5f;  // cell 1: columns 7..13
  }
  CHECK(aihub::pe::BodyMidlineColumn(input, cells, grid) == doctest::Approx((6.0 + 10.0) / 2));
  std::vector<float> empty(2 * cells * grid * grid, 0);
  CHECK(aihub::pe::BodyMidlineColumn(empty, cells, grid) == doctest::Approx(7.5));
}

TEST_CASE("analysis: a clean map is absent, and a size mismatch is refused") {
  Map m(4, 16);
  ModelSpec spec;
  const Analysis a = aihub::pe::Analyze(m.p, m.Geometry(), spec);
  CHECK_FALSE(a.present);
  CHECK(a.score == doctest::Approx(0));
  CHECK(a.volume_ml == 0);
  CHECK(a.contour.empty());
  std::vector<float> short_map(m.p.begin(), m.p.end() - 1);
  CHECK_THROWS_AS(aihub::pe::Analyze(short_map, m.Geometry(), spec), std::invalid_argument);
}
