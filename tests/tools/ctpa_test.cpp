#include "phantom/ctpa.h"

#include <doctest/doctest.h>
#include <dcmtk/dcmdata/dcdeftag.h>

#include <cmath>
#include <set>

#include "tools/ct_series_reader.h"
#include "tools/phantom_test_util.h"

namespace {

using aihub::phantom::CtpaOptions;
using aihub::phantom::EmbolusSide;
using aihub::phantom::GenerateCtpa;
using aihub::phantom::PulmonaryBranch;
using aihub::phantom::WriteCtpa;
using aihub::testing::ReadBytes;
using aihub::testing::ReadCtSeriesHu;
using aihub::testing::RunCommand;
using aihub::testing::Tag;
using aihub::testing::TempDir;

CtpaOptions Small(uint64_t seed, std::optional<PulmonaryBranch> branch = std::nullopt) {
  CtpaOptions o;
  o.seed = seed;
  o.embolus = branch.has_value();
  o.branch = branch;
  o.size = 128;
  o.slices = 40;
  return o;
}

double Mean3x3(const aihub::testing::CtSeriesHu& v, uint32_t c, uint32_t r, uint32_t k) {
  double sum = 0;
  for (int dr = -1; dr <= 1; ++dr)
    for (int dc = -1; dc <= 1; ++dc) sum += v.At(c + dc, r + dr, k);
  return sum / 9;
}

}  // namespace

TEST_CASE("CTPA: same seed gives byte-identical files, another seed or embolus another study") {
  TempDir a("ctpa-a"), b("ctpa-b"), c("ctpa-c");
  const CtpaOptions o = Small(31, PulmonaryBranch::kRight);
  const auto ta = WriteCtpa(o, a.path());
  const auto tb = WriteCtpa(o, b.path());
  REQUIRE(ta.ok());
  REQUIRE(tb.ok());
  REQUIRE(ta->files.size() == 40);
  for (const std::string& name : ta->files) {
    CHECK(ReadBytes(a.path() / ta->folder / name) == ReadBytes(b.path() / tb->folder / name));
  }
  CHECK(ReadBytes(a.path() / ta->folder / "truth.json") == ReadBytes(b.path() / tb->folder / "truth.json"));

  const auto tc = WriteCtpa(Small(32, PulmonaryBranch::kRight), c.path());
  REQUIRE(tc.ok());
  CHECK(tc->study_instance_uid != ta->study_instance_uid);
  CHECK(ReadBytes(c.path() / tc->folder / "CT000020.dcm") != ReadBytes(a.path() / ta->folder / "CT000020.dcm"));
  const auto none = GenerateCtpa(Small(31));
  REQUIRE(none.ok());
  CHECK(none->truth.study_instance_uid != ta->study_instance_uid);
  CHECK_FALSE(none->truth.embolus.present);
}

TEST_CASE("CTPA headers: chest CT angiography, 1 mm axial slices at 200 slices, contrast and window") {
  TempDir dir("ctpa-headers");
  CtpaOptions o = Small(3);
  o.slices = 200;
  o.size = 64;
  o.department = "RADIOLOGY";
  const auto t = WriteCtpa(o, dir.path());
  REQUIRE(t.ok());
  REQUIRE(t->files.size() == 200);
  const auto first = dir.path() / t->folder / "CT000001.dcm";
  CHECK(Tag(first, DCM_SOPClassUID) == "1.2.840.10008.5.1.4.1.1.2");
  CHECK(Tag(first, DCM_Modality) == "CT");
  CHECK(Tag(first, DCM_BodyPartExamined) == "CHEST");
  CHECK(Tag(first, DCM_StudyDescription) == "CTA CHEST PE PROTOCOL");
  CHECK(Tag(first, DCM_SeriesDescription) == "CTPA 1MM");
  CHECK(Tag(first, DCM_InstitutionalDepartmentName) == "RADIOLOGY");
  CHECK(Tag(first, DCM_ContrastBolusAgent).find("IOHEXOL") != std::string::npos);
  CHECK(Tag(first, DCM_ContrastBolusRoute) == "IV");
  CHECK(Tag(first, DCM_WindowCenter) == "100");
  CHECK(Tag(first, DCM_WindowWidth) == "700");
  CHECK(Tag(first, DCM_SliceThickness) == "1");
  CHECK(Tag(first, DCM_PatientName) == "PHANTOM^CHEST^3");
  CHECK(Tag(first, DCM_StudyInstanceUID) == t->study_instance_uid);
  CHECK(Tag(first, DCM_ImageOrientationPatient) == "1\\0\\0\\0\\1\\0");
  CHECK_FALSE(Tag(first, DCM_AccessionNumber).empty());
  const auto v = ReadCtSeriesHu(dir.path() / t->folder);
  CHECK(v.slices == 200);
  CHECK(v.slice_spacing_mm == doctest::Approx(1.0));
  CHECK(v.z.back() - v.z.front() == doctest::Approx(199.0));
  CHECK(v.column_spacing_mm == doctest::Approx(360.0 / 64));
}

