#include "hl7/message.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <random>
#include <utility>

#include "common/utf8.h"

namespace aihub::hl7 {

namespace {

int HexValue(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

// The delimiters and the letters of their escape sequences: \F\ \S\ \R\ \E\ \T\.
constexpr std::pair<char Encoding::*, char> kDelimiters[] = {{&Encoding::field, 'F'},
                                                             {&Encoding::component, 'S'},
                                                             {&Encoding::repetition, 'R'},
                                                             {&Encoding::escape, 'E'},
                                                             {&Encoding::subcomponent, 'T'}};

// The escape letter of delimiter `c`, 0 when `c` is none.
char DelimiterCode(char c, const Encoding& e) {
  for (const auto& [member, code] : kDelimiters) {
    if (c == e.*member) return code;
  }
  return 0;
}

// The delimiter that escape letter `code` stands for, 0 when none.
char DelimiterFor(char code, const Encoding& e) {
  for (const auto& [member, letter] : kDelimiters) {
    if (code == letter) return e.*member;
  }
  return 0;
}

bool IsSegmentId(std::string_view id) {
  if (id.size() != 3) return false;
  for (char c : id) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

// Delimiters must be printable ASCII punctuation (no letters, digits, space or control characters).
bool IsDelimiter(char c) { return c > 0x20 && c < 0x7f && std::isalnum(static_cast<unsigned char>(c)) == 0; }

// Bytes quoted for an error message: printable ASCII as is, the rest as \xHH, at most 32 bytes.
std::string Quoted(std::string_view bytes) {
  std::string out = "\"";
  for (size_t i = 0; i < bytes.size() && i < 32; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02X", c);
      out += hex;
    }
  }
  return out + (bytes.size() > 32 ? "...\"" : "\"");
}

std::string Latin1ToUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out += ch;
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

// The n-th (0-based) part of `text` split on `sep`; "" when there are fewer parts.
std::string_view Nth(std::string_view text, char sep, int n) {
  size_t start = 0;
  for (int i = 0; i < n; ++i) {
    start = text.find(sep, start);
    if (start == std::string_view::npos) return {};
    ++start;
  }
  return text.substr(start, text.find(sep, start) - start);
}

template <typename Fn>
void ForEachPart(std::string_view text, char sep, Fn fn) {
  for (size_t start = 0;;) {
    const size_t end = text.find(sep, start);
    fn(text.substr(start, end - start));
    if (end == std::string_view::npos) return;
    start = end + 1;
  }
}

// "SEG-F", "SEG-F.C", "SEG-F.C.S"; numbers >= 1. Component/subcomponent 0 means "whole".
struct Path {
  std::string_view segment;
  int field = 0;
  int component = 0;
  int subcomponent = 0;
};

bool ParsePath(std::string_view text, Path* path) {
  if (text.size() < 5 || text[3] != '-') return false;
  path->segment = text.substr(0, 3);
  int* numbers[] = {&path->field, &path->component, &path->subcomponent};
  const char* p = text.data() + 4;
  const char* end = text.data() + text.size();
  for (int* number : numbers) {
    auto [next, ec] = std::from_chars(p, end, *number);
    if (ec != std::errc() || *number < 1) return false;
    if (next == end) return true;
    if (*next != '.') return false;
    p = next + 1;
  }
  return false;
}

std::string UtcNow(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), format, &tm);
  return buf;
}

}  // namespace

std::string Escape(std::string_view raw, const Encoding& e) {
  const std::string text = ReplaceInvalidUtf8(raw);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    const char code = DelimiterCode(c, e);
    if (code != 0) {
      out += {e.escape, code, e.escape};
    } else if ((u < 0x20 && c != '\t') || u == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "X%02X", u);
      out += e.escape;
      out += hex;
      out += e.escape;
    } else {
      out += c;
    }
  }
  return out;
}

