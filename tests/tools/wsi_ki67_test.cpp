#include "phantom/wsi_ki67.h"

#include <doctest/doctest.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmjpeg/djdecode.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/ct_series_reader.h"
#include "tools/phantom_test_util.h"

namespace {

using aihub::phantom::CountWsiKi67;
using aihub::phantom::FindKi67HotSpot;
using aihub::phantom::Ki67HotSpotWindowTiles;
using aihub::phantom::Ki67Nucleus;
using aihub::phantom::WriteWsiKi67;
using aihub::phantom::WsiKi67Options;
using aihub::phantom::WsiKi67Slide;
using aihub::testing::ReadBytes;
using aihub::testing::RunCommand;
using aihub::testing::Tag;
using aihub::testing::TempDir;
namespace fs = std::filesystem;

WsiKi67Options Small(uint64_t seed) {
  WsiKi67Options o;
  o.seed = seed;
  o.size = 1024;
  return o;
}

// Frame k (0-based) of a written slide, read straight from the end of the file: PixelData is the last element.
std::vector<uint8_t> FrameBytes(const fs::path& file, uint32_t frames, uint32_t tile, uint32_t k) {
  const std::string bytes = ReadBytes(file);
  const size_t frame = size_t{tile} * tile * 3;
  const size_t start = bytes.size() - size_t{frames} * frame + size_t{k} * frame;
  return std::vector<uint8_t>(bytes.begin() + static_cast<std::ptrdiff_t>(start),
                              bytes.begin() + static_cast<std::ptrdiff_t>(start + frame));
}

}  // namespace

TEST_CASE("wsi-ki67: one seed gives the same file and truth, another seed a different slide") {
  TempDir a("ki67-a"), b("ki67-b"), c("ki67-c");
  const auto ta = WriteWsiKi67(Small(5), a.path());
  const auto tb = WriteWsiKi67(Small(5), b.path());
  const auto tc = WriteWsiKi67(Small(6), c.path());
  REQUIRE_MESSAGE(ta.ok(), ta.status().ToString());
  REQUIRE(tb.ok());
  REQUIRE(tc.ok());
  CHECK(ReadBytes(a.path() / ta->folder / ta->file) == ReadBytes(b.path() / tb->folder / tb->file));
  CHECK(ReadBytes(a.path() / ta->folder / "truth.json") == ReadBytes(b.path() / tb->folder / "truth.json"));
  CHECK(ReadBytes(a.path() / ta->folder / ta->file) != ReadBytes(c.path() / tc->folder / tc->file));
  CHECK(ta->study_instance_uid != tc->study_instance_uid);
}

TEST_CASE("wsi-ki67: a TILED_FULL VL whole slide microscopy image whose frames are the rendered tiles") {
  TempDir dir("ki67-header");
  WsiKi67Options o = Small(11);
  o.size = 2048;
  const auto t = WriteWsiKi67(o, dir.path());
  REQUIRE_MESSAGE(t.ok(), t.status().ToString());
  const fs::path file = dir.path() / t->folder / t->file;
  CHECK(t->folder == "wsi-ki67-s11-2048");
  CHECK(Tag(file, DCM_SOPClassUID) == UID_VLWholeSlideMicroscopyImageStorage);
  CHECK(Tag(file, DCM_TransferSyntaxUID, true) == UID_LittleEndianExplicitTransferSyntax);
  CHECK(Tag(file, DCM_Modality) == "SM");
  CHECK(Tag(file, DCM_ImageType) == "ORIGINAL\\PRIMARY\\VOLUME\\NONE");
  CHECK(Tag(file, DCM_DimensionOrganizationType) == "TILED_FULL");
  CHECK(Tag(file, DCM_PhotometricInterpretation) == "RGB");
  CHECK(Tag(file, DCM_PlanarConfiguration) == "0");
  CHECK(Tag(file, DCM_Rows) == "256");
  CHECK(Tag(file, DCM_Columns) == "256");
  CHECK(Tag(file, DCM_NumberOfFrames) == "64");
  CHECK(Tag(file, DCM_TotalPixelMatrixColumns) == "2048");
  CHECK(Tag(file, DCM_TotalPixelMatrixRows) == "2048");
  CHECK(std::stod(Tag(file, DCM_ImagedVolumeWidth)) == doctest::Approx(0.512));
  CHECK(t->frames == 64);
  CHECK(t->tiles_across == 8);
  aihub::testing::CheckDciodvfyClean(file, "VLWholeSlideMicroscopyImage");

  // PixelData holds exactly the frames, last in the file, and frame k is tile k as rendered.
  CHECK(t->file_bytes == fs::file_size(file));
  DcmFileFormat f;
  REQUIRE(f.loadFile(file.c_str()).good());
  DcmElement* pixel = nullptr;
  REQUIRE(f.getDataset()->findAndGetElement(DCM_PixelData, pixel).good());
  CHECK(pixel->getLength() == 64u * 256 * 256 * 3);
  auto slide = WsiKi67Slide::Create(o);
  REQUIRE(slide.ok());
  for (uint32_t k : {0u, 27u, 63u}) {
    std::vector<uint8_t> rendered(256 * 256 * 3);
    slide->RenderTile(k, rendered.data());
    CHECK(FrameBytes(file, 64, 256, k) == rendered);
  }
}

