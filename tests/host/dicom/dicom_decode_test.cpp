#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include <doctest/doctest.h>

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>

#include "dicom/study.h"
#include "dicom_test_util.h"

namespace aihub::dicom {
namespace {

namespace fs = std::filesystem;
using testing::SliceSpec;
using testing::TempDir;
using testing::WriteSlice;

// Scans a folder holding one series and returns it.
Series ScanOne(const fs::path& dir) {
  auto result = ScanDirectory(dir);
  REQUIRE(result.ok());
  for (const RejectedFile& r : result->rejected) FAIL_CHECK(r.path.string() << ": " << r.reason);
  REQUIRE(result->studies.size() == 1);
  REQUIRE(result->studies[0].series.size() == 1);
  return result->studies[0].series[0];
}

std::vector<float> ReadFloat(const Series& s, uint32_t index) {
  const FrameGeometry& g = s.frames.at(index).geometry;
  std::vector<float> out(size_t{g.rows} * g.columns, -12345.f);
  Status st = ReadFrame(s, index, AIHUB_PIXEL_FLOAT32_MODALITY, out.data(), out.size() * sizeof(float));
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  return out;
}

std::vector<uint8_t> ReadRgb(const Series& s, uint32_t index) {
  const FrameGeometry& g = s.frames.at(index).geometry;
  std::vector<uint8_t> out(size_t{g.rows} * g.columns * 3, 0);
  Status st = ReadFrame(s, index, AIHUB_PIXEL_RGB8, out.data(), out.size());
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  return out;
}

TEST_CASE("rescale slope/intercept: stored 1024, slope 1, intercept -1024 gives 0 HU") {
  TempDir dir;
  SliceSpec spec;
  spec.rows = 2;
  spec.columns = 2;
  spec.bits_stored = 12;
  spec.slope = 1;
  spec.intercept = -1024;
  spec.pixel_bytes = testing::Bytes16(std::vector<uint16_t>{1024, 0, 4095, 2000});
  WriteSlice(spec, dir / "ct.dcm");
  Series s = ScanOne(dir.path());
  CHECK(s.frames[0].geometry.rescale_intercept == -1024);
  CHECK(ReadFloat(s, 0) == std::vector<float>{0, -1024, 3071, 976});
}

TEST_CASE("signed data, bits stored masking and sign extension, slope applied") {
  SUBCASE("signed 16 bit") {
    TempDir dir;
    SliceSpec spec;
    spec.rows = 1;
    spec.columns = 4;
    spec.pixel_representation = 1;
    spec.slope = 2;
    spec.intercept = 10;
    spec.pixel_bytes = testing::Bytes16(std::vector<int16_t>{-2000, -1, 0, 32767});
    WriteSlice(spec, dir / "s.dcm");
    CHECK(ReadFloat(ScanOne(dir.path()), 0) == std::vector<float>{-3990, 8, 10, 65544});
  }
  SUBCASE("signed 12 of 16 bits with junk above the high bit") {
    TempDir dir;
    SliceSpec spec;
    spec.rows = 1;
    spec.columns = 4;
    spec.bits_stored = 12;
    spec.pixel_representation = 1;
    spec.pixel_bytes = testing::Bytes16(std::vector<uint16_t>{0xF000 | 0x0FFF, 0x0800, 0xA7FF, 0x0005});
    WriteSlice(spec, dir / "s.dcm");
    CHECK(ReadFloat(ScanOne(dir.path()), 0) == std::vector<float>{-1, -2048, 2047, 5});
  }
  SUBCASE("unsigned 8 bit") {
    TempDir dir;
    SliceSpec spec;
    spec.rows = 1;
    spec.columns = 3;
    spec.bits_allocated = spec.bits_stored = 8;
    spec.pixel_bytes = {0, 128, 255};
    WriteSlice(spec, dir / "s.dcm");
    CHECK(ReadFloat(ScanOne(dir.path()), 0) == std::vector<float>{0, 128, 255});
  }
}

// Two-frame 16-bit test images; frame values differ so frame mix-ups show.
std::vector<uint8_t> TestPixels16(uint16_t rows, uint16_t cols, uint32_t frames, bool is_signed) {
  std::vector<uint16_t> v(size_t{rows} * cols * frames);
  for (size_t i = 0; i < v.size(); ++i) {
    const int value = static_cast<int>((i * 37 + (i / (size_t{rows} * cols)) * 1000) % 4096);
    // Signed values as 12-bit two's complement with clear high bits (CharLS asserts on set high bits).
    v[i] = static_cast<uint16_t>((is_signed ? value - 2048 : value) & 0x0fff);
  }
  return testing::Bytes16(v);
}

TEST_CASE("every supported transfer syntax decodes to the uncompressed values, frame by frame") {
  struct Case {
    E_TransferSyntax xfer;
    const char* name;
    double tolerance;
  };
  const Case cases[] = {
      {EXS_LittleEndianImplicit, "implicit LE", 0},
      {EXS_LittleEndianExplicit, "explicit LE", 0},
      {EXS_BigEndianExplicit, "explicit BE", 0},
      {EXS_DeflatedLittleEndianExplicit, "deflated", 0},
      {EXS_RLELossless, "RLE", 0},
      {EXS_JPEGProcess14SV1, "JPEG lossless SV1", 0},
      {EXS_JPEGLSLossless, "JPEG-LS lossless", 0},
      {EXS_JPEGLSLossy, "JPEG-LS near-lossless", 2},
  };
  for (const bool is_signed : {false, true}) {
    for (const Case& c : cases) {
      // DCMTK 3.6.7's CharLS encoder asserts on signed 12-bit input, so signed JPEG-LS cannot be made here.
      if (is_signed && (c.xfer == EXS_JPEGLSLossy || c.xfer == EXS_JPEGLSLossless)) continue;
      const std::string name = std::string(c.name) + (is_signed ? " signed" : " unsigned");
      CAPTURE(name);
      TempDir dir;
      SliceSpec spec;
      spec.rows = 16;
      spec.columns = 12;
      spec.frames = 2;
      spec.bits_stored = 12;
      spec.pixel_representation = is_signed ? 1 : 0;
      spec.intercept = -1024;
      spec.pixel_bytes = TestPixels16(spec.rows, spec.columns, spec.frames, is_signed);
      WriteSlice(spec, dir / "ref.dcm");
      WriteSlice(spec, dir / "test.dcm", c.xfer);
      auto ref_scan = ScanFiles({dir / "ref.dcm"});
      auto test_scan = ScanFiles({dir / "test.dcm"});
      REQUIRE(ref_scan.studies.size() == 1);
      REQUIRE(test_scan.studies.size() == 1);
      const Series& ref = ref_scan.studies[0].series[0];
      const Series& test = test_scan.studies[0].series[0];
      CHECK(test.error.empty());
      CHECK(test.instances[0].transfer_syntax_uid == DcmXfer(c.xfer).getXferID());
      REQUIRE(test.frames.size() == 2);
      for (uint32_t f : {1u, 0u}) {
        const std::vector<float> expected = ReadFloat(ref, f);
        const std::vector<float> actual = ReadFloat(test, f);
        REQUIRE(actual.size() == expected.size());
        double max_diff = 0;
        for (size_t i = 0; i < actual.size(); ++i) {
          max_diff = std::max(max_diff, double{std::fabs(actual[i] - expected[i])});
        }
        CHECK(max_diff <= c.tolerance);
        const int first = static_cast<int>((f * 16 * 12 * 37 + f * 1000) % 4096);
        CHECK(expected[0] == static_cast<float>((is_signed ? first - 2048 : first) - 1024));
      }
    }
  }
}

TEST_CASE("a many-frame encapsulated object (tile-like) decodes every frame through the fragment index") {
  for (const E_TransferSyntax xfer : {EXS_RLELossless, EXS_JPEGLSLossless}) {
    CAPTURE(DcmXfer(xfer).getXferName());
    TempDir dir;
    SliceSpec spec;
    spec.rows = 8;
    spec.columns = 8;
    spec.frames = 300;
    spec.bits_stored = 12;
    spec.pixel_bytes = TestPixels16(spec.rows, spec.columns, spec.frames, false);
    WriteSlice(spec, dir / "ref.dcm");
    WriteSlice(spec, dir / "tiles.dcm", xfer);
    auto ref_scan = ScanFiles({dir / "ref.dcm"});
    auto test_scan = ScanFiles({dir / "tiles.dcm"});
    const Series& ref = ref_scan.studies[0].series[0];
    const Series& test = test_scan.studies[0].series[0];
    REQUIRE(test.frames.size() == 300);
    for (uint32_t f = 0; f < 300; f += 7) CHECK(ReadFloat(test, f) == ReadFloat(ref, f));
    CHECK(ReadFloat(test, 299) == ReadFloat(ref, 299));
    // The index follows the file: rewritten with the frames in reverse order, the next read sees them.
    const size_t frame_size = spec.pixel_bytes.size() / spec.frames;
    std::vector<uint8_t> reversed;
    for (uint32_t f = spec.frames; f-- > 0;) {
      reversed.insert(reversed.end(), spec.pixel_bytes.begin() + f * frame_size,
                      spec.pixel_bytes.begin() + (f + 1) * frame_size);
    }
    spec.pixel_bytes = reversed;
    WriteSlice(spec, dir / "ref2.dcm");
    std::filesystem::last_write_time(dir / "tiles.dcm", std::filesystem::last_write_time(dir / "tiles.dcm") -
                                                          std::chrono::seconds(5));
    const auto before = ReadFloat(test, 3);
    WriteSlice(spec, dir / "tiles.dcm", xfer);
    auto rescanned = ScanFiles({dir / "tiles.dcm"});
    auto ref2_scan = ScanFiles({dir / "ref2.dcm"});
    CHECK(ReadFloat(rescanned.studies[0].series[0], 3) == ReadFloat(ref2_scan.studies[0].series[0], 3));
    CHECK(ReadFloat(rescanned.studies[0].series[0], 3) != before);
  }
}

TEST_CASE("JPEG baseline (8-bit, lossy) decodes close to the original") {
  TempDir dir;
  SliceSpec spec;
  spec.rows = 32;
  spec.columns = 32;
  spec.frames = 2;
  spec.bits_allocated = spec.bits_stored = 8;
  spec.pixel_bytes.resize(32 * 32 * 2);
  for (size_t i = 0; i < spec.pixel_bytes.size(); ++i) {
    const size_t frame = i / 1024, x = i % 32, y = (i / 32) % 32;
    spec.pixel_bytes[i] = static_cast<uint8_t>(frame * 100 + x * 2 + y);  // smooth ramps
  }
  WriteSlice(spec, dir / "jpeg.dcm", EXS_JPEGProcess1);
  Series s = ScanOne(dir.path());
  CHECK(s.instances[0].transfer_syntax_uid == "1.2.840.10008.1.2.4.50");
  for (uint32_t f = 0; f < 2; ++f) {
    std::vector<float> actual = ReadFloat(s, f);
    double max_diff = 0;
    for (size_t i = 0; i < actual.size(); ++i) {
      max_diff = std::max<double>(max_diff, std::fabs(actual[i] - spec.pixel_bytes[f * 1024 + i]));
    }
    CHECK(max_diff <= 4);
  }
}

std::vector<uint8_t> TestRgb(uint16_t rows, uint16_t cols) {
  std::vector<uint8_t> rgb(size_t{rows} * cols * 3);
  for (size_t p = 0; p < size_t{rows} * cols; ++p) {
    const size_t x = p % cols, y = p / cols;
    rgb[3 * p] = static_cast<uint8_t>(x * 8);
    rgb[3 * p + 1] = static_cast<uint8_t>(y * 8);
    rgb[3 * p + 2] = static_cast<uint8_t>(200 - x * 4);
  }
  return rgb;
}

uint8_t C8(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

std::array<uint8_t, 3> RgbToYbr(const uint8_t* rgb) {
  const double r = rgb[0], g = rgb[1], b = rgb[2];
  return {C8(0.299 * r + 0.587 * g + 0.114 * b), C8(-0.168736 * r - 0.331264 * g + 0.5 * b + 128),
          C8(0.5 * r - 0.418688 * g - 0.081312 * b + 128)};
}

int MaxDiff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  REQUIRE(a.size() == b.size());
  int m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(int{a[i]} - int{b[i]}));
  return m;
}

SliceSpec ColourSpec(const std::string& photometric, uint16_t planar, std::vector<uint8_t> bytes) {
  SliceSpec spec;
  spec.sop_class_uid = "1.2.840.10008.5.1.4.1.1.7";  // Secondary Capture
  spec.rows = 8;
  spec.columns = 16;
  spec.samples_per_pixel = 3;
  spec.photometric = photometric;
  spec.planar_configuration = planar;
  spec.bits_allocated = spec.bits_stored = 8;
  spec.pixel_bytes = std::move(bytes);
  return spec;
}

std::vector<uint8_t> ToPlanar(const std::vector<uint8_t>& interleaved) {
  const size_t n = interleaved.size() / 3;
  std::vector<uint8_t> planar(interleaved.size());
  for (size_t i = 0; i < n; ++i)
    for (size_t c = 0; c < 3; ++c) planar[c * n + i] = interleaved[3 * i + c];
  return planar;
}

TEST_CASE("RGB frames decode: interleaved, planar, RLE, JPEG-LS, JPEG baseline") {
  const std::vector<uint8_t> rgb = TestRgb(8, 16);
  struct Case {
    const char* name;
    uint16_t planar;
    E_TransferSyntax xfer;
    int tolerance;
  };
  const Case cases[] = {{"interleaved", 0, EXS_LittleEndianExplicit, 0},
                        {"planar", 1, EXS_LittleEndianExplicit, 0},
                        {"RLE", 0, EXS_RLELossless, 0},
                        {"RLE planar", 1, EXS_RLELossless, 0},
                        {"JPEG-LS", 0, EXS_JPEGLSLossless, 0},
                        {"JPEG lossless", 0, EXS_JPEGProcess14SV1, 0},
                        {"JPEG baseline", 0, EXS_JPEGProcess1, 12}};
  for (const Case& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    TempDir dir;
    WriteSlice(ColourSpec("RGB", c.planar, c.planar ? ToPlanar(rgb) : rgb), dir / "rgb.dcm", c.xfer);
    Series s = ScanOne(dir.path());
    CHECK(s.error.empty());
    CHECK(MaxDiff(ReadRgb(s, 0), rgb) <= c.tolerance);
    std::vector<float> f(8 * 16);
    CHECK(ReadFrame(s, 0, AIHUB_PIXEL_FLOAT32_MODALITY, f.data(), f.size() * 4).code() ==
          AIHUB_FAILED_PRECONDITION);
  }
}

TEST_CASE("YBR_FULL and YBR_FULL_422 frames are converted to RGB") {
  const std::vector<uint8_t> rgb = TestRgb(8, 16);
  std::vector<uint8_t> ybr(rgb.size());
  for (size_t p = 0; p < rgb.size() / 3; ++p) {
    const auto v = RgbToYbr(&rgb[3 * p]);
    std::copy(v.begin(), v.end(), ybr.begin() + 3 * p);
  }
  SUBCASE("native YBR_FULL") {
    TempDir dir;
    WriteSlice(ColourSpec("YBR_FULL", 0, ybr), dir / "ybr.dcm");
    Series s = ScanOne(dir.path());
    CHECK(s.frames[0].geometry.photometric == AIHUB_PHOTOMETRIC_YBR);
    CHECK(MaxDiff(ReadRgb(s, 0), rgb) <= 2);
  }
  SUBCASE("native YBR_FULL planar") {
    TempDir dir;
    WriteSlice(ColourSpec("YBR_FULL", 1, ToPlanar(ybr)), dir / "ybr.dcm");
    CHECK(MaxDiff(ReadRgb(ScanOne(dir.path()), 0), rgb) <= 2);
  }
  SUBCASE("RLE YBR_FULL") {
    TempDir dir;
    WriteSlice(ColourSpec("YBR_FULL", 0, ybr), dir / "ybr.dcm", EXS_RLELossless);
    CHECK(MaxDiff(ReadRgb(ScanOne(dir.path()), 0), rgb) <= 2);
  }
  SUBCASE("native YBR_FULL_422") {
    // Pairs of pixels share chroma: use an image whose chroma is constant over each pair.
    std::vector<uint8_t> pair_rgb = rgb;
    for (size_t p = 0; p < pair_rgb.size() / 3; p += 2)
      for (int c = 0; c < 3; ++c) pair_rgb[3 * (p + 1) + c] = pair_rgb[3 * p + c];
    std::vector<uint8_t> packed;
    for (size_t p = 0; p < pair_rgb.size() / 3; p += 2) {
      const auto a = RgbToYbr(&pair_rgb[3 * p]);
      const auto b = RgbToYbr(&pair_rgb[3 * (p + 1)]);
      packed.insert(packed.end(), {a[0], b[0], a[1], a[2]});
    }
    TempDir dir;
    WriteSlice(ColourSpec("YBR_FULL_422", 0, packed), dir / "ybr.dcm");
    CHECK(MaxDiff(ReadRgb(ScanOne(dir.path()), 0), pair_rgb) <= 2);
  }
}

TEST_CASE("enhanced multi-frame applies the functional group rescale") {
  TempDir dir;
  SliceSpec spec;
  spec.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2.1";
  spec.rows = 1;
  spec.columns = 2;
  spec.frames = 2;
  spec.pixel_bytes = testing::Bytes16(std::vector<uint16_t>{10, 20, 30, 40});
  auto file = testing::MakeSlice(spec);
  DcmItem* shared = nullptr;
  DcmItem* m = nullptr;
  DcmDataset* ds = file->getDataset();
  REQUIRE(ds->findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0).good());
  REQUIRE(shared->findOrCreateSequenceItem(DCM_PixelValueTransformationSequence, m, 0).good());
  m->putAndInsertString(DCM_RescaleSlope, "2");
  m->putAndInsertString(DCM_RescaleIntercept, "-100");
  testing::WriteFile(*file, dir / "enh.dcm", EXS_LittleEndianExplicit);
  Series s = ScanOne(dir.path());
  REQUIRE(s.frames.size() == 2);
  CHECK(ReadFloat(s, 0) == std::vector<float>{-80, -60});
  CHECK(ReadFloat(s, 1) == std::vector<float>{-40, -20});
}

