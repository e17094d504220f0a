// The built hyperdensity.so, loaded with dlopen and driven through the C ABI by the fake host
// (reference/support/fake_host.h) serving a phantom series read back with DCMTK.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "phantom/head_ct.h"
#include "reference/support/ct_job.h"
#include "tools/ct_series_reader.h"

namespace {

using aihub::phantom::HemorrhageType;
using aihub::phantom::Side;
using aihub::testing::FakeHostApi;
using aihub::testing::PluginLibrary;

aihub_job LoadJob(uint64_t seed, HemorrhageType type, Side side, uint32_t slices = 40) {
  aihub::testing::TempDir dir("hyperdensity-plugin");
  aihub::phantom::HeadCtOptions o;
  o.seed = seed;
  o.hemorrhage = type;
  o.side = side;
  o.size = 256;
  o.slices = slices;
  const auto truth = aihub::phantom::WriteHeadCt(o, dir.path());
  REQUIRE(truth.ok());
  return aihub::testing::CtJob(aihub::testing::ReadCtSeriesHu(dir.path() / truth->folder));
}

}  // namespace

TEST_CASE("descriptor names a reference plugin with head CT rules") {
  PluginLibrary p("hyperdensity.so");
  const aihub_plugin_descriptor* d = p.describe();
  CHECK(std::string(d->id) == "hyperdensity");
  CHECK(std::string(d->version) == "1.0.0");
  CHECK(std::string(d->model_version) == "rules-1");
  CHECK(std::string(d->name).find("not for clinical use") != std::string::npos);
  CHECK(std::string(d->default_rules_yaml) == "{Modality: CT, BodyPartExamined: [HEAD, BRAIN]}");
  CHECK(d->api_version_major == AIHUB_PLUGIN_API_VERSION_MAJOR);
}

TEST_CASE("through the C ABI the plugin self-tests and reports a critical left finding with volume and region and a negative") {
  PluginLibrary p("hyperdensity.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE(p.create(&host, &ctx, &instance) == AIHUB_OK);
  CHECK(p.self_test(instance) == AIHUB_OK);

  aihub::phantom::HeadCtOptions o;
  o.seed = 31;
  o.hemorrhage = HemorrhageType::kIntraparenchymal;
  o.size = 256;
  const auto truth = aihub::phantom::GenerateHeadCt(o);
  REQUIRE(truth.ok());
  aihub_job positive = LoadJob(31, HemorrhageType::kIntraparenchymal, Side::kLeft);
  REQUIRE(p.execute(instance, &positive) == AIHUB_OK);
  REQUIRE(positive.findings.size() == 1);
  const auto& f = positive.findings[0];
  CHECK(positive.builder_error.empty());
  CHECK(f.code.value == "1386000");
  CHECK(f.code.scheme == "SCT");
  CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
  CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);
  CHECK(f.laterality == AIHUB_LATERALITY_LEFT);
  CHECK(f.confidence > 0.5);
  REQUIRE(f.measurements.size() == 1);
  CHECK(f.measurements[0].code.value == "118565006");
  CHECK(f.measurements[0].unit == "mL");
  const double truth_ml = truth->truth.hemorrhage.volume_ml;
  CHECK(std::fabs(f.measurements[0].value - truth_ml) <= 0.2 * truth_ml);
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == AIHUB_GRAPHIC_POLYGON);
  CHECK(f.regions[0].frame >= truth->truth.hemorrhage.box.slice_min);
  CHECK(f.regions[0].frame <= truth->truth.hemorrhage.box.slice_max);
  CHECK(f.regions[0].points.size() >= 6);
  CHECK_FALSE(positive.summary.empty());
  REQUIRE_FALSE(positive.progress.empty());
  CHECK(positive.progress.back() == doctest::Approx(1.0));

  aihub_job negative = LoadJob(32, HemorrhageType::kNone, Side::kLeft);
  REQUIRE(p.execute(instance, &negative) == AIHUB_OK);
  REQUIRE(negative.findings.size() == 1);
  CHECK(negative.findings[0].presence == AIHUB_PRESENCE_ABSENT);
  CHECK(negative.findings[0].urgency == AIHUB_URGENCY_ROUTINE);
  CHECK(negative.findings[0].measurements.empty());
  CHECK(negative.findings[0].regions.empty());
  p.destroy(instance);
}

TEST_CASE("not applicable for too few slices or non-axial or no pixel spacing or colour and cancellation stops it") {
  PluginLibrary p("hyperdensity.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE(p.create(&host, &ctx, &instance) == AIHUB_OK);

  aihub_job short_series = LoadJob(40, HemorrhageType::kNone, Side::kLeft, 8);
  CHECK(p.execute(instance, &short_series) == AIHUB_FAILED_PRECONDITION);
  CHECK(short_series.error.find("slices") != std::string::npos);

  aihub_job job = LoadJob(41, HemorrhageType::kSubdural, Side::kRight, 20);
  aihub_job sagittal = job;
  const double sag[6] = {0, 1, 0, 0, 0, -1};
  std::copy(sag, sag + 6, sagittal.series[0].geometry.orientation);
  CHECK(p.execute(instance, &sagittal) == AIHUB_FAILED_PRECONDITION);
  CHECK(sagittal.error.find("axial") != std::string::npos);

  aihub_job no_spacing = job;
  no_spacing.series[0].geometry.pixel_spacing[0] = 0;
  CHECK(p.execute(instance, &no_spacing) == AIHUB_FAILED_PRECONDITION);

  aihub_job colour = job;
  colour.series[0].geometry.photometric = AIHUB_PHOTOMETRIC_RGB;
  colour.series[0].geometry.samples_per_pixel = 3;
  CHECK(p.execute(instance, &colour) == AIHUB_FAILED_PRECONDITION);

  aihub_job cancelled = job;
  cancelled.cancelled = true;
  CHECK(p.execute(instance, &cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.findings.empty());

  REQUIRE(p.execute(instance, &job) == AIHUB_OK);
  REQUIRE(job.findings.size() == 1);
  CHECK(job.findings[0].laterality == AIHUB_LATERALITY_RIGHT);
  p.destroy(instance);
}

TEST_CASE("config min_volume_ml raises the threshold and invalid values fail create") {
  PluginLibrary p("hyperdensity.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context strict;
  strict.numbers["min_volume_ml"] = 1e3;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE(p.create(&host, &strict, &instance) == AIHUB_OK);
  aihub_job job = LoadJob(31, HemorrhageType::kIntraparenchymal, Side::kLeft);
  REQUIRE(p.execute(instance, &job) == AIHUB_OK);
  REQUIRE(job.findings.size() == 1);
  CHECK(job.findings[0].presence == AIHUB_PRESENCE_ABSENT);
  p.destroy(instance);

  aihub_plugin_context bad;
  bad.numbers["min_volume_ml"] = -1;
  instance = nullptr;
  CHECK(p.create(&host, &bad, &instance) == AIHUB_INVALID_ARGUMENT);
  CHECK(instance == nullptr);
  CHECK(bad.error.find("min_volume_ml") != std::string::npos);
}
