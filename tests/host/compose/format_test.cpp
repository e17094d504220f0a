#include "compose/format.h"

#include <doctest/doctest.h>

#include <string>

namespace aihub::compose {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

TEST_CASE("ReplaceInvalidUtf8 keeps valid UTF-8 byte for byte") {
  const std::string valid = "ASCII \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf \x01\r\n";
  CHECK(ReplaceInvalidUtf8(valid) == valid);
  CHECK(ReplaceInvalidUtf8("") == "");
  CHECK(ReplaceInvalidUtf8(std::string("a\0b", 3)) == std::string("a\0b", 3));
}

TEST_CASE("ReplaceInvalidUtf8 replaces each maximal ill-formed subpart with one U+FFFD") {
  CHECK(ReplaceInvalidUtf8("\xff\xfe") == kFffd + kFffd);               // never-valid bytes
  CHECK(ReplaceInvalidUtf8("M\xfcller") == "M" + kFffd + "ller");      // Latin-1 text
  CHECK(ReplaceInvalidUtf8("\x80x") == kFffd + "x");                  // stray continuation byte
  CHECK(ReplaceInvalidUtf8("\xe2\x82") == kFffd);                      // truncated at the end
  CHECK(ReplaceInvalidUtf8("\xe2\x82x") == kFffd + "x");               // truncated in the middle
  CHECK(ReplaceInvalidUtf8("\xf0\x9f\x98|") == kFffd + "|");           // a separator is never swallowed
  CHECK(ReplaceInvalidUtf8("\xc0\xaf") == kFffd + kFffd);              // overlong '/'
  CHECK(ReplaceInvalidUtf8("\xe0\x80\xaf") == kFffd + kFffd + kFffd);  // overlong, 3 bytes
  CHECK(ReplaceInvalidUtf8("\xed\xa0\x80") == kFffd + kFffd + kFffd);  // UTF-16 surrogate D800
  CHECK(ReplaceInvalidUtf8("\xf4\x90\x80\x80") == kFffd + kFffd + kFffd + kFffd);  // above U+10FFFF
  CHECK(ReplaceInvalidUtf8("\xf5\x80") == kFffd + kFffd);
  // The output is always valid, so a second pass changes nothing.
  const std::string mixed = "a\xff\xc3\xa9\xe2\x82\xc3";
  CHECK(ReplaceInvalidUtf8(mixed) == "a" + kFffd + "\xc3\xa9" + kFffd + kFffd);
  CHECK(ReplaceInvalidUtf8(ReplaceInvalidUtf8(mixed)) == ReplaceInvalidUtf8(mixed));
}

}  // namespace
}  // namespace aihub::compose
