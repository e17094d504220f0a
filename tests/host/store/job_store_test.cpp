#include "store/job_store.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>

#include "common/utf8.h"
#include "store_test_util.h"

namespace aihub::store {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeClock;
using testing::ForEachTextValue;
using testing::RawExec;
using testing::RawQuery;
using testing::TempDir;

std::unique_ptr<JobStore> MustOpen(const std::filesystem::path& db, const std::string& owner = "") {
  auto store = JobStore::Open(db, owner);
  REQUIRE_MESSAGE(store.ok(), store.status().ToString());
  return std::move(store).value();
}

NewJob MakeJob(const std::string& study, const std::string& plugin = "ich", int max_attempts = 3) {
  NewJob j;
  j.study_instance_uid = study;
  j.plugin_id = plugin;
  j.plugin_version = "1.2.0";
  j.model_version = "m7";
  j.so_sha256 = std::string(64, 'a');
  j.department = "emergency";
  j.mode = "assistive";
  j.series_uids = {study + ".1", study + ".2"};
  j.max_attempts = max_attempts;
  return j;
}

int64_t MustCreate(JobStore& store, const NewJob& job) {
  auto id = store.CreateJob(job);
  REQUIRE_MESSAGE(id.ok(), id.status().ToString());
  return *id;
}

JobRecord MustClaim(JobStore& store, seconds lease = seconds(60)) {
  auto claimed = store.ClaimJob(lease);
  REQUIRE_MESSAGE(claimed.ok(), claimed.status().ToString());
  REQUIRE(claimed->has_value());
  return **claimed;
}

bool NothingToClaim(JobStore& store) {
  auto claimed = store.ClaimJob(seconds(60));
  REQUIRE_MESSAGE(claimed.ok(), claimed.status().ToString());
  return !claimed->has_value();
}

JobRecord MustGet(JobStore& store, int64_t id) {
  auto job = store.GetJob(id);
  REQUIRE_MESSAGE(job.ok(), job.status().ToString());
  return *job;
}

std::vector<std::string> AuditActions(JobStore& store) {
  auto entries = store.ReadAudit();
  REQUIRE(entries.ok());
  std::vector<std::string> actions;
  for (const AuditEntry& e : *entries) actions.push_back(e.action);
  return actions;
}

int CountOf(const std::vector<std::string>& v, const std::string& s) {
  return static_cast<int>(std::count(v.begin(), v.end(), s));
}

// Kills and reaps a forked child if the test ends early, so a failed REQUIRE leaves no process behind.
struct ChildGuard {
  pid_t pid;
  ~ChildGuard() {
    if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
  }
};

std::string HostOwner(pid_t pid) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + ":" + std::to_string(pid);
}

TEST_CASE("Open creates a WAL database at the current schema version and refuses a newer one") {
  TempDir dir;
  const auto db = dir.path() / "nested" / "aihub.db";
  {
    auto store = MustOpen(db);
    CHECK(store->schema_version() == kJobStoreSchemaVersion);
    CHECK(store->schema_version() == 2);
    CHECK(store->owner() == JobStore::DefaultOwner());
    CHECK(store->owner() == HostOwner(getpid()));
  }
  CHECK(RawQuery(db, "SELECT value FROM meta WHERE key = 'schema_version'") == "2");
  CHECK(RawQuery(db, "PRAGMA journal_mode") == "wal");
  for (const char* table : {"studies", "jobs", "results", "outbox", "audit", "meta"}) {
    CAPTURE(table);
    CHECK(RawQuery(db, std::string("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '") + table +
                           "'") == "1");
  }
  // Reopening does not migrate again.
  CHECK(MustOpen(db)->schema_version() == 2);

  REQUIRE(RawExec(db, "UPDATE meta SET value = 99 WHERE key = 'schema_version'") == SQLITE_OK);
  auto newer = JobStore::Open(db, "");
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.status().code() == AIHUB_FAILED_PRECONDITION);
}

TEST_CASE("Open rejects a file that is not a database") {
  TempDir dir;
  {
    std::FILE* f = std::fopen(dir.db().c_str(), "wb");
    REQUIRE(f != nullptr);
    std::string junk(4096, 'x');
    std::fwrite(junk.data(), 1, junk.size(), f);
    std::fclose(f);
  }
  auto store = JobStore::Open(dir.db(), "");
  CHECK_FALSE(store.ok());
}

TEST_CASE("CreateJob is idempotent on the job key and audits once") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  REQUIRE(store->UpsertStudy({"1.2.3", "folder:/in", R"({"Modality":"CT"})"}).ok());
  NewJob job = MakeJob("1.2.3");
  const int64_t id = MustCreate(*store, job);
  CHECK(MustCreate(*store, job) == id);

  JobRecord rec = MustGet(*store, id);
  CHECK(rec.job_key == "1.2.3/ich/1.2.0/g0");
  CHECK(rec.state == JobState::kPending);
  CHECK(rec.series_uids == job.series_uids);
  CHECK(rec.so_sha256 == job.so_sha256);
  CHECK(rec.department == "emergency");
  CHECK(rec.mode == "assistive");
  CHECK(rec.attempts == 0);
  CHECK(rec.max_attempts == 3);

  job.generation = 1;
  const int64_t rerun = MustCreate(*store, job);
  CHECK(rerun != id);
  CHECK(MustGet(*store, rerun).job_key == "1.2.3/ich/1.2.0/g1");

  // A job for a study nobody upserted still gets created (with a bare study row).
  MustCreate(*store, MakeJob("9.9.9"));

  auto all = store->ListJobs();
  REQUIRE(all.ok());
  CHECK(all->size() == 3);
  auto of_study = store->ListJobs("1.2.3");
  REQUIRE(of_study.ok());
  CHECK(of_study->size() == 2);
  CHECK(CountOf(AuditActions(*store), "job.created") == 3);

  CHECK(store->GetJob(12345).status().code() == AIHUB_NOT_FOUND);
  NewJob bad = MakeJob("");
  CHECK(store->CreateJob(bad).status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(store->UpsertStudy({"1.2.3", "x", "not json"}).code() == AIHUB_INVALID_ARGUMENT);
}

