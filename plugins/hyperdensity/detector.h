// Classical (non-learned) acute intracranial hyperdensity detector on a CT volume in Hounsfield units.
// Pure C++, no plugin ABI types, so tests call it directly. A reference for integration, not for clinical use.
//
// Per axial slice: bone is HU >= bone_min_hu; the intracranial space is the non-bone area that cannot be reached
// from the image border without crossing bone (4-connected flood fill). A rim of rim_mm next to bone is dropped,
// because the reconstruction blur gives bone edges blood-like densities (partial volume). On a 3x3 mean of the
// slice (which halves the noise), voxels in [blood_min_hu, blood_max_hu] are candidates. Candidates are grouped
// into 3D components (8-connected in plane, plus the same pixel on the adjacent slices); components below
// min_component_ml are dropped as noise. The finding is present when the kept volume is at least min_volume_ml.
//
// Confidence is a smooth monotone function of the kept volume V: V^2 / (V^2 + m^2) with m = min_volume_ml,
// so 0 without candidates, 0.5 at the presence threshold, 0.8 at 2 m, 0.94 at 4 m, approaching 1 for large bleeds.
//
// Laterality: the centroid of the largest component against the head midline (mean column of the intracranial
// masks). A centroid within lateral_offset_mm of the midline defers to the volume on each side: one side with
// at least twice the other's volume wins, both sides give bilateral, none gives none.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace aihub::hyperdensity {

// Voxel (column, row, slice) at hu[(slice * rows + row) * columns + column]. Slices are axial.
struct HuVolume {
  uint32_t columns = 0;
  uint32_t rows = 0;
  uint32_t slices = 0;
  double column_spacing_mm = 0;
  double row_spacing_mm = 0;
  double slice_spacing_mm = 0;
  // True when the column index grows toward the patient's left (ImageOrientationPatient row cosine x > 0).
  bool columns_toward_patient_left = true;
  std::vector<float> hu;

  size_t SliceVoxels() const { return static_cast<size_t>(columns) * rows; }
  const float* Slice(uint32_t k) const { return hu.data() + k * SliceVoxels(); }
};

struct DetectorConfig {
  double min_volume_ml = 0.5;     // presence threshold on the kept volume
  double min_component_ml = 0.1;  // smaller components are noise
  double blood_min_hu = 50;
  double blood_max_hu = 90;
  double bone_min_hu = 300;
  double rim_mm = 2.5;            // excluded next to bone
  double min_brain_area_mm2 = 500;  // slices with less intracranial area (vertex, skull base) are skipped
  double lateral_offset_mm = 5;
};

enum class Laterality { kNone, kLeft, kRight, kBilateral };

struct Component {
  uint64_t voxels = 0;
  double volume_ml = 0;
  double centroid_column = 0, centroid_row = 0, centroid_slice = 0;  // voxel units
  double offset_mm = 0;          // centroid from the midline, + toward the patient's left
  uint32_t best_slice = 0;       // slice with the component's largest area
  uint64_t best_slice_voxels = 0;
  // Outer contour of the largest piece on best_slice: (column, row) pairs at pixel centres, in image pixel
  // coordinates (origin at the top-left corner of the top-left pixel).
  std::vector<float> contour;
};

struct Detection {
  bool present = false;
  double volume_ml = 0;   // kept components
  double confidence = 0;  // ConfidenceFromVolume(volume_ml)
  Laterality laterality = Laterality::kNone;
  double midline_column = 0;
  uint32_t slices_with_brain = 0;
  std::vector<Component> components;  // kept ones, largest first
};

double ConfidenceFromVolume(double volume_ml, double min_volume_ml);

// Validates a config: every threshold finite and in a sensible range. Returns "" or why not.
std::string ValidateConfig(const DetectorConfig& config);

// `progress(fraction)` is called after each slice and may throw to abort (the plugin does on cancellation).
// The volume must be consistent (hu.size() == columns * rows * slices, positive spacings); throws
// std::invalid_argument otherwise.
Detection Detect(const HuVolume& volume, const DetectorConfig& config,
                 const std::function<void(double)>& progress = {});

// A tiny synthetic head (64 x 64 x 12) with a known blob on the patient's left, and a check that Detect finds
// it with the right side and volume and finds nothing once the blob is removed. Returns "" or what failed.
std::string RunSelfTest(const DetectorConfig& config);

}  // namespace aihub::hyperdensity
