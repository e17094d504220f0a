#include "phantom/chest_xray.h"

#include <doctest/doctest.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <cmath>
#include <map>
#include <stdexcept>

#include "tools/ct_series_reader.h"
#include "tools/phantom_test_util.h"

namespace {

using aihub::phantom::ChestXrayOptions;
using aihub::phantom::GenerateChestXray;
using aihub::phantom::Side;
using aihub::phantom::WriteChestXray;
using aihub::testing::ReadBytes;
using aihub::testing::RunCommand;
using aihub::testing::Tag;
using aihub::testing::TempDir;

ChestXrayOptions Small(uint64_t seed, bool pneumothorax = false, Side side = Side::kRight, double size = 25) {
  ChestXrayOptions o;
  o.seed = seed;
  o.pneumothorax = pneumothorax;
  o.side = side;
  o.size_percent = size;
  o.rows = 1250;
  o.columns = 1024;
  return o;
}

struct Image {
  uint32_t rows = 0, columns = 0;
  std::vector<uint16_t> pixels;
  double At(uint32_t c, uint32_t r) const { return pixels[static_cast<size_t>(r) * columns + c]; }
};

Image ReadDx(const std::filesystem::path& file) {
  DcmFileFormat f;
  if (f.loadFile(file.c_str()).bad()) throw std::runtime_error("cannot read " + file.string());
  Image image;
  Uint16 rows = 0, cols = 0;
  f.getDataset()->findAndGetUint16(DCM_Rows, rows);
  f.getDataset()->findAndGetUint16(DCM_Columns, cols);
  const Uint16* data = nullptr;
  unsigned long count = 0;
  if (f.getDataset()->findAndGetUint16Array(DCM_PixelData, data, &count).bad() || count != size_t{rows} * cols) {
    throw std::runtime_error("bad pixel data");
  }
  image.rows = rows;
  image.columns = cols;
  image.pixels.assign(data, data + count);
  return image;
}

double Mean3x3(const Image& image, uint32_t c, uint32_t r) {
  double sum = 0;
  for (int dr = -1; dr <= 1; ++dr)
    for (int dc = -1; dc <= 1; ++dc) sum += image.At(c + dc, r + dr);
  return sum / 9;
}

}  // namespace

TEST_CASE("chest X-ray: same seed gives byte-identical files, another seed another image") {
  TempDir a("dx-a"), b("dx-b"), c("dx-c");
  const ChestXrayOptions o = Small(11, true, Side::kLeft, 20);
  const auto ta = WriteChestXray(o, a.path());
  const auto tb = WriteChestXray(o, b.path());
  REQUIRE(ta.ok());
  REQUIRE(tb.ok());
  CHECK(ReadBytes(a.path() / ta->folder / ta->file) == ReadBytes(b.path() / tb->folder / tb->file));
  CHECK(ReadBytes(a.path() / ta->folder / "truth.json") == ReadBytes(b.path() / tb->folder / "truth.json"));
  const auto tc = WriteChestXray(Small(12, true, Side::kLeft, 20), c.path());
  REQUIRE(tc.ok());
  CHECK(tc->study_instance_uid != ta->study_instance_uid);
  CHECK(tc->sop_instance_uid != ta->sop_instance_uid);
  CHECK(ReadBytes(c.path() / tc->folder / tc->file) != ReadBytes(a.path() / ta->folder / ta->file));
}

