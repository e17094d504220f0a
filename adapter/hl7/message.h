// HL7 v2 messages in ER7 (pipe-and-hat) encoding: parsing, field access, building, and acknowledgements.
// Everything here is untrusted-input safe: Parse answers any byte string with a Message or INVALID_ARGUMENT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace aihub::hl7 {

// Largest message Parse accepts (and the MLLP default frame limit).
inline constexpr size_t kMaxMessageBytes = size_t{16} << 20;

// The delimiters of one message (MSH-1 and MSH-2).
struct Encoding {
  char field = '|';
  char component = '^';
  char repetition = '~';
  char escape = '\\';
  char subcomponent = '&';
};

// How the hub names itself in messages it writes (MSH-3..6, MSH-11, MSH-12) and which message type alerts use.
struct OutboundOptions {
  std::string sending_application = "AIHUB";
  std::string sending_facility;
  std::string receiving_application;
  std::string receiving_facility;
  std::string version = "2.5.1";
  std::string alert_message_type = "ADT^A31";  // components split on '^' into MSH-9
  std::string processing_id = "P";             // P production, T training, D debugging
};

// `text` with the delimiters escaped (\F\ \S\ \R\ \E\ \T\) and every C0 control but TAB, and DEL, as a hex
// escape (\X0D\, \X0B\, ...), so no value can end a segment or an MLLP frame. Invalid UTF-8 is replaced first
// (messages the hub writes declare UTF-8 in MSH-18).
std::string Escape(std::string_view text, const Encoding& encoding = {});
// Decodes \F\ \S\ \T\ \R\ \E\, \Xhh..\ (bytes), \.br\ (CR); drops the highlighting commands \H\ and \N\;
// keeps any other or unterminated escape as written.
std::string Unescape(std::string_view text, const Encoding& encoding = {});

// A parsed message. Accessors never fail: what is absent reads as "".
class Message {
 public:
  // Segments end with CR, LF or CRLF; empty lines are skipped. The first segment must be MSH with 4 (or 5 with
  // the v2.7 truncation character) distinct punctuation characters in MSH-2; segment ids are 3 characters
  // A-Z/0-9. At most kMaxMessageBytes. Anything else: INVALID_ARGUMENT saying what and where.
  static StatusOr<Message> Parse(std::string_view text);

  // Value at "SEG-F", "SEG-F.C" or "SEG-F.C.S" in the `occurrence`-th (0-based) segment with that id, first
  // repetition, escapes decoded, as UTF-8 (MSH-18 "8859/1" is converted, other invalid bytes become U+FFFD).
  // Numbering is HL7's: MSH-1 is the field separator and MSH-2 the encoding characters, both as written.
  // Without a component the components come joined with '^' (subcomponents with '&') whatever the message's
  // delimiters, so "PV1-3" reads "ER^101^1".
  std::string Get(std::string_view path, int occurrence = 0) const;
  // Every repetition of the field at `path` (component/subcomponent picked from each); empty field: none.
  std::vector<std::string> GetRepetitions(std::string_view path, int occurrence = 0) const;
  // Number of segments with this id.
  int Count(std::string_view segment_id) const;

  // "ORM^O01" from MSH-9.1 and MSH-9.2 (just MSH-9.1 when there is no trigger event).
  std::string MessageType() const;
  std::string ControlId() const { return Get("MSH-10"); }
  std::string Version() const { return Get("MSH-12.1"); }
  const Encoding& encoding() const { return encoding_; }

 private:
  // Field `field` of the `occurrence`-th segment `segment_id` as written (escaped); "" when absent.
  std::string_view Field(std::string_view segment_id, int field, int occurrence) const;
  std::string Decode(std::string_view text) const;
  std::string Pick(std::string_view repetition, int component, int subcomponent) const;

  // The text as received and where each segment lies in it: fields are split when read, so memory stays
  // proportional to the input whatever its shape.
  std::string text_;
  std::vector<std::pair<uint32_t, uint32_t>> segments_;  // offset, length
  Encoding encoding_;
  bool latin1_ = false;
};

// Writes messages; every value goes through Escape. MSH-1 and MSH-2 come from the encoding.
class MessageBuilder {
 public:
  class Segment {
   public:
    // Sets field `field` (HL7 numbering, >= 3 for MSH), component and subcomponent (1-based) to `value`.
    Segment& Set(int field, std::string_view value) { return Set(field, 1, 1, value); }
    Segment& Set(int field, int component, std::string_view value) { return Set(field, component, 1, value); }
    Segment& Set(int field, int component, int subcomponent, std::string_view value);
    // Sets the components of `field` from `value` split on '^' (each part escaped), e.g. "ORM^O01^ORM_O01".
    Segment& SetComponents(int field, std::string_view value);

   private:
    friend class MessageBuilder;
    Segment(std::string id, Encoding encoding) : id_(std::move(id)), encoding_(encoding) {}
    std::string ToString() const;

    std::string id_;
    Encoding encoding_;
    std::vector<std::vector<std::vector<std::string>>> fields_;  // [field][component][subcomponent], escaped
  };

  explicit MessageBuilder(Encoding encoding = {}) : encoding_(encoding) {}
  // Appends a segment; the reference stays valid while the builder lives. `id` is 3 characters A-Z/0-9.
  Segment& Add(std::string_view id);
  // Segments, each terminated by CR.
  std::string ToString() const;

 private:
  Encoding encoding_;
  std::deque<Segment> segments_;
};

// A new message control id: UTC time to the second then a process-wide counter, 20 characters, unique within
// a process and, across restarts, unless one repeats the same second with a counter in the same range.
std::string NewControlId();
// Current UTC time as an HL7 DTM with offset, "20260301123456+0000".
std::string NowTimestamp();

enum class AckCode { kAA, kAE, kAR };
// HL7 table 0357 codes written to ERR-3.
enum class ErrorCode {
  kSegmentSequence = 100,
  kRequiredFieldMissing = 101,
  kDataType = 102,
  kUnsupportedMessageType = 200,
  kApplicationInternal = 207,
};

// ACK^<trigger>^ACK for `original` (v2.5 layout, which older receivers read too):
//   MSH-3/4 the original's MSH-5/6 (else `from`'s sender), MSH-5/6 the original's MSH-3/4, MSH-10 new, MSH-11
//   and MSH-12 the original's (else `from`'s);
//   MSA-1 code, MSA-2 the original's MSH-10, MSA-3 `error_text` when code != kAA (for receivers before v2.5);
//   ERR only when code != kAA: ERR-3 <error>^<its table 0357 text>^HL70357, ERR-4 "E", ERR-8 `error_text`.
std::string MakeAck(const Message& original, const OutboundOptions& from, AckCode code = AckCode::kAA,
                    ErrorCode error = ErrorCode::kApplicationInternal, std::string_view error_text = {});
// An AR for bytes that did not parse: the MSH segment alone is parsed if it can be (everything MakeAck copies),
// else the MSH-10 found by splitting the first line on its fourth byte (printable ASCII only), else none.
std::string MakeAckForUnparsable(std::string_view raw, const OutboundOptions& from, ErrorCode error,
                                 std::string_view error_text);

}  // namespace aihub::hl7
