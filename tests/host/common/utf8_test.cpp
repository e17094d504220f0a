#include "common/utf8.h"

#include <doctest/doctest.h>

namespace aihub {
namespace {

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

TEST_CASE("IsValidUtf8 follows the Unicode well-formedness table") {
  CHECK(IsValidUtf8(""));
  CHECK(IsValidUtf8("plain ascii"));
  CHECK(IsValidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));       // 2, 3 and 4 bytes
  CHECK(IsValidUtf8(std::string("nul\0inside", 10)));
  CHECK_FALSE(IsValidUtf8("\xE9"));                  // Latin-1
  CHECK_FALSE(IsValidUtf8("\xC3"));                  // truncated
  CHECK_FALSE(IsValidUtf8("\xE2\x82"));              // truncated
  CHECK_FALSE(IsValidUtf8("\x80"));                  // lone continuation
  CHECK_FALSE(IsValidUtf8("\xC0\xAF"));              // overlong '/'
  CHECK_FALSE(IsValidUtf8("\xE0\x80\xAF"));          // overlong
  CHECK_FALSE(IsValidUtf8("\xED\xA0\x80"));          // surrogate D800
  CHECK_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));      // above U+10FFFF
  CHECK_FALSE(IsValidUtf8("\xF5\x80\x80\x80"));
  CHECK_FALSE(IsValidUtf8("\xFF"));
  CHECK(IsValidUtf8("\xF4\x8F\xBF\xBF"));            // U+10FFFF itself
}

TEST_CASE("ReplaceInvalidUtf8 keeps valid UTF-8 byte for byte") {
  const std::string valid = "ASCII \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf \x01\r\n";
  CHECK(ReplaceInvalidUtf8(valid) == valid);
  CHECK(ReplaceInvalidUtf8("") == "");
  CHECK(ReplaceInvalidUtf8(std::string("a\0b", 3)) == std::string("a\0b", 3));
}

TEST_CASE("ReplaceInvalidUtf8 replaces each maximal ill-formed subpart with one U+FFFD") {
  CHECK(ReplaceInvalidUtf8("\xff\xfe") == kReplacement + kReplacement);          // never-valid bytes
  CHECK(ReplaceInvalidUtf8("M\xfcller") == "M" + kReplacement + "ller");         // Latin-1 text
  CHECK(ReplaceInvalidUtf8("\x80x") == kReplacement + "x");                     // stray continuation byte
  CHECK(ReplaceInvalidUtf8("\xe2\x82") == kReplacement);                         // truncated at the end
  CHECK(ReplaceInvalidUtf8("\xe2\x82x") == kReplacement + "x");                  // truncated in the middle
  CHECK(ReplaceInvalidUtf8("\xf0\x9f\x98|") == kReplacement + "|");             // a separator is never swallowed
  CHECK(ReplaceInvalidUtf8("\xc0\xaf") == kReplacement + kReplacement);          // overlong '/'
  CHECK(ReplaceInvalidUtf8("\xed\xa0\x80") == kReplacement + kReplacement + kReplacement);  // surrogate D800
  CHECK(ReplaceInvalidUtf8("\xf4\x90\x80\x80") ==
        kReplacement + kReplacement + kReplacement + kReplacement);  // above U+10FFFF
  const std::string json_text = "{\"name\":\"M\xFCller\"}";
  CHECK(ReplaceInvalidUtf8(json_text) == "{\"name\":\"M" + kReplacement + "ller\"}");
  // The output is always valid, so a second pass changes nothing.
  const std::string mixed = "a\xff\xc3\xa9\xe2\x82\xc3";
  CHECK(ReplaceInvalidUtf8(mixed) == "a" + kReplacement + "\xc3\xa9" + kReplacement + kReplacement);
  CHECK(ReplaceInvalidUtf8(ReplaceInvalidUtf8(mixed)) == ReplaceInvalidUtf8(mixed));
  CHECK(IsValidUtf8(ReplaceInvalidUtf8("\xED\xA0\x80\xF4\x90\x80\x80\xC0\xAF")));
}

}  // namespace
}  // namespace aihub