TEST_CASE("chest X-ray headers: DX for presentation, PA chest, 12 bits, detector spacing") {
  TempDir dir("dx-headers");
  ChestXrayOptions o;  // full size
  o.seed = 3;
  const auto t = WriteChestXray(o, dir.path());
  REQUIRE(t.ok());
  const auto file = dir.path() / t->folder / t->file;
  CHECK(Tag(file, DCM_SOPClassUID) == "1.2.840.10008.5.1.4.1.1.1.1");
  CHECK(Tag(file, DCM_TransferSyntaxUID, true) == "1.2.840.10008.1.2.1");
  CHECK(Tag(file, DCM_SourceApplicationEntityTitle, true) == "DX_ER1");
  CHECK(Tag(file, DCM_Modality) == "DX");
  CHECK(Tag(file, DCM_PresentationIntentType) == "FOR PRESENTATION");
  CHECK(Tag(file, DCM_ViewPosition) == "PA");
  CHECK(Tag(file, DCM_BodyPartExamined) == "CHEST");
  CHECK(Tag(file, DCM_PhotometricInterpretation) == "MONOCHROME2");
  CHECK(Tag(file, DCM_Rows) == "2500");
  CHECK(Tag(file, DCM_Columns) == "2048");
  CHECK(Tag(file, DCM_BitsStored) == "12");
  CHECK(Tag(file, DCM_PatientOrientation) == "L\\F");
  CHECK(Tag(file, DCM_StudyDescription) == "XR CHEST PA");
  CHECK(Tag(file, DCM_InstitutionalDepartmentName) == "EMERGENCY");
  CHECK_FALSE(Tag(file, DCM_WindowCenter).empty());
  DcmFileFormat f;
  REQUIRE(f.loadFile(file.c_str()).good());
  Float64 imager = 0, pixel = 0;
  f.getDataset()->findAndGetFloat64(DCM_ImagerPixelSpacing, imager, 0);
  f.getDataset()->findAndGetFloat64(DCM_PixelSpacing, pixel, 1);
  CHECK(imager >= 0.15);
  CHECK(imager <= 0.17);
  CHECK(pixel == doctest::Approx(imager));
  const Image image = ReadDx(file);
  uint16_t max_value = 0;
  for (uint16_t v : image.pixels) max_value = std::max(max_value, v);
  CHECK(max_value <= 4095);
  CHECK(max_value > 3000);  // bone and mediastinum are bright
}

TEST_CASE("chest X-ray values read back: air below pneumothorax below lung below rib below mediastinum") {
  TempDir dir("dx-values");
  const auto t = WriteChestXray(Small(5, true, Side::kRight, 30), dir.path());
  REQUIRE(t.ok());
  const Image image = ReadDx(dir.path() / t->folder / t->file);
  std::map<std::string, double> measured;
  for (const auto& l : t->landmarks) {
    const double v = Mean3x3(image, l.column, l.row);
    INFO(l.name << " at " << l.column << "," << l.row << ": " << v << " expected " << l.expected_value);
    CHECK(std::fabs(v - l.expected_value) < 20);
    measured[l.name] = v;
  }
  REQUIRE(measured.size() == 7);
  // Comparisons between neighbours that share the chest wall and soft tissue in front of and behind them.
  // The pneumothorax is darker than the same pixel of the same chest without one.
  const auto without = GenerateChestXray(Small(5));
  REQUIRE(without.ok());
  for (const auto& l : t->landmarks) {
    if (l.name != "pneumothorax") continue;
    double sum = 0;
    for (int dr = -1; dr <= 1; ++dr)
      for (int dc = -1; dc <= 1; ++dc) sum += without->pixels[(l.row + dr) * image.columns + l.column + dc];
    CHECK(measured["pneumothorax"] + 150 < sum / 9);
  }
  CHECK(measured["intercostal_lung"] + 100 < measured["rib"]);
  CHECK(measured["background"] < 300);
  for (const char* name : {"pneumothorax", "lung", "rib", "intercostal_lung", "collapsed_lung"}) {
    CAPTURE(name);
    CHECK(measured["background"] + 300 < measured[name]);
    CHECK(measured[name] + 500 < measured["mediastinum"]);
  }
  // A right pneumothorax is on the image's left (PatientOrientation L\F).
  for (const auto& l : t->landmarks) {
    if (l.name == "pneumothorax") CHECK(l.column < image.columns / 2);
    if (l.name == "lung") CHECK(l.column > image.columns / 2);  // measured on the other side
  }
}