TEST_CASE("ClaimJob takes the oldest pending job and leases it") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  const int64_t a = MustCreate(*store, MakeJob("1.1"));
  const int64_t b = MustCreate(*store, MakeJob("1.2"));
  const int64_t c = MustCreate(*store, MakeJob("1.3"));

  JobRecord first = MustClaim(*store, seconds(90));
  CHECK(first.id == a);
  CHECK(first.state == JobState::kRunning);
  CHECK(first.attempts == 1);
  CHECK(first.lease_owner == store->owner());
  CHECK(first.lease_until == clock.Now() + seconds(90));
  CHECK(MustClaim(*store).id == b);
  CHECK(MustClaim(*store).id == c);
  CHECK(NothingToClaim(*store));
  CHECK(MustGet(*store, a).state == JobState::kRunning);
  CHECK(CountOf(AuditActions(*store), "job.claimed") == 3);
  CHECK(store->ClaimJob(seconds(0)).status().code() == AIHUB_INVALID_ARGUMENT);
}

void ClaimAllConcurrently(JobStore& s1, JobStore& s2) {
  std::vector<int64_t> got1, got2;
  std::atomic<int> errors{0};
  std::atomic<int> ready{0};
  auto worker = [&](JobStore& s, std::vector<int64_t>& got) {
    ++ready;
    while (ready.load() < 2) std::this_thread::yield();  // start together
    for (;;) {
      auto claimed = s.ClaimJob(seconds(60));
      if (!claimed.ok()) {
        ++errors;
        return;
      }
      if (!claimed->has_value()) return;
      got.push_back((*claimed)->id);
      std::this_thread::sleep_for(milliseconds(1));  // "run" the job, letting the other thread in
    }
  };
  std::thread t1(worker, std::ref(s1), std::ref(got1));
  std::thread t2(worker, std::ref(s2), std::ref(got2));
  t1.join();
  t2.join();
  CHECK(errors == 0);
  INFO("thread 1 claimed " << got1.size() << ", thread 2 claimed " << got2.size());
  CHECK(!got1.empty());  // they really competed
  CHECK(!got2.empty());
  std::multiset<int64_t> all(got1.begin(), got1.end());
  all.insert(got2.begin(), got2.end());
  CHECK(all.size() == 100);
  std::set<int64_t> unique(all.begin(), all.end());
  CHECK(unique.size() == 100);
}

TEST_CASE("two threads claiming 100 jobs get each job exactly once") {
  TempDir dir;
  SUBCASE("one store shared by both threads") {
    auto store = MustOpen(dir.db());
    for (int i = 0; i < 100; ++i) MustCreate(*store, MakeJob("2." + std::to_string(i)));
    ClaimAllConcurrently(*store, *store);
    auto jobs = store->ListJobs();
    REQUIRE(jobs.ok());
    for (const JobRecord& j : *jobs) CHECK(j.attempts == 1);
  }
  SUBCASE("two stores (two connections) on one file") {
    auto s1 = MustOpen(dir.db(), "worker-a");
    auto s2 = MustOpen(dir.db(), "worker-b");
    for (int i = 0; i < 100; ++i) MustCreate(*s1, MakeJob("3." + std::to_string(i)));
    ClaimAllConcurrently(*s1, *s2);
    auto jobs = s1->ListJobs();
    REQUIRE(jobs.ok());
    for (const JobRecord& j : *jobs) {
      CHECK(j.attempts == 1);
      CHECK(j.state == JobState::kRunning);
    }
    auto v = VerifyAudit(dir.db());
    REQUIRE(v.ok());
    CHECK(v->ok);
    CHECK(v->entries == 200);
  }
}

TEST_CASE("an expired lease is recovered but a live one is not") {
  TempDir dir;
  FakeClock clock;
  // Another host's owner: only the lease can tell whether it is gone.
  auto worker = MustOpen(dir.db(), "otherhost:4242");
  worker->SetClockForTesting(clock.Fn());
  const int64_t id = MustCreate(*worker, MakeJob("4.1"));
  MustClaim(*worker, seconds(60));

  auto host = MustOpen(dir.db());
  host->SetClockForTesting(clock.Fn());
  clock.Advance(seconds(59));
  auto n = host->RecoverInterruptedJobs();
  REQUIRE(n.ok());
  CHECK(*n == 0);
  CHECK(MustGet(*host, id).state == JobState::kRunning);

  // A long job renews its lease.
  REQUIRE(worker->RenewLease(id, seconds(60)).ok());
  clock.Advance(seconds(30));
  CHECK(*host->RecoverInterruptedJobs() == 0);
  CHECK(host->RenewLease(id, seconds(60)).code() == AIHUB_FAILED_PRECONDITION);  // not its lease

  clock.Advance(seconds(31));
  n = host->RecoverInterruptedJobs();
  REQUIRE(n.ok());
  CHECK(*n == 1);
  JobRecord rec = MustGet(*host, id);
  CHECK(rec.state == JobState::kPending);
  CHECK(rec.error.find("lease expired") != std::string::npos);
  CHECK(CountOf(AuditActions(*host), "job.recovered") == 1);

  // The stale worker can no longer finish it; the host can claim it again.
  CHECK(worker->CompleteJob(id, "{}", "1.2.3.4").code() == AIHUB_FAILED_PRECONDITION);
  JobRecord again = MustClaim(*host);
  CHECK(again.id == id);
  CHECK(again.attempts == 2);
  CHECK(worker->CompleteJob(id, "{}", "1.2.3.4").code() == AIHUB_FAILED_PRECONDITION);  // leased by host now
}

TEST_CASE("a job owned by a dead pid on this host is recovered, one owned by a live process is not") {
  TempDir dir;
  SUBCASE("dead owner") {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) _exit(0);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);  // reaped: kill(pid, 0) now says ESRCH
    int64_t id = 0;
    {
      auto dead = MustOpen(dir.db(), HostOwner(child));
      id = MustCreate(*dead, MakeJob("5.1"));
      MustClaim(*dead, seconds(3600));
    }
    auto host = MustOpen(dir.db());
    auto n = host->RecoverInterruptedJobs();
    REQUIRE(n.ok());
    CHECK(*n == 1);
    JobRecord rec = MustGet(*host, id);
    CHECK(rec.state == JobState::kPending);
    CHECK(rec.error.find("is gone") != std::string::npos);
  }
  SUBCASE("live owner, then it dies") {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      for (;;) pause();
    }
    ChildGuard guard{child};
    int64_t id = 0;
    {
      auto live = MustOpen(dir.db(), HostOwner(child));
      id = MustCreate(*live, MakeJob("5.2"));
      MustClaim(*live, seconds(3600));
    }
    auto host = MustOpen(dir.db());
    auto n = host->RecoverInterruptedJobs();
    CHECK(n.ok());
    CHECK(*n == 0);
    CHECK(MustGet(*host, id).state == JobState::kRunning);

    REQUIRE(kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    guard.pid = 0;
    n = host->RecoverInterruptedJobs();
    REQUIRE(n.ok());
    CHECK(*n == 1);
    CHECK(MustGet(*host, id).state == JobState::kPending);
  }
}

