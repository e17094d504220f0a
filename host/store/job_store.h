// Durable job store on SQLite: studies, jobs, results, the delivery outbox and the hash-chained audit log.
//
// One file (state_dir/aihub.db) plus the audit key file beside it (audit.key), WAL journal, synchronous=FULL, foreign keys on, schema version kept in the
// `meta` table (key "schema_version") and migrated forward at open, in one transaction. Every mutating call is one transaction: when it returns OK
// the change is on disk (this is what "acknowledged" means for the hub). Thread-safe: calls are serialized on
// one connection; use one JobStore per process.
//
// Text columns always hold valid UTF-8: free text (errors, sources, tags, details) is sanitized (bad bytes become
// U+FFFD); identifiers that key rows (study / series UIDs, plugin id and version, idempotency keys) are refused
// with INVALID_ARGUMENT when they are not valid UTF-8. Nothing here throws on untrusted bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace aihub::store {

enum class JobState { kPending, kRunning, kSucceeded, kFailed, kDead };
// "pending", "running", "succeeded", "failed", "dead"
const char* JobStateName(JobState s);

// Names one claim of a job. Every ClaimJob issues a new random token; calls that act on a running job
// (RenewLease, CompleteJob, RepinJob, FailJob) are refused with FAILED_PRECONDITION ("lease lost") unless the
// token is the job's current one, so a worker whose job was recovered and claimed again cannot finish it.
struct JobLease {
  int64_t job_id = 0;
  std::string token;
};

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
  std::string lease_token;      // token of the current / last claim, "" if never claimed
  std::chrono::system_clock::time_point lease_until{};      // meaningful while running
  std::chrono::system_clock::time_point next_attempt_at{};  // a pending job is claimable from then on
  std::chrono::system_clock::time_point created_at{};
  std::chrono::system_clock::time_point updated_at{};

  // The claim this record came from (ClaimJob's result): pass it to CompleteJob / FailJob / RenewLease / RepinJob.
  JobLease lease() const { return JobLease{id, lease_token}; }
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
  std::string hash;             // AuditEntryHash(): HMAC-SHA256 (audit key) over the length-prefixed fields above
};

struct AuditVerification {
  bool ok = true;
  int64_t entries = 0;
  std::vector<std::string> problems;   // "entry 17: hash mismatch (edited?)", "entry 18 missing", ...
  std::vector<int64_t> bad_entries;    // the entry numbers (seq) named in problems, ascending, no duplicates
                                       // (a rewound head names no entry: it shows in problems and ok only)
};

// The schema version this build creates / migrates to. Version 1 is the keyed format: audit hashes are
// HMAC-SHA256 under the audit key, and meta holds audit_head_mac = HMAC over (head seq, head hash), so a
// rewound head is detected. (Nothing with the earlier unkeyed version 1 was deployed, so it was not bumped.)
// Version 2 adds adapter_cursors (where each PacsAdapter subscription resumes).
inline constexpr int kJobStoreSchemaVersion = 2;

// <folder of db_path>/audit.key: where Open and VerifyAudit look for the audit key by default.
std::filesystem::path DefaultAuditKeyPath(const std::filesystem::path& db_path);

