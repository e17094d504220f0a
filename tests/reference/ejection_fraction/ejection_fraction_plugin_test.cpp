// The built ejection_fraction.so with its TorchScript model through the C ABI and the fake host
// (reference/support/fake_host.h) serving an in-memory phantom cine (frames phase by phase, as the host sorts them):
// descriptor and default rules, EF against the phantom's truth, the operating point, a series without phases,
// cancellation, bad config and model files.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "host/plugins/test_support.h"
#include "phantom/cardiac_cine.h"
#include "reference/support/fake_host.h"

namespace {

using aihub::testing::FakeHostApi;
using aihub::testing::PluginInstance;
using aihub::testing::PluginLibrary;
using aihub::testing::TempDir;

// A small phantom cine (6 slices, 8 phases, 128 x 128) in memory, frames in the host's cine order; its truth.
aihub_job MakeJob(uint64_t seed, double ef, aihub::phantom::CardiacCineTruth* truth) {
  aihub::phantom::CardiacCineOptions o;
  o.seed = seed;
  o.slices = 6;
  o.phases = 8;
  o.size = 128;
  o.ef_percent = ef;
  auto study = aihub::phantom::GenerateCardiacCine(o);
  REQUIRE(study.ok());
  const auto& t = study->truth;
  // The frames in the host's cine order (phase by phase, each along the normal), 12-bit MR, 40 ms apart.
  auto pixels = std::make_shared<std::vector<float>>();
  const size_t n = static_cast<size_t>(t.rows) * t.columns;
  for (uint32_t p = 0; p < t.phases; ++p) {
    for (uint32_t k = 0; k < t.slices; ++k) {
      const auto* frame = &study->pixels[(static_cast<size_t>(k) * t.phases + p) * n];
      pixels->insert(pixels->end(), frame, frame + n);
    }
  }
  aihub::testing::FakeSeries s;
  s.tags = {{0x00080060, "MR"}, {0x0008103E, "CINE SAX"}, {0x0020000E, t.series_instance_uid}};
  s.frames = t.slices * t.phases;
  s.sop_instance_uid = "1.2.3.4";
  aihub_frame_geometry& g = s.geometry;
  g.rows = t.rows;
  g.columns = t.columns;
  g.bits_stored = 12;
  g.pixel_spacing[0] = g.pixel_spacing[1] = t.pixel_spacing_mm;
  g.slice_thickness = g.spacing_between_slices = t.slice_thickness_mm;
  g.has_position = 1;
  g.temporal_positions = t.phases;  // a series without phases: 0
  s.frame_geometry = [slices = t.slices](uint32_t f, aihub_frame_geometry& out) {
    if (out.temporal_positions != 0) {
      out.trigger_time = 40.0 * (f / slices);
      out.temporal_index = static_cast<int32_t>(f / slices + 1);
    }
    return int32_t{AIHUB_OK};
  };
  s.read = aihub::testing::ServeFloatFrames(std::move(pixels));
  aihub_job job;
  job.series.push_back(std::move(s));
  if (truth) *truth = t;
  return job;
}

// Config for an instance that flags EF below `percent`.
aihub_plugin_context Threshold(double percent) {
  aihub_plugin_context ctx;
  ctx.numbers["threshold_percent"] = percent;
  return ctx;
}

}  // namespace

TEST_CASE("ejection_fraction: descriptor names id and versions and the cine MR default rules") {
  PluginLibrary p("ejection_fraction.so");
  const aihub_plugin_descriptor* d = p.describe();
  CHECK(std::string(d->id) == "ejection_fraction");
  CHECK(std::string(d->name).find("ejection fraction") != std::string::npos);
  CHECK(std::string(d->name).find("not for clinical use") != std::string::npos);
  CHECK(std::string(d->version) == "1.0.0");
  CHECK(std::string(d->model_version).rfind("ejection-fraction-ref-", 0) == 0);
  CHECK(std::string(d->default_rules_yaml) ==
        "{Modality: MR, SeriesDescription: {regex: \".*(CINE|cine|Cine).*\"}, NumberOfTemporalPositions: "
        "{exists: true}}");
  CHECK(d->api_version_major == AIHUB_PLUGIN_API_VERSION_MAJOR);
  CHECK(d->api_version_minor == AIHUB_PLUGIN_API_VERSION_MINOR);
}

