// Lossless JSON form of a Result, for the job store.
#pragma once

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "compose/result.h"

namespace aihub::compose {

// Enums are written as lower-case names ("present", "critical", "polygon"); "format" carries the version.
// Strings from plugins may hold invalid UTF-8: dump with nlohmann::json::error_handler_t::replace.
nlohmann::json ToJson(const Result& result);

// Reads what ToJson wrote. Missing optional members take their defaults; a member of the wrong type, an
// unknown enum name, or a missing required member (job_key, findings[i].concept.value) is INVALID_ARGUMENT
// naming the member by its path, e.g. "findings[1].presence".
StatusOr<Result> ResultFromJson(const nlohmann::json& j);

}  // namespace aihub::compose
