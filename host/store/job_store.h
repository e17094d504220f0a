// Durable job store on SQLite: studies, jobs, results, the delivery outbox and the hash-chained audit log.
//
// One file (state_dir/aihub.db), WAL journal, synchronous=FULL, foreign keys on, schema versioned in
// `schema_version` and migrated forward at open. Every mutating call is one transaction: when it returns OK
// the change is on disk (this is what "acknowledged" means for the hub). Thread-safe: calls are serialized on
// one connection; use one JobStore per process.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace aihub::store {

enum class JobState { kPending, kRunning, kSucceeded, kFailed, kDead };
// "pending", "running", "succeeded", "failed", "dead"
const char* JobStateName(JobState s);

struct StudyRecord {
  std::string study_instance_uid;
  std::string source;          // where it came from, e.g. a folder path or "adapter:127.0.0.1:50052"
  std::string tags_json;       // study-level tags (keyword -> value) as a JSON object text
};

// What the router decided: one job per (study, plugin) with the matched series.
struct NewJob {
  std::string study_instance_uid;
  std::string plugin_id;
  std::string plugin_version;
  std::string model_version;
  std::string so_sha256;
  std::string department;
  std::string mode;                           // off | silent | assistive | integrated
  std::vector<std::string> series_uids;       // matched series
  int max_attempts = 3;
};

struct JobRecord {
  int64_t id = 0;
  std::string job_key;          // study uid / plugin id / plugin version / generation: unique, stable
  std::string study_instance_uid;
  std::string plugin_id;
  std::string plugin_version;
  std::string model_version;
  std::string so_sha256;
  std::string department;
  std::string mode;
  std::vector<std::string> series_uids;
  JobState state = JobState::kPending;
  int attempts = 0;             // times the job was claimed
  int max_attempts = 3;
  std::string error;            // last failure reason
  int64_t generation = 0;       // bumped when a study is re-run (late instances)
};

struct OutboxItem {
  int64_t id = 0;
  int64_t job_id = 0;
  std::string kind;             // "sr", "fhir", "hl7", "priority", "alert", "file", ...
  std::string destination;      // where it goes (adapter address, folder, ...)
  std::string idempotency_key;  // unique: a re-enqueue of the same key is a no-op
  std::string payload;          // bytes
  std::string state;            // "pending", "delivered", "dead"
  int attempts = 0;
  std::string last_error;
};

struct AuditEntry {
  int64_t seq = 0;              // 1, 2, 3, ... without gaps
  std::string ts;               // UTC ISO 8601 with milliseconds
  std::string actor;            // "aihubd", "plugin:ich", "user:alice"
  std::string action;           // "study.received", "job.created", "job.succeeded", "result.stored", ...
  std::string subject;          // e.g. study uid or job key
  std::string detail_json;      // JSON object text
  std::string prev_hash;        // hash of entry seq-1 ("" x64 '0' for the first)
  std::string hash;             // sha256(prev_hash | seq | ts | actor | action | subject | detail_json)
};

struct AuditVerification {
  bool ok = true;
  int64_t entries = 0;
  std::vector<std::string> problems;   // "entry 17: hash mismatch (edited?)", "entry 18 missing", ...
};

class JobStore {
 public:
  // Opens (creating if needed) the database file. `owner` names this process in leases (e.g. "host-<pid>").
  static StatusOr<std::unique_ptr<JobStore>> Open(const std::filesystem::path& db_path, std::string owner);
  ~JobStore();

  int schema_version() const;

  // Studies. Upsert by StudyInstanceUID.
  Status UpsertStudy(const StudyRecord& study);

  // Creates the job unless a job with the same (study, plugin id, plugin version, generation) exists; returns
  // the id either way. Audited ("job.created") in the same transaction.
  StatusOr<int64_t> CreateJob(const NewJob& job);

  // Atomically takes the oldest pending job (or a failed one whose retry time has come), marks it running with
  // a lease until now + lease, increments attempts. nullopt when nothing is runnable.
  StatusOr<std::optional<JobRecord>> ClaimJob(std::chrono::seconds lease);
  // Startup recovery: running jobs whose lease expired or whose owner is this store's owner from an earlier
  // process are put back to pending (or dead when attempts reached max_attempts). Returns how many.
  StatusOr<int> RecoverInterruptedJobs();

  // Finishes a running job. Success stores the result JSON and the SR SOP Instance UID in one transaction.
  Status CompleteJob(int64_t job_id, const std::string& result_json, const std::string& sr_sop_instance_uid);
  // Failure: back to pending with backoff when retryable and attempts < max_attempts, else failed (not
  // retryable, e.g. not applicable / invalid plugin output) or dead (attempts exhausted).
  Status FailJob(int64_t job_id, const std::string& error, bool retryable);

  StatusOr<JobRecord> GetJob(int64_t job_id) const;
  StatusOr<std::vector<JobRecord>> ListJobs(const std::string& study_instance_uid = "") const;
  StatusOr<std::optional<std::string>> GetResult(int64_t job_id) const;

  // Outbox.
  Status Enqueue(const OutboxItem& item);   // id/state/attempts ignored; duplicate idempotency_key is a no-op
  // Items due for delivery (pending, next attempt time reached), oldest first.
  StatusOr<std::vector<OutboxItem>> DueOutbox(int limit) const;
  Status MarkDelivered(int64_t outbox_id);
  // Records a failed attempt; schedules a retry with exponential backoff, or dead-letters after max_attempts.
  Status MarkDeliveryFailed(int64_t outbox_id, const std::string& error, int max_attempts = 8);

  // Audit log: appended in its own transaction (or inside the caller's operation where noted above).
  Status Audit(const std::string& actor, const std::string& action, const std::string& subject,
               const std::string& detail_json = "{}");
  StatusOr<std::vector<AuditEntry>> ReadAudit() const;

  // Injected clock for tests (defaults to system_clock).
  void SetClockForTesting(std::function<std::chrono::system_clock::time_point()> now);

 private:
  class Impl;
  explicit JobStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Re-reads the audit table of a database file and checks the chain: every hash recomputes, every prev_hash
// equals the previous entry's hash, seq has no gaps, and the last entry matches the head kept in `meta`.
StatusOr<AuditVerification> VerifyAudit(const std::filesystem::path& db_path);

}  // namespace aihub::store
