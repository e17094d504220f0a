// The built ki67.so with its TorchScript model through the C ABI and the fake host (reference/support/fake_host.h)
// rendering phantom tiles on demand: index accuracy against the phantom's truth, one read per tile into one reused
// buffer, and the bad inputs a well-formed file cannot show (not TILED_FULL, not RGB, wrong resolution, inconsistent
// host positions, read errors, cancellation, bad model files).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "aihub/plugin_api.h"
#include "ki67_analysis.h"
#include "phantom/wsi_ki67.h"
#include "reference/support/fake_host.h"
#include "tools/ct_series_reader.h"

namespace {

using aihub::phantom::WsiKi67Options;
using aihub::phantom::WsiKi67Slide;
using aihub::testing::FakeHostApi;
using aihub::testing::PluginInstance;
using aihub::testing::PluginLibrary;
using aihub::testing::TempDir;
using SlidePtr = std::shared_ptr<const WsiKi67Slide>;

const std::string kSopUid = "1.2.826.0.1.3680043.10.1411.99";

WsiKi67Options Options(uint64_t seed, uint32_t size, double index) {
  WsiKi67Options o;
  o.seed = seed;
  o.size = size;
  o.index_percent = index;
  return o;
}

// A phantom slide with the tags the phantom writes, as one TILED_FULL series served tile by tile from the phantom
// model (nothing on disk); the slide itself in *slide_out for the truth.
aihub_job MakeJob(const WsiKi67Options& o, SlidePtr* slide_out = nullptr) {
  auto created = WsiKi67Slide::Create(o);
  REQUIRE(created.ok());
  const auto slide = std::make_shared<const WsiKi67Slide>(*created);
  aihub::testing::FakeSeries s;
  s.tags = {{0x00080060, "SM"},
            {0x00080016, "1.2.840.10008.5.1.4.1.1.77.1.6"},
            {0x00080008, "ORIGINAL\\PRIMARY\\VOLUME\\NONE"},
            {0x00209311, "TILED_FULL"},
            {0x00480006, std::to_string(o.size)},
            {0x00480007, std::to_string(o.size)}};
  s.frames = slide->tile_count();
  s.sop_instance_uid = kSopUid;
  aihub_frame_geometry& g = s.geometry;
  g.rows = g.columns = slide->options().tile;
  g.samples_per_pixel = 3;
  g.bits_allocated = g.bits_stored = 8;
  g.photometric = AIHUB_PHOTOMETRIC_RGB;
  g.pixel_spacing[0] = g.pixel_spacing[1] = aihub::phantom::kWsiKi67PixelSpacingMm;
  s.frame_geometry = [slide](uint32_t f, aihub_frame_geometry& out) -> int32_t {
    // The plugin is built against ABI 1.2: a geometry without the 1.1 tile position would be a defect.
    if (out.struct_size < sizeof out) return AIHUB_INVALID_ARGUMENT;
    const uint32_t tile = slide->options().tile;
    out.frame_number = f + 1;
    out.total_pixel_column = (f % slide->tiles_across()) * tile + 1;
    out.total_pixel_row = (f / slide->tiles_across()) * tile + 1;
    return AIHUB_OK;
  };
  s.read = [slide](uint32_t f, const aihub_frame_geometry&, int32_t format, void* buffer) -> int32_t {
    if (format != AIHUB_PIXEL_RGB8) return AIHUB_INVALID_ARGUMENT;
    if (f >= slide->tile_count()) return AIHUB_DATA_LOSS;  // a frame the series claims beyond the tiles
    slide->RenderTile(f, static_cast<uint8_t*>(buffer));
    return AIHUB_OK;
  };
  aihub_job job;
  job.series.push_back(std::move(s));
  if (slide_out) *slide_out = slide;
  return job;
}

}  // namespace

TEST_CASE("ki67: descriptor names id, versions and whole-slide rules") {
  PluginLibrary p("ki67.so");
  const aihub_plugin_descriptor* d = p.describe();
  CHECK(std::string(d->id) == "ki67");
  CHECK(std::string(d->version) == "1.0.0");
  CHECK(std::string(d->model_version).rfind("ki67-ref-", 0) == 0);
  CHECK(std::string(d->default_rules_yaml) == "{Modality: SM, SOPClassUID: \"1.2.840.10008.5.1.4.1.1.77.1.6\"}");
}

