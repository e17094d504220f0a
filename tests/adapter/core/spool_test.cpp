// Tests of adapter/core/spool: instance files, open studies, the event log, idempotency keys and orders, and that
// all of it survives reopening the spool.
#include "core/spool.h"

#include <doctest/doctest.h>

#include "aihub/v1/adapter.pb.h"
#include "test_util.h"

namespace aihub::adapter {
namespace {

namespace fs = std::filesystem;
using testing::AddSlice;
using testing::kSeriesA;
using testing::kSeriesB;
using testing::kStudy;
using testing::Slice;
using testing::SpooledPath;
using testing::TempDir;

std::unique_ptr<Spool> OpenSpool(const fs::path& dir) {
  auto spool = Spool::Open(dir);
  REQUIRE_MESSAGE(spool.ok(), spool.status().ToString());
  return std::move(spool).value();
}

std::string EventBytes(const std::string& study) {
  v1::StudyEvent e;
  e.set_study_instance_uid(study);
  e.set_trigger(v1::TRIGGER_CSTORE_STABLE);
  return e.SerializeAsString();
}

TEST_CASE("AddInstance moves the file to files/<study>/<series>/<sop>.dcm and records it") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  const fs::path temp = spool->IncomingPath();
  CHECK(temp.parent_path() == spool->dir() / "incoming");
  testing::WriteInstance(Slice(kStudy, kSeriesA, 1), temp);
  const std::string bytes = testing::ReadAll(temp);
  const std::string sop = std::string(kSeriesA) + ".1";

  REQUIRE(spool->AddInstance({temp, kStudy, kSeriesA, sop, "CT_ER1", static_cast<int64_t>(bytes.size())}, 1000).ok());
  CHECK_FALSE(fs::exists(temp));
  const fs::path target = SpooledPath(*spool, kStudy, kSeriesA, sop);
  REQUIRE(fs::exists(target));
  CHECK(testing::ReadAll(target) == bytes);
  CHECK(fs::is_empty(spool->dir() / "incoming"));

  auto instances = spool->Instances(kStudy);
  REQUIRE(instances.ok());
  REQUIRE(instances->size() == 1);
  CHECK(instances->front().sop_uid == sop);
  CHECK(instances->front().series_uid == kSeriesA);
  CHECK(instances->front().path == target);
  CHECK(instances->front().size == static_cast<int64_t>(bytes.size()));

  auto open = spool->OpenStudies();
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  CHECK(open->front().study_uid == kStudy);
  CHECK(open->front().instances == 1);
  CHECK(open->front().last_instance_ms == 1000);
  CHECK(open->front().calling_ae == "CT_ER1");
}

TEST_CASE("WriteIncoming writes a received Part 10 file and reads its UIDs; what is not DICOM leaves no file") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  const fs::path source = tmp / "slice.dcm";
  testing::WriteInstance(Slice(kStudy, kSeriesA, 3), source);
  const std::string bytes = testing::ReadAll(source);

  auto written = spool->WriteIncoming(bytes);
  REQUIRE_MESSAGE(written.ok(), written.status().ToString());
  CHECK(written->temp_file.parent_path() == spool->dir() / "incoming");
  CHECK(testing::ReadAll(written->temp_file) == bytes);
  CHECK(written->uids.study_uid == kStudy);
  CHECK(written->uids.series_uid == kSeriesA);
  CHECK(written->uids.sop_uid == std::string(kSeriesA) + ".3");
  CHECK_FALSE(written->uids.sop_class_uid.empty());
  CHECK(written->bytes == static_cast<int64_t>(bytes.size()));
  REQUIRE(spool->AddInstance(written->Incoming(""), 1000).ok());
  CHECK(fs::exists(SpooledPath(*spool, kStudy, kSeriesA, written->uids.sop_uid)));

