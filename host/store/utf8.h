// UTF-8 checks for text that reaches the store. Text from plugins, DICOM tags and file names is untrusted and
// may hold invalid UTF-8; TEXT columns must not (SQLite readers, JSON encoders and gRPC strings choke on it).
// For JSON text use aihub::DumpJson (common/json_text.h), which replaces bad bytes instead of throwing.
#pragma once

#include <string>
#include <string_view>

namespace aihub::store {

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
bool IsValidUtf8(std::string_view text);

// `text` with every byte that does not start a well-formed UTF-8 sequence replaced by U+FFFD (EF BF BD), one
// replacement per bad byte. Valid text comes back unchanged. Never changes ASCII, so JSON structure (quotes,
// brackets) survives sanitizing a JSON text.
std::string SanitizeUtf8(std::string_view text);

}  // namespace aihub::store
