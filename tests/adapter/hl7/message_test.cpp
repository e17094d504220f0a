#include "hl7/message.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>

#include "common/utf8.h"
#include "test_util.h"

namespace aihub::hl7 {
namespace {

const std::string kOrm =
    "MSH|^~\\&|RIS|HOSP^1.2.3^ISO|PACS|HOSP|20260301101500||ORM^O01|MSG00001|P|2.3.1\r"
    "PID|1||123456^^^HOSP^MR~999^^^NHS||DOE&VAN^JOHN^A||19600101|M\r"
    "NTE|1||first \\T\\ note with \\F\\ and \\S\\ and \\E\\\\.br\\next line\r"
    "NTE|2||second\r";

StatusOr<Message> MustParse(const std::string& text) {
  StatusOr<Message> m = Message::Parse(text);
  INFO(m.status().ToString());
  REQUIRE(m.ok());
  return m;
}

TEST_CASE("Get reads fields, components, subcomponents and repetitions with HL7 numbering") {
  const Message m = *MustParse(kOrm);
  CHECK(m.Get("MSH-1") == "|");
  CHECK(m.Get("MSH-2") == "^~\\&");
  CHECK(m.Get("MSH-3") == "RIS");
  CHECK(m.Get("MSH-4") == "HOSP^1.2.3^ISO");
  CHECK(m.Get("MSH-4.2") == "1.2.3");
  CHECK(m.Get("MSH-9.2") == "O01");
  CHECK(m.MessageType() == "ORM^O01");
  CHECK(m.ControlId() == "MSG00001");
  CHECK(m.Version() == "2.3.1");
  CHECK(m.Get("PID-3") == "123456^^^HOSP^MR");
  CHECK(m.Get("PID-3.1") == "123456");
  CHECK(m.Get("PID-3.4") == "HOSP");
  CHECK(m.GetRepetitions("PID-3.1") == std::vector<std::string>{"123456", "999"});
  CHECK(m.GetRepetitions("PID-3") == std::vector<std::string>{"123456^^^HOSP^MR", "999^^^NHS"});
  CHECK(m.Get("PID-5") == "DOE&VAN^JOHN^A");
  CHECK(m.Get("PID-5.1") == "DOE&VAN");
  CHECK(m.Get("PID-5.1.2") == "VAN");
  CHECK(m.Get("PID-5.2.1") == "JOHN");
  CHECK(m.Get("NTE-3") == "first & note with | and ^ and \\\rnext line");
  CHECK(m.Get("NTE-3", 1) == "second");
  CHECK(m.Count("NTE") == 2);
  CHECK(m.Count("OBR") == 0);
  // Absent or malformed paths read as "".
  for (const char* path : {"PID-40", "PID-3.9", "PID-5.1.7", "OBR-4", "PID-0", "PID-", "PID3", "PID-3.", "PID-x",
                           "PID-3.1.1.1", "MSH-2.2", ""}) {
    CHECK_MESSAGE(m.Get(path).empty(), path);
  }
  CHECK(m.Get("NTE-3", 2).empty());
  CHECK(m.GetRepetitions("PID-40").empty());
}

TEST_CASE("custom encoding characters, LF and CRLF segment ends") {
  const std::string text =
      "MSH#$*!@#SENDER#FAC$X#####ADT$A08#ID#P#2.5\r\n"
      "\n"
      "PID#1##77$$$H*88##SMITH$ANN!F!B@C!S!\n"
      "PV1#1#I#W1$12$3\r\n";
  const Message m = *MustParse(text);
  CHECK(m.encoding().field == '#');
  CHECK(m.encoding().component == '$');
  CHECK(m.encoding().repetition == '*');
  CHECK(m.encoding().escape == '!');
  CHECK(m.encoding().subcomponent == '@');
  CHECK(m.Get("MSH-1") == "#");
  CHECK(m.Get("MSH-2") == "$*!@");
  CHECK(m.MessageType() == "ADT^A08");
  CHECK(m.Get("MSH-4.2") == "X");
  CHECK(m.GetRepetitions("PID-3.1") == std::vector<std::string>{"77", "88"});
  CHECK(m.Get("PID-5.2") == "ANN#B&C$");
  CHECK(m.Get("PID-5.2.2") == "C$");
  CHECK(m.Get("PV1-3") == "W1^12^3");  // joined with '^' whatever the message's delimiters
  CHECK(m.Count("PID") == 1);
  // Five encoding characters (v2.7 truncation character) are accepted.
  CHECK(Message::Parse("MSH|^~\\&#|A|B\r").ok());
}

TEST_CASE("Escape and Unescape round-trip delimiters, controls and UTF-8") {
  const Encoding standard;
  const Encoding odd{'#', '$', '*', '!', '@'};
  const std::string text = "a|b^c~d\\e&f#$*!@\r\n\x0b\x1c\x01\x7f\tend \xC3\xA9";
  for (const Encoding& e : {standard, odd}) {
    const std::string escaped = Escape(text, e);
    CHECK(escaped.find_first_of(std::string{e.field, e.component, e.repetition, e.subcomponent, '\r', '\n', '\x0b',
                                            '\x1c', '\x01', '\x7f'}) == std::string::npos);
    CHECK(Unescape(escaped, e) == text);
  }
  CHECK(Escape("|^~\\&\r\n\x0b\x1c") == "\\F\\\\S\\\\R\\\\E\\\\T\\\\X0D\\\\X0A\\\\X0B\\\\X1C\\");
  CHECK(Escape("a\xff") == "a\xEF\xBF\xBD");  // invalid UTF-8 becomes U+FFFD
  CHECK(Unescape("\\X41426a\\") == "ABj");
  CHECK(Unescape("x\\H\\bold\\N\\y") == "xboldy");
  CHECK(Unescape("a\\.br\\b") == "a\rb");
  // Unknown, malformed and unterminated escapes stay as written.
  CHECK(Unescape("\\Zlocal\\ \\X4\\ \\XZZ\\ tail\\F") == "\\Zlocal\\ \\X4\\ \\XZZ\\ tail\\F");
}

TEST_CASE("Get gives UTF-8: MSH-18 8859/1 is converted, other invalid bytes replaced") {
  const Message latin1 = *MustParse("MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5|||||DE|8859/1\rPID|1||1||M\xFC\\XE9\\LLER\r");
  CHECK(latin1.Get("PID-5") == "M\xC3\xBC\xC3\xA9LLER");
  const Message other = *MustParse("MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5\rPID|1||1||M\xFCLLER\r");
  CHECK(other.Get("PID-5") == "M\xEF\xBF\xBDLLER");
}

TEST_CASE("Parse refuses what is not an HL7 message, saying why") {
  auto error = [](const std::string& text) {
    StatusOr<Message> m = Message::Parse(text);
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == AIHUB_INVALID_ARGUMENT);
    return m.status().message();
  };
  CHECK(error("").find("no MSH segment") == 0);
  CHECK(error("\r\n\r").find("no MSH segment") == 0);
  CHECK(error("PID|1||123\rMSH|^~\\&|A\r").find("no MSH segment") == 0);
  CHECK(error("MSH").find("MSH-1") == 0);
  CHECK(error("MSHA^~\\&|").find("MSH-1: bad field separator") == 0);
  for (const char* bad : {"MSH|^~\\|A", "MSH|^~\\&#$|A", "MSH|^^\\&|A", "MSH|^~\\A|A", "MSH|^~|&|A", "MSH|^~\\ |A",
                          "MSH|", "MSH|^~\\\x01|A"}) {
    CHECK_MESSAGE(error(bad).find("MSH-2: bad encoding characters") == 0, bad);
  }
  CHECK(error("MSH|^~\\&|A\rpid|1\r") == "segment 2: bad segment id \"pid\" (3 characters A-Z, 0-9)");
  CHECK(error("MSH|^~\\&|A\rPIDX|1\r").find("segment 2") == 0);
  CHECK(error("MSH|^~\\&|A\r \r").find("segment 2") == 0);
  CHECK(error("MSH|^~\\&|" + std::string(kMaxMessageBytes, 'x')).find("over the limit") != std::string::npos);
}

TEST_CASE("Parse survives random bytes, truncations and mutations") {
  std::mt19937 rng(20260301);
  std::uniform_int_distribution<int> byte(0, 255);
  const OutboundOptions options;
  auto exercise = [&](const std::string& text) {
    StatusOr<Message> m = Message::Parse(text);
    if (m.ok()) {
      for (const char* path : {"MSH-1", "MSH-2", "MSH-9.2", "PID-3", "PID-3.1", "PID-5.1.2", "NTE-3"}) {
        CHECK(IsValidUtf8(m->Get(path)));
      }
      (void)m->GetRepetitions("PID-3");
      CHECK(Message::Parse(MakeAck(*m, options, AckCode::kAE, ErrorCode::kDataType, text)).ok());
    } else {
      CHECK(m.status().code() == AIHUB_INVALID_ARGUMENT);
    }
    StatusOr<Message> ack = Message::Parse(MakeAckForUnparsable(text, options, ErrorCode::kSegmentSequence, "x"));
    REQUIRE(ack.ok());
    CHECK(ack->Get("MSA-1") == "AR");
  };
  for (int i = 0; i < 500; ++i) {
    std::string text(static_cast<size_t>(byte(rng)) * 4, '\0');
    for (char& c : text) c = static_cast<char>(byte(rng));
    if (!text.empty() && text[0] == 'M') text[0] = 'X';
    StatusOr<Message> m = Message::Parse(text);
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == AIHUB_INVALID_ARGUMENT);
    exercise(text);
  }
  for (size_t n = 0; n <= kOrm.size(); ++n) exercise(kOrm.substr(0, n));
  for (int i = 0; i < 2000; ++i) {
    std::string text = kOrm;
    for (int k = 0; k < 3; ++k) text[static_cast<size_t>(byte(rng)) % text.size()] = static_cast<char>(byte(rng));
    exercise(text);
  }
}

