#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <functional>

#include "common/hash.h"
#include "store/job_store.h"
#include "store_test_util.h"

namespace aihub::store {
namespace {

using std::chrono::seconds;
using testing::FakeClock;
using testing::RawExec;
using testing::RawQuery;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::WriteFileBytes;

std::unique_ptr<JobStore> MustOpen(const std::filesystem::path& db, const std::filesystem::path& key = {}) {
  auto store = JobStore::Open(db, "", key);
  REQUIRE_MESSAGE(store.ok(), store.status().ToString());
  return std::move(store).value();
}

AuditVerification MustVerify(const std::filesystem::path& db, const std::filesystem::path& key = {}) {
  auto v = VerifyAudit(db, key);
  REQUIRE_MESSAGE(v.ok(), v.status().ToString());
  return *v;
}

bool Mentions(const AuditVerification& v, const std::string& text) {
  return std::any_of(v.problems.begin(), v.problems.end(),
                     [&](const std::string& p) { return p.find(text) != std::string::npos; });
}

bool HasBad(const AuditVerification& v, int64_t seq) {
  return std::find(v.bad_entries.begin(), v.bad_entries.end(), seq) != v.bad_entries.end();
}

std::string Problems(const AuditVerification& v) {
  std::string all;
  for (const std::string& p : v.problems) all += p + "\n";
  return all;
}

// A busy log: jobs through retries and success, outbox traffic and plain Audit() calls.
void FillLog(JobStore& store, FakeClock& clock, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    NewJob job;
    job.study_instance_uid = "1.2." + std::to_string(i);
    job.plugin_id = "ich";
    job.plugin_version = "1.0.0";
    job.series_uids = {"1.2.3"};
    auto id = store.CreateJob(job);
    REQUIRE(id.ok());
    REQUIRE(store.Audit("user:alice", "study.viewed", job.study_instance_uid, R"({"why":"qa"})").ok());
    auto claimed = store.ClaimJob(seconds(60));
    REQUIRE(claimed.ok());
    REQUIRE(claimed->has_value());
    const int64_t claimed_id = (*claimed)->id;  // may be an older job whose retry came due
    if (i % 3 == 0) {
      REQUIRE(store.FailJob(claimed_id, "flaky", true).ok());
    } else {
      REQUIRE(store.CompleteJob(claimed_id, "{}", "2.25." + std::to_string(i)).ok());
      OutboxItem item;
      item.job_id = claimed_id;
      item.kind = "sr";
      item.idempotency_key = "sr:" + std::to_string(claimed_id);
      item.payload = "bytes";
      REQUIRE(store.Enqueue(item).ok());
    }
    clock.Advance(std::chrono::milliseconds(1500));
  }
}

std::vector<int64_t> Range(int64_t from, int64_t to) {
  std::vector<int64_t> out;
  for (int64_t i = from; i <= to; ++i) out.push_back(i);
  return out;
}

// What an editor without the key can compute: the same fields, hashed without a secret (the scheme before the
// chain was keyed).
std::string UnkeyedHash(const AuditEntry& e) {
  std::string buf = "aihub-audit-v1";
  for (const std::string& v : {e.prev_hash, std::to_string(e.seq), e.ts, e.actor, e.action, e.subject,
                               e.detail_json}) {
    buf += '\n' + std::to_string(v.size()) + ':' + v;
  }
  return Sha256Hex(buf);
}

TEST_CASE("the audit hash encoding is unambiguous and keyed") {
  const std::string key(32, 'k');
  AuditEntry a{1, "2024-01-01T00:00:00.000Z", "ab", "c", "s", "{}", std::string(64, '0'), ""};
  AuditEntry b = a;
  b.actor = "a";
  b.action = "bc";
  CHECK(AuditEntryHash(a, key) != AuditEntryHash(b, key));
  AuditEntry c = a;
  c.seq = 2;
  CHECK(AuditEntryHash(a, key) != AuditEntryHash(c, key));
  CHECK(AuditEntryHash(a, key) == AuditEntryHash(a, key));
  CHECK(AuditEntryHash(a, key).size() == 64);
  CHECK(AuditEntryHash(a, key) != AuditEntryHash(a, std::string(32, 'l')));
  CHECK(AuditEntryHash(a, key) != UnkeyedHash(a));
}

TEST_CASE("a busy audit log chains and verifies") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  FillLog(*store, clock, 60);
  const std::string key = ReadFileBytes(dir.path() / "audit.key");
  REQUIRE(key.size() == 32);

