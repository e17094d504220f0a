#include "core/serve.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "common/log.h"
#include "core/adapter_link.h"
#include "core/analyze.h"
#include "core/folder_sink.h"
#include "core/host.h"
#include "dicom/study.h"

namespace aihub::core {

namespace fs = std::filesystem;

namespace {

// Study folders in the inbox, oldest name first; hidden names are still being copied in.
std::vector<fs::path> InboxFolders(const fs::path& inbox) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(inbox, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] != '.' && it->is_directory(ec)) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

int RunServe(const config::SiteConfig& config, const ServeOptions& options, std::ostream& out) {
  // Signals are taken synchronously by this thread only: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (options.inbox.empty() && config.host.adapters.empty()) {
    out << "error: nothing to serve: give --inbox, or list adapters under host.adapters in the config" << std::endl;
    return 2;
  }
  std::error_code ec;
  if (!options.inbox.empty()) fs::create_directories(options.inbox, ec);
  if (ec) {
    out << "error: cannot create inbox " << options.inbox << ": " << ec.message() << std::endl;
    return 2;
  }
  // Studies from an adapter deliver through it; inbox studies are written to --output.
  auto host_ref = std::make_shared<std::atomic<Host*>>(nullptr);
  auto directory = std::make_shared<AdapterDirectory>();
  DeliveryPlanner files = options.output.empty() ? DeliveryPlanner() : FilePlanner(fs::absolute(options.output));
  DeliveryPlanner planner = AdapterPlanner(
      [host_ref](const std::string& study_uid) {
        Host* h = host_ref->load();
        auto study = h ? h->store().GetStudy(study_uid) : StatusOr<std::optional<store::StudyRecord>>(std::nullopt);
        return study.ok() && study->has_value() ? AdapterOfSource((*study)->source) : std::string();
      },
      files, directory);
  auto opened = Host::Open(config, planner);
  if (!opened.ok()) {
    out << "error: " << opened.status().ToString() << std::endl;
    return 2;
  }
  Host& host = **opened;
  host_ref->store(&host);
  host.registry().StartWatching(std::chrono::milliseconds(config.host.reload_poll_ms));

  std::mutex out_mutex;
  auto say = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(out_mutex);
    out << line << std::endl;
  };
  std::atomic<bool> stop{false};
  std::mutex delivery_mutex;
  std::condition_variable delivery_wake;

  std::thread inbox([&] {
    std::set<fs::path> seen;
    while (!stop && !options.inbox.empty()) {
      for (const fs::path& folder : InboxFolders(options.inbox)) {
        if (!seen.insert(folder).second) continue;
        auto scanned = dicom::ScanDirectory(folder);
        if (!scanned.ok()) {
          say("inbox " + folder.filename().string() + ": " + scanned.status().message());
          continue;
        }
        for (const dicom::RejectedFile& r : scanned->rejected) say("skipped file " + r.path.string() + ": " + r.reason);
        for (dicom::Study& study : scanned->studies) {
          auto shared = std::make_shared<const dicom::Study>(std::move(study));
          host.catalog().Add(shared);
          auto decision = host.runner().Submit(*shared, options.context, fs::absolute(folder).string());
          if (!decision.ok()) {
            say(shared->study_instance_uid + ": not processed: " + decision.status().message());
          } else if (decision->jobs.empty()) {
            say(shared->study_instance_uid + ": no plugin applies (department " + decision->department + ")");
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(options.inbox_poll_ms));
    }
  });

  std::atomic<bool> failed{false};
  auto worker = [&] {
    while (!stop) {
      auto next = host.runner().RunNext();
      if (!next.ok()) {
        LogError("serve", next.status().ToString());
        failed = true;
        stop = true;
        break;
      }
      if (!next->has_value()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      const JobOutcome& o = **next;
      if (o.result) {
        if (o.result->findings.empty()) say(o.study_uid + " " + o.plugin_id + " " + o.result->algorithm.version + ": no findings");
        for (const Finding& f : o.result->findings) say(FindingLine(*o.result, f));
      } else {
        say(o.study_uid + " " + o.plugin_id + ": job failed: " + o.status.ToString());
      }
      delivery_wake.notify_all();
    }
  };
  std::vector<std::thread> workers;
  for (int i = 0; i < std::max(1, config.host.workers); ++i) workers.emplace_back(worker);

  // One delivery thread: files for inbox studies, adapter calls for the rest (in order per link).
  std::thread delivery([&] {
    AdapterDeliverer deliverer(host.store());
    while (!stop) {
      if (auto d = DrainFileOutbox(host.store()); !d.ok()) LogError("serve", d.status().ToString());
      if (auto d = deliverer.DrainOnce(); !d.ok()) LogError("serve", d.status().ToString());
      std::unique_lock<std::mutex> lock(delivery_mutex);
      delivery_wake.wait_for(lock, std::chrono::milliseconds(200));
    }
  });

  std::vector<std::unique_ptr<AdapterSubscriber>> subscribers;
  for (const std::string& endpoint : config.host.adapters) {
    subscribers.push_back(std::make_unique<AdapterSubscriber>(host, endpoint, say, directory));
    subscribers.back()->Start();
  }

  std::string sources = options.inbox.empty() ? std::string() : "inbox " + options.inbox.string();
  for (const std::string& endpoint : config.host.adapters) sources += (sources.empty() ? "" : ", ") + std::string("adapter ") + endpoint;
  say("aihubd serving: " + sources + ", plugins " + config.plugin_dir.string());
  while (!stop) {
    timespec tick{0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGHUP) {
      LogInfo("serve", "SIGHUP: reloading config and rescanning plugins");
      Status st = host.ReloadConfig();
      say(st.ok() ? std::string("config reloaded") : "config reload refused: " + st.message());
      host.registry().RequestRescan();
    } else if (sig == SIGTERM || sig == SIGINT) {
      LogInfo("serve", "stopping");
      stop = true;
    }
  }
  host.runner().Cancel();
  for (auto& s : subscribers) s->Stop();
  for (std::thread& t : workers) t.join();
  inbox.join();
  delivery_wake.notify_all();
  delivery.join();
  if (auto d = DrainFileOutbox(host.store()); !d.ok()) LogError("serve", d.status().ToString());
  host.registry().StopWatching();
  say("aihubd stopped");
  return failed ? 1 : 0;
}

}  // namespace aihub::core
