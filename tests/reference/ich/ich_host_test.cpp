// The built ich.so and its model deployed in a plugin folder and run by the real host (registry, job runner) on
// phantom studies scanned from disk, as aihubd runs it.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "config/site_config.h"
#include "core/job_runner.h"
#include "dicom/study.h"
#include "host/plugins/test_support.h"
#include "reference/support/reference_host.h"
#include "phantom/head_ct.h"
#include "store/job_store.h"

namespace {

using aihub::phantom::HemorrhageType;
using aihub::phantom::Side;

}  // namespace

TEST_CASE("through the host: a left intraparenchymal bleed is found with side and volume and region and a normal head is not") {
  aihub::testing::ReferenceHost host("ich", {"ich.pt", "ich.so"});
  REQUIRE(host.registry->Get("ich") != nullptr);
  CHECK(host.registry->Get("ich")->info().model_version.rfind("ich-ref-", 0) == 0);

  aihub::phantom::HeadCtOptions o;
  o.seed = 31;
  o.hemorrhage = HemorrhageType::kIntraparenchymal;
  o.side = Side::kLeft;
  o.size = 256;
  const auto truth = aihub::phantom::WriteHeadCt(o, host.root / "in-positive");
  REQUIRE(truth.ok());
  o.seed = 32;
  o.hemorrhage = HemorrhageType::kNone;
  const auto negative_truth = aihub::phantom::WriteHeadCt(o, host.root / "in-negative");
  REQUIRE(negative_truth.ok());

  auto run = [&](const std::filesystem::path& dir) {
    std::shared_ptr<const aihub::dicom::Study> study;
    aihub::core::JobOutcome o = host.RunStudy(dir, &study);
    REQUIRE_MESSAGE(o.status.ok(), o.status.ToString());
    REQUIRE(o.result.has_value());
    REQUIRE(o.result->findings.size() == 1);
    return std::make_pair(std::move(o), study);
  };

  const auto positive = run(host.root / "in-positive" / truth->folder);
  const auto& f = positive.first.result->findings[0];
  CHECK(f.concept.value == "1386000");
  CHECK(f.presence == aihub::Presence::kPresent);
  CHECK(f.urgency == aihub::Urgency::kCritical);
  CHECK(f.laterality == aihub::Laterality::kLeft);
  CHECK(f.confidence > 0.5);
  REQUIRE(f.measurements.size() == 1);
  CHECK(f.measurements[0].concept.value == "118565006");
  CHECK(f.measurements[0].unit_ucum == "mL");
  const double truth_ml = truth->hemorrhage.volume_ml;
  CHECK_MESSAGE(std::fabs(f.measurements[0].value - truth_ml) <= 0.25 * truth_ml,
                "volume " << f.measurements[0].value << " mL, truth " << truth_ml << " mL");
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == aihub::GraphicType::kPolygon);
  const auto& box = truth->hemorrhage.box;
  const auto& pts = f.regions[0].points;
  REQUIRE(pts.size() == 8);
  // The box overlaps the truth's box (original pixel coordinates) on a slice that holds blood.
  CHECK(pts[0] <= box.column_max + 1);
  CHECK(pts[4] >= box.column_min);
  CHECK(pts[1] <= box.row_max + 1);
  CHECK(pts[5] >= box.row_min);
  // The referenced image is one of the slices holding blood (frames are sorted by z like the phantom's slices).
  const auto& frames = positive.second->series[0].frames;
  const auto& instances = positive.second->series[0].instances;
  uint32_t frame = 0;
  while (frame < frames.size() &&
         instances[frames[frame].instance_index].sop_instance_uid != f.regions[0].sop_instance_uid) {
    ++frame;
  }
  CHECK(frame >= box.slice_min);
  CHECK(frame <= box.slice_max);
  CHECK_FALSE(positive.first.result->summary.empty());

  const auto negative = run(host.root / "in-negative" / negative_truth->folder);
  const auto& n = negative.first.result->findings[0];
  CHECK(n.presence == aihub::Presence::kAbsent);
  CHECK(n.urgency == aihub::Urgency::kRoutine);
  CHECK(n.measurements.empty());
  CHECK(n.regions.empty());
  CHECK(n.confidence < f.confidence);
}

TEST_CASE("through the host: without its model file ich fails to load with the reason and other plugins load") {
  {
    aihub::testing::ReferenceHost host("ich", {"ich.so", "hyperdensity.so"});
    CHECK(host.registry->Get("ich") == nullptr);
    CHECK(host.registry->Get("hyperdensity") != nullptr);
    const std::string reason = host.Rejection("ich.so");
    CHECK_MESSAGE(reason.find("model file not found") != std::string::npos, reason);
    CHECK_MESSAGE(reason.find("ich.pt") != std::string::npos, reason);
  }
}

