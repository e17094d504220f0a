#include "store/job_store.h"

#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/hash.h"
#include "common/json_text.h"
#include "common/status_macros.h"
#include "store/audit_key.h"
#include "common/utf8.h"
#include "store/sqlite_util.h"

namespace aihub::store {
namespace {

using Clock = std::chrono::system_clock;
using json = nlohmann::json;

const std::string kZeroHash(64, '0');

// Forward-only migrations. Append {2, "..."} to evolve the schema; never edit a step that has shipped.
// Each step runs inside the one IMMEDIATE transaction that Open uses for migration.
struct Migration {
  int version;
  const char* sql;
};
const Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value
);
CREATE TABLE studies (
  study_instance_uid TEXT PRIMARY KEY,
  source             TEXT NOT NULL,
  tags_json          TEXT NOT NULL,
  created_at         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL
);
CREATE TABLE jobs (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,
  job_key            TEXT NOT NULL UNIQUE,
  study_instance_uid TEXT NOT NULL REFERENCES studies(study_instance_uid),
  plugin_id          TEXT NOT NULL,
  plugin_version     TEXT NOT NULL,
  model_version      TEXT NOT NULL,
  so_sha256          TEXT NOT NULL,
  department         TEXT NOT NULL,
  mode               TEXT NOT NULL,
  series_uids        TEXT NOT NULL,
  generation         INTEGER NOT NULL,
  state              TEXT NOT NULL
                     CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'dead')),
  attempts           INTEGER NOT NULL DEFAULT 0,
  max_attempts       INTEGER NOT NULL,
  error              TEXT NOT NULL DEFAULT '',
  lease_owner        TEXT NOT NULL DEFAULT '',
  lease_token        TEXT NOT NULL DEFAULT '',
  lease_until        INTEGER,
  next_attempt_at    INTEGER NOT NULL,
  created_at         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL
);
CREATE INDEX jobs_by_state ON jobs(state, id);
CREATE INDEX jobs_by_study ON jobs(study_instance_uid);
CREATE TABLE results (
  job_id              INTEGER PRIMARY KEY REFERENCES jobs(id),
  result_json         TEXT NOT NULL,
  sr_sop_instance_uid TEXT NOT NULL,
  created_at          INTEGER NOT NULL
);
CREATE TABLE outbox (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id          INTEGER REFERENCES jobs(id),
  kind            TEXT NOT NULL,
  destination     TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  payload         BLOB NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error      TEXT NOT NULL DEFAULT '',
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
);
CREATE INDEX outbox_by_state ON outbox(state, id);
CREATE TABLE audit (
  seq         INTEGER PRIMARY KEY,
  ts          TEXT NOT NULL,
  actor       TEXT NOT NULL,
  action      TEXT NOT NULL,
  subject     TEXT NOT NULL,
  detail_json TEXT NOT NULL,
  prev_hash   TEXT NOT NULL,
  hash        TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
INSERT INTO meta(key, value) VALUES ('audit_head_seq', 0);
INSERT INTO meta(key, value) VALUES ('audit_head_hash', '0000000000000000000000000000000000000000000000000000000000000000');
INSERT INTO meta(key, value) VALUES ('audit_head_mac', '');
)sql"},
    {2, R"sql(
CREATE TABLE adapter_cursors (
  adapter      TEXT PRIMARY KEY,
  cursor       INTEGER NOT NULL,
  event_log_id TEXT NOT NULL DEFAULT '',
  updated_at   INTEGER NOT NULL
);
)sql"},
};
constexpr int kLatestVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kLatestVersion == kJobStoreSchemaVersion, "append a migration when the schema version changes");

constexpr const char* kActor = "aihubd";
constexpr auto kJobBackoffCap = std::chrono::seconds(300);
constexpr auto kOutboxBackoffCap = std::chrono::seconds(600);

int64_t ToMs(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
Clock::time_point FromMs(int64_t ms) {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(ms)));
}

std::string IsoUtc(int64_t ms) {
  int64_t secs = ms / 1000;
  int64_t millis = ms % 1000;
  if (millis < 0) {
    millis += 1000;
    secs -= 1;
  }
  time_t t = static_cast<time_t>(secs);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[96];  // ints can be wide in theory; -Wformat-truncation checks that
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return buf;
}

// 2^exponent seconds, capped.
std::chrono::seconds Backoff(int exponent, std::chrono::seconds cap) {
  if (exponent < 0) exponent = 0;
  if (exponent >= 30) return cap;
  return std::min(std::chrono::seconds(int64_t{1} << exponent), cap);
}

std::optional<JobState> ParseJobState(const std::string& s) {
  static const JobState kAll[] = {JobState::kPending, JobState::kRunning, JobState::kSucceeded, JobState::kFailed,
                                  JobState::kDead};
  for (JobState js : kAll) {
    if (s == JobStateName(js)) return js;
  }
  return std::nullopt;
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

// MAC of the audit head kept in meta: without it, deleting the tail and pointing the head at an earlier
// (validly keyed) entry would go unnoticed.
std::string AuditHeadMac(int64_t seq, const std::string& hash, std::string_view key) {
  return HmacSha256Hex(key, "aihub-audit-head-v1\n" + std::to_string(seq) + "\n" + hash);
}

// "<hostname>:<pid>" -> (hostname, pid); nullopt for any other shape.
std::optional<std::pair<std::string, pid_t>> ParseOwner(const std::string& owner) {
  size_t colon = owner.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= owner.size() || owner.size() - colon > 11) {
    return std::nullopt;
  }
  int64_t pid = 0;
  for (size_t i = colon + 1; i < owner.size(); ++i) {
    if (owner[i] < '0' || owner[i] > '9') return std::nullopt;
    pid = pid * 10 + (owner[i] - '0');
  }
  if (pid <= 0 || pid > 0x7fffffff) return std::nullopt;  // never kill(0) / kill(-1)
  return std::make_pair(owner.substr(0, colon), static_cast<pid_t>(pid));
}

bool IsJsonText(const std::string& text) { return json::accept(text); }

// Identifiers that key rows are refused rather than altered: two different bad UIDs must not collide.
Status CheckIdentifier(const std::string& value, const char* what) {
  if (IsValidUtf8(value)) return Status::Ok();
  return InvalidArgument(std::string(what) + " is not valid UTF-8");
}

#define AIHUB_JOB_COLUMNS                                                                                  \
  "SELECT id, job_key, study_instance_uid, plugin_id, plugin_version, model_version, so_sha256, department, " \
  "mode, series_uids, generation, state, attempts, max_attempts, error, lease_owner, lease_until, "          \
  "next_attempt_at, created_at, updated_at, lease_token FROM jobs "

#define AIHUB_OUTBOX_COLUMNS                                                                           \
  "SELECT id, job_id, kind, destination, idempotency_key, payload, state, attempts, last_error, " \
  "next_attempt_at FROM outbox "

