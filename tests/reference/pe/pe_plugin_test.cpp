// The built pe.so with its TorchScript model through the C ABI and a minimal fake host: the cases a real study
// cannot show (non-axial, missing spacing, colour, irregular slices, no contrast, cancellation, bad model files).
#include <dlfcn.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "phantom/ctpa.h"
#include "tools/ct_series_reader.h"

struct aihub_plugin_context {
  std::string directory = std::string(AIHUB_BINARY_DIR) + "/plugins";
  std::map<std::string, std::string> strings;
  std::map<std::string, double> numbers;
  std::string error;
};

struct aihub_job {
  aihub::testing::CtSeriesHu series;
  double orientation[6] = {1, 0, 0, 0, 1, 0};
  int32_t photometric = AIHUB_PHOTOMETRIC_MONOCHROME2;
  double spacing_between_slices = 0;
  bool cancelled = false;
  std::string error, summary;
  struct Finding {
    std::string code, site;
    int32_t presence, urgency, laterality;
    double confidence;
    std::vector<double> measurements;
    std::vector<uint32_t> region_frames;
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
  h.study_tag = [](aihub_job*, uint32_t tag) -> const char* { return tag == 0x00080060 ? "CT" : nullptr; };
  h.series_count = [](aihub_job*) -> uint32_t { return 1; };
  h.series_tag = [](aihub_job*, uint32_t s, uint32_t tag) -> const char* {
    return s == 0 && tag == 0x00080060 ? "CT" : nullptr;
  };
  h.frame_count = [](aihub_job* j, uint32_t) -> uint32_t { return j->series.slices; };
  h.frame_geometry = [](aihub_job* j, uint32_t s, uint32_t f, aihub_frame_geometry* g) -> int32_t {
    if (s != 0 || f >= j->series.slices) return AIHUB_INVALID_ARGUMENT;
    g->rows = j->series.rows;
    g->columns = j->series.columns;
    g->samples_per_pixel = j->photometric == AIHUB_PHOTOMETRIC_RGB ? 3 : 1;
    g->bits_allocated = g->bits_stored = 16;
    g->pixel_representation = 1;
    g->photometric = j->photometric;
    g->pixel_spacing[0] = j->series.row_spacing_mm;
    g->pixel_spacing[1] = j->series.column_spacing_mm;
    g->slice_thickness = j->series.slice_spacing_mm;
    g->spacing_between_slices = j->spacing_between_slices;
    g->position[0] = -0.5 * j->series.columns * j->series.column_spacing_mm;
    g->position[1] = -0.5 * j->series.rows * j->series.row_spacing_mm;
    g->position[2] = j->series.z[f];
    for (int i = 0; i < 6; ++i) g->orientation[i] = j->orientation[i];
    g->has_position = 1;
    g->rescale_slope = 1;
    g->rescale_intercept = -1024;
    g->frame_number = 1;
    return AIHUB_OK;
  };
  h.read_frame = [](aihub_job* j, uint32_t s, uint32_t f, int32_t format, void* buffer, uint64_t size) -> int32_t {
    const size_t n = static_cast<size_t>(j->series.rows) * j->series.columns;
    if (s != 0 || f >= j->series.slices || format != AIHUB_PIXEL_FLOAT32_MODALITY || size < n * sizeof(float)) {
      return AIHUB_INVALID_ARGUMENT;
    }
    std::copy_n(j->series.hu.begin() + static_cast<std::ptrdiff_t>(f * n), n, static_cast<float*>(buffer));
    return AIHUB_OK;
  };
  h.add_finding = [](aihub_job* j, const aihub_finding* f, uint32_t* index) -> int32_t {
    j->findings.push_back({f->code.value, f->site ? f->site->value : "", f->presence, f->urgency, f->laterality,
                           f->confidence, {}, {}});
    *index = static_cast<uint32_t>(j->findings.size() - 1);
    return AIHUB_OK;
  };
  h.add_measurement = [](aihub_job* j, uint32_t i, const aihub_measurement* m) -> int32_t {
    if (i >= j->findings.size() || !std::isfinite(m->value)) return AIHUB_INVALID_ARGUMENT;
    j->findings[i].measurements.push_back(m->value);
    return AIHUB_OK;
  };
  h.add_region = [](aihub_job* j, uint32_t i, const aihub_region* r) -> int32_t {
    if (i >= j->findings.size() || r->graphic_type != AIHUB_GRAPHIC_POLYGON || r->point_count < 3 ||
        r->point_count > 4096 || r->frame_index >= j->series.slices) {
      return AIHUB_INVALID_ARGUMENT;
    }
    for (uint32_t p = 0; p < 2 * r->point_count; ++p) {
      if (!(r->points[p] >= 0 && r->points[p] <= static_cast<float>(j->series.columns))) return AIHUB_INVALID_ARGUMENT;
    }
    j->findings[i].region_frames.push_back(r->frame_index);
    return AIHUB_OK;
  };
  h.set_summary = [](aihub_job* j, const char* text) -> int32_t {
    j->summary = text;
    return AIHUB_OK;
  };
  return h;
}

// pe.so opened directly (the fake-host tests).
struct Plugin {
  void* handle = nullptr;
  aihub_plugin_describe_fn describe = nullptr;
  aihub_plugin_create_fn create = nullptr;
  aihub_plugin_execute_fn execute = nullptr;
  aihub_plugin_destroy_fn destroy = nullptr;
  aihub_plugin_self_test_fn self_test = nullptr;
  Plugin() {
    const std::string path = kPluginDir + "/pe.so";
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

aihub_job LoadJob(uint64_t seed, std::optional<aihub::phantom::PulmonaryBranch> branch, uint32_t slices = 64,
                  uint32_t size = 256) {
  TempDir dir("pe-plugin");
  aihub::phantom::CtpaOptions o;
  o.seed = seed;
  o.embolus = branch.has_value();
  o.branch = branch;
  o.size = size;
  o.slices = slices;
  const auto truth = aihub::phantom::WriteCtpa(o, dir.path());
  REQUIRE(truth.ok());
  aihub_job job;
  job.series = aihub::testing::ReadCtSeriesHu(dir.path() / truth->folder);
  job.spacing_between_slices = job.series.slice_spacing_mm;
  return job;
}

}  // namespace

TEST_CASE("descriptor names id and versions and CTPA rules") {
  Plugin p;
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
  Plugin p;
  const aihub_host_api host = MakeHost();
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
  Plugin p;
  const aihub_host_api host = MakeHost();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE_MESSAGE(p.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error);
  CHECK_MESSAGE(p.self_test(instance) == AIHUB_OK, ctx.error);

  aihub_job short_series = LoadJob(40, std::nullopt, 24);
  CHECK(p.execute(instance, &short_series) == AIHUB_FAILED_PRECONDITION);
  CHECK(short_series.error.find("at least 32") != std::string::npos);

  aihub_job job = LoadJob(41, aihub::phantom::PulmonaryBranch::kRight);
  aihub_job sagittal = job;
  const double sag[6] = {0, 1, 0, 0, 0, -1};
  std::copy(sag, sag + 6, sagittal.orientation);
  CHECK(p.execute(instance, &sagittal) == AIHUB_FAILED_PRECONDITION);
  CHECK(sagittal.error.find("axial") != std::string::npos);

  aihub_job no_spacing = job;
  no_spacing.series.row_spacing_mm = 0;
  CHECK(p.execute(instance, &no_spacing) == AIHUB_FAILED_PRECONDITION);
  CHECK(no_spacing.error.find("pixel spacing") != std::string::npos);

  aihub_job colour = job;
  colour.photometric = AIHUB_PHOTOMETRIC_RGB;
  CHECK(p.execute(instance, &colour) == AIHUB_FAILED_PRECONDITION);
  CHECK(colour.error.find("monochrome") != std::string::npos);

  aihub_job irregular = job;
  irregular.spacing_between_slices = 0;
  CHECK(p.execute(instance, &irregular) == AIHUB_FAILED_PRECONDITION);
  CHECK(irregular.error.find("evenly spaced") != std::string::npos);

  aihub_job thick = job;
  thick.spacing_between_slices = 5;
  CHECK(p.execute(instance, &thick) == AIHUB_FAILED_PRECONDITION);
  CHECK(thick.error.find("slice spacing") != std::string::npos);

  // The same chest without contrast: every voxel above 100 HU (opacified vessels, and bone) becomes soft tissue.
  aihub_job plain = job;
  for (float& v : plain.series.hu) v = v > 100 ? 40.0f : v;
  CHECK(p.execute(instance, &plain) == AIHUB_FAILED_PRECONDITION);
  CHECK_MESSAGE(plain.error.find("not a contrast-enhanced study") != std::string::npos, plain.error);

  for (const aihub_job* j : {&short_series, &sagittal, &no_spacing, &colour, &irregular, &thick, &plain}) {
    CHECK(j->findings.empty());
  }

  aihub_job cancelled = job;
  cancelled.cancelled = true;
  CHECK(p.execute(instance, &cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.findings.empty());

  // The same series, fine otherwise, runs through: an embolus in the right pulmonary artery.
  REQUIRE_MESSAGE(p.execute(instance, &job) == AIHUB_OK, job.error);
  REQUIRE(job.findings.size() == 1);
  const auto& f = job.findings[0];
  CHECK(f.code == "59282003");
  CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
  CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);
  CHECK(f.laterality == AIHUB_LATERALITY_RIGHT);
  CHECK(f.site == "78480002");  // right pulmonary artery
  REQUIRE(f.measurements.size() == 2);
  CHECK(f.measurements[0] > 0);  // mL
  CHECK(f.measurements[1] > 0);  // % burden
  CHECK(f.measurements[1] < 100);
  CHECK(f.region_frames.size() == 1);
  CHECK(job.summary.find("right pulmonary artery") != std::string::npos);
  p.destroy(instance);
}