TEST_CASE("a lease from an earlier open in this same process is recovered, the current one is not") {
  TempDir dir;
  int64_t id = 0;
  {
    auto first = MustOpen(dir.db());
    id = MustCreate(*first, MakeJob("6.1"));
    MustCreate(*first, MakeJob("6.2"));
    CHECK(MustClaim(*first, seconds(3600)).id == id);
  }
  auto second = MustOpen(dir.db());
  CHECK(second->owner() == JobStore::DefaultOwner());
  auto n = second->RecoverInterruptedJobs();
  REQUIRE(n.ok());
  CHECK(*n == 1);
  CHECK(MustGet(*second, id).state == JobState::kPending);
  CHECK(MustClaim(*second, seconds(3600)).id == id);  // oldest again
  n = second->RecoverInterruptedJobs();
  REQUIRE(n.ok());
  CHECK(*n == 0);  // its own live lease
  CHECK(MustGet(*second, id).state == JobState::kRunning);
}

TEST_CASE("an interrupted job whose attempts are used up goes dead instead of looping") {
  TempDir dir;
  FakeClock clock;
  auto worker = MustOpen(dir.db(), "otherhost:1");  // claims, then goes silent (a host that keeps crashing)
  auto store = MustOpen(dir.db(), "otherhost:2");   // recovers
  worker->SetClockForTesting(clock.Fn());
  store->SetClockForTesting(clock.Fn());
  const int64_t id = MustCreate(*store, MakeJob("7.1", "crashy", /*max_attempts=*/2));
  for (int round = 1; round <= 2; ++round) {
    CAPTURE(round);
    CHECK(MustClaim(*worker, seconds(10)).attempts == round);
    clock.Advance(seconds(11));
    auto n = store->RecoverInterruptedJobs();
    REQUIRE(n.ok());
    CHECK(*n == 1);
  }
  JobRecord rec = MustGet(*store, id);
  CHECK(rec.state == JobState::kDead);
  CHECK(NothingToClaim(*store));
  auto actions = AuditActions(*store);
  CHECK(CountOf(actions, "job.recovered") == 1);
  CHECK(CountOf(actions, "job.dead") == 1);
}

TEST_CASE("FailJob retries with exponential backoff, then dead, and non-retryable fails at once") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  const int64_t id = MustCreate(*store, MakeJob("8.1", "ich", /*max_attempts=*/3));

  CHECK(store->FailJob(id, "not claimed", true).code() == AIHUB_FAILED_PRECONDITION);

  MustClaim(*store);
  REQUIRE(store->FailJob(id, "UNAVAILABLE: adapter down", true).ok());
  JobRecord rec = MustGet(*store, id);
  CHECK(rec.state == JobState::kPending);
  CHECK(rec.error == "UNAVAILABLE: adapter down");
  CHECK(rec.next_attempt_at == clock.Now() + seconds(2));  // 2^1
  CHECK(NothingToClaim(*store));
  clock.Advance(milliseconds(1999));
  CHECK(NothingToClaim(*store));
  clock.Advance(milliseconds(1));
  CHECK(MustClaim(*store).attempts == 2);

  REQUIRE(store->FailJob(id, "again", true).ok());
  CHECK(MustGet(*store, id).next_attempt_at == clock.Now() + seconds(4));  // 2^2
  clock.Advance(seconds(4));
  CHECK(MustClaim(*store).attempts == 3);
  REQUIRE(store->FailJob(id, "still down", true).ok());
  rec = MustGet(*store, id);
  CHECK(rec.state == JobState::kDead);
  CHECK(rec.error == "still down");
  clock.Advance(seconds(3600));
  CHECK(NothingToClaim(*store));

  const int64_t other = MustCreate(*store, MakeJob("8.2"));
  MustClaim(*store);
  REQUIRE(store->FailJob(other, "INVALID_ARGUMENT: bad plugin output", false).ok());
  CHECK(MustGet(*store, other).state == JobState::kFailed);
  CHECK(NothingToClaim(*store));

  auto entries = store->ReadAudit();
  REQUIRE(entries.ok());
  int failed = 0;
  for (const AuditEntry& e : *entries) {
    if (e.action != "job.failed") continue;
    ++failed;
    CHECK(e.detail_json.find("\"retryable\"") != std::string::npos);
    CHECK(e.detail_json.find("\"attempts\"") != std::string::npos);
  }
  CHECK(failed == 4);
  CHECK(CountOf(AuditActions(*store), "job.dead") == 1);
}

TEST_CASE("the job backoff is capped at five minutes") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  const int64_t id = MustCreate(*store, MakeJob("8.3", "ich", /*max_attempts=*/20));
  for (int i = 1; i <= 10; ++i) {
    MustClaim(*store);
    REQUIRE(store->FailJob(id, "down", true).ok());
    auto wait = MustGet(*store, id).next_attempt_at - clock.Now();
    CHECK(wait == std::min<std::chrono::system_clock::duration>(seconds(int64_t{1} << i), seconds(300)));
    clock.Advance(seconds(300));
  }
}