  for (const std::string& bad : {std::string("not a DICOM file"), bytes.substr(0, 200), std::string()}) {
    auto refused = spool->WriteIncoming(bad);
    CHECK(refused.status().code() == AIHUB_INVALID_ARGUMENT);
  }
  CHECK(fs::is_empty(spool->dir() / "incoming"));

  // A SOP Class UID that is not a UID (here bytes that are not even UTF-8) is dropped: it is echoed to senders in
  // JSON, which must not fail on it. The instance itself is kept.
  const fs::path odd = tmp / "odd-class.dcm";
  testing::WriteInstance(Slice(kStudy, kSeriesA, 4), odd, {{DCM_SOPClassUID, std::string("1.2.\xff\xfe", 6)}});
  auto kept = spool->WriteIncoming(testing::ReadAll(odd));
  REQUIRE_MESSAGE(kept.ok(), kept.status().ToString());
  CHECK(kept->uids.sop_uid == std::string(kSeriesA) + ".4");
  CHECK(kept->uids.sop_class_uid.empty());
}

TEST_CASE("a SOP instance received again replaces the file and keeps one row") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  testing::SliceSpec first = Slice(kStudy, kSeriesA, 1, 4);
  testing::SliceSpec second = Slice(kStudy, kSeriesA, 1, 8);   // same SOP UID, bigger image
  const std::string a = AddSlice(*spool, first, 1000);
  const std::string b = AddSlice(*spool, second, 2000);
  REQUIRE(a != b);
  auto instances = spool->Instances(kStudy);
  REQUIRE(instances.ok());
  REQUIRE(instances->size() == 1);
  CHECK(instances->front().size == static_cast<int64_t>(b.size()));
  CHECK(testing::ReadAll(instances->front().path) == b);
  CHECK(testing::CountFiles(spool->dir() / "files") == 1);
  auto open = spool->OpenStudies();
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  CHECK(open->front().instances == 1);
  CHECK(open->front().last_instance_ms == 2000);
}

TEST_CASE("a SOP instance received again under another series moves: the old file does not stay behind") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  testing::SliceSpec first = Slice(kStudy, kSeriesA, 1);
  testing::SliceSpec moved = Slice(kStudy, kSeriesB, 1);
  moved.sop_uid = testing::SopOf(first);
  AddSlice(*spool, first, 1000);
  AddSlice(*spool, moved, 2000);
  CHECK_FALSE(fs::exists(testing::SpooledPath(*spool, kStudy, kSeriesA, testing::SopOf(first))));
  CHECK(fs::exists(testing::SpooledPath(*spool, kStudy, kSeriesB, testing::SopOf(first))));
  CHECK(testing::CountFiles(spool->dir() / "files") == 1);
  auto instances = spool->Instances(kStudy);
  REQUIRE(instances.ok());
  REQUIRE(instances->size() == 1);
  CHECK(instances->front().series_uid == kSeriesB);
}

TEST_CASE("AddInstance fails for a missing temporary file and records nothing") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  const fs::path temp = spool->IncomingPath();   // never written
  CHECK_FALSE(spool->AddInstance({temp, kStudy, kSeriesA, "1.2.3", "", 10}, 1000).ok());
  auto instances = spool->Instances(kStudy);
  REQUIRE(instances.ok());
  CHECK(instances->empty());
  auto open = spool->OpenStudies();
  REQUIRE(open.ok());
  CHECK(open->empty());
}

