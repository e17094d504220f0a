#include "plugins/registry.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/hash.h"
#include "common/log.h"

namespace aihub::plugins {

namespace fs = std::filesystem;

const char* ReloadEventKindName(ReloadEvent::Kind kind) {
  switch (kind) {
    case ReloadEvent::Kind::kLoaded: return "loaded";
    case ReloadEvent::Kind::kReplaced: return "replaced";
    case ReloadEvent::Kind::kRejected: return "rejected";
    case ReloadEvent::Kind::kRemoved: return "removed";
  }
  return "?";
}

PluginRegistry::PluginRegistry(fs::path plugin_dir, fs::path cache_dir, ConfigLookup config_for, EventSink on_event)
    : plugin_dir_(std::move(plugin_dir)),
      cache_dir_(std::move(cache_dir)),
      config_for_(std::move(config_for)),
      on_event_(std::move(on_event)) {}

PluginRegistry::~PluginRegistry() { StopWatching(); }

void PluginRegistry::Emit(std::vector<ReloadEvent>& events, ReloadEvent e) {
  const std::string what = std::string(ReloadEventKindName(e.kind)) + " " + e.file.filename().string() +
                           (e.plugin_id.empty() ? "" : " (" + e.plugin_id + " " + e.version + ")") +
                           (e.reason.empty() ? "" : ": " + e.reason);
  if (e.kind == ReloadEvent::Kind::kRejected) {
    LogError("registry", what);
  } else {
    LogInfo("registry", what);
  }
  if (on_event_) on_event_(e);
  events.push_back(std::move(e));
}

namespace {

// Candidate plugin files: regular *.so files, not hidden (editors and deploy tools write hidden temp files).
std::vector<fs::path> ListCandidates(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.' || p.extension() != ".so") continue;
    if (!it->is_regular_file(ec)) continue;
    out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<ReloadEvent> PluginRegistry::Rescan() {
  std::lock_guard<std::mutex> scan_lock(scan_mutex_);
  std::vector<ReloadEvent> events;
  const std::vector<fs::path> candidates = ListCandidates(plugin_dir_);

  // Files that disappeared: their plugin is no longer offered (running jobs keep their pinned version). A file
  // refused earlier as a duplicate of a retired id is forgotten, so this scan loads it as the id's new owner.
  std::vector<LoadedPluginPtr> retired;  // released after the locks, with the events emitted
  std::vector<ReloadEvent> removed;
  for (auto it = files_.begin(); it != files_.end();) {
    if (std::find(candidates.begin(), candidates.end(), it->first) != candidates.end()) {
      ++it;
      continue;
    }
    const std::string id = it->second.plugin_id;
    if (!id.empty()) {
      std::lock_guard<std::mutex> lock(active_mutex_);
      auto owner = owner_.find(id);
      if (owner != owner_.end() && owner->second == it->first) {
        LoadedPluginPtr old = active_[id];
        retired.push_back(old);
        removed.push_back({ReloadEvent::Kind::kRemoved, id, old ? old->info().version : "", it->second.sha256,
                           it->first, ""});
        active_.erase(id);
        owner_.erase(owner);
      }
    }
    it = files_.erase(it);
  }
  for (const ReloadEvent& e : removed) {
    for (auto it = files_.begin(); it != files_.end();) {
      it = it->second.duplicate_of == e.plugin_id ? files_.erase(it) : std::next(it);
    }
    Emit(events, e);
  }
  retired.clear();

  for (const fs::path& path : candidates) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    std::error_code ec;
    FileState state;
    state.size = static_cast<uintmax_t>(st.st_size);
    state.mtime = fs::last_write_time(path, ec);
    state.inode = st.st_ino;
    auto known = files_.find(path);
    if (known != files_.end() && known->second.size == state.size && known->second.mtime == state.mtime &&
        known->second.inode == state.inode) {
      continue;  // unchanged since the last scan
    }
    // A file keeps the id it provides until a version of it is accepted: a rejected upgrade leaves the old
    // version active and still owned by this file.
    state.plugin_id = known != files_.end() ? known->second.plugin_id : "";
    auto sha = Sha256File(path);
    if (!sha.ok()) {
      files_[path] = state;  // not retried (nor re-reported) until the file changes
      Emit(events, {ReloadEvent::Kind::kRejected, "", "", "", path, "unreadable: " + sha.status().message()});
      continue;
    }
    state.sha256 = *sha;
    if (known != files_.end() && known->second.sha256 == state.sha256) {
      state.duplicate_of = known->second.duplicate_of;
      known->second = state;  // touched, same content
      continue;
    }

    LoadOptions options;
    options.source = path;
    options.cache_dir = cache_dir_;
    options.config_for = config_for_;
    auto loaded = LoadedPlugin::Load(options);
    if (!loaded.ok()) {
      files_[path] = state;  // remember the content so the same broken file is not retried every poll
      Emit(events, {ReloadEvent::Kind::kRejected, "", "", state.sha256, path, loaded.status().message()});
      continue;
    }
    LoadedPluginPtr plugin = std::move(loaded).value();
    const PluginInfo& info = plugin->info();
    {
      std::lock_guard<std::mutex> lock(active_mutex_);
      auto owner = owner_.find(info.id);
      if (owner != owner_.end() && owner->second != path) {
        state.duplicate_of = info.id;
        files_[path] = state;
        Emit(events, {ReloadEvent::Kind::kRejected, info.id, info.version, state.sha256, path,
                      "duplicate plugin id '" + info.id + "': already provided by " +
                          owner->second.filename().string()});
        continue;  // `plugin` is released here: the duplicate is unloaded at once
      }
    }
    if (Status st = plugin->SelfTest(); !st.ok()) {
      files_[path] = state;
      Emit(events, {ReloadEvent::Kind::kRejected, info.id, info.version, state.sha256, path, st.message()});
      continue;
    }
    // Swap. The previous version (if any) is released here; jobs still holding it keep it mapped.
    LoadedPluginPtr previous;
    {
      std::lock_guard<std::mutex> lock(active_mutex_);
      previous = active_[info.id];
      active_[info.id] = plugin;
      owner_[info.id] = path;
    }
    // A file that used to provide another id no longer does.
    if (known != files_.end() && !known->second.plugin_id.empty() && known->second.plugin_id != info.id) {
      std::lock_guard<std::mutex> lock(active_mutex_);
      const std::string old_id = known->second.plugin_id;
      if (owner_[old_id] == path) {
        active_.erase(old_id);
        owner_.erase(old_id);
      }
    }
    state.plugin_id = info.id;
    state.duplicate_of.clear();
    files_[path] = state;
    Emit(events, {previous ? ReloadEvent::Kind::kReplaced : ReloadEvent::Kind::kLoaded, info.id, info.version,
                  info.so_sha256, path, previous ? "was " + previous->info().version : ""});
    previous.reset();
  }
  return events;
}

StatusOr<ReloadEvent> PluginRegistry::Recreate(const std::string& id, const std::string& why) {
  std::lock_guard<std::mutex> scan_lock(scan_mutex_);
  fs::path path;
  {
    std::lock_guard<std::mutex> lock(active_mutex_);
    auto owner = owner_.find(id);
    if (owner == owner_.end()) return NotFound("plugin " + id + " is not active");
    path = owner->second;
  }
  std::vector<ReloadEvent> events;
  LoadOptions options;
  options.source = path;
  options.cache_dir = cache_dir_;
  options.config_for = config_for_;
  auto loaded = LoadedPlugin::Load(options);
  Status st = loaded.ok() ? Status::Ok() : loaded.status();
  if (st.ok() && (*loaded)->info().id != id) st = FailedPrecondition(path.string() + " no longer provides " + id);
  if (st.ok()) st = (*loaded)->SelfTest();
  if (!st.ok()) {
    Emit(events, {ReloadEvent::Kind::kRejected, id, "", "", path, why + ": " + st.message()});
    return events.back();
  }
  LoadedPluginPtr previous;
  {
    std::lock_guard<std::mutex> lock(active_mutex_);
    previous = active_[id];
    active_[id] = *loaded;
  }
  const PluginInfo& info = (*loaded)->info();
  Emit(events, {ReloadEvent::Kind::kReplaced, id, info.version, info.so_sha256, path, why});
  previous.reset();
  return events.back();
}

LoadedPluginPtr PluginRegistry::Get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(active_mutex_);
  auto it = active_.find(id);
  return it == active_.end() ? nullptr : it->second;
}

std::vector<LoadedPluginPtr> PluginRegistry::Active() const {
  std::lock_guard<std::mutex> lock(active_mutex_);
  std::vector<LoadedPluginPtr> out;
  for (const auto& [id, p] : active_) out.push_back(p);
  return out;
}

void PluginRegistry::StartWatching(std::chrono::milliseconds poll) {
  if (watcher_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    stop_ = false;
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }
  // The watch is in place before this returns, so a deploy right after StartWatching is never missed.
  inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_fd_ >= 0 &&
      ::inotify_add_watch(inotify_fd_, plugin_dir_.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM) <
          0) {
    LogWarning("registry", "inotify unavailable on " + plugin_dir_.string() + ", polling only");
    ::close(inotify_fd_);
    inotify_fd_ = -1;
  }
  watcher_ = std::thread([this, poll] { WatchLoop(poll); });
}

