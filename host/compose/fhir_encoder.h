// FHIR R4 encoding of a Result: a transaction Bundle of Observations (one per finding) and a DiagnosticReport.
#pragma once

#include <string>

#include "compose/result.h"

namespace aihub::compose {

// JSON text of a Bundle (type "transaction"). Each Observation:
//  - identifier {system "urn:aihub:finding", value FindingIdentifier()} and request POST Observation with
//    ifNoneExist "identifier=urn:aihub:finding|<value>" (conditional create: re-delivery creates nothing new);
//  - status "final", or "preliminary" when result.mode is "silent" (a shadow result nobody has acted on);
//  - category imaging; code = finding concept; valueCodeableConcept SNOMED Present/Absent/Indeterminate;
//  - subject Patient by identifier; effectiveDateTime = study date (else completed_at); issued = completed_at;
//  - device by identifier (urn:dicom:uid, urn:oid:<device uid>) with display;
//  - derivedFrom ImagingStudy by identifier (urn:dicom:uid, urn:oid:<StudyInstanceUID>);
//  - interpretation (v3 ObservationInterpretation): AA present+critical, POS present, NEG absent, IND
//    indeterminate (never N "Normal": an absent finding is not a normal study);
//  - bodySite = finding site; component[]: each measurement (UCUM valueQuantity), Certainty of Finding (%),
//    urgency (local code system urn:aihub:codes), laterality (SNOMED); note = finding text.
// The DiagnosticReport (identifier urn:aihub:sr|<SR SOP Instance UID>, conditional create too) lists the
// Observations, carries the summary as conclusion, and exists even when there are no findings. Every string is
// valid UTF-8: invalid sequences become U+FFFD (ReplaceInvalidUtf8 in format.h).
std::string EncodeFhirBundle(const Result& result);

}  // namespace aihub::compose
