// Small helpers shared by the encoders: number text, timestamps, coding-system names, enum names.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/utf8.h"  // ReplaceInvalidUtf8, used by every encoder
#include "compose/result.h"

namespace aihub::compose {

// Shortest decimal text that reads back as the same double, with at most `max_chars` characters
// (precision is dropped to fit, e.g. for DICOM DS which allows 16). Non-finite values give "0".
std::string FormatNumber(double value, size_t max_chars = 24);


// Confidence [0, 1] as a percentage rounded to 1e-4 %, so 0.93 prints "93", not "93.00000000000001".
double ConfidencePercent(double confidence);

// Parts of an ISO 8601 timestamp "YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|+HH:MM|-HH:MM]".
struct Timestamp {
  std::string date;      // YYYYMMDD
  std::string time;      // HHMMSS (no fraction)
  std::string fraction;  // digits after '.', may be empty
  std::string offset;    // "+HHMM" / "-HHMM"; "+0000" for Z; empty when absent
};
std::optional<Timestamp> ParseIsoTimestamp(const std::string& text);

// DICOM DA -> FHIR date "2026-11-28"; nullopt when malformed. (A FHIR dateTime with a time needs a zone,
// which DICOM study times lack, so only the date is carried over.)
std::optional<std::string> DicomDateToFhir(const std::string& da);

// FHIR / HL7 system for a DICOM coding scheme designator.
std::string FhirSystem(const std::string& scheme);

const char* PresenceName(Presence p);
const char* UrgencyName(Urgency u);
const char* LateralityName(Laterality l);
const char* GraphicTypeName(GraphicType g);

// SNOMED CT presence values (DESIGN.md): 52101004 Present, 2667000 Absent, 82334004 Indeterminate.
CodedConcept PresenceConcept(Presence p);
// SNOMED CT laterality values (CID 244); only meaningful for l != kNone.
CodedConcept LateralityConcept(Laterality l);

// Local code system for values no standard code fits (urgency). "99" prefix = private per DICOM PS3.16.
inline constexpr const char* kLocalScheme = "99AIHUB";
inline constexpr const char* kLocalSystem = "urn:aihub:codes";
CodedConcept UrgencyConcept();           // the question: "Urgency"
CodedConcept UrgencyValue(Urgency u);    // the answer: routine / urgent / critical
// (111012, DCM, "Certainty of Finding"): confidence, in percent.
CodedConcept CertaintyConcept();

}  // namespace aihub::compose