// Tiles 0, 5 and 15 of an encapsulated slide file as DCMTK decodes them (with the colour model it reports), next to
// the same tiles rendered by the generator. The codec for the file's transfer syntax must be registered.
struct DecodedTile {
  uint32_t index;
  std::vector<uint8_t> decoded, rendered;
  std::string model;
};
std::vector<DecodedTile> DecodeTiles(const fs::path& file, const WsiKi67Options& o) {
  DcmFileFormat f;
  REQUIRE(f.loadFile(file.c_str()).good());
  DcmElement* element = nullptr;
  REQUIRE(f.getDataset()->findAndGetElement(DCM_PixelData, element).good());
  auto* pixels = static_cast<DcmPixelData*>(element);
  auto slide = WsiKi67Slide::Create(o);
  REQUIRE(slide.ok());
  std::vector<DecodedTile> tiles;
  for (uint32_t k : {0u, 5u, 15u}) {
    DecodedTile t{k, std::vector<uint8_t>(256 * 256 * 3), std::vector<uint8_t>(256 * 256 * 3), ""};
    Uint32 start = 0;
    OFString model;
    REQUIRE(pixels->getUncompressedFrame(f.getDataset(), k, start, t.decoded.data(), t.decoded.size(), model).good());
    t.model = model.c_str();
    slide->RenderTile(k, t.rendered.data());
    tiles.push_back(std::move(t));
  }
  return tiles;
}

TEST_CASE("wsi-ki67: with rle the tiles are RLE Lossless fragments that DCMTK decodes to the rendered tiles") {
  TempDir dir("ki67-rle");
  WsiKi67Options o = Small(12);
  o.rle = true;
  const auto t = WriteWsiKi67(o, dir.path());
  REQUIRE_MESSAGE(t.ok(), t.status().ToString());
  const fs::path file = dir.path() / t->folder / t->file;
  CHECK(t->folder == "wsi-ki67-s12-1024-rle");
  CHECK(Tag(file, DCM_TransferSyntaxUID, true) == UID_RLELosslessTransferSyntax);
  CHECK(t->transfer_syntax_uid == UID_RLELosslessTransferSyntax);
  CHECK(Tag(file, DCM_NumberOfFrames) == "16");
  aihub::testing::CheckDciodvfyClean(file, "VLWholeSlideMicroscopyImage");
  DcmRLEDecoderRegistration::registerCodecs();
  for (const DecodedTile& tile : DecodeTiles(file, o)) {
    INFO("tile " << tile.index);
    CHECK(tile.decoded == tile.rendered);
  }
  // Runs compress: a flat row packs into two bytes per 128.
  const std::vector<uint8_t> flat(64 * 64 * 3, 200);
  const auto packed = aihub::phantom::EncodeRleRgbFrame(flat.data(), 64, 64);
  CHECK(packed.size() == 64 + 3 * 64 * 2);
}

