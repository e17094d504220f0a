// Small pieces shared by the CT angiography and chest X-ray generators. Internal to aihub_phantom.
#pragma once

#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dctagkey.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "phantom/head_ct.h"

namespace aihub::phantom::internal {

// Decimal String value (at most 16 characters).
std::string FormatDs(double v);
std::string FormatDs(std::initializer_list<double> values);

// In-place [1 2 1] x [1 2 1] / 16 smoothing with edge replication: a CT reconstruction kernel's blur.
void Smooth3x3(std::vector<float>& img, uint32_t cols, uint32_t rows, std::vector<float>& tmp);

// Grows `box` by voxel (c, r, k); `count_before` == 0 starts it.
void ExtendBox(VoxelBox& box, uint64_t count_before, uint32_t c, uint32_t r, uint32_t k);
nlohmann::json VoxelBoxToJson(const VoxelBox& box);

// Department, institution and the calling AE title as every generator accepts them.
Status ValidateSite(const std::string& department, const std::string& calling_ae, const std::string& institution);

// Puts attributes into a DICOM item and keeps the first failure.
class DicomPutter {
 public:
  explicit DicomPutter(DcmItem* item) : item_(item) {}
  void Put(const DcmTagKey& tag, const std::string& value);
  void PutU16(const DcmTagKey& tag, uint16_t value);
  // An item of a code sequence (CodeValue, CodingSchemeDesignator, CodeMeaning).
  void PutCode(const DcmTagKey& sequence, const std::string& value, const std::string& scheme,
               const std::string& meaning);
  void PutEmptySequence(const DcmTagKey& sequence);
  const Status& status() const { return status_; }

 private:
  void Fail(const DcmTagKey& tag, const char* why);
  DcmItem* item_;
  Status status_;
};

}  // namespace aihub::phantom::internal