TEST_CASE("CompleteJob stores the result only for a running job") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  const int64_t id = MustCreate(*store, MakeJob("9.1"));
  CHECK(store->CompleteJob(id, "{}", "2.25.1").code() == AIHUB_FAILED_PRECONDITION);
  CHECK(store->CompleteJob(777, "{}", "2.25.1").code() == AIHUB_NOT_FOUND);
  auto none = store->GetResult(id);
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());

  MustClaim(*store);
  CHECK(store->CompleteJob(id, "not json", "2.25.1").code() == AIHUB_INVALID_ARGUMENT);
  REQUIRE(store->CompleteJob(id, R"({"findings":[]})", "2.25.123").ok());
  CHECK(MustGet(*store, id).state == JobState::kSucceeded);
  auto result = store->GetResult(id);
  REQUIRE(result.ok());
  REQUIRE(result->has_value());
  CHECK(**result == R"({"findings":[]})");
  CHECK(RawQuery(dir.db(), "SELECT sr_sop_instance_uid FROM results WHERE job_id = " + std::to_string(id)) ==
        "2.25.123");
  CHECK(store->CompleteJob(id, "{}", "2.25.1").code() == AIHUB_FAILED_PRECONDITION);
  CHECK(store->FailJob(id, "late", true).code() == AIHUB_FAILED_PRECONDITION);

  auto entries = store->ReadAudit();
  REQUIRE(entries.ok());
  REQUIRE_FALSE(entries->empty());
  CHECK(entries->back().action == "job.succeeded");
  CHECK(entries->back().detail_json.find("2.25.123") != std::string::npos);
  CHECK(entries->back().subject == "9.1/ich/1.2.0/g0");
}

OutboxItem MakeItem(const std::string& key, int64_t job_id = 0) {
  OutboxItem item;
  item.job_id = job_id;
  item.kind = "sr";
  item.destination = "127.0.0.1:50052";
  item.idempotency_key = key;
  item.payload = std::string("DICM\0\x01\xff", 7);
  return item;
}

TEST_CASE("outbox: idempotent enqueue, exponential backoff, dead letter, delivery") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  const int64_t job = MustCreate(*store, MakeJob("10.1"));
  REQUIRE(store->Enqueue(MakeItem("sr:10.1", job)).ok());
  REQUIRE(store->Enqueue(MakeItem("sr:10.1", job)).ok());  // no-op
  REQUIRE(store->Enqueue(MakeItem("hl7:10.1")).ok());
  CHECK(store->Enqueue(MakeItem("orphan", 9999)).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(store->Enqueue(MakeItem("")).code() == AIHUB_INVALID_ARGUMENT);
  CHECK(CountOf(AuditActions(*store), "outbox.enqueued") == 2);

  auto due = store->DueOutbox(10);
  REQUIRE(due.ok());
  REQUIRE(due->size() == 2);
  const OutboxItem sr = (*due)[0];
  CHECK(sr.idempotency_key == "sr:10.1");
  CHECK(sr.job_id == job);
  CHECK(sr.payload == std::string("DICM\0\x01\xff", 7));  // binary-safe
  CHECK(sr.state == "pending");
  CHECK((*due)[1].job_id == 0);
  CHECK(store->DueOutbox(1)->size() == 1);

  // 1 s, 2 s, 4 s, then dead at the 4th failure (max_attempts 4).
  const int expected_wait[] = {1, 2, 4};
  for (int attempt = 1; attempt <= 3; ++attempt) {
    CAPTURE(attempt);
    REQUIRE(store->MarkDeliveryFailed(sr.id, "503 from PACS", 4).ok());
    auto item = store->GetOutbox(sr.id);
    REQUIRE(item.ok());
    CHECK(item->state == "pending");
    CHECK(item->attempts == attempt);
    CHECK(item->last_error == "503 from PACS");
    CHECK(item->next_attempt_at == clock.Now() + seconds(expected_wait[attempt - 1]));
    CHECK(store->DueOutbox(10)->size() == 1);  // only the hl7 item
    clock.Advance(seconds(expected_wait[attempt - 1]));
    CHECK(store->DueOutbox(10)->size() == 2);
  }
  REQUIRE(store->MarkDeliveryFailed(sr.id, "503 from PACS", 4).ok());
  auto dead = store->GetOutbox(sr.id);
  REQUIRE(dead.ok());
  CHECK(dead->state == "dead");
  CHECK(dead->attempts == 4);
  clock.Advance(seconds(3600));
  due = store->DueOutbox(10);
  REQUIRE(due.ok());
  REQUIRE(due->size() == 1);
  CHECK((*due)[0].idempotency_key == "hl7:10.1");
  CHECK(store->MarkDeliveryFailed(sr.id, "x", 4).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(store->MarkDelivered(sr.id).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(store->Enqueue(MakeItem("sr:10.1", job)).ok());  // still a no-op: a dead item is not resurrected
  CHECK(store->GetOutbox(sr.id)->state == "dead");

  const int64_t hl7 = (*due)[0].id;
  REQUIRE(store->MarkDelivered(hl7).ok());
  REQUIRE(store->MarkDelivered(hl7).ok());  // idempotent
  CHECK(store->GetOutbox(hl7)->state == "delivered");
  CHECK(store->DueOutbox(10)->empty());
  CHECK(store->MarkDelivered(4242).code() == AIHUB_NOT_FOUND);

  auto actions = AuditActions(*store);
  CHECK(CountOf(actions, "outbox.failed") == 4);
  CHECK(CountOf(actions, "outbox.dead") == 1);
  CHECK(CountOf(actions, "outbox.delivered") == 1);
}

TEST_CASE("the outbox backoff is capped at ten minutes") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  REQUIRE(store->Enqueue(MakeItem("cap")).ok());
  const int64_t id = (*store->DueOutbox(1))[0].id;
  for (int attempt = 1; attempt <= 12; ++attempt) {
    REQUIRE(store->MarkDeliveryFailed(id, "down", 100).ok());
    auto item = store->GetOutbox(id);
    REQUIRE(item.ok());
    CHECK(item->next_attempt_at - clock.Now() ==
          std::min<std::chrono::system_clock::duration>(seconds(int64_t{1} << (attempt - 1)), seconds(600)));
  }
}

TEST_CASE("PendingOutbox lists items in backoff too, so a deliverer can keep order per destination") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  REQUIRE(store->Enqueue(MakeItem("hl7:1")).ok());
  REQUIRE(store->Enqueue(MakeItem("hl7:2")).ok());
  const int64_t first = (*store->DueOutbox(1))[0].id;
  REQUIRE(store->MarkDeliveryFailed(first, "peer down").ok());
  CHECK(store->DueOutbox(10)->size() == 1);          // the first waits for its retry
  auto pending = store->PendingOutbox(10);
  REQUIRE(pending.ok());
  REQUIRE(pending->size() == 2);
  CHECK((*pending)[0].idempotency_key == "hl7:1");   // still first in line
  CHECK((*pending)[0].next_attempt_at > clock.Now());
  REQUIRE(store->MarkDelivered((*pending)[1].id).ok());
  CHECK(store->PendingOutbox(10)->size() == 1);
}

