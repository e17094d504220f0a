#include "dicom/study.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcsequen.h>

#include "dicom/dicom_file.h"
#include "dicom_test_util.h"

namespace aihub::dicom {
namespace {

namespace fs = std::filesystem;
using testing::SliceSpec;
using testing::TempDir;
using testing::WriteSlice;

constexpr uint32_t kTagModality = 0x00080060;
constexpr uint32_t kTagImageType = 0x00080008;
constexpr uint32_t kTagRows = 0x00280010;
constexpr uint32_t kTagPixelSpacing = 0x00280030;

const Series* FindSeries(const ScanResult& r, const std::string& uid) {
  for (const Study& st : r.studies)
    for (const Series& s : st.series)
      if (s.series_instance_uid == uid) return &s;
  return nullptr;
}

std::string ReasonFor(const ScanResult& r, const std::string& filename) {
  for (const RejectedFile& f : r.rejected)
    if (f.path.filename() == filename) return f.reason;
  return "<not rejected>";
}

TEST_CASE("two studies with several series are grouped, ordered and tagged") {
  TempDir dir;
  fs::create_directories(dir / "a/b");
  const std::string study1 = "1.2.3.100", study2 = "1.2.3.200";
  int n = 0;
  for (const auto& [study, series, count, number] :
       std::vector<std::tuple<std::string, std::string, int, int>>{{study2, "1.2.3.200.1", 2, 1},
                                                                   {study1, "1.2.3.100.2", 3, 2},
                                                                   {study1, "1.2.3.100.1", 1, 1},
                                                                   {study2, "1.2.3.200.2", 2, 7}}) {
    for (int i = 0; i < count; ++i) {
      SliceSpec spec;
      spec.study_uid = study;
      spec.series_uid = series;
      spec.series_number = number;
      spec.instance_number = i + 1;
      const fs::path sub = (n % 2) ? dir / "a" : dir / "a/b";
      WriteSlice(spec, sub / ("f" + std::to_string(n++) + ".dcm"));
    }
  }
  auto result = ScanDirectory(dir.path());
  REQUIRE(result.ok());
  CHECK(result->rejected.empty());
  REQUIRE(result->studies.size() == 2);
  CHECK(result->studies[0].study_instance_uid == study1);
  CHECK(result->studies[1].study_instance_uid == study2);
  REQUIRE(result->studies[0].series.size() == 2);
  CHECK(result->studies[0].series[0].series_instance_uid == "1.2.3.100.1");  // SeriesNumber 1 before 2
  CHECK(result->studies[0].series[1].series_instance_uid == "1.2.3.100.2");
  CHECK(result->studies[0].series[1].instances.size() == 3);
  CHECK(result->studies[0].series[1].frames.size() == 3);
  CHECK(result->studies[1].series[1].instances.size() == 2);
  for (const Study& st : result->studies)
    for (const Series& s : st.series) CHECK(s.error.empty());

  const TagMap& tags = result->studies[0].series[1].tags;
  REQUIRE(FindTag(tags, kTagModality) != nullptr);
  CHECK(*FindTag(tags, kTagModality) == "CT");
  CHECK(*FindTag(tags, kTagImageType) == "ORIGINAL\\PRIMARY\\AXIAL");
  CHECK(*FindTag(tags, kTagRows) == "4");
  CHECK(*FindTag(tags, kTagPixelSpacing) == "0.5\\0.5");
  CHECK(FindTag(tags, 0x7fe00010) == nullptr);
  CHECK(FindTag(tags, 0x12345678) == nullptr);
  CHECK(*FindTag(result->studies[0].tags, 0x0020000d) == study1);

  CHECK_FALSE(ScanDirectory(dir / "missing").ok());
}

TEST_CASE("ScanDirectory refuses a folder over max_files") {
  TempDir dir;
  for (int i = 0; i < 3; ++i) {
    SliceSpec spec;
    spec.instance_number = i + 1;
    WriteSlice(spec, dir / ("f" + std::to_string(i)));
  }
  ScanLimits limits;
  limits.max_files = 2;
  auto result = ScanDirectory(dir.path(), limits);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == AIHUB_RESOURCE_EXHAUSTED);
}

void CheckSortedVolume(const std::array<double, 6>& orientation, const std::array<double, 3>& step) {
  TempDir dir;
  const int kSlices = 7;
  std::vector<int> order(kSlices);
  for (int i = 0; i < kSlices; ++i) order[i] = i;
  std::mt19937 rng(42);
  std::shuffle(order.begin(), order.end(), rng);
  for (int k = 0; k < kSlices; ++k) {
    const int slice = order[k];
    SliceSpec spec;
    spec.instance_number = 100 - k;  // instance numbers disagree with positions on purpose
    spec.sop_uid = "1.2.3.9." + std::to_string(slice);
    spec.orientation = orientation;
    spec.position = std::array<double, 3>{10 + step[0] * slice, -20 + step[1] * slice, 5 + step[2] * slice};
    WriteSlice(spec, dir / ("slice" + std::to_string(k) + ".dcm"));
  }
  auto result = ScanDirectory(dir.path());
  REQUIRE(result.ok());
  REQUIRE(result->studies.size() == 1);
  const Series& s = result->studies[0].series[0];
  CHECK(s.error.empty());
  REQUIRE(s.frames.size() == kSlices);
  for (int i = 0; i < kSlices; ++i) {
    const Instance& inst = s.instances[s.frames[i].instance_index];
    CHECK(inst.sop_instance_uid == "1.2.3.9." + std::to_string(i));
    CHECK(s.frames[i].geometry.has_position);
  }
  const double step_len = std::sqrt(step[0] * step[0] + step[1] * step[1] + step[2] * step[2]);
  CHECK(s.spacing_between_slices == doctest::Approx(step_len).epsilon(1e-6));
}

TEST_CASE("shuffled axial slices sort along the normal") {
  CheckSortedVolume({1, 0, 0, 0, 1, 0}, {0, 0, 2.5});
}

TEST_CASE("shuffled oblique slices sort along the normal") {
  // Rows along x, columns tilted 30 degrees from y towards z; the normal is (0, -sin30, cos30).
  const double c = std::cos(M_PI / 6), s = std::sin(M_PI / 6);
  CheckSortedVolume({1, 0, 0, 0, c, s}, {0, -s * 1.25, c * 1.25});
}

// A cine series: `slices` positions x `phases` phases, one file each, written in a scrambled order. `phase_tag`
// picks how the phase is told (TemporalPositionIdentifier or TriggerTime).
void WriteCine(const fs::path& dir, int slices, int phases, const DcmTagKey& phase_tag,
               std::function<bool(int, int)> keep = nullptr, std::function<double(int, int)> z = nullptr) {
  std::vector<std::pair<int, int>> order;
  for (int slice = 0; slice < slices; ++slice) {
    for (int phase = 0; phase < phases; ++phase) order.emplace_back(slice, phase);
  }
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  for (const auto& [slice, phase] : order) {
    if (keep && !keep(slice, phase)) continue;
    SliceSpec spec;
    spec.sop_class_uid = "1.2.840.10008.5.1.4.1.1.4";   // MR
    spec.instance_number = slice * phases + phase + 1;
    spec.sop_uid = "1.2.3.8." + std::to_string(slice) + "." + std::to_string(phase);
    spec.position = std::array<double, 3>{0, 0, z ? z(slice, phase) : 8.0 * slice};
    auto file = testing::MakeSlice(spec);
    if (phase_tag == DCM_TriggerTime) {
      file->getDataset()->putAndInsertString(DCM_TriggerTime, std::to_string(40 * phase).c_str());
    } else {
      file->getDataset()->putAndInsertString(phase_tag, std::to_string(phase + 1).c_str());
    }
    testing::WriteFile(*file, dir / (std::to_string(slice) + "_" + std::to_string(phase) + ".dcm"),
                       EXS_LittleEndianExplicit);
  }
}

TEST_CASE("a cine series sorts phase by phase, each along the normal, by temporal position or trigger time") {
  for (const DcmTagKey& tag : {DCM_TemporalPositionIdentifier, DCM_TriggerTime}) {
    CAPTURE(tag.toString().c_str());
    TempDir dir;
    WriteCine(dir.path(), 4, 5, tag);
    auto result = ScanDirectory(dir.path());
    REQUIRE(result.ok());
    const Series& s = result->studies[0].series[0];
    CHECK(s.error.empty());
    CHECK(s.temporal_positions == 5);
    CHECK(s.spacing_between_slices == doctest::Approx(8.0));
    REQUIRE(s.frames.size() == 20);
    for (int i = 0; i < 20; ++i) {
      const int phase = i / 4, slice = i % 4;
      CHECK(s.instances[s.frames[i].instance_index].sop_instance_uid ==
            "1.2.3.8." + std::to_string(slice) + "." + std::to_string(phase));
      CHECK(s.frames[i].geometry.temporal_index == phase + 1);
    }
  }
}

TEST_CASE("a cine series with a missing phase frame or a shifted slice is an error naming the phase") {
  {
    TempDir dir;
    WriteCine(dir.path(), 4, 5, DCM_TemporalPositionIdentifier, [](int slice, int phase) {
      return !(slice == 2 && phase == 3);
    });
    const auto scanned = ScanDirectory(dir.path());
    REQUIRE(scanned.ok());
    const Series& s = scanned->studies[0].series[0];
    CHECK_MESSAGE(s.error.find("inconsistent cine: phase 4") != std::string::npos, s.error);
    CHECK(s.error.find("missing or extra frames") != std::string::npos);
    CHECK(s.temporal_positions == 0);
  }
  {
    TempDir dir;
    WriteCine(dir.path(), 4, 5, DCM_TemporalPositionIdentifier, nullptr,
              [](int slice, int phase) { return 8.0 * slice + (slice == 3 && phase == 2 ? 3.0 : 0.0); });
    const auto scanned = ScanDirectory(dir.path());
    REQUIRE(scanned.ok());
    const Series& s = scanned->studies[0].series[0];
    CHECK_MESSAGE(s.error.find("phase 3") != std::string::npos, s.error);
  }
  {
    // Shared positions without any phase information stay a duplicate-position error.
    TempDir dir;
    for (int i = 0; i < 3; ++i) {
      SliceSpec spec;
      spec.instance_number = i + 1;
      spec.position = std::array<double, 3>{0, 0, 0};
      WriteSlice(spec, dir / ("d" + std::to_string(i)));
    }
    const auto scanned = ScanDirectory(dir.path());
    REQUIRE(scanned.ok());
    const Series& s = scanned->studies[0].series[0];
    CHECK(s.error.find("duplicate slice position") != std::string::npos);
  }
}

TEST_CASE("a gated CT with a trigger time per slice is one volume, not phases") {
  TempDir dir;
  for (int i = 0; i < 5; ++i) {
    SliceSpec spec;
    spec.instance_number = i + 1;
    spec.position = std::array<double, 3>{0, 0, 2.0 * i};
    auto file = testing::MakeSlice(spec);
    file->getDataset()->putAndInsertString(DCM_TriggerTime, std::to_string(100 * i).c_str());
    testing::WriteFile(*file, dir / ("g" + std::to_string(i)), EXS_LittleEndianExplicit);
  }
  const auto scanned = ScanDirectory(dir.path());
  REQUIRE(scanned.ok());
  const Series& s = scanned->studies[0].series[0];
  CHECK(s.error.empty());
  CHECK(s.temporal_positions == 0);
  CHECK(s.frames.size() == 5);
  CHECK(s.frames[4].geometry.trigger_time == doctest::Approx(400));
  CHECK(s.frames[4].geometry.temporal_index == 0);
}

TEST_CASE("TILED_FULL whole-slide frames know their place in the total pixel matrix") {
  TempDir dir;
  SliceSpec spec;
  spec.sop_class_uid = "1.2.840.10008.5.1.4.1.1.77.1.6";   // VL Whole Slide Microscopy
  spec.rows = 4;
  spec.columns = 4;
  spec.frames = 6;   // a 10 x 7 matrix in 4 x 4 tiles: 3 across, 2 down
  auto file = testing::MakeSlice(spec);
  DcmDataset* ds = file->getDataset();
  ds->putAndInsertString(DCM_DimensionOrganizationType, "TILED_FULL");
  ds->putAndInsertUint32(DCM_TotalPixelMatrixColumns, 10);
  ds->putAndInsertUint32(DCM_TotalPixelMatrixRows, 7);
  testing::WriteFile(*file, dir / "slide.dcm", EXS_LittleEndianExplicit);
  const auto scanned = ScanDirectory(dir.path());
  REQUIRE(scanned.ok());
  const Series& s = scanned->studies[0].series[0];
  CHECK(s.error.empty());
  REQUIRE(s.frames.size() == 6);
  const uint32_t expected[6][2] = {{1, 1}, {5, 1}, {9, 1}, {1, 5}, {5, 5}, {9, 5}};
  for (int i = 0; i < 6; ++i) {
    CHECK(s.frames[i].geometry.total_pixel_column == expected[i][0]);
    CHECK(s.frames[i].geometry.total_pixel_row == expected[i][1]);
  }
}

TEST_CASE("slices without positions sort by InstanceNumber") {
  TempDir dir;
  for (int n : {3, 1, 2}) {
    SliceSpec spec;
    spec.instance_number = n;
    WriteSlice(spec, dir / ("i" + std::to_string(10 - n)));
  }
  auto result = ScanDirectory(dir.path());
  REQUIRE(result.ok());
  const Series& s = result->studies[0].series[0];
  CHECK(s.error.empty());
  REQUIRE(s.frames.size() == 3);
  for (int i = 0; i < 3; ++i) CHECK(s.instances[s.frames[i].instance_index].instance_number == i + 1);
  CHECK(s.spacing_between_slices == 0);
}

TEST_CASE("plain multi-frame: one Frame per frame sharing the instance geometry") {
  TempDir dir;
  SliceSpec spec;
  spec.frames = 3;
  spec.position = std::array<double, 3>{0, 0, 0};
  WriteSlice(spec, dir / "mf.dcm");
  auto result = ScanDirectory(dir.path());
  REQUIRE(result.ok());
  const Series& s = result->studies[0].series[0];
  CHECK(s.error.empty());
  REQUIRE(s.frames.size() == 3);
  CHECK(s.instances[0].number_of_frames == 3);
  for (uint32_t i = 0; i < 3; ++i) {
    CHECK(s.frames[i].frame_number == i + 1);
    CHECK(s.frames[i].geometry.has_position);
  }
}

// Enhanced CT: per-frame PlanePositionSequence (shuffled), shared orientation / measures / rescale.
void AddFunctionalGroups(DcmDataset* ds, const std::vector<double>& z, double slope, double intercept) {
  DcmItem* shared = nullptr;
  REQUIRE(ds->findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0).good());
  DcmItem* m = nullptr;
  REQUIRE(shared->findOrCreateSequenceItem(DCM_PlaneOrientationSequence, m, 0).good());
  m->putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
  REQUIRE(shared->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, m, 0).good());
  m->putAndInsertString(DCM_PixelSpacing, "0.7\\0.8");
  m->putAndInsertString(DCM_SliceThickness, "3");
  REQUIRE(shared->findOrCreateSequenceItem(DCM_PixelValueTransformationSequence, m, 0).good());
  m->putAndInsertString(DCM_RescaleSlope, std::to_string(slope).c_str());
  m->putAndInsertString(DCM_RescaleIntercept, std::to_string(intercept).c_str());
  for (size_t f = 0; f < z.size(); ++f) {
    DcmItem* per_frame = nullptr;
    REQUIRE(ds->findOrCreateSequenceItem(DCM_PerFrameFunctionalGroupsSequence, per_frame,
                                         static_cast<long>(f)).good());
    REQUIRE(per_frame->findOrCreateSequenceItem(DCM_PlanePositionSequence, m, 0).good());
    m->putAndInsertString(DCM_ImagePositionPatient, ("0\\0\\" + std::to_string(z[f])).c_str());
  }
}

