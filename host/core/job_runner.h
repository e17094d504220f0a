// JobRunner: the scheduler's unit of work. Submit() routes a study and records its jobs durably; RunNext()
// claims one job, runs its plugin on the matched series, composes the result in its three encodings, stores
// it and enqueues its deliveries in the outbox — each step audited.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "compose/result.h"
#include "config/site_config.h"
#include "core/config_holder.h"
#include "core/router.h"
#include "dicom/study.h"
#include "plugins/registry.h"
#include "store/job_store.h"

namespace aihub::core {

// Studies the host can read, by StudyInstanceUID, with the folder they came from so a job resumed after a
// restart can find its files again.
class StudyCatalog {
 public:
  void Add(std::shared_ptr<const dicom::Study> study);
  // Drops a study whose jobs have all ended (a daemon must not keep every study it ever saw).
  void Remove(const std::string& study_uid);
  // The study, re-scanning its recorded source folder when it is not in memory (e.g. after a restart).
  StatusOr<std::shared_ptr<const dicom::Study>> Find(const std::string& study_uid, const std::string& source_hint);

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const dicom::Study>> studies_;
};

// The three encodings of one result, made once.
struct EncodedResult {
  std::string sr;      // DICOM Part 10 bytes
  std::string fhir;    // FHIR R4 transaction Bundle (JSON)
  std::string oru;     // HL7 v2.5.1 ORU^R01
};

// Decides what leaves the hub for a result (outbox items); the governance mode is in result.mode.
using DeliveryPlanner = std::function<std::vector<store::OutboxItem>(const Result&, const EncodedResult&)>;

struct JobOutcome {
  int64_t job_id = 0;
  std::string job_key;
  std::string study_uid;
  std::string plugin_id;
  Status status;                      // OK when the job succeeded
  double execute_seconds = 0;         // time inside the plugin's execute (0 when it did not run)
  std::optional<Result> result;
};

class JobRunner {
 public:
  JobRunner(const ConfigHolder& config, store::JobStore& store, plugins::PluginRegistry& registry,
            StudyCatalog& catalog, DeliveryPlanner planner);

  // Routes the study and creates its jobs (idempotent: a study submitted twice gets its jobs once).
  StatusOr<RouteDecision> Submit(const dicom::Study& study, const StudyContext& context, const std::string& source);

  // Claims and runs one runnable job; nullopt when none is runnable now.
  StatusOr<std::optional<JobOutcome>> RunNext();

  // Asks running plugins to stop (job_is_cancelled returns 1).
  void Cancel() { cancel_ = true; }

 private:
  class LeaseKeeper;
  StatusOr<RouteDecision> SubmitImpl(const dicom::Study& study, const StudyContext& context,
                                     const std::string& source);
  JobOutcome Run(const store::JobRecord& job);
  Status Fail(const store::JobRecord& job, const Status& why, JobOutcome* outcome);
  // A re-run (generation > 1) replaces the latest earlier successful result of the same study and plugin.
  void SetPredecessor(const store::JobRecord& job, Result* result);
  // Drops the study from memory when none of its jobs can run again.
  void ForgetStudyIfDone(const std::string& study_uid);
  // Removes the copies an adapter link fetched into state_dir/studies for a study whose jobs all ended.
  void RemoveFetchedCopies(const std::string& study_uid, int64_t ended_generation);
  static std::string PinKey(const std::string& study_uid, const std::string& plugin_id, const std::string& version);

  const ConfigHolder& config_;
  store::JobStore& store_;
  plugins::PluginRegistry& registry_;
  StudyCatalog& catalog_;
  DeliveryPlanner planner_;
  Router router_;
  std::atomic<bool> cancel_{false};
  // Jobs routed by this process keep the plugin version they were routed to until they end, even if a new
  // version is swapped in meanwhile (shared ownership keeps that library mapped). Keyed by (study, plugin,
  // routed version), known before the job is written, so the pin exists before any worker can claim the job.
  std::mutex pinned_mutex_;
  std::map<std::string, plugins::LoadedPluginPtr> pinned_;
};

// The folder a study's files are in, from its recorded source: the source itself for folder sources, the part
// after the endpoint for "adapter:<endpoint> <folder>".
std::string StudyFolderOfSource(const std::string& source);

// True for succeeded, failed and dead: states a job never leaves.
bool IsTerminal(store::JobState s);

// True for plugin statuses worth another attempt (transient); "not applicable" and invalid output are final.
bool IsRetryable(aihub_status_code code);

// Identity fields copied from the study's tags into results.
StudyIdentity IdentityFromTags(const dicom::TagMap& tags);


}  // namespace aihub::core
