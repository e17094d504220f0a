// The built ki67.so with its TorchScript model through the C ABI and a fake host that renders phantom tiles on
// demand: index accuracy against the phantom's truth, one read per tile into one reused buffer, and the bad inputs
// a well-formed file cannot show (not TILED_FULL, not RGB, wrong resolution, inconsistent host positions, read
// errors, cancellation, bad model files).
#include <dlfcn.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "ki67_analysis.h"
#include "phantom/wsi_ki67.h"
#include "tools/ct_series_reader.h"

struct aihub_plugin_context {
  std::string directory = std::string(AIHUB_BINARY_DIR) + "/plugins";
  std::map<std::string, std::string> strings;
  std::map<std::string, double> numbers;
  std::string error;
};

// A whole-slide image served tile by tile from the phantom model (nothing on disk).
struct aihub_job {
  aihub::phantom::WsiKi67Slide slide;
  uint32_t frames = 0;                   // frames the series claims (tiles, or fewer / more for defects)
  std::map<uint32_t, std::string> tags;  // series tags
  int32_t photometric = AIHUB_PHOTOMETRIC_RGB;
  uint32_t samples = 3;
  double spacing_mm = aihub::phantom::kWsiKi67PixelSpacingMm;
  int32_t position_shift = 0;            // added to the host's total_pixel_column (0 = consistent)
  std::optional<uint32_t> failing_frame; // read_frame answers DATA_LOSS for it
  uint32_t cancel_after_reads = 0;       // 0 = never
  // What the plugin did.
  std::vector<uint32_t> reads;           // frame indices in call order
  std::set<const void*> buffers;         // distinct buffers passed to read_frame
  std::string error, summary;
  struct Finding {
    std::string code;
    int32_t presence = 0;
    double confidence = 0;
    std::string text;
    std::map<std::string, std::pair<double, std::string>> measurements;  // code -> (value, unit)
    std::vector<std::pair<uint32_t, std::vector<float>>> regions;        // frame, points
  };
  std::vector<Finding> findings;
};

