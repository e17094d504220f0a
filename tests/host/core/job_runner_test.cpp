#include "core/job_runner.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "../dicom/dicom_test_util.h"
#include "../plugins/test_support.h"
#include "common/hash.h"
#include "compose/result_json.h"

namespace aihub::core {

using aihub::testing::Deploy;
using aihub::testing::TagOnlyStudy;
using aihub::testing::TempDir;
using aihub::testing::TestPlugin;

namespace {

// A host's parts over temp folders, with the given plugin enabled in silent mode.
struct Rig {
  TempDir root{"runner"};
  std::unique_ptr<ConfigHolder> config;
  std::unique_ptr<store::JobStore> store;
  std::unique_ptr<plugins::PluginRegistry> registry;
  StudyCatalog catalog;
  std::vector<store::OutboxItem> planned;
  std::unique_ptr<JobRunner> runner;

  explicit Rig(const std::string& plugin_id, const std::string& plugin_file) {
    std::filesystem::create_directories(root / "plugins");
    Deploy(TestPlugin(plugin_file), root / "plugins" / (plugin_file + ".so"));
    auto c = config::ParseSiteConfig("state_dir: ./var\nplugin_dir: ./plugins\nplugins:\n  - id: " + plugin_id +
                                         "\n    modes: {default: silent}\n",
                                     root.path(), "rig.yaml");
    REQUIRE_MESSAGE(c.ok(), c.status().ToString());
    config = std::make_unique<ConfigHolder>(*c);
    auto s = store::JobStore::Open(root / "var" / "aihub.db", "test:1");
    REQUIRE(s.ok());
    store = std::move(s).value();
    registry = std::make_unique<plugins::PluginRegistry>(root / "plugins", root / "var" / "cache",
                                                         [](const std::string&) { return std::string("{}"); });
    registry->Rescan();
    NewRunner();
  }
  void NewRunner() {  // what a restarted host has: the same store and registry, no in-memory pins
    runner = std::make_unique<JobRunner>(*config, *store, *registry, catalog,
                                         [this](const Result& r, const EncodedResult& e) {
                                           store::OutboxItem item;
                                           item.kind = "test";
                                           item.destination = "nowhere";
                                           item.idempotency_key = r.sr_sop_instance_uid;
                                           item.payload = e.sr;
                                           planned.push_back(item);
                                           return std::vector<store::OutboxItem>{item};
                                         });
  }
  std::vector<std::string> AuditActions() {
    std::vector<std::string> out;
    auto entries = store->ReadAudit();
    REQUIRE(entries.ok());
    for (const auto& e : *entries) out.push_back(e.action + " " + e.detail_json);
    return out;
  }
};

bool Contains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines) {
    if (l.find(needle) != std::string::npos) return true;
  }
  return false;
}

// A two-series study on disk: series 1 is a clean 4-slice volume; series 2 has one slice of another size.
std::shared_ptr<const dicom::Study> WriteTwoSeriesStudy(const std::filesystem::path& dir) {
  using dicom::testing::SliceSpec;
  std::filesystem::create_directories(dir);
  for (int series = 1; series <= 2; ++series) {
    for (int i = 1; i <= 4; ++i) {
      SliceSpec spec;
      spec.series_uid = "1.2.826.0.1.3680043.9.9999.1." + std::to_string(series);
      spec.series_number = series;
      spec.instance_number = i;
      spec.rows = spec.columns = (series == 2 && i == 3) ? 8 : 4;
      spec.position = std::array<double, 3>{0, 0, 5.0 * i};
      dicom::testing::WriteSlice(spec, dir / ("s" + std::to_string(series) + "_" + std::to_string(i) + ".dcm"));
    }
  }
  auto scanned = dicom::ScanDirectory(dir);
  REQUIRE(scanned.ok());
  REQUIRE(scanned->studies.size() == 1);
  return std::make_shared<const dicom::Study>(std::move(scanned->studies[0]));
}

}  // namespace

TEST_CASE("a series with inconsistent geometry is skipped and reported, the job runs on the others") {
  Rig rig("c-minimal", "c_minimal");
  const auto study = WriteTwoSeriesStudy(rig.root / "in");
  REQUIRE(study->series.size() == 2);
  REQUIRE(study->series[0].error.empty());
  REQUIRE_FALSE(study->series[1].error.empty());
  rig.catalog.Add(study);

  auto routed = rig.runner->Submit(*study, {}, (rig.root / "in").string());
  REQUIRE(routed.ok());
  REQUIRE(routed->jobs.size() == 1);
  CHECK(routed->jobs[0].series_uids.size() == 2);  // both match the rules

  auto outcome = rig.runner->RunNext();
  REQUIRE(outcome.ok());
  REQUIRE(outcome->has_value());
  const JobOutcome& o = **outcome;
  REQUIRE_MESSAGE(o.status.ok(), o.status.ToString());
  REQUIRE(o.result.has_value());
  REQUIRE(o.result->sources.size() == 1);
  CHECK(o.result->sources[0].series_instance_uid == "1.2.826.0.1.3680043.9.9999.1.1");
  CHECK(o.result->sources[0].instances.size() == 4);
  CHECK(Contains(rig.AuditActions(), "series.skipped {\"reason\":\"1.2.826.0.1.3680043.9.9999.1.2: "));
  CHECK(rig.planned.size() == 1);
  // The stored result is the one delivered, and it round-trips.
  auto stored = rig.store->GetResult(o.job_id);
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  auto back = compose::ResultFromJson(nlohmann::json::parse(**stored));
  REQUIRE(back.ok());
  CHECK(back->sr_sop_instance_uid == o.result->sr_sop_instance_uid);
  CHECK(back->algorithm.so_sha256 == rig.registry->Get("c-minimal")->info().so_sha256);
  CHECK_FALSE(rig.runner->RunNext()->has_value());
}

