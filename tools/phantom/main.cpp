// aihub-phantom: writes synthetic DICOM studies with ground truth, for demos, tests and model training.
//
//   aihub-phantom head-ct --out DIR --seed N [--hemorrhage none|intraparenchymal|subdural|subarachnoid]
//                 [--side left|right] [--slices 40] [--size 512] [--department EMERGENCY] [--calling-ae CT_ER1]
//                 [--institution NAME] [--mask-out FILE]
//   aihub-phantom ctpa --out DIR --seed N [--embolus none|present] [--side left|right|bilateral] [--branch NAME]
//                 [--slices 200] [--size 512] [--department ...] [--calling-ae ...] [--institution ...]
//                 [--mask-out FILE]
//   aihub-phantom chest-xray --out DIR --seed N [--pneumothorax none|present] [--side left|right]
//                 [--size-percent X] [--rows 2500] [--columns 2048] [--department ...] [--calling-ae ...]
//                 [--institution ...] [--mask-out FILE]
//   aihub-phantom cardiac-cine --out DIR --seed N [--slices 10] [--phases 20] [--size 256] [--ef 10..80]
//                 [--missing-phase K] [--uneven-spacing] [--department CARDIOLOGY] [--calling-ae MR_CARD1]
//                 [--institution ...] [--mask-out FILE]
//   aihub-phantom wsi-ki67 --out DIR --seed N [--size 4096] [--tile 256|512] [--index 1..80] [--hotspots 0..3]
//                 [--missing-tile K] [--bad-tile-geometry] [--rle | --jpeg [--jpeg-quality 50..100]]
//                 [--department PATHOLOGY]
//                 [--calling-ae WSI_SCAN1] [--institution ...]
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <set>
#include <string>
#include <string_view>

#include "phantom/cardiac_cine.h"
#include "phantom/chest_xray.h"
#include "phantom/ctpa.h"
#include "phantom/head_ct.h"
#include "phantom/label_mask.h"
#include "phantom/wsi_ki67.h"

namespace {

using aihub::Status;
using namespace aihub::phantom;

constexpr const char* kUsage =
    "usage: aihub-phantom head-ct --out DIR --seed N [--hemorrhage none|intraparenchymal|subdural|subarachnoid]\n"
    "                     [--side left|right] [--slices 40] [--size 512] [--department EMERGENCY]\n"
    "                     [--calling-ae CT_ER1] [--institution NAME] [--mask-out FILE]\n"
    "       aihub-phantom ctpa --out DIR --seed N [--embolus none|present] [--side left|right|bilateral]\n"
    "                     [--branch main|right|left|right_upper_lobar|right_middle_lobar|right_lower_lobar|\n"
    "                               left_upper_lobar|left_lower_lobar]\n"
    "                     [--slices 200] [--size 512] [--department EMERGENCY] [--calling-ae CT_ER1]\n"
    "                     [--institution NAME] [--mask-out FILE]\n"
    "       aihub-phantom chest-xray --out DIR --seed N [--pneumothorax none|present] [--side left|right]\n"
    "                     [--size-percent 1..50] [--rows 2500] [--columns 2048] [--department EMERGENCY]\n"
    "                     [--calling-ae DX_ER1] [--institution NAME] [--mask-out FILE]\n"
    "       aihub-phantom cardiac-cine --out DIR --seed N [--slices 10] [--phases 20] [--size 256] [--ef 10..80]\n"
    "                     [--missing-phase K] [--uneven-spacing] [--department CARDIOLOGY]\n"
    "                     [--calling-ae MR_CARD1] [--institution NAME] [--mask-out FILE]\n"
    "       aihub-phantom wsi-ki67 --out DIR --seed N [--size 4096] [--tile 256|512] [--index 1..80]\n"
    "                     [--hotspots 0..3] [--missing-tile K] [--bad-tile-geometry]\n"
    "                     [--rle | --jpeg [--jpeg-quality 50..100]]\n"
    "                     [--department PATHOLOGY] [--calling-ae WSI_SCAN1] [--institution NAME]\n"
    "Writes the study into DIR/<folder>/ (one file per CT slice, one DX image, one MR file per cine slice and\n"
    "phase) and the ground truth into DIR/<folder>/truth.json. --mask-out FILE writes the label mask as raw uint8,\n"
    "shape slices x rows x columns in C order (numpy.fromfile(FILE, numpy.uint8).reshape(slices, rows, columns);\n"
    "slice k is instance k+1; cardiac-cine: reshape(slices, phases, rows, columns)), and its layout and label\n"
    "values to FILE.json. Labels: head-ct 1 blood; ctpa 1 embolus, 2 contrast-filled pulmonary artery lumen;\n"
    "chest-xray 1 pneumothorax, 2 visceral pleural line; cardiac-cine 1 LV cavity, 2 LV myocardium, 3 RV cavity.\n"
    "cardiac-cine --missing-phase K leaves out phase K of one mid slice, --uneven-spacing moves one mid slice by\n"
    "half the spacing; truth.json lists them under \"defects\".\n"
    "wsi-ki67 writes one TILED_FULL whole-slide file (SM000001.dcm, RGB tiles streamed one at a time) with Ki-67\n"
    "truth (index, hot spot, nuclei counts); --missing-tile K leaves tile K out (NumberOfFrames one short),\n"
    "--bad-tile-geometry states a total pixel matrix the tiles do not cover; truth.json lists them under \"defects\".\n"
    "Uncompressed PixelData holds at most 4 GiB (37632 px at 256 px tiles); --rle writes RLE Lossless, --jpeg JPEG\n"
    "Baseline YBR_FULL_422 tiles (quality 90 unless --jpeg-quality), neither with a limit.\n";

bool ParseUnsigned(const std::string& text, uint64_t max, uint64_t& out) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 20) return false;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno != 0 || v > max) return false;
  out = v;
  return true;
}

