// The built pe.so with its TorchScript model through the C ABI and the shared fake host
// (reference/support/fake_host.h, which validates the result builder like the real host): the cases a real study
// cannot show (non-axial, missing spacing, colour, irregular slices, no contrast, cancellation, bad model files).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "phantom/ctpa.h"
#include "reference/support/ct_job.h"
#include "tools/ct_series_reader.h"

namespace {

using aihub::testing::FakeHostApi;
using aihub::testing::PluginLibrary;
using aihub::testing::TempDir;

aihub::testing::CtSeriesHu LoadSeries(uint64_t seed, std::optional<aihub::phantom::PulmonaryBranch> branch,
                                      uint32_t slices = 64, uint32_t size = 256) {
  TempDir dir("pe-plugin");
  aihub::phantom::CtpaOptions o;
  o.seed = seed;
  o.embolus = branch.has_value();
  o.branch = branch;
  o.size = size;
  o.slices = slices;
  const auto truth = aihub::phantom::WriteCtpa(o, dir.path());
  REQUIRE(truth.ok());
  return aihub::testing::ReadCtSeriesHu(dir.path() / truth->folder);
}

}  // namespace

TEST_CASE("descriptor names id and versions and CTPA rules") {
  PluginLibrary p("pe.so");
  const aihub_plugin_descriptor* d = p.describe();
  CHECK(std::string(d->id) == "pe");
  CHECK(std::string(d->name) == "Pulmonary embolism detection on CTPA (reference model, not for clinical use)");
  CHECK(std::string(d->model_version).rfind("pe-ref-", 0) == 0);
  const std::string rules = d->default_rules_yaml;
  CHECK(rules.find("Modality: CT") != std::string::npos);
  CHECK(rules.find("SeriesDescription") != std::string::npos);
}