TEST_CASE("wsi-ki67: with jpeg the tiles are JPEG Baseline YBR_FULL_422 fragments close to the rendered tiles") {
  TempDir dir("ki67-jpeg");
  WsiKi67Options o = Small(12);
  o.jpeg = true;
  const auto t = WriteWsiKi67(o, dir.path());
  REQUIRE_MESSAGE(t.ok(), t.status().ToString());
  const fs::path file = dir.path() / t->folder / t->file;
  CHECK(t->folder == "wsi-ki67-s12-1024-jpeg90");
  CHECK(Tag(file, DCM_TransferSyntaxUID, true) == UID_JPEGProcess1TransferSyntax);
  CHECK(Tag(file, DCM_PhotometricInterpretation) == "YBR_FULL_422");
  CHECK(Tag(file, DCM_LossyImageCompression) == "01");
  CHECK(Tag(file, DCM_LossyImageCompressionMethod) == "ISO_10918_1");
  // The stated ratio is the uncompressed size over the fragments' size, which the file size bounds from above.
  const double ratio = std::stod(Tag(file, DCM_LossyImageCompressionRatio));
  const double raw_bytes = 16.0 * 256 * 256 * 3;
  CHECK(ratio > 2);
  CHECK(ratio > raw_bytes / static_cast<double>(fs::file_size(file)));
  aihub::testing::CheckDciodvfyClean(file, "VLWholeSlideMicroscopyImage");
  DJDecoderRegistration::registerCodecs();
  for (const DecodedTile& tile : DecodeTiles(file, o)) {
    INFO("tile " << tile.index);
    CHECK(tile.model == "RGB");  // the IJG decoder converts YCbCr back
    double sum = 0;
    for (size_t i = 0; i < tile.decoded.size(); ++i) sum += std::abs(int{tile.decoded[i]} - int{tile.rendered[i]});
    CHECK(sum / static_cast<double>(tile.decoded.size()) < 4.0);  // lossy, but colour and shape survive at q90
    CHECK(tile.decoded != tile.rendered);
  }
  DJDecoderRegistration::cleanup();
}

TEST_CASE("wsi-ki67: the truth counts the nuclei of every tile and finds the densest-positive window") {
  WsiKi67Options o = Small(3);
  o.size = 4096;
  o.index_percent = 15;
  o.hotspots = 2;
  auto slide = WsiKi67Slide::Create(o);
  REQUIRE(slide.ok());
  const auto truth = CountWsiKi67(*slide);
  const uint32_t across = slide->tiles_across();
  std::vector<uint32_t> pos(slide->tile_count()), neg(slide->tile_count());
  uint64_t p = 0, n = 0;
  for (uint32_t k = 0; k < slide->tile_count(); ++k) {
    for (const Ki67Nucleus& nu : slide->TileNuclei(k)) {
      // Wholly inside the tile, and with the stain of its class.
      CHECK(nu.column - nu.semi_major >= 2);
      CHECK(nu.column + nu.semi_major <= 254);
      CHECK(nu.row - nu.semi_major >= 2);
      CHECK(nu.row + nu.semi_major <= 254);
      CHECK(nu.semi_major >= 12);
      CHECK(nu.semi_major <= 20);
      CHECK((nu.positive ? nu.dab >= 0.3f : nu.dab <= 0.04f));
      (nu.positive ? pos : neg)[k] += 1;
    }
    p += pos[k];
    n += neg[k];
  }
  CHECK(truth.positive_nuclei == p);
  CHECK(truth.negative_nuclei == n);
  CHECK(p + n > 1000);  // a 1 mm^2 slide with about half tissue
  CHECK(truth.global_index_percent == doctest::Approx(100.0 * p / (p + n)));
  // The requested index is the background's mean; hot spots lift the slide's.
  CHECK(truth.global_index_percent > 8);
  CHECK(truth.global_index_percent < 40);

  CHECK(truth.hotspot.window_tiles == 7);
  CHECK(truth.hotspot_width == 7 * 256);
  const auto hs = FindKi67HotSpot(pos, neg, across, slide->tiles_down(), 7);
  CHECK(hs.tile_column == truth.hotspot.tile_column);
  CHECK(hs.tile_row == truth.hotspot.tile_row);
  // No other window holds more positive nuclei.
  for (uint32_t r = 0; r + 7 <= slide->tiles_down(); ++r) {
    for (uint32_t c = 0; c + 7 <= across; ++c) {
      uint64_t wp = 0;
      for (uint32_t dr = 0; dr < 7; ++dr) {
        for (uint32_t dc = 0; dc < 7; ++dc) wp += pos[(r + dr) * across + c + dc];
      }
      CHECK(wp <= truth.hotspot.positive);
    }
  }
  CHECK(truth.hotspot.index_percent > truth.global_index_percent);
  CHECK(truth.hotspot_center_tile == (truth.hotspot.tile_row + 3) * across + truth.hotspot.tile_column + 3);
  // The window sits over one of the generated hot spots.
  bool near = false;
  for (const auto& c : truth.hotspot_centers) {
    near = near || (std::fabs(c[0] - (truth.hotspot_column + truth.hotspot_width / 2.0)) < 1000 &&
                    std::fabs(c[1] - (truth.hotspot_row + truth.hotspot_height / 2.0)) < 1000);
  }
  CHECK(near);
}

