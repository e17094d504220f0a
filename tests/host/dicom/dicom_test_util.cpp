#include "dicom_test_util.h"

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmimage/diregist.h>  // colour image support for the JPEG-LS encoder
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>
#include <dcmtk/dcmjpeg/djrploss.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/dcmjpls/djrparam.h>

namespace aihub::dicom::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = fs::temp_directory_path() /
          ("aihub-dicom-test-" + std::to_string(rd()) + "-" + std::to_string(counter++));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

namespace {

void Check(const OFCondition& cond, const char* what) {
  if (cond.bad()) throw std::runtime_error(std::string(what) + ": " + cond.text());
}

std::string Join(const double* values, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.10g", values[i]);
    if (i) out += '\\';
    out += buf;
  }
  return out;
}

void RegisterEncoders() {
  static std::once_flag once;
  std::call_once(once, [] {
    DJEncoderRegistration::registerCodecs();
    DJLSEncoderRegistration::registerCodecs();
    DcmRLEEncoderRegistration::registerCodecs();
  });
}

}  // namespace

std::vector<uint8_t> Bytes16(const std::vector<uint16_t>& values) {
  std::vector<uint8_t> out(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    out[2 * i] = static_cast<uint8_t>(values[i] & 0xff);
    out[2 * i + 1] = static_cast<uint8_t>(values[i] >> 8);
  }
  return out;
}

std::vector<uint8_t> Bytes16(const std::vector<int16_t>& values) {
  std::vector<uint16_t> u(values.begin(), values.end());
  return Bytes16(u);
}

std::unique_ptr<DcmFileFormat> MakeSlice(const SliceSpec& spec) {
  auto file = std::make_unique<DcmFileFormat>();
  DcmDataset* ds = file->getDataset();
  const std::string sop = spec.sop_uid.empty() ? spec.series_uid + "." + std::to_string(spec.instance_number)
                                               : spec.sop_uid;
  Check(ds->putAndInsertString(DCM_SOPClassUID, spec.sop_class_uid.c_str()), "SOPClassUID");
  Check(ds->putAndInsertString(DCM_SOPInstanceUID, sop.c_str()), "SOPInstanceUID");
  if (!spec.study_uid.empty()) ds->putAndInsertString(DCM_StudyInstanceUID, spec.study_uid.c_str());
  if (!spec.series_uid.empty()) ds->putAndInsertString(DCM_SeriesInstanceUID, spec.series_uid.c_str());
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertString(DCM_PatientID, "P1");
  ds->putAndInsertString(DCM_PatientName, "Test^Patient");
  ds->putAndInsertString(DCM_SeriesNumber, std::to_string(spec.series_number).c_str());
  ds->putAndInsertString(DCM_InstanceNumber, std::to_string(spec.instance_number).c_str());
  ds->putAndInsertString(DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
  if (spec.position) {
    ds->putAndInsertString(DCM_ImagePositionPatient, Join(spec.position->data(), 3).c_str());
    ds->putAndInsertString(DCM_ImageOrientationPatient, Join(spec.orientation.data(), 6).c_str());
  }
  ds->putAndInsertString(DCM_PixelSpacing, Join(spec.pixel_spacing.data(), 2).c_str());
  ds->putAndInsertString(DCM_SliceThickness, "1");
  if (spec.slope) ds->putAndInsertString(DCM_RescaleSlope, Join(&*spec.slope, 1).c_str());
  if (spec.intercept) ds->putAndInsertString(DCM_RescaleIntercept, Join(&*spec.intercept, 1).c_str());
  ds->putAndInsertUint16(DCM_Rows, spec.rows);
  ds->putAndInsertUint16(DCM_Columns, spec.columns);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, spec.samples_per_pixel);
  ds->putAndInsertString(DCM_PhotometricInterpretation, spec.photometric.c_str());
  if (spec.samples_per_pixel > 1) ds->putAndInsertUint16(DCM_PlanarConfiguration, spec.planar_configuration);
  ds->putAndInsertUint16(DCM_BitsAllocated, spec.bits_allocated);
  ds->putAndInsertUint16(DCM_BitsStored, spec.bits_stored);
  ds->putAndInsertUint16(DCM_HighBit, static_cast<Uint16>(spec.bits_stored - 1));
  ds->putAndInsertUint16(DCM_PixelRepresentation, spec.pixel_representation);
  if (spec.frames > 1) ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(spec.frames).c_str());
  if (spec.omit_pixel_data) return file;

  const uint64_t bytes_per_frame =
      uint64_t{spec.rows} * spec.columns * spec.samples_per_pixel * (spec.bits_allocated / 8);
  std::vector<uint8_t> bytes = spec.pixel_bytes;
  if (bytes.empty()) {
    bytes.resize(bytes_per_frame * spec.frames);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + spec.instance_number);
  }
  if (spec.bits_allocated == 8) {
    Check(ds->putAndInsertUint8Array(DCM_PixelData, bytes.data(), static_cast<unsigned long>(bytes.size())),
          "PixelData");
  } else {
    std::vector<Uint16> words(bytes.size() / 2);
    for (size_t i = 0; i < words.size(); ++i) words[i] = static_cast<Uint16>(bytes[2 * i] | (bytes[2 * i + 1] << 8));
    Check(ds->putAndInsertUint16Array(DCM_PixelData, words.data(), static_cast<unsigned long>(words.size())),
          "PixelData");
  }
  return file;
}

void WriteFile(DcmFileFormat& file, const fs::path& path, E_TransferSyntax xfer) {
  DcmDataset* ds = file.getDataset();
  const DcmXfer target(xfer);
  if (target.isEncapsulated()) {
    RegisterEncoders();
    if (xfer == EXS_JPEGLSLossy) {
      DJLSRepresentationParameter param(2, OFFalse);
      Check(ds->chooseRepresentation(xfer, &param), "chooseRepresentation JPEG-LS near-lossless");
    } else if (xfer == EXS_JPEGProcess1) {
      DJ_RPLossy param(95);
      Check(ds->chooseRepresentation(xfer, &param), "chooseRepresentation JPEG baseline");
    } else if (xfer == EXS_JPEGProcess14SV1) {
      DJ_RPLossless param(1, 0);
      Check(ds->chooseRepresentation(xfer, &param), "chooseRepresentation JPEG lossless");
    } else {
      Check(ds->chooseRepresentation(xfer, nullptr), "chooseRepresentation");
    }
  }
  Check(file.saveFile(path.c_str(), xfer), "saveFile");
}

void WriteSlice(const SliceSpec& spec, const fs::path& path, E_TransferSyntax xfer) {
  auto file = MakeSlice(spec);
  WriteFile(*file, path, xfer);
}

}  // namespace aihub::dicom::testing
