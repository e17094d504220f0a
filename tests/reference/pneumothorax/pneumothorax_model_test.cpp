// Pre- and post-processing of the pneumothorax plugin, without libtorch: the numbers train.py relies on.
#include "pneumothorax_model.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "aihub_ref/contour.h"

namespace aihub::pneumothorax {
namespace {

ModelSpec SmallGrid(uint32_t rows, uint32_t columns) {
  ModelSpec spec;
  spec.grid_rows = rows;
  spec.grid_columns = columns;
  spec.top_k = 4;
  spec.threshold = 0.5;
  return spec;
}

}  // namespace

TEST_CASE("area resampling averages whole pixels and splits straddling ones by their overlap") {
  // 5 columns onto 2 cells: cell 0 = pixels 0, 1 and half of 2; cell 1 = half of 2, 3, 4.
  const std::vector<float> row = {1, 2, 3, 4, 5};
  const std::vector<float> g = ResampleToGrid(row.data(), 1, 5, 1, 2);
  REQUIRE(g.size() == 2);
  CHECK(g[0] == doctest::Approx((1 + 2 + 0.5 * 3) / 2.5));
  CHECK(g[1] == doctest::Approx((0.5 * 3 + 4 + 5) / 2.5));
  // Separable: 4x4 onto 2x2 is a plain 2x2 mean.
  const std::vector<float> img = {1, 1, 2, 2,  //
                                  1, 1, 2, 2,  //
                                  3, 3, 4, 8,  //
                                  3, 3, 4, 8};
  const std::vector<float> q = ResampleToGrid(img.data(), 4, 4, 2, 2);
  CHECK(q[0] == doctest::Approx(1));
  CHECK(q[1] == doctest::Approx(2));
  CHECK(q[2] == doctest::Approx(3));
  CHECK(q[3] == doctest::Approx(6));
  // A constant image stays constant at any ratio (weights sum to one), e.g. the native 2500 x 2048 onto 256 x 208.
  const std::vector<float> flat(2500u * 2048u, 1234.5f);
  double worst = 0;
  for (float v : ResampleToGrid(flat.data(), 2500, 2048, 256, 208)) worst = std::max(worst, std::fabs(v - 1234.5));
  CHECK(worst < 1e-3);
  CHECK_THROWS_AS(ResampleToGrid(img.data(), 4, 4, 8, 2), std::invalid_argument);
}

TEST_CASE("normalisation maps the 0.5th and 99.5th percentiles to 0 and 1 and inverts MONOCHROME1") {
  std::vector<float> grid(1000);
  for (size_t i = 0; i < grid.size(); ++i) grid[i] = static_cast<float>(i);  // ranks 4 and 994
  ModelSpec spec;
  std::vector<float> x = grid;
  Normalise(x, spec, false);
  CHECK(x[0] == 0);
  CHECK(x[4] == doctest::Approx(0));
  CHECK(x[499] == doctest::Approx((499.0 - 4) / 990));
  CHECK(x[999] == 1);
  std::vector<float> inverted = grid;
  Normalise(inverted, spec, true);
  CHECK(inverted[499] == doctest::Approx(1 - (499.0 - 4) / 990));
  CHECK(inverted[0] == 1);
}

TEST_CASE("model metadata sets the grid and operating point and rejects bad values") {
  ModelSpec spec;
  const std::string version = ParseModelMetadata(
      R"({"cell_threshold": 0.5, "grid_columns": 208, "grid_rows": 256, "model_version": "pneumothorax-ref-x", )"
      R"("threshold": 0.4321, "top_k": 16})",
      spec);
  CHECK(version == "pneumothorax-ref-x");
  CHECK(spec.threshold == doctest::Approx(0.4321));
  CHECK(spec.top_k == 16);
  CHECK(spec.grid_rows == 256);
  ModelSpec other;
  CHECK_THROWS_AS(ParseModelMetadata(R"({"threshold": 7})", other), std::invalid_argument);
  CHECK_THROWS_AS(ParseModelMetadata(R"({"grid_rows": 250})", other), std::invalid_argument);
  CHECK(other.threshold == 0.5);
  CHECK(ParseModelMetadata("{}", other).empty());
}

// A 32 x 24 grid: lung fields in columns 2..9 (image left) and 14..21 (image right), rows 4..27; midline 11.5.
struct Chest {
  ModelSpec spec = SmallGrid(32, 24);
  std::vector<float> prob = std::vector<float>(2 * 32 * 24, 0.0f);
  float& ptx(uint32_t r, uint32_t c) { return prob[r * 24 + c]; }
  float& lung(uint32_t r, uint32_t c) { return prob[32 * 24 + r * 24 + c]; }
  Chest() {
    for (uint32_t r = 4; r < 28; ++r) {
      for (uint32_t c = 2; c < 10; ++c) lung(r, c) = 0.9f;
      for (uint32_t c = 14; c < 22; ++c) lung(r, c) = 0.9f;
    }
  }
};

TEST_CASE("analysis: no pneumothorax cell is absent with no side, size or outline") {
  Chest chest;
  const Analysis a = Analyze(chest.prob, chest.spec);
  CHECK_FALSE(a.present);
  CHECK(a.score == 0);
  CHECK(a.side == ImageSide::kNone);
  CHECK(a.size_percent == 0);
  CHECK(a.contour.empty());
  CHECK(a.midline_column == doctest::Approx(11.5));
}

TEST_CASE("analysis: an apical rim on the image right gives side, size against that hemithorax and its outline") {
  Chest chest;
  // Pneumothorax: rows 4..9 of the right lung field (6 x 8 = 48 of 192 cells = 25 %); the lung channel is low
  // there, as in a collapsed lung, so the hemithorax is the union of both channels.
  for (uint32_t r = 4; r < 10; ++r) {
    for (uint32_t c = 14; c < 22; ++c) {
      chest.ptx(r, c) = 0.95f;
      chest.lung(r, c) = 0.1f;
    }
  }
  chest.ptx(20, 4) = 0.6f;  // one stray cell on the other side does not change the side
  const Analysis a = Analyze(chest.prob, chest.spec);
  CHECK(a.present);
  CHECK(a.score == doctest::Approx(0.95));
  CHECK(a.side == ImageSide::kRight);
  CHECK(a.pneumothorax_cells == 48);
  CHECK(a.hemithorax_cells == 192);
  CHECK(a.size_percent == doctest::Approx(25.0));
  // The outline of a rectangle is its four corners, clockwise from the top-left (grid-cell corners).
  const std::vector<float> box = {14, 4, 22, 4, 22, 10, 14, 10};
  CHECK(a.contour == box);
}

TEST_CASE("analysis: the outline follows a non-convex region and keeps the largest component") {
  Chest chest;
  // An L shape in the left field plus a separate single cell: the outline has six corners.
  for (uint32_t r = 5; r < 15; ++r) chest.ptx(r, 2) = 0.9f;
  for (uint32_t c = 2; c < 8; ++c) chest.ptx(14, c) = 0.9f;
  chest.ptx(25, 8) = 0.9f;
  const Analysis a = Analyze(chest.prob, chest.spec);
  CHECK(a.side == ImageSide::kLeft);
  const std::vector<float> ell = {2, 5, 3, 5, 3, 14, 8, 14, 8, 15, 2, 15};
  CHECK(a.contour == ell);
  CHECK(a.pneumothorax_cells == 16);  // the measurement counts every pneumothorax cell on the side
}

TEST_CASE("analysis: comparable pneumothorax on both halves is bilateral and measured against both fields") {
  Chest chest;
  for (uint32_t r = 4; r < 8; ++r) {
    for (uint32_t c = 2; c < 10; ++c) chest.ptx(r, c) = 0.9f;
    for (uint32_t c = 14; c < 22; ++c) chest.ptx(r, c) = 0.9f;
  }
  const Analysis a = Analyze(chest.prob, chest.spec);
  CHECK(a.side == ImageSide::kBoth);
  CHECK(a.size_percent == doctest::Approx(100.0 * 64 / 384));
  CHECK_THROWS_AS(Analyze(std::vector<float>(10), chest.spec), std::invalid_argument);
}

TEST_CASE("closed polygon simplification drops points within the tolerance and keeps the corners") {
  // A square with extra points on its edges and one small notch of 0.5.
  const std::vector<float> square = {0, 0, 5, 0, 10, 0, 10, 5, 10.5f, 6, 10, 7, 10, 10, 5, 10, 0, 10, 0, 5};
  const std::vector<float> s = aihub_ref::SimplifyClosedPolygon(square, 1.0);
  CHECK(s == std::vector<float>{0, 0, 10, 0, 10, 10, 0, 10});
  const std::vector<float> fine = aihub_ref::SimplifyClosedPolygon(square, 0.1);
  CHECK(fine.size() > s.size());
}

}  // namespace aihub::pneumothorax