StatusOr<JobRecord> RowToJob(const Stmt& s) {
  JobRecord j;
  j.id = s.Int(0);
  j.job_key = s.Text(1);
  j.study_instance_uid = s.Text(2);
  j.plugin_id = s.Text(3);
  j.plugin_version = s.Text(4);
  j.model_version = s.Text(5);
  j.so_sha256 = s.Text(6);
  j.department = s.Text(7);
  j.mode = s.Text(8);
  json series = json::parse(s.Text(9), nullptr, false);
  if (!series.is_array()) return DataLoss("job " + std::to_string(j.id) + ": series_uids is not a JSON array");
  for (const json& uid : series) {
    if (!uid.is_string()) return DataLoss("job " + std::to_string(j.id) + ": series uid is not a string");
    j.series_uids.push_back(uid.get<std::string>());
  }
  j.generation = s.Int(10);
  std::optional<JobState> state = ParseJobState(s.Text(11));
  if (!state) return DataLoss("job " + std::to_string(j.id) + ": unknown state '" + s.Text(11) + "'");
  j.state = *state;
  j.attempts = static_cast<int>(s.Int(12));
  j.max_attempts = static_cast<int>(s.Int(13));
  j.error = s.Text(14);
  j.lease_owner = s.Text(15);
  if (!s.IsNull(16)) j.lease_until = FromMs(s.Int(16));
  j.next_attempt_at = FromMs(s.Int(17));
  j.created_at = FromMs(s.Int(18));
  j.updated_at = FromMs(s.Int(19));
  j.lease_token = s.Text(20);
  return j;
}

OutboxItem RowToOutbox(const Stmt& s) {
  OutboxItem o;
  o.id = s.Int(0);
  o.job_id = s.IsNull(1) ? 0 : s.Int(1);
  o.kind = s.Text(2);
  o.destination = s.Text(3);
  o.idempotency_key = s.Text(4);
  o.payload = s.Text(5);
  o.state = s.Text(6);
  o.attempts = static_cast<int>(s.Int(7));
  o.last_error = s.Text(8);
  o.next_attempt_at = FromMs(s.Int(9));
  return o;
}


}  // namespace

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kPending:
      return "pending";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kDead:
      return "dead";
  }
  return "unknown";
}

std::string AuditEntryHash(const AuditEntry& e, std::string_view key) {
  std::string buf = "aihub-audit-hmac-v1";
  auto field = [&buf](const std::string& v) {
    buf += '\n';
    buf += std::to_string(v.size());
    buf += ':';
    buf += v;
  };
  field(e.prev_hash);
  field(std::to_string(e.seq));
  field(e.ts);
  field(e.actor);
  field(e.action);
  field(e.subject);
  field(e.detail_json);
  return HmacSha256Hex(key, buf);
}

class JobStore::Impl {
 public:
  std::unique_ptr<Db> db;
  std::string owner;
  std::string open_token;  // distinguishes this Open from earlier ones; prefix of every claim token it issues
  std::string audit_key;   // kAuditKeyBytes of secret
  std::string hostname;
  int schema_version = 0;
  std::mutex mu;          // serializes every call on the one connection
  std::function<Clock::time_point()> now = [] { return Clock::now(); };

  int64_t NowMs() const { return ToMs(now()); }

  // Creates or migrates the schema; a new database gets its initial head MAC here.
  Status Migrate();
  // Audit entries the database holds (0 for a new file), by row count or head, whichever is larger.
  StatusOr<int64_t> CountAuditEntries();
  bool key_created = false;  // this Open wrote a new audit key (the log was empty)
  // Appends one chained entry; the caller holds mu and an open transaction.
  Status AppendAudit(const std::string& actor, const std::string& action, const std::string& subject,
                     const std::string& detail_json);
  StatusOr<JobRecord> ReadJob(int64_t id);
  StatusOr<OutboxItem> ReadOutbox(int64_t id);
  // The job, if it is running under the claim `token` names; nullopt token: under any claim of this Open
  // (the transitional by-id calls).
  // Bodies of UpsertStudy / CreateJob for use inside a caller's transaction (mu held, BEGIN done).
  Status UpsertStudyLocked(const StudyRecord& study);
  StatusOr<int64_t> CreateJobLocked(const NewJob& job);
  StatusOr<JobRecord> HeldJob(int64_t id, const std::optional<std::string>& token);
  // Whether a claim token was issued by this Open.
  bool IssuedHere(const std::string& lease_token) const {
    return lease_token.size() > open_token.size() && lease_token.compare(0, open_token.size(), open_token) == 0 &&
           lease_token[open_token.size()] == '.';
  }
  // Inserts an outbox item unless its key exists; the caller holds mu and an open transaction.
  Status EnqueueLocked(const OutboxItem& item, int64_t job_id);
  Status CompleteJob(int64_t job_id, const std::optional<std::string>& token, const std::string& result_json,
                     const std::string& sr_sop_instance_uid, const std::vector<OutboxItem>& deliveries);
  Status RepinJob(int64_t job_id, const std::optional<std::string>& token, const std::string& plugin_version,
                  const std::string& model_version, const std::string& so_sha256);
  Status FailJob(int64_t job_id, const std::optional<std::string>& token, const std::string& error, bool retryable);
  Status RenewLease(int64_t job_id, const std::optional<std::string>& token, std::chrono::seconds duration);
  // Why a running job counts as interrupted, or nullopt when its owner may still be working on it.
  std::optional<std::string> Interruption(const std::string& lease_owner, const std::string& lease_token,
                                          std::optional<int64_t> lease_until, int64_t now_ms) const;
};

