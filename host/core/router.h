// Router: decides which plugins run on a study, for which department, in which governance mode, on which
// series. Pure function of (config, active plugins, study, transport context); no I/O.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "config/site_config.h"
#include "dicom/study.h"
#include "plugins/loaded_plugin.h"

namespace aihub::core {

// How the study reached the hub; used for department matching.
struct StudyContext {
  std::string calling_ae;    // DICOM calling AE title of the sender ("" when unknown)
  std::string hl7_location;  // PV1-3 assigned patient location of the order ("" when unknown)
  int64_t generation = 0;    // the adapter's completion generation: late instances re-run the study as a new one
};

// A series' tags (study-level tags included) as a rule TagSource.
class SeriesTagSource : public config::TagSource {
 public:
  SeriesTagSource(const dicom::TagMap& tags, const StudyContext& context) : tags_(tags), context_(context) {}
  std::optional<std::string> Tag(uint32_t tag) const override;
  std::string CallingAe() const override { return context_.calling_ae; }
  std::string Hl7Location() const override { return context_.hl7_location; }

 private:
  const dicom::TagMap& tags_;
  const StudyContext& context_;
};

struct RoutedJob {
  plugins::LoadedPluginPtr plugin;
  int64_t job_id = 0;                     // set by JobRunner::Submit once the job is recorded
  std::string department;
  config::Mode mode = config::Mode::kOff;
  std::vector<std::string> series_uids;   // matched series, in study order
};

// Why a plugin was not routed, for the audit log and `analyze` output.
struct RouteSkip {
  std::string plugin_id;
  std::string reason;
};

struct RouteDecision {
  std::string department;
  std::vector<RoutedJob> jobs;
  std::vector<RouteSkip> skipped;
};

class Router {
 public:
  // Plugins are enabled only when the site config lists them (admins enable per department); the config's
  // `match:` replaces the plugin's default rules. Mode `off` for the department means no job. The config is
  // a parameter so a reloaded config applies to the next study without rebuilding the router.
  RouteDecision Route(const config::SiteConfig& config, const dicom::Study& study, const StudyContext& context,
                      const std::vector<plugins::LoadedPluginPtr>& active);

 private:
  // The plugin's own default rules, compiled once per loaded version (keyed by .so sha256).
  const config::Rule* DefaultRule(const plugins::PluginInfo& info, std::string* error);

  std::mutex cache_mutex_;
  std::map<std::string, StatusOr<config::Rule>> default_rules_;
};

}  // namespace aihub::core