bool ParseDouble(const std::string& text, double& out) {
  if (text.empty() || text.find_first_not_of("0123456789.") != std::string::npos) return false;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v)) return false;
  out = v;
  return true;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "aihub-phantom: %s\n%s", message.c_str(), kUsage);
  return 2;
}

int Error(const Status& status) {
  std::fprintf(stderr, "aihub-phantom: %s\n", status.ToString().c_str());
  return 1;
}

// Flags every command shares; the rest go to `specific`, which returns "" when it took the flag, "unknown" when
// the flag is not its own, or an error message. Flags in `switches` take no value (`specific` gets "").
struct CommonFlags {
  std::string out_dir;
  std::string mask_out;
  bool have_seed = false;
  uint64_t seed = 0;
  std::string department, calling_ae, institution;
  bool have_department = false, have_calling_ae = false, have_institution = false;
};

int ParseFlags(int argc, char** argv, CommonFlags& common,
               const std::function<std::string(const std::string&, const std::string&)>& specific,
               const std::set<std::string>& switches = {}) {
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (switches.count(flag) != 0) {
      if (const std::string error = specific(flag, ""); !error.empty()) return Fail(error);
      continue;
    }
    if (i + 1 >= argc) return Fail("missing value for " + flag);
    const std::string value = argv[++i];
    uint64_t number = 0;
    if (flag == "--out") {
      common.out_dir = value;
    } else if (flag == "--seed") {
      if (!ParseUnsigned(value, UINT64_MAX, number)) return Fail("--seed needs an unsigned integer");
      common.seed = number;
      common.have_seed = true;
    } else if (flag == "--mask-out") {
      if (value.empty()) return Fail("--mask-out needs a file name");
      common.mask_out = value;
    } else if (flag == "--department") {
      common.department = value;
      common.have_department = true;
    } else if (flag == "--calling-ae") {
      common.calling_ae = value;
      common.have_calling_ae = true;
    } else if (flag == "--institution") {
      common.institution = value;
      common.have_institution = true;
    } else {
      const std::string error = specific(flag, value);
      if (error == "unknown") return Fail("unknown option " + flag);
      if (!error.empty()) return Fail(error);
    }
  }
  if (common.out_dir.empty()) return Fail("--out is required");
  if (!common.have_seed) return Fail("--seed is required");
  return 0;
}

template <typename Options>
void ApplyCommon(const CommonFlags& common, Options& options) {
  options.seed = common.seed;
  if (common.have_department) options.department = common.department;
  if (common.have_calling_ae) options.calling_ae = common.calling_ae;
  if (common.have_institution) options.institution = common.institution;
}