Status JobStore::Impl::Migrate() {
  Transaction txn(*db);
  RETURN_IF_ERROR(txn.Begin());
  int current = 0;
  {
    ASSIGN_OR_RETURN(s, db->Prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"));
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) return Internal("cannot inspect sqlite_master");
    if (s.Int(0) > 0) {
      ASSIGN_OR_RETURN(v, db->Prepare("SELECT value FROM meta WHERE key = 'schema_version'"));
      ASSIGN_OR_RETURN(has, v.Step());
      if (!has) return DataLoss("meta table without schema_version");
      current = static_cast<int>(v.Int(0));
    }
  }
  if (current > kLatestVersion) {
    return FailedPrecondition("database schema version " + std::to_string(current) +
                              " is newer than this build supports (" + std::to_string(kLatestVersion) + ")");
  }
  const bool fresh = current == 0;
  for (const Migration& m : kMigrations) {
    if (m.version <= current) continue;
    RETURN_IF_ERROR(db->Exec(m.sql));
    ASSIGN_OR_RETURN(s, db->Prepare("INSERT INTO meta(key, value) VALUES ('schema_version', ?1) "
                                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
    RETURN_IF_ERROR(s.Bind(1, int64_t{m.version}).Run());
    current = m.version;
  }
  if (fresh || key_created) {
    ASSIGN_OR_RETURN(s, db->Prepare("UPDATE meta SET value = ?1 WHERE key = 'audit_head_mac' AND "
                                    "(SELECT value FROM meta WHERE key = 'audit_head_seq') = 0"));
    RETURN_IF_ERROR(s.Bind(1, AuditHeadMac(0, kZeroHash, audit_key)).Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  schema_version = current;
  return Status::Ok();
}

StatusOr<int64_t> JobStore::Impl::CountAuditEntries() {
  ASSIGN_OR_RETURN(t, db->Prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('audit', 'meta')"));
  ASSIGN_OR_RETURN(has_tables, t.Step());
  if (!has_tables || t.Int(0) < 2) return int64_t{0};
  ASSIGN_OR_RETURN(s, db->Prepare("SELECT max((SELECT count(*) FROM audit), "
                                  "coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'audit_head_seq'), 0))"));
  ASSIGN_OR_RETURN(row, s.Step());
  return row ? s.Int(0) : int64_t{0};
}

Status JobStore::Impl::AppendAudit(const std::string& actor, const std::string& action, const std::string& subject,
                                   const std::string& detail_json) {
  AuditEntry e;
  {
    ASSIGN_OR_RETURN(s, db->Prepare("SELECT (SELECT value FROM meta WHERE key = 'audit_head_seq'), "
                                    "(SELECT value FROM meta WHERE key = 'audit_head_hash')"));
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row || s.IsNull(0) || s.IsNull(1)) return DataLoss("audit head missing from meta");
    e.seq = s.Int(0) + 1;
    e.prev_hash = s.Text(1);
  }
  e.ts = IsoUtc(NowMs());
  // Sanitized before hashing, so the hash covers exactly the text stored.
  e.actor = ReplaceInvalidUtf8(actor);
  e.action = ReplaceInvalidUtf8(action);
  e.subject = ReplaceInvalidUtf8(subject);
  e.detail_json = ReplaceInvalidUtf8(detail_json);
  e.hash = AuditEntryHash(e, audit_key);
  {
    ASSIGN_OR_RETURN(s, db->Prepare("INSERT INTO audit(seq, ts, actor, action, subject, detail_json, prev_hash, "
                                    "hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
    RETURN_IF_ERROR(s.Bind(1, e.seq)
                        .Bind(2, e.ts)
                        .Bind(3, e.actor)
                        .Bind(4, e.action)
                        .Bind(5, e.subject)
                        .Bind(6, e.detail_json)
                        .Bind(7, e.prev_hash)
                        .Bind(8, e.hash)
                        .Run());
  }
  {
    ASSIGN_OR_RETURN(s, db->Prepare("UPDATE meta SET value = ?1 WHERE key = 'audit_head_seq'"));
    RETURN_IF_ERROR(s.Bind(1, e.seq).Run());
  }
  {
    ASSIGN_OR_RETURN(s, db->Prepare("UPDATE meta SET value = ?1 WHERE key = 'audit_head_hash'"));
    RETURN_IF_ERROR(s.Bind(1, e.hash).Run());
  }
  {
    ASSIGN_OR_RETURN(s, db->Prepare("UPDATE meta SET value = ?1 WHERE key = 'audit_head_mac'"));
    RETURN_IF_ERROR(s.Bind(1, AuditHeadMac(e.seq, e.hash, audit_key)).Run());
  }
  return Status::Ok();
}

StatusOr<JobRecord> JobStore::Impl::ReadJob(int64_t id) {
  ASSIGN_OR_RETURN(s, db->Prepare(AIHUB_JOB_COLUMNS "WHERE id = ?1"));
  s.Bind(1, id);
  ASSIGN_OR_RETURN(row, s.Step());
  if (!row) return NotFound("job " + std::to_string(id) + " not found");
  return RowToJob(s);
}

StatusOr<OutboxItem> JobStore::Impl::ReadOutbox(int64_t id) {
  ASSIGN_OR_RETURN(s, db->Prepare(AIHUB_OUTBOX_COLUMNS "WHERE id = ?1"));
  s.Bind(1, id);
  ASSIGN_OR_RETURN(row, s.Step());
  if (!row) return NotFound("outbox item " + std::to_string(id) + " not found");
  return RowToOutbox(s);
}

StatusOr<JobRecord> JobStore::Impl::HeldJob(int64_t id, const std::optional<std::string>& token) {
  if (token && token->empty()) return InvalidArgument("job " + std::to_string(id) + ": empty lease token");
  ASSIGN_OR_RETURN(job, ReadJob(id));
  const std::string prefix = "job " + std::to_string(id) + ": lease lost: ";
  if (job.state != JobState::kRunning) {
    return FailedPrecondition(prefix + "the job is " + JobStateName(job.state) + ", not running");
  }
  const bool held = token ? job.lease_token == *token : job.lease_owner == owner && IssuedHere(job.lease_token);
  if (!held) {
    return FailedPrecondition(prefix + "it now runs under another claim (owner " + job.lease_owner +
                              ", attempt " + std::to_string(job.attempts) + ")");
  }
  return job;
}

std::optional<std::string> JobStore::Impl::Interruption(const std::string& lease_owner,
                                                        const std::string& lease_token,
                                                        std::optional<int64_t> lease_until, int64_t now_ms) const {
  // This very store's claim: its worker runs in this process and renews or finishes it; an expired lease here
  // means a slow job, not a lost one.
  if (lease_owner == owner && IssuedHere(lease_token)) return std::nullopt;
  if (auto parsed = ParseOwner(lease_owner); parsed && parsed->first == hostname) {
    if (parsed->second == getpid()) return std::string("owner is this process, lease from another open");
    // EPERM means the pid exists under another user: alive. A zombie still answers; it must be reaped.
    if (kill(parsed->second, 0) != 0 && errno == ESRCH) {
      return "owner process " + std::to_string(parsed->second) + " is gone";
    }
  }
  if (lease_owner == owner) return std::string("lease from an earlier open of this owner");
  // Owners on other hosts, and live local ones that stopped renewing: only the lease can tell.
  if (!lease_until || *lease_until <= now_ms) return std::string("lease expired");
  return std::nullopt;
}

JobStore::JobStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JobStore::~JobStore() = default;

std::string JobStore::DefaultOwner() { return Hostname() + ":" + std::to_string(getpid()); }

StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::filesystem::path& db_path, std::string owner,
                                                   const std::filesystem::path& audit_key_path) {
  if (db_path.empty()) return InvalidArgument("job store path is empty");
  if (db_path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(db_path.parent_path(), ec);
    if (ec) return Unavailable("cannot create " + db_path.parent_path().string() + ": " + ec.message());
  }
  auto impl = std::make_unique<Impl>();
  impl->owner = owner.empty() ? DefaultOwner() : std::move(owner);
  impl->open_token = RandomHex(8);
  if (impl->open_token.empty()) return Internal("RAND_bytes failed");
  impl->hostname = Hostname();
  ASSIGN_OR_RETURN(db, Db::Open(db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  impl->db = std::move(db);
  // Writers wait for each other (BEGIN IMMEDIATE) instead of failing at once.
  sqlite3_busy_timeout(impl->db->handle(), 10000);
  {
    ASSIGN_OR_RETURN(s, impl->db->Prepare("PRAGMA journal_mode=WAL"));
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row || s.Text(0) != "wal") return Unavailable("cannot switch " + db_path.string() + " to WAL journal mode");
  }
  RETURN_IF_ERROR(impl->db->Exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
  const std::filesystem::path key_path = audit_key_path.empty() ? DefaultAuditKeyPath(db_path) : audit_key_path;
  auto key = ReadAuditKey(key_path);
  if (!key.ok() && key.status().code() == AIHUB_NOT_FOUND) {
    // Only a log with no entries may get a new key; otherwise the existing chain could never verify again.
    ASSIGN_OR_RETURN(entries, impl->CountAuditEntries());
    if (entries > 0) {
      return FailedPrecondition("audit key " + key_path.string() + " is missing but " + db_path.string() +
                                " already holds " + std::to_string(entries) +
                                " audit entries; restore the key file (a new key would orphan the audit chain)");
    }
    key = CreateAuditKey(key_path, &impl->key_created);
  }
  if (!key.ok()) return key.status();
  impl->audit_key = std::move(key).value();
  RETURN_IF_ERROR(impl->Migrate());
  return std::unique_ptr<JobStore>(new JobStore(std::move(impl)));
}

const std::string& JobStore::owner() const { return impl_->owner; }
int JobStore::schema_version() const { return impl_->schema_version; }

void JobStore::SetClockForTesting(std::function<std::chrono::system_clock::time_point()> now) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->now = now ? std::move(now) : [] { return Clock::now(); };
}

Status JobStore::Impl::UpsertStudyLocked(const StudyRecord& study) {
  if (study.study_instance_uid.empty()) return InvalidArgument("study without StudyInstanceUID");
  RETURN_IF_ERROR(CheckIdentifier(study.study_instance_uid, "StudyInstanceUID"));
  // Tag values come from DICOM files and may be in any character set: keep them, minus the invalid bytes.
  const std::string tags = study.tags_json.empty() ? "{}" : ReplaceInvalidUtf8(study.tags_json);
  if (!json::parse(tags, nullptr, false).is_object()) return InvalidArgument("study tags_json is not a JSON object");
  const int64_t now = NowMs();
  ASSIGN_OR_RETURN(s, db->Prepare(
                          "INSERT INTO studies(study_instance_uid, source, tags_json, created_at, updated_at) "
                          "VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(study_instance_uid) DO UPDATE SET "
                          "source = excluded.source, tags_json = excluded.tags_json, updated_at = excluded.updated_at"));
  return s.Bind(1, study.study_instance_uid).Bind(2, study.source).Bind(3, tags).Bind(4, now).Run();
}

Status JobStore::UpsertStudy(const StudyRecord& study) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Transaction txn(*impl_->db);
  RETURN_IF_ERROR(txn.Begin());
  RETURN_IF_ERROR(impl_->UpsertStudyLocked(study));
  return txn.Commit();
}

StatusOr<std::optional<StudyRecord>> JobStore::GetStudy(const std::string& study_instance_uid) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("SELECT source, tags_json FROM studies WHERE study_instance_uid = ?1"));
  s.Bind(1, study_instance_uid);
  ASSIGN_OR_RETURN(row, s.Step());
  if (!row) return std::optional<StudyRecord>();
  return std::optional<StudyRecord>(StudyRecord{study_instance_uid, s.Text(0), s.Text(1)});
}

StatusOr<int64_t> JobStore::Impl::CreateJobLocked(const NewJob& job) {
  if (job.study_instance_uid.empty() || job.plugin_id.empty() || job.plugin_version.empty()) {
    return InvalidArgument("job needs a study uid, a plugin id and a plugin version");
  }
  if (job.max_attempts < 1) return InvalidArgument("max_attempts must be at least 1");
  if (job.generation < 0) return InvalidArgument("generation must not be negative");
  RETURN_IF_ERROR(CheckIdentifier(job.study_instance_uid, "StudyInstanceUID"));
  RETURN_IF_ERROR(CheckIdentifier(job.plugin_id, "plugin id"));
  RETURN_IF_ERROR(CheckIdentifier(job.plugin_version, "plugin version"));
  for (size_t i = 0; i < job.series_uids.size(); ++i) {
    RETURN_IF_ERROR(CheckIdentifier(job.series_uids[i], ("series uid #" + std::to_string(i + 1)).c_str()));
  }
  // Free text: stored (and audited) sanitized, so the audit detail matches the row.
  const std::string model_version = ReplaceInvalidUtf8(job.model_version);
  const std::string so_sha256 = ReplaceInvalidUtf8(job.so_sha256);
  const std::string department = ReplaceInvalidUtf8(job.department);
  const std::string mode = ReplaceInvalidUtf8(job.mode);
  const std::string key = job.study_instance_uid + "/" + job.plugin_id + "/" + job.plugin_version + "/g" +
                          std::to_string(job.generation);
  Db& db = *this->db;
  {
    ASSIGN_OR_RETURN(s, db.Prepare("SELECT id FROM jobs WHERE job_key = ?1"));
    s.Bind(1, key);
    ASSIGN_OR_RETURN(row, s.Step());
    if (row) return s.Int(0);  // idempotent: the router may re-route the same study
  }
  const int64_t now = NowMs();
  {
    // Jobs reference their study; a caller that skipped UpsertStudy gets a bare study row.
    ASSIGN_OR_RETURN(s, db.Prepare("INSERT OR IGNORE INTO studies(study_instance_uid, source, tags_json, "
                                   "created_at, updated_at) VALUES (?1, '', '{}', ?2, ?2)"));
    RETURN_IF_ERROR(s.Bind(1, job.study_instance_uid).Bind(2, now).Run());
  }
  const std::string series = DumpJson(json(job.series_uids));
  {
    ASSIGN_OR_RETURN(s, db.Prepare("INSERT INTO jobs(job_key, study_instance_uid, plugin_id, plugin_version, "
                                   "model_version, so_sha256, department, mode, series_uids, generation, state, "
                                   "attempts, max_attempts, next_attempt_at, created_at, updated_at) VALUES "
                                   "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', 0, ?11, ?12, ?12, ?12)"));
    RETURN_IF_ERROR(s.Bind(1, key)
                        .Bind(2, job.study_instance_uid)
                        .Bind(3, job.plugin_id)
                        .Bind(4, job.plugin_version)
                        .Bind(5, model_version)
                        .Bind(6, so_sha256)
                        .Bind(7, department)
                        .Bind(8, mode)
                        .Bind(9, series)
                        .Bind(10, job.generation)
                        .Bind(11, int64_t{job.max_attempts})
                        .Bind(12, now)
                        .Run());
  }
  const int64_t id = sqlite3_last_insert_rowid(db.handle());
  json detail = {{"job_id", id},
                 {"study_instance_uid", job.study_instance_uid},
                 {"plugin_id", job.plugin_id},
                 {"plugin_version", job.plugin_version},
                 {"model_version", model_version},
                 {"so_sha256", so_sha256},
                 {"department", department},
                 {"mode", mode},
                 {"series_uids", job.series_uids},
                 {"generation", job.generation}};
  RETURN_IF_ERROR(AppendAudit(kActor, "job.created", key, DumpJson(detail)));
  return id;
}

StatusOr<int64_t> JobStore::CreateJob(const NewJob& job) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Transaction txn(*impl_->db);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(id, impl_->CreateJobLocked(job));
  RETURN_IF_ERROR(txn.Commit());
  return id;
}

StatusOr<std::vector<int64_t>> JobStore::RecordRouting(const StudyRecord& study, const std::vector<NewJob>& jobs,
                                                       const std::string& routed_detail_json) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Transaction txn(*impl_->db);
  RETURN_IF_ERROR(txn.Begin());
  RETURN_IF_ERROR(impl_->UpsertStudyLocked(study));
  std::vector<int64_t> ids;
  for (const NewJob& job : jobs) {
    if (job.study_instance_uid != study.study_instance_uid) return InvalidArgument("job for another study");
    ASSIGN_OR_RETURN(id, impl_->CreateJobLocked(job));
    ids.push_back(id);
  }
  json detail = json::parse(ReplaceInvalidUtf8(routed_detail_json.empty() ? "{}" : routed_detail_json), nullptr, false);
  if (!detail.is_object()) return InvalidArgument("routing detail is not a JSON object");
  detail["job_ids"] = ids;
  RETURN_IF_ERROR(impl_->AppendAudit(kActor, "study.routed", study.study_instance_uid, DumpJson(detail)));
  RETURN_IF_ERROR(txn.Commit());
  return ids;
}



StatusOr<std::optional<JobRecord>> JobStore::ClaimJob(std::chrono::seconds lease) {
  if (lease.count() <= 0) return InvalidArgument("lease must be positive");
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  Transaction txn(db);
  RETURN_IF_ERROR(txn.Begin());
  const int64_t now = impl_->NowMs();
  int64_t id = 0;
  {
    ASSIGN_OR_RETURN(s, db.Prepare("SELECT id FROM jobs WHERE state = 'pending' AND next_attempt_at <= ?1 "
                                   "ORDER BY id LIMIT 1"));
    s.Bind(1, now);
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) {
      RETURN_IF_ERROR(txn.Commit());
      return std::optional<JobRecord>();
    }
    id = s.Int(0);
  }
  // "<open token>.<random>": unique per claim, and tells recovery which Open made it.
  const std::string claim = RandomHex(16);
  if (claim.empty()) return Internal("RAND_bytes failed to make a lease token");
  const std::string token = impl_->open_token + "." + claim;
  const int64_t until = now + std::chrono::duration_cast<std::chrono::milliseconds>(lease).count();
  {
    ASSIGN_OR_RETURN(s, db.Prepare("UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2, "
                                   "lease_token = ?3, lease_until = ?4, updated_at = ?5 WHERE id = ?1"));
    RETURN_IF_ERROR(s.Bind(1, id).Bind(2, impl_->owner).Bind(3, token).Bind(4, until).Bind(5, now).Run());
  }
  ASSIGN_OR_RETURN(job, impl_->ReadJob(id));
  json detail = {{"job_id", id}, {"owner", impl_->owner}, {"attempt", job.attempts}, {"lease_until", IsoUtc(until)}};
  RETURN_IF_ERROR(impl_->AppendAudit(kActor, "job.claimed", job.job_key, DumpJson(detail)));
  RETURN_IF_ERROR(txn.Commit());
  return std::optional<JobRecord>(std::move(job));
}