void PluginRegistry::StopWatching() {
  if (!watcher_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    stop_ = true;
    const uint64_t one = 1;
    if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
  }
  watcher_.join();
  std::lock_guard<std::mutex> lock(wake_mutex_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  wake_fd_ = inotify_fd_ = -1;
}

void PluginRegistry::RequestRescan() {
  // Under wake_mutex_: StopWatching closes wake_fd_ only after setting stop_ under the same lock.
  std::lock_guard<std::mutex> lock(wake_mutex_);
  const uint64_t one = 1;
  if (!stop_ && wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
}

void PluginRegistry::WatchLoop(std::chrono::milliseconds poll_interval) {
  // inotify tells us about renames into the folder and finished writes at once; the poll interval is the
  // fallback for file systems without inotify (NFS) and for missed events.
  const int in_fd = inotify_fd_;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      if (stop_) break;
    }
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {in_fd, POLLIN, 0}};
    const int n = ::poll(fds, in_fd >= 0 ? 2 : 1, static_cast<int>(poll_interval.count()));
    if (n > 0) {
      char buf[4096];
      if (fds[0].revents & POLLIN) {
        while (::read(wake_fd_, buf, sizeof buf) > 0) {
        }
      }
      if (in_fd >= 0 && (fds[1].revents & POLLIN)) {
        while (::read(in_fd, buf, sizeof buf) > 0) {
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      if (stop_) break;
    }
    Rescan();
  }
}

}  // namespace aihub::plugins
