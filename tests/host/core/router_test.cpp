#include "core/router.h"

#include <doctest/doctest.h>

#include "../plugins/test_support.h"

namespace aihub::core {

using aihub::testing::TempDir;
using aihub::testing::TestPlugin;

namespace {

dicom::Series MakeSeries(const std::string& uid, const std::string& modality, const std::string& body_part,
                         const std::string& department) {
  dicom::Series s;
  s.series_instance_uid = uid;
  s.tags[0x0020000E] = uid;
  s.tags[0x00080060] = modality;
  if (!body_part.empty()) s.tags[0x00180015] = body_part;
  if (!department.empty()) s.tags[0x00081040] = department;
  return s;
}

dicom::Study MakeStudy(const std::string& department) {
  dicom::Study study;
  study.study_instance_uid = "1.2.3.4";
  study.series.push_back(MakeSeries("1.2.3.4.1", "CT", "HEAD", department));
  study.series.push_back(MakeSeries("1.2.3.4.2", "CT", "CHEST", department));
  study.series.push_back(MakeSeries("1.2.3.4.3", "SR", "", department));
  study.tags = study.series[0].tags;
  return study;
}

plugins::LoadedPluginPtr Load(const std::string& name, const TempDir& cache) {
  plugins::LoadOptions o;
  o.source = TestPlugin(name);
  o.cache_dir = cache.path();
  auto p = plugins::LoadedPlugin::Load(o);
  REQUIRE_MESSAGE(p.ok(), p.status().ToString());
  return *p;
}

config::SiteConfig Config(const std::string& plugins_yaml) {
  const std::string text =
      "state_dir: ./var\n"
      "plugin_dir: ./plugins\n"
      "departments:\n"
      "  - id: emergency\n"
      "    match: {InstitutionalDepartmentName: EMERGENCY}\n"
      "  - id: stroke\n"
      "    match: {calling_ae: [CT_STROKE1]}\n"
      "plugins:\n" +
      plugins_yaml;
  auto c = config::ParseSiteConfig(text, "/tmp", "router-test.yaml");
  REQUIRE_MESSAGE(c.ok(), c.status().ToString());
  return *c;
}

}  // namespace

TEST_CASE("default rules from the descriptor select the matching series, mode comes from the department") {
  TempDir cache("cache");
  auto fixed = Load("fixed_work_v1", cache);  // default rules {Modality: CT}
  const config::SiteConfig config =
      Config("  - id: fixed-work\n    modes: {emergency: assistive, default: silent}\n");
  Router router;

  RouteDecision d = router.Route(config, MakeStudy("EMERGENCY"), {}, {fixed});
  CHECK(d.department == "emergency");
  REQUIRE(d.jobs.size() == 1);
  CHECK(d.jobs[0].mode == config::Mode::kAssistive);
  CHECK(d.jobs[0].series_uids == std::vector<std::string>{"1.2.3.4.1", "1.2.3.4.2"});

  d = router.Route(config, MakeStudy("RADIOLOGY"), {}, {fixed});
  CHECK(d.department == "default");
  REQUIRE(d.jobs.size() == 1);
  CHECK(d.jobs[0].mode == config::Mode::kSilent);

  d = router.Route(config, MakeStudy("RADIOLOGY"), {"CT_STROKE1", ""}, {fixed});
  CHECK(d.department == "stroke");
  CHECK(d.jobs.at(0).mode == config::Mode::kSilent);  // no stroke mode: default
}

TEST_CASE("a site match replaces the plugin's default rules") {
  TempDir cache("cache");
  auto fixed = Load("fixed_work_v1", cache);
  const config::SiteConfig config = Config(
      "  - id: fixed-work\n    match: {Modality: CT, BodyPartExamined: [HEAD, BRAIN]}\n    modes: {default: "
      "integrated}\n");
  Router router;
  RouteDecision d = router.Route(config, MakeStudy(""), {}, {fixed});
  REQUIRE(d.jobs.size() == 1);
  CHECK(d.jobs[0].series_uids == std::vector<std::string>{"1.2.3.4.1"});
  CHECK(d.jobs[0].mode == config::Mode::kIntegrated);
}

TEST_CASE("plugins that are not enabled, off, or match nothing get no job, with a reason") {
  TempDir cache("cache");
  auto fixed = Load("fixed_work_v1", cache);
  auto cmin = Load("c_minimal", cache);
  auto faulty = Load("faulty", cache);
  const config::SiteConfig config = Config(
      "  - id: fixed-work\n    modes: {emergency: 'off', default: silent}\n"
      "  - id: faulty\n    match: {Modality: MR}\n    modes: {default: silent}\n");
  Router router;
  RouteDecision d = router.Route(config, MakeStudy("EMERGENCY"), {}, {fixed, cmin, faulty});
  CHECK(d.jobs.empty());
  REQUIRE(d.skipped.size() == 3);
  std::map<std::string, std::string> why;
  for (const RouteSkip& s : d.skipped) why[s.plugin_id] = s.reason;
  CHECK(why["fixed-work"] == "mode off for department emergency");
  CHECK(why["c-minimal"] == "not enabled in the site config");
  CHECK(why["faulty"] == "no series matches its rules");
}

}  // namespace aihub::core
