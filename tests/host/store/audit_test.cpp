#include <doctest/doctest.h>

#include <algorithm>

#include "store/job_store.h"
#include "store_test_util.h"

namespace aihub::store {
namespace {

using std::chrono::seconds;
using testing::FakeClock;
using testing::RawExec;
using testing::RawQuery;
using testing::TempDir;

std::unique_ptr<JobStore> MustOpen(const std::filesystem::path& db) {
  auto store = JobStore::Open(db, "");
  REQUIRE_MESSAGE(store.ok(), store.status().ToString());
  return std::move(store).value();
}

AuditVerification MustVerify(const std::filesystem::path& db) {
  auto v = VerifyAudit(db);
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

TEST_CASE("the audit hash encoding is unambiguous") {
  AuditEntry a{1, "2024-01-01T00:00:00.000Z", "ab", "c", "s", "{}", std::string(64, '0'), ""};
  AuditEntry b = a;
  b.actor = "a";
  b.action = "bc";
  CHECK(AuditEntryHash(a) != AuditEntryHash(b));
  AuditEntry c = a;
  c.seq = 2;
  CHECK(AuditEntryHash(a) != AuditEntryHash(c));
  CHECK(AuditEntryHash(a) == AuditEntryHash(a));
  CHECK(AuditEntryHash(a).size() == 64);
}

TEST_CASE("a busy audit log chains and verifies") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  FillLog(*store, clock, 60);

  auto entries = store->ReadAudit();
  REQUIRE(entries.ok());
  REQUIRE(entries->size() > 250);
  CHECK(entries->front().seq == 1);
  CHECK(entries->front().prev_hash == std::string(64, '0'));
  CHECK(entries->front().ts == "2023-11-14T22:13:20.000Z");  // the fake clock's start, in UTC
  for (size_t i = 0; i < entries->size(); ++i) {
    const AuditEntry& e = (*entries)[i];
    CHECK(e.seq == static_cast<int64_t>(i) + 1);
    CHECK(e.hash == AuditEntryHash(e));
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
  e.hash = AuditEntryHash(e);
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

}  // namespace
}  // namespace aihub::store