Status JobStore::Impl::RenewLease(int64_t job_id, const std::optional<std::string>& token,
                                  std::chrono::seconds duration) {
  if (duration.count() <= 0) return InvalidArgument("lease must be positive");
  std::lock_guard<std::mutex> lock(mu);
  Transaction txn(*db);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(job, HeldJob(job_id, token));
  const int64_t now = NowMs();
  const int64_t until = now + std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
  ASSIGN_OR_RETURN(s, db->Prepare("UPDATE jobs SET lease_until = ?2, updated_at = ?3 WHERE id = ?1"));
  RETURN_IF_ERROR(s.Bind(1, job_id).Bind(2, until).Bind(3, now).Run());
  return txn.Commit();
}

Status JobStore::RenewLease(const JobLease& lease, std::chrono::seconds duration) {
  return impl_->RenewLease(lease.job_id, lease.token, duration);
}
Status JobStore::RenewLease(int64_t job_id, std::chrono::seconds duration) {
  return impl_->RenewLease(job_id, std::nullopt, duration);
}

StatusOr<int> JobStore::RecoverInterruptedJobs() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  Transaction txn(db);
  RETURN_IF_ERROR(txn.Begin());
  const int64_t now = impl_->NowMs();
  struct Running {
    int64_t id;
    std::string key;
    std::string owner;
    std::string token;
    std::optional<int64_t> until;
    int attempts;
    int max_attempts;
  };
  std::vector<Running> running;
  {
    ASSIGN_OR_RETURN(s, db.Prepare("SELECT id, job_key, lease_owner, lease_token, lease_until, attempts, "
                                   "max_attempts FROM jobs WHERE state = 'running' ORDER BY id"));
    for (;;) {
      ASSIGN_OR_RETURN(row, s.Step());
      if (!row) break;
      running.push_back({s.Int(0), s.Text(1), s.Text(2), s.Text(3),
                         s.IsNull(4) ? std::nullopt : std::optional<int64_t>(s.Int(4)), static_cast<int>(s.Int(5)),
                         static_cast<int>(s.Int(6))});
    }
  }
  int handled = 0;
  for (const Running& r : running) {
    std::optional<std::string> why = impl_->Interruption(r.owner, r.token, r.until, now);
    if (!why) continue;
    const bool dead = r.attempts >= r.max_attempts;
    const std::string error = "interrupted: " + *why;
    ASSIGN_OR_RETURN(s, db.Prepare("UPDATE jobs SET state = ?2, error = ?3, lease_until = NULL, "
                                   "next_attempt_at = ?4, updated_at = ?4 WHERE id = ?1"));
    RETURN_IF_ERROR(s.Bind(1, r.id).Bind(2, std::string(dead ? "dead" : "pending")).Bind(3, error).Bind(4, now).Run());
    json detail = {{"job_id", r.id},           {"reason", *why},           {"previous_owner", r.owner},
                   {"attempts", r.attempts},   {"max_attempts", r.max_attempts}};
    RETURN_IF_ERROR(impl_->AppendAudit(kActor, dead ? "job.dead" : "job.recovered", r.key, DumpJson(detail)));
    ++handled;
  }
  RETURN_IF_ERROR(txn.Commit());
  return handled;
}

