// The built pe.so and its model deployed in a plugin folder and run by the real host (registry, router with the
// plugin's default rules, job runner) on CTPA phantoms scanned from disk, as aihubd runs it.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "config/site_config.h"
#include "core/job_runner.h"
#include "dicom/study.h"
#include "host/plugins/test_support.h"
#include "reference/support/reference_host.h"
#include "phantom/ctpa.h"
#include "store/job_store.h"

namespace {

using aihub::phantom::PulmonaryBranch;

}  // namespace

TEST_CASE("through the host: a left pulmonary artery embolus is found with side, site, volume, burden and region") {
  aihub::testing::ReferenceHost host("pe", {"pe.pt", "pe.so"});
  REQUIRE(host.registry->Get("pe") != nullptr);
  CHECK(host.registry->Get("pe")->info().model_version.rfind("pe-ref-", 0) == 0);

  aihub::phantom::CtpaOptions o;
  o.seed = 71;
  o.embolus = true;
  o.branch = PulmonaryBranch::kLeft;
  o.size = 256;
  o.slices = 128;
  const auto truth = aihub::phantom::WriteCtpa(o, host.root / "in-positive");
  REQUIRE(truth.ok());
  o.seed = 72;
  o.embolus = false;
  o.branch.reset();
  const auto negative_truth = aihub::phantom::WriteCtpa(o, host.root / "in-negative");
  REQUIRE(negative_truth.ok());

  auto run = [&](const std::filesystem::path& dir) {
    std::shared_ptr<const aihub::dicom::Study> study;
    aihub::core::JobOutcome out = host.RunStudy(dir, &study);
    REQUIRE_MESSAGE(out.status.ok(), out.status.ToString());
    REQUIRE(out.result.has_value());
    REQUIRE(out.result->findings.size() == 1);
    return std::make_pair(std::move(out), study);
  };

  const auto positive = run(host.root / "in-positive" / truth->folder);
  const auto& f = positive.first.result->findings[0];
  CHECK(f.concept.value == "59282003");
  CHECK(f.presence == aihub::Presence::kPresent);
  CHECK(f.urgency == aihub::Urgency::kCritical);
  CHECK(f.laterality == aihub::Laterality::kLeft);
  REQUIRE(f.site.has_value());
  CHECK(f.site->value == "50408007");  // left pulmonary artery
  CHECK(f.confidence > 0.5);
  REQUIRE(f.measurements.size() == 2);
  CHECK(f.measurements[0].concept.value == "118565006");
  CHECK(f.measurements[0].unit_ucum == "mL");
  const double truth_ml = truth->embolus.volume_ml;
  CHECK_MESSAGE(std::fabs(f.measurements[0].value - truth_ml) <= 0.35 * truth_ml,
                "volume " << f.measurements[0].value << " mL, truth " << truth_ml << " mL");
  CHECK(f.measurements[1].unit_ucum == "%");
  CHECK(f.measurements[1].value > 0);
  CHECK(f.measurements[1].value < 50);
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == aihub::GraphicType::kPolygon);
  const auto& box = truth->embolus.box;
  const auto& pts = f.regions[0].points;
  REQUIRE(pts.size() >= 6);
  float c0 = pts[0], c1 = pts[0], r0 = pts[1], r1 = pts[1];
  for (size_t i = 0; i + 1 < pts.size(); i += 2) {
    c0 = std::min(c0, pts[i]), c1 = std::max(c1, pts[i]);
    r0 = std::min(r0, pts[i + 1]), r1 = std::max(r1, pts[i + 1]);
  }
  // The outline overlaps the truth's box (original pixel coordinates) ...
  CHECK(c0 <= box.column_max + 1);
  CHECK(c1 >= box.column_min);
  CHECK(r0 <= box.row_max + 1);
  CHECK(r1 >= box.row_min);
  // ... on an image within a model cell (3.1 mm = 2 images here) of the clot's slices.
  const auto& frames = positive.second->series[0].frames;
  const auto& instances = positive.second->series[0].instances;
  uint32_t frame = 0;
  while (frame < frames.size() &&
         instances[frames[frame].instance_index].sop_instance_uid != f.regions[0].sop_instance_uid) {
    ++frame;
  }
  CHECK(frame + 2 >= box.slice_min);
  CHECK(frame <= box.slice_max + 2);
  CHECK(positive.first.result->summary.find("left pulmonary artery") != std::string::npos);

  const auto negative = run(host.root / "in-negative" / negative_truth->folder);
  const auto& n = negative.first.result->findings[0];
  CHECK(n.presence == aihub::Presence::kAbsent);
  CHECK(n.urgency == aihub::Urgency::kRoutine);
  CHECK(n.measurements.empty());
  CHECK(n.regions.empty());
  CHECK_FALSE(n.site.has_value());
  CHECK(n.confidence < f.confidence);
}

TEST_CASE("through the host: without its model file pe fails to load with the reason and other plugins load") {
  aihub::testing::ReferenceHost host("pe", {"pe.so", "hyperdensity.so"});
  CHECK(host.registry->Get("pe") == nullptr);
  CHECK(host.registry->Get("hyperdensity") != nullptr);
  const std::string reason = host.Rejection("pe.so");
  CHECK_MESSAGE(reason.find("model file not found") != std::string::npos, reason);
  CHECK_MESSAGE(reason.find("pe.pt") != std::string::npos, reason);
}