std::string PresentOrNone(const std::string& value, bool& out) {
  if (value == "present") {
    out = true;
  } else if (value == "none") {
    out = false;
  } else {
    return "unknown value '" + value + "' (none, present)";
  }
  return "";
}

int RunHeadCt(int argc, char** argv) {
  HeadCtOptions options;
  CommonFlags common;
  const int rc = ParseFlags(argc, argv, common, [&](const std::string& flag, const std::string& value) -> std::string {
    uint64_t number = 0;
    if (flag == "--hemorrhage") {
      auto type = ParseHemorrhageType(value);
      if (!type.ok()) return type.status().message();
      options.hemorrhage = *type;
    } else if (flag == "--side") {
      auto side = ParseSide(value);
      if (!side.ok()) return side.status().message();
      options.side = *side;
    } else if (flag == "--slices") {
      if (!ParseUnsigned(value, 400, number)) return "--slices needs an integer in 1..400";
      options.slices = static_cast<uint32_t>(number);
    } else if (flag == "--size") {
      if (!ParseUnsigned(value, 1024, number)) return "--size needs an integer in 64..1024";
      options.size = static_cast<uint32_t>(number);
    } else {
      return "unknown";
    }
    return "";
  });
  if (rc != 0) return rc;
  ApplyCommon(common, options);

  const aihub::StatusOr<HeadCtTruth> truth = WriteHeadCt(options, common.out_dir);
  if (!truth.ok()) return Error(truth.status());
  if (!common.mask_out.empty()) {
    // WriteHeadCt keeps its study to itself; generating again is deterministic and gives the same mask.
    const aihub::StatusOr<HeadCtStudy> study = GenerateHeadCt(options);
    if (!study.ok()) return Error(study.status());
    LabelMaskLayout layout;
    layout.slices = study->volume.slices;
    layout.rows = study->volume.rows;
    layout.columns = study->volume.columns;
    layout.labels = {{1, "blood"}};
    if (Status s = WriteLabelMask(common.mask_out, study->blood_mask, layout); !s.ok()) return Error(s);
  }
  const HemorrhageTruth& h = truth->hemorrhage;
  std::printf("%s/%s: %zu slices, hemorrhage %s", common.out_dir.c_str(), truth->folder.c_str(), truth->files.size(),
              std::string(HemorrhageTypeName(h.type)).c_str());
  if (h.present) std::printf(" (%s, %.1f mL)", std::string(SideName(h.side)).c_str(), h.volume_ml);
  std::printf("\n");
  return 0;
}

int RunCtpa(int argc, char** argv) {
  CtpaOptions options;
  CommonFlags common;
  const int rc = ParseFlags(argc, argv, common, [&](const std::string& flag, const std::string& value) -> std::string {
    uint64_t number = 0;
    if (flag == "--embolus") {
      return PresentOrNone(value, options.embolus);
    } else if (flag == "--side") {
      auto side = ParseEmbolusSide(value);
      if (!side.ok()) return side.status().message();
      options.side = *side;
    } else if (flag == "--branch") {
      auto branch = ParsePulmonaryBranch(value);
      if (!branch.ok()) return branch.status().message();
      options.branch = *branch;
    } else if (flag == "--slices") {
      if (!ParseUnsigned(value, 400, number) || number < 16) return "--slices needs an integer in 16..400";
      options.slices = static_cast<uint32_t>(number);
    } else if (flag == "--size") {
      if (!ParseUnsigned(value, 1024, number) || number < 64) return "--size needs an integer in 64..1024";
      options.size = static_cast<uint32_t>(number);
    } else {
      return "unknown";
    }
    return "";
  });
  if (rc != 0) return rc;
  ApplyCommon(common, options);

  const aihub::StatusOr<CtpaStudy> study = GenerateCtpa(options);
  if (!study.ok()) return Error(study.status());
  const aihub::StatusOr<CtpaTruth> truth = WriteCtpaStudy(*study, common.out_dir);
  if (!truth.ok()) return Error(truth.status());
  if (!common.mask_out.empty()) {
    if (Status s = WriteLabelMask(common.mask_out, study->label_mask, CtpaLabelMaskLayout(*study)); !s.ok()) {
      return Error(s);
    }
  }
  const EmbolusTruth& e = truth->embolus;
  std::printf("%s/%s: %zu slices, embolus %s", common.out_dir.c_str(), truth->folder.c_str(), truth->files.size(),
              e.present ? "present" : "none");
  if (e.present) {
    std::printf(" (%s, %s, %.2f mL)", std::string(PulmonaryBranchName(e.branch)).c_str(),
                std::string(EmbolusSideName(e.side)).c_str(), e.volume_ml);
  }
  std::printf("\n");
  return 0;
}

