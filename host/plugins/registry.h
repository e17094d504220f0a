// PluginRegistry: the plugins found in plugin_dir, one active version per id, hot-reloaded.
//
// Deploying a version = writing the new .so and renaming it into plugin_dir (or copying over the old file).
// Rescan() notices changed files (by size/mtime/inode, then content hash), loads the new version beside the
// old one, runs its self-test and swaps it in atomically. Jobs that already hold the old LoadedPluginPtr finish
// on it; the old library is unmapped when the last of them ends. A version that fails to load or to self-test
// leaves the old one active and is reported with the reason. Rescans run on a watcher thread (inotify on
// plugin_dir with a polling fallback) and on demand (SIGHUP, admin call).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "plugins/loaded_plugin.h"

namespace aihub::plugins {

// What a rescan did, for logs, audit and tests.
struct ReloadEvent {
  enum class Kind { kLoaded, kReplaced, kRejected, kRemoved };
  Kind kind;
  std::string plugin_id;          // empty when the file could not be read far enough to know it
  std::string version;
  std::string so_sha256;
  std::filesystem::path file;
  std::string reason;             // for kRejected
};
const char* ReloadEventKindName(ReloadEvent::Kind kind);

class PluginRegistry {
 public:
  using ConfigLookup = std::function<std::string(const std::string& plugin_id)>;
  using EventSink = std::function<void(const ReloadEvent&)>;

  // `cache_dir` holds the content-addressed copies (state_dir/plugin-cache).
  PluginRegistry(std::filesystem::path plugin_dir, std::filesystem::path cache_dir, ConfigLookup config_for,
                 EventSink on_event = nullptr);
  ~PluginRegistry();

  // Looks at plugin_dir now; returns the events of this scan.
  std::vector<ReloadEvent> Rescan();

  // Loads the active plugin's file again so a new instance is created with its current config (e.g. after a
  // config reload changed its `config:` block); self-tested and swapped like a new version. Jobs running on the
  // old instance finish on it. NOT_FOUND when no such plugin is active.
  StatusOr<ReloadEvent> Recreate(const std::string& id, const std::string& why);

  // The active version of a plugin, or nullptr.
  LoadedPluginPtr Get(const std::string& id) const;
  // All active versions, ordered by id.
  std::vector<LoadedPluginPtr> Active() const;

  // Starts/stops the watcher thread (inotify + poll every `poll`).
  void StartWatching(std::chrono::milliseconds poll);
  void StopWatching();
  // Asks the watcher for a rescan soon (safe to call from any thread, e.g. a signal-handling thread).
  void RequestRescan();

 private:
  struct FileState {
    uintmax_t size = 0;
    std::filesystem::file_time_type mtime{};
    uintmax_t inode = 0;
    std::string sha256;
    std::string plugin_id;       // id this file provides, or provided before a rejected upgrade ("" if none)
    std::string duplicate_of;    // id this file was refused for because another file provides it
  };
  void WatchLoop(std::chrono::milliseconds poll);
  void Emit(std::vector<ReloadEvent>& events, ReloadEvent e);

  const std::filesystem::path plugin_dir_;
  const std::filesystem::path cache_dir_;
  ConfigLookup config_for_;
  EventSink on_event_;

  std::mutex scan_mutex_;                               // one rescan at a time
  std::map<std::filesystem::path, FileState> files_;    // guarded by scan_mutex_

  mutable std::mutex active_mutex_;
  std::map<std::string, LoadedPluginPtr> active_;       // id -> active version
  std::map<std::string, std::filesystem::path> owner_;  // id -> file that provides it

  std::thread watcher_;
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  int wake_fd_ = -1;                                    // eventfd to interrupt poll()
  int inotify_fd_ = -1;                                 // watch on plugin_dir, or -1 (polling only)
};

}  // namespace aihub::plugins
