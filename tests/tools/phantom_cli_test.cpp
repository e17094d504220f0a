// The aihub-phantom CLI around the head CT generator (the CTPA and chest X-ray CLI tests sit with their
// generators' tests).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "tools/ct_series_reader.h"
#include "tools/phantom_test_util.h"

using aihub::testing::ReadBytes;
using aihub::testing::RunCommand;
using aihub::testing::TempDir;

TEST_CASE("head CT CLI --mask-out writes the blood mask without changing the study") {
  TempDir with_mask("head-mask"), plain("head-plain");
  const std::string cli = aihub::testing::PhantomCli();
  const std::string args = " head-ct --seed 6 --hemorrhage subdural --slices 8 --size 128";
  const auto mask = with_mask.path() / "blood.u8";
  REQUIRE(RunCommand(cli + args + " --out '" + with_mask.path().string() + "' --mask-out '" + mask.string() + "'")
              .exit_code == 0);
  REQUIRE(RunCommand(cli + args + " --out '" + plain.path().string() + "'").exit_code == 0);
  const std::string folder = "head-ct-s6-subdural-left";
  CHECK(ReadBytes(with_mask.path() / folder / "CT000004.dcm") == ReadBytes(plain.path() / folder / "CT000004.dcm"));
  const std::string bytes = ReadBytes(mask);
  REQUIRE(bytes.size() == size_t{8} * 128 * 128);
  const auto truth = nlohmann::json::parse(ReadBytes(plain.path() / folder / "truth.json"));
  uint64_t ones = 0;
  for (char b : bytes) ones += b == 1;
  CHECK(ones == truth["hemorrhage"]["voxels"].get<uint64_t>());
  CHECK(ones > 0);
}

TEST_CASE("the CLI refuses unknown commands and missing values") {
  const std::string cli = aihub::testing::PhantomCli();
  CHECK(RunCommand(cli).exit_code == 2);
  CHECK(RunCommand(cli + " mri --out /tmp --seed 1").exit_code == 2);
  CHECK(RunCommand(cli + " head-ct --out /tmp --seed").exit_code == 2);
  CHECK(RunCommand(cli + " head-ct --out /tmp --seed 1 --mask-out").exit_code == 2);
  CHECK(RunCommand(cli + " --help").exit_code == 0);
}