std::string Unescape(std::string_view text, const Encoding& e) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != e.escape) {
      out += text[i];
      continue;
    }
    const size_t end = text.find(e.escape, i + 1);
    if (end == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    const std::string_view seq = text.substr(i + 1, end - i - 1);
    const char delimiter = seq.size() == 1 ? DelimiterFor(seq[0], e) : 0;
    if (delimiter != 0) {
      out += delimiter;
    } else if (seq == "H" || seq == "N") {
      // Highlighting on/off: no meaning in plain text.
    } else if (seq == ".br") {
      out += '\r';
    } else if (seq.size() >= 3 && seq[0] == 'X' && seq.size() % 2 == 1 &&
               seq.find_first_not_of("0123456789ABCDEFabcdef", 1) == std::string_view::npos) {
      for (size_t k = 1; k < seq.size(); k += 2) {
        out += static_cast<char>(HexValue(seq[k]) * 16 + HexValue(seq[k + 1]));
      }
    } else {
      out.append(text.substr(i, end - i + 1));
    }
    i = end;
  }
  return out;
}

StatusOr<Message> Message::Parse(std::string_view text) {
  if (text.size() > kMaxMessageBytes) {
    return InvalidArgument("message is " + std::to_string(text.size()) + " bytes, over the limit of " +
                           std::to_string(kMaxMessageBytes));
  }
  Message m;
  m.text_.assign(text);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    const size_t offset = pos;
    pos = end + ((end + 1 < text.size() && text[end] == '\r' && text[end + 1] == '\n') ? 2 : 1);
    if (line.empty()) continue;
    if (m.segments_.empty()) {
      if (line.substr(0, 3) != "MSH") {
        return InvalidArgument("no MSH segment: the message starts with " + Quoted(line.substr(0, 8)));
      }
      if (line.size() < 4) return InvalidArgument("MSH-1: no field separator");
      const char fs = line[3];
      if (!IsDelimiter(fs)) return InvalidArgument("MSH-1: bad field separator " + Quoted(line.substr(3, 1)));
      const std::string_view chars = line.substr(4, line.find(fs, 4) - 4);
      bool good = (chars.size() == 4 || chars.size() == 5);
      for (size_t i = 0; good && i < chars.size(); ++i) {
        good = IsDelimiter(chars[i]) && chars[i] != fs && chars.find(chars[i], i + 1) == std::string_view::npos;
      }
      if (!good) {
        return InvalidArgument("MSH-2: bad encoding characters " + Quoted(chars) +
                               ": need 4 (or 5) distinct punctuation characters other than the field separator");
      }
      m.encoding_ = Encoding{fs, chars[0], chars[1], chars[2], chars[3]};
    }
    const std::string_view id = line.substr(0, line.find(m.encoding_.field));
    if (!IsSegmentId(id)) {
      return InvalidArgument("segment " + std::to_string(m.segments_.size() + 1) + ": bad segment id " + Quoted(id) +
                             " (3 characters A-Z, 0-9)");
    }
    m.segments_.emplace_back(static_cast<uint32_t>(offset), static_cast<uint32_t>(line.size()));
  }
  if (m.segments_.empty()) return InvalidArgument("no MSH segment: the message is empty");
  m.latin1_ = m.Get("MSH-18.1") == "8859/1";
  return m;
}

std::string_view Message::Field(std::string_view segment_id, int field, int occurrence) const {
  const std::string_view text = text_;
  for (const auto& [offset, length] : segments_) {
    const std::string_view segment = text.substr(offset, length);
    if (segment.substr(0, 3) != segment_id || occurrence-- > 0) continue;
    // In MSH the separator after the id is MSH-1 itself, and MSH-2 starts right after it.
    if (segment_id != "MSH") return Nth(segment, encoding_.field, field);
    return field == 1 ? segment.substr(3, 1) : Nth(segment.substr(4), encoding_.field, field - 2);
  }
  return {};
}

std::string Message::Decode(std::string_view text) const {
  const std::string plain = Unescape(text, encoding_);
  return latin1_ ? Latin1ToUtf8(plain) : ReplaceInvalidUtf8(plain);
}

std::string Message::Pick(std::string_view repetition, int component, int subcomponent) const {
  const Encoding& e = encoding_;
  if (subcomponent > 0) {
    return Decode(Nth(Nth(repetition, e.component, component - 1), e.subcomponent, subcomponent - 1));
  }
  auto joined_subcomponents = [&](std::string_view text) {
    std::string out;
    ForEachPart(text, e.subcomponent, [&](std::string_view part) {
      if (part.data() != text.data()) out += '&';
      out += Decode(part);
    });
    return out;
  };
  if (component > 0) return joined_subcomponents(Nth(repetition, e.component, component - 1));
  std::string out;
  ForEachPart(repetition, e.component, [&](std::string_view part) {
    if (part.data() != repetition.data()) out += '^';
    out += joined_subcomponents(part);
  });
  return out;
}