TEST_CASE("enhanced multi-frame: per-frame functional groups give positions and sorting") {
  TempDir dir;
  SliceSpec spec;
  spec.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2.1";  // Enhanced CT
  spec.frames = 4;
  auto file = testing::MakeSlice(spec);
  AddFunctionalGroups(file->getDataset(), {6, 0, 9, 3}, 2, -100);
  testing::WriteFile(*file, dir / "enh.dcm", EXS_LittleEndianExplicit);
  auto result = ScanDirectory(dir.path());
  REQUIRE(result.ok());
  const Series& s = result->studies[0].series[0];
  CHECK(s.error.empty());
  REQUIRE(s.frames.size() == 4);
  const uint32_t expected_frames[] = {2, 4, 1, 3};
  for (int i = 0; i < 4; ++i) {
    CHECK(s.frames[i].frame_number == expected_frames[i]);
    CHECK(s.frames[i].geometry.position[2] == doctest::Approx(3.0 * i));
    CHECK(s.frames[i].geometry.pixel_spacing[0] == doctest::Approx(0.7));
    CHECK(s.frames[i].geometry.pixel_spacing[1] == doctest::Approx(0.8));
    CHECK(s.frames[i].geometry.slice_thickness == doctest::Approx(3));
    CHECK(s.frames[i].geometry.rescale_slope == doctest::Approx(2));
    CHECK(s.frames[i].geometry.rescale_intercept == doctest::Approx(-100));
  }
  CHECK(s.spacing_between_slices == doctest::Approx(3));
}