TEST_CASE("ki67: the index, hot spot and counts match the phantom's truth, reading each tile once into one buffer") {
  PluginLibrary p("ki67.so");
  PluginInstance in(p);
  CHECK_MESSAGE(in.SelfTest() == AIHUB_OK, in.ctx.error);
  for (const auto& [seed, index] : std::vector<std::pair<uint64_t, double>>{{90001, 12}, {90002, 35}}) {
    const WsiKi67Options o = Options(seed, 2048, index);
    SlidePtr slide;
    aihub_job job = MakeJob(o, &slide);
    const auto truth = aihub::phantom::CountWsiKi67(*slide);
    REQUIRE_MESSAGE(in.Execute(job) == AIHUB_OK, job.error);
    CHECK_MESSAGE(job.builder_error.empty(), job.builder_error);
    // Streaming: every tile read exactly once, in order, always into the same buffer.
    const uint32_t frames = job.series[0].frames;
    REQUIRE(job.reads.size() == frames);
    for (uint32_t k = 0; k < frames; ++k) CHECK(job.reads[k].frame == k);
    CHECK(job.read_buffers() == 1);

    REQUIRE(job.findings.size() == 1);
    const auto& f = job.findings[0];
    CHECK(f.code.value == "KI67-HIGH");
    REQUIRE(f.measurements.size() == 5);
    std::set<std::string> codes;
    for (const auto& m : f.measurements) codes.insert(m.code.value);
    CHECK(codes.size() == 5);
    CHECK(f.Unit("KI67-INDEX") == "%");
    CHECK(f.Unit("KI67-POSITIVE") == "{nuclei}");
    INFO("seed " << seed << ": truth " << truth.global_index_percent << " %, hot spot " << truth.hotspot.index_percent);
    CHECK(std::fabs(f.Value("KI67-INDEX") - truth.global_index_percent) <= 3);
    CHECK(std::fabs(f.Value("KI67-HOTSPOT-INDEX") - truth.hotspot.index_percent) <= 3);
    const double all = static_cast<double>(truth.positive_nuclei + truth.negative_nuclei);
    CHECK(f.Value("KI67-POSITIVE") + f.Value("KI67-NEGATIVE") == doctest::Approx(all).epsilon(0.03));
    CHECK(f.presence == (truth.global_index_percent >= 20 ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT));
    // The hot spot's region is the truth's window, on the total pixel matrix.
    REQUIRE(f.regions.size() == 1);
    CHECK(f.regions[0].series == 0);
    CHECK(f.regions[0].pixel_origin == AIHUB_PIXEL_ORIGIN_VOLUME);  // frame-relative would be a defect
    CHECK(f.regions[0].frame == truth.hotspot_center_tile);
    const float x0 = static_cast<float>(truth.hotspot_column), y0 = static_cast<float>(truth.hotspot_row);
    const float x1 = x0 + static_cast<float>(truth.hotspot_width), y1 = y0 + static_cast<float>(truth.hotspot_height);
    CHECK(f.regions[0].points == std::vector<float>{x0, y0, x1, y0, x1, y1, x0, y1});
    CHECK(f.text.find("not for clinical use") != std::string::npos);
    CHECK_FALSE(job.summary.empty());
  }
}

TEST_CASE("ki67: inconsistent tiling, other layouts and images are not applicable, with the reason") {
  PluginLibrary p("ki67.so");
  PluginInstance in(p);
  const aihub_job good = MakeJob(Options(90003, 1024, 20));
  using Series = aihub::testing::FakeSeries;
  struct Case {
    const char* name;
    std::function<void(Series&)> edit;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"missing tile", [](Series& s) { s.frames -= 1; }, "missing tiles"},
      {"bad geometry", [](Series& s) { s.tags[0x00480006] = s.tags[0x00480007] = "1152"; }, "needs 5 x 5 = 25"},
      {"extra frames", [](Series& s) { s.frames += 16; }, "more frames than tiles"},
      {"sparse", [](Series& s) { s.tags[0x00209311] = "TILED_SPARSE"; }, "is not TILED_FULL"},
      {"no organization", [](Series& s) { s.tags.erase(0x00209311); }, "TILED_FULL whole-slide image is needed"},
      {"no matrix", [](Series& s) { s.tags.erase(0x00480006); }, "TotalPixelMatrixColumns"},
      {"monochrome",
       [](Series& s) { s.geometry.samples_per_pixel = 1, s.geometry.photometric = AIHUB_PHOTOMETRIC_MONOCHROME2; },
       "not a colour"},
      {"10x scan", [](Series& s) { s.geometry.pixel_spacing[0] = s.geometry.pixel_spacing[1] = 0.001; },
       "outside the model's"},
      {"label", [](Series& s) { s.tags[0x00080008] = "ORIGINAL\\PRIMARY\\LABEL\\NONE"; }, "not a VOLUME"},
      {"modality", [](Series& s) { s.tags[0x00080060] = "CT"; }, "modality CT"},
      {"host positions",
       [](Series& s) {  // the host reports every tile 7 pixels right of where the tiling puts it
         s.frame_geometry = [tiled = s.frame_geometry](uint32_t f, aihub_frame_geometry& g) {
           const int32_t status = tiled(f, g);
           g.total_pixel_column += 7;
           return status;
         };
       },
       "inconsistent tile positions"},
  };
  for (const Case& c : cases) {
    aihub_job job = good;
    c.edit(job.series[0]);
    INFO(c.name);
    CHECK(in.Execute(job) == AIHUB_FAILED_PRECONDITION);
    CHECK_MESSAGE(job.error.find(c.reason) != std::string::npos, job.error);
    CHECK(job.findings.empty());
    CHECK(job.reads.empty());  // refused before any pixel is read
  }
}