int RunChestXray(int argc, char** argv) {
  ChestXrayOptions options;
  CommonFlags common;
  const int rc = ParseFlags(argc, argv, common, [&](const std::string& flag, const std::string& value) -> std::string {
    uint64_t number = 0;
    double real = 0;
    if (flag == "--pneumothorax") {
      return PresentOrNone(value, options.pneumothorax);
    } else if (flag == "--side") {
      auto side = ParseSide(value);
      if (!side.ok()) return side.status().message();
      options.side = *side;
    } else if (flag == "--size-percent") {
      if (!ParseDouble(value, real) || real < 1 || real > 50) return "--size-percent needs a number in 1..50";
      options.size_percent = real;
    } else if (flag == "--rows") {
      if (!ParseUnsigned(value, 4096, number) || number < 256) return "--rows needs an integer in 256..4096";
      options.rows = static_cast<uint32_t>(number);
    } else if (flag == "--columns") {
      if (!ParseUnsigned(value, 4096, number) || number < 256) return "--columns needs an integer in 256..4096";
      options.columns = static_cast<uint32_t>(number);
    } else {
      return "unknown";
    }
    return "";
  });
  if (rc != 0) return rc;
  ApplyCommon(common, options);

  const aihub::StatusOr<ChestXrayStudy> study = GenerateChestXray(options);
  if (!study.ok()) return Error(study.status());
  const aihub::StatusOr<ChestXrayTruth> truth = WriteChestXrayStudy(*study, common.out_dir);
  if (!truth.ok()) return Error(truth.status());
  if (!common.mask_out.empty()) {
    if (Status s = WriteLabelMask(common.mask_out, study->label_mask, ChestXrayLabelMaskLayout(*study)); !s.ok()) {
      return Error(s);
    }
  }
  const PneumothoraxTruth& p = truth->pneumothorax;
  std::printf("%s/%s: %ux%u, pneumothorax %s", common.out_dir.c_str(), truth->folder.c_str(), truth->rows,
              truth->columns, p.present ? "present" : "none");
  if (p.present) std::printf(" (%s, %.1f%%)", std::string(SideName(p.side)).c_str(), p.size_percent);
  std::printf("\n");
  return 0;
}

int RunCardiacCine(int argc, char** argv) {
  CardiacCineOptions options;
  CommonFlags common;
  const int rc = ParseFlags(
      argc, argv, common,
      [&](const std::string& flag, const std::string& value) -> std::string {
        uint64_t number = 0;
        double real = 0;
        if (flag == "--slices") {
          if (!ParseUnsigned(value, 24, number) || number < 2) return "--slices needs an integer in 2..24";
          options.slices = static_cast<uint32_t>(number);
        } else if (flag == "--phases") {
          if (!ParseUnsigned(value, 50, number) || number < 2) return "--phases needs an integer in 2..50";
          options.phases = static_cast<uint32_t>(number);
        } else if (flag == "--size") {
          if (!ParseUnsigned(value, 512, number) || number < 64) return "--size needs an integer in 64..512";
          options.size = static_cast<uint32_t>(number);
        } else if (flag == "--ef") {
          if (!ParseDouble(value, real) || real < 10 || real > 80) return "--ef needs a number in 10..80";
          options.ef_percent = real;
        } else if (flag == "--missing-phase") {
          if (!ParseUnsigned(value, 49, number)) return "--missing-phase needs a phase number (0-based)";
          options.missing_phase = static_cast<uint32_t>(number);
        } else if (flag == "--uneven-spacing") {
          options.uneven_spacing = true;
        } else {
          return "unknown";
        }
        return "";
      },
      {"--uneven-spacing"});
  if (rc != 0) return rc;
  ApplyCommon(common, options);
  if (options.missing_phase && *options.missing_phase >= options.phases) {
    return Fail("--missing-phase must be below --phases");
  }

  const aihub::StatusOr<CardiacCineStudy> study = GenerateCardiacCine(options);
  if (!study.ok()) return Error(study.status());
  const aihub::StatusOr<CardiacCineTruth> truth = WriteCardiacCineStudy(*study, common.out_dir);
  if (!truth.ok()) return Error(truth.status());
  if (!common.mask_out.empty()) {
    if (Status s = WriteLabelMask(common.mask_out, study->label_mask, CardiacCineLabelMaskLayout(*study)); !s.ok()) {
      return Error(s);
    }
  }
  std::printf("%s/%s: %zu files (%u slices x %u phases), EDV %.1f mL, ESV %.1f mL, EF %.1f%%", common.out_dir.c_str(),
              truth->folder.c_str(), truth->files.size(), truth->slices, truth->phases, truth->edv_ml, truth->esv_ml,
              truth->ef_percent);
  for (const CineDefect& d : truth->defects) std::printf(", %s (slice %u)", d.kind.c_str(), d.slice);
  std::printf("\n");
  return 0;
}