TEST_CASE("argument errors: buffer too small, frame out of range, wrong format") {
  TempDir dir;
  SliceSpec spec;
  WriteSlice(spec, dir / "a.dcm");
  Series s = ScanOne(dir.path());
  std::vector<float> buffer(16);
  CHECK(ReadFrame(s, 0, AIHUB_PIXEL_FLOAT32_MODALITY, buffer.data(), 16 * 4 - 1).code() == AIHUB_INVALID_ARGUMENT);
  CHECK(ReadFrame(s, 0, AIHUB_PIXEL_FLOAT32_MODALITY, nullptr, 16 * 4).code() == AIHUB_INVALID_ARGUMENT);
  CHECK(ReadFrame(s, 1, AIHUB_PIXEL_FLOAT32_MODALITY, buffer.data(), 16 * 4).code() == AIHUB_INVALID_ARGUMENT);
  CHECK(ReadFrame(s, 0, AIHUB_PIXEL_RGB8, buffer.data(), 16 * 4).code() == AIHUB_FAILED_PRECONDITION);
  CHECK(ReadFrame(s, 0, static_cast<aihub_pixel_format>(7), buffer.data(), 16 * 4).code() ==
        AIHUB_INVALID_ARGUMENT);
  CHECK(ReadFrame(s, 0, AIHUB_PIXEL_FLOAT32_MODALITY, buffer.data(), 16 * 4).ok());
}