  auto entries = store->ReadAudit();
  REQUIRE(entries.ok());
  REQUIRE(entries->size() > 250);
  CHECK(entries->front().seq == 1);
  CHECK(entries->front().prev_hash == std::string(64, '0'));
  CHECK(entries->front().ts == "2023-11-14T22:13:20.000Z");  // the fake clock's start, in UTC
  for (size_t i = 0; i < entries->size(); ++i) {
    const AuditEntry& e = (*entries)[i];
    CHECK(e.seq == static_cast<int64_t>(i) + 1);
    CHECK(e.hash == AuditEntryHash(e, key));
    if (i > 0) CHECK(e.prev_hash == (*entries)[i - 1].hash);
  }
  CHECK(RawQuery(dir.db(), "SELECT value FROM meta WHERE key = 'audit_head_seq'") ==
        std::to_string(entries->size()));
  CHECK(RawQuery(dir.db(), "SELECT value FROM meta WHERE key = 'audit_head_hash'") == entries->back().hash);

  AuditVerification open_v = MustVerify(dir.db());  // while the writer is open (WAL in use)
  CHECK_MESSAGE(open_v.ok, Problems(open_v));
  CHECK(open_v.entries == static_cast<int64_t>(entries->size()));
  store.reset();
  AuditVerification closed_v = MustVerify(dir.db());
  CHECK_MESSAGE(closed_v.ok, Problems(closed_v));
  CHECK(closed_v.entries == static_cast<int64_t>(entries->size()));
  CHECK(closed_v.problems.empty());
}

TEST_CASE("an empty log verifies and a missing file is an error") {
  TempDir dir;
  MustOpen(dir.db());
  AuditVerification v = MustVerify(dir.db());
  CHECK(v.ok);
  CHECK(v.entries == 0);
  CHECK(VerifyAudit(dir.path() / "nope.db").status().code() == AIHUB_NOT_FOUND);
}

TEST_CASE("triggers refuse UPDATE and DELETE of audit rows") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  REQUIRE(store->Audit("user:bob", "config.changed", "site", R"({"k":1})").ok());
  std::string error;
  CHECK(RawExec(dir.db(), "UPDATE audit SET detail_json = '{}' WHERE seq = 1", &error) == SQLITE_CONSTRAINT);
  CHECK(error.find("append-only") != std::string::npos);
  CHECK(RawExec(dir.db(), "DELETE FROM audit WHERE seq = 1", &error) == SQLITE_CONSTRAINT);
  CHECK(error.find("append-only") != std::string::npos);
  CHECK(RawQuery(dir.db(), "SELECT detail_json FROM audit WHERE seq = 1") == R"({"k":1})");
  CHECK(MustVerify(dir.db()).ok);
  CHECK(store->Audit("", "x", "y").code() == AIHUB_INVALID_ARGUMENT);
  CHECK(store->Audit("a", "x", "y", "{broken").code() == AIHUB_INVALID_ARGUMENT);
}

TEST_CASE("an audit append that fails rolls back the state change it belongs to") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  REQUIRE(RawExec(dir.db(), "CREATE TRIGGER audit_block BEFORE INSERT ON audit "
                            "BEGIN SELECT RAISE(ABORT, 'blocked'); END;") == SQLITE_OK);
  NewJob job;
  job.study_instance_uid = "5.5";
  job.plugin_id = "ich";
  job.plugin_version = "1";
  CHECK_FALSE(store->CreateJob(job).ok());
  auto jobs = store->ListJobs();
  REQUIRE(jobs.ok());
  CHECK(jobs->empty());
  CHECK(RawQuery(dir.db(), "SELECT count(*) FROM studies") == "0");
  REQUIRE(RawExec(dir.db(), "DROP TRIGGER audit_block") == SQLITE_OK);
  CHECK(store->CreateJob(job).ok());
  CHECK(MustVerify(dir.db()).ok);
}

