// Tests of adapter/core/study_tracker: completion by quiet time and by count with an injected clock, the event's
// tags from the spooled files, and waking watchers.
#include "core/study_tracker.h"

#include <doctest/doctest.h>

#include <chrono>
#include <future>

#include "test_util.h"

namespace aihub::adapter {
namespace {

namespace fs = std::filesystem;
using testing::AddSlice;
using testing::kSeriesA;
using testing::kSeriesB;
using testing::kStudy;
using testing::Slice;
using testing::TempDir;

struct Fixture {
  TempDir tmp;
  std::unique_ptr<Spool> spool;
  Fixture() {
    auto s = Spool::Open(tmp / "spool");
    REQUIRE_MESSAGE(s.ok(), s.status().ToString());
    spool = std::move(s).value();
  }
  std::vector<v1::StudyEvent> Events(uint64_t after = 0) {
    auto stored = spool->EventsAfter(after, 100);
    REQUIRE(stored.ok());
    std::vector<v1::StudyEvent> out;
    for (const StoredEvent& s : *stored) {
      v1::StudyEvent e;
      REQUIRE(e.ParseFromString(s.event_bytes));
      out.push_back(e);
    }
    return out;
  }
};

const v1::SeriesInfo* FindSeries(const v1::StudyEvent& e, const std::string& uid) {
  for (const v1::SeriesInfo& s : e.series()) {
    if (s.series_instance_uid() == uid) return &s;
  }
  return nullptr;
}

TEST_CASE("a study completes by quiet time only after stable_seconds, with tags and counts from its files") {
  Fixture f;
  StudyTracker tracker(*f.spool, 5.0);
  const std::map<DcmTagKey, std::string> tags = {{DCM_InstitutionalDepartmentName, "EMERGENCY"},
                                                 {DCM_AccessionNumber, "ACC42"},
                                                 {DCM_BodyPartExamined, "HEAD"}};
  const std::string a1 = AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 10000, "CT_ER1", tags);
  const std::string a2 = AddSlice(*f.spool, Slice(kStudy, kSeriesA, 2, 8), 10500, "CT_ER1", tags);
  const std::string b1 = AddSlice(*f.spool, Slice(kStudy, kSeriesB, 1), 11000, "CT_ER1",
                                  {{DCM_InstitutionalDepartmentName, "EMERGENCY"}, {DCM_Modality, "MR"}});

  auto done = tracker.CheckOnce(11000 + 4999);
  REQUIRE(done.ok());
  CHECK(*done == 0);
  CHECK(f.Events().empty());
  CHECK(f.spool->OpenStudies()->size() == 1);

  done = tracker.CheckOnce(11000 + 5000);
  REQUIRE(done.ok());
  CHECK(*done == 1);
  CHECK(f.spool->OpenStudies()->empty());
  const auto events = f.Events();
  REQUIRE(events.size() == 1);
  const v1::StudyEvent& e = events.front();
  CHECK(e.cursor() == 1);
  CHECK(e.generation() == 1);
  CHECK(e.trigger() == v1::TRIGGER_CSTORE_STABLE);
  CHECK(e.study_instance_uid() == kStudy);
  CHECK(e.calling_ae() == "CT_ER1");
  CHECK(e.hl7_location().empty());
  CHECK(e.last_instance_unix_ms() == 11000);
  CHECK(e.completed_unix_ms() == 16000);

  const auto& st = e.study_tags();
  CHECK(st.count("StudyInstanceUID") == 1);
  CHECK(st.at("StudyInstanceUID") == kStudy);
  REQUIRE(st.count("InstitutionalDepartmentName") == 1);
  CHECK(st.at("InstitutionalDepartmentName") == "EMERGENCY");
  CHECK(st.at("AccessionNumber") == "ACC42");
  CHECK(st.at("PatientID") == "P1");
  CHECK(st.count("Modality") == 0);   // series level

  REQUIRE(e.series_size() == 2);
  const v1::SeriesInfo* a = FindSeries(e, kSeriesA);
  const v1::SeriesInfo* b = FindSeries(e, kSeriesB);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(a->instance_count() == 2);
  CHECK(a->total_bytes() == a1.size() + a2.size());
  CHECK(b->instance_count() == 1);
  CHECK(b->total_bytes() == b1.size());
  REQUIRE(a->tags().count("Modality") == 1);
  CHECK(a->tags().at("Modality") == "CT");
  CHECK(a->tags().at("BodyPartExamined") == "HEAD");
  CHECK(a->tags().at("SeriesInstanceUID") == kSeriesA);
  CHECK(b->tags().at("Modality") == "MR");

