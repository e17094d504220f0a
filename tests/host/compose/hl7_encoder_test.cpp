#include "compose/hl7_encoder.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "compose/format.h"
#include "compose/ids.h"
#include "test_result.h"
#include "test_util.h"

namespace aihub::compose {
namespace {

using nlohmann::json;

// python3-hl7 (Debian package, hence /usr/bin/python3) parses the message; fields come back unescaped as JSON.
constexpr const char* kParser = R"PY(
import hl7, json, sys
raw = open(sys.argv[1], newline='', encoding='utf-8', errors='strict').read()  # MSH-18 says UTF-8
m = hl7.parse(raw)
def f(seg, i):
    try:
        return m.unescape(str(seg[i]))
    except IndexError:
        return ''
out = {'segments': [str(s[0]) for s in m]}
for name in ('MSH', 'PID', 'OBR'):
    seg = m.segment(name)
    out[name] = [f(seg, i) for i in range(len(seg))]
out['OBX'] = [[f(s, i) for i in range(len(s))] for s in m.segments('OBX')]
out['NTE'] = [[f(s, i) for i in range(len(s))] for s in m.segments('NTE')]
# Components of the raw (still escaped) fields, to check that '^' in text did not split anything.
out['PID5'] = [m.unescape(str(c)) for c in m.segment('PID')[5][0]] if len(m.segment('PID')) > 5 else []
# Segments as sent: each must end with <CR>, the last one too.
out['raw_segments'] = raw.split('\r')
print(json.dumps(out))
)PY";

json Parse(const std::string& message) {
  std::filesystem::path dir = testing::TempDir("hl7");
  std::filesystem::path msg = testing::WriteFile(dir, "oru.hl7", message);
  std::filesystem::path script = testing::WriteFile(dir, "parse.py", kParser);
  int status = 0;
  std::string out = testing::Run("/usr/bin/python3 '" + script.string() + "' '" + msg.string() + "'", &status);
  std::filesystem::remove_all(dir);
  INFO(out);
  REQUIRE(status == 0);
  return json::parse(out);
}

TEST_CASE("ORU^R01 parses with python3-hl7 and carries codes, units and ids") {
  Result r = testing::MakeHeadCtResult();
  std::string message = EncodeOru(r);
  CHECK(message.find('\n') == std::string::npos);
  json m = Parse(message);

  // MSH, PID, OBR, NTE(summary); finding 1: OBX presence, NTE text, 2 measurements, certainty, urgency, site,
  // laterality; finding 2: OBX presence, certainty, urgency.
  std::vector<std::string> expected = {"MSH", "PID", "OBR", "NTE", "OBX", "NTE", "OBX", "OBX", "OBX",
                                       "OBX", "OBX", "OBX", "OBX", "OBX", "OBX"};
  CHECK(m["segments"].get<std::vector<std::string>>() == expected);
  // Every segment ends with <CR>, the last one too: splitting at CR leaves one empty tail and nothing else.
  CHECK(std::count(message.begin(), message.end(), '\r') == static_cast<long>(expected.size()));
  REQUIRE(!message.empty());
  CHECK(message.back() == '\r');
  REQUIRE(m["raw_segments"].size() == expected.size() + 1);
  CHECK(m["raw_segments"].back() == "");
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(m["raw_segments"][i].get<std::string>().rfind(expected[i] + "|", 0) == 0);
  }

  const json& msh = m["MSH"];
  CHECK(msh[3] == "AIHUB");
  CHECK(msh[5] == "RIS");
  CHECK(msh[6] == "HOSPITAL");
  CHECK(msh[7] == "20261128010203+0000");  // completed_at is UTC; without an offset HL7 means local time
  CHECK(msh[9] == "ORU^R01^ORU_R01");
  CHECK(msh[10].get<std::string>().size() == 20);
  CHECK(msh[11] == "P");
  CHECK(msh[12] == "2.5.1");

  const json& pid = m["PID"];
  CHECK(pid[3] == "MRN12345^^^HOSP");
  CHECK(pid[5] == "Doe^John^Q^Jr^Dr");  // DICOM prefix/suffix order swapped into XPN order
  CHECK(pid[7] == "19600214");
  CHECK(pid[8] == "M");

