// Pre- and post-processing of the PE reference model, without libtorch or plugin ABI types, so tests call it
// directly. The preprocessing must match plugins/pe/pedata.py (what the model was trained on):
//
//   per pixel  v = clamp((HU - vessel_lo_hu) / (vessel_hi_hu - vessel_lo_hu), 0, 1)   (window [-200, 500] HU)
//              l = HU < lung_hu ? 1 : 0                                             (lung/air, -500 HU)
//              c = clot_lo_hu <= HU < clot_hi_hu ? 1 : 0                   (clot density, [-30, 120) HU)
//              e = HU >= contrast_hu ? 1 : 0                               (contrast density, 180 HU)
//   per slice  the maps mean-pooled by f x f, f = rows / grid (rows == columns, a multiple of the 128 grid)
//   along z    overlap-weighted means onto cells of about cell_z_mm (aihub_ref::MakeZResampling)
//   volume     -> [1, 4, cells, grid, grid] (channels v, l, c, e), padded along z to a multiple of 4
// The shares c and e tell a cell full of clot from a cell on the edge of a small opacified artery (contrast and
// lung pixels), which have about the same mean density at the 2.8 mm grid.
//
// The model returns per model-grid voxel the probabilities of 7 classes (kClass*). Post-processing (Analyze):
// clot probability = sum of the five clot classes; presence score = mean of the top_k clot probabilities;
// volumes sum probabilities >= volume_floor; components of p_clot >= voxel_threshold give side, site and region.
//
// Side and most proximal branch come from where each clot component's centroid lies left or right of the body
// midline (patient LPS), not from the model's per-branch clot classes: those were trained as an auxiliary target
// but do not separate the branches reliably (3 of 24 validation clots by the dominant class), so they are summed.
// The level boundaries (BranchLevelLimits) were measured on phantom truth: clot centroids per branch across 48
// seeds lie at x = -23..0 mm (right pulmonary artery), 11..19 (main, saddle; the trunk is left of the midline),
// 26..41 (left pulmonary artery), <= -50 (right lobar) and >= 52 (left lobar), x + toward the patient's left.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace aihub::pe {

// Output classes of the model, in channel order.
enum ModelClass : uint32_t {
  kClassBackground = 0,
  kClassLumen = 1,       // contrast-filled pulmonary artery lumen
  kClassClotMain = 2,    // embolus in the main pulmonary artery (saddle)
  kClassClotRight = 3,   // in the right pulmonary artery
  kClassClotLeft = 4,    // in the left pulmonary artery
  kClassClotRightLobar = 5,
  kClassClotLeftLobar = 6,
  kClassCount = 7,
};

constexpr uint32_t kInputChannels = 4;

struct ModelSpec {
  uint32_t grid = 128;
  double cell_z_mm = 3.125;
  double vessel_lo_hu = -200;
  double vessel_hi_hu = 500;
  double lung_hu = -500;
  double clot_lo_hu = -30;
  double clot_hi_hu = 120;
  double contrast_hu = 180;
  uint32_t top_k = 8;
  double voxel_threshold = 0.5;
  double volume_floor = 0.2;
  double threshold = 0.5;  // operating point on the presence score
};

// Parses the model file's "aihub_model.json" into `spec`, keeping defaults for absent keys; returns the
// model_version ("" when absent). Throws std::invalid_argument on bad values (also a class count other than 7, or
// an input channel count other than kInputChannels: a model trained for other preprocessing) and then leaves
// `spec` unchanged.
std::string ParseModelMetadata(const std::string& json, ModelSpec& spec);

// Writes the kInputChannels pooled grid x grid channels of one size x size slice (size = grid * factor): channel
// ch at out + ch * channel_stride.
void PreprocessSlice(const float* hu, uint32_t size, uint32_t factor, const ModelSpec& spec, float* out,
                     size_t channel_stride);