  // Nothing left to complete.
  CHECK(tracker.CheckOnce(100000).value() == 0);
}

TEST_CASE("a study completes by count as soon as the expected instances are there, quiet or not") {
  Fixture f;
  StudyTracker tracker(*f.spool, 3600.0);
  REQUIRE(f.spool->NoteExpectation(kStudy, 3, "ER^BAY1").ok());
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 1000, "CT_ER1");
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 2), 1001, "CT_ER1");
  CHECK(tracker.CheckOnce(1002).value() == 0);
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 3), 1003, "CT_ER1");
  CHECK(tracker.CheckOnce(1003).value() == 1);
  const auto events = f.Events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].trigger() == v1::TRIGGER_CSTORE_COUNT);
  CHECK(events[0].hl7_location() == "ER^BAY1");
  CHECK(events[0].calling_ae() == "CT_ER1");
  REQUIRE(events[0].series_size() == 1);
  CHECK(events[0].series(0).instance_count() == 3);
}

TEST_CASE("late instances re-open a study: the next completion is generation 2 with a later cursor") {
  Fixture f;
  StudyTracker tracker(*f.spool, 5.0);
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 1000);
  REQUIRE(tracker.CheckOnce(6000).value() == 1);
  AddSlice(*f.spool, Slice(kStudy, kSeriesB, 1), 7000);
  CHECK(tracker.CheckOnce(11999).value() == 0);
  REQUIRE(tracker.CheckOnce(12000).value() == 1);
  const auto events = f.Events();
  REQUIRE(events.size() == 2);
  CHECK(events[1].generation() == 2);
  CHECK(events[1].cursor() > events[0].cursor());
  CHECK(events[1].series_size() == 2);   // the whole study, both series
}

// An expected count is the study's total (HL7 order, QIDO NumberOfStudyRelatedInstances). Once a completion met
// it, late instances re-open the study and must be grouped by quiet time into one new generation, not complete it
// again on every single instance (each generation is a full re-run of the study on the host).
TEST_CASE("late instances after a count completion wait for quiet time instead of completing one by one") {
  Fixture f;
  StudyTracker tracker(*f.spool, 5.0);
  REQUIRE(f.spool->NoteExpectation(kStudy, 3, "").ok());
  for (int i = 1; i <= 3; ++i) AddSlice(*f.spool, Slice(kStudy, kSeriesA, i), 1000);
  REQUIRE(tracker.CheckOnce(1000).value() == 1);
  for (int i = 1; i <= 3; ++i) {
    AddSlice(*f.spool, Slice(kStudy, kSeriesB, i), 2000 + i);
    CHECK(tracker.CheckOnce(2000 + i).value() == 0);
  }
  CHECK(tracker.CheckOnce(7002).value() == 0);
  CHECK(tracker.CheckOnce(7003).value() == 1);
  const auto events = f.Events();
  REQUIRE(events.size() == 2);
  CHECK(events[0].trigger() == v1::TRIGGER_CSTORE_COUNT);
  CHECK(events[1].generation() == 2);
  CHECK(events[1].trigger() == v1::TRIGGER_CSTORE_STABLE);
  CHECK(events[1].series_size() == 2);
}

TEST_CASE("an expected count not met by a quiet-time completion still completes the next generation by count") {
  Fixture f;
  StudyTracker tracker(*f.spool, 5.0);
  REQUIRE(f.spool->NoteExpectation(kStudy, 4, "").ok());
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 1000);
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 2), 1000);
  REQUIRE(tracker.CheckOnce(6000).value() == 1);   // quiet: 2 of 4
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 3), 7000);
  CHECK(tracker.CheckOnce(7000).value() == 0);
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 4), 7001);
  CHECK(tracker.CheckOnce(7001).value() == 1);     // 4 of 4, not quiet
  const auto events = f.Events();
  REQUIRE(events.size() == 2);
  CHECK(events[0].trigger() == v1::TRIGGER_CSTORE_STABLE);
  CHECK(events[1].trigger() == v1::TRIGGER_CSTORE_COUNT);
  CHECK(events[1].generation() == 2);
  CHECK(events[1].series(0).instance_count() == 4);
}