TEST_CASE("CTPA densities read back with DCMTK: air, fat, lung, contrast artery, aorta, vertebra and clot") {
  TempDir dir("ctpa-hu");
  CtpaOptions o;
  o.seed = 5;
  o.embolus = true;
  o.branch = PulmonaryBranch::kLeft;
  o.slices = 48;  // full in-plane resolution, coarse slices to stay quick
  const auto t = WriteCtpa(o, dir.path());
  REQUIRE(t.ok());
  const auto v = ReadCtSeriesHu(dir.path() / t->folder);
  REQUIRE(v.slices == 48);
  REQUIRE(v.columns == 512);
  CHECK(t->artery_hu >= 250);
  CHECK(t->artery_hu <= 400);

  std::set<std::string> seen;
  for (const auto& l : t->landmarks) {
    seen.insert(l.name);
    const double hu = Mean3x3(v, l.column, l.row, l.slice);
    INFO(l.name << " at " << l.column << "," << l.row << "," << l.slice << ": " << hu << " expected " << l.expected_hu);
    CHECK(std::fabs(hu - l.expected_hu) < 15);
    if (l.name == "air") CHECK(hu < -970);
    if (l.name == "fat") CHECK((hu > -125 && hu < -75));
    if (l.name == "lung") CHECK((hu > -910 && hu < -780));
    if (l.name == "pulmonary_artery") CHECK((hu > 250 && hu < 400));
    if (l.name == "aorta") CHECK((hu > 170 && hu < 280));
    if (l.name == "vertebra") CHECK((hu > 200 && hu < 290));
    if (l.name == "clot") CHECK((hu > 10 && hu < 70));
  }
  CHECK(seen == std::set<std::string>{"air", "aorta", "clot", "fat", "lung", "pulmonary_artery", "vertebra"});
  // A left-sided clot lies at larger columns (ImageOrientationPatient 1\0\0: +x is the patient's left).
  CHECK(t->embolus.centroid_mm[0] > 0);
  CHECK(t->embolus.clot_hu >= 20);
  CHECK(t->embolus.clot_hu <= 60);
}

TEST_CASE("CTPA truth: clot volume and extents are the painted voxels, inside the contrast lumen, in each branch") {
  const auto without = GenerateCtpa(Small(21));
  REQUIRE(without.ok());
  for (int b = 0; b < aihub::phantom::kPulmonaryBranchCount; ++b) {
    const auto branch = static_cast<PulmonaryBranch>(b);
    CAPTURE(aihub::phantom::PulmonaryBranchName(branch));
    const auto with = GenerateCtpa(Small(21, branch));
    REQUIRE(with.ok());
    const auto& e = with->truth.embolus;
    const auto& vol = with->volume;
    REQUIRE(e.present);
    CHECK(e.branch == branch);
    CHECK(e.side == aihub::phantom::PulmonaryBranchSide(branch));
    uint64_t painted = 0, lumen = 0, per_slice = 0;
    for (uint8_t m : with->label_mask) {
      painted += m == aihub::phantom::kCtpaLabelEmbolus;
      lumen += m == aihub::phantom::kCtpaLabelArteryLumen;
    }
    for (const auto& s : e.slices) per_slice += s.voxels;
    CHECK(e.voxels == painted);
    CHECK(per_slice == painted);
    CHECK(lumen > painted);
    const double voxel_ml = vol.column_spacing_mm * vol.row_spacing_mm * vol.slice_spacing_mm / 1000;
    CHECK(e.volume_ml == doctest::Approx(painted * voxel_ml));
    CHECK(e.volume_ml > 0.05);
    CHECK(e.volume_ml < 30);
    if (e.side == EmbolusSide::kLeft) CHECK(e.centroid_mm[0] > 0);
    if (e.side == EmbolusSide::kRight) CHECK(e.centroid_mm[0] < 0);

    // Same seed, same chest and noise: the images differ only at the clot and its 1-voxel blur halo, and the clot
    // replaced contrast-filled lumen.
    const uint32_t cols = vol.columns, rows = vol.rows;
    uint64_t far_diff = 0, was_lumen = 0;
    for (uint32_t k = 0; k < vol.slices; ++k) {
      for (uint32_t r = 1; r + 1 < rows; ++r) {
        for (uint32_t c = 1; c + 1 < cols; ++c) {
          const size_t i = (static_cast<size_t>(k) * rows + r) * cols + c;
          if (with->label_mask[i] == aihub::phantom::kCtpaLabelEmbolus) {
            was_lumen += without->label_mask[i] == aihub::phantom::kCtpaLabelArteryLumen;
            continue;
          }
          bool near = false;
          for (int dr = -1; dr <= 1 && !near; ++dr)
            for (int dc = -1; dc <= 1 && !near; ++dc)
              near = with->label_mask[i + static_cast<long>(dr) * cols + dc] == aihub::phantom::kCtpaLabelEmbolus;
          if (!near && vol.hu[i] != without->volume.hu[i]) ++far_diff;
        }
      }
    }
    CHECK(far_diff == 0);
    CHECK(was_lumen == painted);
  }
}

