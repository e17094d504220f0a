// Pre- and post-processing of the ejection-fraction reference model, without libtorch or plugin ABI types, so tests
// call it directly. The preprocessing must match plugins/ejection_fraction/efdata.py (what the model was trained
// on):
//
//   grid       a grid x grid (128 x 128) grid of cell_mm (1.6 mm) square cells centred on the image centre; cell
//              (i, j) = area-weighted mean of the native frame, each native pixel a constant rectangle of
//              (row spacing x column spacing) mm; the part of a cell outside the image counts as 0 (MR background)
//   normalise  over the whole cine stack (every slice and phase on the grid): lo, hi = the values at ranks
//              floor(p * (n - 1)) of the sorted values for p = low_percentile and high_percentile;
//              x = clamp((v - lo) / (hi - lo), clamp_low, clamp_high)
//
// The model maps each frame to the fraction of every cell that is left-ventricular blood pool, so the summed
// probabilities times the cell area are the cavity's area. Post-processing: see AnalyzeCine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace aihub::ejection_fraction {

struct ModelSpec {
  uint32_t grid = 128;
  double cell_mm = 1.6;
  double low_percentile = 0.01;
  double high_percentile = 0.99;
  double clamp_low = -0.5;
  double clamp_high = 1.5;
  double cell_threshold = 0.5;      // a cell is blood pool at p >= this (component selection, outline)
  double threshold_percent = 30;    // operating point: "reduced ejection fraction" when EF < this
};

// Parses the model file's "aihub_model.json" (flat JSON written by train.py) into `spec`, keeping defaults for
// absent keys; returns the model_version string ("" when absent). Throws std::invalid_argument on bad values and
// then leaves `spec` unchanged.
std::string ParseModelMetadata(const std::string& json, ModelSpec& spec);

// Maps native frames of one size and pixel spacing onto the model grid (area-weighted, see the file comment).
class GridMapper {
 public:
  // Throws std::invalid_argument for an empty frame or a spacing that is not positive and finite.
  GridMapper(uint32_t rows, uint32_t columns, double row_spacing_mm, double column_spacing_mm, const ModelSpec& spec);

  // `image` holds rows * columns values (row-major); `out` receives grid * grid values.
  void Map(const float* image, float* out) const;

  // A grid-corner coordinate (0 = top or left edge of the grid) as a native pixel-corner coordinate.
  double NativeRow(double grid_row) const { return rows_.start + grid_row * rows_.cell; }
  double NativeColumn(double grid_column) const { return columns_.start + grid_column * columns_.cell; }

 private:
  struct Axis {
    double start = 0;  // native coordinate of the grid's first edge
    double cell = 0;   // cell length in native pixels
    std::vector<uint32_t> first;               // per grid cell: first native pixel it overlaps
    std::vector<std::vector<double>> weights;  // per grid cell: overlap / cell length, from `first` on
  };
  static Axis MakeAxis(uint32_t n, double spacing_mm, const ModelSpec& spec);

  uint32_t rows_count_, columns_count_, grid_;
  Axis rows_, columns_;
};

// Stack normalisation, in place (see the file comment). `stack` holds every frame of the cine on the grid.
void Normalise(std::vector<float>& stack, const ModelSpec& spec);

struct CineAnalysis {
  std::vector<double> volume_ml;             // per phase
  std::vector<std::vector<double>> area_mm2; // [phase][slice]
  uint32_t ed_phase = 0, es_phase = 0;       // 0-based: first maximum / first minimum of volume_ml
  double edv_ml = 0, esv_ml = 0, sv_ml = 0, ef_percent = 0;
  // Outline of the blood pool on the end-diastolic frame of `contour_slice` (the middle slice, or the slice with
  // the largest area when the middle one holds none): a closed polygon through grid-cell corners (x = column,
  // y = row), simplified to within 0.75 cell; empty when no cell reaches cell_threshold.
  uint32_t contour_slice = 0;
  std::vector<float> contour;
};

// `prob` is [phases][slices][grid][grid] (the host's cine order: phase by phase, each along the slice normal).
// Per phase: the cells with p >= cell_threshold form 3D components over the slice stack (26-connected); the one
// with the largest summed probability is the left ventricle, and any other whose in-plane centroid lies within its
// bounding box (grown by 2 cells) joins it (an apical slice the stack's tilt separated). The area of a slice is
// the summed probability over those cells and their 8 in-plane neighbours (partial cells at the edge stay under
// the threshold) times cell_mm^2; the volume is the sum of the areas times slice_spacing_mm (Simpson's discs).
// ED is the phase with the largest volume, ES the smallest; EF = (EDV - ESV) / EDV * 100 (0 when EDV is 0).
CineAnalysis AnalyzeCine(const std::vector<float>& prob, uint32_t phases, uint32_t slices, double slice_spacing_mm,
                         const ModelSpec& spec);

}  // namespace aihub::ejection_fraction
