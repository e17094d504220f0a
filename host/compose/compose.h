// The result composer's public API in one include: identifiers, JSON form, and the three encodings.
#pragma once

#include "compose/fhir_encoder.h"  // EncodeFhirBundle
#include "compose/hl7_encoder.h"   // Hl7Options, EncodeOru
#include "compose/ids.h"           // AssignIdentifiers
#include "compose/result.h"
#include "compose/result_json.h"   // ToJson, ToJsonText, ResultFromJson
#include "compose/sr_encoder.h"    // EncodeSr
