// The built pneumothorax.so and its model deployed in a plugin folder and run by the real host (registry, job
// runner) on phantom chest X-rays scanned from disk, as aihubd runs it.
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
#include "phantom/chest_xray.h"
#include "store/job_store.h"

namespace {

using aihub::phantom::Side;

}  // namespace

TEST_CASE("through the host: a right pneumothorax is found with side, size and outline and a normal chest is not") {
  aihub::testing::ReferenceHost host("pneumothorax", {"pneumothorax.pt", "pneumothorax.so"});
  REQUIRE(host.registry->Get("pneumothorax") != nullptr);
  CHECK(host.registry->Get("pneumothorax")->info().model_version.rfind("pneumothorax-ref-", 0) == 0);

  aihub::phantom::ChestXrayOptions o;
  o.seed = 21;
  o.pneumothorax = true;
  o.side = Side::kRight;
  o.size_percent = 22;
  o.rows = 625;
  o.columns = 512;
  const auto truth = aihub::phantom::WriteChestXray(o, host.root / "in-positive");
  REQUIRE(truth.ok());
  o.seed = 22;
  o.pneumothorax = false;
  const auto negative_truth = aihub::phantom::WriteChestXray(o, host.root / "in-negative");
  REQUIRE(negative_truth.ok());

  auto run = [&](const std::filesystem::path& dir) {
    aihub::core::JobOutcome out = host.RunStudy(dir);
    REQUIRE_MESSAGE(out.status.ok(), out.status.ToString());
    REQUIRE(out.result.has_value());
    REQUIRE(out.result->findings.size() == 1);
    return out;
  };

  const auto positive = run(host.root / "in-positive" / truth->folder);
  const auto& f = positive.result->findings[0];
  CHECK(f.concept.value == "36118008");
  CHECK(f.concept.scheme == "SCT");
  CHECK(f.presence == aihub::Presence::kPresent);
  CHECK(f.urgency == aihub::Urgency::kCritical);
  CHECK(f.laterality == aihub::Laterality::kRight);  // from PatientOrientation L\F: the image's left half
  REQUIRE(f.measurements.size() == 1);
  CHECK(f.measurements[0].unit_ucum == "%");
  const double size = f.measurements[0].value, want = truth->pneumothorax.size_percent;
  CHECK_MESSAGE((std::fabs(size - want) <= 3 || std::fabs(size - want) <= 0.2 * want),
                "size " << size << " %, truth " << want << " %");
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == aihub::GraphicType::kPolygon);
  CHECK(f.regions[0].sop_instance_uid == truth->sop_instance_uid);
  // The outline's box overlaps the truth's box (original pixel coordinates) and stays in the image's left half.
  const auto& pts = f.regions[0].points;
  REQUIRE(pts.size() >= 6);
  float c0 = 1e9f, c1 = -1, r0 = 1e9f, r1 = -1;
  for (size_t i = 0; i + 1 < pts.size(); i += 2) {
    c0 = std::min(c0, pts[i]);
    c1 = std::max(c1, pts[i]);
    r0 = std::min(r0, pts[i + 1]);
    r1 = std::max(r1, pts[i + 1]);
  }
  const auto& box = truth->pneumothorax.box;
  CHECK(c1 <= truth->columns / 2.0f);
  CHECK(c0 <= box.column_max + 1);
  CHECK(c1 >= box.column_min);
  CHECK(r0 <= box.row_max + 1);
  CHECK(r1 >= box.row_min);
  CHECK_FALSE(positive.result->summary.empty());

  const auto negative = run(host.root / "in-negative" / negative_truth->folder);
  const auto& n = negative.result->findings[0];
  CHECK(n.presence == aihub::Presence::kAbsent);
  CHECK(n.urgency == aihub::Urgency::kRoutine);
  CHECK(n.measurements.empty());
  CHECK(n.regions.empty());
  CHECK(n.confidence < f.confidence);
}

TEST_CASE("through the host: without its model file pneumothorax fails to load with the reason, others load") {
  aihub::testing::ReferenceHost host("pneumothorax", {"pneumothorax.so", "hyperdensity.so"});
  CHECK(host.registry->Get("pneumothorax") == nullptr);
  CHECK(host.registry->Get("hyperdensity") != nullptr);
  const std::string reason = host.Rejection("pneumothorax.so");
  CHECK_MESSAGE(reason.find("model file not found") != std::string::npos, reason);
  CHECK_MESSAGE(reason.find("pneumothorax.pt") != std::string::npos, reason);
}
