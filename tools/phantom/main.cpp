// aihub-phantom: writes synthetic DICOM studies with ground truth, for demos and tests.
//
//   aihub-phantom head-ct --out DIR --seed N [--hemorrhage none|intraparenchymal|subdural|subarachnoid]
//                 [--side left|right] [--slices 40] [--size 512] [--department EMERGENCY] [--calling-ae CT_ER1]
//                 [--institution NAME]
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "phantom/head_ct.h"

namespace {

constexpr const char* kUsage =
    "usage: aihub-phantom head-ct --out DIR --seed N [--hemorrhage none|intraparenchymal|subdural|subarachnoid]\n"
    "                     [--side left|right] [--slices 40] [--size 512] [--department EMERGENCY]\n"
    "                     [--calling-ae CT_ER1] [--institution NAME]\n"
    "Writes one CT slice per file into DIR/<folder>/ and the ground truth into DIR/<folder>/truth.json.\n";

bool ParseUnsigned(const std::string& text, uint64_t max, uint64_t& out) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 20) return false;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno != 0 || v > max) return false;
  out = v;
  return true;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "aihub-phantom: %s\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace aihub::phantom;
  if (argc < 2) return Fail("missing command");
  const std::string command = argv[1];
  if (command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command != "head-ct") return Fail("unknown command '" + command + "'");

  HeadCtOptions options;
  std::string out_dir;
  bool have_seed = false;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Fail("missing value for " + flag);
    const std::string value = argv[++i];
    uint64_t number = 0;
    if (flag == "--out") {
      out_dir = value;
    } else if (flag == "--seed") {
      if (!ParseUnsigned(value, UINT64_MAX, number)) return Fail("--seed needs an unsigned integer");
      options.seed = number;
      have_seed = true;
    } else if (flag == "--hemorrhage") {
      auto type = ParseHemorrhageType(value);
      if (!type.ok()) return Fail(type.status().message());
      options.hemorrhage = *type;
    } else if (flag == "--side") {
      auto side = ParseSide(value);
      if (!side.ok()) return Fail(side.status().message());
      options.side = *side;
    } else if (flag == "--slices") {
      if (!ParseUnsigned(value, 400, number)) return Fail("--slices needs an integer in 1..400");
      options.slices = static_cast<uint32_t>(number);
    } else if (flag == "--size") {
      if (!ParseUnsigned(value, 1024, number)) return Fail("--size needs an integer in 64..1024");
      options.size = static_cast<uint32_t>(number);
    } else if (flag == "--department") {
      options.department = value;
    } else if (flag == "--calling-ae") {
      options.calling_ae = value;
    } else if (flag == "--institution") {
      options.institution = value;
    } else {
      return Fail("unknown option " + flag);
    }
  }
  if (out_dir.empty()) return Fail("--out is required");
  if (!have_seed) return Fail("--seed is required");

  const aihub::StatusOr<HeadCtTruth> truth = WriteHeadCt(options, out_dir);
  if (!truth.ok()) {
    std::fprintf(stderr, "aihub-phantom: %s\n", truth.status().ToString().c_str());
    return 1;
  }
  const HemorrhageTruth& h = truth->hemorrhage;
  std::printf("%s/%s: %zu slices, hemorrhage %s", out_dir.c_str(), truth->folder.c_str(), truth->files.size(),
              std::string(HemorrhageTypeName(h.type)).c_str());
  if (h.present) std::printf(" (%s, %.1f mL)", std::string(SideName(h.side)).c_str(), h.volume_ml);
  std::printf("\n");
  return 0;
}
