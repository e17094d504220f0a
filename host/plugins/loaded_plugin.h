// One loaded version of a plugin: the mapped library (a content-addressed copy of the .so), its entry points,
// its descriptor (copied) and one instance. Shared ownership pins a version: jobs hold a LoadedPluginPtr, so
// the library stays mapped until the last job that uses it ends, and is unloaded (dlclose) right after.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "aihub/plugin_api.h"
#include "common/status.h"
#include "plugins/host_api.h"

namespace aihub::plugins {

// Copied descriptor plus where the code came from.
struct PluginInfo {
  std::string id;
  std::string name;
  std::string version;
  std::string model_version;
  std::string manufacturer;
  std::string default_rules_yaml;
  uint64_t capabilities = 0;
  uint32_t api_version_major = 0;
  uint32_t api_version_minor = 0;
  std::string so_sha256;             // content hash of the .so
  std::filesystem::path source_path; // the file in plugin_dir
  std::filesystem::path loaded_path; // the content-addressed copy that is mapped
};

struct LoadOptions {
  std::filesystem::path source;     // .so to load
  std::filesystem::path cache_dir;  // where content-addressed copies go (created if missing)
  std::string config_json = "{}";   // the plugin's config block (JSON object text)
  // Config is only known once the id is: when set, called with the descriptor's id to get config_json.
  std::function<std::string(const std::string& id)> config_for;
};

class LoadedPlugin;
using LoadedPluginPtr = std::shared_ptr<LoadedPlugin>;

class LoadedPlugin {
 public:
  // Hashes and copies the file, maps the copy, checks the ABI version and entry points, creates the instance.
  // Every failure is a Status naming the file and the reason; nothing stays mapped after a failure.
  static StatusOr<LoadedPluginPtr> Load(const LoadOptions& options);
  ~LoadedPlugin();
  LoadedPlugin(const LoadedPlugin&) = delete;
  LoadedPlugin& operator=(const LoadedPlugin&) = delete;

  const PluginInfo& info() const { return info_; }
  bool has_self_test() const;

  // Runs the optional self-test; OK when the plugin has none.
  Status SelfTest();
  // Runs the plugin on one job. Non-OK statuses carry the plugin's own error detail; an OK execute whose
  // builder calls were refused fails with INVALID_ARGUMENT naming the first refused call. Calls are serialized
  // per instance unless the plugin declares AIHUB_CAP_THREAD_SAFE.
  Status Execute(const JobInput& input, JobOutput* output, const std::atomic<bool>* cancel);

 private:
  LoadedPlugin();
  struct Library;
  std::unique_ptr<Library> lib_;
  PluginInfo info_;
  aihub_plugin_context context_;
  aihub_plugin_instance* instance_ = nullptr;
  std::mutex execute_mutex_;
};

// True when `id` is a valid plugin id: [a-z0-9_-], 1..64 chars (it is used in file names).
bool ValidPluginId(const std::string& id);

}  // namespace aihub::plugins