struct Tampered {
  TempDir dir;
  FakeClock clock;
  int64_t count = 0;
  Tampered() {
    auto store = MustOpen(dir.db());
    store->SetClockForTesting(clock.Fn());
    FillLog(*store, clock, 10);
    count = static_cast<int64_t>(store->ReadAudit()->size());
    REQUIRE(count > 20);
    // A determined editor removes the guard first.
    REQUIRE(RawExec(dir.db(), "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;") == SQLITE_OK);
  }
};

TEST_CASE("editing an entry's detail is detected") {
  Tampered t;
  REQUIRE(RawExec(t.dir.db(), "UPDATE audit SET detail_json = '{\"why\":\"nothing to see\"}' WHERE seq = 7") ==
          SQLITE_OK);
  AuditVerification v = MustVerify(t.dir.db());
  CHECK_FALSE(v.ok);
  CHECK(Mentions(v, "entry 7: hash mismatch"));
  CHECK(v.bad_entries == std::vector<int64_t>{7});
}

TEST_CASE("editing an entry and recomputing its hash breaks the next link") {
  Tampered t;
  AuditEntry e;
  {
    auto store = MustOpen(t.dir.db());
    e = (*store->ReadAudit())[4];
  }
  e.detail_json = R"({"edited":true})";
  e.hash = AuditEntryHash(e, ReadFileBytes(t.dir.path() / "audit.key"));  // even with the key
  REQUIRE(RawExec(t.dir.db(), "UPDATE audit SET detail_json = '" + e.detail_json + "', hash = '" + e.hash +
                                  "' WHERE seq = 5") == SQLITE_OK);
  AuditVerification v = MustVerify(t.dir.db());
  CHECK_FALSE(v.ok);
  CHECK(Mentions(v, "entry 6: prev_hash"));
  CHECK(HasBad(v, 6));
  CHECK_FALSE(HasBad(v, 5));  // its own hash now recomputes
}

TEST_CASE("deleting a middle entry is detected") {
  Tampered t;
  REQUIRE(RawExec(t.dir.db(), "DELETE FROM audit WHERE seq = 12") == SQLITE_OK);
  AuditVerification v = MustVerify(t.dir.db());
  CHECK_FALSE(v.ok);
  CHECK_MESSAGE(Mentions(v, "entry 12 missing"), Problems(v));
  CHECK(Mentions(v, "entry 13: prev_hash"));
  CHECK(v.bad_entries == std::vector<int64_t>{12, 13});
  CHECK(v.entries == t.count - 1);
}

TEST_CASE("deleting the last entries is detected through the head in meta") {
  Tampered t;
  SUBCASE("the last one") {
    REQUIRE(RawExec(t.dir.db(), "DELETE FROM audit WHERE seq = " + std::to_string(t.count)) == SQLITE_OK);
    AuditVerification v = MustVerify(t.dir.db());
    CHECK_FALSE(v.ok);
    CHECK_MESSAGE(Mentions(v, "entry " + std::to_string(t.count) + " missing"), Problems(v));
    CHECK(Mentions(v, "head mismatch"));
    CHECK(v.bad_entries == std::vector<int64_t>{t.count});
  }
  SUBCASE("the last three") {
    REQUIRE(RawExec(t.dir.db(), "DELETE FROM audit WHERE seq > " + std::to_string(t.count - 3)) == SQLITE_OK);
    AuditVerification v = MustVerify(t.dir.db());
    CHECK_FALSE(v.ok);
    CHECK(v.bad_entries == std::vector<int64_t>{t.count - 2, t.count - 1, t.count});
  }
  SUBCASE("all of them") {
    REQUIRE(RawExec(t.dir.db(), "DELETE FROM audit") == SQLITE_OK);
    AuditVerification v = MustVerify(t.dir.db());
    CHECK_FALSE(v.ok);
    CHECK(v.entries == 0);
    CHECK(Mentions(v, "head mismatch"));
  }
}

