// Helpers for the adapter/core tests: small DICOM instances written with DCMTK and put into a spool.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>

#include "core/spool.h"
#include "../../host/dicom/dicom_test_util.h"

namespace aihub::adapter::testing {

using dicom::testing::SliceSpec;
using dicom::testing::TempDir;

inline constexpr const char* kStudy = "1.2.826.0.1.3680043.9.7777.1";
inline constexpr const char* kSeriesA = "1.2.826.0.1.3680043.9.7777.1.1";
inline constexpr const char* kSeriesB = "1.2.826.0.1.3680043.9.7777.1.2";

inline std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteAll(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A small CT slice of `study`/`series` with SOP Instance UID <series>.<number>.
inline SliceSpec Slice(const std::string& study, const std::string& series, int number, uint16_t size = 4) {
  SliceSpec spec;
  spec.study_uid = study;
  spec.series_uid = series;
  spec.instance_number = number;
  spec.series_number = series == kSeriesB ? 2 : 1;
  spec.rows = size;
  spec.columns = size;
  return spec;
}

// Writes `spec` as Part 10; `tags` override or add string elements, e.g. {DCM_InstitutionalDepartmentName, "ER"}.
inline void WriteInstance(const SliceSpec& spec, const std::filesystem::path& path,
                          const std::map<DcmTagKey, std::string>& tags = {}) {
  auto file = dicom::testing::MakeSlice(spec);
  for (const auto& [key, value] : tags) file->getDataset()->putAndInsertString(key, value.c_str());
  dicom::testing::WriteFile(*file, path, EXS_LittleEndianExplicit);
}

inline std::string SopOf(const SliceSpec& spec) {
  return spec.sop_uid.empty() ? spec.series_uid + "." + std::to_string(spec.instance_number) : spec.sop_uid;
}

// Writes the instance into the spool's incoming folder and adds it, as a receiver would. Returns the file's bytes.
inline std::string AddSlice(Spool& spool, const SliceSpec& spec, int64_t now_ms,
                         const std::string& calling_ae = "", const std::map<DcmTagKey, std::string>& tags = {}) {
  const std::filesystem::path temp = spool.IncomingPath();
  WriteInstance(spec, temp, tags);
  std::string bytes = ReadAll(temp);
  IncomingInstance in{temp, spec.study_uid, spec.series_uid, SopOf(spec), calling_ae,
                      static_cast<int64_t>(bytes.size())};
  const Status st = spool.AddInstance(in, now_ms);
  if (!st.ok()) throw std::runtime_error("AddInstance: " + st.ToString());
  return bytes;
}

inline std::filesystem::path SpooledPath(const Spool& spool, const std::string& study,
                                         const std::string& series, const std::string& sop) {
  return spool.dir() / "files" / study / series / (sop + ".dcm");
}

inline size_t CountFiles(const std::filesystem::path& dir) {
  std::error_code ec;
  size_t n = 0;
  for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file()) ++n;
  }
  return n;
}

}  // namespace aihub::adapter::testing
