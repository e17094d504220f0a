// JSON and text that never throw on bad bytes. Text reaching the store (plugin error messages, DICOM tag values,
// file names) is untrusted and may hold invalid UTF-8; nlohmann's default dump() throws type_error.316 on it,
// which would let one bad byte kill the host. Use DumpJson instead of json::dump everywhere.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace aihub::store {

// Compact JSON text; every invalid UTF-8 byte inside a string becomes U+FFFD instead of throwing.
std::string DumpJson(const nlohmann::json& value);

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
bool IsValidUtf8(std::string_view text);

// `text` with every byte that does not start a well-formed UTF-8 sequence replaced by U+FFFD (EF BF BD), one
// replacement per bad byte, as DumpJson does. Valid text comes back unchanged. Never changes ASCII, so JSON
// structure (quotes, brackets) survives sanitizing a JSON text.
std::string SanitizeUtf8(std::string_view text);

}  // namespace aihub::store