TEST_CASE("appending after a verified reopen keeps the chain") {
  TempDir dir;
  {
    auto store = MustOpen(dir.db());
    REQUIRE(store->Audit("aihubd", "host.started", "", "{}").ok());
  }
  {
    auto store = MustOpen(dir.db());
    REQUIRE(store->Audit("aihubd", "host.started", "", "{}").ok());
    auto entries = store->ReadAudit();
    REQUIRE(entries.ok());
    REQUIRE(entries->size() == 2);
    CHECK((*entries)[1].prev_hash == (*entries)[0].hash);
  }
  CHECK(MustVerify(dir.db()).ok);
}

// Reads the log back through the store (the writer is closed again before the caller edits the file).
std::vector<AuditEntry> ReadBack(const std::filesystem::path& db) {
  auto store = MustOpen(db);
  auto entries = store->ReadAudit();
  REQUIRE(entries.ok());
  return *entries;
}

// A forger's full rewrite: edit entry k, then recompute every later link and hash with `hash` and move the head
// in meta to the new last hash, as someone who can write the database (but not read the key) would.
void RewriteFrom(const std::filesystem::path& db, std::vector<AuditEntry> entries, int64_t k,
                 const std::function<std::string(const AuditEntry&)>& hash) {
  entries[k - 1].detail_json = R"({"edited":true})";
  for (size_t i = static_cast<size_t>(k - 1); i < entries.size(); ++i) {
    if (i > 0) entries[i].prev_hash = entries[i - 1].hash;
    entries[i].hash = hash(entries[i]);
    REQUIRE(RawExec(db, "UPDATE audit SET detail_json = '" + entries[i].detail_json + "', prev_hash = '" +
                            entries[i].prev_hash + "', hash = '" + entries[i].hash +
                            "' WHERE seq = " + std::to_string(entries[i].seq)) == SQLITE_OK);
  }
  REQUIRE(RawExec(db, "UPDATE meta SET value = '" + entries.back().hash + "' WHERE key = 'audit_head_hash'") ==
          SQLITE_OK);
}

TEST_CASE("rewriting entry k and recomputing every later hash and the head is detected without the key") {
  Tampered t;
  std::vector<AuditEntry> entries = ReadBack(t.dir.db());
  const int64_t k = 9;
  SUBCASE("recomputed with unkeyed SHA-256") { RewriteFrom(t.dir.db(), entries, k, UnkeyedHash); }
  SUBCASE("recomputed with a wrong key") {
    const std::string wrong(32, '\x5a');
    RewriteFrom(t.dir.db(), entries, k, [&](const AuditEntry& e) { return AuditEntryHash(e, wrong); });
  }
  AuditVerification v = MustVerify(t.dir.db());
  CHECK_FALSE(v.ok);
  CHECK_MESSAGE(v.bad_entries == Range(k, t.count), Problems(v));  // every rewritten entry, none before
  CHECK(Mentions(v, "entry " + std::to_string(k) + ": hash mismatch"));
  CHECK(Mentions(v, "entry " + std::to_string(t.count) + ": hash mismatch"));
  CHECK(Mentions(v, "head MAC mismatch"));
}

TEST_CASE("deleting the tail and rewinding the head in meta is detected") {
  Tampered t;
  std::vector<AuditEntry> entries = ReadBack(t.dir.db());
  const int64_t k = t.count - 4;
  REQUIRE(RawExec(t.dir.db(), "DELETE FROM audit WHERE seq > " + std::to_string(k)) == SQLITE_OK);
  REQUIRE(RawExec(t.dir.db(), "UPDATE meta SET value = " + std::to_string(k) + " WHERE key = 'audit_head_seq'; "
                              "UPDATE meta SET value = '" + entries[k - 1].hash + "' WHERE key = 'audit_head_hash'") ==
          SQLITE_OK);
  AuditVerification v = MustVerify(t.dir.db());
  CHECK(v.entries == k);
  CHECK_FALSE(v.ok);
  CHECK_MESSAGE(Mentions(v, "head MAC mismatch"), Problems(v));
  CHECK(v.problems.size() == 1);  // the remaining chain itself is intact

  SUBCASE("a head MAC cleared as well is no better") {
    REQUIRE(RawExec(t.dir.db(), "UPDATE meta SET value = '' WHERE key = 'audit_head_mac'") == SQLITE_OK);
    CHECK_FALSE(MustVerify(t.dir.db()).ok);
  }
  SUBCASE("rewinding to an empty log") {
    REQUIRE(RawExec(t.dir.db(), "DELETE FROM audit; UPDATE meta SET value = 0 WHERE key = 'audit_head_seq'; "
                                "UPDATE meta SET value = '" + std::string(64, '0') +
                                "' WHERE key = 'audit_head_hash'") == SQLITE_OK);
    AuditVerification empty = MustVerify(t.dir.db());
    CHECK(empty.entries == 0);
    CHECK_FALSE(empty.ok);
  }
}

