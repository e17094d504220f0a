// Test helpers: write small synthetic DICOM files with DCMTK (no binary test data is committed).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcxfer.h>

namespace aihub::dicom::testing {

// A unique temporary directory, removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// One CT-like image (single- or multi-frame). pixel_bytes holds every frame, native little-endian layout.
struct SliceSpec {
  std::string study_uid = "1.2.826.0.1.3680043.9.9999.1";
  std::string series_uid = "1.2.826.0.1.3680043.9.9999.1.1";
  std::string sop_uid;                 // empty: derived from series UID and instance number
  std::string sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";  // CT Image Storage
  int series_number = 1;
  int instance_number = 1;
  uint16_t rows = 4;
  uint16_t columns = 4;
  uint32_t frames = 1;
  std::optional<std::array<double, 3>> position;
  std::array<double, 6> orientation = {1, 0, 0, 0, 1, 0};
  std::array<double, 2> pixel_spacing = {0.5, 0.5};
  uint16_t samples_per_pixel = 1;
  std::string photometric = "MONOCHROME2";
  uint16_t planar_configuration = 0;
  uint16_t bits_allocated = 16;
  uint16_t bits_stored = 16;
  uint16_t pixel_representation = 0;
  std::optional<double> slope;
  std::optional<double> intercept;
  std::vector<uint8_t> pixel_bytes;    // empty: a gradient is generated
  bool omit_pixel_data = false;
};

std::unique_ptr<DcmFileFormat> MakeSlice(const SliceSpec& spec);
// Writes `spec` in transfer syntax `xfer`, compressing with DCMTK's encoders when xfer is encapsulated.
void WriteSlice(const SliceSpec& spec, const std::filesystem::path& path,
                E_TransferSyntax xfer = EXS_LittleEndianExplicit);
// Saves an already built file object in `xfer` (compressing when needed).
void WriteFile(DcmFileFormat& file, const std::filesystem::path& path, E_TransferSyntax xfer);

std::vector<uint8_t> Bytes16(const std::vector<uint16_t>& values);
std::vector<uint8_t> Bytes16(const std::vector<int16_t>& values);

}  // namespace aihub::dicom::testing