TEST_CASE("wsi-ki67: negative nuclei render blue and positive ones brown over pale tissue and glass") {
  WsiKi67Options o = Small(8);
  o.index_percent = 50;
  auto slide = WsiKi67Slide::Create(o);
  REQUIRE(slide.ok());
  int blue = 0, brown = 0;
  double blue_excess = 0, red_excess = 0;  // mean B - R of negatives, R - B of positives
  std::vector<uint8_t> rgb(256 * 256 * 3);
  for (uint32_t k = 0; k < slide->tile_count(); ++k) {
    const auto nuclei = slide->TileNuclei(k);
    slide->RenderTile(k, nuclei, rgb.data());
    for (const Ki67Nucleus& nu : nuclei) {
      const size_t at = (static_cast<size_t>(nu.row) * 256 + static_cast<size_t>(nu.column)) * 3;
      const int r = rgb[at], g = rgb[at + 1], b = rgb[at + 2];
      if (nu.positive) {
        CHECK(r > b - 10);  // weakly positive nuclei keep some hematoxylin
        red_excess += r - b;
        brown += 1;
      } else {
        CHECK(b > r + 20);
        blue_excess += b - r;
        blue += 1;
      }
      CHECK(g < 200);
    }
  }
  REQUIRE(blue > 20);
  REQUIRE(brown > 20);
  CHECK(blue_excess / blue > 40);
  CHECK(red_excess / brown > 20);
  // A corner of the slide is glass: bright and nearly grey.
  slide->RenderTile(0, {}, rgb.data());
  CHECK(rgb[0] > 220);
  CHECK(std::abs(int{rgb[0]} - int{rgb[2]}) < 10);
}

TEST_CASE("wsi-ki67: a missing tile and a bad tile geometry are written as stated and recorded") {
  TempDir dir("ki67-defects");
  WsiKi67Options o = Small(4);
  o.missing_tile = 5;
  const auto missing = WriteWsiKi67(o, dir.path());
  REQUIRE_MESSAGE(missing.ok(), missing.status().ToString());
  const fs::path file = dir.path() / missing->folder / missing->file;
  CHECK(missing->folder == "wsi-ki67-s4-1024-missing-tile-5");
  CHECK(Tag(file, DCM_NumberOfFrames) == "15");
  CHECK(Tag(file, DCM_TotalPixelMatrixColumns) == "1024");
  auto slide = WsiKi67Slide::Create(o);
  REQUIRE(slide.ok());
  std::vector<uint8_t> tile(256 * 256 * 3);
  slide->RenderTile(6, tile.data());
  CHECK(FrameBytes(file, 15, 256, 5) == tile);  // frame 6 (1-based) holds tile 6 (0-based)
  const auto j = nlohmann::json::parse(ReadBytes(dir.path() / missing->folder / "truth.json"));
  REQUIRE(j["defects"].size() == 1);
  CHECK(j["defects"][0]["kind"] == "missing_tile");
  CHECK(j["defects"][0]["tile"] == 5);
  // The truth is the slide's, whatever the file lost.
  CHECK(missing->positive_nuclei == CountWsiKi67(*slide).positive_nuclei);

  o.missing_tile.reset();
  o.bad_tile_geometry = true;
  const auto bad = WriteWsiKi67(o, dir.path());
  REQUIRE(bad.ok());
  const fs::path bad_file = dir.path() / bad->folder / bad->file;
  CHECK(Tag(bad_file, DCM_NumberOfFrames) == "16");
  CHECK(Tag(bad_file, DCM_TotalPixelMatrixColumns) == "1152");
  CHECK(Tag(bad_file, DCM_TotalPixelMatrixRows) == "1152");
  REQUIRE(bad->defects.size() == 1);
  CHECK(bad->defects[0].kind == "bad_tile_geometry");
}