namespace {

using aihub::phantom::WsiKi67Options;
using aihub::phantom::WsiKi67Slide;
using aihub::testing::TempDir;

const std::string kPluginDir = std::string(AIHUB_BINARY_DIR) + "/plugins";
const std::string kSopUid = "1.2.826.0.1.3680043.10.1411.99";

aihub_host_api MakeHost() {
  aihub_host_api h{};
  h.struct_size = sizeof h;
  h.api_version_major = AIHUB_PLUGIN_API_VERSION_MAJOR;
  h.api_version_minor = AIHUB_PLUGIN_API_VERSION_MINOR;
  h.log = [](aihub_plugin_context*, int32_t, const char*) {};
  h.config_json = [](aihub_plugin_context*) { return "{}"; };
  h.config_string = [](aihub_plugin_context* c, const char* key) -> const char* {
    auto it = c->strings.find(key);
    return it == c->strings.end() ? nullptr : it->second.c_str();
  };
  h.config_number = [](aihub_plugin_context* c, const char* key, double fallback) {
    auto it = c->numbers.find(key);
    return it == c->numbers.end() ? fallback : it->second;
  };
  h.plugin_directory = [](aihub_plugin_context* c) { return c->directory.c_str(); };
  h.context_set_error = [](aihub_plugin_context* c, const char* m) { c->error = m; };
  h.job_log = [](aihub_job*, int32_t, const char*) {};
  h.job_set_error = [](aihub_job* j, const char* m) { j->error = m; };
  h.job_is_cancelled = [](aihub_job* j) -> int32_t {
    return j->cancel_after_reads != 0 && j->reads.size() >= j->cancel_after_reads ? 1 : 0;
  };
  h.job_progress = [](aihub_job*, double) {};
  h.study_tag = [](aihub_job* j, uint32_t tag) -> const char* {
    auto it = j->tags.find(tag);
    return it == j->tags.end() ? nullptr : it->second.c_str();
  };
  h.series_count = [](aihub_job*) -> uint32_t { return 1; };
  h.series_tag = [](aihub_job* j, uint32_t s, uint32_t tag) -> const char* {
    auto it = j->tags.find(tag);
    return s != 0 || it == j->tags.end() ? nullptr : it->second.c_str();
  };
  h.frame_count = [](aihub_job* j, uint32_t) -> uint32_t { return j->frames; };
  h.frame_geometry = [](aihub_job* j, uint32_t s, uint32_t f, aihub_frame_geometry* g) -> int32_t {
    if (s != 0 || f >= j->frames || g->struct_size < sizeof(aihub_frame_geometry)) return AIHUB_INVALID_ARGUMENT;
    const uint32_t tile = j->slide.options().tile;
    g->rows = g->columns = tile;
    g->samples_per_pixel = j->samples;
    g->bits_allocated = g->bits_stored = 8;
    g->photometric = j->photometric;
    g->pixel_spacing[0] = g->pixel_spacing[1] = j->spacing_mm;
    g->rescale_slope = 1;
    g->sop_instance_uid = kSopUid.c_str();
    g->frame_number = f + 1;
    g->trigger_time = -1;
    g->total_pixel_column = (f % j->slide.tiles_across()) * tile + 1 + j->position_shift;
    g->total_pixel_row = (f / j->slide.tiles_across()) * tile + 1;
    return AIHUB_OK;
  };
  h.read_frame = [](aihub_job* j, uint32_t s, uint32_t f, int32_t format, void* buffer, uint64_t size) -> int32_t {
    const uint32_t tile = j->slide.options().tile;
    if (s != 0 || f >= j->frames || format != AIHUB_PIXEL_RGB8 || size < uint64_t{tile} * tile * 3) {
      return AIHUB_INVALID_ARGUMENT;
    }
    j->reads.push_back(f);
    j->buffers.insert(buffer);
    if (j->failing_frame && *j->failing_frame == f) return AIHUB_DATA_LOSS;
    j->slide.RenderTile(f, static_cast<uint8_t*>(buffer));
    return AIHUB_OK;
  };
  h.add_finding = [](aihub_job* j, const aihub_finding* f, uint32_t* index) -> int32_t {
    aihub_job::Finding out;
    out.code = f->code.value;
    out.presence = f->presence;
    out.confidence = f->confidence;
    out.text = f->text ? f->text : "";
    j->findings.push_back(out);
    *index = static_cast<uint32_t>(j->findings.size() - 1);
    return AIHUB_OK;
  };
  h.add_measurement = [](aihub_job* j, uint32_t i, const aihub_measurement* m) -> int32_t {
    if (i >= j->findings.size() || !std::isfinite(m->value)) return AIHUB_INVALID_ARGUMENT;
    j->findings[i].measurements[m->code.value] = {m->value, m->unit_ucum};
    return AIHUB_OK;
  };
  h.add_region = [](aihub_job* j, uint32_t i, const aihub_region* r) -> int32_t {
    // The plugin marks its hot spot on the total pixel matrix (ABI 1.2); a frame-relative region would be a defect.
    const float size = static_cast<float>(j->slide.options().size);
    if (i >= j->findings.size() || r->series_index != 0 || r->frame_index >= j->frames) return AIHUB_INVALID_ARGUMENT;
    if (r->struct_size < sizeof(aihub_region) || r->pixel_origin != AIHUB_PIXEL_ORIGIN_VOLUME) {
      return AIHUB_INVALID_ARGUMENT;
    }
    for (uint32_t k = 0; k < 2 * r->point_count; ++k) {
      if (r->points[k] < 0 || r->points[k] > size) return AIHUB_INVALID_ARGUMENT;
    }
    j->findings[i].regions.emplace_back(r->frame_index,
                                        std::vector<float>(r->points, r->points + 2 * r->point_count));
    return AIHUB_OK;
  };
  h.set_summary = [](aihub_job* j, const char* text) -> int32_t {
    j->summary = text;
    return AIHUB_OK;
  };
  return h;
}

struct Plugin {
  void* handle = nullptr;
  aihub_plugin_describe_fn describe = nullptr;
  aihub_plugin_create_fn create = nullptr;
  aihub_plugin_execute_fn execute = nullptr;
  aihub_plugin_destroy_fn destroy = nullptr;
  aihub_plugin_self_test_fn self_test = nullptr;
  Plugin() {
    const std::string path = kPluginDir + "/ki67.so";
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    REQUIRE_MESSAGE(handle != nullptr, dlerror());
    describe = reinterpret_cast<aihub_plugin_describe_fn>(dlsym(handle, AIHUB_PLUGIN_DESCRIBE_SYMBOL));
    create = reinterpret_cast<aihub_plugin_create_fn>(dlsym(handle, AIHUB_PLUGIN_CREATE_SYMBOL));
    execute = reinterpret_cast<aihub_plugin_execute_fn>(dlsym(handle, AIHUB_PLUGIN_EXECUTE_SYMBOL));
    destroy = reinterpret_cast<aihub_plugin_destroy_fn>(dlsym(handle, AIHUB_PLUGIN_DESTROY_SYMBOL));
    self_test = reinterpret_cast<aihub_plugin_self_test_fn>(dlsym(handle, AIHUB_PLUGIN_SELF_TEST_SYMBOL));
    REQUIRE((describe && create && execute && destroy && self_test));
  }
  ~Plugin() {
    if (handle) dlclose(handle);
  }
};

WsiKi67Options Options(uint64_t seed, uint32_t size, double index) {
  WsiKi67Options o;
  o.seed = seed;
  o.size = size;
  o.index_percent = index;
  return o;
}

// A phantom slide with the tags the phantom writes.
aihub_job MakeJob(const WsiKi67Options& o) {
  auto slide = WsiKi67Slide::Create(o);
  REQUIRE(slide.ok());
  aihub_job job;
  job.slide = *slide;
  job.frames = slide->tile_count();
  job.tags = {{0x00080060, "SM"},
              {0x00080016, "1.2.840.10008.5.1.4.1.1.77.1.6"},
              {0x00080008, "ORIGINAL\\PRIMARY\\VOLUME\\NONE"},
              {0x00209311, "TILED_FULL"},
              {0x00480006, std::to_string(o.size)},
              {0x00480007, std::to_string(o.size)}};
  return job;
}

struct Instance {
  Plugin plugin;
  aihub_host_api host = MakeHost();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;
  Instance() { REQUIRE_MESSAGE(plugin.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error); }
  ~Instance() { plugin.destroy(instance); }
  int32_t Run(aihub_job& job) { return plugin.execute(instance, &job); }
};

}  // namespace

