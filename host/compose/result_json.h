// Lossless JSON form of a Result, for the job store.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "compose/result.h"

namespace aihub::compose {

// Enums are written as lower-case names ("present", "critical", "polygon"); "format" carries the version.
// Strings from plugins may hold invalid UTF-8, on which a plain dump() throws: serialize with ToJsonText.
nlohmann::json ToJson(const Result& result);

// ToJson(result) as compact JSON text, dumped with error_handler_t::replace so that invalid UTF-8 in plugin
// strings becomes U+FFFD instead of an exception. Use this, not ToJson(...).dump(), to store a result.
std::string ToJsonText(const Result& result);

// Reads what ToJson wrote. Missing optional members take their defaults; a member of the wrong type, an
// unknown enum name, or a missing required member (job_key, findings[i].concept.value) is INVALID_ARGUMENT
// naming the member by its path, e.g. "findings[1].presence".
StatusOr<Result> ResultFromJson(const nlohmann::json& j);

}  // namespace aihub::compose
