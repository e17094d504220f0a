// The built hyperdensity.so, loaded with dlopen and driven through the C ABI by a minimal fake host that serves a
// phantom series read back with DCMTK.
#include <dlfcn.h>
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "phantom/head_ct.h"
#include "tools/ct_series_reader.h"

struct aihub_plugin_context {
  std::map<std::string, double> numbers;
  std::string error;
};

struct aihub_job {
  aihub::testing::CtSeriesHu series;
  double orientation[6] = {1, 0, 0, 0, 1, 0};
  int32_t photometric = AIHUB_PHOTOMETRIC_MONOCHROME2;
  bool cancelled = false;
  std::string error, summary;
  std::vector<double> progress;
  struct Finding {
    std::string code, scheme, meaning, text;
    int32_t presence, urgency, laterality;
    double confidence;
    std::vector<std::pair<std::string, double>> measurements;  // (code, value)
    std::vector<std::string> units;
    std::vector<aihub_region> regions;
    std::vector<std::vector<float>> points;
  };
  std::vector<Finding> findings;
};

namespace {

using aihub::phantom::HemorrhageType;
using aihub::phantom::Side;

aihub_host_api MakeHost() {
  aihub_host_api h{};
  h.struct_size = sizeof h;
  h.api_version_major = AIHUB_PLUGIN_API_VERSION_MAJOR;
  h.api_version_minor = AIHUB_PLUGIN_API_VERSION_MINOR;
  h.log = [](aihub_plugin_context*, int32_t, const char*) {};
  h.config_json = [](aihub_plugin_context*) { return "{}"; };
  h.config_string = [](aihub_plugin_context*, const char*) -> const char* { return nullptr; };
  h.config_number = [](aihub_plugin_context* c, const char* key, double fallback) {
    auto it = c->numbers.find(key);
    return it == c->numbers.end() ? fallback : it->second;
  };
  h.context_set_error = [](aihub_plugin_context* c, const char* m) { c->error = m; };
  h.job_log = [](aihub_job*, int32_t, const char*) {};
  h.job_set_error = [](aihub_job* j, const char* m) { j->error = m; };
  h.job_is_cancelled = [](aihub_job* j) -> int32_t { return j->cancelled ? 1 : 0; };
  h.job_progress = [](aihub_job* j, double f) { j->progress.push_back(f); };
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
    g->slice_thickness = 5;
    g->spacing_between_slices = j->series.slice_spacing_mm;
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
    j->findings.push_back({f->code.value, f->code.scheme, f->code.meaning, f->text ? f->text : "", f->presence,
                           f->urgency, f->laterality, f->confidence, {}, {}, {}, {}});
    *index = static_cast<uint32_t>(j->findings.size() - 1);
    return AIHUB_OK;
  };
  h.add_measurement = [](aihub_job* j, uint32_t i, const aihub_measurement* m) -> int32_t {
    if (i >= j->findings.size()) return AIHUB_INVALID_ARGUMENT;
    j->findings[i].measurements.emplace_back(m->code.value, m->value);
    j->findings[i].units.emplace_back(m->unit_ucum);
    return AIHUB_OK;
  };
  h.add_region = [](aihub_job* j, uint32_t i, const aihub_region* r) -> int32_t {
    if (i >= j->findings.size()) return AIHUB_INVALID_ARGUMENT;
    j->findings[i].regions.push_back(*r);
    j->findings[i].points.emplace_back(r->points, r->points + 2 * r->point_count);
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
    const std::string path = std::string(AIHUB_BINARY_DIR) + "/plugins/hyperdensity.so";
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
  aihub_job job;
  job.series = aihub::testing::ReadCtSeriesHu(dir.path() / truth->folder);
  return job;
}

}  // namespace

TEST_CASE("descriptor names a reference plugin with head CT rules") {
  Plugin p;
  const aihub_plugin_descriptor* d = p.describe();
  CHECK(std::string(d->id) == "hyperdensity");
  CHECK(std::string(d->version) == "1.0.0");
  CHECK(std::string(d->model_version) == "rules-1");
  CHECK(std::string(d->name).find("not for clinical use") != std::string::npos);
  CHECK(std::string(d->default_rules_yaml) == "{Modality: CT, BodyPartExamined: [HEAD, BRAIN]}");
  CHECK(d->api_version_major == AIHUB_PLUGIN_API_VERSION_MAJOR);
}

TEST_CASE("through the C ABI the plugin self-tests and reports a critical left finding with volume and region and a negative") {
  Plugin p;
  const aihub_host_api host = MakeHost();
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
  CHECK(f.code == "1386000");
  CHECK(f.scheme == "SCT");
  CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
  CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);
  CHECK(f.laterality == AIHUB_LATERALITY_LEFT);
  CHECK(f.confidence > 0.5);
  REQUIRE(f.measurements.size() == 1);
  CHECK(f.measurements[0].first == "118565006");
  CHECK(f.units[0] == "mL");
  const double truth_ml = truth->truth.hemorrhage.volume_ml;
  CHECK(std::fabs(f.measurements[0].second - truth_ml) <= 0.2 * truth_ml);
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == AIHUB_GRAPHIC_POLYGON);
  CHECK(f.regions[0].frame_index >= truth->truth.hemorrhage.box.slice_min);
  CHECK(f.regions[0].frame_index <= truth->truth.hemorrhage.box.slice_max);
  CHECK(f.points[0].size() >= 6);
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
  Plugin p;
  const aihub_host_api host = MakeHost();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE(p.create(&host, &ctx, &instance) == AIHUB_OK);

  aihub_job short_series = LoadJob(40, HemorrhageType::kNone, Side::kLeft, 8);
  CHECK(p.execute(instance, &short_series) == AIHUB_FAILED_PRECONDITION);
  CHECK(short_series.error.find("slices") != std::string::npos);

  aihub_job job = LoadJob(41, HemorrhageType::kSubdural, Side::kRight, 20);
  aihub_job sagittal = job;
  const double sag[6] = {0, 1, 0, 0, 0, -1};
  std::copy(sag, sag + 6, sagittal.orientation);
  CHECK(p.execute(instance, &sagittal) == AIHUB_FAILED_PRECONDITION);
  CHECK(sagittal.error.find("axial") != std::string::npos);

  aihub_job no_spacing = job;
  no_spacing.series.row_spacing_mm = 0;
  CHECK(p.execute(instance, &no_spacing) == AIHUB_FAILED_PRECONDITION);

  aihub_job colour = job;
  colour.photometric = AIHUB_PHOTOMETRIC_RGB;
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
  Plugin p;
  const aihub_host_api host = MakeHost();
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