TEST_CASE("MessageBuilder escapes every value so nothing can break a segment or an MLLP frame") {
  const std::string hostile = "DOE|X^Y~Z\\W&V\rPID|evil\n\x0b\x1c\x0d";
  MessageBuilder b;
  b.Add("MSH").Set(3, "AIHUB").Set(9, 1, "ORU").Set(9, 2, "R01").Set(10, "ID1").Set(12, "2.5.1");
  b.Add("PID").Set(3, hostile).Set(5, 1, "FAM").Set(5, 2, "GIV").Set(5, 1, 2, "SUB");
  b.Add("ZZ1").SetComponents(2, "a^b|c^^d");
  const std::string out = b.ToString();
  CHECK(out.find_first_of(std::string("\n\x0b\x1c")) == std::string::npos);
  CHECK(out.substr(0, 23) == "MSH|^~\\&|AIHUB||||||ORU");
  CHECK(out.back() == '\r');
  CHECK(std::count(out.begin(), out.end(), '\r') == 3);
  const Message m = *MustParse(out);
  CHECK(m.Get("PID-3") == hostile);
  CHECK(m.Get("PID-5") == "FAM&SUB^GIV");
  CHECK(m.Get("ZZ1-2.2") == "b|c");
  CHECK(m.Get("ZZ1-2.4") == "d");
  CHECK(m.MessageType() == "ORU^R01");
  CHECK(m.Count("PID") == 1);
}

