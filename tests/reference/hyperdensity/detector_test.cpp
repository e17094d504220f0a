// The reference hyperdensity detector on phantom head CTs written to disk and read back with DCMTK.
#include "plugins/hyperdensity/detector.h"

#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include "phantom/head_ct.h"
#include "tools/ct_series_reader.h"

namespace {

using aihub::hyperdensity::Detect;
using aihub::hyperdensity::Detection;
using aihub::hyperdensity::DetectorConfig;
using aihub::hyperdensity::HuVolume;
using aihub::hyperdensity::Laterality;
using aihub::phantom::HeadCtOptions;
using aihub::phantom::HeadCtTruth;
using aihub::phantom::HemorrhageType;
using aihub::phantom::Side;

struct Case {
  HeadCtTruth truth;
  HuVolume volume;
};

Case Phantom(uint64_t seed, HemorrhageType type, Side side = Side::kLeft) {
  aihub::testing::TempDir dir("hyperdensity");
  HeadCtOptions o;  // realistic geometry: 512 x 512, 40 slices of 5 mm
  o.seed = seed;
  o.hemorrhage = type;
  o.side = side;
  auto truth = aihub::phantom::WriteHeadCt(o, dir.path());
  REQUIRE(truth.ok());
  const auto read = aihub::testing::ReadCtSeriesHu(dir.path() / truth->folder);
  Case c{*truth, {}};
  c.volume.columns = read.columns;
  c.volume.rows = read.rows;
  c.volume.slices = read.slices;
  c.volume.column_spacing_mm = read.column_spacing_mm;
  c.volume.row_spacing_mm = read.row_spacing_mm;
  c.volume.slice_spacing_mm = read.slice_spacing_mm;
  c.volume.columns_toward_patient_left = read.row_cosine_x > 0;
  c.volume.hu = read.hu;
  return c;
}

Laterality Expected(Side side) { return side == Side::kLeft ? Laterality::kLeft : Laterality::kRight; }

}  // namespace

TEST_CASE("intraparenchymal bleeds are found with volume within 20% and the right side") {
  struct Input {
    uint64_t seed;
    Side side;
  };
  for (const Input in : {Input{101, Side::kLeft}, Input{102, Side::kRight}, Input{103, Side::kLeft},
                         Input{104, Side::kRight}}) {
    const Case c = Phantom(in.seed, HemorrhageType::kIntraparenchymal, in.side);
    const Detection d = Detect(c.volume, DetectorConfig{});
    const auto& h = c.truth.hemorrhage;
    INFO("seed " << in.seed << " lobe " << h.lobe << ": truth " << h.volume_ml << " mL, found " << d.volume_ml);
    CHECK(d.present);
    CHECK(d.laterality == Expected(in.side));
    CHECK(std::fabs(d.volume_ml - h.volume_ml) <= 0.2 * h.volume_ml);
    CHECK(d.confidence > 0.5);
    REQUIRE_FALSE(d.components.empty());
    // The region lies on a slice with blood, inside the truth's box on that slice.
    const auto& largest = d.components.front();
    bool slice_has_blood = false;
    for (const auto& s : h.slices) {
      if (s.slice != largest.best_slice) continue;
      slice_has_blood = true;
      REQUIRE(largest.contour.size() >= 6);
      for (size_t i = 0; i + 1 < largest.contour.size(); i += 2) {
        CHECK(largest.contour[i] >= s.box.column_min - 2.0f);
        CHECK(largest.contour[i] <= s.box.column_max + 3.0f);
        CHECK(largest.contour[i + 1] >= s.box.row_min - 2.0f);
        CHECK(largest.contour[i + 1] <= s.box.row_max + 3.0f);
      }
    }
    CHECK(slice_has_blood);
  }
}