TEST_CASE("verifying with a different key reports every entry") {
  Tampered t;
  const auto other = t.dir.path() / "other.key";
  WriteFileBytes(other, std::string(32, '\x01'));
  AuditVerification v = MustVerify(t.dir.db(), other);
  CHECK_FALSE(v.ok);
  CHECK(v.bad_entries == Range(1, t.count));
  CHECK(Mentions(v, "entry 1: hash mismatch"));
  CHECK(Mentions(v, "head MAC mismatch"));
  CHECK(MustVerify(t.dir.db()).ok);  // the right key still verifies the untouched log
}

TEST_CASE("the audit key file: created once, 0600, 32 bytes, required") {
  TempDir dir;
  const auto key_path = dir.path() / "audit.key";
  {
    auto store = MustOpen(dir.db());
    REQUIRE(store->Audit("aihubd", "host.started", "", "{}").ok());
  }
  const std::string key = ReadFileBytes(key_path);
  CHECK(key.size() == 32);
  CHECK(key != std::string(32, '\0'));
  struct stat st {};
  REQUIRE(stat(key_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  MustOpen(dir.db());
  CHECK(ReadFileBytes(key_path) == key);  // a reopen keeps the key
  CHECK(MustVerify(dir.db()).ok);

  SUBCASE("missing key file") {
    std::filesystem::remove(key_path);
    auto v = VerifyAudit(dir.db());
    CHECK(v.status().code() == AIHUB_NOT_FOUND);
    CHECK(v.status().message().find("audit key") != std::string::npos);
    auto store = JobStore::Open(dir.db(), "");
    CHECK(store.status().code() == AIHUB_FAILED_PRECONDITION);  // never a fresh key under an existing chain
    CHECK(store.status().message().find("missing") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(key_path));
  }
  SUBCASE("wrong size") {
    WriteFileBytes(key_path, std::string(16, 'x'));
    CHECK(VerifyAudit(dir.db()).status().code() == AIHUB_FAILED_PRECONDITION);
    CHECK(JobStore::Open(dir.db(), "").status().code() == AIHUB_FAILED_PRECONDITION);
    CHECK(ReadFileBytes(key_path) == std::string(16, 'x'));  // left alone
  }
  SUBCASE("not a readable file") {
    std::filesystem::remove(key_path);
    std::filesystem::create_directory(key_path);
    CHECK(VerifyAudit(dir.db()).status().code() == AIHUB_FAILED_PRECONDITION);
    CHECK(JobStore::Open(dir.db(), "").status().code() == AIHUB_FAILED_PRECONDITION);
  }
}

TEST_CASE("an explicit key path is used by Open and VerifyAudit") {
  TempDir dir;
  const auto key_path = dir.path() / "secrets" / "hub.key";
  {
    auto store = MustOpen(dir.db(), key_path);
    REQUIRE(store->Audit("aihubd", "host.started", "", "{}").ok());
  }
  CHECK(ReadFileBytes(key_path).size() == 32);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "audit.key"));
  CHECK(VerifyAudit(dir.db()).status().code() == AIHUB_NOT_FOUND);
  CHECK(MustVerify(dir.db(), key_path).ok);
}

TEST_CASE("a lost key for a log without entries is replaced") {
  TempDir dir;
  MustOpen(dir.db());
  std::filesystem::remove(dir.path() / "audit.key");
  {
    auto store = MustOpen(dir.db());  // nothing to orphan: a new key, and a head MAC under it
    CHECK(MustVerify(dir.db()).ok);
    REQUIRE(store->Audit("aihubd", "host.started", "", "{}").ok());
  }
  CHECK(MustVerify(dir.db()).ok);
}

}  // namespace
}  // namespace aihub::store
