// The built ejection_fraction.so with its TorchScript model through the C ABI and a minimal fake host serving an
// in-memory phantom cine (frames phase by phase, as the host sorts them): descriptor and default rules, EF against
// the phantom's truth, the operating point, a series without phases, cancellation, bad config and model files.
#include <dlfcn.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "host/plugins/test_support.h"
#include "phantom/cardiac_cine.h"

struct aihub_plugin_context {
  std::string directory = std::string(AIHUB_BINARY_DIR) + "/plugins";
  std::map<std::string, std::string> strings;
  std::map<std::string, double> numbers;
  std::string error;
};

struct aihub_job {
  uint32_t rows = 0, columns = 0, slices = 0, phases = 0;
  uint32_t temporal_positions = 0;  // what the host reports: 0 for a series without phases
  std::vector<float> pixels;        // sorted frames: phase by phase, slice by slice
  double spacing_mm = 0, thickness_mm = 0;
  std::map<uint32_t, std::string> tags;
  bool cancelled = false;
  int frames_read = 0;
  std::string error, summary;
  struct Finding {
    std::string code;
    int32_t presence, urgency;
    double confidence;
    std::string site;
    std::map<std::string, double> measurements;  // by code value
    std::map<std::string, std::string> units;
    struct Region {
      uint32_t frame;
      int32_t type;
      std::vector<float> points;
    };
    std::vector<Region> regions;
  };
  std::vector<Finding> findings;
};

namespace {

using aihub::testing::TempDir;

const std::string kPluginDir = std::string(AIHUB_BINARY_DIR) + "/plugins";

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
  h.job_is_cancelled = [](aihub_job* j) -> int32_t { return j->cancelled ? 1 : 0; };
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
  h.frame_count = [](aihub_job* j, uint32_t) -> uint32_t { return j->slices * j->phases; };
  h.frame_geometry = [](aihub_job* j, uint32_t s, uint32_t f, aihub_frame_geometry* g) -> int32_t {
    if (s != 0 || f >= j->slices * j->phases) return AIHUB_INVALID_ARGUMENT;
    g->rows = j->rows;
    g->columns = j->columns;
    g->samples_per_pixel = 1;
    g->bits_allocated = 16;
    g->bits_stored = 12;
    g->photometric = AIHUB_PHOTOMETRIC_MONOCHROME2;
    g->pixel_spacing[0] = g->pixel_spacing[1] = j->spacing_mm;
    g->slice_thickness = j->thickness_mm;
    g->spacing_between_slices = j->thickness_mm;
    g->has_position = 1;
    g->rescale_slope = 1;
    g->frame_number = 1;
    g->sop_instance_uid = "1.2.3.4";
    if (g->struct_size >= offsetof(aihub_frame_geometry, total_pixel_column)) {
      g->trigger_time = j->temporal_positions ? 40.0 * (f / j->slices) : -1;
      g->temporal_index = j->temporal_positions ? static_cast<int32_t>(f / j->slices + 1) : 0;
      g->temporal_positions = j->temporal_positions;
    }
    return AIHUB_OK;
  };
  h.read_frame = [](aihub_job* j, uint32_t s, uint32_t f, int32_t format, void* buffer, uint64_t size) -> int32_t {
    const size_t n = static_cast<size_t>(j->rows) * j->columns;
    if (s != 0 || f >= j->slices * j->phases || format != AIHUB_PIXEL_FLOAT32_MODALITY || size < n * sizeof(float)) {
      return AIHUB_INVALID_ARGUMENT;
    }
    ++j->frames_read;
    std::copy(j->pixels.begin() + static_cast<std::ptrdiff_t>(f * n),
              j->pixels.begin() + static_cast<std::ptrdiff_t>((f + 1) * n), static_cast<float*>(buffer));
    return AIHUB_OK;
  };
  h.add_finding = [](aihub_job* j, const aihub_finding* f, uint32_t* index) -> int32_t {
    aihub_job::Finding out{f->code.value, f->presence, f->urgency, f->confidence, f->site ? f->site->value : "",
                           {}, {}, {}};
    j->findings.push_back(out);
    *index = static_cast<uint32_t>(j->findings.size() - 1);
    return AIHUB_OK;
  };
  h.add_measurement = [](aihub_job* j, uint32_t i, const aihub_measurement* m) -> int32_t {
    if (i >= j->findings.size() || !std::isfinite(m->value)) return AIHUB_INVALID_ARGUMENT;
    j->findings[i].measurements[m->code.value] = m->value;
    j->findings[i].units[m->code.value] = m->unit_ucum;
    return AIHUB_OK;
  };
  h.add_region = [](aihub_job* j, uint32_t i, const aihub_region* r) -> int32_t {
    if (i >= j->findings.size() || r->series_index != 0 || r->frame_index >= j->slices * j->phases) {
      return AIHUB_INVALID_ARGUMENT;
    }
    j->findings[i].regions.push_back({r->frame_index, r->graphic_type, {r->points, r->points + 2 * r->point_count}});
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
    const std::string path = kPluginDir + "/ejection_fraction.so";
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
  aihub_job job;
  job.rows = t.rows;
  job.columns = t.columns;
  job.slices = t.slices;
  job.phases = t.phases;
  job.temporal_positions = t.phases;
  job.spacing_mm = t.pixel_spacing_mm;
  job.thickness_mm = t.slice_thickness_mm;
  const size_t n = static_cast<size_t>(t.rows) * t.columns;
  for (uint32_t p = 0; p < t.phases; ++p) {
    for (uint32_t k = 0; k < t.slices; ++k) {
      const auto* frame = &study->pixels[(static_cast<size_t>(k) * t.phases + p) * n];
      job.pixels.insert(job.pixels.end(), frame, frame + n);
    }
  }
  job.tags = {{0x00080060, "MR"}, {0x0008103E, "CINE SAX"}, {0x0020000E, t.series_instance_uid}};
  if (truth) *truth = t;
  return job;
}

struct Instance {
  Plugin& plugin;
  aihub_host_api host = MakeHost();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;
  explicit Instance(Plugin& p, double threshold = -1) : plugin(p) {
    if (threshold >= 0) ctx.numbers["threshold_percent"] = threshold;
    REQUIRE_MESSAGE(p.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error);
  }
  ~Instance() { plugin.destroy(instance); }
};

}  // namespace

