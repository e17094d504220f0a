// Tests of adapter/core/service: the PacsAdapter gRPC service over a real in-process server on 127.0.0.1, with
// deliveries going to a fake set of links.
#include "core/service.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>

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

// Counts calls per link and answers what it is told to.
class FakeLinks : public DeliveryLinks {
 public:
  StatusOr<std::string> StoreDicom(const std::string& part10) override { return Answer("store", part10); }
  StatusOr<std::string> SendHl7(const std::string& message) override { return Answer("hl7", message); }
  StatusOr<std::string> PostFhir(const std::string& bundle) override { return Answer("fhir", bundle); }
  StatusOr<std::string> UpdatePriority(const v1::UpdatePriorityRequest& r) override {
    return Answer("priority", r.reason());
  }
  StatusOr<std::string> SendAlert(const v1::SendAlertRequest& r) override { return Answer("alert", r.plugin_id()); }
  std::vector<v1::LinkState> Links() override {
    v1::LinkState dicom;
    dicom.set_name("dicom");
    dicom.set_enabled(true);
    dicom.set_endpoint("AIHUB@11112");
    v1::LinkState fhir;
    fhir.set_name("fhir");
    fhir.set_enabled(false);
    fhir.set_last_error("UNAVAILABLE: down");
    return {dicom, fhir};
  }

  void FailWith(Status st) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ = std::move(st);
  }
  int Calls(const std::string& link) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_[link];
  }
  std::string Last(const std::string& link) {
    std::lock_guard<std::mutex> lock(mu_);
    return last_[link];
  }

 private:
  StatusOr<std::string> Answer(const std::string& link, const std::string& payload) {
    std::lock_guard<std::mutex> lock(mu_);
    const int n = ++calls_[link];
    last_[link] = payload;
    if (!fail_.ok()) return fail_;
    return link + " ok " + std::to_string(n);
  }

  std::mutex mu_;
  Status fail_;
  std::map<std::string, int> calls_;
  std::map<std::string, std::string> last_;
};

struct Fixture {
  TempDir tmp;
  std::unique_ptr<Spool> spool;
  std::unique_ptr<StudyTracker> tracker;
  FakeLinks links;
  std::unique_ptr<PacsAdapterService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::PacsAdapter::Stub> stub;

  Fixture() {
    auto s = Spool::Open(tmp / "spool");
    REQUIRE_MESSAGE(s.ok(), s.status().ToString());
    spool = std::move(s).value();
    tracker = std::make_unique<StudyTracker>(*spool, 5.0);   // not started: tests complete studies with CheckOnce
    service = std::make_unique<PacsAdapterService>(*spool, *tracker, links, "test-1.0");
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    REQUIRE(server != nullptr);
    REQUIRE(port > 0);
    stub = v1::PacsAdapter::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }
  ~Fixture() {
    service->Shutdown();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    tracker->Stop();
  }

  // Spools one instance of `study` and completes the study by quiet time.
  void CompleteStudy(const std::string& study, int64_t now_ms) {
    AddSlice(*spool, Slice(study, study + ".1", 1), now_ms);
    auto done = tracker->CheckOnce(now_ms + 5000);
    REQUIRE(done.ok());
    REQUIRE(*done == 1);
  }
};

void SetDeadline(grpc::ClientContext& ctx, int ms) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

grpc::Status Store(Fixture& f, const std::string& key, v1::DeliveryReply* reply, const std::string& dicom = "DICM") {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 5000);
  v1::StoreDicomRequest req;
  req.set_idempotency_key(key);
  req.set_study_instance_uid(kStudy);
  req.set_dicom(dicom);
  return f.stub->StoreDicom(&ctx, req, reply);
}

TEST_CASE("a delivery with the same idempotency key reaches the link once, the repeat is a duplicate") {
  Fixture f;
  v1::DeliveryReply first, second, other;
  REQUIRE(Store(f, "sr:job-1", &first).ok());
  CHECK_FALSE(first.duplicate());
  CHECK(first.detail() == "store ok 1");
  REQUIRE(Store(f, "sr:job-1", &second).ok());
  CHECK(second.duplicate());
  CHECK(second.detail() == "store ok 1");   // what the peer said the first time
  CHECK(f.links.Calls("store") == 1);
  REQUIRE(Store(f, "sr:job-2", &other).ok());
  CHECK_FALSE(other.duplicate());
  CHECK(f.links.Calls("store") == 2);
  CHECK(f.spool->Delivered("sr:job-1")->value() == "store ok 1");
}