class JobStore {
 public:
  // Opens (creating if needed) the database file. `owner` names this process in leases; use DefaultOwner()
  // ("<hostname>:<pid>") so that RecoverInterruptedJobs can tell a dead owner from a live one. "" means
  // DefaultOwner(). A database with a newer schema than this build is refused (FAILED_PRECONDITION).
  //
  // audit_key_path ("" = DefaultAuditKeyPath(db_path)) holds the 32-byte secret that keys the audit chain. Keep
  // it where database writers cannot read it (and in backups apart from the database). When it does not exist
  // and the database has no audit entries yet, it is created (RAND_bytes, mode 0600, fsync'd). Refused with
  // FAILED_PRECONDITION: a key file that exists but cannot be read or is not 32 bytes, and a missing key for a
  // database that already has audit entries (a new key would orphan the existing chain).
  static StatusOr<std::unique_ptr<JobStore>> Open(const std::filesystem::path& db_path, std::string owner = "",
                                                  const std::filesystem::path& audit_key_path = {});
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
  // after FailJob), marks it running with a lease owned by owner() until now + lease and a fresh lease_token,
  // increments attempts. nullopt when nothing is runnable. Audited ("job.claimed").
  // A routing decision in one transaction: the study (upserted), its jobs (each idempotent by key, audited
  // "job.created") and a "study.routed" audit entry whose detail is `routed_detail_json` plus the job ids.
  // Returns the job ids in the order of `jobs`. Nothing of it is stored when any part fails.
  StatusOr<std::vector<int64_t>> RecordRouting(const StudyRecord& study, const std::vector<NewJob>& jobs,
                                               const std::string& routed_detail_json);

  StatusOr<std::optional<JobRecord>> ClaimJob(std::chrono::seconds lease);
  // Extends the lease of the claim `lease` names to now + duration. A job that runs longer than its lease must
  // call this well before lease_until (e.g. every lease/3), or another host may recover and re-run it.
  Status RenewLease(const JobLease& lease, std::chrono::seconds duration);
  // Recovery (at startup, and safe to call periodically). Never touches a job that this JobStore itself
  // claimed (same owner, claimed through this Open): its worker is still in this process. Any other running
  // job is interrupted when its owner "<hostname>:<pid>" is on this host and that pid is gone, or is this
  // process but the claim came from another Open, or its owner equals owner() but the claim came from an
  // earlier Open, or its lease has expired (the rule for owners on other hosts and for live local owners that
  // stopped renewing). Interrupted jobs go back to pending ("job.recovered"), or to dead ("job.dead") when
  // attempts reached max_attempts, so a plugin that kills the process every time cannot loop forever. Returns
  // how many were handled.
  StatusOr<int> RecoverInterruptedJobs();

  // Finishes the running job of claim `lease` (else FAILED_PRECONDITION "lease lost"; NOT_FOUND for an unknown
  // id): stores the result JSON and the SR SOP Instance UID, marks it succeeded ("job.succeeded") and enqueues
  // `deliveries` (job_id set to this job; a duplicate idempotency_key is a no-op; "outbox.enqueued" each), all
  // in one transaction, so a succeeded job never lacks its deliveries.
  Status CompleteJob(const JobLease& lease, const std::string& result_json, const std::string& sr_sop_instance_uid,
                     const std::vector<OutboxItem>& deliveries = {});
  // Records that the running job of claim `lease` runs on another plugin version than the one it was routed
  // to (that version was replaced before the job started, or is gone after a restart). Audited "job.repinned";
  // the job key keeps naming the routed version.
  Status RepinJob(const JobLease& lease, const std::string& plugin_version, const std::string& model_version,
                  const std::string& so_sha256);
  // Failure of the running job of claim `lease`: back to pending with backoff (2^attempts s, at most 5 min)
  // when retryable and attempts < max_attempts ("job.failed"), else failed (not retryable, e.g. not applicable
  // / invalid plugin output; "job.failed") or dead (attempts exhausted; "job.dead"). `error` may hold any
  // bytes (plugin text): invalid UTF-8 is stored as U+FFFD.
  // Puts a running job this claim holds back to pending at once, without counting the attempt (the host is
  // shutting down and asked the plugin to stop: the job did not fail). Audited "job.released".
  Status ReleaseJob(const JobLease& lease, const std::string& reason);
  Status FailJob(const JobLease& lease, const std::string& error, bool retryable);

  // Transitional forms by job id (to be removed once callers pass a JobLease): they accept the job while its
  // current claim was made by this JobStore (this Open), which fences out other hosts and earlier Opens but not
  // a stale worker thread of this same store whose job this store has re-claimed.
  Status RenewLease(int64_t job_id, std::chrono::seconds duration);
  Status CompleteJob(int64_t job_id, const std::string& result_json, const std::string& sr_sop_instance_uid);
  Status CompleteJob(int64_t job_id, const std::string& result_json, const std::string& sr_sop_instance_uid,
                     const std::vector<OutboxItem>& deliveries);
  Status RepinJob(int64_t job_id, const std::string& plugin_version, const std::string& model_version,
                  const std::string& so_sha256);
  Status FailJob(int64_t job_id, const std::string& error, bool retryable);