TEST_CASE("a corrupt or missing model file or a bad setting fails creation with a clear status and message") {
  TempDir dir("pe-corrupt");
  {
    std::ofstream garbage(dir.path() / "pe.pt", std::ios::binary);
    garbage << "this is not a TorchScript archive\n" << std::string(4096, '\x7f');
  }
  PluginLibrary p("pe.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context ctx;
  ctx.directory = dir.path().string();
  aihub_plugin_instance* instance = nullptr;
  CHECK(p.create(&host, &ctx, &instance) == AIHUB_FAILED_PRECONDITION);
  CHECK(instance == nullptr);
  CHECK_MESSAGE(ctx.error.find("cannot load TorchScript model") != std::string::npos, ctx.error);

  aihub_plugin_context missing;
  missing.strings["model"] = (dir.path() / "nope.pt").string();
  CHECK(p.create(&host, &missing, &instance) == AIHUB_NOT_FOUND);
  CHECK(missing.error.find("nope.pt") != std::string::npos);

  aihub_plugin_context bad_device;
  bad_device.strings["device"] = "tpu";
  CHECK(p.create(&host, &bad_device, &instance) == AIHUB_INVALID_ARGUMENT);
  aihub_plugin_context bad_threshold;
  bad_threshold.numbers["threshold"] = 2;
  CHECK(p.create(&host, &bad_threshold, &instance) == AIHUB_INVALID_ARGUMENT);
  CHECK(instance == nullptr);
}

TEST_CASE("through the C ABI: self-test, not-applicable series, cancellation, and a right embolus is found") {
  PluginLibrary p("pe.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE_MESSAGE(p.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error);
  CHECK_MESSAGE(p.self_test(instance) == AIHUB_OK, ctx.error);

  aihub_job short_series = aihub::testing::CtJob(LoadSeries(40, std::nullopt, 24));
  CHECK(p.execute(instance, &short_series) == AIHUB_FAILED_PRECONDITION);
  CHECK(short_series.error.find("at least 32") != std::string::npos);

  const aihub::testing::CtSeriesHu series = LoadSeries(41, aihub::phantom::PulmonaryBranch::kRight);
  aihub_job job = aihub::testing::CtJob(series);
  aihub_job sagittal = job;
  const double sag[6] = {0, 1, 0, 0, 0, -1};
  std::copy(sag, sag + 6, sagittal.series[0].geometry.orientation);
  CHECK(p.execute(instance, &sagittal) == AIHUB_FAILED_PRECONDITION);
  CHECK(sagittal.error.find("axial") != std::string::npos);

  aihub_job no_spacing = job;
  no_spacing.series[0].geometry.pixel_spacing[0] = 0;
  CHECK(p.execute(instance, &no_spacing) == AIHUB_FAILED_PRECONDITION);
  CHECK(no_spacing.error.find("pixel spacing") != std::string::npos);

  aihub_job colour = job;
  colour.series[0].geometry.photometric = AIHUB_PHOTOMETRIC_RGB;
  colour.series[0].geometry.samples_per_pixel = 3;
  CHECK(p.execute(instance, &colour) == AIHUB_FAILED_PRECONDITION);
  CHECK(colour.error.find("monochrome") != std::string::npos);

  aihub_job irregular = job;
  irregular.series[0].geometry.spacing_between_slices = 0;
  CHECK(p.execute(instance, &irregular) == AIHUB_FAILED_PRECONDITION);
  CHECK(irregular.error.find("evenly spaced") != std::string::npos);

  aihub_job thick = job;
  thick.series[0].geometry.spacing_between_slices = 5;
  CHECK(p.execute(instance, &thick) == AIHUB_FAILED_PRECONDITION);
  CHECK(thick.error.find("slice spacing") != std::string::npos);

  // The same chest without contrast: every voxel above 100 HU (opacified vessels, and bone) becomes soft tissue.
  aihub::testing::CtSeriesHu unenhanced = series;
  for (float& v : unenhanced.hu) v = v > 100 ? 40.0f : v;
  aihub_job plain = aihub::testing::CtJob(unenhanced);
  CHECK(p.execute(instance, &plain) == AIHUB_FAILED_PRECONDITION);
  CHECK_MESSAGE(plain.error.find("not a contrast-enhanced study") != std::string::npos, plain.error);

  for (const aihub_job* j : {&short_series, &sagittal, &no_spacing, &colour, &irregular, &thick, &plain}) {
    CHECK(j->findings.empty());
  }

  aihub_job cancelled = job;
  cancelled.cancelled = true;
  CHECK(p.execute(instance, &cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.findings.empty());
  aihub_job mid_read = job;  // cancelled while the slices are read: stops there
  mid_read.cancel_after_reads = 5;
  CHECK(p.execute(instance, &mid_read) == AIHUB_CANCELLED);
  CHECK(mid_read.reads.size() == 5);
  CHECK(mid_read.findings.empty());

  // The same series, fine otherwise, runs through: an embolus in the right pulmonary artery.
  REQUIRE_MESSAGE(p.execute(instance, &job) == AIHUB_OK, job.error);
  CHECK_MESSAGE(job.builder_error.empty(), job.builder_error);
  REQUIRE(job.findings.size() == 1);
  const auto& f = job.findings[0];
  CHECK(f.code.value == "59282003");
  CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
  CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);
  CHECK(f.laterality == AIHUB_LATERALITY_RIGHT);
  CHECK(f.site.value == "78480002");  // right pulmonary artery
  REQUIRE(f.measurements.size() == 2);
  CHECK(f.measurements[0].unit == "mL");
  CHECK(f.measurements[0].value > 0);
  CHECK(f.measurements[1].unit == "%");  // clot burden
  CHECK(f.measurements[1].value > 0);
  CHECK(f.measurements[1].value < 100);
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == AIHUB_GRAPHIC_POLYGON);
  CHECK(f.regions[0].frame < series.slices);
  CHECK(job.summary.find("right pulmonary artery") != std::string::npos);
  p.destroy(instance);
}