TEST_CASE("a completed study re-opens on a late instance and completes again as the next generation") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  AddSlice(*spool, Slice(kStudy, kSeriesA, 1), 1000);
  AddSlice(*spool, Slice(kStudy, kSeriesA, 2), 1100);
  CHECK(spool->HasCompleted(kStudy).value() == false);

  auto first = spool->CompleteStudy(kStudy, EventBytes(kStudy), 2000);
  REQUIRE_MESSAGE(first.ok(), first.status().ToString());
  CHECK(first->generation == 1);
  CHECK(first->cursor == 1);
  CHECK(first->study_uid == kStudy);
  CHECK(spool->OpenStudies()->empty());
  CHECK(spool->HasCompleted(kStudy).value());
  CHECK(spool->LastCursor().value() == 1);

  AddSlice(*spool, Slice(kStudy, kSeriesB, 1), 3000);   // late
  auto open = spool->OpenStudies();
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  CHECK(open->front().last_instance_ms == 3000);

  auto second = spool->CompleteStudy(kStudy, EventBytes(kStudy), 4000);
  REQUIRE(second.ok());
  CHECK(second->generation == 2);
  CHECK(second->cursor > first->cursor);
  CHECK(spool->LastCursor().value() == second->cursor);
  CHECK(spool->Instances(kStudy)->size() == 3);

  // The stored event carries the cursor, generation and completion time the spool assigned.
  v1::StudyEvent e;
  REQUIRE(e.ParseFromString(second->event_bytes));
  CHECK(e.cursor() == second->cursor);
  CHECK(e.generation() == 2);
  CHECK(e.completed_unix_ms() == 4000);
  CHECK(e.study_instance_uid() == kStudy);
  CHECK(e.trigger() == v1::TRIGGER_CSTORE_STABLE);
}

TEST_CASE("CompleteStudy refuses unknown studies and unparsable events without using up a generation") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  CHECK(spool->CompleteStudy("1.2.3.4", EventBytes("1.2.3.4"), 1).status().code() == AIHUB_NOT_FOUND);
  AddSlice(*spool, Slice(kStudy, kSeriesA, 1), 1000);
  auto bad = spool->CompleteStudy(kStudy, std::string("\xff\xff\xff", 3), 2000);
  CHECK(bad.status().code() == AIHUB_INVALID_ARGUMENT);
  // The failed call rolled back: the study is still open and the next completion is generation 1, cursor 1.
  CHECK(spool->OpenStudies()->size() == 1);
  CHECK(spool->LastCursor().value() == 0);
  auto good = spool->CompleteStudy(kStudy, EventBytes(kStudy), 3000);
  REQUIRE(good.ok());
  CHECK(good->generation == 1);
  CHECK(good->cursor == 1);
}

TEST_CASE("EventsAfter resumes after a cursor, oldest first, within the limit") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  const std::string studies[] = {"1.2.826.0.1.3680043.9.7777.11", "1.2.826.0.1.3680043.9.7777.12",
                                 "1.2.826.0.1.3680043.9.7777.13"};
  std::vector<uint64_t> cursors;
  for (const std::string& s : studies) {
    AddSlice(*spool, Slice(s, s + ".1", 1), 1000);
    auto e = spool->CompleteStudy(s, EventBytes(s), 2000);
    REQUIRE(e.ok());
    cursors.push_back(e->cursor);
  }
  auto all = spool->EventsAfter(0, 100);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK((*all)[i].cursor == cursors[i]);
    CHECK((*all)[i].study_uid == studies[i]);
    CHECK((*all)[i].generation == 1);
    v1::StudyEvent e;
    REQUIRE(e.ParseFromString((*all)[i].event_bytes));
    CHECK(e.cursor() == cursors[i]);
  }
  auto after_first = spool->EventsAfter(cursors[0], 100);
  REQUIRE(after_first.ok());
  REQUIRE(after_first->size() == 2);
  CHECK((*after_first)[0].study_uid == studies[1]);
  CHECK((*after_first)[1].study_uid == studies[2]);
  auto limited = spool->EventsAfter(0, 1);
  REQUIRE(limited.ok());
  REQUIRE(limited->size() == 1);
  CHECK(limited->front().cursor == cursors[0]);
  CHECK(spool->EventsAfter(cursors[2], 100)->empty());
}