TEST_CASE("every delivery kind is idempotent by key") {
  Fixture f;
  auto twice = [&](const std::string& link, auto call) {
    CAPTURE(link);
    v1::DeliveryReply r1, r2;
    grpc::ClientContext c1, c2;
    SetDeadline(c1, 5000);
    SetDeadline(c2, 5000);
    grpc::Status s1 = call(&c1, &r1);
    grpc::Status s2 = call(&c2, &r2);
    CHECK_MESSAGE(s1.ok(), s1.error_message());
    CHECK_MESSAGE(s2.ok(), s2.error_message());
    CHECK_FALSE(r1.duplicate());
    CHECK(r2.duplicate());
    CHECK(f.links.Calls(link) == 1);
  };
  twice("hl7", [&](grpc::ClientContext* c, v1::DeliveryReply* r) {
    v1::SendHl7Request req;
    req.set_idempotency_key("oru:1");
    req.set_message("MSH|^~\\&|AIHUB|||||20240101||ORU^R01|1|P|2.5\r");
    return f.stub->SendHl7(c, req, r);
  });
  CHECK(f.links.Last("hl7").rfind("MSH|", 0) == 0);
  twice("fhir", [&](grpc::ClientContext* c, v1::DeliveryReply* r) {
    v1::PostFhirRequest req;
    req.set_idempotency_key("fhir:1");
    req.set_bundle_json("{\"resourceType\":\"Bundle\"}");
    return f.stub->PostFhir(c, req, r);
  });
  twice("priority", [&](grpc::ClientContext* c, v1::DeliveryReply* r) {
    v1::UpdatePriorityRequest req;
    req.set_idempotency_key("prio:1");
    req.set_priority(v1::PRIORITY_STAT);
    req.set_reason("AI: ICH suspected");
    return f.stub->UpdatePriority(c, req, r);
  });
  CHECK(f.links.Last("priority") == "AI: ICH suspected");
  twice("alert", [&](grpc::ClientContext* c, v1::DeliveryReply* r) {
    v1::SendAlertRequest req;
    req.set_idempotency_key("alert:1");
    req.set_plugin_id("ich");
    return f.stub->SendAlert(c, req, r);
  });
}

TEST_CASE("a failing link keeps its status code and the key is not recorded, so a retry sends again") {
  Fixture f;
  struct Case {
    Status failure;
    grpc::StatusCode expected;
  };
  const Case cases[] = {
      {Unavailable("PACS down"), grpc::StatusCode::UNAVAILABLE},
      {FailedPrecondition("PACS refused the object"), grpc::StatusCode::FAILED_PRECONDITION},
      {Aborted("busy"), grpc::StatusCode::ABORTED},
      {InvalidArgument("bad SR"), grpc::StatusCode::INVALID_ARGUMENT},
  };
  int calls = 0;
  for (const Case& c : cases) {
    CAPTURE(c.failure.ToString());
    const std::string key = "sr:" + c.failure.message();
    f.links.FailWith(c.failure);
    v1::DeliveryReply reply;
    grpc::Status st = Store(f, key, &reply);
    CHECK(st.error_code() == c.expected);
    CHECK(st.error_message() == c.failure.message());
    CHECK(f.links.Calls("store") == ++calls);
    CHECK_FALSE(f.spool->Delivered(key)->has_value());

    // The same key again still reaches the link (and fails the same way while the peer fails).
    st = Store(f, key, &reply);
    CHECK(st.error_code() == c.expected);
    CHECK(f.links.Calls("store") == ++calls);

    f.links.FailWith(Status::Ok());
    v1::DeliveryReply ok;
    REQUIRE(Store(f, key, &ok).ok());
    CHECK_FALSE(ok.duplicate());
    CHECK(f.links.Calls("store") == ++calls);
    CHECK(f.spool->Delivered(key)->has_value());
  }
}