// The tracker builds the event from the spooled files, then closes the study with it. An instance that is
// spooled in between (a C-STORE racing a count completion or CompleteNow) has been acknowledged to its sender,
// so it must not end up in a closed study whose event does not list it: no event would ever announce it.
TEST_CASE("an instance spooled while a completion event is being built is not closed out unannounced") {
  Fixture f;
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 1000);
  auto event = BuildStudyEvent(*f.spool, kStudy, v1::TRIGGER_CSTORE_COUNT, "", "", 1000);
  REQUIRE(event.ok());
  REQUIRE(event->series_size() == 1);
  AddSlice(*f.spool, Slice(kStudy, kSeriesB, 1), 1001);   // arrives between building and closing
  auto stored = f.spool->CompleteStudy(kStudy, event->SerializeAsString(), 1002);

  bool announced = false;
  if (stored.ok()) {
    v1::StudyEvent e;
    REQUIRE(e.ParseFromString(stored->event_bytes));
    for (const v1::SeriesInfo& s : e.series()) announced = announced || s.series_instance_uid() == kSeriesB;
  }
  auto open = f.spool->OpenStudies();
  REQUIRE(open.ok());
  const bool still_open = !open->empty();
  CHECK_MESSAGE((announced || still_open),
                "the late series is in no event and the study is closed: it would never be announced");
}

TEST_CASE("CompleteNow completes with the given trigger and context, a study without instances is NOT_FOUND") {
  Fixture f;
  StudyTracker tracker(*f.spool, 3600.0);
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 1000);
  auto stored = tracker.CompleteNow(kStudy, v1::TRIGGER_HL7_ORDER, "", "ICU^3");
  REQUIRE_MESSAGE(stored.ok(), stored.status().ToString());
  CHECK(stored->generation == 1);
  v1::StudyEvent e;
  REQUIRE(e.ParseFromString(stored->event_bytes));
  CHECK(e.trigger() == v1::TRIGGER_HL7_ORDER);
  CHECK(e.hl7_location() == "ICU^3");
  CHECK(e.cursor() == stored->cursor);
  CHECK(tracker.CompleteNow("1.2.3.4", v1::TRIGGER_STOW, "", "").status().code() == AIHUB_NOT_FOUND);
  CHECK(tracker.WaitForEventAfter(0, 0) == stored->cursor);
}

TEST_CASE("WaitForEventAfter wakes on a completion from another thread and times out without one") {
  Fixture f;
  StudyTracker tracker(*f.spool, 5.0);
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 1000);

  const auto start = std::chrono::steady_clock::now();
  auto waiter = std::async(std::launch::async, [&] { return tracker.WaitForEventAfter(0, 4000); });
  // Complete from this thread while the other waits (or before it starts waiting: then it returns at once).
  REQUIRE(tracker.CheckOnce(6000).value() == 1);
  REQUIRE(waiter.wait_for(std::chrono::seconds(4)) == std::future_status::ready);
  CHECK(waiter.get() == 1);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));

  // No newer event: returns the newest cursor after the timeout.
  const auto before = std::chrono::steady_clock::now();
  CHECK(tracker.WaitForEventAfter(1, 50) == 1);
  CHECK(std::chrono::steady_clock::now() - before >= std::chrono::milliseconds(40));
}

TEST_CASE("a started tracker completes a study by count when poked, and picks up the spool's last cursor") {
  Fixture f;
  {
    // Events of an earlier run: a new tracker starts from the spool's newest cursor.
    StudyTracker earlier(*f.spool, 5.0);
    AddSlice(*f.spool, Slice("1.2.826.0.1.3680043.9.7777.31", "1.2.826.0.1.3680043.9.7777.31.1", 1), 1000);
    REQUIRE(earlier.CheckOnce(10000).value() == 1);
  }
  StudyTracker tracker(*f.spool, 3600.0);
  CHECK(tracker.WaitForEventAfter(0, 0) == 1);
  tracker.Start();
  REQUIRE(f.spool->NoteExpectation(kStudy, 1, "").ok());
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), NowUnixMs());
  tracker.Poke();
  CHECK(tracker.WaitForEventAfter(1, 4000) == 2);
  tracker.Stop();
  const auto events = f.Events(1);
  REQUIRE(events.size() == 1);
  CHECK(events[0].trigger() == v1::TRIGGER_CSTORE_COUNT);
  tracker.Stop();   // idempotent
}

}  // namespace
}  // namespace aihub::adapter
