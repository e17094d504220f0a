#include "core/router.h"

namespace aihub::core {

std::optional<std::string> SeriesTagSource::Tag(uint32_t tag) const {
  const std::string* v = dicom::FindTag(tags_, tag);
  if (v == nullptr) return std::nullopt;
  return *v;
}

const config::Rule* Router::DefaultRule(const plugins::PluginInfo& info, std::string* error) {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  auto it = default_rules_.find(info.so_sha256);
  if (it == default_rules_.end()) {
    auto compiled = info.default_rules_yaml.empty()
                        ? StatusOr<config::Rule>(FailedPrecondition("the plugin declares no default rules and the "
                                                                    "site config gives no match:"))
                        : config::Rule::FromYamlText(info.default_rules_yaml, info.id + " default rules");
    it = default_rules_.emplace(info.so_sha256, std::move(compiled)).first;
  }
  if (!it->second.ok()) {
    *error = it->second.status().message();
    return nullptr;
  }
  return &it->second.value();
}

RouteDecision Router::Route(const config::SiteConfig& config, const dicom::Study& study,
                            const StudyContext& context, const std::vector<plugins::LoadedPluginPtr>& active) {
  RouteDecision decision;
  decision.department = config.DepartmentFor(SeriesTagSource(study.tags, context));
  for (const plugins::LoadedPluginPtr& plugin : active) {
    const plugins::PluginInfo& info = plugin->info();
    const config::PluginSettings* settings = config.FindPlugin(info.id);
    if (settings == nullptr) {
      decision.skipped.push_back({info.id, "not enabled in the site config"});
      continue;
    }
    const config::Mode mode = settings->ModeFor(decision.department);
    if (mode == config::Mode::kOff) {
      decision.skipped.push_back({info.id, "mode off for department " + decision.department});
      continue;
    }
    const config::Rule* rule = nullptr;
    std::string error;
    if (settings->match) {
      rule = &*settings->match;
    } else {
      rule = DefaultRule(info, &error);
      if (rule == nullptr) {
        decision.skipped.push_back({info.id, "default rules unusable: " + error});
        continue;
      }
    }
    RoutedJob job{plugin, 0, decision.department, mode, {}};
    for (const dicom::Series& series : study.series) {
      if (rule->Matches(SeriesTagSource(series.tags, context))) job.series_uids.push_back(series.series_instance_uid);
    }
    if (job.series_uids.empty()) {
      decision.skipped.push_back({info.id, "no series matches its rules"});
      continue;
    }
    decision.jobs.push_back(std::move(job));
  }
  return decision;
}

}  // namespace aihub::core
