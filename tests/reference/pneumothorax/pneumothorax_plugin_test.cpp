// The built pneumothorax.so with its TorchScript model through the C ABI and the fake host
// (reference/support/fake_host.h): the cases a real study cannot show (lateral view, missing spacing, colour, small
// image, flipped or non-frontal orientation, MONOCHROME1, cancellation, bad model files).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "aihub/plugin_api.h"
#include "phantom/chest_xray.h"
#include "reference/support/fake_host.h"
#include "tools/ct_series_reader.h"

namespace {

using aihub::phantom::Side;
using aihub::testing::FakeHostApi;
using aihub::testing::PluginLibrary;
using aihub::testing::TempDir;

// A phantom chest X-ray in memory, with the tags the phantom writes.
aihub_job MakeJob(uint64_t seed, bool pneumothorax, Side side, double size_percent, uint32_t rows = 625,
                  uint32_t columns = 512) {
  aihub::phantom::ChestXrayOptions o;
  o.seed = seed;
  o.pneumothorax = pneumothorax;
  o.side = side;
  if (pneumothorax) o.size_percent = size_percent;  // validated even without a pneumothorax
  o.rows = rows;
  o.columns = columns;
  auto study = aihub::phantom::GenerateChestXray(o);
  REQUIRE(study.ok());
  // One DX frame: 12-bit unsigned, no ImagePositionPatient / ImageOrientationPatient.
  aihub::testing::FakeSeries s;
  s.tags = {{0x00080060, "DX"}, {0x00185101, "PA"}, {0x00200020, "L\\F"}, {0x00180015, "CHEST"}};
  s.frames = 1;
  s.geometry.rows = rows;
  s.geometry.columns = columns;
  s.geometry.bits_stored = 12;
  s.geometry.pixel_spacing[0] = s.geometry.pixel_spacing[1] = study->truth.pixel_spacing_mm;
  s.read = aihub::testing::ServeFloatFrames(
      std::make_shared<const std::vector<float>>(study->pixels.begin(), study->pixels.end()));
  aihub_job job;
  job.series.push_back(std::move(s));
  return job;
}

}  // namespace

TEST_CASE("descriptor names id and versions and chest X-ray rules") {
  PluginLibrary p("pneumothorax.so");
  const aihub_plugin_descriptor* d = p.describe();
  CHECK(std::string(d->id) == "pneumothorax");
  CHECK(std::string(d->name) == "Pneumothorax detection on chest X-ray (reference model, not for clinical use)");
  CHECK(std::string(d->version) == "1.0.0");
  CHECK(std::string(d->model_version).rfind("pneumothorax-ref-", 0) == 0);
  CHECK(std::string(d->default_rules_yaml) == "{Modality: [DX, CR], BodyPartExamined: CHEST}");
}

