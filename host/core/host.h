// Host: the parts of aihubd wired together — job store (with startup recovery), plugin registry (audited
// reload events), the active config and the job runner. Used by `analyze` (one pass over a folder) and
// `serve` (a daemon over an inbox folder).
#pragma once

#include <memory>
#include <string>

#include "config/site_config.h"
#include "core/config_holder.h"
#include "core/job_runner.h"
#include "plugins/registry.h"
#include "store/job_store.h"

namespace aihub::core {

class Host {
 public:
  // Creates state_dir, opens the job store, puts interrupted jobs back (a killed host resumes them), loads
  // the plugins. `planner` decides what each result delivers.
  static StatusOr<std::unique_ptr<Host>> Open(config::SiteConfig config, DeliveryPlanner planner);
  ~Host();

  ConfigHolder& config() { return config_; }
  store::JobStore& store() { return *store_; }
  plugins::PluginRegistry& registry() { return *registry_; }
  StudyCatalog& catalog() { return catalog_; }
  JobRunner& runner() { return *runner_; }
  // What the first plugin scan did (loads and rejections with reasons).
  const std::vector<plugins::ReloadEvent>& startup_events() const { return startup_events_; }

  // Re-reads the config file it was opened with. A config with errors is refused and the last good one stays
  // active; the error (FILE:LINE:COLUMN: ...) is returned, logged and audited. state_dir and plugin_dir changes
  // need a restart and are refused too.
  Status ReloadConfig();

 private:
  explicit Host(config::SiteConfig config) : config_(std::move(config)) {}

  ConfigHolder config_;
  std::unique_ptr<store::JobStore> store_;
  std::unique_ptr<plugins::PluginRegistry> registry_;
  StudyCatalog catalog_;
  std::unique_ptr<JobRunner> runner_;
  std::vector<plugins::ReloadEvent> startup_events_;
};

// "<hostname>:<pid>": the lease owner of this process's jobs.
std::string HostOwner();

}  // namespace aihub::core
