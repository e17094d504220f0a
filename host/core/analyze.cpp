#include "core/analyze.h"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "compose/format.h"
#include "compose/result_json.h"
#include "core/folder_sink.h"
#include "core/host.h"
#include "core/job_runner.h"
#include "dicom/study.h"
#include "plugins/registry.h"
#include "store/job_store.h"

namespace aihub::core {

namespace fs = std::filesystem;

namespace {

std::string Number(double v) {
  std::ostringstream s;
  s << std::setprecision(4) << v;
  return s.str();
}

}  // namespace

// "1.2.3 hyperdensity 1.0.0: Intracranial hemorrhage PRESENT p=0.93 CRITICAL left | Volume 12.5 mL"
std::string FindingLine(const Result& r, const Finding& f) {
  // Upper case where a reader's eye must stop: a present finding, a critical urgency.
  auto loud = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  };
  const std::string presence = compose::PresenceName(f.presence);
  const std::string urgency = compose::UrgencyName(f.urgency);
  std::string line = r.study.study_instance_uid + " " + r.algorithm.plugin_id + " " + r.algorithm.version + ": " +
                     f.concept.meaning + " " + (f.presence == Presence::kPresent ? loud(presence) : presence) +
                     " p=" + Number(f.confidence) + " " +
                     (f.urgency == Urgency::kCritical ? loud(urgency) : urgency);
  if (f.laterality != Laterality::kNone) line += std::string(" ") + compose::LateralityName(f.laterality);
  for (const Measurement& m : f.measurements) {
    line += " | " + m.concept.meaning + " " + Number(m.value) + " " + m.unit_ucum;
  }
  return line;
}

DeliveryPlanner FilePlanner(const fs::path& output) {
  return [output](const Result& r, const EncodedResult& e) {
    const fs::path dir = output / r.study.study_instance_uid;  // validated UID (IsValidUid) before routing
    const std::string base = r.algorithm.plugin_id;            // validated plugin id
    std::vector<store::OutboxItem> items;
    for (const auto& [ext, payload] : {std::pair<const char*, const std::string*>{".sr.dcm", &e.sr},
                                       {".fhir.json", &e.fhir},
                                       {".oru.hl7", &e.oru}}) {
      store::OutboxItem item;
      item.kind = "file";
      item.destination = (dir / (base + ext)).string();
      item.idempotency_key = "file:" + item.destination + ":" + r.sr_sop_instance_uid;
      item.payload = *payload;
      items.push_back(std::move(item));
    }
    return items;
  };
}


int RunAnalyze(const config::SiteConfig& config, const AnalyzeOptions& options, std::ostream& out) {
  auto opened = Host::Open(config, FilePlanner(fs::absolute(options.output)));
  if (!opened.ok()) {
    out << "error: " << opened.status().ToString() << "\n";
    return 2;
  }
  Host& host = **opened;
  store::JobStore& store = host.store();
  JobRunner& runner = host.runner();
  for (const plugins::ReloadEvent& e : host.startup_events()) {
    if (e.kind == plugins::ReloadEvent::Kind::kRejected) {
      out << "plugin rejected: " << e.file.filename().string() << ": " << e.reason << "\n";
    }
  }

  auto scanned = dicom::ScanDirectory(options.input);
  if (!scanned.ok()) {
    out << "error: " << scanned.status().ToString() << "\n";
    return 2;
  }
  for (const dicom::RejectedFile& r : scanned->rejected) {
    out << "skipped file " << r.path.string() << ": " << r.reason << "\n";
  }

  bool failed = false;
  std::vector<int64_t> job_ids;  // the jobs this run routed: only they are waited for and reported
  for (dicom::Study& study : scanned->studies) {
    auto shared = std::make_shared<const dicom::Study>(std::move(study));
    const std::string source = fs::absolute(options.input).string();
    host.catalog().Add(shared);
    auto decision = runner.Submit(*shared, options.context, source);
    if (!decision.ok()) {
      out << shared->study_instance_uid << ": not processed: " << decision.status().message() << "\n";
      failed = true;
      continue;
    }
    for (const dicom::Series& s : shared->series) {
      if (!s.error.empty()) out << shared->study_instance_uid << " series " << s.series_instance_uid << ": " << s.error << "\n";
    }
    if (decision->jobs.empty()) {
      out << shared->study_instance_uid << ": no plugin applies (department " << decision->department << ")\n";
    }
    for (const RoutedJob& j : decision->jobs) job_ids.push_back(j.job_id);
  }

  // Workers run jobs until every job of this run has ended; retryable failures come back after their backoff,
  // bounded by job_max_attempts. A job left running with no worker of ours on it is held by another process
  // on the same state_dir: it is reported, not waited for.
  std::atomic<int> busy{0};
  auto unfinished = [&](bool* only_held_elsewhere) {
    *only_held_elsewhere = true;
    int n = 0;
    for (int64_t id : job_ids) {
      auto j = store.GetJob(id);
      if (!j.ok() || IsTerminal(j->state)) continue;
      ++n;
      if (j->state != store::JobState::kRunning) *only_held_elsewhere = false;
    }
    return n;
  };
  std::atomic<bool> store_error{false};
  auto worker = [&]() {
    int idle_rounds = 0;
    for (;;) {
      ++busy;
      auto next = runner.RunNext();
      --busy;
      if (!next.ok()) {
        LogError("analyze", next.status().ToString());
        store_error = true;
        return;
      }
      if (next->has_value()) {
        idle_rounds = 0;
        continue;
      }
      bool held_elsewhere = false;
      if (unfinished(&held_elsewhere) == 0) return;
      if (held_elsewhere && busy == 0 && ++idle_rounds > 10) return;  // ~2 s with nothing of ours running
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, config.host.workers); ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  if (store_error) return 2;

  auto delivered = DrainFileOutbox(store);
  if (!delivered.ok()) {
    out << "error: delivering results: " << delivered.status().ToString() << "\n";
    return 2;
  }

  // Report from the store, so a resumed job and a job that ended in an earlier run read alike.
  for (int64_t id : job_ids) {
    auto j = store.GetJob(id);
    if (!j.ok()) continue;
    const std::string& uid = j->study_instance_uid;
    if (j->state == store::JobState::kSucceeded) {
      auto stored = store.GetResult(id);
      if (!stored.ok() || !stored->has_value()) continue;
      auto result = compose::ResultFromJson(nlohmann::json::parse(**stored, nullptr, false));
      if (!result.ok()) {
        out << uid << " " << j->plugin_id << ": stored result unreadable: " << result.status().message() << "\n";
        failed = true;
        continue;
      }
      if (result->findings.empty()) out << uid << " " << j->plugin_id << " " << j->plugin_version << ": no findings\n";
      for (const Finding& f : result->findings) out << FindingLine(*result, f) << "\n";
    } else if (j->state == store::JobState::kRunning) {
      out << uid << " " << j->plugin_id << " " << j->plugin_version << ": still running in another process ("
          << j->lease_owner << ")\n";
      failed = true;
    } else {
      const bool not_applicable = j->error.rfind("FAILED_PRECONDITION", 0) == 0;
      out << uid << " " << j->plugin_id << " " << j->plugin_version << ": "
          << (not_applicable ? "not applicable" : std::string("job ") + store::JobStateName(j->state)) << ": "
          << j->error << "\n";
      if (!not_applicable) failed = true;
    }
  }
  return failed ? 1 : 0;
}

}  // namespace aihub::core
