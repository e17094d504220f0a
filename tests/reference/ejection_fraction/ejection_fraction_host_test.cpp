// The built ejection_fraction.so and its model deployed in a plugin folder and run by the real host (registry, job
// runner) on phantom cardiac cines scanned from disk, as aihubd runs it: the default rules route the cine, EF comes
// back with its measurements and outline, and a cine the host cannot sort (a missing phase frame) fails with the
// reason instead of reaching the plugin.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "config/site_config.h"
#include "core/job_runner.h"
#include "dicom/study.h"
#include "host/plugins/test_support.h"
#include "phantom/cardiac_cine.h"
#include "reference/support/reference_host.h"
#include "store/job_store.h"

namespace {

const aihub::Measurement* Find(const aihub::Finding& f, const std::string& code) {
  for (const auto& m : f.measurements) {
    if (m.concept.value == code) return &m;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("ejection_fraction: "
          "through the host: a cine with a low EF is a critical finding with EDV, ESV, EF and an outline") {
  aihub::testing::ReferenceHost host("ejection_fraction", {"ejection_fraction.pt", "ejection_fraction.so"});
  REQUIRE(host.registry->Get("ejection_fraction") != nullptr);
  CHECK(host.registry->Get("ejection_fraction")->info().model_version.rfind("ejection-fraction-ref-", 0) == 0);

  aihub::phantom::CardiacCineOptions o;
  o.seed = 41;
  o.slices = 6;
  o.phases = 8;
  o.size = 128;
  o.ef_percent = 22;
  const auto truth = aihub::phantom::WriteCardiacCine(o, host.root / "in-low");
  REQUIRE(truth.ok());
  const auto out = host.RunStudy(host.root / "in-low" / truth->folder);
  REQUIRE_MESSAGE(out.status.ok(), out.status.ToString());
  REQUIRE(out.result.has_value());
  REQUIRE(out.result->findings.size() == 1);
  const auto& f = out.result->findings[0];
  CHECK(f.concept.value == "134401001");
  CHECK(f.concept.scheme == "SCT");
  CHECK(f.presence == aihub::Presence::kPresent);
  CHECK(f.urgency == aihub::Urgency::kCritical);
  const auto* ef = Find(f, "10230-1");
  const auto* edv = Find(f, "18026-5");
  const auto* esv = Find(f, "18148-7");
  REQUIRE((ef && edv && esv));
  CHECK(ef->concept.scheme == "LN");
  CHECK(ef->unit_ucum == "%");
  CHECK(edv->unit_ucum == "mL");
  CHECK_MESSAGE(std::fabs(ef->value - truth->ef_percent) <= 4,
                "EF " << ef->value << " %, truth " << truth->ef_percent << " %");
  CHECK_MESSAGE(std::fabs(edv->value / truth->edv_ml - 1) <= 0.1,
                "EDV " << edv->value << " mL, truth " << truth->edv_ml << " mL");
  CHECK_MESSAGE(std::fabs(esv->value / truth->esv_ml - 1) <= 0.1,
                "ESV " << esv->value << " mL, truth " << truth->esv_ml << " mL");
  // The outline lies on an instance of the study: the end-diastolic frame of a mid slice.
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == aihub::GraphicType::kPolygon);
  const std::string& uid = f.regions[0].sop_instance_uid;
  CHECK_FALSE(uid.empty());
  CHECK_FALSE(out.result->summary.empty());
}

TEST_CASE("ejection_fraction: "
          "through the host: a cine with a missing phase frame or a shifted slice fails with the series error") {
  aihub::testing::ReferenceHost host("ejection_fraction", {"ejection_fraction.pt", "ejection_fraction.so"});
  REQUIRE(host.registry->Get("ejection_fraction") != nullptr);
  for (const bool missing : {true, false}) {
    CAPTURE(missing);
    aihub::phantom::CardiacCineOptions o;
    o.seed = missing ? 42 : 43;
    o.slices = 6;
    o.phases = 8;
    o.size = 128;
    if (missing) {
      o.missing_phase = 3;
    } else {
      o.uneven_spacing = true;
    }
    const std::string in = missing ? "in-missing" : "in-uneven";
    const auto truth = aihub::phantom::WriteCardiacCine(o, host.root / in);
    REQUIRE(truth.ok());
    const auto out = host.RunStudy(host.root / in / truth->folder);
    // The host refuses the series before the plugin runs, and says why.
    CHECK(out.status.code() == AIHUB_FAILED_PRECONDITION);
    CHECK_MESSAGE(out.status.message().find("no usable series") != std::string::npos, out.status.ToString());
    CHECK_MESSAGE(out.status.message().find(missing ? "inconsistent cine: phase 4" : "uneven slice spacing") !=
                      std::string::npos,
                  out.status.ToString());
    CHECK(out.execute_seconds == 0);
    CHECK_FALSE(out.result.has_value());
  }
}

TEST_CASE("ejection_fraction: "
          "through the host: without its model file ejection_fraction fails to load with the reason") {
  aihub::testing::ReferenceHost host("ejection_fraction", {"ejection_fraction.so"});
  CHECK(host.registry->Get("ejection_fraction") == nullptr);
  const std::string reason = host.Rejection("ejection_fraction.so");
  CHECK_MESSAGE(reason.find("model file not found") != std::string::npos, reason);
  CHECK_MESSAGE(reason.find("ejection_fraction.pt") != std::string::npos, reason);
}
