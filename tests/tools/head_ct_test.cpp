#include "phantom/head_ct.h"

#include <doctest/doctest.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "tools/ct_series_reader.h"

namespace {

using aihub::phantom::GenerateHeadCt;
using aihub::phantom::HeadCtOptions;
using aihub::phantom::HeadCtTruth;
using aihub::phantom::HemorrhageType;
using aihub::phantom::Side;
using aihub::phantom::WriteHeadCt;
using aihub::testing::ReadCtSeriesHu;
using aihub::testing::TempDir;

std::string ReadBytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

HeadCtOptions Small(uint64_t seed, HemorrhageType type = HemorrhageType::kNone, Side side = Side::kLeft) {
  HeadCtOptions o;
  o.seed = seed;
  o.hemorrhage = type;
  o.side = side;
  o.size = 256;
  o.slices = 16;
  return o;
}

std::string Tag(const std::filesystem::path& file, const DcmTagKey& key, bool meta = false) {
  DcmFileFormat f;
  REQUIRE(f.loadFile(file.c_str()).good());
  OFString v;
  DcmItem* item = meta ? static_cast<DcmItem*>(f.getMetaInfo()) : f.getDataset();
  item->findAndGetOFStringArray(key, v);
  return v.c_str();
}

double Mean3x3(const aihub::testing::CtSeriesHu& v, uint32_t c, uint32_t r, uint32_t k) {
  double sum = 0;
  for (int dr = -1; dr <= 1; ++dr)
    for (int dc = -1; dc <= 1; ++dc) sum += v.At(c + dc, r + dr, k);
  return sum / 9;
}

}  // namespace

TEST_CASE("same seed gives byte-identical files and another seed other files") {
  TempDir a("phantom-a"), b("phantom-b"), c("phantom-c");
  const HeadCtOptions o = Small(11, HemorrhageType::kIntraparenchymal);
  const auto ta = WriteHeadCt(o, a.path());
  const auto tb = WriteHeadCt(o, b.path());
  REQUIRE(ta.ok());
  REQUIRE(tb.ok());
  REQUIRE(ta->files.size() == 16);
  for (const std::string& name : ta->files) {
    CHECK(ReadBytes(a.path() / ta->folder / name) == ReadBytes(b.path() / tb->folder / name));
  }
  CHECK(ReadBytes(a.path() / ta->folder / "truth.json") == ReadBytes(b.path() / tb->folder / "truth.json"));

  const auto tc = WriteHeadCt(Small(12, HemorrhageType::kIntraparenchymal), c.path());
  REQUIRE(tc.ok());
  CHECK(tc->study_instance_uid != ta->study_instance_uid);
  CHECK(tc->series_instance_uid != ta->series_instance_uid);
  CHECK(ReadBytes(c.path() / tc->folder / "CT000008.dcm") != ReadBytes(a.path() / ta->folder / "CT000008.dcm"));

  // One seed with another lesion type is another study (UIDs), not a replacement of the first.
  const auto none = GenerateHeadCt(Small(11));
  REQUIRE(none.ok());
  CHECK(none->truth.study_instance_uid != ta->study_instance_uid);
}

TEST_CASE("headers are those of an axial head CT from a scanner") {
  TempDir dir("phantom-headers");
  HeadCtOptions o = Small(3);
  o.department = "NEURO";
  o.calling_ae = "CT_NEURO2";
  const auto t = WriteHeadCt(o, dir.path());
  REQUIRE(t.ok());
  const auto first = dir.path() / t->folder / "CT000001.dcm";
  const auto second = dir.path() / t->folder / "CT000002.dcm";
  CHECK(Tag(first, DCM_SOPClassUID) == "1.2.840.10008.5.1.4.1.1.2");
  CHECK(Tag(first, DCM_TransferSyntaxUID, true) == "1.2.840.10008.1.2.1");
  CHECK(Tag(first, DCM_SourceApplicationEntityTitle, true) == "CT_NEURO2");
  CHECK(Tag(first, DCM_Modality) == "CT");
  CHECK(Tag(first, DCM_BodyPartExamined) == "HEAD");
  CHECK(Tag(first, DCM_StudyDescription) == "CT HEAD WO CONTRAST");
  CHECK(Tag(first, DCM_SeriesDescription) == "AXIAL 5MM");
  CHECK(Tag(first, DCM_InstitutionalDepartmentName) == "NEURO");
  CHECK(Tag(first, DCM_Manufacturer) == "AIHUB PHANTOM");
  CHECK(Tag(first, DCM_PatientName) == "PHANTOM^HEAD^3");
  CHECK(Tag(first, DCM_ImageOrientationPatient) == "1\\0\\0\\0\\1\\0");
  CHECK(Tag(first, DCM_ImageType) == "ORIGINAL\\PRIMARY\\AXIAL");
  CHECK(Tag(first, DCM_RescaleIntercept) == "-1024");
  CHECK(Tag(first, DCM_RescaleType) == "HU");
  CHECK(Tag(first, DCM_PixelRepresentation) == "1");
  CHECK(Tag(first, DCM_StudyInstanceUID) == t->study_instance_uid);
  CHECK(Tag(first, DCM_SeriesInstanceUID) == t->series_instance_uid);
  CHECK(Tag(second, DCM_InstanceNumber) == "2");
  CHECK(Tag(first, DCM_StudyDate).size() == 8);
  CHECK(Tag(first, DCM_SOPInstanceUID) != Tag(second, DCM_SOPInstanceUID));
  DcmFileFormat f1, f2;
  REQUIRE(f1.loadFile(first.c_str()).good());
  REQUIRE(f2.loadFile(second.c_str()).good());
  Float64 z1 = 0, z2 = 0, ps = 0, loc = 0;
  f1.getDataset()->findAndGetFloat64(DCM_ImagePositionPatient, z1, 2);
  f2.getDataset()->findAndGetFloat64(DCM_ImagePositionPatient, z2, 2);
  f2.getDataset()->findAndGetFloat64(DCM_SliceLocation, loc);
  f1.getDataset()->findAndGetFloat64(DCM_PixelSpacing, ps, 0);
  CHECK(z2 - z1 == doctest::Approx(5.0));
  CHECK(loc == doctest::Approx(z2));
  CHECK(ps == doctest::Approx(240.0 / 256));
}

