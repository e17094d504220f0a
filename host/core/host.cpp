#include "core/host.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/json_text.h"
#include "common/log.h"

namespace aihub::core {

namespace fs = std::filesystem;

std::string HostOwner() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(::getpid());
}

Host::~Host() {
  if (registry_) registry_->StopWatching();
}

StatusOr<std::unique_ptr<Host>> Host::Open(config::SiteConfig config, DeliveryPlanner planner) {
  std::error_code ec;
  fs::create_directories(config.state_dir, ec);
  if (ec) return Unavailable("cannot create state_dir " + config.state_dir.string() + ": " + ec.message());
  const fs::path state_dir = config.state_dir, plugin_dir = config.plugin_dir;

  std::unique_ptr<Host> host(new Host(std::move(config)));
  auto opened = store::JobStore::Open(state_dir / "aihub.db", HostOwner());
  if (!opened.ok()) return opened.status();
  host->store_ = std::move(opened).value();
  auto recovered = host->store_->RecoverInterruptedJobs();
  if (!recovered.ok()) return recovered.status();
  if (*recovered > 0) LogInfo("host", "resuming " + std::to_string(*recovered) + " interrupted job(s)");

  Host* self = host.get();
  host->registry_ = std::make_unique<plugins::PluginRegistry>(
      plugin_dir, state_dir / "plugin-cache",
      [self](const std::string& id) {
        auto config = self->config_.Get();
        const config::PluginSettings* s = config->FindPlugin(id);
        return s ? s->config_json : std::string("{}");
      },
      [self](const plugins::ReloadEvent& e) {
        nlohmann::json d = {{"file", e.file.string()}, {"version", e.version}, {"sha256", e.so_sha256},
                            {"reason", e.reason}};
        (void)self->store_->Audit("aihubd", std::string("plugin.") + plugins::ReloadEventKindName(e.kind),
                                  e.plugin_id.empty() ? e.file.filename().string() : e.plugin_id, DumpJson(d));
      });
  host->startup_events_ = host->registry_->Rescan();
  if (host->registry_->Active().empty()) LogWarning("host", "no plugins loaded from " + plugin_dir.string());
  host->runner_ = std::make_unique<JobRunner>(host->config_, *host->store_, *host->registry_, host->catalog_,
                                              std::move(planner));
  return host;
}

Status Host::ReloadConfig() {
  auto current = config_.Get();
  if (current->source.empty()) return FailedPrecondition("the embedded default config cannot be reloaded");
  auto next = config::LoadSiteConfig(current->source);
  Status st = next.ok() ? Status::Ok() : next.status();
  if (st.ok() && (next->state_dir != current->state_dir || next->plugin_dir != current->plugin_dir)) {
    st = FailedPrecondition(current->source.string() + ": state_dir and plugin_dir changes need a restart");
  }
  if (!st.ok()) {
    LogError("host", "config reload refused, keeping the last good config: " + st.message());
    (void)store_->Audit("aihubd", "config.reload_refused", current->source.string(),
                        DumpJson(nlohmann::json({{"reason", st.message()}})));
    return st;
  }
  config_.Set(std::move(next).value());
  LogInfo("host", "config reloaded from " + current->source.string());
  if (Status audited = store_->Audit("aihubd", "config.reloaded", current->source.string()); !audited.ok()) {
    return audited;
  }
  // A plugin's config is read when an instance is created: re-create the active plugins whose block changed.
  auto updated = config_.Get();
  for (const plugins::LoadedPluginPtr& p : registry_->Active()) {
    const config::PluginSettings* before = current->FindPlugin(p->info().id);
    const config::PluginSettings* after = updated->FindPlugin(p->info().id);
    const std::string old_json = before ? before->config_json : "{}", new_json = after ? after->config_json : "{}";
    if (old_json != new_json) (void)registry_->Recreate(p->info().id, "config changed");
  }
  return Status::Ok();
}

}  // namespace aihub::core
