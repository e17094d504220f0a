// Streaming parser for multipart/related bodies (RFC 2046, RFC 2387), as WADO-RS sends DICOM instances.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace aihub::dicomweb {

// The boundary parameter of a multipart Content-Type value (quoted or not, parameter names case-insensitive);
// INVALID_ARGUMENT when the type is not multipart/* or has no usable boundary (1..200 characters: RFC 2046 says
// at most 70, but senders exceed it, e.g. Orthanc's DICOMweb client with 73).
inline constexpr size_t kMaxBoundary = 200;
StatusOr<std::string> MultipartBoundary(std::string_view content_type);

// Feeds on a multipart body in chunks of any size and hands each part to `on_part` as soon as its closing
// delimiter arrived. Memory holds at most one part plus one delimiter's worth of lookahead.
//  - Text before the first boundary (the preamble) and after the closing one (the epilogue) is ignored.
//  - Part headers must end with an empty line (at most 16 KiB of headers); Content-Type is reported ("" when the
//    part has none), Content-Length, when present, must equal the body's size.
//  - Errors: malformed headers or delimiter lines, a Content-Length mismatch -> DATA_LOSS; a part over
//    `max_part_bytes` -> RESOURCE_EXHAUSTED; an error from `on_part` is returned as is. After any error the parser
//    stops: every later Feed/Finish returns the same status.
// Not thread-safe; one parser per body.
class MultipartParser {
 public:
  using PartCallback = std::function<Status(std::string_view part_content_type, std::string&& body)>;

  // INVALID_ARGUMENT when `content_type` has no boundary (see MultipartBoundary).
  static StatusOr<std::unique_ptr<MultipartParser>> Create(std::string_view content_type, PartCallback on_part,
                                                           size_t max_part_bytes);

  Status Feed(std::string_view chunk);
  // The body ended: OK only after the closing delimiter ("--boundary--"); otherwise
  // DATA_LOSS "truncated multipart: ...".
  Status Finish();

  // Parts delivered so far.
  int parts() const { return parts_; }

 private:
  MultipartParser(std::string boundary, PartCallback on_part, size_t max_part_bytes);
  Status Parse();
  Status ParseHeaders(std::string_view block);
  Status Fail(Status status);
  Status FailTooLarge();

  enum class State { kPreamble, kDelimiterLine, kHeaders, kBody, kEpilogue };

  const std::string delimiter_;  // "\r\n--" + boundary
  const PartCallback on_part_;
  const size_t max_part_bytes_;
  State state_ = State::kPreamble;
  std::string buffer_;  // bytes not consumed yet; in kBody it starts with the current part's body
  size_t scanned_ = 0;  // in kPreamble/kBody: buffer_ before this offset holds no delimiter start
  std::string part_type_;
  long long part_length_ = -1;  // Content-Length of the current part, -1 when absent
  int parts_ = 0;
  Status error_;
};

}  // namespace aihub::dicomweb