TEST_CASE("inconsistent geometry makes one series fail while the other series of the study is fine") {
  struct Case {
    const char* name;
    std::vector<std::array<double, 3>> positions;
    std::vector<uint16_t> rows;
    std::vector<std::array<double, 6>> orientations;
    std::vector<uint16_t> samples;
    const char* expected;
  };
  const std::array<double, 6> axial = {1, 0, 0, 0, 1, 0};
  const std::array<double, 6> coronal = {1, 0, 0, 0, 0, -1};
  const std::vector<Case> cases = {
      {"rows", {{0, 0, 0}, {0, 0, 1}, {0, 0, 2}}, {4, 4, 6}, {axial, axial, axial}, {1, 1, 1}, "Rows/Columns"},
      {"orientation", {{0, 0, 0}, {0, 0, 1}, {0, 0, 2}}, {4, 4, 4}, {axial, coronal, axial}, {1, 1, 1},
       "ImageOrientationPatient"},
      {"duplicate", {{0, 0, 0}, {0, 0, 1}, {0, 0, 1}}, {4, 4, 4}, {axial, axial, axial}, {1, 1, 1}, "duplicate"},
      {"uneven", {{0, 0, 0}, {0, 0, 1}, {0, 0, 2}, {0, 0, 3.5}}, {4, 4, 4, 4}, {axial, axial, axial, axial},
       {1, 1, 1, 1}, "uneven"},
      {"samples", {{0, 0, 0}, {0, 0, 1}}, {4, 4}, {axial, axial}, {1, 3}, "SamplesPerPixel"},
  };
  for (const Case& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    TempDir dir;
    for (size_t i = 0; i < c.positions.size(); ++i) {
      SliceSpec bad;
      bad.series_uid = "1.2.3.1.1";
      bad.instance_number = static_cast<int>(i + 1);
      bad.position = c.positions[i];
      bad.rows = c.rows[i];
      bad.orientation = c.orientations[i];
      if (c.samples[i] == 3) {
        bad.samples_per_pixel = 3;
        bad.photometric = "RGB";
        bad.bits_allocated = bad.bits_stored = 8;
      }
      WriteSlice(bad, dir / ("bad" + std::to_string(i)));
      SliceSpec good;
      good.series_uid = "1.2.3.1.2";
      good.series_number = 2;
      good.instance_number = static_cast<int>(i + 1);
      good.position = std::array<double, 3>{0, 0, 2.0 * i};
      WriteSlice(good, dir / ("good" + std::to_string(i)));
    }
    auto result = ScanDirectory(dir.path());
    REQUIRE(result.ok());
    REQUIRE(result->studies.size() == 1);
    REQUIRE(result->studies[0].series.size() == 2);
    const Series* bad = FindSeries(*result, "1.2.3.1.1");
    const Series* good = FindSeries(*result, "1.2.3.1.2");
    REQUIRE(bad != nullptr);
    REQUIRE(good != nullptr);
    CHECK(bad->error.find(c.expected) != std::string::npos);
    CHECK(bad->spacing_between_slices == 0);
    CHECK(good->error.empty());
    CHECK(good->spacing_between_slices == doctest::Approx(2));
  }
}

