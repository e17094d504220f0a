// Synthetic CT pulmonary angiography (CTPA) with ground truth, for testing pulmonary embolism detectors.
//
// Chest anatomy in one contrast phase: body wall (skin, subcutaneous fat, muscle), lungs with parenchymal texture,
// mediastinal fat, heart (opacified right chambers, less dense left chambers), aorta, superior vena cava, trachea
// and main bronchi, spine, sternum and ribs, and the pulmonary arterial tree filled with contrast (250-400 HU):
// main pulmonary artery, right and left pulmonary arteries, five lobar arteries and segmental and subsegmental
// branches narrowing through the lungs. An embolus is a filling defect (20-60 HU) inside a named branch's lumen,
// eccentric with a contrast rim, or a saddle embolus across the bifurcation of the main pulmonary artery.
//
// Deterministic by seed, with independent streams for anatomy, embolus and noise: one seed with and without an
// embolus gives the same chest and the same noise. Nothing reads the clock.
//
// Geometry (patient LPS): axial slices, ImageOrientationPatient 1\0\0\0\1\0, a 360 mm field of view (0.703 mm
// pixels at 512), a fixed 200 mm craniocaudal coverage from below the diaphragm domes to above the lung apices, so
// the slice spacing is 200 mm / slices (1 mm at the default 200 slices); instance 1 is the most inferior.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "phantom/ct_series_writer.h"
#include "phantom/head_ct.h"
#include "phantom/label_mask.h"
#include "phantom/study_identity.h"

namespace aihub::phantom {

enum class EmbolusSide { kLeft, kRight, kBilateral };
std::string_view EmbolusSideName(EmbolusSide side);  // "left", "right", "bilateral"
StatusOr<EmbolusSide> ParseEmbolusSide(std::string_view name);

// The named pulmonary arteries an embolus can sit in. kMain is a saddle embolus across the bifurcation.
enum class PulmonaryBranch {
  kMain,
  kRight,
  kLeft,
  kRightUpperLobar,
  kRightMiddleLobar,
  kRightLowerLobar,
  kLeftUpperLobar,
  kLeftLowerLobar,
};
inline constexpr int kPulmonaryBranchCount = 8;
// "main", "right", "left", "right_upper_lobar", "right_middle_lobar", "right_lower_lobar", "left_upper_lobar",
// "left_lower_lobar".
std::string_view PulmonaryBranchName(PulmonaryBranch branch);
StatusOr<PulmonaryBranch> ParsePulmonaryBranch(std::string_view name);
EmbolusSide PulmonaryBranchSide(PulmonaryBranch branch);  // kMain: kBilateral

struct CtpaOptions {
  uint64_t seed = 1;
  bool embolus = false;
  std::optional<EmbolusSide> side;        // with an embolus; drawn from the seed when absent
  std::optional<PulmonaryBranch> branch;  // with an embolus; drawn from the seed (within `side`) when absent
  uint32_t slices = 200;                  // 16..400 over 200 mm
  uint32_t size = 512;                    // rows = columns, 64..1024
  std::string department = "EMERGENCY";
  std::string calling_ae = "CT_ER1";
  std::string institution = "AIHUB GENERAL HOSPITAL";
};

// Values of CtpaStudy::label_mask.
inline constexpr uint8_t kCtpaLabelEmbolus = 1;
inline constexpr uint8_t kCtpaLabelArteryLumen = 2;  // contrast-filled pulmonary artery lumen, not embolus

struct EmbolusTruth {
  bool present = false;
  EmbolusSide side = EmbolusSide::kRight;
  PulmonaryBranch branch = PulmonaryBranch::kMain;
  double clot_hu = 0;    // density painted (before noise)
  double length_mm = 0;  // along the vessel
  uint64_t voxels = 0;   // voxels labelled kCtpaLabelEmbolus
  double volume_ml = 0;  // voxels * voxel volume
  VoxelBox box;
  std::vector<SliceExtent> slices;
  std::array<double, 3> centroid_mm{};  // patient coordinates
};

// Centreline of a named branch, from its origin outwards.
struct PulmonaryArteryTruth {
  PulmonaryBranch branch = PulmonaryBranch::kMain;
  std::vector<std::array<double, 3>> centerline_mm;
  std::vector<double> radius_mm;
};

struct CtpaTruth {
  uint64_t seed = 0;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string folder;
  std::vector<std::string> files;
  uint32_t size = 0, slices = 0;
  double pixel_spacing_mm = 0, slice_thickness_mm = 0;
  std::array<double, 3> origin_mm{};  // centre of voxel (0, 0, 0)
  double artery_hu = 0;               // contrast density of the pulmonary arteries (before noise)
  EmbolusTruth embolus;
  std::vector<PulmonaryArteryTruth> arteries;
  // "air", "fat", "lung", "pulmonary_artery", "aorta", "vertebra", "clot": 5x5 of one tissue, value before noise.
  std::vector<Landmark> landmarks;
};

struct CtpaStudy {
  StudyIdentity identity;
  CtSeriesInfo series;
  CtVolume volume;
  std::vector<uint8_t> label_mask;  // same indexing as volume.hu; kCtpaLabel* values
  CtpaTruth truth;
};

StatusOr<CtpaStudy> GenerateCtpa(const CtpaOptions& options);

// Layout of CtpaStudy::label_mask for WriteLabelMask.
LabelMaskLayout CtpaLabelMaskLayout(const CtpaStudy& study);

// Writes out_dir/<truth.folder>/CT000001.dcm... and truth.json; returns the truth with its file names.
StatusOr<CtpaTruth> WriteCtpaStudy(const CtpaStudy& study, const std::filesystem::path& out_dir);
// GenerateCtpa and WriteCtpaStudy.
StatusOr<CtpaTruth> WriteCtpa(const CtpaOptions& options, const std::filesystem::path& out_dir);

nlohmann::json CtpaTruthToJson(const CtpaTruth& truth);

}  // namespace aihub::phantom