TEST_CASE("adapter cursors start at 0, persist, and never move back") {
  TempDir dir;
  {
    auto store = MustOpen(dir.db());
    CHECK(*store->AdapterCursor("127.0.0.1:50052") == 0);
    REQUIRE(store->SetAdapterCursor("127.0.0.1:50052", 7).ok());
    REQUIRE(store->SetAdapterCursor("127.0.0.1:50052", 5).ok());
    REQUIRE(store->SetAdapterCursor("[::1]:50053", 2).ok());
  }
  auto store = MustOpen(dir.db());
  CHECK(*store->AdapterCursor("127.0.0.1:50052") == 7);
  CHECK(*store->AdapterCursor("[::1]:50053") == 2);
}

TEST_CASE("a new adapter event log id resets its cursor to 0, audited, the same id keeps it") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  REQUIRE(store->SetAdapterCursor("a:1", 9).ok());
  CHECK_FALSE(*store->NoteAdapterEventLog("a:1", "log-one"));   // first id seen: the cursor stays
  CHECK(*store->AdapterCursor("a:1") == 9);
  CHECK_FALSE(*store->NoteAdapterEventLog("a:1", "log-one"));
  CHECK(*store->AdapterCursor("a:1") == 9);
  CHECK(*store->NoteAdapterEventLog("a:1", "log-two"));          // the adapter's log was replaced
  CHECK(*store->AdapterCursor("a:1") == 0);
  CHECK(CountOf(AuditActions(*store), "adapter.event_log_changed") == 1);
  CHECK_FALSE(*store->NoteAdapterEventLog("b:2", "log-three"));   // an adapter never seen before
  CHECK(*store->AdapterCursor("b:2") == 0);
}

TEST_CASE("a version 1 database migrates to version 2 and keeps its data") {
  TempDir dir;
  const auto db = dir.db();
  {
    auto store = MustOpen(db);
    MustCreate(*store, MakeJob("10.7"));
  }
  // Make it look like a version 1 file: no adapter_cursors table, schema_version 1.
  REQUIRE(RawExec(db, "DROP TABLE adapter_cursors; UPDATE meta SET value = 1 WHERE key = 'schema_version'") ==
          SQLITE_OK);
  auto store = MustOpen(db);
  CHECK(store->schema_version() == 2);
  CHECK(store->ListJobs("10.7")->size() == 1);
  CHECK(store->SetAdapterCursor("a:1", 3).ok());
  CHECK(VerifyAudit(db)->ok);
}

TEST_CASE("a second Open on the same file sees everything the first committed") {
  TempDir dir;
  auto first = MustOpen(dir.db(), "otherhost:7");
  REQUIRE(first->UpsertStudy({"11.1", "folder:/in", R"({"Modality":"MR"})"}).ok());
  const int64_t done = MustCreate(*first, MakeJob("11.1"));
  const int64_t running = MustCreate(*first, MakeJob("11.1", "lung"));
  MustClaim(*first);
  REQUIRE(first->CompleteJob(done, R"({"ok":true})", "2.25.9").ok());
  MustClaim(*first);
  REQUIRE(first->Enqueue(MakeItem("k1", done)).ok());

  auto check = [&](JobStore& second) {
    CHECK(MustGet(second, done).state == JobState::kSucceeded);
    CHECK(MustGet(second, running).state == JobState::kRunning);
    CHECK(MustGet(second, running).lease_owner == "otherhost:7");
    auto result = second.GetResult(done);
    REQUIRE(result.ok());
    REQUIRE(result->has_value());
    CHECK(**result == R"({"ok":true})");
    auto due = second.DueOutbox(10);
    REQUIRE(due.ok());
    REQUIRE(due->size() == 1);
    CHECK((*due)[0].payload == MakeItem("k1").payload);
    auto a1 = first->ReadAudit();
    auto a2 = second.ReadAudit();
    REQUIRE(a1.ok());
    REQUIRE(a2.ok());
    CHECK(a1->size() == a2->size());
    CHECK(a1->back().hash == a2->back().hash);
  };
  SUBCASE("while the first is still open") { check(*MustOpen(dir.db())); }
  SUBCASE("after the first closed") {
    auto second = MustOpen(dir.db());
    first.reset();
    auto third = MustOpen(dir.db());
    CHECK(MustGet(*third, done).state == JobState::kSucceeded);
    CHECK(RawQuery(dir.db(), "SELECT count(*) FROM jobs") == "2");
  }
}

TEST_CASE("crash: a child killed while holding a job leaves it running and recovery puts it back") {
  TempDir dir;
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Only async-safe exits from here: no doctest, no destructors.
    auto store = JobStore::Open(dir.db(), "");
    if (!store.ok()) _exit(10);
    if (!(*store)->CreateJob(MakeJob("12.1")).ok()) _exit(11);
    auto claimed = (*store)->ClaimJob(seconds(3600));
    if (!claimed.ok() || !claimed->has_value()) _exit(12);
    raise(SIGKILL);
    _exit(13);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE_MESSAGE(WIFSIGNALED(status), "child exited with " << WEXITSTATUS(status));
  CHECK(WTERMSIG(status) == SIGKILL);

  auto store = MustOpen(dir.db());
  auto jobs = store->ListJobs();
  REQUIRE(jobs.ok());
  REQUIRE(jobs->size() == 1);
  const JobRecord& job = jobs->front();
  CHECK(job.state == JobState::kRunning);
  CHECK(job.lease_owner == HostOwner(child));
  CHECK(job.attempts == 1);

  auto n = store->RecoverInterruptedJobs();
  REQUIRE(n.ok());
  CHECK(*n == 1);
  CHECK(MustGet(*store, job.id).state == JobState::kPending);
  CHECK(MustClaim(*store).id == job.id);

  auto v = VerifyAudit(dir.db());
  REQUIRE(v.ok());
  CHECK(v->ok);
  CHECK(v->entries == 4);  // created, claimed (child), recovered, claimed (parent)
  CHECK(AuditActions(*store) ==
        std::vector<std::string>{"job.created", "job.claimed", "job.recovered", "job.claimed"});
}

// ---- untrusted bytes -------------------------------------------------------------------------------------