  const json& obr = m["OBR"];
  CHECK(obr[2] == "ACC20261128");
  CHECK(obr[3] == r.sr_sop_instance_uid + "^AIHUB");
  CHECK(obr[4] == "ich^ICH Detector^99AIHUB");
  CHECK(obr[7] == "20261128005500");  // DICOM study time has no zone, so none is claimed
  CHECK(obr[22] == "20261128010203+0000");
  CHECK(obr[25] == "F");
  CHECK(m["NTE"][0][3] == r.summary);

  const json& obx = m["OBX"];
  REQUIRE(obx.size() == 10);
  CHECK(obx[0][2] == "CWE");
  CHECK(obx[0][3] == "50960005^Hemorrhage^SCT");
  CHECK(obx[0][4] == "1");
  CHECK(obx[0][5] == "52101004^Present^SCT");
  CHECK(obx[0][8] == "AA");
  CHECK(obx[0][9] == "0.93");
  CHECK(obx[0][11] == "F");
  CHECK(obx[0][14] == "20261128010203+0000");
  CHECK(obx[3][14] == "20261128010203+0000");
  CHECK(obx[0][18] == r.algorithm.device_uid);
  CHECK(obx[1][2] == "NM");
  CHECK(obx[1][3] == "118565006^Volume^SCT");
  CHECK(obx[1][4] == "1");
  CHECK(obx[1][5] == "12.5");
  CHECK(obx[1][6] == "mL^milliliter^UCUM");
  CHECK(obx[3][3] == "111012^Certainty of Finding^DCM");
  CHECK(obx[3][5] == "93");
  CHECK(obx[3][6] == "%^percent^UCUM");
  CHECK(obx[4][5] == "critical^Critical^99AIHUB");
  CHECK(obx[6][5] == "7771000^Left^SCT");
  CHECK(obx[7][3] == "RID4700^Midline shift^RADLEX");
  CHECK(obx[7][4] == "2");
  CHECK(obx[7][5] == "2667000^Absent^SCT");
  CHECK(obx[7][8] == "");  // absent: no flag, never N ("normal")
  for (const json& o : obx) CHECK(o[1] != "");  // set ids present
  // OBR-3 "." OBX-4 is the shared finding identifier.
  CHECK(r.sr_sop_instance_uid + "." + obx[7][4].get<std::string>() == FindingIdentifier(r, 2));
}

TEST_CASE("ORU abnormal flags and timestamp offsets") {
  Result r = testing::MakeHeadCtResult();
  r.completed_at = "2026-11-28T02:02:03+01:00";
  r.findings[0].urgency = Urgency::kUrgent;  // present, not critical
  r.findings[1].presence = Presence::kIndeterminate;
  json m = Parse(EncodeOru(r));
  CHECK(m["MSH"][7] == "20261128020203+0100");  // an explicit offset is kept as it is
  CHECK(m["OBR"][22] == "20261128020203+0100");
  const json& obx = m["OBX"];
  REQUIRE(obx.size() == 10);
  CHECK(obx[0][8] == "A");
  CHECK(obx[7][5] == "82334004^Indeterminate^SCT");
  CHECK(obx[7][8] == "");
  r.findings[1].presence = Presence::kAbsent;
  r.completed_at = "2026-11-28T01:02:03";  // no zone: the Result contract says UTC
  m = Parse(EncodeOru(r));
  CHECK(m["MSH"][7] == "20261128010203+0000");
  CHECK(m["OBX"][7][5] == "2667000^Absent^SCT");
  CHECK(m["OBX"][7][8] == "");
}

TEST_CASE("ORU replaces invalid UTF-8, since MSH-18 declares UTF-8") {
  Result r = testing::MakeHeadCtResult();
  const std::string fffd = "\xEF\xBF\xBD";
  r.summary = "bad \xff\xfe end";
  r.findings[0].text = "M\xfcller";  // Latin-1
  r.study.patient_name = "M\xfcller^J\xc3\xbcrgen";
  r.findings[1].concept.meaning = "shift \xe2\x82";  // truncated sequence
  std::string message = EncodeOru(r);
  CHECK(ReplaceInvalidUtf8(message) == message);  // valid UTF-8 throughout
  json m = Parse(message);  // the parser decodes strictly as UTF-8
  CHECK(m["MSH"][18] == "UNICODE UTF-8");
  CHECK(m["NTE"][0][3] == "bad " + fffd + fffd + " end");
  CHECK(m["NTE"][1][3] == "M" + fffd + "ller");
  CHECK(m["PID"][5] == "M" + fffd + "ller^J\xc3\xbcrgen");  // valid non-ASCII is kept
  CHECK(m["OBX"][7][3] == "RID4700^shift " + fffd + "^RADLEX");
  CHECK(EscapeHl7("a\xff|") == "a" + fffd + "\\F\\");
}

