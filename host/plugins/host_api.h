// The host side of the plugin ABI: the function table handed to plugins, the objects behind the opaque
// handles (aihub_plugin_context, aihub_job), and the validating result builder.
#pragma once

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "aihub/plugin_api.h"
#include "compose/result.h"
#include "dicom/study.h"

namespace aihub::plugins {

// Bounds on what a plugin may write into one job's result (documented in plugin_api.h).
struct BuilderLimits {
  static constexpr size_t kMaxFindings = 64;
  static constexpr size_t kMaxMeasurementsPerFinding = 32;
  static constexpr size_t kMaxRegionsPerFinding = 16;
  static constexpr size_t kMaxPointsPerRegion = 4096;
  static constexpr size_t kMaxTextChars = 1024;
  static constexpr size_t kMaxSummaryChars = 4096;
};

// What one execute call sees: the study and the series the router matched (and that are usable).
struct JobInput {
  const dicom::Study* study = nullptr;
  std::vector<const dicom::Series*> series;
};

// What the plugin built.
struct JobOutput {
  std::vector<Finding> findings;
  std::string summary;
};

// The host table (static storage, one per process).
const aihub_host_api* HostApi();

}  // namespace aihub::plugins

// Behind the opaque handles. Global namespace, as the C header declares them.
struct aihub_plugin_context {
  std::string plugin_id;
  std::string plugin_directory;            // folder of the deployed .so
  std::string config_json = "{}";
  nlohmann::json config = nlohmann::json::object();
  std::string error;                       // context_set_error
  // Top-level scalar config values as text, filled once at load and read-only after: config_string returns
  // pointers into it, stable until destroy, safe from any thread.
  std::map<std::string, std::string> config_strings;
};

struct aihub_job {
  std::string plugin_id;
  uint32_t plugin_api_minor = 0;           // the minor ABI version the plugin declared: which appended fields it set
  const aihub::plugins::JobInput* input = nullptr;
  aihub::plugins::JobOutput* output = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  std::string error;                       // job_set_error
  std::string builder_error;               // first refused builder call; fails the job
  double progress = 0;
};
