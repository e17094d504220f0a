#include "compose/hl7_encoder.h"

#include <cctype>
#include <vector>

#include "common/hash.h"
#include "compose/format.h"
#include "compose/ids.h"

namespace aihub::compose {

namespace {

// Escapes the delimiters (HL7 v2.5.1 ch. 2.7). Line breaks: ST/TX-safe hex escapes \X0D\ and \X0A\, or for
// FT fields the formatting command \.br\ (CRLF is one break). Neither ever leaves a raw CR, which would end
// the segment. Invalid UTF-8 is replaced first, since MSH-18 declares UTF-8.
std::string Escape(const std::string& raw, bool formatted_text) {
  const std::string text = ReplaceInvalidUtf8(raw);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    switch (c) {
      case '|': out += "\\F\\"; break;
      case '^': out += "\\S\\"; break;
      case '~': out += "\\R\\"; break;
      case '\\': out += "\\E\\"; break;
      case '&': out += "\\T\\"; break;
      case '\r':
        if (!formatted_text) {
          out += "\\X0D\\";
          break;
        }
        if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
        out += "\\.br\\";
        break;
      case '\n': out += formatted_text ? "\\.br\\" : "\\X0A\\"; break;
      default:
        out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeHl7(const std::string& text) { return Escape(text, false); }

std::string EscapeHl7FormattedText(const std::string& text) { return Escape(text, true); }

namespace {

// Components, each escaped, joined by '^'; trailing empty components dropped.
std::string Components(std::vector<std::string> parts) {
  while (!parts.empty() && parts.back().empty()) parts.pop_back();
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += '^';
    out += EscapeHl7(parts[i]);
  }
  return out;
}

std::string Cwe(const CodedConcept& c) { return Components({c.value, c.meaning, c.scheme}); }

std::string Segment(std::vector<std::string> fields) {
  while (fields.size() > 1 && fields.back().empty()) fields.pop_back();
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += '|';
    out += fields[i];
  }
  return out;
}

// DTM "YYYYMMDDHHMMSS+ZZZZ" from completed_at (or "" when it is not a timestamp). HL7 reads a DTM without an
// offset as the sender's local time, so the offset is always written: completed_at's own, else "+0000" (the
// Result contract says completed_at is UTC).
std::string Hl7Timestamp(const std::string& iso) {
  std::optional<Timestamp> t = ParseIsoTimestamp(iso);
  if (!t) return "";
  if (t->time.empty()) return t->date;
  return t->date + t->time + (t->offset.empty() ? "+0000" : t->offset);
}

std::string Digits(const std::string& s, size_t max) {
  std::string out;
  for (char c : s) {
    if (c == '.') break;  // drop TM fractions
    if (std::isdigit(static_cast<unsigned char>(c)) && out.size() < max) out += c;
  }
  return out;
}

// DICOM PN "Family^Given^Middle^Prefix^Suffix" (alphabetic group) -> XPN components family, given, middle,
// suffix, prefix.
std::vector<std::string> NameParts(const std::string& pn) {
  std::string alphabetic = pn.substr(0, pn.find('='));
  std::vector<std::string> parts(5);
  size_t index = 0;
  for (char c : alphabetic) {
    if (c == '^') {
      if (++index >= parts.size()) break;
    } else {
      parts[index] += c;
    }
  }
  return {parts[0], parts[1], parts[2], parts[4], parts[3]};
}

std::string Sex(const std::string& dicom) {
  if (dicom == "M" || dicom == "F" || dicom == "O") return dicom;
  return dicom.empty() ? "" : "U";
}

// Table 0078 has no "negative" in 2.5.1, and "N" (normal) would let a worklist read an absent finding as a
// normal study: absent and indeterminate findings carry no flag; OBX-5 says which.
const char* AbnormalFlag(const Finding& f) {
  if (f.presence == Presence::kPresent) return f.urgency == Urgency::kCritical ? "AA" : "A";
  return "";
}

}  // namespace

std::string EncodeOru(const Result& r, const Hl7Options& o) {
  const std::string completed = Hl7Timestamp(r.completed_at);
  // HL7 table 0123 / 0085: P preliminary (shadow), C corrected (replaces an earlier result), F final.
  const std::string status = r.mode == "silent" ? "P" : !r.predecessor_sr_sop_instance_uid.empty() ? "C" : "F";
  const std::string control_id =
      o.message_control_id.empty() ? Sha256Hex("aihub/hl7\n" + r.job_key).substr(0, 20) : o.message_control_id;
  const StudyIdentity& s = r.study;
  std::vector<std::string> segments;

  segments.push_back(Segment({"MSH", "^~\\&", EscapeHl7(o.sending_application), EscapeHl7(o.sending_facility),
                              EscapeHl7(o.receiving_application), EscapeHl7(o.receiving_facility), completed, "",
                              "ORU^R01^ORU_R01", EscapeHl7(control_id), "P", "2.5.1", "", "", "", "", "",
                              "UNICODE UTF-8"}));
  std::vector<std::string> name = NameParts(s.patient_name);
  segments.push_back(Segment({"PID", "1", "", Components({s.patient_id, "", "", s.issuer_of_patient_id}), "",
                              Components(name), "", Digits(s.patient_birth_date, 8), Sex(s.patient_sex)}));
  std::vector<std::string> referrer = NameParts(s.referring_physician_name);
  referrer.insert(referrer.begin(), "");  // XCN starts with an ID number
  segments.push_back(Segment({"OBR", "1", EscapeHl7(s.accession_number), Components({r.sr_sop_instance_uid, "AIHUB"}),
                              Components({r.algorithm.plugin_id, r.algorithm.name, kLocalScheme}), "", "",
                              Digits(s.study_date, 8) + Digits(s.study_time, 6), "", "", "", "", "", "", "", "",
                              Components(referrer), "", EscapeHl7(s.accession_number), "", "", "", completed, "",
                              "RAD", status}));
  size_t nte = 0;
  if (!r.summary.empty()) {
    segments.push_back(Segment({"NTE", std::to_string(++nte), "L", EscapeHl7FormattedText(r.summary)}));
  }

  size_t set_id = 0;
  auto obx = [&](const std::string& type, const std::string& id, const std::string& sub_id, const std::string& value,
                 const std::string& units, const std::string& flag, const std::string& probability) {
    segments.push_back(Segment({"OBX", std::to_string(++set_id), type, id, sub_id, value, units, "", flag,
                                probability, "", status, "", "", completed, "", "", "",
                                EscapeHl7(r.algorithm.device_uid)}));
  };
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const Finding& f = r.findings[i];
    const std::string sub_id = std::to_string(i + 1);
    obx("CWE", Cwe(f.concept), sub_id, Cwe(PresenceConcept(f.presence)), "", AbnormalFlag(f),
        FormatNumber(f.confidence));
    if (!f.text.empty()) {
      segments.push_back(Segment({"NTE", std::to_string(++nte), "L", EscapeHl7FormattedText(f.text)}));
    }
    for (const Measurement& m : f.measurements) {
      std::string unit = m.unit_ucum.empty() ? "1" : m.unit_ucum;
      obx("NM", Cwe(m.concept), sub_id, FormatNumber(m.value), Components({unit, m.unit_meaning, "UCUM"}), "", "");
    }
    obx("NM", Cwe(CertaintyConcept()), sub_id, FormatNumber(ConfidencePercent(f.confidence)),
        Components({"%", "percent", "UCUM"}), "", "");
    obx("CWE", Cwe(UrgencyConcept()), sub_id, Cwe(UrgencyValue(f.urgency)), "", "", "");
    if (f.site) obx("CWE", Cwe({"363698007", "SCT", "Finding Site"}), sub_id, Cwe(*f.site), "", "", "");
    if (f.laterality != Laterality::kNone) {
      obx("CWE", Cwe({"272741003", "SCT", "Laterality"}), sub_id, Cwe(LateralityConcept(f.laterality)), "", "", "");
    }
  }

  // Every segment, the last included, ends with <CR> (HL7 v2.5.1 ch. 2.5.1).
  std::string out;
  for (const std::string& segment : segments) {
    out += segment;
    out += '\r';
  }
  return out;
}

}  // namespace aihub::compose