std::string Message::Get(std::string_view path_text, int occurrence) const {
  Path path;
  if (!ParsePath(path_text, &path)) return {};
  const std::string_view field = Field(path.segment, path.field, occurrence);
  // MSH-1 and MSH-2 are the delimiters themselves: nothing in them is a separator or an escape.
  if (path.segment == "MSH" && path.field <= 2) {
    return path.component <= 1 && path.subcomponent <= 1 ? std::string(field) : "";
  }
  return Pick(Nth(field, encoding_.repetition, 0), path.component, path.subcomponent);
}

std::vector<std::string> Message::GetRepetitions(std::string_view path_text, int occurrence) const {
  Path path;
  if (!ParsePath(path_text, &path)) return {};
  const std::string_view field = Field(path.segment, path.field, occurrence);
  if (field.empty()) return {};
  if (path.segment == "MSH" && path.field <= 2) return {Get(path_text, occurrence)};
  std::vector<std::string> out;
  ForEachPart(field, encoding_.repetition,
              [&](std::string_view rep) { out.push_back(Pick(rep, path.component, path.subcomponent)); });
  return out;
}

int Message::Count(std::string_view segment_id) const {
  int n = 0;
  for (const auto& [offset, length] : segments_) n += text_.compare(offset, 3, segment_id) == 0 ? 1 : 0;
  return n;
}

std::string Message::MessageType() const {
  const std::string code = Get("MSH-9.1");
  const std::string trigger = Get("MSH-9.2");
  return trigger.empty() ? code : code + "^" + trigger;
}

MessageBuilder::Segment& MessageBuilder::Segment::Set(int field, int component, int subcomponent,
                                                      std::string_view value) {
  assert(field >= (id_ == "MSH" ? 3 : 1) && component >= 1 && subcomponent >= 1);
  if (fields_.size() <= static_cast<size_t>(field)) fields_.resize(field + 1);
  auto& components = fields_[field];
  if (components.size() < static_cast<size_t>(component)) components.resize(component);
  auto& subcomponents = components[component - 1];
  if (subcomponents.size() < static_cast<size_t>(subcomponent)) subcomponents.resize(subcomponent);
  subcomponents[subcomponent - 1] = Escape(value, encoding_);
  return *this;
}

MessageBuilder::Segment& MessageBuilder::Segment::SetComponents(int field, std::string_view value) {
  int component = 0;
  ForEachPart(value, '^', [&](std::string_view part) { Set(field, ++component, part); });
  return *this;
}

namespace {

// Parts [begin, end) rendered and joined with `sep`, trailing empty parts left out (HL7 lets them go).
template <typename It, typename Fn>
std::string JoinTrimmed(It begin, It end, char sep, Fn render) {
  std::vector<std::string> rendered;
  for (It it = begin; it != end; ++it) rendered.push_back(render(*it));
  while (!rendered.empty() && rendered.back().empty()) rendered.pop_back();
  std::string out;
  for (size_t i = 0; i < rendered.size(); ++i) {
    if (i > 0) out += sep;
    out += rendered[i];
  }
  return out;
}

}  // namespace

std::string MessageBuilder::Segment::ToString() const {
  const Encoding& e = encoding_;
  const auto subcomponent = [](const std::string& s) { return s; };
  const auto component = [&](const std::vector<std::string>& c) {
    return JoinTrimmed(c.begin(), c.end(), e.subcomponent, subcomponent);
  };
  const auto field = [&](const std::vector<std::vector<std::string>>& f) {
    return JoinTrimmed(f.begin(), f.end(), e.component, component);
  };
  std::string out = id_;
  size_t first = 1;
  if (id_ == "MSH") {  // MSH-1 and MSH-2 are the delimiters themselves
    out += {e.field, e.component, e.repetition, e.escape, e.subcomponent};
    first = 3;
  }
  const std::string fields =
      JoinTrimmed(fields_.begin() + std::min(first, fields_.size()), fields_.end(), e.field, field);
  return fields.empty() ? out : out + e.field + fields;
}

MessageBuilder::Segment& MessageBuilder::Add(std::string_view id) {
  assert(IsSegmentId(id));
  segments_.push_back(Segment(std::string(id), encoding_));
  return segments_.back();
}