// Every TEXT value in the database file is valid UTF-8; names the offenders otherwise.
std::string InvalidTextIn(const std::filesystem::path& db) {
  std::string bad;
  ForEachTextValue(db, [&](const std::string& table, const std::string& column, const std::string& text) {
    if (!IsValidUtf8(text)) bad += table + "." + column + " ";
  });
  return bad;
}

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

TEST_CASE("a plugin error with invalid UTF-8 is stored sanitized, not thrown") {
  TempDir dir;
  FakeClock clock;
  auto store = MustOpen(dir.db());
  store->SetClockForTesting(clock.Fn());
  const int64_t id = MustCreate(*store, MakeJob("20.1"));
  MustClaim(*store);
  Status st = Status::Ok();
  CHECK_NOTHROW(st = store->FailJob(id, "plugin said \xff\xfe", true));
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  CHECK(MustGet(*store, id).error == "plugin said " + kReplacement + kReplacement);
  clock.Advance(seconds(10));
  MustClaim(*store);
  std::string error(300, 'x');
  error[7] = '\xc3';  // a truncated two-byte sequence
  CHECK_NOTHROW(st = store->FailJob(id, error, false));
  CHECK(st.ok());
  auto entries = store->ReadAudit();
  REQUIRE(entries.ok());
  int failed = 0;
  for (const AuditEntry& e : *entries) {
    if (e.action != "job.failed") continue;
    ++failed;
    CHECK(e.detail_json.find(kReplacement) != std::string::npos);
  }
  CHECK(failed == 2);
  CHECK_MESSAGE(InvalidTextIn(dir.db()).empty(), InvalidTextIn(dir.db()));
  auto v = VerifyAudit(dir.db());
  REQUIRE(v.ok());
  CHECK(v->ok);
}

TEST_CASE("invalid UTF-8 in job fields: identifiers are refused, free text is sanitized") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  NewJob job = MakeJob("21.1");
  job.series_uids = {"21.1.1", "21.1.\xE9"};
  StatusOr<int64_t> id = InvalidArgument("not run");
  CHECK_NOTHROW(id = store->CreateJob(job));
  CHECK(id.status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(id.status().message().find("series uid") != std::string::npos);
  job = MakeJob("21.1\xE9");
  CHECK_NOTHROW(id = store->CreateJob(job));
  CHECK(id.status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(RawQuery(dir.db(), "SELECT count(*) FROM jobs") == "0");
  CHECK(RawQuery(dir.db(), "SELECT count(*) FROM audit") == "0");

  job = MakeJob("21.2");
  job.department = "Radiolog\xED" "a";
  job.model_version = "v\xff";
  CHECK_NOTHROW(id = store->CreateJob(job));
  REQUIRE_MESSAGE(id.ok(), id.status().ToString());
  JobRecord rec = MustGet(*store, *id);
  CHECK(rec.department == "Radiolog" + kReplacement + "a");
  CHECK(rec.model_version == "v" + kReplacement);
  auto entries = store->ReadAudit();
  REQUIRE(entries.ok());
  CHECK(entries->back().detail_json.find("Radiolog" + kReplacement + "a") != std::string::npos);
  CHECK_MESSAGE(InvalidTextIn(dir.db()).empty(), InvalidTextIn(dir.db()));
}

TEST_CASE("invalid UTF-8 in study tags, sources, audit text and delivery errors is sanitized") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  Status st = Status::Ok();
  // A Latin-1 patient name in the tags, a Latin-1 folder name as the source.
  CHECK_NOTHROW(st = store->UpsertStudy({"22.1", "folder:/in/M\xFCller", "{\"PatientName\":\"M\xFCller^J\"}"}));
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  CHECK(RawQuery(dir.db(), "SELECT tags_json FROM studies") == "{\"PatientName\":\"M" + kReplacement + "ller^J\"}");
  CHECK(RawQuery(dir.db(), "SELECT source FROM studies") == "folder:/in/M" + kReplacement + "ller");
  CHECK(store->UpsertStudy({"22.\xFF", "", "{}"}).code() == AIHUB_INVALID_ARGUMENT);
  CHECK(store->UpsertStudy({"22.2", "", "{\"a\":\xFF}"}).code() == AIHUB_INVALID_ARGUMENT);  // still not JSON

  CHECK_NOTHROW(st = store->Audit("user:\xC0\xAF", "note\xED\xA0\x80", "22.1\xFE", "{\"text\":\"caf\xE9\"}"));
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  auto entries = store->ReadAudit();
  REQUIRE(entries.ok());
  REQUIRE_FALSE(entries->empty());
  CHECK(entries->back().actor == "user:" + kReplacement + kReplacement);
  CHECK(entries->back().detail_json == "{\"text\":\"caf" + kReplacement + "\"}");

  REQUIRE(store->Enqueue(MakeItem("sr:22.1")).ok());
  const int64_t out = (*store->DueOutbox(1))[0].id;
  CHECK_NOTHROW(st = store->MarkDeliveryFailed(out, "PACS said \xC3\x28", 2));
  REQUIRE(st.ok());
  CHECK(store->GetOutbox(out)->last_error == "PACS said " + kReplacement + "(");
  CHECK_NOTHROW(st = store->MarkDeliveryFailed(out, "again \x80", 2));  // dead-letter path too
  REQUIRE(st.ok());
  CHECK(store->Enqueue(MakeItem("sr:\xFF")).code() == AIHUB_INVALID_ARGUMENT);

  CHECK_MESSAGE(InvalidTextIn(dir.db()).empty(), InvalidTextIn(dir.db()));
  auto v = VerifyAudit(dir.db());
  REQUIRE(v.ok());
  CHECK(v->ok);
}

// ---- deliveries in the completing transaction ----------------------------------------------------------------