TEST_CASE("densities read back with DCMTK match the anatomy at air bone white matter CSF and blood landmarks") {
  TempDir dir("phantom-hu");
  HeadCtOptions o;  // full size: 512 x 512 x 40
  o.seed = 5;
  o.hemorrhage = HemorrhageType::kIntraparenchymal;
  o.side = Side::kRight;
  const auto t = WriteHeadCt(o, dir.path());
  REQUIRE(t.ok());
  const auto v = ReadCtSeriesHu(dir.path() / t->folder);
  REQUIRE(v.slices == 40);
  REQUIRE(v.columns == 512);
  CHECK(v.column_spacing_mm >= 0.45);
  CHECK(v.column_spacing_mm <= 0.5);
  for (uint32_t k = 0; k < v.slices; ++k) CHECK(v.At(3, 3, k) < -950);  // air around the head

  std::set<std::string> seen;
  for (const auto& l : t->landmarks) {
    seen.insert(l.name);
    const double hu = Mean3x3(v, l.column, l.row, l.slice);
    INFO(l.name << " at " << l.column << "," << l.row << "," << l.slice << ": " << hu << " expected "
                << l.expected_hu);
    // Bone is a density gradient through the skull, so its 3x3 mean strays further from the centre value.
    CHECK(std::fabs(hu - l.expected_hu) < (l.name == "bone" ? 60 : 12));
    if (l.name == "air") CHECK(hu < -980);
    if (l.name == "bone") CHECK((hu > 700 && hu < 1500));
    if (l.name == "white_matter") CHECK((hu > 18 && hu < 34));
    if (l.name == "ventricle") CHECK((hu > -8 && hu < 15));
    if (l.name == "blood") CHECK((hu > 55 && hu < 85));
  }
  CHECK(seen == std::set<std::string>{"air", "blood", "bone", "ventricle", "white_matter"});

  // Patient-left is the larger column (ImageOrientationPatient 1\0\0): a right-sided bleed lies left of the midline.
  const double first_x = -(static_cast<double>(v.columns) - 1) / 2 * v.column_spacing_mm;
  const double midline_column = (t->midline_x_mm - first_x) / v.column_spacing_mm;
  CHECK(t->hemorrhage.box.column_max < midline_column);
}

TEST_CASE("image noise has a standard deviation of 4 to 6 HU") {
  TempDir dir("phantom-noise");
  const auto t = WriteHeadCt(Small(8), dir.path());
  REQUIRE(t.ok());
  const auto v = ReadCtSeriesHu(dir.path() / t->folder);
  // Air outside the head: uniform before noise, so the spread is the noise.
  double sum = 0, sum2 = 0;
  int n = 0;
  for (uint32_t k = 0; k < v.slices; ++k) {
    for (uint32_t r = 2; r < 30; ++r) {
      for (uint32_t c = 2; c < 30; ++c) {
        const double hu = v.At(c, r, k);
        sum += hu;
        sum2 += hu * hu;
        ++n;
      }
    }
  }
  const double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  CHECK(mean == doctest::Approx(-1000).epsilon(0.005));
  CHECK(sd > 4);
  CHECK(sd < 6);
}

