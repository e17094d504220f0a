// UTF-8 well-formedness: every text the hub stores or sends (DICOM tags in other character sets, plugin
// messages, file names) is made valid UTF-8 once, the same way everywhere.
#pragma once

#include <string>
#include <string_view>

namespace aihub {

// True when `text` is well-formed UTF-8 (Unicode table 3-7: no overlongs, surrogates or values past U+10FFFF).
bool IsValidUtf8(std::string_view text);

// `text` with each maximal ill-formed subpart replaced by one U+FFFD (the Unicode recommendation, as WHATWG
// and nlohmann's replace handler do). Valid text comes back byte for byte; plain ASCII is not copied twice.
std::string ReplaceInvalidUtf8(std::string_view text);

}  // namespace aihub
