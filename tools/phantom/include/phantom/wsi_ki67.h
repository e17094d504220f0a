// Synthetic Ki-67 immunohistochemistry whole-slide image (DICOM VL Whole Slide Microscopy Image, TILED_FULL) with
// ground truth, for testing Ki-67 index plugins and for training nucleus classifiers.
//
// The slide: light glass with a few irregular tissue regions (pale hematoxylin counterstain); in the tissue, nuclei
// as textured ellipses of 3-5 um semi-axes (12-20 px at 0.25 um/px), either hematoxylin blue (Ki-67 negative) or
// DAB brown over a little hematoxylin (positive). Colours follow Beer-Lambert with the Ruifrok-Johnston stain
// vectors, so colour deconvolution recovers the stains. A nucleus is positive with a probability that varies
// smoothly across the slide around `index_percent`, plus 0-3 Gaussian hot spots of higher fraction (sigma 0.15 mm).
//
// Tiles are independent: each tile's nuclei come from a stream seeded by (seed, tile index), and every nucleus
// lies wholly inside its tile (its centre at least 24 px from the tile's edges) and apart from the others by at
// least 4 px. So any tile can be rendered alone, the file is written tile by tile with bounded memory whatever the
// slide size, and a nucleus is never cut by a tile seam (real slides are; see the plugin's seam rule).
//
// Ground truth counts the nuclei the generator placed (every one is drawn whole). Ki-67 index = positive /
// (positive + negative) * 100 over the whole slide. Hot spot (the definition the ki67 plugin uses too): the tile
// grid is scanned with a square window of W x W tiles, W = the odd number of tiles nearest to the side of one
// 40x high-power field of 0.196 mm^2 (sqrt = 0.443 mm; W = 7 for 256 px tiles at 0.25 um), at most the slide's
// tiles across and down; a nucleus belongs to the tile holding its centre. The hot spot is the window position
// (stepping one tile) with the most positive nuclei, ties to the first in row-major order of its top-left tile;
// its index is positive / all nuclei in that window * 100 (0 when it holds none).
//
// Deterministic by seed; nothing reads the clock. The file is one multi-frame instance, explicit VR little endian,
// uncompressed RGB 8 bit (PlanarConfiguration 0), frames = tiles in row-major order (TILED_FULL), pixel spacing
// 0.25 um. Uncompressed PixelData has a 32-bit length, so frames * tile^2 * 3 must stay below 4 GiB: the largest
// square slide is 37632 px at 256 px tiles (147 x 147 tiles, 4.25 GB) and 37376 px at 512. With `rle` the tiles are
// written RLE Lossless instead (encapsulated, one fragment per frame, empty Basic Offset Table), which has no such
// limit: a 40960 px slide (160 x 160 tiles) is about 5.1 GB (the sensor noise leaves few runs to compress). With
// `jpeg` they are JPEG Baseline fragments (YBR_FULL_422), about a tenth of that.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "phantom/study_identity.h"

namespace aihub::phantom {

inline constexpr double kWsiKi67PixelSpacingMm = 0.00025;  // 0.25 um: a 40x scan
inline constexpr double kKi67HotSpotFieldMm2 = 0.196;      // one 40x high-power field (field number 20, 0.5 mm)

struct WsiKi67Options {
  uint64_t seed = 1;
  uint32_t size = 4096;        // TotalPixelMatrixColumns = TotalPixelMatrixRows; a multiple of `tile`, >= 1024
  uint32_t tile = 256;         // Rows = Columns of a frame: 256 or 512
  double index_percent = 20;   // 1..80: mean positive fraction of the background field, before hot spots
  uint32_t hotspots = 2;       // 0..3
  std::string department = "PATHOLOGY";
  std::string calling_ae = "WSI_SCAN1";
  std::string institution = "AIHUB GENERAL HOSPITAL";
  // Bad-input variants. missing_tile: tile K (0-based, row-major) is not written, so NumberOfFrames is one less
  // than TILED_FULL needs and every later frame sits one place early. bad_tile_geometry: TotalPixelMatrixColumns
  // and Rows state size + tile / 2 (not a multiple of the tile, so TILED_FULL needs one more tile across and down)
  // while the frames still tile size x size.
  std::optional<uint32_t> missing_tile;
  bool bad_tile_geometry = false;
  bool rle = false;  // RLE Lossless transfer syntax (no 4 GiB limit) instead of uncompressed
  // JPEG Baseline (Process 1) tiles, YBR_FULL_422 (4:2:2 chroma subsampling) at `jpeg_quality`, as most slide
  // scanners write them; lossy, so the truth's counts describe the rendered tiles before compression.
  bool jpeg = false;
  int jpeg_quality = 90;  // 50..100
};

// One nucleus, in the coordinates of its tile (pixel centres at +0.5; (0, 0) is the tile's top-left corner).
struct Ki67Nucleus {
  float column = 0, row = 0;            // centre
  float semi_major = 0, semi_minor = 0;  // px
  float angle = 0;                       // radians, major axis from the +column direction toward +row
  bool positive = false;
  float hematoxylin = 0, dab = 0;        // stain optical densities (log10) at the centre
};

// The densest-positive window (see the header comment).
struct Ki67HotSpot {
  uint32_t window_tiles = 0;               // W
  uint32_t tile_column = 0, tile_row = 0;  // the window's top-left tile (0-based)
  uint64_t positive = 0, negative = 0;     // nuclei in the window
  double index_percent = 0;
};

// W for a slide of across x down tiles of tile_px pixels at spacing_mm (>= 1).
uint32_t Ki67HotSpotWindowTiles(uint32_t tile_px, double spacing_mm, uint32_t across, uint32_t down);
// The hot spot from per-tile counts (row-major, across * down each) with window side `window_tiles`.
Ki67HotSpot FindKi67HotSpot(const std::vector<uint32_t>& positive, const std::vector<uint32_t>& negative,
                            uint32_t across, uint32_t down, uint32_t window_tiles);

// The slide model: tissue, stain fields, hot spots and the per-tile nucleus lists. Cheap to copy.
class WsiKi67Slide {
 public:
  // Checks the options (InvalidArgument with the reason).
  static StatusOr<WsiKi67Slide> Create(const WsiKi67Options& options);
  WsiKi67Slide() = default;