TEST_CASE("CTPA slice passes dciodvfy without errors") {
  TempDir dir("ctpa-dciodvfy");
  const auto t = WriteCtpa(Small(4, PulmonaryBranch::kMain), dir.path());
  REQUIRE(t.ok());
  aihub::testing::CheckDciodvfyClean(dir.path() / t->folder / "CT000020.dcm", "CTImage");
}

TEST_CASE("CTPA invalid options are refused") {
  CtpaOptions o = Small(1);
  o.slices = 8;
  CHECK(GenerateCtpa(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o = Small(1);
  o.size = 32;
  CHECK(GenerateCtpa(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o = Small(1, PulmonaryBranch::kLeftUpperLobar);
  o.side = EmbolusSide::kRight;
  CHECK(GenerateCtpa(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o = Small(1);
  o.calling_ae = "A_CALLING_AE_TITLE_TOO_LONG";
  CHECK(GenerateCtpa(o).status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(aihub::phantom::ParseEmbolusSide("up").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(*aihub::phantom::ParseEmbolusSide("bilateral") == EmbolusSide::kBilateral);
  CHECK(aihub::phantom::ParsePulmonaryBranch("lingula").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(*aihub::phantom::ParsePulmonaryBranch("right_middle_lobar") == PulmonaryBranch::kRightMiddleLobar);
  // Bilateral without a branch is a saddle embolus.
  o = Small(1);
  o.embolus = true;
  o.side = EmbolusSide::kBilateral;
  const auto saddle = GenerateCtpa(o);
  REQUIRE(saddle.ok());
  CHECK(saddle->truth.embolus.branch == PulmonaryBranch::kMain);
}

TEST_CASE("CTPA CLI writes the study, the truth and the label mask, bad options exit 2") {
  TempDir dir("ctpa-cli");
  const std::string cli = aihub::testing::PhantomCli();
  const auto mask = dir.path() / "mask.u8";
  const auto ok = RunCommand(cli + " ctpa --out '" + dir.path().string() + "' --seed 9 --embolus present --side left" +
                             " --slices 32 --size 96 --mask-out '" + mask.string() + "'");
  INFO(ok.output);
  REQUIRE(ok.exit_code == 0);
  const auto study = GenerateCtpa([] {
    CtpaOptions o;
    o.seed = 9;
    o.embolus = true;
    o.side = EmbolusSide::kLeft;
    o.slices = 32;
    o.size = 96;
    return o;
  }());
  REQUIRE(study.ok());
  const std::string bytes = ReadBytes(mask);
  REQUIRE(bytes.size() == size_t{32} * 96 * 96);
  CHECK(bytes == std::string(study->label_mask.begin(), study->label_mask.end()));
  const auto layout = nlohmann::json::parse(ReadBytes(dir.path() / "mask.u8.json"));
  CHECK(layout["shape"] == nlohmann::json({32, 96, 96}));
  CHECK(layout["labels"]["1"] == "embolus");
  const auto truth = nlohmann::json::parse(ReadBytes(dir.path() / study->truth.folder / "truth.json"));
  CHECK(truth["embolus"]["present"] == true);
  CHECK(truth["embolus"]["side"] == "left");
  CHECK(truth["embolus"]["voxels"].get<uint64_t>() == study->truth.embolus.voxels);
  CHECK(truth["label_mask"]["shape"] == nlohmann::json({32, 96, 96}));

  for (const std::string bad : {"--embolus maybe", "--side up", "--branch lingula", "--slices 8", "--size 9999",
                                "--seed -1", "--frobnicate 1"}) {
    CAPTURE(bad);
    const auto r = RunCommand(cli + " ctpa --out '" + dir.path().string() + "' --seed 1 " + bad);
    CHECK(r.exit_code == 2);
  }
  CHECK(RunCommand(cli + " ctpa --seed 1").exit_code == 2);  // no --out
}
