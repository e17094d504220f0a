// Synthetic PA chest radiograph (DX, For Presentation) with ground truth, for testing pneumothorax detectors.
//
// A projection model: each pixel is a line integral of attenuation through the body (soft tissue thickness,
// minus the air in the lungs, plus ribs, clavicles, spine, humeral heads and the vessels that make the lung
// markings), mapped linearly to 12-bit MONOCHROME2 values (bone bright, air dark) with quantum noise. A
// pneumothorax collapses one lung away from the apex and lateral chest wall towards the hilum: the space between
// the chest wall and the visceral pleural line (a thin bright line) is air without lung markings.
//
// Deterministic by seed with independent streams for anatomy, lesion and noise: one seed with and without a
// pneumothorax gives the same chest and the same noise. Nothing reads the clock.
//
// Geometry: standard display of a PA view, PatientOrientation L\F (columns run to the patient's left, rows to
// the feet), so the patient's right lung is on the image's left. The chest is modelled on a 348 mm x 425 mm
// field; square pixels of max(348 / columns, 425 / rows) mm (0.17 mm at the default 2500 x 2048).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "phantom/head_ct.h"
#include "phantom/label_mask.h"
#include "phantom/study_identity.h"

namespace aihub::phantom {

struct ChestXrayOptions {
  uint64_t seed = 1;
  bool pneumothorax = false;
  std::optional<Side> side;             // with a pneumothorax; drawn from the seed when absent
  std::optional<double> size_percent;   // wanted size, 1..50 % of the hemithorax; drawn (5..45) when absent
  uint32_t rows = 2500;                 // 256..4096
  uint32_t columns = 2048;              // 256..4096
  std::string department = "EMERGENCY";
  std::string calling_ae = "DX_ER1";
  std::string institution = "AIHUB GENERAL HOSPITAL";
};

// Values of ChestXrayStudy::label_mask.
inline constexpr uint8_t kXrayLabelPneumothorax = 1;  // pleural air without lung markings
inline constexpr uint8_t kXrayLabelPleuralLine = 2;   // the visceral pleural line bounding it

// Pixel box, inclusive.
struct PixelBox {
  uint32_t column_min = 0, column_max = 0;
  uint32_t row_min = 0, row_max = 0;
};

struct PneumothoraxTruth {
  bool present = false;
  Side side = Side::kRight;
  double requested_size_percent = 0;
  double size_percent = 0;         // pixels / hemithorax_pixels * 100
  uint64_t pixels = 0;             // labelled kXrayLabelPneumothorax
  uint64_t hemithorax_pixels = 0;  // the lung field on that side, normal lung and pneumothorax together
  double area_mm2 = 0;
  PixelBox box;
  std::vector<std::array<double, 2>> pleural_line;  // (column, row) from apex-medial round to lateral
};

// A pixel whose 5x5 neighbourhood is one kind of projection, with its value before noise.
struct XrayLandmark {
  // "background", "lung", "rib", "intercostal_lung" (beside the rib), "mediastinum"; with a pneumothorax also
  // "pneumothorax" and "collapsed_lung" (just inside the pleural line on the same ray); "lung" is then on the other
  // side at the mirror image of the pneumothorax landmark.
  std::string name;
  uint32_t column = 0, row = 0;
  double expected_value = 0;
};

struct ChestXrayTruth {
  uint64_t seed = 0;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string sop_instance_uid;
  std::string folder;
  std::string file;  // file name in the folder
  uint32_t rows = 0, columns = 0;
  double pixel_spacing_mm = 0;
  PneumothoraxTruth pneumothorax;
  std::vector<XrayLandmark> landmarks;
};

struct ChestXrayStudy {
  StudyIdentity identity;
  std::vector<uint16_t> pixels;     // rows x columns, row-major, 0..4095
  std::vector<uint8_t> label_mask;  // same layout; kXrayLabel* values
  ChestXrayTruth truth;
};

StatusOr<ChestXrayStudy> GenerateChestXray(const ChestXrayOptions& options);

// Layout of ChestXrayStudy::label_mask (one slice) for WriteLabelMask.
LabelMaskLayout ChestXrayLabelMaskLayout(const ChestXrayStudy& study);

// Writes out_dir/<truth.folder>/DX000001.dcm and truth.json; returns the truth.
StatusOr<ChestXrayTruth> WriteChestXrayStudy(const ChestXrayStudy& study, const std::filesystem::path& out_dir);
// GenerateChestXray and WriteChestXrayStudy.
StatusOr<ChestXrayTruth> WriteChestXray(const ChestXrayOptions& options, const std::filesystem::path& out_dir);

nlohmann::json ChestXrayTruthToJson(const ChestXrayTruth& truth);

}  // namespace aihub::phantom