TEST_CASE("ki67: descriptor names id, versions and whole-slide rules") {
  Plugin p;
  const aihub_plugin_descriptor* d = p.describe();
  CHECK(std::string(d->id) == "ki67");
  CHECK(std::string(d->version) == "1.0.0");
  CHECK(std::string(d->model_version).rfind("ki67-ref-", 0) == 0);
  CHECK(std::string(d->default_rules_yaml) == "{Modality: SM, SOPClassUID: \"1.2.840.10008.5.1.4.1.1.77.1.6\"}");
}

TEST_CASE("ki67: the index, hot spot and counts match the phantom's truth, reading each tile once into one buffer") {
  Instance in;
  CHECK_MESSAGE(in.plugin.self_test(in.instance) == AIHUB_OK, in.ctx.error);
  for (const auto& [seed, index] : std::vector<std::pair<uint64_t, double>>{{90001, 12}, {90002, 35}}) {
    const WsiKi67Options o = Options(seed, 2048, index);
    aihub_job job = MakeJob(o);
    const auto truth = aihub::phantom::CountWsiKi67(job.slide);
    REQUIRE_MESSAGE(in.Run(job) == AIHUB_OK, job.error);
    // Streaming: every tile read exactly once, in order, always into the same buffer.
    REQUIRE(job.reads.size() == job.frames);
    for (uint32_t k = 0; k < job.frames; ++k) CHECK(job.reads[k] == k);
    CHECK(job.buffers.size() == 1);

    REQUIRE(job.findings.size() == 1);
    const auto& f = job.findings[0];
    CHECK(f.code == "KI67-HIGH");
    const auto& m = f.measurements;
    REQUIRE(m.size() == 5);
    CHECK(m.at("KI67-INDEX").second == "%");
    CHECK(m.at("KI67-POSITIVE").second == "{nuclei}");
    INFO("seed " << seed << ": truth " << truth.global_index_percent << " %, hot spot " << truth.hotspot.index_percent);
    CHECK(std::fabs(m.at("KI67-INDEX").first - truth.global_index_percent) <= 3);
    CHECK(std::fabs(m.at("KI67-HOTSPOT-INDEX").first - truth.hotspot.index_percent) <= 3);
    const double all = static_cast<double>(truth.positive_nuclei + truth.negative_nuclei);
    CHECK(m.at("KI67-POSITIVE").first + m.at("KI67-NEGATIVE").first == doctest::Approx(all).epsilon(0.03));
    CHECK(f.presence == (truth.global_index_percent >= 20 ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT));
    // The hot spot's region is the truth's window, on the total pixel matrix.
    REQUIRE(f.regions.size() == 1);
    CHECK(f.regions[0].first == truth.hotspot_center_tile);
    const float x0 = static_cast<float>(truth.hotspot_column), y0 = static_cast<float>(truth.hotspot_row);
    const float x1 = x0 + static_cast<float>(truth.hotspot_width), y1 = y0 + static_cast<float>(truth.hotspot_height);
    CHECK(f.regions[0].second == std::vector<float>{x0, y0, x1, y0, x1, y1, x0, y1});
    CHECK(f.text.find("not for clinical use") != std::string::npos);
    CHECK_FALSE(job.summary.empty());
  }
}

