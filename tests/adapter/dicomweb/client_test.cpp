#include "dicomweb/client.h"

#include "common/hash.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "test_peers.h"

namespace aihub::dicomweb {
namespace {

using testing::FaultUrl;
using testing::Options;
using testing::OrthancUrl;

// ---- without a server ----

TEST_CASE("UIDs are digits and dots, 1..64 long") {
  CHECK(IsValidUid("1.2.840.10008.5.1.4.1.1.2"));
  CHECK(IsValidUid(std::string(64, '1')));
  CHECK_FALSE(IsValidUid(std::string(65, '1')));
  CHECK_FALSE(IsValidUid(""));
  CHECK_FALSE(IsValidUid("1.2.3/../../instances"));
  CHECK_FALSE(IsValidUid("1.2.3?x=1"));
  CHECK_FALSE(IsValidUid("1..2"));
  CHECK_FALSE(IsValidUid("1.2.3 "));
}

TEST_CASE("bad arguments are INVALID_ARGUMENT before any request") {
  testing::RefusingPort port;  // a request would be UNAVAILABLE instead
  Client client(Options(port.url()));
  auto ok = [](std::string&&) { return Status::Ok(); };
  CHECK(client.FindStudies({}).status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(client.FindSeries("1.2/../3").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(client.RetrieveSeries("1.2", "1.3/x", ok).status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(client.RetrieveSeries("a", "1.3", ok).status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(client.Store({}).status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(client.FindSeries("1.2").status().code() == AIHUB_UNAVAILABLE);  // the control: a valid call goes out
}

TEST_CASE("a refused connection is UNAVAILABLE and the message names method and URL, never credentials") {
  testing::RefusingPort port;
  Client client(Options("http://alice:s3cret@" + port.url().substr(7) + "/dicom-web/"));
  auto found = client.FindStudies({"1.2.3", "ACC 1&2"});
  REQUIRE(found.status().code() == AIHUB_UNAVAILABLE);
  const std::string& message = found.status().message();
  CHECK(message.find("GET " + port.url() + "/dicom-web/studies?StudyInstanceUID=1.2.3&AccessionNumber=ACC%201%262&") ==
        0);
  CHECK(message.find("no HTTP response") != std::string::npos);
  CHECK(message.find("s3cret") == std::string::npos);
}

TEST_CASE("HTTP statuses map onto status codes") {
  const HttpRequest request{"GET", "https://bob:pw@pacs.example/dicom-web/studies", {}, {}, {}};
  auto code_of = [&](long status) {
    HttpResponse response;
    response.status = status;
    response.status_line = "HTTP/1.1 " + std::to_string(status) + " Reason";
    return HttpError(request, response).code();
  };
  for (long s : {500L, 502L, 503L, 504L, 408L, 429L}) CHECK(code_of(s) == AIHUB_UNAVAILABLE);
  for (long s : {401L, 403L, 409L, 405L, 412L, 302L}) CHECK(code_of(s) == AIHUB_FAILED_PRECONDITION);
  for (long s : {400L, 413L, 414L, 415L, 422L}) CHECK(code_of(s) == AIHUB_INVALID_ARGUMENT);
  CHECK(code_of(404) == AIHUB_NOT_FOUND);

  HttpResponse response;
  response.status = 401;
  response.status_line = "HTTP/1.1 401 Unauthorized";
  response.body = std::string("\x01\n") + std::string(300, 'z');
  const Status st = HttpError(request, response);
  CHECK(st.message() == "not authorized: GET https://pacs.example/dicom-web/studies: HTTP/1.1 401 Unauthorized: . " +
                            std::string(198, 'z'));
}

TEST_CASE("UrlEncode keeps unreserved characters only") {
  CHECK(UrlEncode("AZaz09-._~") == "AZaz09-._~");
  CHECK(UrlEncode("a b&c=d/|\xc3\xa9") == "a%20b%26c%3Dd%2F%7C%C3%A9");
}

// ---- against a real Orthanc ----

constexpr char kStudy[] = "1.2.826.0.1.3680043.10.543.1";
constexpr char kSeries[] = "1.2.826.0.1.3680043.10.543.1.1";
constexpr char kAccession[] = "DW-ACC-1";

std::string Serialize(DcmFileFormat& file) {
  REQUIRE(file.validateMetaInfo(EXS_LittleEndianExplicit).good());
  std::vector<char> buffer(1 << 20);  // far more than an 8x8 image needs
  DcmOutputBufferStream stream(buffer.data(), buffer.size());
  file.transferInit();
  REQUIRE(file.write(stream, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr).good());
  file.transferEnd();
  stream.flush();
  void* data = nullptr;
  offile_off_t length = 0;
  stream.flushBuffer(data, length);
  return std::string(static_cast<const char*>(data), static_cast<size_t>(length));
}

// A small CT image, Part 10 bytes.
std::string MakeCt(const std::string& study, const std::string& series, int number) {
  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  const std::string sop = series + "." + std::to_string(number);
  for (auto [tag, value] :
       std::vector<std::pair<DcmTagKey, std::string>>{{DCM_SOPClassUID, UID_CTImageStorage},
                                                      {DCM_SOPInstanceUID, sop},
                                                      {DCM_StudyInstanceUID, study},
                                                      {DCM_SeriesInstanceUID, series},
                                                      {DCM_Modality, "CT"},
                                                      {DCM_PatientID, "DW-PAT"},
                                                      {DCM_PatientName, "Dicomweb^Test"},
                                                      {DCM_AccessionNumber, kAccession},
                                                      {DCM_SeriesNumber, "1"},
                                                      {DCM_InstanceNumber, std::to_string(number)},
                                                      {DCM_PhotometricInterpretation, "MONOCHROME2"}}) {
    REQUIRE(ds.putAndInsertString(tag, value.c_str()).good());
  }
  for (auto [tag, value] : std::vector<std::pair<DcmTagKey, Uint16>>{{DCM_Rows, 8},
                                                                     {DCM_Columns, 8},
                                                                     {DCM_SamplesPerPixel, 1},
                                                                     {DCM_BitsAllocated, 16},
                                                                     {DCM_BitsStored, 12},
                                                                     {DCM_HighBit, 11},
                                                                     {DCM_PixelRepresentation, 0}}) {
    REQUIRE(ds.putAndInsertUint16(tag, value).good());
  }
  std::vector<Uint16> pixels(64, static_cast<Uint16>(100 * number));
  REQUIRE(ds.putAndInsertUint16Array(DCM_PixelData, pixels.data(), 64).good());
  return Serialize(file);
}

std::string SopInstanceUidOf(const std::string& part10) {
  DcmInputBufferStream stream;
  stream.setBuffer(part10.data(), part10.size());
  stream.setEos();
  DcmFileFormat file;
  file.transferInit();
  REQUIRE(file.read(stream).good());
  file.transferEnd();
  OFString uid;
  file.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, uid);
  return uid.c_str();
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST_SUITE("orthanc" * doctest::skip()) {
  TEST_CASE("STOW two CT instances, find the study by UID and accession, find and retrieve the series") {
    Client client(Options(OrthancUrl()));
    const std::vector<std::string> instances = {MakeCt(kStudy, kSeries, 1), MakeCt(kStudy, kSeries, 2)};
    const std::vector<std::string> sops = {std::string(kSeries) + ".1", std::string(kSeries) + ".2"};
    auto stored = client.Store(instances);
    REQUIRE_MESSAGE(stored.ok(), stored.status().ToString());
    CHECK(Sorted(stored->stored) == sops);
    CHECK(stored->failed.empty());

    for (const StudyQuery& query :
         {StudyQuery{kStudy, ""}, StudyQuery{"", kAccession}, StudyQuery{kStudy, kAccession}}) {
      auto studies = client.FindStudies(query);
      REQUIRE_MESSAGE(studies.ok(), studies.status().ToString());
      REQUIRE(studies->size() == 1);
      const StudyMatch& m = studies->front();
      CHECK(m.study_instance_uid == kStudy);
      CHECK(m.accession_number == kAccession);
      CHECK(m.patient_id == "DW-PAT");
      CHECK(m.number_of_instances == 2);
      CHECK(m.modalities == std::vector<std::string>{"CT"});
    }

    auto series = client.FindSeries(kStudy);
    REQUIRE_MESSAGE(series.ok(), series.status().ToString());
    REQUIRE(series->size() == 1);
    CHECK(series->front().series_instance_uid == kSeries);
    CHECK(series->front().modality == "CT");
    CHECK(series->front().number_of_instances == 2);

    std::vector<std::string> retrieved;
    auto count = client.RetrieveSeries(kStudy, kSeries, [&](std::string&& part10) {
      retrieved.push_back(std::move(part10));
      return Status::Ok();
    });
    REQUIRE_MESSAGE(count.ok(), count.status().ToString());
    CHECK(*count == 2);
    REQUIRE(retrieved.size() == 2);
    CHECK(Sorted({SopInstanceUidOf(retrieved[0]), SopInstanceUidOf(retrieved[1])}) == sops);
    CHECK(Sorted(retrieved) == Sorted(instances));  // stored and sent back as they were (transfer-syntax=*)
  }

  TEST_CASE("STOW of the same instance twice is OK and stores it once") {
    Client client(Options(OrthancUrl()));
    const std::string study = std::string(kStudy) + ".2";
    const std::string instance = MakeCt(study, study + ".1", 1);
    for (int round = 0; round < 2; ++round) {
      auto stored = client.Store({instance});
      REQUIRE_MESSAGE(stored.ok(), stored.status().ToString());
      CHECK(stored->stored == std::vector<std::string>{study + ".1.1"});
    }
    auto studies = client.FindStudies({study, ""});
    REQUIRE(studies.ok());
    REQUIRE(studies->size() == 1);
    CHECK(studies->front().number_of_instances == 1);
  }

  TEST_CASE("STOW of bytes that are no DICOM fails, Orthanc answers 400 and still stores the good ones") {
    Client client(Options(OrthancUrl()));
    auto stored = client.Store({"this is not a DICOM file"});
    CHECK(stored.status().code() == AIHUB_INVALID_ARGUMENT);
    CHECK(stored.status().message().find("POST " + OrthancUrl() + "/studies: HTTP/1.1 400 Bad Request: {") == 0);

    const std::string study = std::string(kStudy) + ".3";
    auto mixed = client.Store({"this is not a DICOM file", MakeCt(study, study + ".1", 1)});
    CHECK(mixed.status().code() == AIHUB_INVALID_ARGUMENT);
    auto studies = client.FindStudies({study, ""});
    REQUIRE(studies.ok());
    CHECK(studies->size() == 1);
  }

  TEST_CASE("an unknown study: no matches, no series, retrieve NOT_FOUND") {
    Client client(Options(OrthancUrl()));
    const std::string unknown = "1.2.826.0.1.3680043.10.543.999";
    auto studies = client.FindStudies({unknown, ""});
    REQUIRE_MESSAGE(studies.ok(), studies.status().ToString());
    CHECK(studies->empty());
    auto series = client.FindSeries(unknown);
    REQUIRE_MESSAGE(series.ok(), series.status().ToString());
    CHECK(series->empty());
    auto count = client.RetrieveSeries(unknown, unknown + ".1", [](std::string&&) { return Status::Ok(); });
    CHECK(count.status().code() == AIHUB_NOT_FOUND);
  }

  TEST_CASE("an error from on_instance stops the retrieve and is returned") {
    Client client(Options(OrthancUrl()));
    REQUIRE(client.Store({MakeCt(kStudy, kSeries, 1), MakeCt(kStudy, kSeries, 2)}).ok());
    int calls = 0;
    auto count = client.RetrieveSeries(kStudy, kSeries, [&](std::string&&) {
      ++calls;
      return Aborted("spool full");
    });
    CHECK(count.status().code() == AIHUB_ABORTED);
    CHECK(count.status().message().find("spool full") != std::string::npos);
    CHECK(calls == 1);
  }
}

// ---- against the fault peer (run_with_peers.py) ----

TEST_SUITE("fault_peer" * doctest::skip()) {
  TEST_CASE("HTTP errors end to end: code, method, URL, status line, 200 bytes of body") {
    for (auto [status, code] : std::vector<std::pair<int, aihub_status_code>>{{500, AIHUB_UNAVAILABLE},
                                                                              {429, AIHUB_UNAVAILABLE},
                                                                              {401, AIHUB_FAILED_PRECONDITION},
                                                                              {404, AIHUB_NOT_FOUND},
                                                                              {400, AIHUB_INVALID_ARGUMENT}}) {
      CAPTURE(status);
      const std::string base = FaultUrl() + "/status/" + std::to_string(status);
      Client client(Options(base));
      auto found = client.FindStudies({"1.2.3", ""});
      CHECK(found.status().code() == code);
      const std::string& message = found.status().message();
      CHECK(message.find("GET " + base + "/studies?StudyInstanceUID=1.2.3&") != std::string::npos);
      CHECK(message.find("HTTP/1.1 " + std::to_string(status)) != std::string::npos);
      CHECK(message.find("fault peer status") != std::string::npos);
      CHECK(message.find(std::string(178, 'x')) != std::string::npos);
      CHECK(message.find(std::string(179, 'x')) == std::string::npos);
    }
  }

  TEST_CASE("a server that never answers is UNAVAILABLE after the low-speed or total timeout") {
    for (bool total : {false, true}) {
      CAPTURE(total);
      ClientOptions options = Options(FaultUrl() + "/hang");
      options.low_speed_timeout_s = total ? 30 : 1;
      options.timeout_ms = total ? 500 : 30000;
      Client client(options);
      const auto start = std::chrono::steady_clock::now();
      auto found = client.FindStudies({"1.2.3", ""});
      CHECK(found.status().code() == AIHUB_UNAVAILABLE);
      CHECK(found.status().message().find("no HTTP response") != std::string::npos);
      CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    }
  }

  TEST_CASE("bad JSON and matches without a UID are DATA_LOSS") {
    CHECK(Client(Options(FaultUrl() + "/garbage")).FindStudies({"1.2", ""}).status().code() == AIHUB_DATA_LOSS);
    CHECK(Client(Options(FaultUrl() + "/garbage")).FindSeries("1.2").status().code() == AIHUB_DATA_LOSS);
    CHECK(Client(Options(FaultUrl() + "/nouid")).FindStudies({"1.2", ""}).status().code() == AIHUB_DATA_LOSS);
  }

  TEST_CASE("WADO-RS parts split across TCP writes arrive whole") {
    Client client(Options(FaultUrl() + "/multipart/two"));
    std::vector<std::string> parts;
    auto count = client.RetrieveSeries("1.2", "1.3", [&](std::string&& part) {
      parts.push_back(std::move(part));
      return Status::Ok();
    });
    REQUIRE_MESSAGE(count.ok(), count.status().ToString());
    CHECK(*count == 2);
    std::string second;
    for (int i = 0; i < 1000; ++i) second += "second";
    CHECK(parts == std::vector<std::string>{"first\r\n--fault", second});
  }

  TEST_CASE("WADO-RS hands an instance over while the rest of the body is still to come") {
    Client client(Options(FaultUrl() + "/multipart/stream"));
    std::vector<std::string> parts;
    auto count = client.RetrieveSeries("1.2", "1.3", [&](std::string&& part) {
      if (parts.empty()) REQUIRE(Client(Options(FaultUrl() + "/release")).FindStudies({"1.2", ""}).ok());
      parts.push_back(std::move(part));
      return Status::Ok();
    });
    REQUIRE_MESSAGE(count.ok(), count.status().ToString());
    CHECK(parts == std::vector<std::string>{"first", "released"});
  }

  TEST_CASE("calls of one Client reuse the connection, concurrent calls work") {
    Client client(Options(FaultUrl() + "/whoami"));
    auto port = [&] {
      auto found = client.FindStudies({"1.2", ""});
      REQUIRE(found.ok());
      REQUIRE(found->size() == 1);
      return found->front().accession_number;
    };
    const std::string first = port();
    CHECK(port() == first);
    std::vector<StatusOr<std::vector<StudyMatch>>> results(4, Internal("not run"));
    std::vector<std::thread> threads;
    for (auto& result : results) threads.emplace_back([&] { result = client.FindStudies({"1.2", ""}); });
    for (std::thread& t : threads) t.join();
    for (const auto& result : results) CHECK(result.ok());
  }

  TEST_CASE("WADO-RS malformed multipart is DATA_LOSS") {
    for (const char* kind : {"truncated", "noboundary", "wrongtype"}) {
      CAPTURE(kind);
      Client client(Options(FaultUrl() + "/multipart/" + kind));
      std::vector<std::string> parts;
      auto count = client.RetrieveSeries("1.2", "1.3", [&](std::string&& part) {
        parts.push_back(std::move(part));
        return Status::Ok();
      });
      CHECK(count.status().code() == AIHUB_DATA_LOSS);
      CHECK(count.status().message().find("GET " + FaultUrl() + "/multipart/" + kind + "/studies/1.2/series/1.3") == 0);
      if (std::string(kind) == "truncated") {
        CHECK(count.status().message().find("truncated multipart") != std::string::npos);
        CHECK(parts == std::vector<std::string>{"complete"});
      }
    }
  }

  TEST_CASE("bearer and basic authentication, without credentials: not authorized") {
    ClientOptions options = Options(FaultUrl() + "/auth");
    auto code = [&] { return Client(options).FindStudies({"1.2", ""}).status().code(); };
    CHECK(code() == AIHUB_FAILED_PRECONDITION);
    CHECK(Client(options).FindStudies({"1.2", ""}).status().message().rfind("not authorized: ", 0) == 0);
    options.auth.username = "alice";
    options.auth.password = "wonder";
    CHECK(code() == AIHUB_OK);
    options.auth.password = "wrong";
    CHECK(code() == AIHUB_FAILED_PRECONDITION);
    options.auth.bearer_token = "s3cret";  // bearer wins over basic
    CHECK(code() == AIHUB_OK);
  }

  TEST_CASE("STOW-RS 202 lists the failures, 409 is FAILED_PRECONDITION with the reasons") {
    // 2 MiB: libcurl would ask "Expect: 100-continue" for a body this size; the peer rejects that header.
    auto partial = Client(Options(FaultUrl() + "/stow/202")).Store({std::string(2 << 20, 'a'), "b"});
    REQUIRE_MESSAGE(partial.ok(), partial.status().ToString());
    CHECK(partial->stored == std::vector<std::string>{"1.2.3.1"});
    REQUIRE(partial->failed.size() == 1);
    CHECK(partial->failed[0].sop_instance_uid == "1.2.3.2");
    CHECK(partial->failed[0].reason == 0xC000);

    auto failed = Client(Options(FaultUrl() + "/stow/409")).Store({"a"});
    CHECK(failed.status().code() == AIHUB_FAILED_PRECONDITION);
    CHECK(failed.status().message().find("1.2.3.1 reason 0xC000") != std::string::npos);
  }
}

}  // namespace
}  // namespace aihub::dicomweb
