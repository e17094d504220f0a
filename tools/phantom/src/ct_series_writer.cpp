#include "phantom/ct_series_writer.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <cstdio>
#include <system_error>

#include "common/hash.h"

namespace aihub::phantom {
namespace {

// Decimal String: at most 16 characters, so shorten precision until it fits.
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

class Writer {
 public:
  explicit Writer(DcmItem* item) : item_(item) {}
  void Put(const DcmTagKey& tag, const std::string& value) {
    const OFCondition c = item_->putAndInsertString(tag, value.c_str());
    if (c.bad() && status_.ok()) status_ = Internal("cannot set " + std::string(DcmTag(tag).getTagName()) + ": " + c.text());
  }
  void PutU16(const DcmTagKey& tag, uint16_t value) {
    const OFCondition c = item_->putAndInsertUint16(tag, value);
    if (c.bad() && status_.ok()) status_ = Internal(std::string("cannot set US element: ") + c.text());
  }
  const Status& status() const { return status_; }

 private:
  DcmItem* item_;
  Status status_;
};

constexpr int kRescaleIntercept = -1024;

}  // namespace

std::string CtSliceSopInstanceUid(const CtSeriesInfo& series, uint32_t index) {
  return UidFromSeed(series.series_instance_uid + "/instance/" + std::to_string(index + 1));
}

Status WriteCtSlice(const StudyIdentity& study, const CtSeriesInfo& series, const CtVolume& volume, uint32_t index,
                    const std::filesystem::path& file) {
  if (index >= volume.slices || volume.hu.size() != volume.SliceVoxels() * volume.slices) {
    return InvalidArgument("slice index out of range or volume size inconsistent");
  }
  DcmFileFormat format;
  DcmDataset* ds = format.getDataset();
  Writer w(ds);
  const std::string sop_uid = CtSliceSopInstanceUid(series, index);
  const double z = volume.origin_mm[2] + index * volume.slice_spacing_mm;
  const std::string& date = study.study_date;

  // SOP Common, General Study, Patient.
  w.Put(DCM_SpecificCharacterSet, "ISO_IR 100");
  w.Put(DCM_ImageType, series.image_type);
  w.Put(DCM_SOPClassUID, UID_CTImageStorage);
  w.Put(DCM_SOPInstanceUID, sop_uid);
  w.Put(DCM_StudyDate, date);
  w.Put(DCM_SeriesDate, date);
  w.Put(DCM_AcquisitionDate, date);
  w.Put(DCM_ContentDate, date);
  w.Put(DCM_StudyTime, study.study_time);
  w.Put(DCM_SeriesTime, study.study_time);
  w.Put(DCM_AcquisitionTime, study.study_time);
  w.Put(DCM_ContentTime, study.study_time);
  w.Put(DCM_AccessionNumber, study.accession_number);
  w.Put(DCM_Modality, "CT");
  w.Put(DCM_Manufacturer, series.manufacturer);
  w.Put(DCM_InstitutionName, study.institution_name);
  w.Put(DCM_ReferringPhysicianName, study.referring_physician_name);
  w.Put(DCM_StationName, series.station_name);
  w.Put(DCM_StudyDescription, study.study_description);
  w.Put(DCM_SeriesDescription, series.series_description);
  w.Put(DCM_InstitutionalDepartmentName, study.department);
  w.Put(DCM_ManufacturerModelName, series.model_name);
  w.Put(DCM_PatientName, study.patient_name);
  w.Put(DCM_PatientID, study.patient_id);
  w.Put(DCM_PatientBirthDate, study.patient_birth_date);
  w.Put(DCM_PatientSex, study.patient_sex);
  w.Put(DCM_PatientAge, study.patient_age);

  // CT acquisition.
  w.Put(DCM_BodyPartExamined, series.body_part_examined);
  w.Put(DCM_SliceThickness, FormatDs(volume.slice_spacing_mm));
  w.Put(DCM_KVP, FormatDs(series.kvp));
  w.Put(DCM_DataCollectionDiameter, "500");
  w.Put(DCM_SoftwareVersions, series.software_version);
  w.Put(DCM_ProtocolName, series.protocol_name);
  w.Put(DCM_ReconstructionDiameter, FormatDs(volume.column_spacing_mm * volume.columns));
  w.Put(DCM_GantryDetectorTilt, "0");
  w.Put(DCM_TableHeight, "150");
  w.Put(DCM_RotationDirection, "CW");
  w.Put(DCM_XRayTubeCurrent, std::to_string(series.tube_current_ma));
  w.Put(DCM_Exposure, std::to_string(series.exposure_mas));
  w.Put(DCM_ConvolutionKernel, series.convolution_kernel);
  w.Put(DCM_PatientPosition, series.patient_position);

  // Series, frame of reference, image plane.
  w.Put(DCM_StudyInstanceUID, study.study_instance_uid);
  w.Put(DCM_SeriesInstanceUID, series.series_instance_uid);
  w.Put(DCM_StudyID, study.study_id);
  w.Put(DCM_SeriesNumber, std::to_string(series.series_number));
  w.Put(DCM_AcquisitionNumber, "1");
  w.Put(DCM_InstanceNumber, std::to_string(index + 1));
  w.Put(DCM_PatientOrientation, "L\\P");
  w.Put(DCM_ImagePositionPatient,
        FormatDs({volume.origin_mm[0], volume.origin_mm[1], z}));  // centre of the first pixel
  w.Put(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
  w.Put(DCM_FrameOfReferenceUID, series.frame_of_reference_uid);
  w.Put(DCM_PositionReferenceIndicator, "");
  w.Put(DCM_SliceLocation, FormatDs(z));

  // Image pixel and presentation.
  w.PutU16(DCM_SamplesPerPixel, 1);
  w.Put(DCM_PhotometricInterpretation, "MONOCHROME2");
  w.PutU16(DCM_Rows, static_cast<uint16_t>(volume.rows));
  w.PutU16(DCM_Columns, static_cast<uint16_t>(volume.columns));
  w.Put(DCM_PixelSpacing, FormatDs({volume.row_spacing_mm, volume.column_spacing_mm}));
  w.PutU16(DCM_BitsAllocated, 16);
  w.PutU16(DCM_BitsStored, 16);
  w.PutU16(DCM_HighBit, 15);
  w.PutU16(DCM_PixelRepresentation, 1);
  w.Put(DCM_WindowCenter, FormatDs(series.window_center));
  w.Put(DCM_WindowWidth, FormatDs(series.window_width));
  w.Put(DCM_RescaleIntercept, std::to_string(kRescaleIntercept));
  w.Put(DCM_RescaleSlope, "1");
  w.Put(DCM_RescaleType, "HU");
  if (!w.status().ok()) return w.status();

  const size_t n = volume.SliceVoxels();
  std::vector<Uint16> stored(n);
  const int16_t* hu = volume.Slice(index);
  for (size_t i = 0; i < n; ++i) {
    const int v = std::clamp<int>(hu[i], -1024, 3071) - kRescaleIntercept;
    stored[i] = static_cast<Uint16>(static_cast<int16_t>(v));
  }
  OFCondition c = ds->putAndInsertUint16Array(DCM_PixelData, stored.data(), static_cast<unsigned long>(n));
  if (c.bad()) return Internal(std::string("cannot set PixelData: ") + c.text());

  if (!study.calling_ae.empty()) {
    c = format.getMetaInfo()->putAndInsertString(DCM_SourceApplicationEntityTitle, study.calling_ae.c_str());
    if (c.bad()) return Internal(std::string("cannot set SourceApplicationEntityTitle: ") + c.text());
  }
  c = format.saveFile(file.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0,
                      EWM_updateMeta);
  if (c.bad()) return Unavailable("cannot write " + file.string() + ": " + c.text());
  return Status::Ok();
}

StatusOr<std::vector<std::string>> WriteCtSeries(const StudyIdentity& study, const CtSeriesInfo& series,
                                                 const CtVolume& volume, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create " + dir.string() + ": " + ec.message());
  std::vector<std::string> files;
  for (uint32_t k = 0; k < volume.slices; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "CT%06u.dcm", k + 1);
    Status s = WriteCtSlice(study, series, volume, k, dir / name);
    if (!s.ok()) return s;
    files.emplace_back(name);
  }
  return files;
}

}  // namespace aihub::phantom