TEST_CASE("chest X-ray truth: size is the painted area over the hemithorax, near the requested size") {
  const auto without = GenerateChestXray(Small(21));
  REQUIRE(without.ok());
  CHECK_FALSE(without->truth.pneumothorax.present);
  for (double wanted : {3.0, 15.0, 35.0, 50.0}) {
    for (Side side : {Side::kLeft, Side::kRight}) {
      CAPTURE(wanted);
      CAPTURE(aihub::phantom::SideName(side));
      const auto with = GenerateChestXray(Small(21, true, side, wanted));
      REQUIRE(with.ok());
      const auto& p = with->truth.pneumothorax;
      const uint32_t cols = with->truth.columns, rows = with->truth.rows;
      REQUIRE(p.present);
      CHECK(p.side == side);
      uint64_t painted = 0, line = 0, outside_box = 0, wrong_half = 0;
      for (uint32_t r = 0; r < rows; ++r) {
        for (uint32_t c = 0; c < cols; ++c) {
          const uint8_t m = with->label_mask[static_cast<size_t>(r) * cols + c];
          if (m == aihub::phantom::kXrayLabelPleuralLine) ++line;
          if (m != aihub::phantom::kXrayLabelPneumothorax) continue;
          ++painted;
          outside_box += c < p.box.column_min || c > p.box.column_max || r < p.box.row_min || r > p.box.row_max;
          wrong_half += side == Side::kRight ? c >= cols / 2 : c < cols / 2;
        }
      }
      CHECK(p.pixels == painted);
      CHECK(line > 0);
      CHECK(outside_box == 0);
      CHECK(wrong_half == 0);
      REQUIRE(p.hemithorax_pixels > painted);
      CHECK(p.size_percent == doctest::Approx(100.0 * painted / p.hemithorax_pixels));
      CHECK(std::fabs(p.size_percent - wanted) < 2);
      CHECK(p.pleural_line.size() > 10);
      for (const auto& point : p.pleural_line) {
        CHECK((side == Side::kRight ? point[0] < cols / 2 : point[0] > cols / 2));
      }

      // The pneumothorax is uniformly darker air without markings: darker than the same pixels without it, and the
      // other hemithorax is untouched.
      double sum_with = 0, sum_without = 0;
      uint64_t other_half_diff = 0;
      for (size_t i = 0; i < with->pixels.size(); ++i) {
        if (with->label_mask[i] == aihub::phantom::kXrayLabelPneumothorax) {
          sum_with += with->pixels[i];
          sum_without += without->pixels[i];
        }
        const uint32_t c = static_cast<uint32_t>(i % cols);
        const bool other = side == Side::kRight ? c > cols / 2 + 40 : c + 40 < cols / 2;
        other_half_diff += other && with->pixels[i] != without->pixels[i];
      }
      CHECK(sum_with / painted + 100 < sum_without / painted);
      CHECK(other_half_diff == 0);
    }
  }
}

TEST_CASE("chest X-ray passes dciodvfy without errors") {
  TempDir dir("dx-dciodvfy");
  const auto t = WriteChestXray(Small(4, true, Side::kLeft, 10), dir.path());
  REQUIRE(t.ok());
  aihub::testing::CheckDciodvfyClean(dir.path() / t->folder / t->file, "DXImageForPresentation");
}

TEST_CASE("chest X-ray invalid options are refused") {
  ChestXrayOptions o = Small(1, true);
  o.size_percent = 0.5;
  CHECK(GenerateChestXray(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o.size_percent = 60;
  CHECK(GenerateChestXray(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o = Small(1);
  o.rows = 100;
  CHECK(GenerateChestXray(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o = Small(1);
  o.department = "A\\B";
  CHECK(GenerateChestXray(o).status().code() == AIHUB_INVALID_ARGUMENT);
}

TEST_CASE("chest X-ray CLI writes the image, truth and mask, bad options exit 2") {
  TempDir dir("dx-cli");
  const std::string cli = aihub::testing::PhantomCli();
  const auto mask = dir.path() / "dx.u8";
  const auto ok = RunCommand(cli + " chest-xray --out '" + dir.path().string() +
                             "' --seed 8 --pneumothorax present --side left --size-percent 12.5 --rows 1000" +
                             " --columns 800 --mask-out '" + mask.string() + "'");
  INFO(ok.output);
  REQUIRE(ok.exit_code == 0);
  ChestXrayOptions o = Small(8, true, Side::kLeft, 12.5);
  o.rows = 1000;
  o.columns = 800;
  const auto study = GenerateChestXray(o);
  REQUIRE(study.ok());
  const std::string bytes = ReadBytes(mask);
  REQUIRE(bytes.size() == size_t{1000} * 800);
  CHECK(bytes == std::string(study->label_mask.begin(), study->label_mask.end()));
  const auto truth = nlohmann::json::parse(ReadBytes(dir.path() / study->truth.folder / "truth.json"));
  CHECK(truth["pneumothorax"]["side"] == "left");
  CHECK(truth["pneumothorax"]["size_percent"].get<double>() == doctest::Approx(study->truth.pneumothorax.size_percent));
  CHECK(truth["label_mask"]["shape"] == nlohmann::json({1, 1000, 800}));

  for (const std::string bad : {"--pneumothorax maybe", "--side both", "--size-percent 70", "--size-percent x",
                                "--rows 10", "--columns 99999", "--zoom 2"}) {
    CAPTURE(bad);
    CHECK(RunCommand(cli + " chest-xray --out '" + dir.path().string() + "' --seed 1 " + bad).exit_code == 2);
  }
}