TEST_CASE("a job whose every series is unusable fails for good, naming each series") {
  Rig rig("c-minimal", "c_minimal");
  auto study = std::make_shared<dicom::Study>(*WriteTwoSeriesStudy(rig.root / "in"));
  study->series[0].error = "unsupported transfer syntax 1.2.840.10008.1.2.4.90 (JPEG 2000)";
  rig.catalog.Add(study);
  REQUIRE(rig.runner->Submit(*study, {}, "")->jobs.size() == 1);
  auto outcome = rig.runner->RunNext();
  REQUIRE(outcome.ok());
  const JobOutcome& o = **outcome;
  CHECK(o.status.code() == AIHUB_FAILED_PRECONDITION);
  CHECK(o.status.message().find("no usable series") != std::string::npos);
  CHECK(o.status.message().find("JPEG 2000") != std::string::npos);
  auto job = rig.store->GetJob(o.job_id);
  REQUIRE(job.ok());
  CHECK(job->state == store::JobState::kFailed);  // final: retrying cannot help
  CHECK(job->error.find("no usable series") != std::string::npos);
}

TEST_CASE("a routed job keeps its plugin version across a swap, after a restart it is repinned and audited") {
  Rig rig("fixed-work", "fixed_work_v1");
  const std::string plugin_file = (rig.root / "plugins" / "fixed_work_v1.so").string();
  auto study = std::make_shared<const dicom::Study>(TagOnlyStudy());
  rig.catalog.Add(study);

  SUBCASE("pinned in this process") {
    const auto v1_mapped = rig.registry->Get("fixed-work")->info().loaded_path;
    REQUIRE(rig.runner->Submit(*study, {}, "")->jobs.size() == 1);
    Deploy(TestPlugin("fixed_work_v2"), plugin_file);
    rig.registry->Rescan();
    REQUIRE(rig.registry->Get("fixed-work")->info().version == "2.0.0");
    CHECK(aihub::testing::IsMapped(v1_mapped));  // the pending job pins v1
    auto outcome = rig.runner->RunNext();
    REQUIRE(outcome.ok());
    REQUIRE((**outcome).result.has_value());
    CHECK((**outcome).result->algorithm.version == "1.0.0");
    CHECK(rig.store->GetJob((**outcome).job_id)->plugin_version == "1.0.0");
    CHECK_FALSE(aihub::testing::IsMapped(v1_mapped));  // released when the job ended

    // The same study sent again: its v2 route is a new job; the ended v1 job leaves no pin behind.
    rig.catalog.Add(study);
    auto again = rig.runner->Submit(*study, {}, "");
    REQUIRE(again.ok());
    REQUIRE(again->jobs.size() == 1);
    CHECK(again->jobs[0].plugin->info().version == "2.0.0");
    REQUIRE(rig.runner->RunNext()->has_value());
    CHECK_FALSE(aihub::testing::IsMapped(v1_mapped));
  }
  SUBCASE("after a restart") {
    REQUIRE(rig.runner->Submit(*study, {}, "")->jobs.size() == 1);
    Deploy(TestPlugin("fixed_work_v2"), plugin_file);
    rig.registry->Rescan();
    rig.NewRunner();
    auto outcome = rig.runner->RunNext();
    REQUIRE(outcome.ok());
    REQUIRE((**outcome).result.has_value());
    CHECK((**outcome).result->algorithm.version == "2.0.0");
    auto job = rig.store->GetJob((**outcome).job_id);
    CHECK(job->plugin_version == "2.0.0");
    CHECK(job->so_sha256 == rig.registry->Get("fixed-work")->info().so_sha256);
    CHECK(Contains(rig.AuditActions(), "job.repinned"));
  }
}

TEST_CASE("UIDs are checked before they become path components") {
  CHECK(IsValidUid("1.2.840.10008.5.1.4.1.1.2"));
  CHECK(IsValidUid("2.25.329800735698586629295641978511506172918"));
  CHECK_FALSE(IsValidUid(""));
  CHECK_FALSE(IsValidUid("../../etc/passwd"));
  CHECK_FALSE(IsValidUid("1.2..3"));
  CHECK_FALSE(IsValidUid("1.2.3."));
  CHECK_FALSE(IsValidUid("1.2.3;rm -rf"));
  CHECK_FALSE(IsValidUid(std::string(65, '1')));
}

TEST_CASE("a study with an unsafe UID is refused, not routed") {
  Rig rig("fixed-work", "fixed_work_v1");
  dicom::Study study = TagOnlyStudy();
  study.study_instance_uid = "../../tmp/x";
  auto routed = rig.runner->Submit(study, {}, "");
  CHECK(routed.status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(rig.store->ListJobs()->empty());
}

}  // namespace aihub::core