TEST_CASE("CompleteJob writes the result, the state and the deliveries in one transaction") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  const int64_t other = MustCreate(*store, MakeJob("23.0"));
  const int64_t id = MustCreate(*store, MakeJob("23.1"));
  REQUIRE(store->Enqueue(MakeItem("hl7:23.1")).ok());  // enqueued earlier: the delivery with this key is a no-op
  JobRecord first = MustClaim(*store);
  REQUIRE(first.id == other);
  REQUIRE(store->CompleteJob(first.lease(), "{}", "2.25.230").ok());  // no deliveries
  JobRecord job = MustClaim(*store);
  REQUIRE(job.id == id);

  std::vector<OutboxItem> deliveries = {MakeItem("sr:23.1", /*job_id=*/other), MakeItem("fhir:23.1"),
                                        MakeItem("hl7:23.1")};
  deliveries[1].kind = "fhir";

  SUBCASE("all or nothing: a failing outbox insert leaves the job running without a result") {
    REQUIRE(RawExec(dir.db(), "CREATE TRIGGER outbox_block BEFORE INSERT ON outbox "
                              "WHEN NEW.idempotency_key = 'fhir:23.1' BEGIN SELECT RAISE(ABORT, 'disk full'); END;") ==
            SQLITE_OK);
    const size_t audit_before = store->ReadAudit()->size();
    CHECK_FALSE(store->CompleteJob(job.lease(), R"({"findings":[]})", "2.25.231", deliveries).ok());
    CHECK(MustGet(*store, id).state == JobState::kRunning);
    CHECK_FALSE(store->GetResult(id)->has_value());
    CHECK(RawQuery(dir.db(), "SELECT count(*) FROM outbox") == "1");
    CHECK(store->ReadAudit()->size() == audit_before);
    REQUIRE(RawExec(dir.db(), "DROP TRIGGER outbox_block") == SQLITE_OK);
  }
  SUBCASE("invalid deliveries are refused before anything is written") {
    std::vector<OutboxItem> bad = deliveries;
    bad[2].idempotency_key = "";
    CHECK(store->CompleteJob(job.lease(), "{}", "2.25.231", bad).code() == AIHUB_INVALID_ARGUMENT);
    CHECK(MustGet(*store, id).state == JobState::kRunning);
  }

  REQUIRE(store->CompleteJob(job.lease(), R"({"findings":[]})", "2.25.231", deliveries).ok());
  CHECK(MustGet(*store, id).state == JobState::kSucceeded);
  REQUIRE(store->GetResult(id)->has_value());
  auto due = store->DueOutbox(10);
  REQUIRE(due.ok());
  REQUIRE(due->size() == 3);
  CHECK((*due)[0].idempotency_key == "hl7:23.1");
  CHECK((*due)[0].job_id == 0);  // the earlier item is left as it was
  CHECK((*due)[1].idempotency_key == "sr:23.1");
  CHECK((*due)[1].job_id == id);  // always this job, whatever the item said
  CHECK((*due)[2].idempotency_key == "fhir:23.1");
  CHECK((*due)[2].kind == "fhir");
  CHECK((*due)[2].job_id == id);
  auto actions = AuditActions(*store);
  REQUIRE(actions.size() >= 3);
  CHECK(std::vector<std::string>(actions.end() - 3, actions.end()) ==
        std::vector<std::string>{"job.succeeded", "outbox.enqueued", "outbox.enqueued"});
  CHECK(store->CompleteJob(job.lease(), "{}", "2.25.231", deliveries).code() == AIHUB_FAILED_PRECONDITION);
  auto v = VerifyAudit(dir.db());
  REQUIRE(v.ok());
  CHECK(v->ok);
}

TEST_CASE("the by-id CompleteJob forms still work, with and without deliveries") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  const int64_t a = MustCreate(*store, MakeJob("24.1"));
  const int64_t b = MustCreate(*store, MakeJob("24.2"));
  MustClaim(*store);
  MustClaim(*store);
  REQUIRE(store->CompleteJob(a, "{}", "2.25.241").ok());
  REQUIRE(store->CompleteJob(b, "{}", "2.25.242", std::vector<OutboxItem>{MakeItem("sr:24.2")}).ok());
  auto due = store->DueOutbox(10);
  REQUIRE(due.ok());
  REQUIRE(due->size() == 1);
  CHECK((*due)[0].job_id == b);
}

// ---- lease fencing ---------------------------------------------------------------------------------------------