std::string MessageBuilder::ToString() const {
  std::string out;
  for (const Segment& s : segments_) out += s.ToString() + '\r';
  return out;
}

std::string NewControlId() {
  static std::atomic<uint32_t> counter{std::random_device{}()};
  char digits[8];
  std::snprintf(digits, sizeof(digits), "%06u", static_cast<unsigned>(counter.fetch_add(1) % 1000000));
  return UtcNow("%Y%m%d%H%M%S") + digits;
}

std::string NowTimestamp() { return UtcNow("%Y%m%d%H%M%S+0000"); }

namespace {

const char* ErrorText(ErrorCode error) {
  switch (error) {
    case ErrorCode::kSegmentSequence:
      return "Segment sequence error";
    case ErrorCode::kRequiredFieldMissing:
      return "Required field missing";
    case ErrorCode::kDataType:
      return "Data type error";
    case ErrorCode::kUnsupportedMessageType:
      return "Unsupported message type";
    case ErrorCode::kApplicationInternal:
      return "Application internal error";
  }
  return "Error";
}

// `original` is null when nothing of the message parsed; `control_id` then is all that is known.
std::string BuildAck(const Message* original, std::string_view control_id, AckCode code, ErrorCode error,
                     std::string_view error_text, const OutboundOptions& from) {
  auto get = [&](const std::string& path) { return original != nullptr ? original->Get(path) : std::string(); };
  MessageBuilder builder;
  MessageBuilder::Segment& msh = builder.Add("MSH");
  // Sender and receiver swap; HD fields copy component by component (namespace^universal id^type).
  auto copy_hd = [&](int field, const std::string& source, const std::string& fallback) {
    if (get(source).empty()) {
      msh.SetComponents(field, fallback);
      return;
    }
    for (int c = 1; c <= 3; ++c) msh.Set(field, c, get(source + "." + std::to_string(c)));
  };
  copy_hd(3, "MSH-5", from.sending_application);
  copy_hd(4, "MSH-6", from.sending_facility);
  copy_hd(5, "MSH-3", "");
  copy_hd(6, "MSH-4", "");
  msh.Set(7, NowTimestamp()).Set(9, 1, "ACK").Set(9, 2, get("MSH-9.2")).Set(9, 3, "ACK").Set(10, NewControlId());
  const std::string processing_id = get("MSH-11.1");
  const std::string version = get("MSH-12.1");
  msh.Set(11, processing_id.empty() ? from.processing_id : processing_id);
  msh.Set(12, version.empty() ? from.version : version).Set(18, "UNICODE UTF-8");
  const char* codes[] = {"AA", "AE", "AR"};
  MessageBuilder::Segment& msa = builder.Add("MSA").Set(1, codes[static_cast<int>(code)]).Set(2, control_id);
  if (code != AckCode::kAA) {
    msa.Set(3, error_text);
    builder.Add("ERR")
        .Set(3, 1, std::to_string(static_cast<int>(error)))
        .Set(3, 2, ErrorText(error))
        .Set(3, 3, "HL70357")
        .Set(4, "E")
        .Set(8, error_text);
  }
  return builder.ToString();
}

}  // namespace

std::string MakeAck(const Message& original, const OutboundOptions& from, AckCode code, ErrorCode error,
                    std::string_view error_text) {
  return BuildAck(&original, original.ControlId(), code, error, error_text, from);
}

std::string MakeAckForUnparsable(std::string_view raw, const OutboundOptions& from, ErrorCode error,
                                 std::string_view error_text) {
  const std::string_view first_line = raw.substr(0, raw.find_first_of("\r\n"));
  StatusOr<Message> msh = Message::Parse(first_line);
  if (msh.ok()) return BuildAck(&*msh, msh->ControlId(), AckCode::kAR, error, error_text, from);
  // MSH-10 follows the ninth field separator (MSH-1 is the first).
  std::string control_id;
  if (first_line.size() > 4 && first_line.substr(0, 3) == "MSH") {
    const std::string_view id = Nth(first_line.substr(4), first_line[3], 8);
    for (size_t i = 0; i < id.size() && id[i] >= 0x20 && id[i] < 0x7f && i < 199; ++i) control_id += id[i];
  }
  return BuildAck(nullptr, control_id, AckCode::kAR, error, error_text, from);
}

}  // namespace aihub::hl7