TEST_CASE("ejection_fraction: "
          "a corrupt or missing model file or bad config fails creation with a clear status and message") {
  TempDir dir("ef-corrupt");
  {
    std::ofstream garbage(dir.path() / "ejection_fraction.pt", std::ios::binary);
    garbage << "PK\x03\x04 not a TorchScript archive\n" << std::string(4096, '\x7f');
  }
  PluginLibrary p("ejection_fraction.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_instance* instance = nullptr;
  aihub_plugin_context corrupt;
  corrupt.directory = dir.path().string();
  CHECK(p.create(&host, &corrupt, &instance) == AIHUB_FAILED_PRECONDITION);
  CHECK_MESSAGE(corrupt.error.find("cannot load TorchScript model") != std::string::npos, corrupt.error);
  aihub_plugin_context missing;
  missing.strings["model"] = (dir.path() / "nope.pt").string();
  CHECK(p.create(&host, &missing, &instance) == AIHUB_NOT_FOUND);
  CHECK(missing.error.find("nope.pt") != std::string::npos);
  aihub_plugin_context bad_threshold;
  bad_threshold.numbers["threshold_percent"] = 150;
  CHECK(p.create(&host, &bad_threshold, &instance) == AIHUB_INVALID_ARGUMENT);
  CHECK(bad_threshold.error.find("threshold_percent") != std::string::npos);
  aihub_plugin_context bad_device;
  bad_device.strings["device"] = "tpu";
  CHECK(p.create(&host, &bad_device, &instance) == AIHUB_INVALID_ARGUMENT);
  CHECK(instance == nullptr);
}

TEST_CASE("ejection_fraction: through the C ABI: EF, EDV and ESV of a small phantom cine are close to the truth") {
  PluginLibrary p("ejection_fraction.so");
  PluginInstance in(p);
  CHECK_MESSAGE(p.self_test(in.instance) == AIHUB_OK, in.ctx.error);

  aihub::phantom::CardiacCineTruth truth;
  aihub_job job = MakeJob(31, 58, &truth);
  REQUIRE_MESSAGE(p.execute(in.instance, &job) == AIHUB_OK, job.error);
  REQUIRE(job.findings.size() == 1);
  const auto& f = job.findings[0];
  CHECK_MESSAGE(job.builder_error.empty(), job.builder_error);
  CHECK(f.code.value == "134401001");
  CHECK(f.site.value == "87878005");
  CHECK(f.presence == AIHUB_PRESENCE_ABSENT);  // EF 58 % is not below 30 %
  CHECK(f.urgency == AIHUB_URGENCY_ROUTINE);
  CHECK(f.confidence < 0.01);
  REQUIRE(f.Count("10230-1") == 1);
  const double ef = f.Value("10230-1"), edv = f.Value("18026-5");
  const double esv = f.Value("18148-7");
  CHECK_MESSAGE(std::fabs(ef - truth.ef_percent) <= 4, "EF " << ef << " %, truth " << truth.ef_percent << " %");
  CHECK_MESSAGE(std::fabs(edv / truth.edv_ml - 1) <= 0.1, "EDV " << edv << " mL, truth " << truth.edv_ml);
  CHECK_MESSAGE(std::fabs(esv / truth.esv_ml - 1) <= 0.15, "ESV " << esv << " mL, truth " << truth.esv_ml);
  CHECK(f.Value("90096001") == doctest::Approx(edv - esv));
  CHECK(f.Unit("10230-1") == "%");
  CHECK(f.Unit("18026-5") == "mL");
  // The outline: on an end-diastolic frame (phase 1 is the phantom's ED) of the middle slice, around the ventricle
  // (left of the image centre's right half by at most the heart's size).
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == AIHUB_GRAPHIC_POLYGON);
  CHECK(f.regions[0].series == 0);
  CHECK(f.regions[0].frame == truth.ed_phase * truth.slices + truth.slices / 2);
  REQUIRE(f.regions[0].points.size() >= 6);
  for (size_t i = 0; i < f.regions[0].points.size(); ++i) {
    CHECK(f.regions[0].points[i] >= 0);
    CHECK(f.regions[0].points[i] <= 128);
  }
  CHECK(job.summary.find("not for clinical use") != std::string::npos);
  CHECK(job.frames_read() == truth.slices * truth.phases);
}

TEST_CASE("ejection_fraction: "
          "through the C ABI: EF below the operating point is a critical finding, with a configurable threshold") {
  PluginLibrary p("ejection_fraction.so");
  aihub::phantom::CardiacCineTruth truth;
  const aihub_job low = MakeJob(32, 18, &truth);
  {
    PluginInstance in(p);
    aihub_job job = low;
    REQUIRE_MESSAGE(p.execute(in.instance, &job) == AIHUB_OK, job.error);
    REQUIRE(job.findings.size() == 1);
    const auto& f = job.findings[0];
    CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
    CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);
    CHECK(f.confidence > 0.9);
    const double ef = f.Value("10230-1");
    CHECK_MESSAGE(std::fabs(ef - truth.ef_percent) <= 4, "EF " << ef << " %, truth " << truth.ef_percent << " %");
  }
  {
    PluginInstance strict(p, Threshold(10));  // a site that flags only EF below 10 %
    aihub_job job = low;
    REQUIRE(p.execute(strict.instance, &job) == AIHUB_OK);
    REQUIRE(job.findings.size() == 1);
    CHECK(job.findings[0].presence == AIHUB_PRESENCE_ABSENT);
    CHECK(job.findings[0].urgency == AIHUB_URGENCY_ROUTINE);
  }
}

TEST_CASE("ejection_fraction: "
          "through the C ABI: a series without phases is not applicable and cancellation stops the job") {
  PluginLibrary p("ejection_fraction.so");
  PluginInstance in(p);
  aihub::phantom::CardiacCineTruth truth;
  aihub_job still = MakeJob(33, 55, &truth);
  // What the host reports for a series without TemporalPositionIdentifier/TriggerTime: no phases, one volume.
  still.series[0].geometry.temporal_positions = 0;
  still.series[0].frames = truth.slices;
  CHECK(p.execute(in.instance, &still) == AIHUB_FAILED_PRECONDITION);
  CHECK_MESSAGE(still.error.find("not a cine series") != std::string::npos, still.error);
  CHECK(still.findings.empty());
  CHECK(still.frames_read() == 0);

  aihub_job cancelled = MakeJob(33, 55, nullptr);
  cancelled.cancelled = true;
  CHECK(p.execute(in.instance, &cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.findings.empty());
  CHECK(cancelled.frames_read() == 0);
}
