#include "store/utf8.h"

#include <doctest/doctest.h>

namespace aihub::store {
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

TEST_CASE("SanitizeUtf8 keeps valid text and replaces each bad byte") {
  CHECK(SanitizeUtf8("caf\xC3\xA9") == "caf\xC3\xA9");
  CHECK(SanitizeUtf8("a\xFF\xFE" "b") == "a" + kReplacement + kReplacement + "b");
  CHECK(SanitizeUtf8("\xC3(") == kReplacement + "(");
  CHECK(SanitizeUtf8("\xE2\x82") == kReplacement + kReplacement);
  const std::string json_text = "{\"name\":\"M\xFCller\"}";
  CHECK(SanitizeUtf8(json_text) == "{\"name\":\"M" + kReplacement + "ller\"}");
  CHECK(IsValidUtf8(SanitizeUtf8("\xED\xA0\x80\xF4\x90\x80\x80\xC0\xAF")));
}

}  // namespace
}  // namespace aihub::store
