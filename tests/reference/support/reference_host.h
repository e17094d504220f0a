// The host's parts (config, job store, registry, job runner) over a temp folder into which chosen files from
// build/plugins are deployed: how the reference plugin tests run a plugin exactly as aihubd does.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/site_config.h"
#include "core/job_runner.h"
#include "dicom/study.h"
#include "host/plugins/test_support.h"
#include "store/job_store.h"

namespace aihub::testing {

struct ReferenceHost {
  TempDir root;
  std::unique_ptr<core::ConfigHolder> config;
  std::unique_ptr<store::JobStore> store;
  std::unique_ptr<plugins::PluginRegistry> registry;
  core::StudyCatalog catalog;
  std::unique_ptr<core::JobRunner> runner;
  std::vector<plugins::ReloadEvent> events;

  // `plugin_id` is enabled (silent, its default rules, 2 threads); `files` (e.g. "ich.pt", "ich.so") are
  // deployed from build/plugins in that order, model first as an admin would.
  ReferenceHost(const std::string& plugin_id, const std::vector<std::string>& files) : root(plugin_id + "-host") {
    const std::string built = std::string(AIHUB_BINARY_DIR) + "/plugins";
    std::filesystem::create_directories(root / "plugins");
    for (const auto& f : files) Deploy(built + "/" + f, root / "plugins" / f);
    auto c = config::ParseSiteConfig("state_dir: ./var\nplugin_dir: ./plugins\nplugins:\n  - id: " + plugin_id +
                                         "\n    modes: {default: silent}\n    config: {threads: 2}\n",
                                     root.path(), "site.yaml");
    REQUIRE_MESSAGE(c.ok(), c.status().ToString());
    config = std::make_unique<core::ConfigHolder>(*c);
    auto s = store::JobStore::Open(root / "var" / "aihub.db", "test:1");
    REQUIRE(s.ok());
    store = std::move(s).value();
    registry = std::make_unique<plugins::PluginRegistry>(
        root / "plugins", root / "var" / "cache", [](const std::string&) { return std::string("{\"threads\": 2}"); });
    events = registry->Rescan();
    runner = std::make_unique<core::JobRunner>(*config, *store, *registry, catalog,
                                               [](const Result&, const core::EncodedResult&) {
                                                 return std::vector<store::OutboxItem>{};
                                               });
  }

  // Scans `dir` (one study; its truth.json removed first: the hub sees only DICOM), submits it, which must route it
  // to exactly one job (the plugin's default rules), and runs that job. `*study` gets the scanned study if asked.
  core::JobOutcome RunStudy(const std::filesystem::path& dir, std::shared_ptr<const dicom::Study>* study = nullptr) {
    std::filesystem::remove(dir / "truth.json");
    auto scanned = dicom::ScanDirectory(dir);
    REQUIRE_MESSAGE(scanned.ok(), scanned.status().ToString());
    REQUIRE(scanned->studies.size() == 1);
    auto scanned_study = std::make_shared<const dicom::Study>(std::move(scanned->studies[0]));
    catalog.Add(scanned_study);
    auto routed = runner->Submit(*scanned_study, {}, dir.string());
    REQUIRE_MESSAGE(routed.ok(), routed.status().ToString());
    REQUIRE(routed->jobs.size() == 1);
    auto outcome = runner->RunNext();
    REQUIRE_MESSAGE(outcome.ok(), outcome.status().ToString());
    REQUIRE(outcome->has_value());
    if (study != nullptr) *study = std::move(scanned_study);
    return std::move(**outcome);
  }

  // Why `file` was refused at load ("" when it was not).
  std::string Rejection(const std::string& file) const {
    for (const auto& e : events) {
      if (e.kind == plugins::ReloadEvent::Kind::kRejected && e.file.filename() == file) return e.reason;
    }
    return "";
  }
};

}  // namespace aihub::testing
