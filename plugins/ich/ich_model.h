// Pre- and post-processing of the ICH reference model, without libtorch or plugin ABI types, so tests call it
// directly. The preprocessing must match plugins/ich/ichdata.py (what the model was trained on) exactly:
//
//   per pixel  w = clamp(HU / window_hu, 0, 1)              (brain window [0, 100] HU)
//              b = HU >= bone_hu ? 1 : 0                    (bone indicator, 300 HU)
//              d = blood_hu <= HU < bone_hu ? 1 : 0         (blood-density indicator, 52 HU)
//   per slice  the maps mean-pooled by f x f, f = rows / grid (rows == columns, a multiple of the 128 grid)
//   volume     all slices in the series' sorted order -> [1, 3, slices, grid, grid] (channels w, b, d)
//
// The model returns a blood probability per model-grid voxel. Post-processing: the presence score is the mean of
// the top_k voxel probabilities; voxels with p >= voxel_threshold are blood for laterality and region; the volume
// is either the count of voxels with p >= volume_cut or the sum of p over them (volume_mode, chosen by train.py on
// validation: a thin layer of blood fills cells partly, and a partly filled cell scores below 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "aihub_ref/grid.h"

namespace aihub::ich {

constexpr uint32_t kInputChannels = 3;

enum class VolumeMode { kCount, kSoft };

struct ModelSpec {
  uint32_t grid = 128;
  double window_hu = 100;
  double bone_hu = 300;
  double blood_hu = 52;
  uint32_t top_k = 16;
  double voxel_threshold = 0.5;
  VolumeMode volume_mode = VolumeMode::kCount;
  double volume_cut = 0.5;
  double threshold = 0.5;  // operating point on the presence score
};

// Parses the model file's "aihub_model.json" (flat JSON written by train.py) into `spec`, keeping defaults for
// absent keys; returns the model_version string ("" when absent). Throws std::invalid_argument on bad values
// and then leaves `spec` unchanged; also when the model takes another number of input channels than
// kInputChannels (a model trained for other preprocessing).
std::string ParseModelMetadata(const std::string& json, ModelSpec& spec);

using aihub_ref::PoolingFactor;

// Writes the kInputChannels preprocessed grid x grid channels of one slice (hu is size x size, size = grid *
// factor): channel ch at out + ch * channel_stride.
void PreprocessSlice(const float* hu, uint32_t size, uint32_t factor, const ModelSpec& spec, float* out,
                     size_t channel_stride);

enum class Side { kNone, kLeft, kRight, kBilateral };

struct Analysis {
  double score = 0;  // mean of the top_k probabilities
  bool present = false;
  uint64_t blood_voxels = 0;  // model-grid voxels with p >= voxel_threshold (laterality, region)
  double volume_ml = 0;
  Side side = Side::kNone;
  double offset_mm = 0;  // blood centroid from the head midline, + toward the patient's left
  uint32_t best_slice = 0;
  // Bounding box of the blood on best_slice in original pixel coordinates (corners of pixels; origin at the
  // top-left corner of the top-left pixel): column_min, row_min, column_max, row_max.
  float box[4] = {0, 0, 0, 0};
};

struct GridGeometry {
  uint32_t slices = 0;
  uint32_t grid = 128;
  uint32_t factor = 1;         // original pixels per grid cell along each axis
  double column_spacing_mm = 0;  // original pixel spacing
  double row_spacing_mm = 0;
  double slice_spacing_mm = 0;
  bool columns_toward_patient_left = true;  // ImageOrientationPatient row cosine x > 0 (LPS)
};

// `prob` and `input` (the preprocessed volume) are [slices, grid, grid] / [kInputChannels, slices, grid, grid].
// The head midline is the mean column of the head (w > 0.2 or any bone) over all slices. Within
// lateral_offset_mm of it, one side with twice the other's blood wins, else bilateral.
Analysis Analyze(const std::vector<float>& prob, const std::vector<float>& input, const GridGeometry& g,
                 const ModelSpec& spec, double lateral_offset_mm = 5);

}  // namespace aihub::ich