TEST_CASE("ki67: a tile that cannot be read fails the job naming it, and cancellation stops the reading") {
  PluginLibrary p("ki67.so");
  PluginInstance in(p);
  aihub_job broken = MakeJob(Options(90004, 1024, 20));
  broken.series[0].read = [tiles = broken.series[0].read](uint32_t f, const aihub_frame_geometry& g, int32_t format,
                                                          void* buffer) {
    return f == 6 ? int32_t{AIHUB_DATA_LOSS} : tiles(f, g, format, buffer);
  };
  CHECK(in.Execute(broken) == AIHUB_DATA_LOSS);
  CHECK_MESSAGE(broken.error.find("tile 7 of 16") != std::string::npos, broken.error);
  CHECK(broken.findings.empty());

  aihub_job cancelled = MakeJob(Options(90004, 1024, 20));
  cancelled.cancel_after_reads = 3;
  CHECK(in.Execute(cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.reads.size() == 3);
  CHECK(cancelled.findings.empty());
}

TEST_CASE("ki67: few nuclei make the finding indeterminate, and the cut-off is configurable") {
  PluginLibrary p("ki67.so");
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context ctx;
  ctx.numbers["min_nuclei"] = 1e6;
  ctx.numbers["high_index_percent"] = 1;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE_MESSAGE(p.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error);
  aihub_job job = MakeJob(Options(90005, 1024, 20));
  REQUIRE(p.execute(instance, &job) == AIHUB_OK);
  REQUIRE(job.findings.size() == 1);
  CHECK(job.findings[0].presence == AIHUB_PRESENCE_INDETERMINATE);
  CHECK(job.findings[0].text.rfind("Too few nuclei", 0) == 0);
  CHECK(job.findings[0].confidence > 0.99);  // far above a 1 % cut-off
  p.destroy(instance);

  aihub_plugin_context bad;
  bad.numbers["high_index_percent"] = 120;
  CHECK(p.create(&host, &bad, &instance) == AIHUB_INVALID_ARGUMENT);
  CHECK(instance == nullptr);
}

TEST_CASE("ki67: a missing or corrupt model file fails creation with a clear status") {
  TempDir dir("ki67-model");
  {
    std::ofstream garbage(dir.path() / "ki67.pt", std::ios::binary);
    garbage << "PK\x03\x04 not a TorchScript archive\n" << std::string(2048, '\x7f');
  }
  PluginLibrary p("ki67.so");
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
  CHECK(instance == nullptr);
}

TEST_CASE("ki67 analysis: the plugin's hot spot is the phantom's, and seams count a cut nucleus once") {
  // Random per-tile counts: both implementations of the definition pick the same window.
  uint64_t state = 12345;
  auto next = [&] { return static_cast<uint32_t>((state = state * 6364136223846793005ull + 1442695040888963407ull) >> 59); };
  for (int trial = 0; trial < 20; ++trial) {
    const uint32_t across = 5 + trial % 7, down = 4 + trial % 5;
    std::vector<uint32_t> pos(across * down), neg(across * down);
    for (auto& v : pos) v = next() % 4;
    for (auto& v : neg) v = next();
    const uint32_t w = aihub::ki67::HotSpotWindowTiles(256, 0.00025, across, down);
    CHECK(w == aihub::phantom::Ki67HotSpotWindowTiles(256, 0.00025, across, down));
    const auto a = aihub::ki67::FindHotSpot(pos, neg, across, down, w);
    const auto b = aihub::phantom::FindKi67HotSpot(pos, neg, across, down, w);
    CHECK(a.tile_column == b.tile_column);
    CHECK(a.tile_row == b.tile_row);
    CHECK(a.positive == b.positive);
    CHECK(a.index_percent == b.index_percent);
  }
  // A disc across the seam between two tiles: found in both halves, counted in exactly one.
  const uint32_t t = 64;
  std::vector<uint8_t> left(t * t * 3, 235), right(t * t * 3, 235);
  for (uint32_t r = 0; r < t; ++r) {
    for (uint32_t c = 0; c < 2 * t; ++c) {
      if (std::hypot(c + 0.5 - 64.0, r + 0.5 - 32.0) < 14) {
        uint8_t* px = c < t ? &left[(r * t + c) * 3] : &right[(r * t + c - t) * 3];
        px[0] = 90, px[1] = 85, px[2] = 160;
      }
    }
  }
  aihub::ki67::TileDetector detector;
  const auto a = detector.Detect(left.data(), t, t, t, t);
  REQUIRE(a.size() == 1);
  CHECK(a[0].touches_right);
  const bool counted_left = aihub::ki67::CountedInTile(a[0], false, false);
  const auto b = detector.Detect(right.data(), t, t, t, t);
  REQUIRE(b.size() == 1);
  CHECK(b[0].touches_left);
  const bool counted_right = aihub::ki67::CountedInTile(b[0], true, false);
  CHECK(counted_left != counted_right);
  CHECK(aihub::ki67::CountedInTile(a[0], true, true));  // the slide's own edge is no seam
}
