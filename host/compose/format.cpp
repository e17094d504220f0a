#include "compose/format.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace aihub::compose {

std::string FormatNumber(double value, size_t max_chars) {
  if (!std::isfinite(value)) return "0";
  if (value == 0) return "0";  // also folds -0
  char buf[64];
  std::string fallback;
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::string(buf).size() > max_chars) break;
    fallback = buf;
    if (std::strtod(buf, nullptr) == value) return buf;
  }
  return fallback.empty() ? "0" : fallback;
}

double ConfidencePercent(double confidence) {
  if (!std::isfinite(confidence)) return 0;
  return std::round(confidence * 100.0 * 1e4) / 1e4;
}

namespace {
bool Digits(const std::string& s, size_t pos, size_t n) {
  if (pos + n > s.size()) return false;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}
}  // namespace

std::optional<Timestamp> ParseIsoTimestamp(const std::string& s) {
  Timestamp t;
  if (!Digits(s, 0, 4) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2) || s[7] != '-' || !Digits(s, 8, 2)) {
    return std::nullopt;
  }
  t.date = s.substr(0, 4) + s.substr(5, 2) + s.substr(8, 2);
  size_t pos = 10;
  if (pos < s.size() && (s[pos] == 'T' || s[pos] == ' ')) {
    ++pos;
    if (!Digits(s, pos, 2) || pos + 2 >= s.size() || s[pos + 2] != ':' || !Digits(s, pos + 3, 2)) {
      return std::nullopt;
    }
    t.time = s.substr(pos, 2) + s.substr(pos + 3, 2);
    pos += 5;
    if (pos < s.size() && s[pos] == ':') {
      if (!Digits(s, pos + 1, 2)) return std::nullopt;
      t.time += s.substr(pos + 1, 2);
      pos += 3;
    } else {
      t.time += "00";
    }
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) t.fraction += s[pos++];
      if (t.fraction.empty() || t.fraction.size() > 6) return std::nullopt;
    }
    if (pos < s.size() && s[pos] == 'Z') {
      t.offset = "+0000";
      ++pos;
    } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
      if (!Digits(s, pos + 1, 2) || pos + 3 >= s.size() || s[pos + 3] != ':' || !Digits(s, pos + 4, 2)) {
        return std::nullopt;
      }
      t.offset = s.substr(pos, 3) + s.substr(pos + 4, 2);
      pos += 6;
    }
  }
  if (pos != s.size()) return std::nullopt;
  return t;
}

std::optional<std::string> DicomDateToFhir(const std::string& da) {
  if (da.size() != 8 || !Digits(da, 0, 8)) return std::nullopt;
  return da.substr(0, 4) + "-" + da.substr(4, 2) + "-" + da.substr(6, 2);
}

std::string FhirSystem(const std::string& scheme) {
  if (scheme == "SCT" || scheme == "SNM3" || scheme == "SRT") return "http://snomed.info/sct";
  if (scheme == "LN") return "http://loinc.org";
  if (scheme == "RADLEX") return "http://www.radlex.org";
  if (scheme == "DCM") return "http://dicom.nema.org/resources/ontology/DCM";
  if (scheme == "UCUM") return "http://unitsofmeasure.org";
  if (scheme == "FMA") return "http://purl.org/sig/ont/fma";
  if (scheme == "NCIt") return "http://ncithesaurus-stage.nci.nih.gov";
  if (scheme == "ICD10") return "http://hl7.org/fhir/sid/icd-10";
  if (scheme == kLocalScheme) return kLocalSystem;
  // An OID-looking designator is its own system; anything else gets a local namespace.
  bool oid = !scheme.empty();
  for (char c : scheme) oid = oid && (std::isdigit(static_cast<unsigned char>(c)) || c == '.');
  if (oid) return "urn:oid:" + scheme;
  std::string safe;
  for (char c : scheme) safe += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_';
  return "urn:aihub:scheme:" + safe;
}

const char* PresenceName(Presence p) {
  switch (p) {
    case Presence::kPresent: return "present";
    case Presence::kIndeterminate: return "indeterminate";
    case Presence::kAbsent: break;
  }
  return "absent";
}
const char* UrgencyName(Urgency u) {
  switch (u) {
    case Urgency::kUrgent: return "urgent";
    case Urgency::kCritical: return "critical";
    case Urgency::kRoutine: break;
  }
  return "routine";
}
const char* LateralityName(Laterality l) {
  switch (l) {
    case Laterality::kLeft: return "left";
    case Laterality::kRight: return "right";
    case Laterality::kBilateral: return "bilateral";
    case Laterality::kNone: break;
  }
  return "none";
}
const char* GraphicTypeName(GraphicType g) {
  switch (g) {
    case GraphicType::kPolyline: return "polyline";
    case GraphicType::kPolygon: return "polygon";
    case GraphicType::kEllipse: return "ellipse";
    case GraphicType::kPoint: break;
  }
  return "point";
}

CodedConcept PresenceConcept(Presence p) {
  switch (p) {
    case Presence::kPresent: return {"52101004", "SCT", "Present"};
    case Presence::kIndeterminate: return {"82334004", "SCT", "Indeterminate"};
    case Presence::kAbsent: break;
  }
  return {"2667000", "SCT", "Absent"};
}

CodedConcept LateralityConcept(Laterality l) {
  switch (l) {
    case Laterality::kLeft: return {"7771000", "SCT", "Left"};
    case Laterality::kRight: return {"24028007", "SCT", "Right"};
    case Laterality::kBilateral: return {"51440002", "SCT", "Bilateral"};
    case Laterality::kNone: break;
  }
  return {"66459002", "SCT", "Unilateral"};  // not used for kNone by the encoders
}

CodedConcept UrgencyConcept() { return {"urgency", kLocalScheme, "Urgency"}; }
CodedConcept UrgencyValue(Urgency u) {
  switch (u) {
    case Urgency::kUrgent: return {"urgent", kLocalScheme, "Urgent"};
    case Urgency::kCritical: return {"critical", kLocalScheme, "Critical"};
    case Urgency::kRoutine: break;
  }
  return {"routine", kLocalScheme, "Routine"};
}
CodedConcept CertaintyConcept() { return {"111012", "DCM", "Certainty of Finding"}; }

}  // namespace aihub::compose