TEST_CASE("bad delivery requests are INVALID_ARGUMENT and never reach a link") {
  Fixture f;
  v1::DeliveryReply reply;
  CHECK(Store(f, "", &reply).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Store(f, std::string(513, 'k'), &reply).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Store(f, "sr:empty", &reply, "").error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Store(f, std::string(512, 'k'), &reply).ok());   // the longest key allowed
  CHECK(f.links.Calls("store") == 1);

  for (const std::string& message : {std::string("PID|1||P1\r"), std::string(""), std::string(" MSH|^~\\&|\r")}) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 5000);
    v1::SendHl7Request req;
    req.set_idempotency_key("oru:bad");
    req.set_message(message);
    CHECK(f.stub->SendHl7(&ctx, req, &reply).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  grpc::ClientContext ctx;
  SetDeadline(ctx, 5000);
  v1::SendHl7Request req;
  req.set_message("MSH|^~\\&|\r");   // valid message, no key
  CHECK(f.stub->SendHl7(&ctx, req, &reply).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(f.links.Calls("hl7") == 0);
}

TEST_CASE("WatchStudies streams the kept events in order, then live ones, a cursor resumes after it") {
  Fixture f;
  const std::string s1 = "1.2.826.0.1.3680043.9.7777.41", s2 = "1.2.826.0.1.3680043.9.7777.42",
                    s3 = "1.2.826.0.1.3680043.9.7777.43";
  f.CompleteStudy(s1, 1000);
  f.CompleteStudy(s2, 2000);
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 4000);   // the stream never ends on its own
    v1::WatchStudiesRequest req;
    req.set_after_cursor(0);
    req.set_subscriber("test");
    auto reader = f.stub->WatchStudies(&ctx, req);
    v1::StudyEvent e;
    REQUIRE(reader->Read(&e));
    CHECK(e.cursor() == 1);
    CHECK(e.study_instance_uid() == s1);
    CHECK(e.generation() == 1);
    REQUIRE(e.series_size() == 1);
    CHECK(e.series(0).instance_count() == 1);
    REQUIRE(reader->Read(&e));
    CHECK(e.cursor() == 2);
    CHECK(e.study_instance_uid() == s2);

    // A study completing while the stream is open arrives on it.
    f.CompleteStudy(s3, 3000);
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(reader->Read(&e));
    CHECK(e.cursor() == 3);
    CHECK(e.study_instance_uid() == s3);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    ctx.TryCancel();
    CHECK_FALSE(reader->Read(&e));
    CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 4000);
    v1::WatchStudiesRequest req;
    req.set_after_cursor(2);
    auto reader = f.stub->WatchStudies(&ctx, req);
    v1::StudyEvent e;
    REQUIRE(reader->Read(&e));
    CHECK(e.cursor() == 3);
    CHECK(e.study_instance_uid() == s3);
    ctx.TryCancel();
    CHECK_FALSE(reader->Read(&e));
    reader->Finish();
  }
}

TEST_CASE("WatchStudies with a cursor past the newest event waits and ends at the client's deadline") {
  Fixture f;
  f.CompleteStudy(kStudy, 1000);
  grpc::ClientContext ctx;
  SetDeadline(ctx, 700);
  v1::WatchStudiesRequest req;
  req.set_after_cursor(1);
  auto reader = f.stub->WatchStudies(&ctx, req);
  v1::StudyEvent e;
  CHECK_FALSE(reader->Read(&e));
  CHECK(reader->Finish().error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
}

struct Fetched {
  std::map<std::string, std::string> bytes;   // sop -> reassembled file
  std::map<std::string, std::string> series;  // sop -> series
  int chunks = 0;
};

// Reads a FetchSeries stream and checks every chunk's framing on the way.
grpc::Status Fetch(Fixture& f, const std::string& study, const std::vector<std::string>& series, uint32_t max_chunk,
                   Fetched* out) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 5000);
  v1::FetchSeriesRequest req;
  req.set_study_instance_uid(study);
  for (const std::string& s : series) req.add_series_instance_uids(s);
  req.set_max_chunk_bytes(max_chunk);
  auto reader = f.stub->FetchSeries(&ctx, req);
  v1::InstanceChunk c;
  std::string current;   // the SOP whose chunks are arriving; "" between instances
  while (reader->Read(&c)) {
    ++out->chunks;
    CAPTURE(c.sop_instance_uid());
    CAPTURE(c.offset());
    if (current.empty()) {
      CHECK(out->bytes.count(c.sop_instance_uid()) == 0);   // an instance's chunks are contiguous
      CHECK(c.offset() == 0);
      current = c.sop_instance_uid();
    }
    CHECK(c.sop_instance_uid() == current);
    std::string& data = out->bytes[current];
    CHECK(c.offset() == data.size());
    if (max_chunk > 0) CHECK(c.data().size() <= max_chunk);
    data += c.data();
    CHECK(c.last() == (data.size() == c.total_size()));
    out->series[current] = c.series_instance_uid();
    if (c.last()) current.clear();
  }
  CHECK(current.empty());
  return reader->Finish();
}

