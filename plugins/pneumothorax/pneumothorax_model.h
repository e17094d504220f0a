// Pre- and post-processing of the pneumothorax reference model, without libtorch or plugin ABI types, so tests call
// it directly. The preprocessing must match plugins/pneumothorax/ptxdata.py (what the model was trained on):
//
//   resample   area-average the native image (modality values) onto the grid_rows x grid_columns model grid:
//              cell (i, j) = mean over native rows [i * rows / grid_rows, (i + 1) * rows / grid_rows) and columns
//              [j * columns / grid_columns, ...), partial pixels weighted by their overlap (separable, double sums)
//   normalise  lo, hi = grid values at ranks floor(p * (n - 1)) of the sorted grid for p = 0.005 and 0.995;
//              x = clamp((v - lo) / (hi - lo), 0, 1); MONOCHROME1 inverted (1 - x) so that air is dark
//
// The model returns two probability maps on the grid: channel 0 pneumothorax, channel 1 lung field (hemithorax).
// Post-processing: see Analyze.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace aihub::pneumothorax {

struct ModelSpec {
  uint32_t grid_rows = 256;
  uint32_t grid_columns = 208;
  double low_percentile = 0.005;
  double high_percentile = 0.995;
  uint32_t top_k = 32;
  double cell_threshold = 0.5;
  double threshold = 0.5;  // operating point on the presence score
};

// Parses the model file's "aihub_model.json" (flat JSON written by train.py) into `spec`, keeping defaults for
// absent keys; returns the model_version string ("" when absent). Throws std::invalid_argument on bad values
// and then leaves `spec` unchanged.
std::string ParseModelMetadata(const std::string& json, ModelSpec& spec);

// Area-averages `image` (rows x columns, row-major) onto grid_rows x grid_columns; needs rows >= grid_rows and
// columns >= grid_columns (throws std::invalid_argument otherwise).
std::vector<float> ResampleToGrid(const float* image, uint32_t rows, uint32_t columns, uint32_t grid_rows,
                                  uint32_t grid_columns);

// Percentile scaling of the resampled grid, in place (see the file comment).
void Normalise(std::vector<float>& grid, const ModelSpec& spec, bool monochrome1);

enum class ImageSide { kNone, kLeft, kRight, kBoth };  // side of the image (not of the patient)

struct Analysis {
  double score = 0;  // mean of the top_k pneumothorax probabilities
  bool present = false;
  uint64_t pneumothorax_cells = 0;  // on the reported side (both sides when kBoth)
  uint64_t hemithorax_cells = 0;    // lung field or pneumothorax on that side
  double size_percent = 0;          // pneumothorax_cells / hemithorax_cells * 100
  ImageSide side = ImageSide::kNone;
  double midline_column = 0;  // grid column of the midline between the lung fields
  // Outline of the largest 4-connected pneumothorax component on that side: a closed polygon through grid-cell
  // corners (x = column, y = row; (0, 0) is the top-left corner of the top-left cell), simplified to within
  // 0.75 cell (one-cell stair steps go, real corners stay); empty when there is no pneumothorax cell.
  std::vector<float> contour;
};

// `prob` is [2, grid_rows, grid_columns]. Cells with p >= cell_threshold are pneumothorax (channel 0) and lung
// field (channel 1, or pneumothorax). Midline: halfway between the 1st and 99th percentile columns of the lung
// field (the image centre with fewer than 100 lung cells). Side: the image half with more pneumothorax cells;
// both when the smaller count is at least half the larger. Size: pneumothorax cells / lung-field cells on that
// side (both halves for kBoth).
Analysis Analyze(const std::vector<float>& prob, const ModelSpec& spec);

}  // namespace aihub::pneumothorax
