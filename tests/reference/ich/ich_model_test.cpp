// Pre- and post-processing of the ICH plugin, without libtorch: the numbers train.py relies on.
#include "ich_model.h"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace aihub::ich {

TEST_CASE("pooling factor maps square multiples of the grid and refuses the rest") {
  CHECK(PoolingFactor(512, 512, 128) == 4);
  CHECK(PoolingFactor(256, 256, 128) == 2);
  CHECK(PoolingFactor(128, 128, 128) == 1);
  CHECK(PoolingFactor(192, 192, 128) == 0);
  CHECK(PoolingFactor(512, 256, 128) == 0);
  CHECK(PoolingFactor(64, 64, 128) == 0);
}

TEST_CASE("preprocessing windows HU 0 to 100 before mean pooling and counts bone and blood-dense pixels") {
  ModelSpec spec;
  // 4x4 image pooled by 2 to 2x2: one cell of blood, one with a bone pixel, one of air, one of brain with one
  // pixel at blood density (52 HU counts, 51.9 and bone do not).
  const std::vector<float> hu = {70, 70, 1000, 30,  //
                                 70, 70, 30,   30,  //
                                 -1000, -1000, 52, 51.9f,  //
                                 -1000, -1000, 10, 10};
  std::vector<float> out(kInputChannels * 4 + 1, -7.0f);  // channels 4 floats apart; the last must stay untouched
  PreprocessSlice(hu.data(), 4, 2, spec, out.data(), 4);
  const float* w = out.data();
  const float* b = out.data() + 4;
  const float* d = out.data() + 8;
  CHECK(w[0] == doctest::Approx(0.7));
  CHECK(w[1] == doctest::Approx((1.0 + 0.3 * 3) / 4));  // bone clips to 1 before pooling
  CHECK(w[2] == doctest::Approx(0.0));
  CHECK(w[3] == doctest::Approx((0.52 + 0.519 + 0.1 + 0.1) / 4));
  CHECK(b[0] == 0);
  CHECK(b[1] == doctest::Approx(0.25));
  CHECK(b[3] == 0);
  CHECK(d[0] == doctest::Approx(1.0));
  CHECK(d[1] == 0);  // 30 HU brain and a bone pixel
  CHECK(d[2] == 0);
  CHECK(d[3] == doctest::Approx(0.25));
  CHECK(out.back() == -7.0f);
}