TEST_CASE("FetchSeries streams only the asked series, in chunks that reassemble to the spooled files") {
  Fixture f;
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1, 32), 1000);
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 2, 32), 1001);
  AddSlice(*f.spool, Slice(kStudy, kSeriesB, 1, 16), 1002);
  auto instances = f.spool->Instances(kStudy);
  REQUIRE(instances->size() == 3);
  std::map<std::string, std::string> on_disk;
  for (const SpooledInstance& i : *instances) on_disk[i.sop_uid] = testing::ReadAll(i.path);

  Fetched a;
  grpc::Status st = Fetch(f, kStudy, {kSeriesA}, 1000, &a);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  REQUIRE(a.bytes.size() == 2);
  for (const auto& [sop, bytes] : a.bytes) {
    CAPTURE(sop);
    CHECK(a.series[sop] == kSeriesA);
    REQUIRE(on_disk.count(sop) == 1);
    CHECK(bytes == on_disk[sop]);
  }
  CHECK(a.chunks > 4);   // 32x32x16-bit images are over 2 KB each

  Fetched all;
  st = Fetch(f, kStudy, {}, 0, &all);
  REQUIRE(st.ok());
  CHECK(all.bytes.size() == 3);
  CHECK(all.chunks == 3);   // default chunk is 1 MiB
  for (const auto& [sop, bytes] : all.bytes) CHECK(bytes == on_disk[sop]);

  Fetched b;
  REQUIRE(Fetch(f, kStudy, {kSeriesB, "1.2.3.999"}, 1000, &b).ok());
  REQUIRE(b.bytes.size() == 1);
  CHECK(b.series.begin()->second == kSeriesB);
}

TEST_CASE("FetchSeries: unknown study or series is NOT_FOUND, an invalid study UID is INVALID_ARGUMENT") {
  Fixture f;
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 1000);
  Fetched none;
  CHECK(Fetch(f, "1.2.3.4.5", {}, 0, &none).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Fetch(f, kStudy, {"1.2.3.4.5"}, 0, &none).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Fetch(f, "../../etc", {}, 0, &none).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Fetch(f, "1.2.x", {}, 0, &none).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Fetch(f, "", {}, 0, &none).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(none.chunks == 0);
}

TEST_CASE("FetchSeries of a spooled file that went missing is DATA_LOSS") {
  Fixture f;
  AddSlice(*f.spool, Slice(kStudy, kSeriesA, 1), 1000);
  fs::remove(f.spool->Instances(kStudy)->front().path);
  Fetched none;
  CHECK(Fetch(f, kStudy, {}, 0, &none).error_code() == grpc::StatusCode::DATA_LOSS);
}

TEST_CASE("Describe lists the links, the newest cursor and the studies still receiving") {
  Fixture f;
  f.CompleteStudy(kStudy, 1000);
  AddSlice(*f.spool, Slice("1.2.826.0.1.3680043.9.7777.51", "1.2.826.0.1.3680043.9.7777.51.1", 1), 9000);
  grpc::ClientContext ctx;
  SetDeadline(ctx, 5000);
  v1::AdapterInfo info;
  REQUIRE(f.stub->Describe(&ctx, v1::DescribeRequest(), &info).ok());
  CHECK(info.implementation() == "aihub-adapter");
  CHECK(info.version() == "test-1.0");
  CHECK(info.last_cursor() == 1);
  CHECK(info.open_studies() == 1);
  REQUIRE(info.links_size() == 2);
  CHECK(info.links(0).name() == "dicom");
  CHECK(info.links(0).enabled());
  CHECK(info.links(0).endpoint() == "AIHUB@11112");
  CHECK(info.links(1).name() == "fhir");
  CHECK_FALSE(info.links(1).enabled());
  CHECK(info.links(1).last_error() == "UNAVAILABLE: down");
}

TEST_CASE("ToGrpc keeps the code and message") {
  CHECK(ToGrpc(Status::Ok()).ok());
  const grpc::Status st = ToGrpc(NotFound("gone"));
  CHECK(st.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(st.error_message() == "gone");
  CHECK(ToGrpc(Unavailable("x")).error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(ToGrpc(FailedPrecondition("x")).error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(ToGrpc(DataLoss("x")).error_code() == grpc::StatusCode::DATA_LOSS);
}

}  // namespace
}  // namespace aihub::adapter