Status JobStore::Impl::CompleteJob(int64_t job_id, const std::optional<std::string>& token,
                                   const std::string& result_json_in, const std::string& sr_sop_instance_uid,
                                   const std::vector<OutboxItem>& deliveries) {
  const std::string result_json = ReplaceInvalidUtf8(result_json_in);
  if (!IsJsonText(result_json)) return InvalidArgument("result_json is not JSON");
  RETURN_IF_ERROR(CheckIdentifier(sr_sop_instance_uid, "SR SOP Instance UID"));
  for (const OutboxItem& item : deliveries) {
    if (item.idempotency_key.empty()) return InvalidArgument("delivery without idempotency_key");
    if (item.kind.empty()) return InvalidArgument("delivery without kind");
    RETURN_IF_ERROR(CheckIdentifier(item.idempotency_key, "delivery idempotency_key"));
  }
  std::lock_guard<std::mutex> lock(mu);
  Transaction txn(*db);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(job, HeldJob(job_id, token));
  const int64_t now = NowMs();
  {
    ASSIGN_OR_RETURN(s, db->Prepare("INSERT INTO results(job_id, result_json, sr_sop_instance_uid, created_at) "
                                    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(job_id) DO UPDATE SET "
                                    "result_json = excluded.result_json, "
                                    "sr_sop_instance_uid = excluded.sr_sop_instance_uid, created_at = excluded.created_at"));
    RETURN_IF_ERROR(s.Bind(1, job_id).Bind(2, result_json).Bind(3, sr_sop_instance_uid).Bind(4, now).Run());
  }
  {
    ASSIGN_OR_RETURN(s, db->Prepare("UPDATE jobs SET state = 'succeeded', error = '', lease_until = NULL, "
                                    "updated_at = ?2 WHERE id = ?1"));
    RETURN_IF_ERROR(s.Bind(1, job_id).Bind(2, now).Run());
  }
  json detail = {{"job_id", job_id},
                 {"sr_sop_instance_uid", sr_sop_instance_uid},
                 {"attempts", job.attempts},
                 {"deliveries", deliveries.size()}};
  RETURN_IF_ERROR(AppendAudit(kActor, "job.succeeded", job.job_key, DumpJson(detail)));
  for (const OutboxItem& item : deliveries) RETURN_IF_ERROR(EnqueueLocked(item, job_id));
  return txn.Commit();
}

