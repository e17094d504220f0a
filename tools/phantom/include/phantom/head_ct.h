// Synthetic non-contrast head CT with ground truth, for demos and for testing hemorrhage detectors.
//
// Deterministic by seed: anatomy, lesion and noise come from independent mt19937_64 streams derived from the
// seed, so one seed with and without a hemorrhage gives the same head and the same noise, and the same options
// always give byte-identical files. Nothing reads the clock.
//
// Geometry (patient LPS): axial slices, ImageOrientationPatient 1\0\0\0\1\0, 5 mm slices stepping in +z
// (instance 1 is the most inferior), a 240 mm field of view (0.469 mm pixels at 512).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "phantom/ct_series_writer.h"
#include "phantom/study_identity.h"

namespace aihub::phantom {

enum class HemorrhageType { kNone, kIntraparenchymal, kSubdural, kSubarachnoid };
enum class Side { kLeft, kRight };

std::string_view HemorrhageTypeName(HemorrhageType type);  // "none", "intraparenchymal", ...
StatusOr<HemorrhageType> ParseHemorrhageType(std::string_view name);
std::string_view SideName(Side side);  // "left", "right"
StatusOr<Side> ParseSide(std::string_view name);

struct HeadCtOptions {
  uint64_t seed = 1;
  HemorrhageType hemorrhage = HemorrhageType::kNone;
  Side side = Side::kLeft;
  uint32_t slices = 40;  // 1..400
  uint32_t size = 512;   // rows = columns, 64..1024
  std::string department = "EMERGENCY";  // InstitutionalDepartmentName
  std::string calling_ae = "CT_ER1";      // SourceApplicationEntityTitle in the file meta; 1..16 chars
  std::string institution = "AIHUB GENERAL HOSPITAL";
};

// Voxel index box, inclusive.
struct VoxelBox {
  uint32_t column_min = 0, column_max = 0;
  uint32_t row_min = 0, row_max = 0;
  uint32_t slice_min = 0, slice_max = 0;
};

struct SliceExtent {
  uint32_t slice = 0;  // 0-based; InstanceNumber is slice + 1
  uint64_t voxels = 0;
  VoxelBox box;        // slice_min = slice_max = slice
};

struct HemorrhageTruth {
  bool present = false;
  HemorrhageType type = HemorrhageType::kNone;
  Side side = Side::kLeft;
  std::string lobe;        // intraparenchymal only: frontal, parietal, temporal, occipital
  double blood_hu = 0;     // mean density painted (before noise)
  uint64_t voxels = 0;     // voxels painted as blood
  double volume_ml = 0;    // voxels * voxel volume
  VoxelBox box;            // overall, when present
  std::vector<SliceExtent> slices;  // per slice holding blood
  std::array<double, 3> centroid_mm{};  // patient coordinates
};

// A voxel whose 3x3 in-plane neighbourhood is one tissue, with that tissue's density before noise.
struct Landmark {
  std::string name;  // "air", "bone", "white_matter", "ventricle", "blood"
  uint32_t column = 0, row = 0, slice = 0;
  double expected_hu = 0;
};

struct HeadCtTruth {
  uint64_t seed = 0;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string folder;  // folder name under the output directory
  std::vector<std::string> files;
  uint32_t size = 0, slices = 0;
  double pixel_spacing_mm = 0, slice_thickness_mm = 0;
  double midline_x_mm = 0;  // patient x of the head's mid-sagittal plane
  HemorrhageTruth hemorrhage;
  std::vector<Landmark> landmarks;
};

// A generated study in memory: what WriteHeadCt writes, plus the blood label map (1 = painted blood).
struct HeadCtStudy {
  StudyIdentity identity;
  CtSeriesInfo series;
  CtVolume volume;
  std::vector<uint8_t> blood_mask;  // same indexing as volume.hu
  HeadCtTruth truth;
};

// Folder name for a study, e.g. "head-ct-s42-subdural-left"; only [a-z0-9-].
std::string HeadCtFolderName(const HeadCtOptions& options);

StatusOr<HeadCtStudy> GenerateHeadCt(const HeadCtOptions& options);

// Generates the study and writes out_dir/<HeadCtFolderName>/CT000001.dcm... and truth.json.
StatusOr<HeadCtTruth> WriteHeadCt(const HeadCtOptions& options, const std::filesystem::path& out_dir);

nlohmann::json HeadCtTruthToJson(const HeadCtTruth& truth);

}  // namespace aihub::phantom
