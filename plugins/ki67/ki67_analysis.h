// The torch-free part of the Ki-67 reference plugin: TILED_FULL layout checks, nucleus detection on one RGB tile
// (colour deconvolution into hematoxylin and DAB, threshold, connected components), the features the classifier
// sees, the tile-seam counting rule and the hot-spot window. The plugin, its tests and the training-data tool
// (tests/reference/ki67/ki67_data.cpp, used by train.py) all compile this file, so training sees exactly the
// plugin's detections and features.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace aihub::ki67 {

// Version of the feature vector below; the model's metadata must name the same one.
inline constexpr const char* kFeatureSet = "ki67-features-1";
inline constexpr int kFeatureCount = 10;

// The side of one 40x high-power field (0.196 mm^2, field number 20): the hot-spot window's target size.
inline constexpr double kHighPowerFieldMm2 = 0.196;

struct DetectionParams {
  double stain_threshold = 0.25;  // a pixel is nuclear when hematoxylin + DAB optical density exceeds this
  uint32_t min_area_px = 100;     // smaller components are noise or debris
  uint32_t max_area_px = 4000;    // larger ones are clumps or artefacts, not one nucleus
};

// One detected nucleus, in its tile's pixel coordinates.
struct Nucleus {
  float column = 0, row = 0;  // centroid (pixel centres at +0.5)
  uint32_t area = 0;          // pixels
  bool touches_left = false, touches_top = false, touches_right = false, touches_bottom = false;
  // The classifier's input (kFeatureSet): area / 1000; mean and standard deviation of hematoxylin and of DAB
  // optical density; 90th-percentile-like DAB (mean of the pixels above the component's mean DAB); mean R, G, B
  // / 255; fraction of pixels with DAB > 0.15.
  std::array<float, kFeatureCount> features{};
};

// Stain optical densities of one pixel by the Ruifrok-Johnston H-DAB matrix (residual = their cross product).
struct Stains {
  float hematoxylin = 0, dab = 0, residual = 0;
};
Stains Deconvolve(uint8_t r, uint8_t g, uint8_t b);

// Detects nuclei on one tile. Reuses its buffers between calls, so memory stays one tile's worth.
class TileDetector {
 public:
  explicit TileDetector(const DetectionParams& params = {});
  // `rgb` holds rows x columns x 3 bytes; only the top-left valid_rows x valid_columns pixels are image (a tile at
  // the right or bottom edge of a total pixel matrix that is not a multiple of the tile size is padded).
  const std::vector<Nucleus>& Detect(const uint8_t* rgb, uint32_t rows, uint32_t columns, uint32_t valid_rows,
                                     uint32_t valid_columns);
  const DetectionParams& params() const { return params_; }

 private:
  DetectionParams params_;
  std::vector<float> hematoxylin_, dab_;
  std::vector<uint8_t> mask_;
  std::vector<int32_t> labels_;
  std::vector<uint32_t> stack_;
  std::vector<Nucleus> nuclei_;
};

// Tile-seam rule: a nucleus cut by a seam shows up in both tiles; it is counted only in the tile where it does not
// touch the right or bottom edge (the right/bottom edges of the slide's last column/row are no seams). A nucleus
// lying wholly inside a tile is always counted.
bool CountedInTile(const Nucleus& n, bool last_column, bool last_row);

// The TILED_FULL tiling of a total pixel matrix.
struct TiledLayout {
  uint32_t total_columns = 0, total_rows = 0;  // TotalPixelMatrixColumns / Rows
  uint32_t tile_columns = 0, tile_rows = 0;    // Columns / Rows of a frame
  uint32_t across = 0, down = 0;               // tiles per row / per column
  uint32_t tiles() const { return across * down; }
  // 0-based top-left pixel of tile `index` (row-major) in the total pixel matrix.
  uint32_t column_of(uint32_t index) const { return (index % across) * tile_columns; }
  uint32_t row_of(uint32_t index) const { return (index / across) * tile_rows; }
};

// The layout, or the reason why the numbers cannot describe a TILED_FULL image of `frames` frames with one focal
// plane and one optical path ("" = fine).
std::string MakeTiledLayout(uint64_t total_columns, uint64_t total_rows, uint32_t tile_columns, uint32_t tile_rows,
                            uint64_t frames, TiledLayout& out);

// The hot spot (the phantom's definition, tools/phantom/include/phantom/wsi_ki67.h): W x W tiles, W = the odd tile
// count nearest to sqrt(0.196 mm^2) / tile width, at most the tiles across and down; the window position (one-tile
// steps) with the most positive nuclei, ties to the first in row-major order of its top-left tile.
struct HotSpot {
  uint32_t window_tiles = 0;
  uint32_t tile_column = 0, tile_row = 0;  // top-left tile
  uint64_t positive = 0, negative = 0;
  double index_percent = 0;
};
uint32_t HotSpotWindowTiles(uint32_t tile_px, double spacing_mm, uint32_t across, uint32_t down);
HotSpot FindHotSpot(const std::vector<uint32_t>& positive, const std::vector<uint32_t>& negative, uint32_t across,
                    uint32_t down, uint32_t window_tiles);

}  // namespace aihub::ki67
