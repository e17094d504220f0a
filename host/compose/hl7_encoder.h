// HL7 v2.5.1 ORU^R01 encoding of a Result.
#pragma once

#include <string>

#include "compose/result.h"

namespace aihub::compose {

struct Hl7Options {
  std::string sending_application = "AIHUB";
  std::string sending_facility = "AIHUB";
  std::string receiving_application = "RIS";
  std::string receiving_facility = "HOSPITAL";
  std::string message_control_id;  // "" = derived from the job key (same result, same id)
};

// Segments, each ending in '\r' (the last too, as HL7 v2 requires; MLLP framing is the sender's job):
//   MSH  ^~\& ... MSH-7 completed_at (YYYYMMDDHHMMSS+ZZZZ), MSH-9 ORU^R01^ORU_R01, MSH-10 control id, MSH-11 P,
//        MSH-12 2.5.1, MSH-18 UNICODE UTF-8
//   PID  PID-3 patient id^^^issuer, PID-5 name (DICOM PN components reordered to XPN), PID-7 birth date, PID-8 sex
//   OBR  OBR-2 placer = accession number, OBR-3 filler = <SR SOP Instance UID>^AIHUB, OBR-4 <plugin id>^<name>^99AIHUB,
//        OBR-7 study date/time, OBR-16 referring physician, OBR-18 accession, OBR-22 completed_at, OBR-24 RAD,
//        OBR-25 F (P when mode is "silent", as for FHIR "preliminary")
//   NTE  summary text, if any
//   per finding n (all its OBX share sub-ID OBX-4 = n; OBR-3 "." n is the finding identifier of ids.h):
//     OBX CWE  OBX-3 finding concept, OBX-5 Present/Absent/Indeterminate (SNOMED CT), OBX-8 AA (present and critical)
//              / A (present) / empty otherwise (never N: an absent finding is not a normal study),
//              OBX-9 confidence [0,1], OBX-11 F|P, OBX-14 completed_at, OBX-18 device UID
//     NTE      finding text, if any
//     OBX NM   each measurement: OBX-6 <ucum>^<meaning>^UCUM
//     OBX NM   Certainty of Finding (111012^...^DCM) in %
//     OBX CWE  urgency (99AIHUB), finding site (363698007^Finding Site^SCT), laterality (272741003^...^SCT)
// Timestamps (DTM) carry completed_at's UTC offset, "+0000". Text is made valid UTF-8 (invalid sequences become
// U+FFFD) and escaped: | ^ ~ \ & as \F\ \S\ \R\ \E\ \T\; line breaks as \.br\ in NTE-3 (FT), elsewhere CR and LF
// as \X0D\ and \X0A\; other control characters become spaces, so no field ever holds a raw separator.
std::string EncodeOru(const Result& result, const Hl7Options& options = {});

// Escapes one HL7 v2 text value (ST, TX, components; exposed for tests and other HL7 writers).
std::string EscapeHl7(const std::string& text);
// The same for an FT field (e.g. NTE-3): line breaks (CR, LF or CRLF) become the \.br\ formatting command.
std::string EscapeHl7FormattedText(const std::string& text);

}  // namespace aihub::compose