TEST_CASE("ORU escapes hostile text and keeps it intact") {
  Result r = testing::MakeHeadCtResult();
  const std::string hostile = "a|b^c~d\\e&f\rMSH|fake\nline2";
  r.summary = hostile;
  r.findings[0].text = hostile;
  r.study.patient_name = "O'Brien|X^Ann~Marie&Co";
  r.study.accession_number = "A|1";
  r.mode = "silent";
  Hl7Options options;
  options.message_control_id = "CTRL-1";
  options.sending_facility = "S|F";
  std::string message = EncodeOru(r, options);
  CHECK(message.find('\n') == std::string::npos);
  CHECK(message.find("\rMSH|fake") == std::string::npos);
  // NTE-3 is FT: line breaks travel as the \.br\ formatting command, not as hex-escaped CR/LF.
  CHECK(message.find("f\\.br\\MSH\\F\\fake\\.br\\line2") != std::string::npos);
  CHECK(message.find("\\X0D\\") == std::string::npos);
  json m = Parse(message);
  CHECK(m["segments"].size() == 15);
  // python3-hl7 unescapes \.br\ to CR.
  const std::string hostile_ft = "a|b^c~d\\e&f\rMSH|fake\rline2";
  CHECK(m["NTE"][0][3] == hostile_ft);
  CHECK(m["NTE"][1][3] == hostile_ft);
  CHECK(m["MSH"][10] == "CTRL-1");
  CHECK(m["MSH"][4] == "S|F");
  CHECK(m["OBR"][2] == "A|1");
  CHECK(m["OBR"][25] == "P");
  CHECK(m["OBX"][0][11] == "P");
  REQUIRE(m["PID5"].size() == 2);
  CHECK(m["PID5"][0] == "O'Brien|X");
  CHECK(m["PID5"][1] == "Ann~Marie&Co");
}

TEST_CASE("a re-run's ORU is a correction (C), a shadow result preliminary (P), else final (F)") {
  Result r = testing::MakeHeadCtResult();
  auto obr25 = [](const std::string& oru) {
    const size_t obr = oru.find("\rOBR|");
    std::string fields = oru.substr(obr + 1, oru.find('\r', obr + 1) - obr - 1);
    for (int i = 0; i < 25; ++i) fields = fields.substr(fields.find('|') + 1);
    return fields.substr(0, fields.find('|'));
  };
  CHECK(obr25(EncodeOru(r)) == "F");
  r.predecessor_sr_sop_instance_uid = "2.25.1";
  CHECK(obr25(EncodeOru(r)) == "C");
  CHECK(EncodeOru(r).find("|C|") != std::string::npos);
  r.mode = "silent";
  CHECK(obr25(EncodeOru(r)) == "P");
}

TEST_CASE("ORU is deterministic and its control id follows the job") {
  Result r = testing::MakeHeadCtResult();
  CHECK(EncodeOru(r) == EncodeOru(r));
  Result other = r;
  other.job_key += "-2";
  AssignIdentifiers(other);
  CHECK(EncodeOru(other) != EncodeOru(r));
  r.findings.clear();
  CHECK(EncodeOru(r).find("OBX") == std::string::npos);
  CHECK(EscapeHl7("|^~\\&\r\n") == "\\F\\\\S\\\\R\\\\E\\\\T\\\\X0D\\\\X0A\\");
  // FT: CR, LF and CRLF are one line break each; the escape character itself is still escaped.
  CHECK(EscapeHl7FormattedText("a\r\nb\rc\nd\\.br\\|") == "a\\.br\\b\\.br\\c\\.br\\d\\E\\.br\\E\\\\F\\");
  CHECK(EscapeHl7FormattedText("\r\n\r\n") == "\\.br\\\\.br\\");
}

}  // namespace
}  // namespace aihub::compose
