#include "dicomweb/multipart.h"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

namespace aihub::dicomweb {
namespace {

using Parts = std::vector<std::pair<std::string, std::string>>;

constexpr char kType[] = "multipart/related; type=\"application/dicom\"; boundary=\"XyZ\"";
// Preamble, a part with Content-Length and CRLF inside, one whose body starts like the boundary, one without
// headers and with an empty body, an epilogue that repeats the boundary.
const std::string kBody =
    "preamble --XyZ is not a delimiter here\r\n"
    "--XyZ\r\nContent-Type: application/dicom\r\nContent-Length: 5\r\n\r\nAB\r\nC\r\n"
    "--XyZ  \r\ncontent-type: text/plain\r\nX-Other: 1\r\n\r\n--XyZ-not\r\n"
    "--XyZ\r\n\r\n\r\n"
    "--XyZ--\r\nepilogue\r\n--XyZ\r\ngarbage";
const Parts kParts = {{"application/dicom", "AB\r\nC"}, {"text/plain", "--XyZ-not"}, {"", ""}};

std::unique_ptr<MultipartParser> Make(Parts& parts, size_t max_part_bytes = 1 << 20, std::string_view type = kType) {
  auto parser = MultipartParser::Create(
      type,
      [&parts](std::string_view part_type, std::string&& body) {
        parts.emplace_back(std::string(part_type), std::move(body));
        return Status::Ok();
      },
      max_part_bytes);
  REQUIRE(parser.ok());
  return std::move(parser).value();
}

TEST_CASE("MultipartBoundary reads quoted and plain boundaries and rejects the rest") {
  CHECK(*MultipartBoundary("multipart/related; boundary=abc") == "abc");
  CHECK(*MultipartBoundary("Multipart/Related;type=\"application/dicom\";BOUNDARY=\"a;b \\\"c\"") == "a;b \"c");
  CHECK(*MultipartBoundary("multipart/related; type=application/dicom; boundary=x1 ; start=y") == "x1");
  CHECK(MultipartBoundary("multipart/related; type=\"application/dicom\"").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(MultipartBoundary("multipart/related; boundary=\"\"").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(MultipartBoundary("application/dicom; boundary=abc").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(MultipartBoundary("").status().code() == AIHUB_INVALID_ARGUMENT);
  // Over RFC 2046's 70 characters, as Orthanc's DICOMweb client sends (73), is accepted up to 200.
  const std::string orthanc(73, 'b');
  CHECK(*MultipartBoundary("multipart/related; type=\"application/dicom\"; boundary=" + orthanc) == orthanc);
  CHECK(MultipartBoundary("multipart/related; boundary=" + std::string(201, 'b')).status().code() ==
        AIHUB_INVALID_ARGUMENT);
  CHECK(MultipartParser::Create("multipart/related", nullptr, 10).status().code() == AIHUB_INVALID_ARGUMENT);
}

TEST_CASE("all parts arrive whole in one chunk, byte by byte, and split at every offset") {
  {
    Parts parts;
    auto p = Make(parts);
    REQUIRE(p->Feed(kBody).ok());
    REQUIRE(p->Finish().ok());
    CHECK(parts == kParts);
    CHECK(p->parts() == 3);
  }
  {
    Parts parts;
    auto p = Make(parts);
    for (char c : kBody) REQUIRE(p->Feed(std::string_view(&c, 1)).ok());
    REQUIRE(p->Finish().ok());
    CHECK(parts == kParts);
  }
  for (size_t i = 0; i <= kBody.size(); ++i) {
    for (size_t j = i; j <= kBody.size(); j += 7) {
      CAPTURE(i);
      CAPTURE(j);
      Parts parts;
      auto p = Make(parts);
      REQUIRE(p->Feed(std::string_view(kBody).substr(0, i)).ok());
      REQUIRE(p->Feed(std::string_view(kBody).substr(i, j - i)).ok());
      REQUIRE(p->Feed(std::string_view(kBody).substr(j)).ok());
      REQUIRE(p->Finish().ok());
      REQUIRE(parts == kParts);
    }
  }
}

TEST_CASE("a part is delivered as soon as its delimiter arrived, before the body ends") {
  Parts parts;
  auto p = Make(parts, 1 << 20, "multipart/related; boundary=b");
  REQUIRE(p->Feed("--b\r\n\r\none\r\n--b").ok());
  CHECK(parts == Parts{{"", "one"}});
  REQUIRE(p->Feed("\r\n\r\ntwo").ok());
  CHECK(parts.size() == 1);
}

TEST_CASE("a body without the boundary, or without the closing delimiter, is truncated") {
  for (const std::string& body : {std::string("no boundary at all\r\n--XY\r\n"), std::string()}) {
    Parts parts;
    auto p = Make(parts);
    REQUIRE(p->Feed(body).ok());
    Status st = p->Finish();
    CHECK(st.code() == AIHUB_DATA_LOSS);
    CHECK(st.message().find("truncated multipart: no boundary \"XyZ\"") != std::string::npos);
  }
  // Cut inside the last part's body, in the close delimiter, and in the last part's headers.
  const size_t close = kBody.find("--XyZ--");
  const size_t third = kBody.find("--XyZ\r\n\r\n\r\n");
  for (auto [end, delivered] :
       std::vector<std::pair<size_t, size_t>>{{close, 2}, {close + 5, 3}, {close + 6, 3}, {third + 7, 2}}) {
    CAPTURE(end);
    Parts parts;
    auto p = Make(parts);
    REQUIRE(p->Feed(std::string_view(kBody).substr(0, end)).ok());
    Status st = p->Finish();
    CHECK(st.code() == AIHUB_DATA_LOSS);
    CHECK(st.message().rfind("truncated multipart: ", 0) == 0);
    CHECK(parts.size() == delivered);
    CHECK(p->Feed("--XyZ--\r\n").code() == AIHUB_DATA_LOSS);  // stays failed
  }
}

TEST_CASE("a long preamble is not kept in memory and still finds the boundary") {
  Parts parts;
  auto p = Make(parts, 16);
  const std::string junk(4096, '-');
  for (int i = 0; i < 256; ++i) REQUIRE(p->Feed(junk).ok());  // 1 MiB, far over max_part_bytes
  REQUIRE(p->Feed("\r\n--XyZ\r\n\r\nsmall\r\n--XyZ--").ok());
  REQUIRE(p->Finish().ok());
  CHECK(parts == Parts{{"", "small"}});
}

TEST_CASE("a part over max_part_bytes is RESOURCE_EXHAUSTED, with or without Content-Length") {
  {
    Parts parts;
    auto p = Make(parts, 4);
    CHECK(p->Feed("--XyZ\r\n\r\n1234\r\n--XyZ\r\n\r\n12345\r\n--XyZ--").code() == AIHUB_RESOURCE_EXHAUSTED);
    CHECK(parts == Parts{{"", "1234"}});
  }
  {
    Parts parts;
    auto p = Make(parts, 4);
    CHECK(p->Feed("--XyZ\r\nContent-Length: 5\r\n\r\n").code() == AIHUB_RESOURCE_EXHAUSTED);
  }
  {
    // Streaming: the error comes once the part outgrows the limit, not at the end of the body.
    Parts parts;
    auto p = Make(parts, 1000);
    REQUIRE(p->Feed("--XyZ\r\n\r\n").ok());
    const std::string chunk(100, 'a');
    Status st;
    int fed = 0;
    while (st.ok() && fed < 100) {
      st = p->Feed(chunk);
      ++fed;
    }
    CHECK(st.code() == AIHUB_RESOURCE_EXHAUSTED);
    CHECK(fed <= 11);
    CHECK(p->Finish().code() == AIHUB_RESOURCE_EXHAUSTED);
  }
}

TEST_CASE("malformed parts are DATA_LOSS") {
  for (const char* body : {
           "--XyZ\r\nContent-Length: 3\r\n\r\n1234\r\n--XyZ--",  // length mismatch
           "--XyZ\r\nContent-Length: 3x\r\n\r\n123\r\n--XyZ--",  // bad length
           "--XyZ\r\nno colon here\r\n\r\n123\r\n--XyZ--",       // header line
           "--XyZ\r\n\r\nbody\r\n--XyZjunk\r\n\r\n--XyZ--",      // boundary inside a body
       }) {
    CAPTURE(body);
    Parts parts;
    auto p = Make(parts);
    CHECK(p->Feed(body).code() == AIHUB_DATA_LOSS);
  }
  Parts parts;
  auto p = Make(parts);
  REQUIRE(p->Feed("--XyZ\r\n").ok());
  CHECK(p->Feed(std::string(17 * 1024, 'h')).code() == AIHUB_DATA_LOSS);  // headers without end
}

TEST_CASE("an error from the callback stops parsing and is returned from then on") {
  int calls = 0;
  auto parser = MultipartParser::Create(
      kType,
      [&calls](std::string_view, std::string&&) {
        ++calls;
        return Unavailable("disk full");
      },
      1 << 20);
  REQUIRE(parser.ok());
  MultipartParser& p = **parser;
  Status st = p.Feed(kBody);
  CHECK(st.code() == AIHUB_UNAVAILABLE);
  CHECK(st.message() == "disk full");
  CHECK(p.Feed(kBody).code() == AIHUB_UNAVAILABLE);
  CHECK(p.Finish().code() == AIHUB_UNAVAILABLE);
  CHECK(calls == 1);
}

}  // namespace
}  // namespace aihub::dicomweb