Status JobStore::CompleteJob(const JobLease& lease, const std::string& result_json,
                             const std::string& sr_sop_instance_uid, const std::vector<OutboxItem>& deliveries) {
  return impl_->CompleteJob(lease.job_id, lease.token, result_json, sr_sop_instance_uid, deliveries);
}
Status JobStore::CompleteJob(int64_t job_id, const std::string& result_json, const std::string& sr_sop_instance_uid) {
  return impl_->CompleteJob(job_id, std::nullopt, result_json, sr_sop_instance_uid, {});
}
Status JobStore::CompleteJob(int64_t job_id, const std::string& result_json, const std::string& sr_sop_instance_uid,
                             const std::vector<OutboxItem>& deliveries) {
  return impl_->CompleteJob(job_id, std::nullopt, result_json, sr_sop_instance_uid, deliveries);
}

Status JobStore::Impl::RepinJob(int64_t job_id, const std::optional<std::string>& token,
                                const std::string& plugin_version_in, const std::string& model_version_in,
                                const std::string& so_sha256_in) {
  const std::string plugin_version = ReplaceInvalidUtf8(plugin_version_in);
  const std::string model_version = ReplaceInvalidUtf8(model_version_in);
  const std::string so_sha256 = ReplaceInvalidUtf8(so_sha256_in);
  std::lock_guard<std::mutex> lock(mu);
  Transaction txn(*db);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(job, HeldJob(job_id, token));
  if (job.so_sha256 == so_sha256) return Status::Ok();
  {
    ASSIGN_OR_RETURN(s, db->Prepare("UPDATE jobs SET plugin_version = ?2, model_version = ?3, so_sha256 = ?4, "
                                    "updated_at = ?5 WHERE id = ?1"));
    RETURN_IF_ERROR(s.Bind(1, job_id).Bind(2, plugin_version).Bind(3, model_version).Bind(4, so_sha256)
                        .Bind(5, NowMs()).Run());
  }
  json detail = {{"job_id", job_id},
                 {"from", {{"version", job.plugin_version}, {"model_version", job.model_version},
                           {"sha256", job.so_sha256}}},
                 {"to", {{"version", plugin_version}, {"model_version", model_version}, {"sha256", so_sha256}}}};
  RETURN_IF_ERROR(AppendAudit(kActor, "job.repinned", job.job_key, DumpJson(detail)));
  return txn.Commit();
}

Status JobStore::RepinJob(const JobLease& lease, const std::string& plugin_version, const std::string& model_version,
                          const std::string& so_sha256) {
  return impl_->RepinJob(lease.job_id, lease.token, plugin_version, model_version, so_sha256);
}
Status JobStore::RepinJob(int64_t job_id, const std::string& plugin_version, const std::string& model_version,
                          const std::string& so_sha256) {
  return impl_->RepinJob(job_id, std::nullopt, plugin_version, model_version, so_sha256);
}

Status JobStore::Impl::FailJob(int64_t job_id, const std::optional<std::string>& token, const std::string& error_in,
                               bool retryable) {
  // Plugin text: any bytes at all. Stored and audited as valid UTF-8.
  const std::string error = ReplaceInvalidUtf8(error_in);
  std::lock_guard<std::mutex> lock(mu);
  Transaction txn(*db);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(job, HeldJob(job_id, token));
  const int64_t now = NowMs();
  JobState next = JobState::kFailed;
  int64_t next_attempt = now;
  if (retryable) {
    if (job.attempts < job.max_attempts) {
      next = JobState::kPending;
      next_attempt += std::chrono::duration_cast<std::chrono::milliseconds>(Backoff(job.attempts, kJobBackoffCap))
                          .count();
    } else {
      next = JobState::kDead;
    }
  }
  {
    ASSIGN_OR_RETURN(s, db->Prepare("UPDATE jobs SET state = ?2, error = ?3, lease_until = NULL, "
                                    "next_attempt_at = ?4, updated_at = ?5 WHERE id = ?1"));
    RETURN_IF_ERROR(s.Bind(1, job_id)
                        .Bind(2, std::string(JobStateName(next)))
                        .Bind(3, error)
                        .Bind(4, next_attempt)
                        .Bind(5, now)
                        .Run());
  }
  json detail = {{"job_id", job_id},       {"error", error},
                 {"attempts", job.attempts}, {"max_attempts", job.max_attempts},
                 {"retryable", retryable},   {"state", JobStateName(next)}};
  if (next == JobState::kPending) detail["next_attempt_at"] = IsoUtc(next_attempt);
  RETURN_IF_ERROR(AppendAudit(kActor, "job.failed", job.job_key, DumpJson(detail)));
  if (next == JobState::kDead) {
    json dead = {{"job_id", job_id}, {"reason", "attempts exhausted"}, {"attempts", job.attempts}, {"error", error}};
    RETURN_IF_ERROR(AppendAudit(kActor, "job.dead", job.job_key, DumpJson(dead)));
  }
  return txn.Commit();
}

Status JobStore::ReleaseJob(const JobLease& lease, const std::string& reason_in) {
  const std::string reason = ReplaceInvalidUtf8(reason_in);
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  Transaction txn(db);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(job, impl_->HeldJob(lease.job_id, lease.token));
  const int64_t now = impl_->NowMs();
  {
    // The claim did not count: the job was stopped, it did not fail.
    ASSIGN_OR_RETURN(s, db.Prepare("UPDATE jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), "
                                   "lease_until = NULL, next_attempt_at = ?2, updated_at = ?2 WHERE id = ?1"));
    RETURN_IF_ERROR(s.Bind(1, lease.job_id).Bind(2, now).Run());
  }
  json detail = {{"job_id", lease.job_id}, {"reason", reason}, {"attempts", std::max(job.attempts - 1, 0)}};
  RETURN_IF_ERROR(impl_->AppendAudit(kActor, "job.released", job.job_key, DumpJson(detail)));
  return txn.Commit();
}

Status JobStore::FailJob(const JobLease& lease, const std::string& error, bool retryable) {
  return impl_->FailJob(lease.job_id, lease.token, error, retryable);
}
Status JobStore::FailJob(int64_t job_id, const std::string& error, bool retryable) {
  return impl_->FailJob(job_id, std::nullopt, error, retryable);
}

StatusOr<JobRecord> JobStore::GetJob(int64_t job_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->ReadJob(job_id);
}

