#include "plugins/loaded_plugin.h"

#include <doctest/doctest.h>

#include "test_support.h"

namespace aihub::plugins {

using aihub::testing::TagOnlyStudy;
using aihub::testing::TempDir;
using aihub::testing::TestPlugin;

namespace {

StatusOr<LoadedPluginPtr> LoadTest(const std::string& name, const TempDir& cache, const std::string& config = "{}") {
  LoadOptions o;
  o.source = TestPlugin(name);
  o.cache_dir = cache.path();
  o.config_json = config;
  return LoadedPlugin::Load(o);
}

JobInput InputFor(const dicom::Study& study) {
  JobInput in;
  in.study = &study;
  for (const auto& s : study.series) in.series.push_back(&s);
  return in;
}

}  // namespace

TEST_CASE("a valid plugin loads from a content-addressed copy and reports its descriptor") {
  TempDir cache("cache");
  auto p = LoadTest("fixed_work_v1", cache);
  REQUIRE_MESSAGE(p.ok(), p.status().ToString());
  const PluginInfo& info = (*p)->info();
  CHECK(info.id == "fixed-work");
  CHECK(info.version == "1.0.0");
  CHECK(info.model_version == "fw-1.0.0");
  CHECK(info.default_rules_yaml == "{Modality: CT}");
  CHECK(info.so_sha256.size() == 64);
  CHECK(info.loaded_path == cache.path() / (info.so_sha256 + ".so"));
  CHECK(std::filesystem::exists(info.loaded_path));
  CHECK(aihub::testing::IsMapped(info.loaded_path));
  CHECK_FALSE(aihub::testing::IsMapped(TestPlugin("fixed_work_v1")));  // the original is never mapped
  CHECK((*p)->has_self_test());
  CHECK((*p)->SelfTest().ok());
}

TEST_CASE("the library is unmapped when the last reference goes") {
  TempDir cache("cache");
  auto p = LoadTest("fixed_work_v2", cache);
  REQUIRE(p.ok());
  const auto mapped = (*p)->info().loaded_path;
  LoadedPluginPtr pinned = *p;  // a job holding the version
  p = Status(AIHUB_CANCELLED, "released");
  CHECK(aihub::testing::IsMapped(mapped));
  pinned.reset();
  CHECK_FALSE(aihub::testing::IsMapped(mapped));
}

TEST_CASE("a plain C plugin runs through the host table") {
  // c_minimal reads the middle frame, which needs pixel data; here it only proves C linkage and descriptor.
  TempDir cache("cache");
  auto p = LoadTest("c_minimal", cache, R"({"scale": 2})");
  REQUIRE_MESSAGE(p.ok(), p.status().ToString());
  CHECK((*p)->info().id == "c-minimal");
  CHECK((*p)->SelfTest().ok());
}

TEST_CASE("fixed-work executes and its findings go through the builder") {
  TempDir cache("cache");
  auto p = LoadTest("fixed_work_v1", cache, R"({"work_ms": 1})");
  REQUIRE(p.ok());
  const dicom::Study study = TagOnlyStudy();
  JobInput in = InputFor(study);
  JobOutput out;
  std::atomic<bool> cancel{false};
  Status st = (*p)->Execute(in, &out, &cancel);
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  REQUIRE(out.findings.size() == 1);
  CHECK(out.findings[0].concept.value == "FW-1");
  CHECK(out.findings[0].presence == Presence::kPresent);
  CHECK(out.findings[0].urgency == Urgency::kCritical);
  CHECK(out.findings[0].laterality == Laterality::kLeft);
  CHECK(out.findings[0].text == "fixed-work 1.0.0");
  REQUIRE(out.findings[0].measurements.size() == 1);
  CHECK(out.findings[0].measurements[0].unit_ucum == "ms");
  CHECK(out.summary == "fixed-work 1.0.0 on 1 series");
}

TEST_CASE("plugins find their model files beside the deployed .so, not in the host's cache") {
  TempDir cache("cache");
  TempDir deployed("deployed");
  aihub::testing::Deploy(TestPlugin("fixed_work_v1"), deployed / "fixed_work.so");
  const dicom::Study study = TagOnlyStudy();
  for (const auto& [config, expected] :
       {std::pair<std::string, std::string>{R"({"echo": "model_path"})", (deployed / "fixed-work.pt").string()},
        {R"({"echo": "model_path", "model": "models/v1.pt"})", (deployed / "models/v1.pt").string()},
        {R"({"echo": "model_path", "model": "/opt/models/v1.pt"})", "/opt/models/v1.pt"}}) {
    LoadOptions o;
    o.source = deployed / "fixed_work.so";
    o.cache_dir = cache.path();
    o.config_json = config;
    auto p = LoadedPlugin::Load(o);
    REQUIRE(p.ok());
    JobInput in = InputFor(study);
    JobOutput out;
    std::atomic<bool> cancel{false};
    REQUIRE((*p)->Execute(in, &out, &cancel).ok());
    CHECK(out.findings.at(0).text == expected);
  }
}

TEST_CASE("cancellation reaches the plugin") {
  TempDir cache("cache");
  auto p = LoadTest("fixed_work_v1", cache, R"({"work_ms": 60000})");
  REQUIRE(p.ok());
  const dicom::Study study = TagOnlyStudy();
  JobInput in = InputFor(study);
  JobOutput out;
  std::atomic<bool> cancel{true};
  Status st = (*p)->Execute(in, &out, &cancel);
  CHECK(st.code() == AIHUB_CANCELLED);
  CHECK(out.findings.empty());
}

TEST_CASE("bad plugins are refused with a clear reason") {
  TempDir cache("cache");
  SUBCASE("ABI major mismatch") {
    auto p = LoadTest("abi_major2", cache);
    REQUIRE_FALSE(p.ok());
    const std::string host_abi = std::to_string(AIHUB_PLUGIN_API_VERSION_MAJOR) + "." +
                                 std::to_string(AIHUB_PLUGIN_API_VERSION_MINOR);
    CHECK(p.status().message().find("plugin ABI 2.0 is not compatible with host ABI " + host_abi) !=
          std::string::npos);
  }
  SUBCASE("missing entry point") {
    auto p = LoadTest("missing_execute", cache);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("missing required entry point aihub_plugin_execute") != std::string::npos);
  }
  SUBCASE("not a shared library") {
    TempDir dir("notso");
    const auto bogus = dir / "bogus.so";
    { std::ofstream(bogus) << "this is not an ELF file"; }
    LoadOptions o;
    o.source = bogus;
    o.cache_dir = cache.path();
    auto p = LoadedPlugin::Load(o);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("cannot load shared library") != std::string::npos);
  }
  SUBCASE("unreadable file") {
    LoadOptions o;
    o.source = cache / "does-not-exist.so";
    o.cache_dir = cache.path();
    auto p = LoadedPlugin::Load(o);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("unreadable") != std::string::npos);
  }
  SUBCASE("create fails with the plugin's reason") {
    auto p = LoadTest("faulty", cache, R"({"fault": "create_fails"})");
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().code() == AIHUB_NOT_FOUND);
    CHECK(p.status().message().find("model file /nonexistent/model.pt not found") != std::string::npos);
  }
  SUBCASE("failing self-test") {
    auto p = LoadTest("fixed_work_v3", cache);
    REQUIRE(p.ok());
    Status st = (*p)->SelfTest();
    CHECK_FALSE(st.ok());
    CHECK(st.message().find("reference output mismatch") != std::string::npos);
  }
}

