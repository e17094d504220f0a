// The built pneumothorax.so with its TorchScript model through the C ABI and a minimal fake host: the cases a real
// study cannot show (lateral view, missing spacing, colour, small image, flipped or non-frontal orientation,
// MONOCHROME1, cancellation, bad model files).
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
#include "phantom/chest_xray.h"
#include "tools/ct_series_reader.h"

struct aihub_plugin_context {
  std::string directory = std::string(AIHUB_BINARY_DIR) + "/plugins";
  std::map<std::string, std::string> strings;
  std::map<std::string, double> numbers;
  std::string error;
};

struct aihub_job {
  uint32_t rows = 0, columns = 0;
  std::vector<float> pixels;  // modality values
  double spacing_mm = 0;
  int32_t photometric = AIHUB_PHOTOMETRIC_MONOCHROME2;
  std::map<uint32_t, std::string> tags;  // series tags
  bool cancelled = false;
  std::string error, summary;
  struct Finding {
    std::string code;
    int32_t presence, urgency, laterality;
    double confidence;
    std::vector<double> measurements;
    std::vector<std::vector<float>> regions;
  };
  std::vector<Finding> findings;
};

namespace {

using aihub::phantom::Side;
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
  h.frame_count = [](aihub_job*, uint32_t) -> uint32_t { return 1; };
  h.frame_geometry = [](aihub_job* j, uint32_t s, uint32_t f, aihub_frame_geometry* g) -> int32_t {
    if (s != 0 || f != 0) return AIHUB_INVALID_ARGUMENT;
    g->rows = j->rows;
    g->columns = j->columns;
    g->samples_per_pixel = j->photometric == AIHUB_PHOTOMETRIC_RGB ? 3 : 1;
    g->bits_allocated = 16;
    g->bits_stored = 12;
    g->pixel_representation = 0;
    g->photometric = j->photometric;
    g->pixel_spacing[0] = g->pixel_spacing[1] = j->spacing_mm;
    g->has_position = 0;  // DX: no ImagePositionPatient / ImageOrientationPatient
    g->rescale_slope = 1;
    g->frame_number = 1;
    return AIHUB_OK;
  };
  h.read_frame = [](aihub_job* j, uint32_t s, uint32_t f, int32_t format, void* buffer, uint64_t size) -> int32_t {
    if (s != 0 || f != 0 || format != AIHUB_PIXEL_FLOAT32_MODALITY || size < j->pixels.size() * sizeof(float)) {
      return AIHUB_INVALID_ARGUMENT;
    }
    std::copy(j->pixels.begin(), j->pixels.end(), static_cast<float*>(buffer));
    return AIHUB_OK;
  };
  h.add_finding = [](aihub_job* j, const aihub_finding* f, uint32_t* index) -> int32_t {
    j->findings.push_back({f->code.value, f->presence, f->urgency, f->laterality, f->confidence, {}, {}});
    *index = static_cast<uint32_t>(j->findings.size() - 1);
    return AIHUB_OK;
  };
  h.add_measurement = [](aihub_job* j, uint32_t i, const aihub_measurement* m) -> int32_t {
    if (i >= j->findings.size()) return AIHUB_INVALID_ARGUMENT;
    j->findings[i].measurements.push_back(m->value);
    return AIHUB_OK;
  };
  h.add_region = [](aihub_job* j, uint32_t i, const aihub_region* r) -> int32_t {
    if (i >= j->findings.size() || r->series_index != 0 || r->frame_index != 0) return AIHUB_INVALID_ARGUMENT;
    j->findings[i].regions.emplace_back(r->points, r->points + 2 * r->point_count);
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
    const std::string path = kPluginDir + "/pneumothorax.so";
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
  aihub_job job;
  job.rows = rows;
  job.columns = columns;
  job.pixels.assign(study->pixels.begin(), study->pixels.end());
  job.spacing_mm = study->truth.pixel_spacing_mm;
  job.tags = {{0x00080060, "DX"}, {0x00185101, "PA"}, {0x00200020, "L\\F"}, {0x00180015, "CHEST"}};
  return job;
}

}  // namespace

TEST_CASE("descriptor names id and versions and chest X-ray rules") {
  Plugin p;
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
  Plugin p;
  const aihub_host_api host = MakeHost();
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
  Plugin p;
  const aihub_host_api host = MakeHost();
  aihub_plugin_context ctx;
  ctx.numbers["urgent_below_percent"] = 10;
  aihub_plugin_instance* instance = nullptr;
  REQUIRE_MESSAGE(p.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error);
  CHECK_MESSAGE(p.self_test(instance) == AIHUB_OK, ctx.error);

  // A left pneumothorax of 30 %: the patient's left is the image's right in the standard display (L\F).
  const aihub_job job = MakeJob(7, true, Side::kLeft, 30);

  aihub_job lateral = job;
  lateral.tags[0x00185101] = "LL";
  aihub_job no_spacing = job;
  no_spacing.spacing_mm = 0;
  aihub_job colour = job;
  colour.photometric = AIHUB_PHOTOMETRIC_RGB;
  aihub_job sideways = job;
  sideways.tags[0x00200020] = "P\\F";
  aihub_job ct = job;
  ct.tags[0x00080060] = "CT";
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
  imager_spacing.tags[0x00181164] = std::to_string(job.spacing_mm) + "\\" + std::to_string(job.spacing_mm);
  CHECK_MESSAGE(p.execute(instance, &imager_spacing) == AIHUB_OK, imager_spacing.error);

  aihub_job cancelled = job;
  cancelled.cancelled = true;
  CHECK(p.execute(instance, &cancelled) == AIHUB_CANCELLED);
  CHECK(cancelled.findings.empty());

  aihub_job standard = job;
  REQUIRE_MESSAGE(p.execute(instance, &standard) == AIHUB_OK, standard.error);
  REQUIRE(standard.findings.size() == 1);
  const auto& f = standard.findings[0];
  CHECK(f.code == "36118008");
  CHECK(f.presence == AIHUB_PRESENCE_PRESENT);
  CHECK(f.urgency == AIHUB_URGENCY_CRITICAL);  // 30 % is above urgent_below_percent
  CHECK(f.laterality == AIHUB_LATERALITY_LEFT);
  REQUIRE(f.measurements.size() == 1);
  CHECK(f.measurements[0] == doctest::Approx(30).epsilon(0.2));
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].size() >= 6);
  for (size_t i = 0; i < f.regions[0].size(); i += 2) {  // the outline lies in the image's right half
    CHECK(f.regions[0][i] >= job.columns / 2.0f);
    CHECK(f.regions[0][i] <= job.columns);
    CHECK(f.regions[0][i + 1] <= job.rows);
  }

  // The same pixels displayed mirrored (R\F): the image's right half is now the patient's right.
  aihub_job mirrored = job;
  mirrored.tags[0x00200020] = "R\\F";
  REQUIRE(p.execute(instance, &mirrored) == AIHUB_OK);
  REQUIRE(mirrored.findings.size() == 1);
  CHECK(mirrored.findings[0].laterality == AIHUB_LATERALITY_RIGHT);

  // MONOCHROME1 stores air bright: inverted pixels with that interpretation give the same answer.
  aihub_job monochrome1 = job;
  monochrome1.photometric = AIHUB_PHOTOMETRIC_MONOCHROME1;
  for (float& v : monochrome1.pixels) v = 4095 - v;
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
