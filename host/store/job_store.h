// Durable job store on SQLite: studies, jobs, results, the delivery outbox and the hash-chained audit log.
//
// One file (state_dir/aihub.db), WAL journal, synchronous=FULL, foreign keys on, schema version kept in the
// `meta` table (key "schema_version") and migrated forward at open, in one transaction. Every mutating call is one transaction: when it returns OK
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
  int64_t generation = 0;                     // part of the job key; bump to re-run a study (late instances)
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
  std::string lease_owner;      // owner of the current / last lease ("<hostname>:<pid>"), "" if never claimed
  std::chrono::system_clock::time_point lease_until{};      // meaningful while running
  std::chrono::system_clock::time_point next_attempt_at{};  // a pending job is claimable from then on
  std::chrono::system_clock::time_point created_at{};
  std::chrono::system_clock::time_point updated_at{};
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
  std::chrono::system_clock::time_point next_attempt_at{};  // ignored by Enqueue (due at once)
};

struct AuditEntry {
  int64_t seq = 0;              // 1, 2, 3, ... without gaps
  std::string ts;               // UTC ISO 8601 with milliseconds
  std::string actor;            // "aihubd", "plugin:ich", "user:alice"
  std::string action;           // "study.received", "job.created", "job.succeeded", "result.stored", ...
  std::string subject;          // e.g. study uid or job key
  std::string detail_json;      // JSON object text
  std::string prev_hash;        // hash of entry seq-1 ("" x64 '0' for the first)
  std::string hash;             // AuditEntryHash(): sha256 over the length-prefixed fields above
};

struct AuditVerification {
  bool ok = true;
  int64_t entries = 0;
  std::vector<std::string> problems;   // "entry 17: hash mismatch (edited?)", "entry 18 missing", ...
  std::vector<int64_t> bad_entries;    // the entry numbers (seq) named in problems, ascending, no duplicates
};

// The schema version this build creates / migrates to.
inline constexpr int kJobStoreSchemaVersion = 1;

class JobStore {
 public:
  // Opens (creating if needed) the database file. `owner` names this process in leases; use DefaultOwner()
  // ("<hostname>:<pid>") so that RecoverInterruptedJobs can tell a dead owner from a live one. "" means
  // DefaultOwner(). A database with a newer schema than this build is refused (FAILED_PRECONDITION).
  static StatusOr<std::unique_ptr<JobStore>> Open(const std::filesystem::path& db_path, std::string owner = "");
  ~JobStore();

  // "<hostname>:<pid>" of the calling process.
  static std::string DefaultOwner();
  const std::string& owner() const;
  int schema_version() const;

  // Studies. Upsert by StudyInstanceUID.
  Status UpsertStudy(const StudyRecord& study);

  // Creates the job unless a job with the same (study, plugin id, plugin version, generation) exists; returns
  // the id either way. Audited ("job.created") in the same transaction.
  StatusOr<int64_t> CreateJob(const NewJob& job);

  // Atomically takes the oldest (lowest id) pending job whose next_attempt_at has come (retries wait there
  // after FailJob), marks it running with a lease owned by owner() until now + lease, increments attempts.
  // nullopt when nothing is runnable. Audited ("job.claimed").
  StatusOr<std::optional<JobRecord>> ClaimJob(std::chrono::seconds lease);
  // Extends the lease of a running job this owner holds to now + lease (long jobs call it periodically).
  Status RenewLease(int64_t job_id, std::chrono::seconds lease);
  // Recovery (at startup, and safe to call periodically): a running job is interrupted when its lease has
  // expired, or its owner "<hostname>:<pid>" is on this host and that pid is gone (or is this process but the
  // lease came from an earlier Open), or its owner equals owner() from an earlier Open. Interrupted jobs go
  // back to pending ("job.recovered"), or to dead ("job.dead") when attempts reached max_attempts, so a
  // plugin that kills the process every time cannot loop forever. Returns how many were handled.
  StatusOr<int> RecoverInterruptedJobs();

  // Finishes a running job this owner holds (else FAILED_PRECONDITION; NOT_FOUND for an unknown id). Stores
  // the result JSON and the SR SOP Instance UID and marks it succeeded in one transaction ("job.succeeded").
  Status CompleteJob(int64_t job_id, const std::string& result_json, const std::string& sr_sop_instance_uid);
  // Records that a running job (held by this store) runs on another plugin version than the one it was routed
  // to (that version was replaced before the job started, or is gone after a restart). Audited "job.repinned";
  // the job key keeps naming the routed version.
  Status RepinJob(int64_t job_id, const std::string& plugin_version, const std::string& model_version,
                  const std::string& so_sha256);
  // Failure of a running job this owner holds: back to pending with backoff (2^attempts s, at most 5 min) when
  // retryable and attempts < max_attempts ("job.failed"), else failed (not retryable, e.g. not applicable /
  // invalid plugin output; "job.failed") or dead (attempts exhausted; "job.dead").
  Status FailJob(int64_t job_id, const std::string& error, bool retryable);

  StatusOr<JobRecord> GetJob(int64_t job_id) const;
  StatusOr<std::vector<JobRecord>> ListJobs(const std::string& study_instance_uid = "") const;
  StatusOr<std::optional<std::string>> GetResult(int64_t job_id) const;

  // Outbox.
  // id/state/attempts/last_error/next_attempt_at ignored; a duplicate idempotency_key is a no-op (OK).
  // job_id 0 means "no job". Audited ("outbox.enqueued").
  Status Enqueue(const OutboxItem& item);
  // Items due for delivery (pending, next attempt time reached), oldest first.
  StatusOr<std::vector<OutboxItem>> DueOutbox(int limit) const;
  StatusOr<OutboxItem> GetOutbox(int64_t outbox_id) const;
  // pending -> delivered ("outbox.delivered"); already delivered: OK, no-op; dead: FAILED_PRECONDITION.
  Status MarkDelivered(int64_t outbox_id);
  // Records a failed attempt of a pending item: retry after 1 s, 2 s, 4 s, ... (at most 10 min;
  // "outbox.failed"), or dead-letter once attempts reach max_attempts ("outbox.dead").
  Status MarkDeliveryFailed(int64_t outbox_id, const std::string& error, int max_attempts = 8);

  // Audit log: appended in its own transaction (or inside the caller's operation where noted above).
  Status Audit(const std::string& actor, const std::string& action, const std::string& subject,
               const std::string& detail_json = "{}");
  StatusOr<std::vector<AuditEntry>> ReadAudit() const;

  // Injected clock for tests (defaults to system_clock): drives leases, backoff and all timestamps.
  void SetClockForTesting(std::function<std::chrono::system_clock::time_point()> now);

 private:
  class Impl;
  explicit JobStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Re-reads the audit table of a database file (opened read-only) and checks the chain: every hash
// recomputes, every prev_hash equals the previous entry's hash, seq has no gaps, and the last entry matches
// the head kept in `meta`. A non-OK status only when the file cannot be read; tampering is reported in the
// verification (ok = false).
StatusOr<AuditVerification> VerifyAudit(const std::filesystem::path& db_path);

// The audit hash: sha256 hex over length-prefixed fields ("<len>:<bytes>" each, after a version tag) of
// prev_hash, seq, ts, actor, action, subject, detail_json, so no two different entries encode the same.
std::string AuditEntryHash(const AuditEntry& entry);

}  // namespace aihub::store
