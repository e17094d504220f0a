// JSON text that never throws: invalid UTF-8 (from a DICOM tag in another character set, a plugin's message)
// is replaced with U+FFFD instead of aborting the process.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace aihub {

inline std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace aihub