int RunWsiKi67(int argc, char** argv) {
  WsiKi67Options options;
  CommonFlags common;
  const int rc = ParseFlags(
      argc, argv, common,
      [&](const std::string& flag, const std::string& value) -> std::string {
        uint64_t number = 0;
        double real = 0;
        if (flag == "--size") {
          if (!ParseUnsigned(value, 65536, number) || number < 1024) return "--size needs an integer in 1024..65536";
          options.size = static_cast<uint32_t>(number);
        } else if (flag == "--tile") {
          if (value != "256" && value != "512") return "--tile needs 256 or 512";
          options.tile = value == "256" ? 256 : 512;
        } else if (flag == "--index") {
          if (!ParseDouble(value, real) || real < 1 || real > 80) return "--index needs a number in 1..80";
          options.index_percent = real;
        } else if (flag == "--hotspots") {
          if (!ParseUnsigned(value, 3, number)) return "--hotspots needs an integer in 0..3";
          options.hotspots = static_cast<uint32_t>(number);
        } else if (flag == "--missing-tile") {
          if (!ParseUnsigned(value, UINT32_MAX, number)) return "--missing-tile needs a tile number (0-based)";
          options.missing_tile = static_cast<uint32_t>(number);
        } else if (flag == "--bad-tile-geometry") {
          options.bad_tile_geometry = true;
        } else if (flag == "--rle") {
          options.rle = true;
        } else if (flag == "--jpeg") {
          options.jpeg = true;
        } else if (flag == "--jpeg-quality") {
          if (!ParseUnsigned(value, 100, number) || number < 50) return "--jpeg-quality needs an integer in 50..100";
          options.jpeg_quality = static_cast<int>(number);
        } else {
          return "unknown";
        }
        return "";
      },
      {"--bad-tile-geometry", "--rle", "--jpeg"});
  if (rc != 0) return rc;
  if (!common.mask_out.empty()) return Fail("wsi-ki67 writes no label mask (--mask-out)");
  ApplyCommon(common, options);

  const aihub::StatusOr<WsiKi67Truth> truth = WriteWsiKi67(options, common.out_dir);
  if (!truth.ok()) return Error(truth.status());
  std::printf("%s/%s: %u x %u px in %u frames of %u px, Ki-67 index %.1f%% (%llu of %llu nuclei), hot spot %.1f%%",
              common.out_dir.c_str(), truth->folder.c_str(), truth->size, truth->size, truth->frames, truth->tile,
              truth->global_index_percent, static_cast<unsigned long long>(truth->positive_nuclei),
              static_cast<unsigned long long>(truth->positive_nuclei + truth->negative_nuclei),
              truth->hotspot.index_percent);
  for (const WsiKi67Defect& d : truth->defects) std::printf(", %s", d.kind.c_str());
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Fail("missing command");
  const std::string command = argv[1];
  if (command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "head-ct") return RunHeadCt(argc, argv);
  if (command == "ctpa") return RunCtpa(argc, argv);
  if (command == "chest-xray") return RunChestXray(argc, argv);
  if (command == "cardiac-cine") return RunCardiacCine(argc, argv);
  if (command == "wsi-ki67") return RunWsiKi67(argc, argv);
  return Fail("unknown command '" + command + "'");
}