TEST_CASE("subdural and subarachnoid bleeds are found on the right side") {
  for (HemorrhageType type : {HemorrhageType::kSubdural, HemorrhageType::kSubarachnoid}) {
    for (const Side side : {Side::kLeft, Side::kRight}) {
      const uint64_t seed = 200 + static_cast<uint64_t>(type) * 10 + (side == Side::kLeft ? 0 : 1);
      const Case c = Phantom(seed, type, side);
      const Detection d = Detect(c.volume, DetectorConfig{});
      INFO("type " << static_cast<int>(type) << " seed " << seed << ": truth " << c.truth.hemorrhage.volume_ml
                   << " mL, found " << d.volume_ml);
      CHECK(d.present);
      CHECK(d.laterality == Expected(side));
      CHECK(d.volume_ml > 0.2 * c.truth.hemorrhage.volume_ml);  // the bone rim hides thin extra-axial blood
      CHECK(d.volume_ml < 1.2 * c.truth.hemorrhage.volume_ml);
    }
  }
}

TEST_CASE("no finding on hemorrhage-free heads") {
  for (uint64_t seed : {1, 2, 3, 4, 5}) {
    const Case c = Phantom(seed, HemorrhageType::kNone);
    const Detection d = Detect(c.volume, DetectorConfig{});
    INFO("seed " << seed << ": " << d.volume_ml << " mL in " << d.components.size() << " components");
    CHECK_FALSE(d.present);
    CHECK(d.confidence < 0.5);
    CHECK(d.laterality == Laterality::kNone);
    CHECK(d.slices_with_brain > 20);
  }
}

TEST_CASE("the presence threshold is configurable") {
  const Case c = Phantom(101, HemorrhageType::kIntraparenchymal);
  DetectorConfig strict;
  strict.min_volume_ml = c.truth.hemorrhage.volume_ml * 2;
  const Detection d = Detect(c.volume, strict);
  CHECK_FALSE(d.present);
  CHECK(d.volume_ml > 0);  // still measured
  CHECK(d.confidence < 0.5);
}

TEST_CASE("confidence is 0 without blood and 0.5 at the threshold and rises monotonically") {
  using aihub::hyperdensity::ConfidenceFromVolume;
  CHECK(ConfidenceFromVolume(0, 0.5) == 0);
  CHECK(ConfidenceFromVolume(0.5, 0.5) == doctest::Approx(0.5));
  double previous = 0;
  for (double v = 0.1; v < 100; v *= 1.5) {
    const double c = ConfidenceFromVolume(v, 0.5);
    CHECK(c > previous);
    CHECK(c < 1);
    previous = c;
  }
}

TEST_CASE("the built-in self-test passes and bad input is refused") {
  CHECK(aihub::hyperdensity::RunSelfTest(DetectorConfig{}) == "");
  HuVolume v;
  v.columns = v.rows = 16;
  v.slices = 2;
  v.column_spacing_mm = v.row_spacing_mm = v.slice_spacing_mm = 1;
  v.hu.resize(10);
  CHECK_THROWS_AS(Detect(v, DetectorConfig{}), std::invalid_argument);
  v.hu.resize(16 * 16 * 2);
  v.slice_spacing_mm = 0;
  CHECK_THROWS_AS(Detect(v, DetectorConfig{}), std::invalid_argument);
  DetectorConfig bad;
  bad.min_volume_ml = -1;
  CHECK(aihub::hyperdensity::ValidateConfig(bad) != "");
  bad = DetectorConfig{};
  bad.blood_min_hu = 95;  // above blood_max_hu
  CHECK(aihub::hyperdensity::ValidateConfig(bad) != "");
}

TEST_CASE("progress is reported per slice and an exception from it aborts") {
  const Case c = Phantom(7, HemorrhageType::kNone);
  int calls = 0;
  double last = 0;
  Detect(c.volume, DetectorConfig{}, [&](double f) {
    CHECK(f >= last);
    last = f;
    ++calls;
  });
  CHECK(calls >= static_cast<int>(c.volume.slices));
  CHECK(last == doctest::Approx(1.0));
  CHECK_THROWS_AS(Detect(c.volume, DetectorConfig{},
                         [&](double f) {
                           if (f > 0.2) throw std::runtime_error("cancelled");
                         }),
                  std::runtime_error);
}