TEST_CASE("model metadata sets the operating point and rejects bad values") {
  ModelSpec spec;
  const std::string version = ParseModelMetadata(
      R"({"blood_hu": 55.0, "bone_hu": 300.0, "channels": 3, "grid": 128, "model_version": "ich-ref-2026.11.2", )"
      R"("threshold": 0.4321, "top_k": 8, "volume_cut": 0.1, "volume_mode": "soft"})",
      spec);
  CHECK(version == "ich-ref-2026.11.2");
  CHECK(spec.threshold == doctest::Approx(0.4321));
  CHECK(spec.top_k == 8);
  CHECK(spec.grid == 128);
  CHECK(spec.blood_hu == 55);
  CHECK(spec.volume_mode == VolumeMode::kSoft);
  CHECK(spec.volume_cut == doctest::Approx(0.1));
  ModelSpec other;
  // Each bad input also carries good values (top_k 3): a failed parse must leave the spec as it was.
  const std::string good = R"("channels": 3, "top_k": 3)";
  for (const char* bad : {R"("threshold": 7)", R"("grid": 130)", R"("volume_mode": "max")", R"("blood_hu": 400)"}) {
    CHECK_THROWS_AS(ParseModelMetadata("{" + good + ", " + bad + "}", other), std::invalid_argument);
  }
  CHECK_THROWS_AS(ParseModelMetadata("{" + good + R"(, "volume_mode": "soft", "volume_cut": 2})", other),
                  std::invalid_argument);
  CHECK(other.top_k == 16);
  CHECK(other.volume_mode == VolumeMode::kCount);
  CHECK(ParseModelMetadata("{" + good + "}", other).empty());
  CHECK(other.top_k == 3);
  // A model trained for other preprocessing is refused, naming the mismatch; models before ich-ref-2026.11.2
  // did not state their channel count and took two.
  try {
    ParseModelMetadata(R"({"model_version": "ich-ref-2026.11"})", other);
    FAIL("a two-channel model was accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("takes 2 input channels; this plugin prepares 3") != std::string::npos);
  }
}

// A 3-slice 16x16 grid: a head filling columns 2..13 (midline 7.5) and a probability map.
struct Grid {
  GridGeometry g;
  std::vector<float> prob, input;
  Grid() {
    g.slices = 3;
    g.grid = 16;
    g.factor = 4;
    g.column_spacing_mm = g.row_spacing_mm = 0.5;  // 2 mm cells
    g.slice_spacing_mm = 5;
    const size_t n = 3 * 16 * 16;
    prob.assign(n, 0.01f);
    input.assign(kInputChannels * n, 0);
    for (size_t i = 0; i < n; ++i) {
      const size_t c = i % 16;
      if (c >= 2 && c <= 13) input[i] = 0.3f;
    }
  }
  void Blood(uint32_t k, uint32_t r, uint32_t c, float p = 0.9f) { prob[(k * 16 + r) * 16 + c] = p; }
};

TEST_CASE("analysis gives score and volume and side in patient LPS and best slice and box in original pixels") {
  ModelSpec spec;
  spec.top_k = 4;
  spec.threshold = 0.5;
  Grid grid;
  // Six voxels at columns 11..12 (right of the image midline = patient left when columns run toward +x).
  for (uint32_t r = 5; r <= 7; ++r) {
    grid.Blood(1, r, 11);
    grid.Blood(1, r, 12);
  }
  const Analysis a = Analyze(grid.prob, grid.input, grid.g, spec);
  CHECK(a.present);
  CHECK(a.score == doctest::Approx(0.9));
  CHECK(a.blood_voxels == 6);
  CHECK(a.volume_ml == doctest::Approx(6 * 2 * 2 * 5 / 1000.0));
  CHECK(a.side == Side::kLeft);
  CHECK(a.offset_mm == doctest::Approx((11.5 - 7.5) * 2));
  CHECK(a.best_slice == 1);
  CHECK(a.box[0] == 44);  // column 11 * factor 4
  CHECK(a.box[1] == 20);
  CHECK(a.box[2] == 52);
  CHECK(a.box[3] == 32);

  // The same image with the row cosine pointing to patient right: the side flips.
  Grid flipped = grid;
  flipped.g.columns_toward_patient_left = false;
  CHECK(Analyze(flipped.prob, flipped.input, flipped.g, spec).side == Side::kRight);

  // Blood on both sides near the midline: bilateral.
  Grid both;
  both.Blood(0, 4, 5);
  both.Blood(0, 4, 10);
  CHECK(Analyze(both.prob, both.input, both.g, spec).side == Side::kBilateral);

  // Nothing above the voxel threshold: absent, no volume.
  Grid none;
  const Analysis n = Analyze(none.prob, none.input, none.g, spec);
  CHECK_FALSE(n.present);
  CHECK(n.volume_ml == 0);
  CHECK(n.side == Side::kNone);
  CHECK_THROWS_AS(Analyze(std::vector<float>(5), none.input, none.g, spec), std::invalid_argument);
}

TEST_CASE("volume counts cells at or above the cut, or sums their probabilities in soft mode") {
  Grid grid;
  grid.Blood(1, 5, 11, 0.9f);
  grid.Blood(1, 6, 11, 0.5f);
  grid.Blood(1, 7, 11, 0.3f);  // below the voxel threshold: no part of side or region
  const double cell_ml = 2 * 2 * 5 / 1000.0;
  ModelSpec spec;
  spec.top_k = 2;
  spec.volume_cut = 0.3;
  const Analysis count = Analyze(grid.prob, grid.input, grid.g, spec);
  CHECK(count.volume_ml == doctest::Approx(3 * cell_ml));
  CHECK(count.blood_voxels == 2);
  spec.volume_mode = VolumeMode::kSoft;
  CHECK(Analyze(grid.prob, grid.input, grid.g, spec).volume_ml == doctest::Approx((0.9 + 0.5 + 0.3) * cell_ml));
  spec.volume_cut = 0.4;
  CHECK(Analyze(grid.prob, grid.input, grid.g, spec).volume_ml == doctest::Approx((0.9 + 0.5) * cell_ml));
}

}  // namespace aihub::ich