const std::string kAdt =
    "MSH|^~\\&|HIS^1.2^ISO|WARD|AIHUB_PROD|RAD|20260301||ADT^A08^ADT_A01|CTRL42|T|2.4\r"
    "PID|1||55\r";

TEST_CASE("MakeAck answers with swapped addresses, MSA-2 the original control id, ERR when not AA") {
  const Message original = *MustParse(kAdt);
  OutboundOptions us;
  us.sending_application = "AIHUB";
  us.sending_facility = "SITE";
  const Message aa = *MustParse(MakeAck(original, us));
  CHECK(aa.MessageType() == "ACK^A08");
  CHECK(aa.Get("MSH-9.3") == "ACK");
  CHECK(aa.Get("MSH-3") == "AIHUB_PROD");  // the application the original addressed
  CHECK(aa.Get("MSH-4") == "RAD");
  CHECK(aa.Get("MSH-5") == "HIS^1.2^ISO");
  CHECK(aa.Get("MSH-6") == "WARD");
  CHECK(aa.Get("MSH-11") == "T");
  CHECK(aa.Version() == "2.4");
  CHECK(aa.ControlId() != "CTRL42");
  CHECK(aa.ControlId().size() == 20);
  CHECK(aa.Get("MSA-1") == "AA");
  CHECK(aa.Get("MSA-2") == "CTRL42");
  CHECK(aa.Count("ERR") == 0);

  const Message ae = *MustParse(MakeAck(original, us, AckCode::kAE, ErrorCode::kApplicationInternal, "disk full|x"));
  CHECK(ae.Get("MSA-1") == "AE");
  CHECK(ae.Get("MSA-2") == "CTRL42");
  CHECK(ae.Get("MSA-3") == "disk full|x");
  CHECK(ae.Get("ERR-3") == "207^Application internal error^HL70357");
  CHECK(ae.Get("ERR-4") == "E");
  CHECK(ae.Get("ERR-8") == "disk full|x");

  // An original that names no receiver: our own names stand in; no version: 2.5.1.
  const Message bare = *MustParse(MakeAck(*MustParse("MSH|^~\\&|HIS||||||ORM^O01|7\r"), us, AckCode::kAR,
                                          ErrorCode::kUnsupportedMessageType, "no"));
  CHECK(bare.Get("MSH-3") == "AIHUB");
  CHECK(bare.Get("MSH-4") == "SITE");
  CHECK(bare.Get("MSH-5") == "HIS");
  CHECK(bare.Get("MSH-11") == "P");
  CHECK(bare.Version() == "2.5.1");
  CHECK(bare.Get("ERR-3.1") == "200");
}

