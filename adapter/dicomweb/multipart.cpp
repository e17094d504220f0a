#include "dicomweb/multipart.h"

#include <cctype>

namespace aihub::dicomweb {

namespace {

constexpr size_t kMaxHeaderBytes = 16 * 1024;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

StatusOr<std::string> MultipartBoundary(std::string_view content_type) {
  const std::string quoted = "\"" + std::string(content_type) + "\"";
  size_t semicolon = content_type.find(';');
  if (!EqualsIgnoreCase(Trim(content_type.substr(0, semicolon)).substr(0, 10), "multipart/")) {
    return InvalidArgument("content type " + quoted + " is not multipart");
  }
  // Parameters: ; name=token | ; name="quoted \" string"
  size_t i = semicolon;
  while (i < content_type.size()) {
    ++i;  // past ';'
    size_t eq = content_type.find('=', i);
    size_t next = content_type.find(';', i);
    if (eq == std::string_view::npos || eq > next) {
      i = next;
      continue;
    }
    std::string_view name = Trim(content_type.substr(i, eq - i));
    std::string value;
    i = eq + 1;
    while (i < content_type.size() && content_type[i] == ' ') ++i;
    if (i < content_type.size() && content_type[i] == '"') {
      for (++i; i < content_type.size() && content_type[i] != '"'; ++i) {
        if (content_type[i] == '\\' && i + 1 < content_type.size()) ++i;
        value += content_type[i];
      }
      i = content_type.find(';', i);
    } else {
      next = content_type.find(';', i);
      value = std::string(Trim(content_type.substr(i, next == std::string_view::npos ? next : next - i)));
      i = next;
    }
    if (EqualsIgnoreCase(name, "boundary")) {
      // RFC 2046 allows 70 characters; Orthanc's DICOMweb client sends 73. Accept what is unambiguous.
      if (value.empty() || value.size() > kMaxBoundary) return InvalidArgument("bad boundary in content type " + quoted);
      return value;
    }
  }
  return InvalidArgument("no boundary parameter in content type " + quoted);
}

StatusOr<std::unique_ptr<MultipartParser>> MultipartParser::Create(std::string_view content_type, PartCallback on_part,
                                                                   size_t max_part_bytes) {
  StatusOr<std::string> boundary = MultipartBoundary(content_type);
  if (!boundary.ok()) return boundary.status();
  return std::unique_ptr<MultipartParser>(new MultipartParser(*boundary, std::move(on_part), max_part_bytes));
}

MultipartParser::MultipartParser(std::string boundary, PartCallback on_part, size_t max_part_bytes)
    : delimiter_("\r\n--" + boundary),
      on_part_(std::move(on_part)),
      max_part_bytes_(max_part_bytes),
      // A boundary at the very start of the body has no CRLF before it: supply one.
      buffer_("\r\n") {}

Status MultipartParser::Fail(Status status) {
  error_ = std::move(status);
  buffer_.clear();
  return error_;
}

Status MultipartParser::FailTooLarge() {
  return Fail(ResourceExhausted("multipart part " + std::to_string(parts_ + 1) + " is larger than " +
                                std::to_string(max_part_bytes_) + " bytes"));
}

Status MultipartParser::Feed(std::string_view chunk) {
  if (!error_.ok() || state_ == State::kEpilogue) return error_;
  buffer_.append(chunk);
  return Parse();
}

Status MultipartParser::Parse() {
  for (;;) {
    switch (state_) {
      case State::kPreamble:
      case State::kBody: {
        const size_t at = buffer_.find(delimiter_, scanned_);
        if (at == std::string::npos) {
          // The last delimiter_.size() - 1 bytes may be the start of a delimiter that the next chunk completes.
          scanned_ = buffer_.size() < delimiter_.size() ? 0 : buffer_.size() - delimiter_.size() + 1;
          if (state_ == State::kPreamble) {
            buffer_.erase(0, scanned_);
            scanned_ = 0;
          } else if (scanned_ > max_part_bytes_) {
            return FailTooLarge();
          }
          return Status::Ok();
        }
        if (state_ == State::kBody) {
          if (at > max_part_bytes_) return FailTooLarge();
          if (part_length_ >= 0 && static_cast<size_t>(part_length_) != at) {
            return Fail(DataLoss("multipart part " + std::to_string(parts_ + 1) + " has Content-Length " +
                                 std::to_string(part_length_) + " but " + std::to_string(at) + " bytes"));
          }
          std::string rest = buffer_.substr(at + delimiter_.size());
          buffer_.resize(at);
          ++parts_;
          Status st = on_part_(part_type_, std::move(buffer_));
          buffer_ = std::move(rest);
          if (!st.ok()) return Fail(std::move(st));
        } else {
          buffer_.erase(0, at + delimiter_.size());
        }
        scanned_ = 0;
        state_ = State::kDelimiterLine;
        break;
      }
      case State::kDelimiterLine: {
        // After "--boundary" come "--" (the close delimiter) or optional padding (LWSP) and CRLF.
        if (buffer_.size() < 2) return Status::Ok();
        if (buffer_.compare(0, 2, "--") == 0) {
          state_ = State::kEpilogue;
          buffer_ = std::string();
          return Status::Ok();
        }
        size_t i = 0;
        while (i < buffer_.size() && (buffer_[i] == ' ' || buffer_[i] == '\t')) ++i;
        if (i + 1 >= buffer_.size()) {
          return i > kMaxHeaderBytes ? Fail(DataLoss("multipart delimiter line too long")) : Status::Ok();
        }
        if (buffer_.compare(i, 2, "\r\n") != 0) {
          return Fail(DataLoss("malformed multipart delimiter line after part " + std::to_string(parts_)));
        }
        buffer_.erase(0, i);  // keep the CRLF: an empty header block then reads "\r\n\r\n" like any other
        part_type_.clear();
        part_length_ = -1;
        state_ = State::kHeaders;
        break;
      }
      case State::kHeaders: {
        const size_t end = buffer_.find("\r\n\r\n");
        if (end == std::string::npos) {
          return buffer_.size() > kMaxHeaderBytes
                     ? Fail(DataLoss("multipart part " + std::to_string(parts_ + 1) + " headers exceed 16 KiB"))
                     : Status::Ok();
        }
        if (Status st = ParseHeaders(std::string_view(buffer_).substr(0, end)); !st.ok()) return Fail(st);
        buffer_.erase(0, end + 4);
        if (part_length_ >= 0) {
          if (static_cast<unsigned long long>(part_length_) > max_part_bytes_) return FailTooLarge();
          buffer_.reserve(static_cast<size_t>(part_length_) + delimiter_.size() + 2);
        }
        state_ = State::kBody;
        break;
      }
      case State::kEpilogue:
        return Status::Ok();
    }
  }
}

Status MultipartParser::ParseHeaders(std::string_view block) {
  while (!block.empty()) {
    const size_t eol = block.find("\r\n");
    const std::string_view line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view() : block.substr(eol + 2);
    if (line.empty()) continue;  // the block starts with the delimiter line's CRLF
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return DataLoss("malformed header line in multipart part " + std::to_string(parts_ + 1));
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = Trim(line.substr(colon + 1));
    if (EqualsIgnoreCase(name, "Content-Type")) {
      part_type_ = std::string(value);
    } else if (EqualsIgnoreCase(name, "Content-Length")) {
      long long n = 0;
      bool ok = !value.empty() && value.size() <= 18;
      for (char c : value) {
        ok = ok && c >= '0' && c <= '9';
        n = n * 10 + (c - '0');
      }
      if (!ok) return DataLoss("bad Content-Length in multipart part " + std::to_string(parts_ + 1));
      part_length_ = n;
    }
  }
  return Status::Ok();
}

Status MultipartParser::Finish() {
  if (!error_.ok() || state_ == State::kEpilogue) return error_;
  std::string what;
  switch (state_) {
    case State::kPreamble:
      what = "no boundary \"" + delimiter_.substr(4) + "\" in the body";
      break;
    case State::kBody:
      what = "part " + std::to_string(parts_ + 1) + " has no closing delimiter";
      break;
    default:
      what = "no closing delimiter after part " + std::to_string(parts_);
  }
  return Fail(DataLoss("truncated multipart: " + what));
}

}  // namespace aihub::dicomweb