TEST_CASE("truth volume is the painted voxels and only they differ from the same head without a bleed") {
  for (HemorrhageType type :
       {HemorrhageType::kIntraparenchymal, HemorrhageType::kSubdural, HemorrhageType::kSubarachnoid}) {
    CAPTURE(static_cast<int>(type));
    const auto with = GenerateHeadCt(Small(21, type, Side::kLeft));
    const auto without = GenerateHeadCt(Small(21));
    REQUIRE(with.ok());
    REQUIRE(without.ok());
    const auto& h = with->truth.hemorrhage;
    const auto& vol = with->volume;
    uint64_t painted = 0, per_slice = 0;
    for (uint8_t m : with->blood_mask) painted += m;
    for (const auto& s : h.slices) per_slice += s.voxels;
    REQUIRE(h.present);
    CHECK(h.voxels == painted);
    CHECK(per_slice == painted);
    const double voxel_ml = vol.column_spacing_mm * vol.row_spacing_mm * vol.slice_spacing_mm / 1000;
    CHECK(h.volume_ml == doctest::Approx(painted * voxel_ml));
    CHECK(h.volume_ml > 0.5);
    CHECK(h.centroid_mm[0] > with->truth.midline_x_mm);  // left = patient +x

    // Same seed, same anatomy and noise: the images differ at painted voxels (and their 1-pixel blur halo).
    uint64_t differing_in_mask = 0, differing_far = 0;
    const uint32_t cols = vol.columns, rows = vol.rows;
    for (uint32_t k = 0; k < vol.slices; ++k) {
      for (uint32_t r = 1; r + 1 < rows; ++r) {
        for (uint32_t c = 1; c + 1 < cols; ++c) {
          const size_t i = (static_cast<size_t>(k) * rows + r) * cols + c;
          const int diff = std::abs(vol.hu[i] - without->volume.hu[i]);
          if (with->blood_mask[i]) {
            differing_in_mask += diff > 5;
            continue;
          }
          bool near = false;
          for (int dr = -1; dr <= 1 && !near; ++dr)
            for (int dc = -1; dc <= 1 && !near; ++dc) near = with->blood_mask[i + static_cast<long>(dr) * cols + dc] != 0;
          // Edema around an intraparenchymal bleed is a painted change too, but never blood-dense.
          if (!near && diff > 0) differing_far += type == HemorrhageType::kIntraparenchymal ? diff > 12 : 1;
        }
      }
    }
    CHECK(differing_in_mask >= painted * 95 / 100);
    CHECK(differing_far == 0);
  }
  const auto none = GenerateHeadCt(Small(21));
  REQUIRE(none.ok());
  CHECK_FALSE(none->truth.hemorrhage.present);
  CHECK(none->truth.hemorrhage.volume_ml == 0);
}

TEST_CASE("truth.json on disk describes the written study") {
  TempDir dir("phantom-json");
  const auto t = WriteHeadCt(Small(9, HemorrhageType::kSubdural, Side::kRight), dir.path());
  REQUIRE(t.ok());
  const auto j = nlohmann::json::parse(ReadBytes(dir.path() / t->folder / "truth.json"));
  CHECK(j["seed"] == 9);
  CHECK(j["study_instance_uid"] == Tag(dir.path() / t->folder / "CT000001.dcm", DCM_StudyInstanceUID));
  CHECK(j["series_instance_uid"] == t->series_instance_uid);
  CHECK(j["hemorrhage"]["present"] == true);
  CHECK(j["hemorrhage"]["type"] == "subdural");
  CHECK(j["hemorrhage"]["side"] == "right");
  CHECK(j["hemorrhage"]["lobe"].is_null());
  CHECK(j["hemorrhage"]["volume_ml"].get<double>() == doctest::Approx(t->hemorrhage.volume_ml));
  CHECK(j["hemorrhage"]["bounding_box"]["slice_max"].get<uint32_t>() >= j["hemorrhage"]["bounding_box"]["slice_min"].get<uint32_t>());
  CHECK(j["hemorrhage"]["slices"].size() == t->hemorrhage.slices.size());
  CHECK(j["files"].size() == 16);
  CHECK(j["department"] == "EMERGENCY");
}

TEST_CASE("a slice passes dciodvfy without errors") {
  TempDir dir("phantom-dciodvfy");
  const auto t = WriteHeadCt(Small(4, HemorrhageType::kSubarachnoid), dir.path());
  REQUIRE(t.ok());
  const std::string cmd = "dciodvfy '" + (dir.path() / t->folder / "CT000008.dcm").string() + "' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  const int rc = ::pclose(pipe);
  INFO(output);
  CHECK(rc == 0);
  CHECK(output.find("CTImage") != std::string::npos);  // it ran and recognised the IOD
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) CHECK(line.rfind("Error", 0) != 0);
}

TEST_CASE("invalid options are refused") {
  HeadCtOptions o = Small(1);
  o.slices = 0;
  CHECK(GenerateHeadCt(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o = Small(1);
  o.calling_ae = "A_CALLING_AE_TITLE_TOO_LONG";
  CHECK(GenerateHeadCt(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o = Small(1);
  o.size = 32;
  CHECK(GenerateHeadCt(o).status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(aihub::phantom::ParseHemorrhageType("epidural").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(*aihub::phantom::ParseHemorrhageType("subdural") == HemorrhageType::kSubdural);
  CHECK(*aihub::phantom::ParseSide("right") == Side::kRight);
}