TEST_CASE("MakeAckForUnparsable finds what it can") {
  const OutboundOptions us;
  // The MSH segment parses, a later one does not: everything is copied.
  const Message a = *MustParse(MakeAckForUnparsable(kAdt + "bad|segment\r", us, ErrorCode::kSegmentSequence, "bad"));
  CHECK(a.Get("MSA-1") == "AR");
  CHECK(a.Get("MSA-2") == "CTRL42");
  CHECK(a.Get("MSH-5") == "HIS^1.2^ISO");
  CHECK(a.Get("ERR-3.1") == "100");
  CHECK(a.Get("ERR-8") == "bad");
  // Bad encoding characters: MSH-10 is still found by position, non-printable bytes cut it.
  const Message b = *MustParse(
      MakeAckForUnparsable("MSH|^^^^|A|B|C|D|||ORM^O01|ID 9\x01zz|P\r", us, ErrorCode::kSegmentSequence, "x"));
  CHECK(b.Get("MSA-2") == "ID 9");
  CHECK(b.Get("MSH-3") == "AIHUB");
  // Nothing recognisable.
  const Message c = *MustParse(MakeAckForUnparsable("\x01\x02garbage", us, ErrorCode::kSegmentSequence, "x"));
  CHECK(c.Get("MSA-1") == "AR");
  CHECK(c.Get("MSA-2").empty());
}

TEST_CASE("control ids are unique and at most 20 characters") {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) {
    const std::string id = NewControlId();
    CHECK(id.size() == 20);
    ids.insert(id);
  }
  CHECK(ids.size() == 10000);
  CHECK(NowTimestamp().size() == 19);
}

TEST_CASE("python3-hl7 reads our ACK the same way") {
  const Message original = *MustParse(kAdt);
  const std::string ack = MakeAck(original, {}, AckCode::kAE, ErrorCode::kApplicationInternal, "a|b^c\rd");
  const nlohmann::json f = testing::PythonFields(
      ack, {"MSH.F9.R1.C1", "MSH.F9.R1.C2", "MSA.F1", "MSA.F2", "ERR.F3.R1.C1", "ERR.F4", "ERR.F8", "MSH.F5.R1.C2"});
  INFO(f.dump());
  CHECK(f["segments"] == nlohmann::json::array({"MSH", "MSA", "ERR"}));
  CHECK(f["MSH.F9.R1.C1"] == "ACK");
  CHECK(f["MSH.F9.R1.C2"] == "A08");
  CHECK(f["MSH.F5.R1.C2"] == "1.2");
  CHECK(f["MSA.F1"] == "AE");
  CHECK(f["MSA.F2"] == "CTRL42");
  CHECK(f["ERR.F3.R1.C1"] == "207");
  CHECK(f["ERR.F4"] == "E");
  CHECK(f["ERR.F8"] == "a|b^c\rd");
}

}  // namespace
}  // namespace aihub::hl7
