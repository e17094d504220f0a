// Synthetic short-axis cardiac cine MR (bSSFP-like) with ground truth, for testing left-ventricular function
// (volumes, ejection fraction) plugins and for training segmentation models.
//
// One series of single-frame MR Image Storage instances, one file per (slice, phase): a stack of short-axis slices
// from the base (slice 0) to the apex, each imaged at `phases` equally spaced times of one R-R interval. The image
// shows a thorax (body wall with subcutaneous fat and muscle, dark lungs, liver, descending aorta, pericardial fat),
// the left ventricle (bright blood pool inside a myocardial ring that thickens in systole) and the right ventricle
// (a bright crescent on the image's left, beside the septum). The left-ventricular cavity is a truncated ellipsoid
// that narrows towards the apex (the most apical slice may hold no cavity) and follows a smooth volume curve from
// end-diastole at phase 0 to end-systole at ~35-40 % of the cycle (a phase exactly) and back.
//
// Ground truth is counted on the rendered label masks, not taken from the model's parameters: the volume at a phase
// is the sum over the written slices of LV cavity voxels times the voxel volume (Simpson's discs of SliceThickness),
// so it is exact for what is on the images. The model is calibrated per phase so that the rendered volumes follow
// the drawn curve; a requested EF is met to within a fraction of a point at 128 x 128 and above (the calibration
// uses the planned stack, so a slice moved by uneven_spacing changes the volumes a little, and no other slice).
//
// Deterministic by seed with independent streams for anatomy, function and noise (of each frame): the same seed
// with and without a defect gives the same heart and the same noise. Nothing reads the clock.
//
// Geometry (patient LPS): a fixed 360 mm square field of view (1.406 mm pixels at 256), 8 mm slices without gap
// (SpacingBetweenSlices = SliceThickness), an oblique short-axis orientation in standard display (anterior wall
// up, septum and right ventricle on the image's left, lateral wall right). Slice positions step from the base
// towards the apex, which is against the DICOM normal (row x column): the long axis points anterior, left and
// inferior from the base. The heart's length spans the stack, so every stack covers base to apex.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "phantom/label_mask.h"
#include "phantom/study_identity.h"

namespace aihub::phantom {

struct CardiacCineOptions {
  uint64_t seed = 1;
  uint32_t slices = 10;  // 2..24
  uint32_t phases = 20;  // 2..50
  uint32_t size = 256;   // rows = columns, 64..512
  std::optional<double> ef_percent;  // 10..80; drawn from 20..70 when absent
  std::string department = "CARDIOLOGY";
  std::string calling_ae = "MR_CARD1";
  std::string institution = "AIHUB GENERAL HOSPITAL";
  // Bad-input variants: drop phase K's file on one mid slice; shift one mid slice by half the spacing towards the
  // apex (its header still states the nominal spacing).
  std::optional<uint32_t> missing_phase;  // < phases
  bool uneven_spacing = false;            // needs 3 slices or more
};

// Values of CardiacCineStudy::label_mask.
inline constexpr uint8_t kCineLabelLvCavity = 1;      // left-ventricular blood pool
inline constexpr uint8_t kCineLabelLvMyocardium = 2;  // left-ventricular wall, septum included
inline constexpr uint8_t kCineLabelRvCavity = 3;      // right-ventricular blood pool

// A deliberate flaw of the written series.
struct CineDefect {
  std::string kind;              // "missing_phase" or "uneven_spacing"
  uint32_t slice = 0;            // 0-based, base first
  uint32_t phase = 0;            // missing_phase only
  uint32_t instance_number = 0;  // missing_phase: the InstanceNumber not written
  double shift_mm = 0;           // uneven_spacing: displacement towards the apex
};

struct CardiacCineTruth {
  uint64_t seed = 0;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string folder;
  std::vector<std::string> files;  // written files, InstanceNumber order (a missing phase leaves a gap)
  uint32_t slices = 0, phases = 0, rows = 0, columns = 0;
  double pixel_spacing_mm = 0;
  double slice_thickness_mm = 0;  // also the nominal SpacingBetweenSlices
  double voxel_ml = 0;            // pixel_spacing^2 * slice_thickness / 1000
  std::array<double, 6> image_orientation_patient{};
  std::array<double, 3> base_to_apex{};                   // unit vector, = -(row x column)
  std::vector<std::array<double, 3>> image_position_mm;  // ImagePositionPatient of each slice, as written
  int heart_rate_bpm = 0;
  double rr_ms = 0;                    // 60000 / heart rate
  std::vector<double> trigger_time_ms; // per phase: phase * rr_ms / phases
  // The drawn function, before rendering.
  double requested_ef_percent = 0;
  double target_edv_ml = 0, target_esv_ml = 0;
  // Counted on the rendered masks.
  std::vector<std::vector<uint64_t>> cavity_voxels;  // [slice][phase], label kCineLabelLvCavity
  std::vector<double> volume_ml;                     // per phase
  uint32_t ed_phase = 0, es_phase = 0;               // argmax / argmin of volume_ml (first on ties)
  double edv_ml = 0, esv_ml = 0, sv_ml = 0, ef_percent = 0;
  double myocardium_ml_ed = 0;  // label kCineLabelLvMyocardium at ed_phase
  double lv_mass_g = 0;         // myocardium_ml_ed * 1.05 g/mL
  std::vector<CineDefect> defects;
};

struct CardiacCineStudy {
  StudyIdentity identity;
  // Frame f = slice * phases + phase (InstanceNumber f + 1), each rows x columns row-major; all frames, including
  // one a missing_phase defect leaves unwritten.
  std::vector<uint16_t> pixels;     // 0..4095
  std::vector<uint8_t> label_mask;  // same layout; kCineLabel* values
  CardiacCineTruth truth;
};

// Folder name for a study, e.g. "cardiac-cine-s42", "cardiac-cine-s42-ef55-missing-phase-3-uneven"; only [a-z0-9-].
std::string CardiacCineFolderName(const CardiacCineOptions& options);

StatusOr<CardiacCineStudy> GenerateCardiacCine(const CardiacCineOptions& options);

// Layout of CardiacCineStudy::label_mask for WriteLabelMask: slices x phases frames in InstanceNumber order, i.e.
// numpy.fromfile(path, numpy.uint8).reshape(slices, phases, rows, columns).
LabelMaskLayout CardiacCineLabelMaskLayout(const CardiacCineStudy& study);

// Writes out_dir/<truth.folder>/MR000001.dcm... (InstanceNumber in the name) and truth.json; returns the truth with
// the names of the files written.
StatusOr<CardiacCineTruth> WriteCardiacCineStudy(const CardiacCineStudy& study, const std::filesystem::path& out_dir);
// GenerateCardiacCine and WriteCardiacCineStudy.
StatusOr<CardiacCineTruth> WriteCardiacCine(const CardiacCineOptions& options, const std::filesystem::path& out_dir);

nlohmann::json CardiacCineTruthToJson(const CardiacCineTruth& truth);

}  // namespace aihub::phantom