TEST_CASE("ki67: inconsistent tiling, other layouts and images are not applicable, with the reason") {
  Instance in;
  const aihub_job good = MakeJob(Options(90003, 1024, 20));
  struct Case {
    const char* name;
    std::function<void(aihub_job&)> edit;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"missing tile", [](aihub_job& j) { j.frames -= 1; }, "missing tiles"},
      {"bad geometry", [](aihub_job& j) { j.tags[0x00480006] = j.tags[0x00480007] = "1152"; }, "needs 5 x 5 = 25"},
      {"extra frames", [](aihub_job& j) { j.frames += 16; }, "more frames than tiles"},
      {"sparse", [](aihub_job& j) { j.tags[0x00209311] = "TILED_SPARSE"; }, "is not TILED_FULL"},
      {"no organization", [](aihub_job& j) { j.tags.erase(0x00209311); }, "TILED_FULL whole-slide image is needed"},
      {"no matrix", [](aihub_job& j) { j.tags.erase(0x00480006); }, "TotalPixelMatrixColumns"},
      {"monochrome", [](aihub_job& j) { j.samples = 1, j.photometric = AIHUB_PHOTOMETRIC_MONOCHROME2; },
       "not a colour"},
      {"10x scan", [](aihub_job& j) { j.spacing_mm = 0.001; }, "outside the model's"},
      {"label", [](aihub_job& j) { j.tags[0x00080008] = "ORIGINAL\\PRIMARY\\LABEL\\NONE"; }, "not a VOLUME"},
      {"modality", [](aihub_job& j) { j.tags[0x00080060] = "CT"; }, "modality CT"},
      {"host positions", [](aihub_job& j) { j.position_shift = 7; }, "inconsistent tile positions"},
  };
  for (const Case& c : cases) {
    aihub_job job = good;
    c.edit(job);
    INFO(c.name);
    CHECK(in.Run(job) == AIHUB_FAILED_PRECONDITION);
    CHECK_MESSAGE(job.error.find(c.reason) != std::string::npos, job.error);
    CHECK(job.findings.empty());
    CHECK(job.reads.empty());  // refused before any pixel is read
  }
}

TEST_CASE("ki67: a tile that cannot be read fails the job naming it, and cancellation stops the reading") {
  Instance in;
  aihub_job broken = MakeJob(Options(90004, 1024, 20));
  broken.failing_frame = 6;
  CHECK(in.Run(broken) == AIHUB_DATA_LOSS);
  CHECK_MESSAGE(broken.error.find("tile 7 of 16") != std::string::npos, broken.error);
  CHECK(broken.findings.empty());

  aihub_job cancelled = MakeJob(Options(90004, 1024, 20));
  cancelled.cancel_after_reads = 3;
  CHECK(in.Run(cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.reads.size() == 3);
  CHECK(cancelled.findings.empty());
}

TEST_CASE("ki67: few nuclei make the finding indeterminate, and the cut-off is configurable") {
  Plugin p;
  const aihub_host_api host = MakeHost();
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
  Plugin p;
  const aihub_host_api host = MakeHost();
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
