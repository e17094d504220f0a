// Identifiers shared by the SR, FHIR and HL7 encodings of one result. All are derived from the job key (and
// the plugin identity), never from the clock or randomness, so re-composing a result re-creates the same ids
// and re-delivery is idempotent at every receiver.
#pragma once

#include <cstddef>
#include <string>

#include "compose/result.h"

namespace aihub::compose {

// Fills sr_series_instance_uid and sr_sop_instance_uid deterministically from result.job_key, and
// algorithm.device_uid from (plugin_id, version, model_version), using aihub::UidFromSeed (common/hash.h).
void AssignIdentifiers(Result& result);

// The device UID of an algorithm: same (plugin id, version, model version), same UID.
std::string DeviceUid(const std::string& plugin_id, const std::string& version, const std::string& model_version);

// The identifier of finding `index` (1-based) shared by all encodings: "<sr_sop_instance_uid>.<index>".
// SR: Tracking Identifier of the finding's measurement group; FHIR: Observation.identifier (system
// kFindingIdentifierSystem); HL7 (v2.5.1 has no observation instance id): OBR-3 filler order number "." OBX-4
// sub-ID of the finding's OBX group.
std::string FindingIdentifier(const Result& result, size_t index);
inline constexpr const char* kFindingIdentifierSystem = "urn:aihub:finding";

// A valid DICOM UID for the SR Tracking Unique Identifier of finding `index` (1-based) and its `region`-th
// extra region group (0 = the finding's own group).
std::string FindingTrackingUid(const Result& result, size_t index, size_t region = 0);

// An RFC 4122 style UUID (version 4 bit layout, content from SHA-256 of the seed), for FHIR fullUrl values.
std::string UuidFromSeed(const std::string& seed);

}  // namespace aihub::compose
