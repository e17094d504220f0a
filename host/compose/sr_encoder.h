// DICOM SR encoding of a Result: Comprehensive 3D SR Storage with the TID 1500 Measurement Report.
#pragma once

#include <string>

#include "common/status.h"
#include "compose/result.h"

namespace aihub::compose {

inline constexpr const char* kComprehensive3DSrSopClassUid = "1.2.840.10008.5.1.4.1.1.88.34";

// DICOM Part 10 file bytes (Explicit VR Little Endian). Deterministic: the same Result gives a byte-identical
// file; no clock is read (ContentDate/Time and InstanceCreationDate/Time come from completed_at).
// Needs AssignIdentifiers() to have run (FAILED_PRECONDITION otherwise); INVALID_ARGUMENT for a Result that
// cannot be encoded (no study UID, bad completed_at, a region with an odd number of coordinates, ...).
StatusOr<std::string> EncodeSr(const Result& result);

}  // namespace aihub::compose