// Highest mean HU of a pooled cell in the central mediastinum of one slice (columns and rows within the given
// mm of the image centre: |x| <= half_width_mm, -anterior_mm <= y <= posterior_mm). Opacified pulmonary
// arteries and aorta reach 250-400 HU there; without contrast, blood and soft tissue stay below about 80 HU.
double MediastinumMaxHu(const float* hu, uint32_t size, uint32_t factor, double pixel_mm, double half_width_mm = 50,
                        double anterior_mm = 70, double posterior_mm = 20);

enum class Side { kNone, kLeft, kRight, kBilateral };

// The most proximal branch level involved.
enum class Site { kNone, kMain, kRightPulmonary, kLeftPulmonary, kRightLobar, kLeftLobar };

// Boundaries between branch levels on the lateral offset of a clot centroid from the body midline (mm, + toward
// the patient's left): right lobar < right_lobar_max <= right pulmonary < main_min <= main < left_min <= left
// pulmonary < left_lobar_min <= left lobar.
struct BranchLevelLimits {
  double right_lobar_max = -40;
  double main_min = 5;
  double left_min = 22;
  double left_lobar_min = 47;
};

// The level of a centroid at `offset_mm` from the midline.
Site SiteAt(double offset_mm, const BranchLevelLimits& limits = {});

// Mean over z cells of the centre of the body's left-right extent: the first and last grid column whose vessel
// channel (input channel 0 of [kInputChannels, cells, grid, grid]) exceeds `body_level` (0.2: about -60 HU, soft tissue). The
// chest wall is near-symmetric, unlike the mediastinum. (grid - 1) / 2 when no cell holds body.
double BodyMidlineColumn(const std::vector<float>& input, uint32_t cells, uint32_t grid, float body_level = 0.2f);

struct GridGeometry {
  uint32_t cells = 0;  // along z
  uint32_t grid = 128;
  uint32_t factor = 1;          // original pixels per grid cell along rows and columns
  double pixel_mm = 0;          // original pixel spacing (square pixels)
  double cell_z_mm = 0;         // actual z cell height
  std::vector<uint32_t> center_slice;  // per z cell, the original frame that contributes most
  double slice_spacing_mm = 0;  // original spacing between frames
  double midline_column = -1;   // body midline in grid columns (BodyMidlineColumn); < 0: the grid's centre
  // Patient LPS position of the centre of the first pixel of frame 0, the row and column direction cosines and
  // the unit normal pointing along the sorted frames, for centroids in patient coordinates.
  std::array<double, 3> origin{0, 0, 0}, row_dir{1, 0, 0}, column_dir{0, 1, 0}, normal{0, 0, 1};
};

struct Analysis {
  double score = 0;  // mean of the top_k clot probabilities
  bool present = false;
  uint64_t clot_voxels = 0;  // model-grid voxels with p_clot >= voxel_threshold
  double volume_ml = 0;      // sum of p_clot >= volume_floor, times the cell volume
  double lumen_ml = 0;       // sum of p_lumen >= volume_floor, times the cell volume
  double burden_percent = 0;  // clot / (clot + patent lumen) volume: the occluded fraction of the arterial tree
  std::array<double, kClassCount> class_mass{};  // summed class probabilities over clot voxels (>= floor)
  Site site = Site::kNone;
  Side side = Side::kNone;
  uint32_t components = 0;  // clot components (p_clot >= voxel_threshold) counted for side and site (see .cpp)
  std::array<double, 3> centroid_lps{0, 0, 0};  // of the largest component, patient mm
  double offset_mm = 0;  // lateral offset of the largest component's centroid from the midline, + = left
  uint32_t best_cell = 0;   // z cell with the largest clot area
  uint32_t best_frame = 0;  // original frame index of best_cell
  std::vector<float> contour;  // polygon on best_frame in original pixel coordinates (x, y pairs)
};

// `prob` is [kClassCount, cells, grid, grid] (C order).
Analysis Analyze(const std::vector<float>& prob, const GridGeometry& g, const ModelSpec& spec,
                 const BranchLevelLimits& limits = {});

const char* SiteName(Site site);  // "main pulmonary artery", "right pulmonary artery", ... "" for kNone

}  // namespace aihub::pe