TEST_CASE("every claim gets its own lease token, and only that token acts on the job") {
  TempDir dir;
  auto store = MustOpen(dir.db());
  const int64_t id = MustCreate(*store, MakeJob("25.1"));
  MustCreate(*store, MakeJob("25.2"));
  JobRecord first = MustClaim(*store);
  JobRecord second = MustClaim(*store);
  CHECK_FALSE(first.lease_token.empty());
  CHECK(first.lease_token != second.lease_token);
  CHECK(MustGet(*store, id).lease_token == first.lease_token);
  CHECK(first.lease().job_id == id);

  JobLease wrong = first.lease();
  wrong.token = second.lease_token;
  Status st = store->CompleteJob(wrong, "{}", "2.25.1");
  CHECK(st.code() == AIHUB_FAILED_PRECONDITION);
  CHECK(st.message().find("lease lost") != std::string::npos);
  CHECK(store->FailJob(wrong, "x", true).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(store->RenewLease(wrong, seconds(60)).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(store->RepinJob(wrong, "2", "m", std::string(64, 'b')).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(store->CompleteJob(JobLease{id, ""}, "{}", "2.25.1").code() == AIHUB_INVALID_ARGUMENT);
  CHECK(store->CompleteJob(JobLease{4242, first.lease_token}, "{}", "2.25.1").code() == AIHUB_NOT_FOUND);
  REQUIRE(store->RepinJob(first.lease(), "1.3.0", "m8", std::string(64, 'c')).ok());
  REQUIRE(store->CompleteJob(first.lease(), "{}", "2.25.1").ok());
  REQUIRE(store->FailJob(second.lease(), "bad output", false).ok());
}

TEST_CASE("a stale worker cannot finish a job that was recovered and claimed again") {
  TempDir dir;
  FakeClock clock;
  // The worker runs in this process; its job outlives the lease without renewal.
  auto worker = MustOpen(dir.db());
  auto other = MustOpen(dir.db(), "otherhost:77");
  worker->SetClockForTesting(clock.Fn());
  other->SetClockForTesting(clock.Fn());
  const int64_t id = MustCreate(*worker, MakeJob("26.1"));
  const JobRecord stale = MustClaim(*worker, seconds(60));

  clock.Advance(seconds(61));
  auto n = other->RecoverInterruptedJobs();  // another Open sees a lease it cannot vouch for
  REQUIRE(n.ok());
  REQUIRE(*n == 1);
  const JobRecord fresh = MustClaim(*worker, seconds(60));  // a second worker of the same process takes it
  REQUIRE(fresh.id == id);
  CHECK(fresh.attempts == 2);

  Status st = worker->CompleteJob(stale.lease(), R"({"stale":true})", "2.25.261");
  CHECK(st.code() == AIHUB_FAILED_PRECONDITION);
  CHECK(st.message().find("lease lost") != std::string::npos);
  CHECK(worker->FailJob(stale.lease(), "late", true).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(worker->RenewLease(stale.lease(), seconds(60)).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(MustGet(*worker, id).state == JobState::kRunning);
  CHECK_FALSE(worker->GetResult(id)->has_value());

  REQUIRE(worker->CompleteJob(fresh.lease(), R"({"fresh":true})", "2.25.262").ok());
  CHECK(**worker->GetResult(id) == R"({"fresh":true})");
}

TEST_CASE("a store never recovers the jobs it claimed itself, even past their lease") {
  TempDir dir;
  FakeClock clock;
  for (const std::string& owner : {std::string(), std::string("otherhost:5")}) {
    CAPTURE(owner);
    auto store = MustOpen(dir.db(), owner);
    store->SetClockForTesting(clock.Fn());
    const int64_t id = MustCreate(*store, MakeJob("27." + std::to_string(owner.size())));
    const JobRecord job = MustClaim(*store, seconds(60));
    REQUIRE(job.id == id);
    clock.Advance(seconds(3600));
    auto n = store->RecoverInterruptedJobs();
    REQUIRE(n.ok());
    CHECK(*n == 0);
    CHECK(MustGet(*store, id).state == JobState::kRunning);
    REQUIRE(store->CompleteJob(job.lease(), "{}", "2.25.27").ok());
  }
}

TEST_CASE("a renewed lease is not recovered, an unrenewed one is") {
  TempDir dir;
  FakeClock clock;
  auto worker = MustOpen(dir.db(), "otherhost:4243");
  auto host = MustOpen(dir.db());
  worker->SetClockForTesting(clock.Fn());
  host->SetClockForTesting(clock.Fn());
  const int64_t id = MustCreate(*worker, MakeJob("28.1"));
  const JobRecord job = MustClaim(*worker, seconds(60));
  for (int i = 0; i < 5; ++i) {  // 5 x 50 s: far past the first lease
    clock.Advance(seconds(50));
    REQUIRE(worker->RenewLease(job.lease(), seconds(60)).ok());
    auto n = host->RecoverInterruptedJobs();
    REQUIRE(n.ok());
    CHECK(*n == 0);
  }
  CHECK(MustGet(*host, id).lease_until == clock.Now() + seconds(60));
  CHECK(host->RenewLease(job.lease(), seconds(60)).ok());  // the token, not the store, names the claim
  clock.Advance(seconds(61));
  auto n = host->RecoverInterruptedJobs();
  REQUIRE(n.ok());
  CHECK(*n == 1);
  CHECK(worker->RenewLease(job.lease(), seconds(60)).code() == AIHUB_FAILED_PRECONDITION);
}

}  // namespace
}  // namespace aihub::store

namespace aihub::store {

TEST_CASE("ReleaseJob puts a stopped job back at once without counting the attempt") {
  testing::TempDir dir;
  auto store = MustOpen(dir.db());
  MustCreate(*store, MakeJob("9.1"));
  auto claimed = store->ClaimJob(std::chrono::seconds(60));
  REQUIRE(claimed.ok());
  REQUIRE(claimed->has_value());
  const JobRecord job = **claimed;
  REQUIRE(job.attempts == 1);

  JobLease stale = job.lease();
  stale.token = "not-the-token";
  CHECK(store->ReleaseJob(stale, "x").code() == AIHUB_FAILED_PRECONDITION);

  REQUIRE(store->ReleaseJob(job.lease(), "host stopping").ok());
  auto after = store->GetJob(job.id);
  REQUIRE(after.ok());
  CHECK(after->state == JobState::kPending);
  CHECK(after->attempts == 0);
  auto again = store->ClaimJob(std::chrono::seconds(60));  // runnable now: no backoff
  REQUIRE(again.ok());
  REQUIRE(again->has_value());
  CHECK((**again).id == job.id);
  CHECK(store->ReleaseJob(job.lease(), "old claim").code() == AIHUB_FAILED_PRECONDITION);

  auto audit = store->ReadAudit();
  REQUIRE(audit.ok());
  bool released = false;
  for (const AuditEntry& e : *audit) released |= e.action == "job.released";
  CHECK(released);
  auto v = VerifyAudit(dir.db());
  REQUIRE(v.ok());
  CHECK(v->ok);
}

}  // namespace aihub::store

namespace aihub::store {

TEST_CASE("RecordRouting stores a study, its jobs and the decision together, or nothing") {
  testing::TempDir dir;
  auto store = MustOpen(dir.db());
  const StudyRecord study{"7.1", "/data/in", "{\"Modality\":\"CT\"}"};
  auto ids = store->RecordRouting(study, {MakeJob("7.1", "ich"), MakeJob("7.1", "pe")}, "{\"department\":\"er\"}");
  REQUIRE(ids.ok());
  REQUIRE(ids->size() == 2);
  CHECK(store->GetStudy("7.1")->value().source == "/data/in");
  CHECK(store->ListJobs("7.1")->size() == 2);
  CHECK(CountOf(AuditActions(*store), "study.routed") == 1);

  // Routed again: the same ids, no new jobs.
  auto again = store->RecordRouting(study, {MakeJob("7.1", "ich"), MakeJob("7.1", "pe")}, "{}");
  REQUIRE(again.ok());
  CHECK(*again == *ids);
  CHECK(store->ListJobs("7.1")->size() == 2);

  // One bad job: nothing of the call is stored.
  NewJob bad = MakeJob("8.1", "ich");
  bad.plugin_version = "";
  auto refused = store->RecordRouting({"8.1", "/data/other", "{}"}, {MakeJob("8.1", "pe"), bad}, "{}");
  CHECK_FALSE(refused.ok());
  CHECK_FALSE(store->GetStudy("8.1")->has_value());
  CHECK(store->ListJobs("8.1")->empty());
  CHECK(CountOf(AuditActions(*store), "study.routed") == 2);
  auto v = VerifyAudit(dir.db());
  REQUIRE(v.ok());
  CHECK(v->ok);
}

}  // namespace aihub::store