TEST_CASE("a corrupt or missing model file or bad config fails creation with a clear status and message") {
  TempDir dir("ptx-corrupt");
  {
    std::ofstream garbage(dir.path() / "pneumothorax.pt", std::ios::binary);
    garbage << "PK\x03\x04 not really a TorchScript archive\n" << std::string(4096, '\x7f');
  }
  PluginLibrary p("pneumothorax.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_instance* instance = nullptr;
  aihub_plugin_context corrupt;
  corrupt.directory = dir.path().string();
  CHECK(p.create(&host, &corrupt, &instance) == AIHUB_FAILED_PRECONDITION);
  CHECK(instance == nullptr);
  CHECK_MESSAGE(corrupt.error.find("cannot load TorchScript model") != std::string::npos, corrupt.error);
  CHECK(corrupt.error.find("pneumothorax.pt") != std::string::npos);

  aihub_plugin_context missing;
  missing.strings["model"] = (dir.path() / "nope.pt").string();
  CHECK(p.create(&host, &missing, &instance) == AIHUB_NOT_FOUND);
  CHECK_MESSAGE(missing.error.find("model file not found") != std::string::npos, missing.error);
  CHECK(missing.error.find("nope.pt") != std::string::npos);

  aihub_plugin_context bad_device;
  bad_device.strings["device"] = "tpu";
  CHECK(p.create(&host, &bad_device, &instance) == AIHUB_INVALID_ARGUMENT);
  aihub_plugin_context bad_threshold;
  bad_threshold.numbers["threshold"] = 1.5;
  CHECK(p.create(&host, &bad_threshold, &instance) == AIHUB_INVALID_ARGUMENT);
  CHECK(instance == nullptr);
}

TEST_CASE("through the C ABI: self-test passes, unsuitable images are not applicable, side follows orientation") {
  PluginLibrary p("pneumothorax.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context ctx;
  ctx.numbers["urgent_below_percent"] = 10;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE_MESSAGE(p.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error);
  CHECK_MESSAGE(p.self_test(instance) == AIHUB_OK, ctx.error);

  // A left pneumothorax of 30 %: the patient's left is the image's right in the standard display (L\F).
  const aihub_job job = MakeJob(7, true, Side::kLeft, 30);
  const aihub_frame_geometry& geometry = job.series[0].geometry;

  aihub_job lateral = job;
  lateral.series[0].tags[0x00185101] = "LL";
  aihub_job no_spacing = job;
  no_spacing.series[0].geometry.pixel_spacing[0] = no_spacing.series[0].geometry.pixel_spacing[1] = 0;
  aihub_job colour = job;
  colour.series[0].geometry.photometric = AIHUB_PHOTOMETRIC_RGB;
  colour.series[0].geometry.samples_per_pixel = 3;
  aihub_job sideways = job;
  sideways.series[0].tags[0x00200020] = "P\\F";
  aihub_job ct = job;
  ct.series[0].tags[0x00080060] = "CT";
  aihub_job small = MakeJob(8, false, Side::kLeft, 0, 400, 328);
  const std::vector<std::pair<aihub_job*, std::string>> refused = {
      {&lateral, "lateral"}, {&no_spacing, "pixel spacing"}, {&colour, "monochrome"},
      {&sideways, "orientation"}, {&ct, "modality CT"}, {&small, "too small"}};
  for (const auto& [j, why] : refused) {
    CHECK(p.execute(instance, j) == AIHUB_FAILED_PRECONDITION);
    CHECK_MESSAGE(j->error.find(why) != std::string::npos, j->error);
    CHECK(j->findings.empty());
  }

  // ImagerPixelSpacing stands in for a missing PixelSpacing (DX images often carry only that).
  aihub_job imager_spacing = no_spacing;
  imager_spacing.series[0].tags[0x00181164] =
      std::to_string(geometry.pixel_spacing[0]) + "\\" + std::to_string(geometry.pixel_spacing[1]);
  CHECK_MESSAGE(p.execute(instance, &imager_spacing) == AIHUB_OK, imager_spacing.error);

  aihub_job cancelled = job;
  cancelled.cancelled = true;
  CHECK(p.execute(instance, &cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.findings.empty());

  aihub_job standard = job;
  REQUIRE_MESSAGE(p.execute(instance, &standard) == AIHUB_OK, standard.error);
  REQUIRE(standard.findings.size() == 1);
  const auto& f = standard.findings[0];
  CHECK(standard.builder_error.empty());
  CHECK(f.code.value == "36118008");
  CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
  CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);  // 30 % is above urgent_below_percent
  CHECK(f.laterality == AIHUB_LATERALITY_LEFT);
  REQUIRE(f.measurements.size() == 1);
  CHECK(f.measurements[0].value == doctest::Approx(30).epsilon(0.2));
  REQUIRE(f.regions.size() == 1);
  const std::vector<float>& outline = f.regions[0].points;
  CHECK(f.regions[0].series == 0);
  CHECK(f.regions[0].frame == 0);
  CHECK(outline.size() >= 6);
  for (size_t i = 0; i < outline.size(); i += 2) {  // the outline lies in the image's right half
    CHECK(outline[i] >= geometry.columns / 2.0f);
    CHECK(outline[i] <= geometry.columns);
    CHECK(outline[i + 1] <= geometry.rows);
  }

  // The same pixels displayed mirrored (R\F): the image's right half is now the patient's right.
  aihub_job mirrored = job;
  mirrored.series[0].tags[0x00200020] = "R\\F";
  REQUIRE(p.execute(instance, &mirrored) == AIHUB_OK);
  REQUIRE(mirrored.findings.size() == 1);
  CHECK(mirrored.findings[0].laterality == AIHUB_LATERALITY_RIGHT);

  // MONOCHROME1 stores air bright: inverted pixels with that interpretation give the same answer.
  aihub_job monochrome1 = job;
  monochrome1.series[0].geometry.photometric = AIHUB_PHOTOMETRIC_MONOCHROME1;
  monochrome1.series[0].read = [read = job.series[0].read](uint32_t frame, const aihub_frame_geometry& g,
                                                           int32_t format, void* buffer) {
    const int32_t status = read(frame, g, format, buffer);
    float* pixels = static_cast<float*>(buffer);
    for (size_t i = 0; i < static_cast<size_t>(g.rows) * g.columns; ++i) pixels[i] = 4095 - pixels[i];
    return status;
  };
  REQUIRE(p.execute(instance, &monochrome1) == AIHUB_OK);
  REQUIRE(monochrome1.findings.size() == 1);
  CHECK(monochrome1.findings[0].presence == AIHUB_PRESENCE_PRESENT);
  CHECK(monochrome1.findings[0].confidence == doctest::Approx(f.confidence).epsilon(0.01));

  // A small pneumothorax below urgent_below_percent is urgent, not critical.
  aihub_job small_ptx = MakeJob(9, true, Side::kRight, 7);
  REQUIRE(p.execute(instance, &small_ptx) == AIHUB_OK);
  REQUIRE(small_ptx.findings.size() == 1);
  CHECK(small_ptx.findings[0].presence == AIHUB_PRESENCE_PRESENT);
  CHECK(small_ptx.findings[0].laterality == AIHUB_LATERALITY_RIGHT);
  CHECK(small_ptx.findings[0].urgency == AIHUB_URGENCY_URGENT);

  aihub_job negative = MakeJob(7, false, Side::kLeft, 0);
  REQUIRE(p.execute(instance, &negative) == AIHUB_OK);
  REQUIRE(negative.findings.size() == 1);
  CHECK(negative.findings[0].presence == AIHUB_PRESENCE_ABSENT);
  CHECK(negative.findings[0].urgency == AIHUB_URGENCY_ROUTINE);
  CHECK(negative.findings[0].measurements.empty());
  CHECK(negative.findings[0].regions.empty());
  CHECK(negative.findings[0].confidence < f.confidence);
  p.destroy(instance);
}