TEST_CASE("misbehaving plugins fail the job with a clear error") {
  TempDir cache("cache");
  const dicom::Study study = TagOnlyStudy();
  struct Case {
    const char* fault;
    aihub_status_code code;
    const char* words;
  };
  const Case cases[] = {
      {"error", AIHUB_INTERNAL, "model output had the wrong shape"},
      {"throw", AIHUB_INTERNAL, "exception crossed the C ABI: boom from faulty plugin"},
      {"not_applicable", AIHUB_FAILED_PRECONDITION, "needs at least 500 slices"},
      {"nan_confidence", AIHUB_INVALID_ARGUMENT, "confidence must be a finite number in [0, 1]"},
      {"bad_urgency", AIHUB_INVALID_ARGUMENT, "unknown urgency 7"},
      {"too_many_findings", AIHUB_INVALID_ARGUMENT, "more than 64 findings"},
      {"bad_region", AIHUB_INVALID_ARGUMENT, "point outside the frame"},
      {"huge_text", AIHUB_INVALID_ARGUMENT, "longer than 1024"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.fault);
    auto p = LoadTest("faulty", cache, std::string(R"({"fault": ")") + c.fault + "\"}");
    REQUIRE(p.ok());
    JobInput in = InputFor(study);
    JobOutput out;
    std::atomic<bool> cancel{false};
    Status st = (*p)->Execute(in, &out, &cancel);
    CHECK(st.code() == c.code);
    CHECK_MESSAGE(st.message().find(c.words) != std::string::npos, st.message());
  }
  // The well-behaved path of the same plugin still works.
  auto p = LoadTest("faulty", cache, R"({"fault": "none"})");
  REQUIRE(p.ok());
  JobInput in = InputFor(study);
  JobOutput out;
  std::atomic<bool> cancel{false};
  CHECK((*p)->Execute(in, &out, &cancel).ok());
  CHECK(out.findings.size() == 1);
}

TEST_CASE("plugin ids are validated") {
  CHECK(ValidPluginId("ich"));
  CHECK(ValidPluginId("pe_v2-beta"));
  CHECK_FALSE(ValidPluginId(""));
  CHECK_FALSE(ValidPluginId("../etc"));
  CHECK_FALSE(ValidPluginId("ICH"));
  CHECK_FALSE(ValidPluginId(std::string(65, 'a')));
}

}  // namespace aihub::plugins

namespace aihub::plugins {

TEST_CASE("the plugin author's guide example is the code that is built, and it loads") {
  auto read = [](const std::string& p) {
    std::ifstream in(std::string(AIHUB_SOURCE_DIR) + "/" + p);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string guide = read("plugin_api/README.md");
  const std::string example = read("plugin_api/examples/brightspot.cpp");
  REQUIRE(!example.empty());
  CHECK(guide.find("```cpp\n" + example + "```") != std::string::npos);

  aihub::testing::TempDir cache("cache");
  LoadOptions o;
  o.source = aihub::testing::TestPlugin("brightspot");
  o.cache_dir = cache.path();
  auto p = LoadedPlugin::Load(o);
  REQUIRE_MESSAGE(p.ok(), p.status().ToString());
  CHECK((*p)->info().id == "brightspot");
}

}  // namespace aihub::plugins