TEST_CASE("wsi-ki67: options outside the generator's range are refused with the reason") {
  TempDir dir("ki67-options");
  WsiKi67Options o = Small(1);
  o.size = 1000;
  CHECK(WriteWsiKi67(o, dir.path()).status().code() == AIHUB_INVALID_ARGUMENT);
  o.size = 1024;
  o.tile = 300;
  CHECK(WriteWsiKi67(o, dir.path()).status().code() == AIHUB_INVALID_ARGUMENT);
  o.tile = 256;
  o.index_percent = 95;
  CHECK(WriteWsiKi67(o, dir.path()).status().code() == AIHUB_INVALID_ARGUMENT);
  o.index_percent = 20;
  o.missing_tile = 16;
  CHECK(WriteWsiKi67(o, dir.path()).status().code() == AIHUB_INVALID_ARGUMENT);
  o.missing_tile.reset();
  // 40960 px RGB is 5.03 GB: over uncompressed PixelData's 32-bit length. Refused before anything is written.
  o.size = 40960;
  const auto big = WriteWsiKi67(o, dir.path());
  CHECK(big.status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(big.status().message().find("37632") != std::string::npos);
  o.rle = true;  // RLE has no 4 GiB limit
  CHECK(WsiKi67Slide::Create(o).ok());
  o.jpeg = true;  // nor JPEG, but one compression at a time
  CHECK(WsiKi67Slide::Create(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o.rle = false;
  CHECK(WsiKi67Slide::Create(o).ok());
  o.jpeg_quality = 30;
  CHECK(WsiKi67Slide::Create(o).status().code() == AIHUB_INVALID_ARGUMENT);
  o.jpeg = false;
  o.jpeg_quality = 90;
  CHECK_FALSE(fs::exists(dir.path() / "wsi-ki67-s1-40960"));
  o.size = 37632;
  CHECK(WsiKi67Slide::Create(o).ok());
}

TEST_CASE("wsi-ki67: the hot-spot window is one high-power field of whole tiles") {
  CHECK(Ki67HotSpotWindowTiles(256, 0.00025, 160, 160) == 7);
  CHECK(Ki67HotSpotWindowTiles(512, 0.00025, 80, 80) == 3);
  CHECK(Ki67HotSpotWindowTiles(256, 0.00025, 4, 8) == 4);  // at most the slide
  CHECK(Ki67HotSpotWindowTiles(256, 0.0005, 100, 100) == 3);
  // 4 x 3 tiles, window 2: the most positive window wins, not the highest fraction.
  const std::vector<uint32_t> pos = {0, 1, 0, 0,  //
                                     0, 9, 5, 0,  //
                                     0, 0, 9, 1};
  const std::vector<uint32_t> neg = {5, 5, 5, 5,  //
                                     5, 50, 50, 5,  //
                                     5, 0, 0, 5};
  const auto hs = FindKi67HotSpot(pos, neg, 4, 3, 2);
  CHECK(hs.tile_column == 1);
  CHECK(hs.tile_row == 1);
  CHECK(hs.positive == 23);
  CHECK(hs.negative == 100);
  CHECK(hs.index_percent == doctest::Approx(2300.0 / 123));
  // Ties go to the first window in row-major order.
  const std::vector<uint32_t> flat(12, 1);
  const auto first = FindKi67HotSpot(flat, flat, 4, 3, 2);
  CHECK(first.tile_column == 0);
  CHECK(first.tile_row == 0);
}

TEST_CASE("wsi-ki67 CLI writes the slide and its truth, and refuses bad options") {
  TempDir dir("ki67-cli");
  const std::string cli = aihub::testing::PhantomCli();
  const auto r = RunCommand(cli + " wsi-ki67 --out '" + dir.path().string() +
                            "' --seed 9 --size 1024 --index 30 --hotspots 1 --missing-tile 2");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const fs::path folder = dir.path() / "wsi-ki67-s9-1024-missing-tile-2";
  const auto j = nlohmann::json::parse(ReadBytes(folder / "truth.json"));
  CHECK(j["geometry"]["number_of_frames"] == 15);
  CHECK(j["ki67"]["requested_index_percent"] == 30);
  CHECK(j["hotspot"]["generated_centers"].size() == 1);
  CHECK(Tag(folder / "SM000001.dcm", DCM_NumberOfFrames) == "15");
  CHECK(RunCommand(cli + " wsi-ki67 --out '" + dir.path().string() + "' --seed 9 --size 40960").exit_code == 1);
  CHECK(RunCommand(cli + " wsi-ki67 --out '" + dir.path().string() + "' --seed 9 --tile 300").exit_code == 2);
  CHECK(RunCommand(cli + " wsi-ki67 --out '" + dir.path().string() + "' --seed 9 --bad-tile-geometry --size 1024")
            .exit_code == 0);
  CHECK(fs::exists(dir.path() / "wsi-ki67-s9-1024-bad-tile-geometry" / "SM000001.dcm"));
  CHECK(RunCommand(cli + " wsi-ki67 --out '" + dir.path().string() + "' --seed 9 --rle --size 1024").exit_code == 0);
  CHECK(Tag(dir.path() / "wsi-ki67-s9-1024-rle" / "SM000001.dcm", DCM_TransferSyntaxUID, true) ==
        UID_RLELosslessTransferSyntax);
}