TEST_CASE("slice gaps within 10% of the median are accepted") {
  TempDir dir;
  const double z[] = {0, 1.0, 2.05, 3.0, 4.02};
  for (int i = 0; i < 5; ++i) {
    SliceSpec spec;
    spec.instance_number = i + 1;
    spec.position = std::array<double, 3>{0, 0, z[i]};
    WriteSlice(spec, dir / ("s" + std::to_string(i)));
  }
  auto result = ScanDirectory(dir.path());
  REQUIRE(result.ok());
  CHECK(result->studies[0].series[0].error.empty());
  CHECK(result->studies[0].series[0].spacing_between_slices == doctest::Approx(1.0).epsilon(0.05));
}

// Writes an encapsulated object that claims `xfer`, with one dummy fragment.
void WriteFakeEncapsulated(const fs::path& path, E_TransferSyntax xfer) {
  SliceSpec spec;
  spec.omit_pixel_data = true;
  auto file = testing::MakeSlice(spec);
  auto* pixel_data = new DcmPixelData(DCM_PixelData);
  auto* sequence = new DcmPixelSequence(DCM_PixelSequenceTag);
  sequence->insert(new DcmPixelItem(DCM_PixelItemTag));  // empty basic offset table
  auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
  const Uint8 junk[16] = {0xff, 0x4f, 0xff, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  fragment->putUint8Array(junk, sizeof(junk));
  sequence->insert(fragment);
  pixel_data->putOriginalRepresentation(xfer, nullptr, sequence);
  REQUIRE(file->getDataset()->insert(pixel_data).good());
  REQUIRE(file->saveFile(path.c_str(), xfer).good());
}

TEST_CASE("JPEG 2000 (no codec here) gives a series error naming the transfer syntax, before any decode") {
  TempDir dir;
  WriteFakeEncapsulated(dir / "j2k.dcm", EXS_JPEG2000LosslessOnly);
  auto result = ScanDirectory(dir.path());
  REQUIRE(result.ok());
  REQUIRE(result->studies.size() == 1);
  const Series& s = result->studies[0].series[0];
  CHECK(s.error.find("1.2.840.10008.1.2.4.90") != std::string::npos);
  CHECK(s.error.find("JPEG 2000") != std::string::npos);
  CHECK(s.instances[0].transfer_syntax_uid == "1.2.840.10008.1.2.4.90");
  std::vector<float> buffer(16);
  Status st = ReadFrame(s, 0, AIHUB_PIXEL_FLOAT32_MODALITY, buffer.data(), buffer.size() * sizeof(float));
  CHECK(st.code() == AIHUB_UNIMPLEMENTED);
}

TEST_CASE("bad files are rejected with a reason and the rest of the folder scans") {
  TempDir dir;
  SliceSpec good;
  good.rows = 16;
  good.columns = 16;
  WriteSlice(good, dir / "good.dcm");
  {
    std::ofstream(dir / "notes.txt") << "this is not a DICOM file, just some notes\n";
  }
  {
    SliceSpec spec = good;
    spec.instance_number = 2;
    WriteSlice(spec, dir / "truncated.dcm");
    fs::resize_file(dir / "truncated.dcm", fs::file_size(dir / "truncated.dcm") - 16 * 16);  // half the pixels
  }
  {
    SliceSpec spec = good;
    spec.instance_number = 3;
    spec.omit_pixel_data = true;
    WriteSlice(spec, dir / "nopixels.dcm");
  }
  {
    SliceSpec spec = good;
    spec.instance_number = 4;
    spec.rows = 0;
    spec.pixel_bytes = {0, 0};
    WriteSlice(spec, dir / "rows0.dcm");
  }
  {
    SliceSpec spec = good;
    spec.instance_number = 5;
    spec.rows = 64;
    spec.columns = 64;
    WriteSlice(spec, dir / "big.dcm");
  }
  {
    SliceSpec spec = good;
    spec.instance_number = 6;
    spec.study_uid.clear();
    WriteSlice(spec, dir / "nostudy.dcm");
  }
  {
    SliceSpec spec = good;
    spec.instance_number = 7;
    spec.series_uid.clear();
    spec.sop_uid = "1.2.3.77";
    WriteSlice(spec, dir / "noseries.dcm");
  }
  WriteSlice(good, dir / "zz-duplicate.dcm");  // same SOPInstanceUID as good.dcm
  {
    std::ofstream(dir / "empty.dcm");
  }

  ScanLimits limits;
  limits.max_frame_pixels = 1000;  // 16x16 fits, 64x64 does not
  auto result = ScanDirectory(dir.path(), limits);
  REQUIRE(result.ok());
  REQUIRE(result->studies.size() == 1);
  REQUIRE(result->studies[0].series.size() == 1);
  CHECK(result->studies[0].series[0].instances.size() == 1);
  CHECK(result->studies[0].series[0].instances[0].path.filename() == "good.dcm");
  CHECK(result->rejected.size() == 9);
  CHECK(ReasonFor(*result, "notes.txt") == "not a DICOM file");
  CHECK(ReasonFor(*result, "empty.dcm") == "not a DICOM file");
  CHECK(ReasonFor(*result, "truncated.dcm").find("truncated") == 0);
  CHECK(ReasonFor(*result, "nopixels.dcm") == "no PixelData");
  CHECK(ReasonFor(*result, "rows0.dcm") == "Rows is 0");
  CHECK(ReasonFor(*result, "big.dcm").find("Rows*Columns 4096 over the limit") == 0);
  CHECK(ReasonFor(*result, "nostudy.dcm") == "missing StudyInstanceUID");
  CHECK(ReasonFor(*result, "noseries.dcm") == "missing SeriesInstanceUID");
  CHECK(ReasonFor(*result, "zz-duplicate.dcm").find("duplicate SOPInstanceUID") == 0);

  ScanLimits row_limit;
  row_limit.max_rows = 8;
  ScanResult by_rows = ScanFiles({dir / "good.dcm"}, row_limit);
  REQUIRE(by_rows.rejected.size() == 1);
  CHECK(by_rows.rejected[0].reason.find("Rows 16 over the limit") == 0);
}

TEST_CASE("truncated encapsulated pixel data is rejected") {
  TempDir dir;
  SliceSpec spec;
  spec.rows = 32;
  spec.columns = 32;
  testing::WriteSlice(spec, dir / "rle.dcm", EXS_RLELossless);
  fs::resize_file(dir / "rle.dcm", fs::file_size(dir / "rle.dcm") - 300);
  ScanResult result = ScanFiles({dir / "rle.dcm"});
  REQUIRE(result.rejected.size() == 1);
  CHECK(result.rejected[0].reason.find("truncated") == 0);
}

TEST_CASE("encapsulated data with fewer fragments than frames is rejected") {
  TempDir dir;
  SliceSpec spec;
  spec.frames = 2;
  testing::WriteSlice(spec, dir / "rle.dcm", EXS_RLELossless);
  DcmFileFormat file;
  REQUIRE(file.loadFile((dir / "rle.dcm").c_str()).good());
  file.getDataset()->putAndInsertString(DCM_NumberOfFrames, "3");
  REQUIRE(file.saveFile((dir / "rle3.dcm").c_str(), EXS_RLELossless).good());
  ScanResult result = ScanFiles({dir / "rle.dcm", dir / "rle3.dcm"});
  REQUIRE(result.rejected.size() == 1);
  CHECK(result.rejected[0].path.filename() == "rle3.dcm");
  CHECK(result.rejected[0].reason == "truncated or corrupt: 2 fragments for 3 frames");
  CHECK(result.studies.size() == 1);
}

TEST_CASE("scanning stops before pixel data for the TagMap and keeps big values out") {
  TempDir dir;
  SliceSpec spec;
  auto file = testing::MakeSlice(spec);
  file->getDataset()->putAndInsertString(DCM_ImageComments, std::string(100000, 'x').c_str());
  testing::WriteFile(*file, dir / "long.dcm", EXS_LittleEndianExplicit);
  ScanResult result = ScanFiles({dir / "long.dcm"});
  REQUIRE(result.studies.size() == 1);
  CHECK(FindTag(result.studies[0].series[0].tags, 0x00204000) == nullptr);  // ImageComments, 100 kB
  CHECK(FindTag(result.studies[0].series[0].tags, 0x00020010) != nullptr);  // TransferSyntaxUID (meta)
}

// True when `s` is well-formed UTF-8 (what nlohmann::json::dump() insists on).
bool IsValidUtf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

constexpr uint32_t kTagStudyDescription = 0x00081030;
constexpr uint32_t kTagPatientName = 0x00100010;
constexpr uint32_t kTagInstitutionName = 0x00080080;

// Scans one slice whose SpecificCharacterSet and text values are set byte for byte.
ScanResult ScanWithCharset(const TempDir& dir, const char* charset, const std::string& description,
                           const std::string& patient_name, const std::string& name = "cs.dcm") {
  auto file = testing::MakeSlice(SliceSpec{});
  DcmDataset* ds = file->getDataset();
  if (charset != nullptr) REQUIRE(ds->putAndInsertString(DCM_SpecificCharacterSet, charset).good());
  REQUIRE(ds->putAndInsertString(DCM_StudyDescription, description.c_str()).good());
  REQUIRE(ds->putAndInsertString(DCM_PatientName, patient_name.c_str()).good());
  testing::WriteFile(*file, dir / name, EXS_LittleEndianExplicit);
  return ScanFiles({dir / name});
}

// Every value of every TagMap in the result renders as JSON.
void CheckAllTagsUtf8(const ScanResult& r) {
  for (const Study& st : r.studies) {
    CHECK_NOTHROW((void)nlohmann::json(st.tags).dump());
    for (const Series& s : st.series) CHECK_NOTHROW((void)nlohmann::json(s.tags).dump());
  }
}

TEST_CASE("ISO_IR 100 (Latin-1) text is converted to UTF-8 in the TagMap") {
  TempDir dir;
  ScanResult r = ScanWithCharset(dir, "ISO_IR 100", "CT SCH\xC4" "DEL", "M\xFCller^J\xFCrgen");
  REQUIRE(r.rejected.empty());
  REQUIRE(r.studies.size() == 1);
  const TagMap& tags = r.studies[0].series[0].tags;
  REQUIRE(FindTag(tags, kTagStudyDescription) != nullptr);
  CHECK(*FindTag(tags, kTagStudyDescription) == "CT SCH\xC3\x84" "DEL");  // "CT SCHÄDEL"
  CHECK(*FindTag(tags, kTagPatientName) == "M\xC3\xBCller^J\xC3\xBCrgen");  // "Müller^Jürgen"
  CHECK(*FindTag(r.studies[0].tags, kTagPatientName) == "M\xC3\xBCller^J\xC3\xBCrgen");
  CheckAllTagsUtf8(r);
}

TEST_CASE("invalid UTF-8 under ISO_IR 192 is replaced by U+FFFD and the file is kept") {
  TempDir dir;
  ScanResult r = ScanWithCharset(dir, "ISO_IR 192", "Bad\xFFValue \xC3\xA9t\xC3", "Caf\xC3\xA9^\xED\xA0\x80");
  REQUIRE(r.rejected.empty());
  REQUIRE(r.studies.size() == 1);
  const TagMap& tags = r.studies[0].series[0].tags;
  // Valid sequences stay, each bad byte (a lone 0xFF, a cut-off sequence, a surrogate) becomes U+FFFD.
  CHECK(*FindTag(tags, kTagStudyDescription) == "Bad\xEF\xBF\xBDValue \xC3\xA9t\xEF\xBF\xBD");
  CHECK(*FindTag(tags, kTagPatientName) == "Caf\xC3\xA9^\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CheckAllTagsUtf8(r);
}

TEST_CASE("code extensions, unknown character sets and undeclared bytes never crash or reject the file") {
  SUBCASE("ISO 2022 IR 100 with escape sequences (multi-valued SpecificCharacterSet)") {
    TempDir dir;
    // ESC 02/13 04/01 designates ISO-IR 100 into G1; then 0xC4 is "Ä". The PatientName does not designate it again
    // after the '^' delimiter (as PS3.5 6.1.2.5.3 requires), so its second part cannot be converted.
    ScanResult r = ScanWithCharset(dir, "\\ISO 2022 IR 100", "\x1b\x2d\x41" "CT SCH\xC4" "DEL",
                                   "\x1b\x2d\x41M\xFCller^J\xFCrgen");
    REQUIRE(r.rejected.empty());
    REQUIRE(r.studies.size() == 1);
    const TagMap& tags = r.studies[0].series[0].tags;
    CHECK(*FindTag(tags, kTagStudyDescription) == "CT SCH\xC3\x84" "DEL");
    const std::string name = *FindTag(tags, kTagPatientName);
    CHECK(IsValidUtf8(name));
    CHECK(name.find("ller^J") != std::string::npos);
    CheckAllTagsUtf8(r);
  }
  SUBCASE("unknown character set") {
    TempDir dir;
    ScanResult r = ScanWithCharset(dir, "ISO_IR 999", "CT SCH\xC4" "DEL", "Test");
    REQUIRE(r.rejected.empty());
    REQUIRE(r.studies.size() == 1);
    CHECK(*FindTag(r.studies[0].series[0].tags, kTagStudyDescription) == "CT SCH\xEF\xBF\xBD" "DEL");
    CheckAllTagsUtf8(r);
  }
  SUBCASE("no SpecificCharacterSet (default repertoire) but 8-bit bytes") {
    TempDir dir;
    ScanResult r = ScanWithCharset(dir, nullptr, "CT SCH\xC4" "DEL", "M\xFCller");
    REQUIRE(r.rejected.empty());
    REQUIRE(r.studies.size() == 1);
    CHECK(*FindTag(r.studies[0].series[0].tags, kTagStudyDescription) == "CT SCH\xEF\xBF\xBD" "DEL");
    CheckAllTagsUtf8(r);
  }
  SUBCASE("bytes in values not affected by the character set (CS, UI) and in UIDs") {
    TempDir dir;
    SliceSpec spec;
    spec.series_uid = "1.2.3\xFF.4";
    auto file = testing::MakeSlice(spec);
    DcmDataset* ds = file->getDataset();
    REQUIRE(ds->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100").good());
    REQUIRE(ds->putAndInsertString(DCM_BodyPartExamined, "H\xC4" "AD").good());
    REQUIRE(ds->putAndInsertString(DCM_InstitutionName, "Klinik K\xF6ln").good());
    testing::WriteFile(*file, dir / "cs.dcm", EXS_LittleEndianExplicit);
    ScanResult r = ScanFiles({dir / "cs.dcm"});
    REQUIRE(r.rejected.empty());
    REQUIRE(r.studies.size() == 1);
    const Series& s = r.studies[0].series[0];
    CHECK(s.series_instance_uid == "1.2.3\xEF\xBF\xBD.4");
    CHECK(*FindTag(s.tags, kTagInstitutionName) == "Klinik K\xC3\xB6ln");
    CHECK(*FindTag(s.tags, 0x00180015) == "H\xEF\xBF\xBD" "AD");  // CS keeps the default repertoire
    CheckAllTagsUtf8(r);
  }
}

// Writes `count` files of `frames` frames each (1x1 pixels, so huge frame counts stay small on disk).
std::vector<fs::path> WriteFrames(const TempDir& dir, const std::string& series_uid, int count, uint32_t frames,
                                  int first_instance = 1) {
  std::vector<fs::path> paths;
  for (int i = 0; i < count; ++i) {
    SliceSpec spec;
    spec.series_uid = series_uid;
    spec.instance_number = first_instance + i;
    spec.rows = 1;
    spec.columns = 1;
    spec.bits_allocated = spec.bits_stored = 8;
    spec.frames = frames;
    paths.push_back(dir / (series_uid + "-" + std::to_string(spec.instance_number) + ".dcm"));
    WriteSlice(spec, paths.back());
  }
  return paths;
}

TEST_CASE("the per-series frame limit rejects files as they pass it") {
  TempDir dir;
  std::vector<fs::path> files = WriteFrames(dir, "1.2.3.1", 4, 2);  // 8 frames in one series
  const std::vector<fs::path> other = WriteFrames(dir, "1.2.3.2", 1, 2);
  files.insert(files.begin() + 2, other.begin(), other.end());
  ScanLimits limits;
  limits.max_frames_per_series = 5;
  ScanResult r = ScanFiles(files, limits);
  // Files 1 and 2 of series 1 fit (4 frames); file 3 would make 6; file 4 too. Series 2 is not affected.
  REQUIRE(r.rejected.size() == 2);
  CHECK(r.rejected[0].path == files[3]);
  CHECK(r.rejected[0].reason == "series 1.2.3.1 would have 6 frames, over the limit of 5 frames per series");
  CHECK(r.rejected[1].path == files[4]);
  const Series* s1 = FindSeries(r, "1.2.3.1");
  const Series* s2 = FindSeries(r, "1.2.3.2");
  REQUIRE(s1 != nullptr);
  REQUIRE(s2 != nullptr);
  CHECK(s1->error.empty());
  CHECK(s1->frames.size() == 4);
  CHECK(s1->instances.size() == 2);
  CHECK(s2->frames.size() == 2);
}

TEST_CASE("the per-scan frame limit bounds all series together") {
  TempDir dir;
  ScanLimits defaults;
  CHECK(defaults.max_frames_per_scan == 4000000);
  std::vector<fs::path> files = WriteFrames(dir, "1.2.3.1", 1, 3000);
  const std::vector<fs::path> b = WriteFrames(dir, "1.2.3.2", 1, 3000);
  const std::vector<fs::path> c = WriteFrames(dir, "1.2.3.3", 1, 1000);
  files.insert(files.end(), b.begin(), b.end());
  files.insert(files.end(), c.begin(), c.end());
  ScanLimits limits;
  limits.max_frames_per_scan = 5000;
  ScanResult r = ScanFiles(files, limits);
  REQUIRE(r.rejected.size() == 1);
  CHECK(r.rejected[0].path == files[1]);
  CHECK(r.rejected[0].reason == "scan would hold 6000 frames, over the limit of 5000 frames per scan");
  REQUIRE(r.studies.size() == 1);
  REQUIRE(r.studies[0].series.size() == 2);  // the rejected file's series does not appear empty
  CHECK(FindSeries(r, "1.2.3.2") == nullptr);
  CHECK(FindSeries(r, "1.2.3.1")->frames.size() == 3000);
  CHECK(FindSeries(r, "1.2.3.3")->frames.size() == 1000);
}

TEST_CASE("series tags come from the first instance whatever the file order") {
  TempDir dir;
  std::vector<fs::path> files;
  for (int i = 0; i < 4; ++i) {
    SliceSpec spec;
    spec.instance_number = 10 + i;
    auto file = testing::MakeSlice(spec);
    file->getDataset()->putAndInsertString(DCM_StudyDescription, ("instance " + std::to_string(10 + i)).c_str());
    files.push_back(dir / ("f" + std::to_string(i) + ".dcm"));
    testing::WriteFile(*file, files.back(), EXS_LittleEndianExplicit);
  }
  // Descending, mixed and ascending orders must all give the tags of InstanceNumber 10.
  const std::vector<std::vector<int>> orders = {{3, 2, 1, 0}, {2, 0, 3, 1}, {0, 1, 2, 3}};
  for (const std::vector<int>& order : orders) {
    std::vector<fs::path> given;
    for (int i : order) given.push_back(files[i]);
    ScanResult r = ScanFiles(given);
    REQUIRE(r.studies.size() == 1);
    CHECK(*FindTag(r.studies[0].series[0].tags, kTagStudyDescription) == "instance 10");
    CHECK(*FindTag(r.studies[0].tags, 0x00200013) == "10");  // InstanceNumber
    CHECK(r.studies[0].series[0].instances.front().instance_number == 10);
  }
}

}  // namespace
}  // namespace aihub::dicom