TEST_CASE("reopening the spool keeps open studies, events and delivered keys, and drops incoming leftovers") {
  TempDir tmp;
  const fs::path dir = tmp / "spool";
  const std::string done_study = "1.2.826.0.1.3680043.9.7777.21";
  fs::path open_file;
  {
    auto spool = OpenSpool(dir);
    AddSlice(*spool, Slice(kStudy, kSeriesA, 1), 1000, "CT_ER1");
    AddSlice(*spool, Slice(done_study, done_study + ".1", 1), 1000);
    REQUIRE(spool->NoteExpectation(kStudy, 7, "ER^BAY1").ok());
    REQUIRE(spool->CompleteStudy(done_study, EventBytes(done_study), 1500).ok());
    REQUIRE(spool->MarkDelivered("sr:job-1", "STOW-RS stored 1.2.3", 1600).ok());
    open_file = SpooledPath(*spool, kStudy, kSeriesA, std::string(kSeriesA) + ".1");
    // A transfer that was never acknowledged (the process died while receiving).
    testing::WriteAll(spool->IncomingPath(), "partial");
  }
  CHECK(testing::CountFiles(dir / "incoming") == 1);

  auto spool = OpenSpool(dir);
  CHECK(testing::CountFiles(dir / "incoming") == 0);
  auto open = spool->OpenStudies();
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  CHECK(open->front().study_uid == kStudy);
  CHECK(open->front().instances == 1);
  CHECK(open->front().last_instance_ms == 1000);
  CHECK(open->front().expected_instances == 7);
  CHECK(open->front().calling_ae == "CT_ER1");
  CHECK(open->front().hl7_location == "ER^BAY1");
  CHECK(fs::exists(open_file));

  auto events = spool->EventsAfter(0, 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 1);
  CHECK(events->front().study_uid == done_study);
  CHECK(spool->LastCursor().value() == 1);
  CHECK(spool->HasCompleted(done_study).value());

  auto delivered = spool->Delivered("sr:job-1");
  REQUIRE(delivered.ok());
  REQUIRE(delivered->has_value());
  CHECK(**delivered == "STOW-RS stored 1.2.3");

  // The reopened spool goes on where the old one stopped: cursors keep increasing.
  auto next = spool->CompleteStudy(kStudy, EventBytes(kStudy), 3000);
  REQUIRE(next.ok());
  CHECK(next->cursor == 2);
}

TEST_CASE("a held study is left out of OpenStudies until it is released or completed") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  REQUIRE(spool->HoldStudy(kStudy, true).ok());   // an order's retrieval starts before any instance
  AddSlice(*spool, Slice(kStudy, kSeriesA, 1), 1000);
  AddSlice(*spool, Slice(kStudy, kSeriesA, 2), 1000);
  CHECK(spool->OpenStudies()->empty());

  REQUIRE(spool->HoldStudy(kStudy, false).ok());
  CHECK(spool->OpenStudies()->size() == 1);
  REQUIRE(spool->HoldStudy(kStudy, true).ok());
  CHECK(spool->OpenStudies()->empty());

  auto e = spool->CompleteStudy(kStudy, EventBytes(kStudy), 2000);
  REQUIRE(e.ok());
  CHECK(e->generation == 1);
  // CompleteStudy released the hold: a late instance shows the study as receiving again.
  AddSlice(*spool, Slice(kStudy, kSeriesA, 3), 3000);
  auto open = spool->OpenStudies();
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  CHECK(open->front().study_uid == kStudy);
}

