// Test helper: reads a folder of single-frame CT slices back with DCMTK, independently of the phantom's own
// code, into a float HU volume sorted by ImagePositionPatient z.
#pragma once

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

namespace aihub::testing {

struct CtSeriesHu {
  uint32_t columns = 0, rows = 0, slices = 0;
  double row_spacing_mm = 0, column_spacing_mm = 0, slice_spacing_mm = 0;
  double row_cosine_x = 1;
  std::vector<double> z;
  std::vector<float> hu;  // (slice * rows + row) * columns + column
  float At(uint32_t c, uint32_t r, uint32_t k) const { return hu[(static_cast<size_t>(k) * rows + r) * columns + c]; }
};

inline CtSeriesHu ReadCtSeriesHu(const std::filesystem::path& dir) {
  struct Slice {
    double z;
    std::vector<float> hu;
  };
  std::vector<Slice> slices;
  CtSeriesHu out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".dcm") continue;
    DcmFileFormat file;
    if (file.loadFile(entry.path().c_str()).bad()) throw std::runtime_error("cannot read " + entry.path().string());
    DcmDataset* ds = file.getDataset();
    Uint16 rows = 0, cols = 0, representation = 0;
    Float64 slope = 1, intercept = 0, z = 0, row_spacing = 0, col_spacing = 0, row_x = 0;
    ds->findAndGetUint16(DCM_Rows, rows);
    ds->findAndGetUint16(DCM_Columns, cols);
    ds->findAndGetUint16(DCM_PixelRepresentation, representation);
    ds->findAndGetFloat64(DCM_RescaleSlope, slope);
    ds->findAndGetFloat64(DCM_RescaleIntercept, intercept);
    ds->findAndGetFloat64(DCM_ImagePositionPatient, z, 2);
    ds->findAndGetFloat64(DCM_PixelSpacing, row_spacing, 0);
    ds->findAndGetFloat64(DCM_PixelSpacing, col_spacing, 1);
    ds->findAndGetFloat64(DCM_ImageOrientationPatient, row_x, 0);
    const Uint16* pixels = nullptr;
    unsigned long count = 0;
    if (ds->findAndGetUint16Array(DCM_PixelData, pixels, &count).bad() || count != size_t{rows} * cols) {
      throw std::runtime_error("bad pixel data in " + entry.path().string());
    }
    Slice s{z, std::vector<float>(count)};
    for (unsigned long i = 0; i < count; ++i) {
      const double stored = representation ? static_cast<double>(static_cast<int16_t>(pixels[i])) : pixels[i];
      s.hu[i] = static_cast<float>(stored * slope + intercept);
    }
    out.rows = rows;
    out.columns = cols;
    out.row_spacing_mm = row_spacing;
    out.column_spacing_mm = col_spacing;
    out.row_cosine_x = row_x;
    slices.push_back(std::move(s));
  }
  std::sort(slices.begin(), slices.end(), [](const Slice& a, const Slice& b) { return a.z < b.z; });
  out.slices = static_cast<uint32_t>(slices.size());
  for (const Slice& s : slices) {
    out.z.push_back(s.z);
    out.hu.insert(out.hu.end(), s.hu.begin(), s.hu.end());
  }
  if (slices.size() > 1) out.slice_spacing_mm = slices[1].z - slices[0].z;
  return out;
}

// A fresh, empty directory under the system temp directory, removed on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("aihub-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace aihub::testing