StatusOr<std::vector<JobRecord>> JobStore::ListJobs(const std::string& study_instance_uid) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare(AIHUB_JOB_COLUMNS "WHERE ?1 = '' OR study_instance_uid = ?1 ORDER BY id"));
  s.Bind(1, study_instance_uid);
  std::vector<JobRecord> jobs;
  for (;;) {
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(job, RowToJob(s));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

StatusOr<std::optional<std::string>> JobStore::GetResult(int64_t job_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("SELECT result_json FROM results WHERE job_id = ?1"));
  s.Bind(1, job_id);
  ASSIGN_OR_RETURN(row, s.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(s.Text(0));
}

Status JobStore::Impl::EnqueueLocked(const OutboxItem& item, int64_t job_id_value) {
  {
    ASSIGN_OR_RETURN(s, db->Prepare("SELECT id FROM outbox WHERE idempotency_key = ?1"));
    s.Bind(1, item.idempotency_key);
    ASSIGN_OR_RETURN(row, s.Step());
    if (row) return Status::Ok();
  }
  const int64_t now = NowMs();
  const std::string kind = ReplaceInvalidUtf8(item.kind);
  const std::string destination = ReplaceInvalidUtf8(item.destination);
  const std::optional<int64_t> job_id = job_id_value != 0 ? std::optional<int64_t>(job_id_value) : std::nullopt;
  {
    ASSIGN_OR_RETURN(s, db->Prepare("INSERT INTO outbox(job_id, kind, destination, idempotency_key, payload, state, "
                                    "attempts, next_attempt_at, created_at, updated_at) VALUES "
                                    "(?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?6)"));
    s.Bind(1, job_id).Bind(2, kind).Bind(3, destination).Bind(4, item.idempotency_key);
    s.BindBlob(5, item.payload).Bind(6, now);
    Status st = s.Run();
    if (!st.ok()) {
      if (st.code() == AIHUB_FAILED_PRECONDITION && job_id) {
        return FailedPrecondition("outbox item for unknown job " + std::to_string(job_id_value) + ": " + st.message());
      }
      return st;
    }
  }
  const int64_t id = sqlite3_last_insert_rowid(db->handle());
  json detail = {{"outbox_id", id},
                 {"job_id", job_id_value},
                 {"kind", kind},
                 {"destination", destination},
                 {"bytes", item.payload.size()},
                 {"payload_sha256", Sha256Hex(item.payload)}};
  return AppendAudit(kActor, "outbox.enqueued", item.idempotency_key, DumpJson(detail));
}

Status JobStore::Enqueue(const OutboxItem& item) {
  if (item.idempotency_key.empty()) return InvalidArgument("outbox item without idempotency_key");
  if (item.kind.empty()) return InvalidArgument("outbox item without kind");
  RETURN_IF_ERROR(CheckIdentifier(item.idempotency_key, "outbox idempotency_key"));
  std::lock_guard<std::mutex> lock(impl_->mu);
  Transaction txn(*impl_->db);
  RETURN_IF_ERROR(txn.Begin());
  RETURN_IF_ERROR(impl_->EnqueueLocked(item, item.job_id));
  return txn.Commit();
}

StatusOr<std::vector<OutboxItem>> JobStore::DueOutbox(int limit) const {
  std::vector<OutboxItem> items;
  if (limit <= 0) return items;
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare(AIHUB_OUTBOX_COLUMNS
                                         "WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2"));
  s.Bind(1, impl_->NowMs()).Bind(2, int64_t{limit});
  for (;;) {
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) break;
    items.push_back(RowToOutbox(s));
  }
  return items;
}

StatusOr<std::vector<OutboxItem>> JobStore::PendingOutbox(int limit) const {
  std::vector<OutboxItem> items;
  if (limit <= 0) return items;
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare(AIHUB_OUTBOX_COLUMNS "WHERE state = 'pending' ORDER BY id LIMIT ?1"));
  s.Bind(1, int64_t{limit});
  for (;;) {
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) break;
    items.push_back(RowToOutbox(s));
  }
  return items;
}

StatusOr<uint64_t> JobStore::AdapterCursor(const std::string& adapter) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("SELECT cursor FROM adapter_cursors WHERE adapter = ?1"));
  s.Bind(1, adapter);
  ASSIGN_OR_RETURN(row, s.Step());
  return row ? static_cast<uint64_t>(s.Int(0)) : uint64_t{0};
}

StatusOr<bool> JobStore::NoteAdapterEventLog(const std::string& adapter, const std::string& event_log_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  Transaction txn(db);
  RETURN_IF_ERROR(txn.Begin());
  std::string known;
  int64_t cursor = 0;
  {
    ASSIGN_OR_RETURN(s, db.Prepare("SELECT event_log_id, cursor FROM adapter_cursors WHERE adapter = ?1"));
    s.Bind(1, adapter);
    ASSIGN_OR_RETURN(row, s.Step());
    if (row) {
      known = s.Text(0);
      cursor = s.Int(1);
    }
  }
  if (known == event_log_id) return false;
  const bool reset = !known.empty();   // "" = first contact, or a cursor recorded before ids were known
  {
    ASSIGN_OR_RETURN(s, db.Prepare("INSERT INTO adapter_cursors(adapter, cursor, event_log_id, updated_at) "
                                   "VALUES (?1, 0, ?2, ?3) ON CONFLICT(adapter) DO UPDATE SET "
                                   "event_log_id = excluded.event_log_id, updated_at = excluded.updated_at, "
                                   "cursor = CASE WHEN ?4 THEN 0 ELSE cursor END"));
    RETURN_IF_ERROR(s.Bind(1, adapter).Bind(2, event_log_id).Bind(3, impl_->NowMs()).Bind(4, int64_t{reset}).Run());
  }
  if (reset) {
    const json detail = {{"previous_event_log_id", known}, {"event_log_id", event_log_id}, {"previous_cursor", cursor}};
    RETURN_IF_ERROR(impl_->AppendAudit(kActor, "adapter.event_log_changed", adapter, DumpJson(detail)));
  }
  RETURN_IF_ERROR(txn.Commit());
  return reset;
}

Status JobStore::SetAdapterCursor(const std::string& adapter, uint64_t cursor) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  // Never moves back: a late writer with an older cursor must not make the host re-read events twice.
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("INSERT INTO adapter_cursors(adapter, cursor, updated_at) VALUES (?1, ?2, ?3) "
                                         "ON CONFLICT(adapter) DO UPDATE SET cursor = max(cursor, excluded.cursor), "
                                         "updated_at = excluded.updated_at"));
  return s.Bind(1, adapter).Bind(2, static_cast<int64_t>(cursor)).Bind(3, impl_->NowMs()).Run();
}

StatusOr<OutboxItem> JobStore::GetOutbox(int64_t outbox_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->ReadOutbox(outbox_id);
}

Status JobStore::MarkDelivered(int64_t outbox_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  Transaction txn(db);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(item, impl_->ReadOutbox(outbox_id));
  if (item.state == "delivered") return txn.Commit();
  if (item.state != "pending") {
    return FailedPrecondition("outbox item " + std::to_string(outbox_id) + " is " + item.state);
  }
  const int64_t now = impl_->NowMs();
  {
    ASSIGN_OR_RETURN(s, db.Prepare("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, "
                                   "updated_at = ?2 WHERE id = ?1"));
    RETURN_IF_ERROR(s.Bind(1, outbox_id).Bind(2, now).Run());
  }
  json detail = {{"outbox_id", outbox_id}, {"kind", item.kind}, {"destination", item.destination},
                 {"attempts", item.attempts + 1}};
  RETURN_IF_ERROR(impl_->AppendAudit(kActor, "outbox.delivered", item.idempotency_key, DumpJson(detail)));
  return txn.Commit();
}

