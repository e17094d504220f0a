#include "phantom/cardiac_cine.h"

#include <doctest/doctest.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/ct_series_reader.h"
#include "tools/phantom_test_util.h"

namespace {

using aihub::phantom::CardiacCineOptions;
using aihub::phantom::GenerateCardiacCine;
using aihub::phantom::kCineLabelLvCavity;
using aihub::phantom::kCineLabelLvMyocardium;
using aihub::phantom::WriteCardiacCine;
using aihub::testing::ReadBytes;
using aihub::testing::RunCommand;
using aihub::testing::Tag;
using aihub::testing::TempDir;
namespace fs = std::filesystem;

CardiacCineOptions Small(uint64_t seed) {
  CardiacCineOptions o;
  o.seed = seed;
  o.slices = 4;
  o.phases = 6;
  o.size = 64;
  return o;
}

// What the tests read back from one file, with DCMTK only.
struct CineHeader {
  std::string file;
  int instance = 0, temporal_position = 0, temporal_positions = 0, cardiac_images = 0, heart_rate = 0;
  double trigger_ms = 0, nominal_interval = 0, thickness = 0, spacing = 0, pixel_spacing = 0;
  std::array<double, 3> ipp{};
  std::array<double, 6> iop{};
  uint16_t rows = 0, columns = 0, bits_allocated = 0, representation = 0;
  std::vector<uint16_t> pixels;
};

CineHeader ReadCine(const fs::path& file) {
  DcmFileFormat f;
  if (f.loadFile(file.c_str()).bad()) throw std::runtime_error("cannot read " + file.string());
  DcmDataset* ds = f.getDataset();
  CineHeader h;
  h.file = file.filename().string();
  Sint32 v = 0;
  ds->findAndGetSint32(DCM_InstanceNumber, v);
  h.instance = v;
  ds->findAndGetSint32(DCM_TemporalPositionIdentifier, v);
  h.temporal_position = v;
  ds->findAndGetSint32(DCM_NumberOfTemporalPositions, v);
  h.temporal_positions = v;
  ds->findAndGetSint32(DCM_CardiacNumberOfImages, v);
  h.cardiac_images = v;
  ds->findAndGetSint32(DCM_HeartRate, v);
  h.heart_rate = v;
  ds->findAndGetFloat64(DCM_TriggerTime, h.trigger_ms);
  Sint32 nominal = 0;
  ds->findAndGetSint32(DCM_NominalInterval, nominal);
  h.nominal_interval = nominal;
  ds->findAndGetFloat64(DCM_SliceThickness, h.thickness);
  ds->findAndGetFloat64(DCM_SpacingBetweenSlices, h.spacing);
  ds->findAndGetFloat64(DCM_PixelSpacing, h.pixel_spacing);
  for (unsigned long i = 0; i < 3; ++i) ds->findAndGetFloat64(DCM_ImagePositionPatient, h.ipp[i], i);
  for (unsigned long i = 0; i < 6; ++i) ds->findAndGetFloat64(DCM_ImageOrientationPatient, h.iop[i], i);
  ds->findAndGetUint16(DCM_Rows, h.rows);
  ds->findAndGetUint16(DCM_Columns, h.columns);
  ds->findAndGetUint16(DCM_BitsAllocated, h.bits_allocated);
  ds->findAndGetUint16(DCM_PixelRepresentation, h.representation);
  const Uint16* data = nullptr;
  unsigned long count = 0;
  if (ds->findAndGetUint16Array(DCM_PixelData, data, &count).bad() || count != size_t{h.rows} * h.columns) {
    throw std::runtime_error("bad pixel data in " + file.string());
  }
  h.pixels.assign(data, data + count);
  return h;
}

std::vector<fs::path> DicomFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".dcm") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::array<double, 3> Normal(const std::array<double, 6>& o) {
  return {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
}

double Dot3(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

// Each slice's position along base -> apex (= -normal), read from the files of phase 0.
std::vector<double> SliceDepths(const fs::path& dir) {
  std::map<int, double> by_instance;
  for (const fs::path& file : DicomFiles(dir)) {
    const CineHeader h = ReadCine(file);
    if (h.temporal_position != 1) continue;
    const auto n = Normal(h.iop);
    by_instance[h.instance] = -Dot3(h.ipp, n);
  }
  std::vector<double> depths;
  for (const auto& [instance, depth] : by_instance) depths.push_back(depth);
  return depths;
}

nlohmann::json ReadTruth(const fs::path& dir) { return nlohmann::json::parse(ReadBytes(dir / "truth.json")); }

}  // namespace

TEST_CASE("cardiac cine: same seed gives byte-identical files, another seed another study") {
  TempDir a("cine-a"), b("cine-b"), c("cine-c");
  const auto ta = WriteCardiacCine(Small(7), a.path());
  const auto tb = WriteCardiacCine(Small(7), b.path());
  REQUIRE(ta.ok());
  REQUIRE(tb.ok());
  REQUIRE(ta->files.size() == 4 * 6);
  for (const std::string& name : ta->files) {
    CAPTURE(name);
    CHECK(ReadBytes(a.path() / ta->folder / name) == ReadBytes(b.path() / tb->folder / name));
  }
  CHECK(ReadBytes(a.path() / ta->folder / "truth.json") == ReadBytes(b.path() / tb->folder / "truth.json"));

  const auto tc = WriteCardiacCine(Small(8), c.path());
  REQUIRE(tc.ok());
  CHECK(tc->study_instance_uid != ta->study_instance_uid);
  CHECK(tc->series_instance_uid != ta->series_instance_uid);
  CHECK(ReadCine(c.path() / tc->folder / "MR000001.dcm").pixels !=
        ReadCine(a.path() / ta->folder / "MR000001.dcm").pixels);
  CHECK(tc->edv_ml != ta->edv_ml);
}

TEST_CASE("cardiac cine headers: one MR file per slice and phase, cine timing, oblique short-axis geometry") {
  TempDir dir("cine-headers");
  const auto t = WriteCardiacCine(Small(3), dir.path());
  REQUIRE(t.ok());
  const fs::path folder = dir.path() / t->folder;
  const std::vector<fs::path> files = DicomFiles(folder);
  REQUIRE(files.size() == 4 * 6);
  CHECK(t->files.size() == files.size());

  const fs::path first = folder / "MR000001.dcm";
  CHECK(Tag(first, DCM_TransferSyntaxUID, true) == "1.2.840.10008.1.2.1");
  CHECK(Tag(first, DCM_SourceApplicationEntityTitle, true) == "MR_CARD1");
  CHECK(Tag(first, DCM_InstitutionalDepartmentName) == "CARDIOLOGY");
  CHECK(Tag(first, DCM_PatientName).rfind("PHANTOM^HEART^", 0) == 0);

  const double rr = 60000.0 / t->heart_rate_bpm;
  CHECK(t->heart_rate_bpm >= 60);
  CHECK(t->heart_rate_bpm <= 80);
  CHECK(t->rr_ms == doctest::Approx(rr));
  std::set<std::string> sop_uids;
  std::map<int, std::array<double, 3>> slice_position;  // slice -> IPP
  std::set<int> instances;
  for (const fs::path& file : files) {
    CAPTURE(file.filename().string());
    CHECK(Tag(file, DCM_SOPClassUID) == "1.2.840.10008.5.1.4.1.1.4");
    CHECK(Tag(file, DCM_Modality) == "MR");
    CHECK(Tag(file, DCM_ImageType) == "ORIGINAL\\PRIMARY\\M");
    CHECK(Tag(file, DCM_SeriesDescription) == "CINE SAX");
    CHECK(Tag(file, DCM_BodyPartExamined) == "HEART");
    CHECK(Tag(file, DCM_ScanningSequence) == "GR");
    CHECK(Tag(file, DCM_MRAcquisitionType) == "2D");
    CHECK(Tag(file, DCM_StudyInstanceUID) == t->study_instance_uid);
    CHECK(Tag(file, DCM_SeriesInstanceUID) == t->series_instance_uid);
    sop_uids.insert(Tag(file, DCM_SOPInstanceUID));

    const CineHeader h = ReadCine(file);
    CHECK(h.rows == 64);
    CHECK(h.columns == 64);
    CHECK(h.bits_allocated == 16);
    CHECK(h.representation == 0);
    CHECK(h.pixel_spacing == doctest::Approx(360.0 / 64));
    CHECK(h.thickness == doctest::Approx(8));
    CHECK(h.spacing == doctest::Approx(h.thickness));
    CHECK(h.heart_rate == t->heart_rate_bpm);
    CHECK(h.nominal_interval == doctest::Approx(std::round(rr)));
    CHECK(h.cardiac_images == 6);
    CHECK(h.temporal_positions == 6);
    const int phase = h.temporal_position - 1;
    REQUIRE(phase >= 0);
    REQUIRE(phase < 6);
    CHECK(h.trigger_ms == doctest::Approx(phase * rr / 6).epsilon(1e-6));
    const int slice = (h.instance - 1) / 6;
    CHECK(h.instance == slice * 6 + phase + 1);
    CHECK(h.file == t->files[h.instance - 1]);
    instances.insert(h.instance);

    // An oblique plane: orthonormal direction cosines, the normal along no patient axis.
    const std::array<double, 3> row{h.iop[0], h.iop[1], h.iop[2]}, col{h.iop[3], h.iop[4], h.iop[5]};
    CHECK(Dot3(row, row) == doctest::Approx(1).epsilon(1e-6));
    CHECK(Dot3(col, col) == doctest::Approx(1).epsilon(1e-6));
    CHECK(std::fabs(Dot3(row, col)) < 1e-6);
    const auto n = Normal(h.iop);
    for (double component : n) CHECK(std::fabs(component) < 0.9);
    // Every phase of a slice shares its position.
    if (slice_position.count(slice) == 0) {
      slice_position[slice] = h.ipp;
    } else {
      for (int i = 0; i < 3; ++i) CHECK(h.ipp[i] == doctest::Approx(slice_position[slice][i]));
    }
    for (int i = 0; i < 3; ++i) CHECK(h.ipp[i] == doctest::Approx(t->image_position_mm[slice][i]));
  }
  CHECK(sop_uids.size() == files.size());
  CHECK(instances.size() == files.size());
  REQUIRE(slice_position.size() == 4);

  // Positions step 8 mm along the normal line, base to apex (against row x column), with no in-plane drift.
  const CineHeader h0 = ReadCine(first);
  const auto n = Normal(h0.iop);
  for (int k = 1; k < 4; ++k) {
    std::array<double, 3> step{};
    for (int i = 0; i < 3; ++i) step[i] = slice_position[k][i] - slice_position[k - 1][i];
    CHECK(Dot3(step, n) == doctest::Approx(-8).epsilon(1e-6));
    CHECK(std::sqrt(Dot3(step, step)) == doctest::Approx(8).epsilon(1e-6));
  }
  for (int i = 0; i < 3; ++i) CHECK(-n[i] == doctest::Approx(t->base_to_apex[i]));
}

TEST_CASE("cardiac cine passes dciodvfy without errors") {
  TempDir dir("cine-dciodvfy");
  const auto t = WriteCardiacCine(Small(4), dir.path());
  REQUIRE(t.ok());
  aihub::testing::CheckDciodvfyClean(dir.path() / t->folder / "MR000008.dcm", "MRImage");
}

TEST_CASE("cardiac cine truth is recounted from the --mask-out masks and the DICOM voxel size") {
  TempDir dir("cine-mask");
  const fs::path mask_file = dir.path() / "lv.u8";
  const auto run = RunCommand(aihub::testing::PhantomCli() + " cardiac-cine --out '" + dir.path().string() +
                              "' --seed 5 --slices 4 --phases 6 --size 64 --mask-out '" + mask_file.string() + "'");
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  const fs::path folder = dir.path() / "cardiac-cine-s5";
  const nlohmann::json truth = ReadTruth(folder);
  const std::string mask = ReadBytes(mask_file);
  const size_t frame = size_t{64} * 64;
  REQUIRE(mask.size() == 4 * 6 * frame);
  const auto sidecar = nlohmann::json::parse(ReadBytes(dir.path() / "lv.u8.json"));
  CHECK(sidecar["shape"] == nlohmann::json({24, 64, 64}));
  CHECK(sidecar["labels"]["1"] == "lv_cavity");
  CHECK(truth["label_mask"]["shape"] == sidecar["shape"]);

  // The mask is the generator's own.
  const auto study = GenerateCardiacCine(Small(5));
  REQUIRE(study.ok());
  CHECK(mask == std::string(study->label_mask.begin(), study->label_mask.end()));

  // Voxel volume from the written headers, volumes from the masks.
  const CineHeader h = ReadCine(folder / "MR000001.dcm");
  const double voxel_ml = h.pixel_spacing * h.pixel_spacing * h.thickness / 1000;
  CHECK(truth["voxel_ml"].get<double>() == doctest::Approx(voxel_ml));
  CHECK(truth["voxel_size_mm"] == nlohmann::json({h.pixel_spacing, h.pixel_spacing, h.thickness}));
  std::vector<double> volume(6, 0);
  for (int k = 0; k < 4; ++k) {
    for (int p = 0; p < 6; ++p) {
      uint64_t cavity = 0;
      const char* m = mask.data() + (k * 6 + p) * frame;
      for (size_t i = 0; i < frame; ++i) cavity += m[i] == kCineLabelLvCavity;
      CHECK(truth["cavity_voxels"][k][p].get<uint64_t>() == cavity);
      volume[p] += cavity * voxel_ml;
    }
  }
  for (int p = 0; p < 6; ++p) CHECK(truth["volume_ml"][p].get<double>() == doctest::Approx(volume[p]));
  const int ed = static_cast<int>(std::max_element(volume.begin(), volume.end()) - volume.begin());
  const int es = static_cast<int>(std::min_element(volume.begin(), volume.end()) - volume.begin());
  CHECK(truth["ed_phase"] == ed);
  CHECK(truth["es_phase"] == es);
  const double edv = truth["edv_ml"], esv = truth["esv_ml"];
  CHECK(edv == doctest::Approx(volume[ed]));
  CHECK(esv == doctest::Approx(volume[es]));
  CHECK(esv < edv);
  CHECK(truth["ef_percent"].get<double>() == doctest::Approx(100 * (edv - esv) / edv));
  CHECK(truth["slices"] == 4);
  CHECK(truth["phases"] == 6);
  CHECK(truth["heart_rate"] == h.heart_rate);
  CHECK(truth["defects"] == nlohmann::json::array());

  // The written pixels are the generator's.
  CHECK(h.pixels == std::vector<uint16_t>(study->pixels.begin(), study->pixels.begin() + frame));
}

TEST_CASE("cardiac cine images: bright blood pool, darker wall thickening in systole, apex smaller than base") {
  CardiacCineOptions o = Small(12);
  o.size = 128;
  o.slices = 8;
  o.phases = 10;
  o.ef_percent = 60;
  const auto study = GenerateCardiacCine(o);
  REQUIRE(study.ok());
  const auto& t = study->truth;
  const size_t frame = size_t{128} * 128;
  // Pixels whose 3x3 neighbourhood holds one label, so the image's finite resolution does not blur them.
  auto interior_mean = [&](uint32_t k, uint32_t p, uint8_t label, uint64_t& count) {
    const uint8_t* m = &study->label_mask[(k * o.phases + p) * frame];
    const uint16_t* px = &study->pixels[(k * o.phases + p) * frame];
    double sum = 0;
    count = 0;
    for (int r = 1; r < 127; ++r) {
      for (int c = 1; c < 127; ++c) {
        bool uniform = true;
        for (int dr = -1; dr <= 1 && uniform; ++dr)
          for (int dc = -1; dc <= 1; ++dc) uniform = uniform && m[(r + dr) * 128 + c + dc] == label;
        if (!uniform) continue;
        sum += px[r * 128 + c];
        ++count;
      }
    }
    return count ? sum / count : 0.0;
  };
  for (uint32_t p : {t.ed_phase, t.es_phase}) {
    CAPTURE(p);
    uint64_t n_blood = 0, n_wall = 0, n_rv = 0;
    const double blood = interior_mean(2, p, kCineLabelLvCavity, n_blood);
    const double wall = interior_mean(2, p, kCineLabelLvMyocardium, n_wall);
    const double rv = interior_mean(2, p, aihub::phantom::kCineLabelRvCavity, n_rv);
    REQUIRE(n_blood > 10);
    REQUIRE(n_wall > 3);
    REQUIRE(n_rv > 3);
    CHECK(blood > 650);
    CHECK(blood < 950);
    CHECK(wall > 200);
    CHECK(wall < 400);
    CHECK(rv > 600);
  }
  // Wall thickness of a mid slice from its areas: sqrt((cavity + wall) / pi) - sqrt(cavity / pi).
  auto thickness = [&](uint32_t k, uint32_t p) {
    uint64_t cavity = 0, wall = 0;
    const uint8_t* m = &study->label_mask[(k * o.phases + p) * frame];
    for (size_t i = 0; i < frame; ++i) {
      cavity += m[i] == kCineLabelLvCavity;
      wall += m[i] == kCineLabelLvMyocardium;
    }
    return std::sqrt((cavity + wall) / M_PI) - std::sqrt(cavity / M_PI);
  };
  CHECK(thickness(3, t.es_phase) > thickness(3, t.ed_phase) + 0.5);
  // Base to apex the cavity narrows; the apical slice holds the least of it.
  for (uint32_t k = 1; k < o.slices; ++k) CHECK(t.cavity_voxels[k][t.ed_phase] <= t.cavity_voxels[k - 1][t.ed_phase]);
  CHECK(t.cavity_voxels[o.slices - 1][t.ed_phase] * 4 < t.cavity_voxels[0][t.ed_phase]);
  CHECK(t.myocardium_ml_ed > 20);
  CHECK(t.lv_mass_g == doctest::Approx(t.myocardium_ml_ed * 1.05));
}

TEST_CASE("cardiac cine EF: within 1 point of the requested EF at 128 x 128, a smooth volume curve") {
  for (double wanted : {25.0, 55.0, 70.0}) {
    CAPTURE(wanted);
    CardiacCineOptions o;
    o.seed = 31;
    o.size = 128;
    o.slices = 10;
    o.phases = 20;
    o.ef_percent = wanted;
    const auto study = GenerateCardiacCine(o);
    REQUIRE(study.ok());
    const auto& t = study->truth;
    CHECK(std::fabs(t.ef_percent - wanted) < 1);
    CHECK(t.requested_ef_percent == doctest::Approx(wanted));
    CHECK(t.esv_ml < t.edv_ml);
    CHECK(t.edv_ml == doctest::Approx(t.target_edv_ml).epsilon(0.02));
    CHECK(t.ed_phase == 0);
    CHECK(t.es_phase >= 7);  // 35-40 % of 20 phases
    CHECK(t.es_phase <= 8);
    for (uint32_t p = 1; p <= t.es_phase; ++p) CHECK(t.volume_ml[p] <= t.volume_ml[p - 1]);
    for (uint32_t p = t.es_phase + 1; p < o.phases; ++p) CHECK(t.volume_ml[p] >= t.volume_ml[p - 1]);
    CHECK(t.sv_ml == doctest::Approx(t.edv_ml - t.esv_ml));
  }
  // Without --ef the EF is drawn from 20..70 % and still met; EDV stays in a plausible range.
  for (uint64_t seed : {1, 2, 3, 4}) {
    CAPTURE(seed);
    CardiacCineOptions o;
    o.seed = seed;
    o.size = 128;
    o.phases = 12;
    const auto study = GenerateCardiacCine(o);
    REQUIRE(study.ok());
    const auto& t = study->truth;
    CHECK(t.requested_ef_percent >= 20);
    CHECK(t.requested_ef_percent <= 70);
    CHECK(std::fabs(t.ef_percent - t.requested_ef_percent) < 1);
    CHECK(t.edv_ml > 80);
    CHECK(t.edv_ml < 220);
  }
}

TEST_CASE("cardiac cine defects: a missing phase on a mid slice, a mid slice moved by half the spacing") {
  const auto clean = GenerateCardiacCine(Small(9));
  REQUIRE(clean.ok());
  {
    TempDir dir("cine-missing");
    CardiacCineOptions o = Small(9);
    o.missing_phase = 2;
    const auto t = WriteCardiacCine(o, dir.path());
    REQUIRE(t.ok());
    const fs::path folder = dir.path() / t->folder;
    CHECK(t->folder == "cardiac-cine-s9-missing-phase-2");
    const auto files = DicomFiles(folder);
    CHECK(files.size() == 4 * 6 - 1);
    CHECK_FALSE(fs::exists(folder / "MR000015.dcm"));  // slice 2 (4 / 2), phase 2: 2 * 6 + 2 + 1
    CHECK(fs::exists(folder / "MR000014.dcm"));
    CHECK(fs::exists(folder / "MR000016.dcm"));
    const auto truth = ReadTruth(folder);
    REQUIRE(truth["defects"].size() == 1);
    CHECK(truth["defects"][0]["kind"] == "missing_phase");
    CHECK(truth["defects"][0]["slice"] == 2);
    CHECK(truth["defects"][0]["phase"] == 2);
    CHECK(truth["defects"][0]["instance_number"] == 15);
    CHECK(truth["files"].size() == files.size());
    // The same heart and noise as without the defect.
    const auto study = GenerateCardiacCine(o);
    REQUIRE(study.ok());
    CHECK(study->pixels == clean->pixels);
    CHECK(study->truth.volume_ml == clean->truth.volume_ml);
    CHECK(study->truth.study_instance_uid != clean->truth.study_instance_uid);
  }
  {
    TempDir dir("cine-uneven");
    CardiacCineOptions o = Small(9);
    o.uneven_spacing = true;
    const auto t = WriteCardiacCine(o, dir.path());
    REQUIRE(t.ok());
    const fs::path folder = dir.path() / t->folder;
    CHECK(DicomFiles(folder).size() == 4 * 6);
    const std::vector<double> depth = SliceDepths(folder);
    REQUIRE(depth.size() == 4);
    CHECK(depth[1] - depth[0] == doctest::Approx(8));
    CHECK(depth[2] - depth[1] == doctest::Approx(12));
    CHECK(depth[3] - depth[2] == doctest::Approx(4));
    CHECK(Tag(folder / "MR000013.dcm", DCM_SpacingBetweenSlices) == "8");  // the header keeps the nominal value
    const auto truth = ReadTruth(folder);
    REQUIRE(truth["defects"].size() == 1);
    CHECK(truth["defects"][0]["kind"] == "uneven_spacing");
    CHECK(truth["defects"][0]["slice"] == 2);
    CHECK(truth["defects"][0]["shift_mm"].get<double>() == doctest::Approx(4));
    // Only the moved slice images another part of the heart.
    const auto study = GenerateCardiacCine(o);
    REQUIRE(study.ok());
    const size_t slice_voxels = size_t{6} * 64 * 64;
    for (size_t k = 0; k < 4; ++k) {
      CAPTURE(k);
      const bool same = std::equal(study->pixels.begin() + k * slice_voxels,
                                   study->pixels.begin() + (k + 1) * slice_voxels,
                                   clean->pixels.begin() + k * slice_voxels);
      CHECK(same == (k != 2));
    }
  }
}

TEST_CASE("cardiac cine invalid options are refused") {
  auto refused = [](CardiacCineOptions o) {
    return GenerateCardiacCine(o).status().code() == AIHUB_INVALID_ARGUMENT;
  };
  CardiacCineOptions o = Small(1);
  o.slices = 1;
  CHECK(refused(o));
  o = Small(1);
  o.phases = 1;
  CHECK(refused(o));
  o = Small(1);
  o.size = 32;
  CHECK(refused(o));
  o = Small(1);
  o.ef_percent = 90;
  CHECK(refused(o));
  o = Small(1);
  o.missing_phase = 6;
  CHECK(refused(o));
  o = Small(1);
  o.slices = 2;
  o.uneven_spacing = true;
  CHECK(refused(o));
  o = Small(1);
  o.department = "A\\B";
  CHECK(refused(o));
}

TEST_CASE("cardiac cine CLI: defaults, switches and values, bad options exit 2") {
  TempDir dir("cine-cli");
  const std::string cli = aihub::testing::PhantomCli() + " cardiac-cine --out '" + dir.path().string() + "'";
  const auto both = RunCommand(cli + " --seed 2 --slices 4 --phases 6 --size 64 --ef 40 --uneven-spacing" +
                               " --missing-phase 5 --department CARDIO");
  INFO(both.output);
  REQUIRE(both.exit_code == 0);
  const fs::path folder = dir.path() / "cardiac-cine-s2-ef40-missing-phase-5-uneven";
  CHECK(DicomFiles(folder).size() == 4 * 6 - 1);
  const auto truth = ReadTruth(folder);
  CHECK(truth["defects"].size() == 2);
  CHECK(truth["department"] == "CARDIO");
  CHECK(std::fabs(truth["ef_percent"].get<double>() - 40) < 3);  // 64 x 64: coarse voxels

  const auto defaults = RunCommand(cli + " --seed 3");
  INFO(defaults.output);
  REQUIRE(defaults.exit_code == 0);
  const fs::path default_folder = dir.path() / "cardiac-cine-s3";
  CHECK(DicomFiles(default_folder).size() == 10 * 20);
  CHECK(Tag(default_folder / "MR000001.dcm", DCM_Rows) == "256");
  CHECK(Tag(default_folder / "MR000001.dcm", DCM_InstitutionalDepartmentName) == "CARDIOLOGY");

  for (const std::string bad : {"--ef 95", "--ef x", "--slices 1", "--slices 25", "--phases 1", "--phases 99",
                                "--size 32", "--missing-phase 20", "--missing-phase -1", "--zoom 2"}) {
    CAPTURE(bad);
    CHECK(RunCommand(cli + " --seed 1 " + bad).exit_code == 2);
  }
}