TEST_CASE("ejection_fraction: descriptor names id and versions and the cine MR default rules") {
  Plugin p;
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
  Plugin p;
  Instance in(p);
  CHECK_MESSAGE(p.self_test(in.instance) == AIHUB_OK, in.ctx.error);

  aihub::phantom::CardiacCineTruth truth;
  aihub_job job = MakeJob(31, 58, &truth);
  REQUIRE_MESSAGE(p.execute(in.instance, &job) == AIHUB_OK, job.error);
  REQUIRE(job.findings.size() == 1);
  const auto& f = job.findings[0];
  CHECK(f.code == "134401001");
  CHECK(f.site == "87878005");
  CHECK(f.presence == AIHUB_PRESENCE_ABSENT);  // EF 58 % is not below 30 %
  CHECK(f.urgency == AIHUB_URGENCY_ROUTINE);
  CHECK(f.confidence < 0.01);
  REQUIRE(f.measurements.count("10230-1") == 1);
  const double ef = f.measurements.at("10230-1"), edv = f.measurements.at("18026-5");
  const double esv = f.measurements.at("18148-7");
  CHECK_MESSAGE(std::fabs(ef - truth.ef_percent) <= 4, "EF " << ef << " %, truth " << truth.ef_percent << " %");
  CHECK_MESSAGE(std::fabs(edv / truth.edv_ml - 1) <= 0.1, "EDV " << edv << " mL, truth " << truth.edv_ml);
  CHECK_MESSAGE(std::fabs(esv / truth.esv_ml - 1) <= 0.15, "ESV " << esv << " mL, truth " << truth.esv_ml);
  CHECK(f.measurements.at("90096001") == doctest::Approx(edv - esv));
  CHECK(f.units.at("10230-1") == "%");
  CHECK(f.units.at("18026-5") == "mL");
  // The outline: on an end-diastolic frame (phase 1 is the phantom's ED) of the middle slice, around the ventricle
  // (left of the image centre's right half by at most the heart's size).
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].type == AIHUB_GRAPHIC_POLYGON);
  CHECK(f.regions[0].frame == truth.ed_phase * job.slices + job.slices / 2);
  REQUIRE(f.regions[0].points.size() >= 6);
  for (size_t i = 0; i < f.regions[0].points.size(); ++i) {
    CHECK(f.regions[0].points[i] >= 0);
    CHECK(f.regions[0].points[i] <= 128);
  }
  CHECK(job.summary.find("not for clinical use") != std::string::npos);
  CHECK(job.frames_read == static_cast<int>(job.slices * job.phases));
}

TEST_CASE("ejection_fraction: "
          "through the C ABI: EF below the operating point is a critical finding, with a configurable threshold") {
  Plugin p;
  aihub::phantom::CardiacCineTruth truth;
  const aihub_job low = MakeJob(32, 18, &truth);
  {
    Instance in(p);
    aihub_job job = low;
    REQUIRE_MESSAGE(p.execute(in.instance, &job) == AIHUB_OK, job.error);
    REQUIRE(job.findings.size() == 1);
    const auto& f = job.findings[0];
    CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
    CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);
    CHECK(f.confidence > 0.9);
    const double ef = f.measurements.at("10230-1");
    CHECK_MESSAGE(std::fabs(ef - truth.ef_percent) <= 4, "EF " << ef << " %, truth " << truth.ef_percent << " %");
  }
  {
    Instance strict(p, 10);  // a site that flags only EF below 10 %
    aihub_job job = low;
    REQUIRE(p.execute(strict.instance, &job) == AIHUB_OK);
    REQUIRE(job.findings.size() == 1);
    CHECK(job.findings[0].presence == AIHUB_PRESENCE_ABSENT);
    CHECK(job.findings[0].urgency == AIHUB_URGENCY_ROUTINE);
  }
}

TEST_CASE("ejection_fraction: "
          "through the C ABI: a series without phases is not applicable and cancellation stops the job") {
  Plugin p;
  Instance in(p);
  aihub_job still = MakeJob(33, 55, nullptr);
  still.temporal_positions = 0;  // what the host reports for a series without TemporalPositionIdentifier/TriggerTime
  still.phases = 1;
  CHECK(p.execute(in.instance, &still) == AIHUB_FAILED_PRECONDITION);
  CHECK_MESSAGE(still.error.find("not a cine series") != std::string::npos, still.error);
  CHECK(still.findings.empty());
  CHECK(still.frames_read == 0);

  aihub_job cancelled = MakeJob(33, 55, nullptr);
  cancelled.cancelled = true;
  CHECK(p.execute(in.instance, &cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.findings.empty());
  CHECK(cancelled.frames_read == 0);
}
