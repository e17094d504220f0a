#include "phantom_util.h"

#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dctag.h>
#include <dcmtk/dcmdata/dcdeftag.h>

#include <algorithm>
#include <cstdio>

namespace aihub::phantom::internal {

std::string FormatDs(double v) {
  if (v == 0) return "0";
  char buf[64];
  for (int precision = 10; precision > 1; --precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::string(buf).size() <= 16) return buf;
  }
  std::snprintf(buf, sizeof buf, "%.1g", v);
  return buf;
}

std::string FormatDs(std::initializer_list<double> values) {
  std::string out;
  for (double v : values) {
    if (!out.empty()) out += '\\';
    out += FormatDs(v);
  }
  return out;
}

void Smooth3x3(std::vector<float>& img, uint32_t cols, uint32_t rows, std::vector<float>& tmp) {
  tmp.resize(img.size());
  for (uint32_t r = 0; r < rows; ++r) {
    const float* in = &img[static_cast<size_t>(r) * cols];
    float* out = &tmp[static_cast<size_t>(r) * cols];
    for (uint32_t c = 0; c < cols; ++c) {
      const float l = in[c > 0 ? c - 1 : c], m = in[c], rr = in[c + 1 < cols ? c + 1 : c];
      out[c] = 0.25f * (l + 2 * m + rr);
    }
  }
  for (uint32_t r = 0; r < rows; ++r) {
    const float* up = &tmp[static_cast<size_t>(r > 0 ? r - 1 : r) * cols];
    const float* mid = &tmp[static_cast<size_t>(r) * cols];
    const float* down = &tmp[static_cast<size_t>(r + 1 < rows ? r + 1 : r) * cols];
    float* out = &img[static_cast<size_t>(r) * cols];
    for (uint32_t c = 0; c < cols; ++c) out[c] = 0.25f * (up[c] + 2 * mid[c] + down[c]);
  }
}

void ExtendBox(VoxelBox& box, uint64_t count_before, uint32_t c, uint32_t r, uint32_t k) {
  if (count_before == 0) {
    box = {c, c, r, r, k, k};
    return;
  }
  box.column_min = std::min(box.column_min, c);
  box.column_max = std::max(box.column_max, c);
  box.row_min = std::min(box.row_min, r);
  box.row_max = std::max(box.row_max, r);
  box.slice_min = std::min(box.slice_min, k);
  box.slice_max = std::max(box.slice_max, k);
}

nlohmann::json VoxelBoxToJson(const VoxelBox& b) {
  return {{"column_min", b.column_min}, {"column_max", b.column_max}, {"row_min", b.row_min},
          {"row_max", b.row_max},       {"slice_min", b.slice_min},   {"slice_max", b.slice_max}};
}

Status ValidateSite(const std::string& department, const std::string& calling_ae, const std::string& institution) {
  if (calling_ae.empty() || calling_ae.size() > 16 || calling_ae.find('\\') != std::string::npos) {
    return InvalidArgument("calling AE title must be 1..16 characters without backslash");
  }
  for (const std::string* s : {&department, &institution}) {
    if (s->size() > 64 || s->find('\\') != std::string::npos) {
      return InvalidArgument("department and institution must be at most 64 characters without backslash");
    }
  }
  return Status::Ok();
}

void DicomPutter::Fail(const DcmTagKey& tag, const char* why) {
  if (status_.ok()) status_ = Internal("cannot set " + std::string(DcmTag(tag).getTagName()) + ": " + why);
}

void DicomPutter::Put(const DcmTagKey& tag, const std::string& value) {
  const OFCondition c = item_->putAndInsertString(tag, value.c_str());
  if (c.bad()) Fail(tag, c.text());
}

void DicomPutter::PutU16(const DcmTagKey& tag, uint16_t value) {
  const OFCondition c = item_->putAndInsertUint16(tag, value);
  if (c.bad()) Fail(tag, c.text());
}

void DicomPutter::PutCode(const DcmTagKey& sequence, const std::string& value, const std::string& scheme,
                          const std::string& meaning) {
  DcmItem* code = nullptr;
  const OFCondition c = item_->findOrCreateSequenceItem(sequence, code, -2);
  if (c.bad() || code == nullptr) return Fail(sequence, c.bad() ? c.text() : "no item");
  DicomPutter inner(code);
  inner.Put(DCM_CodeValue, value);
  inner.Put(DCM_CodingSchemeDesignator, scheme);
  inner.Put(DCM_CodeMeaning, meaning);
  if (!inner.status().ok() && status_.ok()) status_ = inner.status();
}

void DicomPutter::PutEmptySequence(const DcmTagKey& sequence) {
  const OFCondition c = item_->insertEmptyElement(sequence);
  if (c.bad()) Fail(sequence, c.text());
}

}  // namespace aihub::phantom::internal