  StatusOr<JobRecord> GetJob(int64_t job_id) const;
  StatusOr<std::vector<JobRecord>> ListJobs(const std::string& study_instance_uid = "") const;
  // The study as last upserted (where its files are, its tags), or nullopt.
  StatusOr<std::optional<StudyRecord>> GetStudy(const std::string& study_instance_uid) const;
  StatusOr<std::optional<std::string>> GetResult(int64_t job_id) const;

  // Outbox.
  // id/state/attempts/last_error/next_attempt_at ignored; a duplicate idempotency_key is a no-op (OK).
  // job_id 0 means "no job". Audited ("outbox.enqueued").
  Status Enqueue(const OutboxItem& item);
  // Items due for delivery (pending, next attempt time reached), oldest first.
  StatusOr<std::vector<OutboxItem>> DueOutbox(int limit) const;
  // Every pending item, due or not, oldest first: a deliverer that must keep order per destination stops at the
  // first item of a destination that is not due yet.
  StatusOr<std::vector<OutboxItem>> PendingOutbox(int limit) const;
  StatusOr<OutboxItem> GetOutbox(int64_t outbox_id) const;
  // pending -> delivered ("outbox.delivered"); already delivered: OK, no-op; dead: FAILED_PRECONDITION.
  Status MarkDelivered(int64_t outbox_id);
  // Records a failed attempt of a pending item: retry after 1 s, 2 s, 4 s, ... (at most 10 min;
  // "outbox.failed"), or dead-letter once attempts reach max_attempts ("outbox.dead").
  Status MarkDeliveryFailed(int64_t outbox_id, const std::string& error, int max_attempts = 8);

  // Where the subscription to a PacsAdapter resumes: the cursor of the last study event recorded durably (0 when
  // none). SetAdapterCursor never moves a cursor back.
  StatusOr<uint64_t> AdapterCursor(const std::string& adapter) const;
  Status SetAdapterCursor(const std::string& adapter, uint64_t cursor);
  // Records the id of the adapter's event log (AdapterInfo.event_log_id). When it differs from the one recorded
  // before (a reinstalled adapter, a wiped spool: its cursors start again at 1), the cursor goes back to 0,
  // audited "adapter.event_log_changed", and true is returned. First contact records the id and keeps the cursor.
  StatusOr<bool> NoteAdapterEventLog(const std::string& adapter, const std::string& event_log_id);

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

// Re-reads the audit table of a database file (opened read-only) and checks the chain with the audit key
// (audit_key_path "" = DefaultAuditKeyPath(db_path)): every hash recomputes, every prev_hash equals the
// previous entry's hash, seq has no gaps, the last entry matches the head kept in `meta`, and that head carries
// its MAC. A non-OK status only when the file or the key cannot be read: NOT_FOUND for a missing database or
// key file, FAILED_PRECONDITION for an unreadable or wrong-size key; tampering is reported in the verification
// (ok = false). What this cannot catch: an editor without the key rolling the whole database back to an older
// copy of itself (keep the head elsewhere too, e.g. in logs, to catch that).
StatusOr<AuditVerification> VerifyAudit(const std::filesystem::path& db_path,
                                        const std::filesystem::path& audit_key_path = {});

// The audit hash: HMAC-SHA256 hex under `key` over length-prefixed fields ("<len>:<bytes>" each, after a
// version tag) of prev_hash, seq, ts, actor, action, subject, detail_json, so no two different entries encode
// the same and nobody without the key can make a matching hash.
std::string AuditEntryHash(const AuditEntry& entry, std::string_view key);

}  // namespace aihub::store