Status JobStore::MarkDeliveryFailed(int64_t outbox_id, const std::string& error_in, int max_attempts) {
  // Error text from a PACS or adapter: any bytes. Stored and audited as valid UTF-8.
  const std::string error = ReplaceInvalidUtf8(error_in);
  if (max_attempts < 1) return InvalidArgument("max_attempts must be at least 1");
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  Transaction txn(db);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(item, impl_->ReadOutbox(outbox_id));
  if (item.state != "pending") {
    return FailedPrecondition("outbox item " + std::to_string(outbox_id) + " is " + item.state + ", not pending");
  }
  const int64_t now = impl_->NowMs();
  const int attempts = item.attempts + 1;
  const bool dead = attempts >= max_attempts;
  const int64_t next =
      now + std::chrono::duration_cast<std::chrono::milliseconds>(Backoff(attempts - 1, kOutboxBackoffCap)).count();
  {
    ASSIGN_OR_RETURN(s, db.Prepare("UPDATE outbox SET state = ?2, attempts = ?3, last_error = ?4, "
                                   "next_attempt_at = ?5, updated_at = ?6 WHERE id = ?1"));
    RETURN_IF_ERROR(s.Bind(1, outbox_id)
                        .Bind(2, std::string(dead ? "dead" : "pending"))
                        .Bind(3, int64_t{attempts})
                        .Bind(4, error)
                        .Bind(5, dead ? now : next)
                        .Bind(6, now)
                        .Run());
  }
  json detail = {{"outbox_id", outbox_id}, {"kind", item.kind},      {"destination", item.destination},
                 {"error", error},         {"attempts", attempts}, {"max_attempts", max_attempts}};
  if (!dead) detail["next_attempt_at"] = IsoUtc(next);
  RETURN_IF_ERROR(impl_->AppendAudit(kActor, "outbox.failed", item.idempotency_key, DumpJson(detail)));
  if (dead) {
    json d = {{"outbox_id", outbox_id}, {"attempts", attempts}, {"last_error", error}};
    RETURN_IF_ERROR(impl_->AppendAudit(kActor, "outbox.dead", item.idempotency_key, DumpJson(d)));
  }
  return txn.Commit();
}

Status JobStore::Audit(const std::string& actor, const std::string& action, const std::string& subject,
                       const std::string& detail_json) {
  if (actor.empty() || action.empty()) return InvalidArgument("audit entry needs an actor and an action");
  // Callers build details from untrusted text; bad bytes become U+FFFD rather than an error.
  const std::string detail = detail_json.empty() ? "{}" : ReplaceInvalidUtf8(detail_json);
  if (!IsJsonText(detail)) return InvalidArgument("audit detail is not JSON");
  std::lock_guard<std::mutex> lock(impl_->mu);
  Transaction txn(*impl_->db);
  RETURN_IF_ERROR(txn.Begin());
  RETURN_IF_ERROR(impl_->AppendAudit(actor, action, subject, detail));
  return txn.Commit();
}

namespace {

StatusOr<std::vector<AuditEntry>> ReadAuditRows(Db& db) {
  ASSIGN_OR_RETURN(s, db.Prepare("SELECT seq, ts, actor, action, subject, detail_json, prev_hash, hash "
                                 "FROM audit ORDER BY seq"));
  std::vector<AuditEntry> entries;
  for (;;) {
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) break;
    entries.push_back({s.Int(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4), s.Text(5), s.Text(6), s.Text(7)});
  }
  return entries;
}

}  // namespace

StatusOr<std::vector<AuditEntry>> JobStore::ReadAudit() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return ReadAuditRows(*impl_->db);
}

StatusOr<AuditVerification> VerifyAudit(const std::filesystem::path& db_path,
                                        const std::filesystem::path& audit_key_path) {
  std::error_code ec;
  if (!std::filesystem::exists(db_path, ec)) return NotFound(db_path.string() + " does not exist");
  const std::filesystem::path key_path = audit_key_path.empty() ? DefaultAuditKeyPath(db_path) : audit_key_path;
  auto key_or = ReadAuditKey(key_path);
  if (!key_or.ok()) {
    Status st = key_or.status();
    return Status(st.code(), st.message() + "; the audit log can only be verified with the key that wrote it");
  }
  const std::string key = std::move(key_or).value();
  ASSIGN_OR_RETURN(db, Db::Open(db_path, SQLITE_OPEN_READONLY));
  sqlite3_busy_timeout(db->handle(), 10000);
  // One read transaction, so the rows and the head come from the same snapshot.
  RETURN_IF_ERROR(db->Exec("BEGIN"));
  ASSIGN_OR_RETURN(entries, ReadAuditRows(*db));
  int64_t head_seq = 0;
  std::string head_hash;
  std::string head_mac;
  {
    ASSIGN_OR_RETURN(s, db->Prepare("SELECT (SELECT value FROM meta WHERE key = 'audit_head_seq'), "
                                    "(SELECT value FROM meta WHERE key = 'audit_head_hash'), "
                                    "(SELECT value FROM meta WHERE key = 'audit_head_mac')"));
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row || s.IsNull(0) || s.IsNull(1)) return DataLoss("audit head missing from meta");
    head_seq = s.Int(0);
    head_hash = s.Text(1);
    head_mac = s.Text(2);
  }
  (void)db->Exec("COMMIT");

  AuditVerification v;
  v.entries = static_cast<int64_t>(entries.size());
  std::set<int64_t> bad;
  auto problem = [&](int64_t seq, std::string text) {
    v.problems.push_back(std::move(text));
    bad.insert(seq);
  };
  int64_t expected_seq = 1;
  std::string prev_hash = kZeroHash;
  for (const AuditEntry& e : entries) {
    if (e.seq != expected_seq) {
      if (e.seq > expected_seq) {
        for (int64_t missing = expected_seq; missing < e.seq; ++missing) {
          problem(missing, "entry " + std::to_string(missing) + " missing (deleted?)");
        }
      } else {
        problem(e.seq, "entry " + std::to_string(e.seq) + ": out of sequence");
      }
    }
    if (AuditEntryHash(e, key) != e.hash) problem(e.seq, "entry " + std::to_string(e.seq) + ": hash mismatch (edited?)");
    if (e.prev_hash != prev_hash) {
      problem(e.seq, "entry " + std::to_string(e.seq) + ": prev_hash does not match the previous entry's hash");
    }
    prev_hash = e.hash;
    expected_seq = e.seq + 1;
  }
  const int64_t last_seq = entries.empty() ? 0 : entries.back().seq;
  if (head_seq != last_seq || head_hash != prev_hash) {
    if (head_seq > last_seq) {
      for (int64_t missing = last_seq + 1; missing <= head_seq; ++missing) {
        problem(missing, "entry " + std::to_string(missing) + " missing (tail deleted?)");
      }
    }
    problem(std::max(head_seq, last_seq), "head mismatch: meta records entry " + std::to_string(head_seq) +
                                              " but the log ends at entry " + std::to_string(last_seq));
  }
  // The head names no entry that can be blamed: a rewound head hides deleted entries after it.
  if (AuditHeadMac(head_seq, head_hash, key) != head_mac) {
    v.problems.push_back("head MAC mismatch: the head in meta (entry " + std::to_string(head_seq) +
                         ") was not written by the key holder (tail deleted and head rewound?)");
  }
  v.ok = v.problems.empty();
  v.bad_entries.assign(bad.begin(), bad.end());
  return v;
}

}  // namespace aihub::store