TEST_CASE("unknown transfer syntax UID: series error and UNIMPLEMENTED") {
  TempDir dir;
  SliceSpec spec;
  WriteSlice(spec, dir / "a.dcm");
  DcmFileFormat file;
  REQUIRE(file.loadFile((dir / "a.dcm").c_str()).good());
  file.getMetaInfo()->putAndInsertString(DCM_TransferSyntaxUID, "1.2.3.4.5.6.7.8.9.1");
  REQUIRE(file.saveFile((dir / "b.dcm").c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL,
                        EPD_noChange, 0, 0, EWM_dontUpdateMeta).good());
  ScanResult result = ScanFiles({dir / "b.dcm"});
  for (const RejectedFile& r : result.rejected) MESSAGE(r.reason);
  REQUIRE(result.studies.size() == 1);
  const Series& s = result.studies[0].series[0];
  CHECK(s.error.find("1.2.3.4.5.6.7.8.9.1") != std::string::npos);
  std::vector<float> buffer(16);
  CHECK(ReadFrame(s, 0, AIHUB_PIXEL_FLOAT32_MODALITY, buffer.data(), 16 * 4).code() == AIHUB_UNIMPLEMENTED);
}

TEST_CASE("pixel data cut short after the scan gives DATA_LOSS") {
  for (const E_TransferSyntax xfer : {EXS_LittleEndianExplicit, EXS_RLELossless, EXS_JPEGLSLossless}) {
    CAPTURE(static_cast<int>(xfer));
    TempDir dir;
    SliceSpec spec;
    spec.rows = 64;
    spec.columns = 64;
    spec.frames = 2;
    WriteSlice(spec, dir / "a.dcm", xfer);
    Series s = ScanOne(dir.path());
    fs::resize_file(dir / "a.dcm", fs::file_size(dir / "a.dcm") - 100);
    std::vector<float> buffer(64 * 64);
    CHECK(ReadFrame(s, 1, AIHUB_PIXEL_FLOAT32_MODALITY, buffer.data(), buffer.size() * 4).code() ==
          AIHUB_DATA_LOSS);
  }
}

