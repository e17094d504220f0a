// Writes a CT volume as a series of single-frame CT Image Storage instances, the way a scanner does:
// explicit VR little endian, 16-bit signed pixels, RescaleIntercept -1024, RescaleSlope 1, RescaleType HU.
// Generic over the anatomy, so a CT angiography phantom reuses it as is.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"
#include "phantom/study_identity.h"

namespace aihub::phantom {

// An axial CT volume in Hounsfield units, voxel (column, row, slice) at hu[(slice * rows + row) * columns +
// column]. Rows run along patient +y (posterior), columns along +x (patient left), slices along +z (superior).
struct CtVolume {
  uint32_t columns = 0;
  uint32_t rows = 0;
  uint32_t slices = 0;
  double column_spacing_mm = 1;  // along x
  double row_spacing_mm = 1;     // along y
  double slice_spacing_mm = 1;   // along z, also the slice thickness
  std::array<double, 3> origin_mm{};  // patient position of voxel (0, 0, 0)'s centre
  std::vector<int16_t> hu;

  size_t SliceVoxels() const { return static_cast<size_t>(columns) * rows; }
  const int16_t* Slice(uint32_t k) const { return hu.data() + k * SliceVoxels(); }
  int16_t* Slice(uint32_t k) { return hu.data() + k * SliceVoxels(); }
  int16_t At(uint32_t column, uint32_t row, uint32_t slice) const {
    return hu[(static_cast<size_t>(slice) * rows + row) * columns + column];
  }
};

// Series-level attributes of the CT series to write.
struct CtSeriesInfo {
  std::string series_instance_uid;
  std::string frame_of_reference_uid;
  int series_number = 2;
  std::string series_description;   // "AXIAL 5MM"
  std::string protocol_name;        // "ROUTINE HEAD"
  std::string body_part_examined;   // "HEAD"
  std::string patient_position = "HFS";
  std::string image_type = "ORIGINAL\\PRIMARY\\AXIAL";
  std::string manufacturer = "AIHUB PHANTOM";
  std::string model_name = "SYNTHETIC CT";
  std::string station_name = "PHANTOM01";
  std::string software_version = "aihub-phantom 1";
  std::string convolution_kernel = "H31S";
  double kvp = 120;
  int tube_current_ma = 300;
  int exposure_mas = 300;
  double window_center = 40;
  double window_width = 80;
};

// SOP Instance UID of slice `index` (0-based) in the series; deterministic.
std::string CtSliceSopInstanceUid(const CtSeriesInfo& series, uint32_t index);

// Writes slice `index` of `volume` to `file`.
Status WriteCtSlice(const StudyIdentity& study, const CtSeriesInfo& series, const CtVolume& volume, uint32_t index,
                    const std::filesystem::path& file);

// Writes every slice into `dir` (created if needed) as CT000001.dcm, CT000002.dcm, ... (InstanceNumber order,
// inferior to superior) and returns the file names.
StatusOr<std::vector<std::string>> WriteCtSeries(const StudyIdentity& study, const CtSeriesInfo& series,
                                                 const CtVolume& volume, const std::filesystem::path& dir);

}  // namespace aihub::phantom