TEST_CASE("NoteExpectation before any instance: the study opens when instances arrive, with the expectation") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  REQUIRE(spool->NoteExpectation(kStudy, 3, "ER^BAY1").ok());
  CHECK(spool->OpenStudies()->empty());   // known, but nothing received yet
  CHECK(spool->HasCompleted(kStudy).value() == false);

  AddSlice(*spool, Slice(kStudy, kSeriesA, 1), 1000, "CT_ER1");
  AddSlice(*spool, Slice(kStudy, kSeriesA, 2), 1200);   // "" calling AE keeps the one known
  auto open = spool->OpenStudies();
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  CHECK(open->front().instances == 2);
  CHECK(open->front().expected_instances == 3);
  CHECK(open->front().hl7_location == "ER^BAY1");
  CHECK(open->front().calling_ae == "CT_ER1");
  CHECK(open->front().last_instance_ms == 1200);

  // 0 and "" keep what is known; new values replace it.
  REQUIRE(spool->NoteExpectation(kStudy, 0, "").ok());
  CHECK(spool->OpenStudies()->front().expected_instances == 3);
  CHECK(spool->OpenStudies()->front().hl7_location == "ER^BAY1");
  REQUIRE(spool->NoteExpectation(kStudy, 5, "ICU^2").ok());
  CHECK(spool->OpenStudies()->front().expected_instances == 5);
  CHECK(spool->OpenStudies()->front().hl7_location == "ICU^2");
}

TEST_CASE("Instances filters by series") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  AddSlice(*spool, Slice(kStudy, kSeriesA, 1), 1000);
  AddSlice(*spool, Slice(kStudy, kSeriesA, 2), 1001);
  AddSlice(*spool, Slice(kStudy, kSeriesB, 1), 1002);
  CHECK(spool->Instances(kStudy)->size() == 3);
  auto b = spool->Instances(kStudy, {kSeriesB});
  REQUIRE(b.ok());
  REQUIRE(b->size() == 1);
  CHECK(b->front().series_uid == kSeriesB);
  CHECK(spool->Instances(kStudy, {"1.2.3"})->empty());
  CHECK(spool->Instances("1.2.3")->empty());
}

TEST_CASE("Delivered answers the detail of the first MarkDelivered for a key") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  auto none = spool->Delivered("hl7:job-1");
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
  REQUIRE(spool->MarkDelivered("hl7:job-1", "ACK AA 42", 1000).ok());
  REQUIRE(spool->MarkDelivered("hl7:job-1", "ACK AA 43", 2000).ok());
  auto got = spool->Delivered("hl7:job-1");
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK(**got == "ACK AA 42");
  CHECK_FALSE(spool->Delivered("hl7:job-2")->has_value());
}

TEST_CASE("orders come due at their check time, can be rescheduled and finished") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  Order a;
  a.accession_number = "ACC1";
  a.study_uid = kStudy;
  a.hl7_location = "ER^BAY1";
  a.expected_instances = 12;
  a.created_ms = 1000;
  Order b;
  b.accession_number = "ACC2";
  b.created_ms = 5000;
  REQUIRE(spool->AddOrder(a).ok());
  REQUIRE(spool->AddOrder(b).ok());

  CHECK(spool->DueOrders(999)->empty());
  auto due = spool->DueOrders(1000);
  REQUIRE(due.ok());
  REQUIRE(due->size() == 1);
  const Order got = due->front();
  CHECK(got.id > 0);
  CHECK(got.accession_number == "ACC1");
  CHECK(got.study_uid == kStudy);
  CHECK(got.hl7_location == "ER^BAY1");
  CHECK(got.expected_instances == 12);
  CHECK(got.attempts == 0);
  CHECK(got.created_ms == 1000);
  CHECK(got.next_check_ms == 1000);

  due = spool->DueOrders(5000);
  REQUIRE(due->size() == 2);
  CHECK((*due)[0].accession_number == "ACC1");   // oldest first
  CHECK((*due)[1].accession_number == "ACC2");
  CHECK((*due)[1].study_uid.empty());

  REQUIRE(spool->RescheduleOrder(got.id, 8000, "not in the PACS yet").ok());
  due = spool->DueOrders(7999);
  REQUIRE(due->size() == 1);
  CHECK(due->front().accession_number == "ACC2");
  due = spool->DueOrders(8000);
  REQUIRE(due->size() == 2);
  CHECK((*due)[0].attempts == 1);
  CHECK((*due)[0].next_check_ms == 8000);

  REQUIRE(spool->FinishOrder(got.id, "retrieved 12 instance(s)").ok());
  due = spool->DueOrders(1'000'000);
  REQUIRE(due->size() == 1);
  CHECK(due->front().accession_number == "ACC2");
}