// Bytes this process has read through read()-like system calls so far (page-cache hits included), from
// /proc/self/io; -1 when the kernel does not provide it.
int64_t BytesReadByProcess() {
  std::ifstream io("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  return -1;
}

TEST_CASE("ReadFrame reads one frame of a native multi-frame file, not the whole PixelData") {
  TempDir dir;
  SliceSpec spec;
  spec.rows = 128;
  spec.columns = 128;
  spec.frames = 64;  // 32 KiB per frame, 2 MiB of PixelData
  WriteSlice(spec, dir / "mf.dcm");
  const uint64_t file_size = fs::file_size(dir / "mf.dcm");
  const uint64_t frame_bytes = 128 * 128 * 2;
  Series s = ScanOne(dir.path());
  REQUIRE(s.frames.size() == 64);
  std::vector<float> out(128 * 128);
  const int64_t before = BytesReadByProcess();
  REQUIRE_MESSAGE(before >= 0, "/proc/self/io is needed to count the bytes ReadFrame reads");
  REQUIRE(ReadFrame(s, 37, AIHUB_PIXEL_FLOAT32_MODALITY, out.data(), out.size() * sizeof(float)).ok());
  const int64_t read = BytesReadByProcess() - before;
  MESSAGE("ReadFrame read " << read << " bytes of a " << file_size << "-byte file");
  CHECK(static_cast<uint64_t>(read) >= frame_bytes);  // the frame itself came from the file
  CHECK(static_cast<uint64_t>(read) < file_size / 8);  // header + one frame, far from all 64 frames
  // And it is the right frame: frame 37's first stored value.
  std::vector<uint8_t> expected(spec.rows * spec.columns * 2 * spec.frames);
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<uint8_t>(i * 7 + spec.instance_number);
  const size_t at = 37 * frame_bytes;
  CHECK(out[0] == static_cast<float>(expected[at] | (expected[at + 1] << 8)));
}

TEST_CASE("concurrent ReadFrame calls for different frames give the same values as serial ones") {
  TempDir dir;
  SliceSpec spec;
  spec.rows = 32;
  spec.columns = 32;
  spec.frames = 12;
  spec.bits_stored = 12;
  spec.pixel_bytes = TestPixels16(32, 32, 12, false);
  WriteSlice(spec, dir / "rle.dcm", EXS_JPEGLSLossless);
  Series s = ScanOne(dir.path());
  std::vector<std::vector<float>> serial;
  for (uint32_t f = 0; f < 12; ++f) serial.push_back(ReadFloat(s, f));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> buffer(32 * 32);
      for (int round = 0; round < 10; ++round) {
        const uint32_t f = static_cast<uint32_t>((t * 5 + round) % 12);
        Status st = ReadFrame(s, f, AIHUB_PIXEL_FLOAT32_MODALITY, buffer.data(), buffer.size() * 4);
        if (!st.ok() || buffer != serial[f]) ++mismatches;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(mismatches == 0);
}

TEST_CASE("corrupted files never crash the scanner or the decoder") {
  TempDir dir;
  const E_TransferSyntax syntaxes[] = {EXS_LittleEndianExplicit, EXS_RLELossless,   EXS_JPEGLSLossless,
                                       EXS_JPEGProcess14SV1,     EXS_JPEGProcess1, EXS_DeflatedLittleEndianExplicit};
  std::mt19937 rng(7);
  int n = 0;
  int decoded = 0;
  for (const E_TransferSyntax xfer : syntaxes) {
    SliceSpec spec;
    spec.rows = 24;
    spec.columns = 20;
    spec.frames = 3;
    if (xfer == EXS_JPEGProcess1) {
      spec.bits_allocated = spec.bits_stored = 8;
    } else {
      spec.bits_stored = 12;
      spec.pixel_bytes = TestPixels16(spec.rows, spec.columns, spec.frames, false);
    }
    const fs::path original = dir / ("original" + std::to_string(n++));
    WriteSlice(spec, original, xfer);
    std::ifstream in(original, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (int variant = 0; variant < 60; ++variant) {
      std::string b = bytes;
      if (variant % 2 == 0) {
        b.resize(rng() % b.size());  // cut anywhere
      } else {
        for (int k = 1 + static_cast<int>(rng() % 8); k > 0; --k) b[rng() % b.size()] = static_cast<char>(rng());
      }
      const fs::path path = dir / ("variant" + std::to_string(n++));
      std::ofstream(path, std::ios::binary) << b;
      ScanResult result = ScanFiles({path});
      for (const Study& study : result.studies) {
        for (const Series& s : study.series) {
          for (uint32_t f = 0; f < s.frames.size(); ++f) {
            const FrameGeometry& g = s.frames[f].geometry;
            std::vector<float> buffer(size_t{g.rows} * g.columns);
            const Status status = ReadFrame(s, f, AIHUB_PIXEL_FLOAT32_MODALITY, buffer.data(), buffer.size() * 4);
            decoded += status.ok();
            CHECK((status.ok() || status.code() == AIHUB_DATA_LOSS || status.code() == AIHUB_UNIMPLEMENTED ||
                   status.code() == AIHUB_FAILED_PRECONDITION || status.code() == AIHUB_INVALID_ARGUMENT));
          }
        }
      }
    }
  }
  CHECK(decoded > 0);  // some variants stay decodable (damage in pixel values only)
}

}  // namespace
}  // namespace aihub::dicom