  const WsiKi67Options& options() const { return options_; }
  uint32_t tiles_across() const { return options_.size / options_.tile; }
  uint32_t tiles_down() const { return options_.size / options_.tile; }
  uint32_t tile_count() const { return tiles_across() * tiles_down(); }

  // The nuclei of tile `index` (row-major), in generation order.
  std::vector<Ki67Nucleus> TileNuclei(uint32_t index) const;
  // Renders tile `index` with its `nuclei` (from TileNuclei) as RGB bytes, tile * tile * 3, into `rgb`.
  void RenderTile(uint32_t index, const std::vector<Ki67Nucleus>& nuclei, uint8_t* rgb) const;
  void RenderTile(uint32_t index, uint8_t* rgb) const { RenderTile(index, TileNuclei(index), rgb); }

  // Fields at a point of the total pixel matrix (column, row in pixels).
  double Tissue(double column, double row) const;            // > 0 inside tissue
  double PositiveFraction(double column, double row) const;  // probability that a nucleus there is positive
  const std::vector<std::array<double, 2>>& hotspot_centers() const { return hotspot_centers_; }

 private:
  struct Blob {
    double cx, cy, rx, ry, cos_a, sin_a;
    double wobble[3], phase[3];
    double stroma_od;
  };
  double CellsPerTile(double column, double row) const;
  double StromaOd(double column, double row) const;

  WsiKi67Options options_;
  std::vector<Blob> blobs_;
  std::vector<std::array<double, 2>> hotspot_centers_;  // total pixel matrix (column, row)
  std::vector<double> hotspot_amplitude_;
  double hotspot_sigma_px_ = 0;
  double field_k_[2] = {0, 0}, field_phase_[2] = {0, 0};        // smooth variation of the positive fraction
  double density_k_[2] = {0, 0}, density_phase_[2] = {0, 0};    // and of the cellularity
};

struct WsiKi67Defect {
  std::string kind;  // "missing_tile" or "bad_tile_geometry"
  uint32_t tile = 0;  // missing_tile: the 0-based tile not written
  std::string detail;
};

struct WsiKi67Truth {
  uint64_t seed = 0;
  std::string study_instance_uid, series_instance_uid, sop_instance_uid;
  std::string folder, file;
  uint32_t size = 0, tile = 0, tiles_across = 0, tiles_down = 0;
  uint32_t frames = 0;                  // NumberOfFrames as written
  uint32_t total_columns = 0, total_rows = 0;  // TotalPixelMatrixColumns / Rows as written
  std::string transfer_syntax_uid;
  double pixel_spacing_mm = 0;
  uint64_t file_bytes = 0;
  double requested_index_percent = 0;
  uint64_t positive_nuclei = 0, negative_nuclei = 0;
  double global_index_percent = 0;
  Ki67HotSpot hotspot;
  // The hot-spot window in the total pixel matrix: 0-based top-left pixel and size, and the frame of its centre
  // tile (0-based tile index = frame number - 1 when no tile is missing).
  uint32_t hotspot_column = 0, hotspot_row = 0, hotspot_width = 0, hotspot_height = 0;
  uint32_t hotspot_center_tile = 0;
  std::vector<std::array<double, 2>> hotspot_centers;  // the generator's hot-spot centres (column, row)
  std::vector<WsiKi67Defect> defects;
};

// Folder name, e.g. "wsi-ki67-s42-4096", "wsi-ki67-s42-4096-missing-tile-7"; only [a-z0-9-].
std::string WsiKi67FolderName(const WsiKi67Options& options);

// Counts every tile's nuclei (no rendering) and fills the truth's counts, indices and hot spot; identity fields,
// frames and file size are left for WriteWsiKi67.
WsiKi67Truth CountWsiKi67(const WsiKi67Slide& slide);

// Encodes one RGB 8-bit frame (rows x columns x 3, colour-by-pixel) as a DICOM RLE Lossless fragment: a 64-byte
// header and three PackBits segments (R, G, B planes, each row encoded on its own, each segment padded to even).
std::vector<uint8_t> EncodeRleRgbFrame(const uint8_t* rgb, uint32_t rows, uint32_t columns);

// Encodes one RGB 8-bit frame as a JPEG Baseline (ISO 10918-1 Process 1) fragment with YCbCr 4:2:2, the stream
// for PhotometricInterpretation YBR_FULL_422 (DCMTK's IJG codec).
StatusOr<std::vector<uint8_t>> EncodeJpegBaselineRgbFrame(const uint8_t* rgb, uint32_t rows, uint32_t columns,
                                                          int quality);

// Writes out_dir/<folder>/SM000001.dcm tile by tile (memory bounded by one tile) and truth.json; returns the truth.
StatusOr<WsiKi67Truth> WriteWsiKi67(const WsiKi67Options& options, const std::filesystem::path& out_dir);

nlohmann::json WsiKi67TruthToJson(const WsiKi67Truth& truth);

}  // namespace aihub::phantom
