#include "common/hash.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace aihub {

TEST_CASE("Sha256Hex matches the FIPS 180-2 test vector") {
  CHECK(Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("Sha256File hashes content and reports a missing file") {
  auto path = std::filesystem::temp_directory_path() / "aihub_hash_test.bin";
  { std::ofstream(path, std::ios::binary) << "abc"; }
  auto h = Sha256File(path);
  REQUIRE(h.ok());
  CHECK(*h == Sha256Hex("abc"));
  std::filesystem::remove(path);
  CHECK(Sha256File(path).status().code() == AIHUB_NOT_FOUND);
}

TEST_CASE("UidFromSeed is deterministic, valid and seed-specific") {
  const std::string a = UidFromSeed("job-1/ich/1.0.0");
  CHECK(a == UidFromSeed("job-1/ich/1.0.0"));
  CHECK(a != UidFromSeed("job-1/ich/1.0.1"));
  CHECK(a.rfind("2.25.", 0) == 0);
  CHECK(a.size() <= 64);
  // Components are decimal without leading zeros (PS3.5 9.1).
  const std::string digits = a.substr(5);
  CHECK(digits.find_first_not_of("0123456789") == std::string::npos);
  CHECK(digits[0] != '0');
}

}  // namespace aihub
