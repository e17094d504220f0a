// The built ich.so with its TorchScript model through the C ABI and the shared fake host
// (reference/support/fake_host.h, which validates the result builder like the real host): the cases a real study
// cannot show (non-axial, missing spacing, colour, irregular slices, cancellation, bad model files).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
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
using aihub::testing::TempDir;

aihub_job LoadJob(uint64_t seed, HemorrhageType type, Side side, uint32_t slices, uint32_t size = 256) {
  TempDir dir("ich-plugin");
  aihub::phantom::HeadCtOptions o;
  o.seed = seed;
  o.hemorrhage = type;
  o.side = side;
  o.size = size;
  o.slices = slices;
  const auto truth = aihub::phantom::WriteHeadCt(o, dir.path());
  REQUIRE(truth.ok());
  return aihub::testing::CtJob(aihub::testing::ReadCtSeriesHu(dir.path() / truth->folder));
}

}  // namespace

TEST_CASE("descriptor names id and versions and head CT rules") {
  PluginLibrary p("ich.so");
  const aihub_plugin_descriptor* d = p.describe();
  CHECK(std::string(d->id) == "ich");
  CHECK(std::string(d->name) == "Intracranial hemorrhage detection (reference model, not for clinical use)");
  CHECK(std::string(d->version) == "1.1.0");
  CHECK(std::string(d->model_version).rfind("ich-ref-", 0) == 0);
  CHECK(std::string(d->default_rules_yaml) == "{Modality: CT, BodyPartExamined: [HEAD, BRAIN]}");
}

TEST_CASE("a corrupt or missing model file or a bad device fails creation with a clear status and message") {
  {
    TempDir dir("ich-corrupt");
    {
      std::ofstream garbage(dir.path() / "ich.pt", std::ios::binary);
      garbage << "this is not a TorchScript archive\n" << std::string(4096, '\x7f');
    }
    PluginLibrary p("ich.so");
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
  }
}

TEST_CASE("through the C ABI the self-test passes and unsuitable series are not applicable and cancellation stops it") {
  PluginLibrary p("ich.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE_MESSAGE(p.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error);
  CHECK_MESSAGE(p.self_test(instance) == AIHUB_OK, ctx.error);

  aihub_job short_series = LoadJob(40, HemorrhageType::kNone, Side::kLeft, 8);
  CHECK(p.execute(instance, &short_series) == AIHUB_FAILED_PRECONDITION);
  CHECK(short_series.error.find("slices") != std::string::npos);

  aihub_job job = LoadJob(41, HemorrhageType::kSubdural, Side::kRight, 12);
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

  aihub_job odd_size = LoadJob(42, HemorrhageType::kNone, Side::kLeft, 12, 192);
  CHECK(p.execute(instance, &odd_size) == AIHUB_FAILED_PRECONDITION);
  CHECK(odd_size.error.find("192x192") != std::string::npos);

  for (const aihub_job* j : {&short_series, &sagittal, &no_spacing, &colour, &irregular, &odd_size}) {
    CHECK(j->findings.empty());
    CHECK(j->reads.empty());  // refused from the headers, before any pixel was read
  }

  aihub_job cancelled = job;
  cancelled.cancelled = true;
  CHECK(p.execute(instance, &cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.findings.empty());
  aihub_job mid_read = job;  // cancelled while the slices are read: stops there
  mid_read.cancel_after_reads = 3;
  CHECK(p.execute(instance, &mid_read) == AIHUB_CANCELLED);
  CHECK(mid_read.reads.size() == 3);
  CHECK(mid_read.findings.empty());

  // The same series, fine otherwise, runs through (a subdural bleed on the right).
  REQUIRE_MESSAGE(p.execute(instance, &job) == AIHUB_OK, job.error);
  CHECK_MESSAGE(job.builder_error.empty(), job.builder_error);
  REQUIRE(job.findings.size() == 1);
  const auto& f = job.findings[0];
  CHECK(f.code.value == "1386000");
  CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
  CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);
  CHECK(f.laterality == AIHUB_LATERALITY_RIGHT);
  REQUIRE(f.measurements.size() == 1);
  CHECK(f.measurements[0].unit == "mL");
  CHECK(f.measurements[0].value > 0);
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == AIHUB_GRAPHIC_POLYGON);
  CHECK(f.regions[0].frame < 12);
  CHECK(job.reads.size() == 12);  // every slice read once
  p.destroy(instance);
}