TEST_CASE("RecordHl7 returns increasing row ids") {
  TempDir tmp;
  auto spool = OpenSpool(tmp / "spool");
  auto first = spool->RecordHl7("127.0.0.1:4000", "ORM^O01", "MSG1", "MSH|^~\\&|...", 1000);
  auto second = spool->RecordHl7("127.0.0.1:4000", "ADT^A01", "MSG2", "MSH|^~\\&|...", 1001);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(*second > *first);
}

TEST_CASE("ReadInstanceUids reads the UIDs of a valid file") {
  TempDir tmp;
  testing::WriteInstance(Slice(kStudy, kSeriesA, 3), tmp / "ok.dcm");
  auto uids = ReadInstanceUids(tmp / "ok.dcm");
  REQUIRE_MESSAGE(uids.ok(), uids.status().ToString());
  CHECK(uids->study_uid == kStudy);
  CHECK(uids->series_uid == kSeriesA);
  CHECK(uids->sop_uid == std::string(kSeriesA) + ".3");
}

TEST_CASE("ReadInstanceUids refuses files that are not DICOM or are cut short") {
  TempDir tmp;
  testing::WriteAll(tmp / "text.dcm", "this is not a DICOM file, only some text that is long enough to parse\n");
  CHECK(ReadInstanceUids(tmp / "text.dcm").status().code() == AIHUB_INVALID_ARGUMENT);
  testing::WriteAll(tmp / "empty.dcm", "");
  CHECK(ReadInstanceUids(tmp / "empty.dcm").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(ReadInstanceUids(tmp / "missing.dcm").status().code() == AIHUB_INVALID_ARGUMENT);

  // Cut inside the data set header, in the middle of the SOP Instance UID's value.
  testing::WriteInstance(Slice(kStudy, kSeriesA, 1), tmp / "whole.dcm");
  const std::string whole = testing::ReadAll(tmp / "whole.dcm");
  const size_t at = whole.find(std::string(kSeriesA) + ".1");
  REQUIRE(at != std::string::npos);
  testing::WriteAll(tmp / "cut.dcm", whole.substr(0, at + 5));
  CHECK(ReadInstanceUids(tmp / "cut.dcm").status().code() == AIHUB_INVALID_ARGUMENT);
  // Only the file meta information.
  testing::WriteAll(tmp / "meta.dcm", whole.substr(0, 132 + 12));
  CHECK(ReadInstanceUids(tmp / "meta.dcm").status().code() == AIHUB_INVALID_ARGUMENT);
}

TEST_CASE("ReadInstanceUids refuses missing and invalid UIDs, so none is ever used as a path") {
  TempDir tmp;
  struct Case {
    const char* name;
    std::string study, series, sop;
  };
  const Case cases[] = {
      {"path traversal SOP", kStudy, kSeriesA, "../../x"},
      {"letters in SOP", kStudy, kSeriesA, "1.2.abc"},
      {"letters in study", "1.2.3.x", kSeriesA, "1.2.3"},
      {"slash in series", kStudy, "1.2/3", "1.2.3"},
      {"empty component", kStudy, kSeriesA, "1..2"},
      {"too long", kStudy, kSeriesA, "1." + std::string(63, '1')},
      {"missing series", kStudy, "", "1.2.3"},
      {"missing study", "", kSeriesA, "1.2.3"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    testing::SliceSpec spec = Slice(c.study, c.series, 1);
    spec.sop_uid = c.sop;
    const fs::path file = tmp / (std::string(c.name) + ".dcm");
    testing::WriteInstance(spec, file);
    auto uids = ReadInstanceUids(file);
    CHECK(uids.status().code() == AIHUB_INVALID_ARGUMENT);
  }
}

}  // namespace
}  // namespace aihub::adapter
