#include "compose/sr_encoder.h"

#include <algorithm>
#include <cstddef>
#include <set>
#include <utility>
#include <vector>

#include "compose/format.h"
#include "compose/ids.h"
#include "dcmtk/config/osconfig.h"  // first, as DCMTK requires
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/cmr/tid1500.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "dcmtk/dcmsr/codes/sct.h"
#include "dcmtk/dcmsr/codes/umls.h"
#include "dcmtk/dcmsr/dsrdoc.h"

// Document structure (all under TID 1500, built with DCMTK's TID 1500/1501/1600/1001 classes; the SCOORD
// image regions, which DCMTK 3.6.7's templates do not offer, are inserted into the finished tree):
//
//   CONTAINER (126000, DCM, "Imaging Measurement Report")
//     HAS CONCEPT MOD  Language of Content (TID 1204): English, United States
//     HAS OBS CONTEXT  TID 1001 -> TID 1002/1004 device observer: UID = algorithm.device_uid, name, manufacturer,
//                      model name (plugin name)
//     HAS CONCEPT MOD  Procedure Reported (CID 100): CT/MR/NM/PET unspecified body region, else Imaging procedure
//     CONTAINS Image Library (TID 1600): one group per source series, one entry per source instance
//     CONTAINS Imaging Measurements (126010, DCM)
//       CONTAINS Measurement Group (125007, DCM), one per finding, in finding order. TID 1501, or TID 1410 shape
//                when the finding has regions (its first region becomes the group's Image Region):
//         Tracking Identifier (112039, DCM)  TEXT   = FindingIdentifier(): "<SR SOP Instance UID>.<n>" (n 1-based)
//         Tracking Unique Identifier (112040) UIDREF = FindingTrackingUid()
//         Finding (121071, DCM)               CODE   = finding concept
//         Image Region (111030, DCM)          SCOORD > SELECTED FROM IMAGE (source SOP instance [, frame]); on a
//                                                      whole-slide image with Pixel Origin Interpretation FRAME, or
//                                                      VOLUME (no frame) for a region on the total pixel matrix
//         Finding Site (363698007, SCT)       CODE   > HAS CONCEPT MOD Laterality (272741003, SCT)
//         <measurement concept>               NUM    value, UCUM unit (TID 300)
//         Certainty of Finding (111012, DCM)  NUM    confidence in percent, UCUM "%"
//         <finding concept>                   CODE   = 52101004 Present | 2667000 Absent | 82334004 Indeterminate
//                                                      (SCT): the qualitative evaluation any reader can rely on
//         Urgency (urgency, 99AIHUB)          CODE   = routine | urgent | critical (private scheme: no standard
//                                                      code fits)
//         Laterality (272741003, SCT)         CODE   only when there is no Finding Site to carry it
//         Comment (121106, DCM)               TEXT   finding text
//       CONTAINS one more Measurement Group per further region of a finding (TID 1410): Tracking Identifier
//                "<finding identifier>.r<k>", own Tracking UID, Finding, Image Region.
//     CONTAINS Qualitative Evaluations (C0034375, UMLS)  [only when the summary is not empty]
//         Impression (121073, DCM)            TEXT   summary
//
// Header: patient/study modules copied from result.study; Modality SR; Series/SOP Instance UID, numbers from the
// result; Content/InstanceCreation Date/Time from completed_at; Contributing Equipment Sequence item for the
// algorithm (IHE AIR) with Purpose of Reference (109102, DCM, "Processing Equipment") from CID 7005, since an
// AI algorithm processes images into derived results; Current Requested Procedure Evidence lists the sources.

namespace aihub::compose {
namespace {

// Any OFCondition failure becomes an Internal status carrying where it happened.
#define AIHUB_SR_CHECK(expr, what)                                                       \
  do {                                                                                   \
    OFCondition aihub_cond_ = (expr);                                                    \
    if (aihub_cond_.bad()) return Internal(std::string("SR: ") + (what) + ": " + aihub_cond_.text()); \
  } while (0)

// DICOM strings from untrusted sources: valid UTF-8 (the SR declares ISO_IR 192), no backslash (the value
// delimiter), no control characters, clipped to the VR's maximum length so the element stays valid.
std::string Clean(const std::string& s, size_t max_chars) {
  std::string out;
  for (char c : ReplaceInvalidUtf8(s)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += '/';
    } else if (u < 0x20 || u == 0x7f) {
      out += ' ';
    } else {
      out += c;
    }
  }
  if (out.size() > max_chars) {
    out.resize(max_chars);
    // Do not cut a UTF-8 sequence in half.
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0x80) != 0) out.pop_back();
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Free text (UT) keeps line breaks; only other control characters and invalid UTF-8 go.
std::string CleanText(const std::string& s) {
  std::string out;
  for (char c : ReplaceInvalidUtf8(s)) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 && c != '\n' && c != '\r' && c != '\t') || u == 0x7f ? ' ' : c;
  }
  return out;
}

DSRCodedEntryValue Code(const CodedConcept& c) {
  std::string meaning = Clean(c.meaning, 64);
  if (meaning.empty()) meaning = Clean(c.value, 64);
  // check=OFFalse: plugin codes are from any scheme; DCMTK picks Long Code Value / URN Code Value by length.
  return DSRCodedEntryValue(Clean(c.value, 1024), Clean(c.scheme, 16), meaning, DSRTypes::CVT_auto, OFFalse);
}

bool IsValidUid(const std::string& uid) {
  if (uid.empty() || uid.size() > 64) return false;
  return DcmUniqueIdentifier::checkStringValue(uid.c_str(), "1").good();
}

CID100_QuantitativeDiagnosticImagingProcedures ProcedureFor(const std::string& modality) {
  using P = CID100_QuantitativeDiagnosticImagingProcedures;
  if (modality == "CT") return P(P::CTUnspecifiedBodyRegion);
  if (modality == "MR") return P(P::MRIUnspecifiedBodyRegion);
  if (modality == "NM") return P(P::NMUnspecifiedBodyRegion);
  if (modality == "PT") return P(P::PETUnspecifiedBodyRegion);
  return P(P::ImagingProcedure);
}

CID244e_Laterality DcmtkLaterality(Laterality l) {
  switch (l) {
    case Laterality::kLeft: return CID244e_Laterality(CID244e_Laterality::Left);
    case Laterality::kRight: return CID244e_Laterality(CID244e_Laterality::Right);
    case Laterality::kBilateral: return CID244e_Laterality(CID244e_Laterality::Bilateral);
    case Laterality::kNone: break;
  }
  return CID244e_Laterality();
}

StatusOr<DSRSpatialCoordinatesValue> Scoord(const Region& region, const std::string& where) {
  const std::vector<float>& p = region.points;
  size_t n = p.size() / 2;
  if (p.size() % 2 != 0) return InvalidArgument(where + ": odd number of coordinates");
  DSRTypes::E_GraphicType type = DSRTypes::GT_Point;
  switch (region.graphic_type) {
    case GraphicType::kPoint:
      if (n != 1) return InvalidArgument(where + ": POINT needs exactly 1 point");
      break;
    case GraphicType::kPolyline:
      type = DSRTypes::GT_Polyline;
      if (n < 2) return InvalidArgument(where + ": POLYLINE needs at least 2 points");
      break;
    case GraphicType::kPolygon:
      type = DSRTypes::GT_Polyline;  // DICOM encodes a closed polygon as a POLYLINE whose last point is its first
      if (n < 3) return InvalidArgument(where + ": POLYGON needs at least 3 points");
      break;
    case GraphicType::kEllipse:
      type = DSRTypes::GT_Ellipse;
      if (n != 4) return InvalidArgument(where + ": ELLIPSE needs exactly 4 points (major then minor axis)");
      break;
  }
  DSRSpatialCoordinatesValue value(type);
  for (size_t i = 0; i < n; ++i) value.getGraphicDataList().addItem(p[2 * i], p[2 * i + 1]);
  if (region.graphic_type == GraphicType::kPolygon && (p[0] != p[2 * n - 2] || p[1] != p[2 * n - 1])) {
    value.getGraphicDataList().addItem(p[0], p[1]);
  }
  return value;
}

// Inserts the Image Region SCOORD (> SELECTED FROM IMAGE) after the Finding item of the measurement group whose
// Tracking Unique Identifier is `tracking_uid`.
Status InsertRegion(DSRDocumentTree& tree, const std::string& tracking_uid, const Region& region,
                    const std::string& where) {
  StatusOr<DSRSpatialCoordinatesValue> scoord = Scoord(region, where);
  if (!scoord.ok()) return scoord.status();
  const DSRCodedEntryValue tracking_uid_concept(CODE_DCM_TrackingUniqueIdentifier);
  const DSRCodedEntryValue finding_concept(CODE_DCM_Finding);
  bool found = false;
  if (tree.gotoRoot() > 0) {
    do {
      DSRContentItem& item = tree.getCurrentContentItem();
      if (item.getValueType() == DSRTypes::VT_UIDRef && item.getConceptName() == tracking_uid_concept &&
          item.getStringValue() == tracking_uid.c_str()) {
        found = true;
        break;
      }
    } while (tree.iterate() > 0);
  }
  if (!found || tree.gotoNext() == 0 || !(tree.getCurrentContentItem().getConceptName() == finding_concept)) {
    return Internal("SR: measurement group for " + where + " not found");
  }
  if (tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_SCoord, DSRTypes::AM_afterCurrent) == 0) {
    return Internal("SR: cannot add image region for " + where);
  }
  DSRContentItem& item = tree.getCurrentContentItem();
  AIHUB_SR_CHECK(item.setConceptName(DSRCodedEntryValue(CODE_DCM_ImageRegion)), where);
  AIHUB_SR_CHECK(item.setSpatialCoordinates(*scoord), where);
  if (tree.addContentItem(DSRTypes::RT_selectedFrom, DSRTypes::VT_Image, DSRTypes::AM_belowCurrent) == 0) {
    return Internal("SR: cannot add image reference for " + where);
  }
  DSRImageReferenceValue image(Clean(region.sop_class_uid, 64), Clean(region.sop_instance_uid, 64));
  if (region.multi_frame && !region.total_pixel_matrix) {
    image.getFrameList().addItem(static_cast<Sint32>(region.frame_number));
  }
  AIHUB_SR_CHECK(tree.getCurrentContentItem().setImageReference(image), where + " image reference");
  return Status::Ok();
}

Status BuildReport(const Result& r, TID1500_MeasurementReport& report, std::vector<std::pair<std::string, const Region*>>& regions) {
  AIHUB_SR_CHECK(report.setLanguage(CID5000_Languages(CID5000_Languages::English),
                                    CID5001_Countries(CID5001_Countries::UnitedStates)),
                 "language");
  const AlgorithmInfo& a = r.algorithm;
  AIHUB_SR_CHECK(report.getObservationContext().addDeviceObserver(
                     a.device_uid, Clean(a.plugin_id, 64), Clean(a.manufacturer, 64), Clean(a.name, 64)),
                 "device observer");
  std::string modality = r.sources.empty() ? "" : r.sources.front().modality;
  AIHUB_SR_CHECK(report.addProcedureReported(ProcedureFor(modality)), "procedure reported");

  // Image library: one group per source series; entries need a dataset, so build a minimal one per instance.
  TID1600_ImageLibrary& library = report.getImageLibrary();
  if (!library.hasImageLibrary()) AIHUB_SR_CHECK(library.createNewImageLibrary(), "image library");
  for (const SourceSeries& series : r.sources) {
    if (series.instances.empty()) continue;
    AIHUB_SR_CHECK(library.addImageGroup(), "image library group");
    for (const SourceInstance& inst : series.instances) {
      DcmItem item;
      item.putAndInsertString(DCM_SOPClassUID, Clean(inst.sop_class_uid, 64).c_str());
      item.putAndInsertString(DCM_SOPInstanceUID, Clean(inst.sop_instance_uid, 64).c_str());
      if (!series.modality.empty()) item.putAndInsertString(DCM_Modality, Clean(series.modality, 16).c_str());
      item.putAndInsertString(DCM_SeriesInstanceUID, Clean(series.series_instance_uid, 64).c_str());
      AIHUB_SR_CHECK(library.addImageEntry(item, TID1600_ImageLibrary::withAllDescriptors), "image library entry");
    }
  }

  using Group = TID1500_MeasurementReport::TID1501_Measurements;
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const Finding& f = r.findings[i];
    const size_t n = i + 1;
    const std::string where = "finding " + std::to_string(n);
    AIHUB_SR_CHECK(report.addIndividualMeasurements(OFFalse), where);
    Group& g = report.getIndividualMeasurements();
    const std::string tracking_uid = FindingTrackingUid(r, n);
    AIHUB_SR_CHECK(g.setTrackingIdentifier(Clean(FindingIdentifier(r, n), 1024)), where + " tracking identifier");
    AIHUB_SR_CHECK(g.setTrackingUniqueIdentifier(tracking_uid), where + " tracking uid");
    AIHUB_SR_CHECK(g.setFinding(Code(f.concept), OFFalse), where + " finding");
    if (f.site) {
      AIHUB_SR_CHECK(g.addFindingSite(Code(*f.site), DcmtkLaterality(f.laterality), DSRCodedEntryValue(), OFFalse),
                     where + " finding site");
    }
    for (size_t k = 0; k < f.measurements.size(); ++k) {
      const Measurement& m = f.measurements[k];
      std::string unit = m.unit_ucum.empty() ? "1" : m.unit_ucum;
      std::string unit_meaning = m.unit_meaning.empty() ? unit : m.unit_meaning;
      Group::MeasurementValue value(
          FormatNumber(m.value, 16).c_str(),
          CID7181_AbstractMultiDimensionalImageModelComponentUnits(Code({unit, "UCUM", unit_meaning})), OFFalse);
      AIHUB_SR_CHECK(g.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(Code(m.concept)), value, OFFalse,
                                      OFFalse),
                     where + " measurement " + std::to_string(k + 1));
    }
    Group::MeasurementValue certainty(
        FormatNumber(ConfidencePercent(f.confidence), 16).c_str(),
        CID7181_AbstractMultiDimensionalImageModelComponentUnits(Code({"%", "UCUM", "percent"})), OFFalse);
    AIHUB_SR_CHECK(g.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(Code(CertaintyConcept())),
                                    certainty, OFFalse, OFFalse),
                   where + " certainty");
    AIHUB_SR_CHECK(g.addQualitativeEvaluation(Code(f.concept), Code(PresenceConcept(f.presence)), OFFalse),
                   where + " presence");
    AIHUB_SR_CHECK(g.addQualitativeEvaluation(Code(UrgencyConcept()), Code(UrgencyValue(f.urgency)), OFFalse),
                   where + " urgency");
    if (!f.site && f.laterality != Laterality::kNone) {
      AIHUB_SR_CHECK(g.addQualitativeEvaluation(DSRCodedEntryValue(CODE_SCT_Laterality),
                                                Code(LateralityConcept(f.laterality)), OFFalse),
                     where + " laterality");
    }
    if (!f.text.empty()) {
      AIHUB_SR_CHECK(g.addQualitativeEvaluation(DSRCodedEntryValue(CODE_DCM_Comment), CleanText(f.text), OFFalse),
                     where + " text");
    }
    if (!f.regions.empty()) regions.emplace_back(tracking_uid, &f.regions[0]);
    for (size_t k = 1; k < f.regions.size(); ++k) {
      const std::string extra = where + " region " + std::to_string(k + 1);
      AIHUB_SR_CHECK(report.addIndividualMeasurements(OFFalse), extra);
      Group& rg = report.getIndividualMeasurements();
      const std::string uid = FindingTrackingUid(r, n, k);
      AIHUB_SR_CHECK(rg.setTrackingIdentifier(Clean(FindingIdentifier(r, n) + ".r" + std::to_string(k + 1), 1024)),
                     extra);
      AIHUB_SR_CHECK(rg.setTrackingUniqueIdentifier(uid), extra);
      AIHUB_SR_CHECK(rg.setFinding(Code(f.concept), OFFalse), extra);
      regions.emplace_back(uid, &f.regions[k]);
    }
  }
  if (!r.summary.empty()) {
    AIHUB_SR_CHECK(report.addQualitativeEvaluation(DSRCodedEntryValue(CODE_DCM_Impression), CleanText(r.summary),
                                                   OFFalse),
                   "summary");
  }
  return Status::Ok();
}

Status Put(DcmItem& item, const DcmTagKey& tag, const std::string& value, const char* what) {
  OFCondition cond = item.putAndInsertString(tag, value.c_str());
  if (cond.bad()) return Internal(std::string("SR: ") + what + ": " + cond.text());
  return Status::Ok();
}

Status AddContributingEquipment(const Result& r, const Timestamp& ts, DcmItem& dataset) {
  const AlgorithmInfo& a = r.algorithm;
  DcmItem* item = nullptr;
  AIHUB_SR_CHECK(dataset.findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, item, 0), "equipment");
  Status s = Put(*item, DCM_Manufacturer, Clean(a.manufacturer.empty() ? "unknown" : a.manufacturer, 64),
                 "equipment manufacturer");
  if (s.ok()) s = Put(*item, DCM_ManufacturerModelName, Clean(a.name.empty() ? a.plugin_id : a.name, 64), "model");
  if (s.ok()) {
    std::string versions = Clean(a.version, 64);
    if (!a.model_version.empty()) versions += "\\" + Clean(a.model_version, 64);
    s = Put(*item, DCM_SoftwareVersions, versions, "software versions");
  }
  if (s.ok()) s = Put(*item, DCM_DeviceUID, a.device_uid, "device uid");
  if (s.ok()) s = Put(*item, DCM_ContributionDateTime, ts.date + ts.time + ts.offset, "contribution date time");
  if (s.ok()) {
    s = Put(*item, DCM_ContributionDescription, Clean("AI algorithm " + a.plugin_id, 64), "contribution description");
  }
  if (!s.ok()) return s;
  DcmItem* purpose = nullptr;
  AIHUB_SR_CHECK(item->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0), "purpose");
  s = Put(*purpose, DCM_CodeValue, "109102", "purpose");
  if (s.ok()) s = Put(*purpose, DCM_CodingSchemeDesignator, "DCM", "purpose");
  if (s.ok()) s = Put(*purpose, DCM_CodeMeaning, "Processing Equipment", "purpose");
  return s;
}

// PS3.3 C.12.1.1.2.1: private coding schemes are identified in the Coding Scheme Identification Sequence.
Status IdentifyLocalScheme(DcmItem& dataset) {
  DcmItem* item = nullptr;
  AIHUB_SR_CHECK(dataset.findOrCreateSequenceItem(DCM_CodingSchemeIdentificationSequence, item, -2), "schemes");
  Status s = Put(*item, DCM_CodingSchemeDesignator, kLocalScheme, "scheme designator");
  if (s.ok()) s = Put(*item, DCM_CodingSchemeName, "aihub local codes", "scheme name");
  if (s.ok()) s = Put(*item, DCM_CodingSchemeResponsibleOrganization, "aihub", "scheme organization");
  return s;
}

// PS3.3 C.18.6.1: an SCOORD selected from a VL Whole Slide Microscopy Image states its Pixel Origin
// Interpretation: FRAME when the image reference names a frame, VOLUME (the total pixel matrix) when it does not.
// DCMTK 3.6.7's SR classes have no field for it, so it is added to the written content items.
Status AddPixelOriginInterpretation(DcmItem& parent) {
  DcmSequenceOfItems* content = nullptr;
  if (parent.findAndGetSequence(DCM_ContentSequence, content).bad() || content == nullptr) return Status::Ok();
  for (unsigned long i = 0; i < content->card(); ++i) {
    DcmItem* item = content->getItem(i);
    if (item == nullptr) continue;
    OFString value_type;
    item->findAndGetOFString(DCM_ValueType, value_type);
    DcmSequenceOfItems* children = nullptr;
    if (value_type == "SCOORD" && item->findAndGetSequence(DCM_ContentSequence, children).good() && children) {
      for (unsigned long k = 0; k < children->card(); ++k) {
        DcmItem* image = children->getItem(k);
        OFString child_type, sop_class;
        if (image == nullptr || image->findAndGetOFString(DCM_ValueType, child_type).bad() || child_type != "IMAGE") {
          continue;
        }
        DcmItem* reference = nullptr;
        if (image->findAndGetSequenceItem(DCM_ReferencedSOPSequence, reference, 0).bad() || reference == nullptr) {
          continue;
        }
        reference->findAndGetOFString(DCM_ReferencedSOPClassUID, sop_class);
        if (sop_class != UID_VLWholeSlideMicroscopyImageStorage) continue;
        const bool frame = reference->tagExistsWithValue(DCM_ReferencedFrameNumber);
        Status s = Put(*item, DCM_PixelOriginInterpretation, frame ? "FRAME" : "VOLUME", "pixel origin");
        if (!s.ok()) return s;
      }
    }
    Status s = AddPixelOriginInterpretation(*item);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

StatusOr<std::string> Serialize(DcmFileFormat& file) {
  const E_TransferSyntax xfer = EXS_LittleEndianExplicit;
  OFCondition cond = file.validateMetaInfo(xfer);
  if (cond.bad()) return Internal(std::string("SR: meta header: ") + cond.text());
  std::string out;
  std::vector<char> buffer(64 * 1024);
  DcmOutputBufferStream stream(buffer.data(), buffer.size());
  file.transferInit();
  cond = EC_StreamNotifyClient;
  while (cond == EC_StreamNotifyClient) {
    cond = file.write(stream, xfer, EET_ExplicitLength, nullptr);
    void* data = nullptr;
    offile_off_t length = 0;
    stream.flushBuffer(data, length);
    out.append(static_cast<const char*>(data), static_cast<size_t>(length));
  }
  file.transferEnd();
  if (cond.bad()) return Internal(std::string("SR: write: ") + cond.text());
  stream.flush();
  void* data = nullptr;
  offile_off_t length = 0;
  stream.flushBuffer(data, length);
  out.append(static_cast<const char*>(data), static_cast<size_t>(length));
  return out;
}

}  // namespace

StatusOr<std::string> EncodeSr(const Result& r) {
  if (!IsValidUid(r.sr_series_instance_uid) || !IsValidUid(r.sr_sop_instance_uid) || !IsValidUid(r.algorithm.device_uid)) {
    return FailedPrecondition("SR: identifiers not assigned (call AssignIdentifiers first)");
  }
  if (!IsValidUid(r.study.study_instance_uid)) {
    return InvalidArgument("SR: study.study_instance_uid is not a valid UID: \"" + r.study.study_instance_uid + "\"");
  }
  std::optional<Timestamp> ts = ParseIsoTimestamp(r.completed_at);
  if (!ts || ts->time.empty()) {
    return InvalidArgument("SR: completed_at is not an ISO 8601 date-time: \"" + r.completed_at + "\"");
  }

  TID1500_MeasurementReport report(CID7021_MeasurementReportDocumentTitles(
      CID7021_MeasurementReportDocumentTitles::ImagingMeasurementReport));
  std::vector<std::pair<std::string, const Region*>> regions;
  Status built = BuildReport(r, report, regions);
  if (!built.ok()) return built;

  DSRDocument doc(DSRTypes::DT_Comprehensive3DSR);
  AIHUB_SR_CHECK(doc.setTreeFromRootTemplate(report, OFTrue), "document tree");
  // DCMTK's TID 1500 tree is typed Enhanced SR; the result is Comprehensive 3D SR (a superset) per the design.
  AIHUB_SR_CHECK(doc.changeDocumentType(DSRTypes::DT_Comprehensive3DSR), "document type");
  for (size_t i = 0; i < regions.size(); ++i) {
    Status s = InsertRegion(doc.getTree(), regions[i].first, *regions[i].second,
                            "region " + std::to_string(i + 1));
    if (!s.ok()) return s;
  }

  doc.setSpecificCharacterSetType(DSRTypes::CS_UTF8);
  AIHUB_SR_CHECK(doc.createNewSeriesInStudy(r.study.study_instance_uid), "study uid");
  // Type 2 identity attributes: a value DCMTK rejects (wrong VR format) is left empty rather than failing.
  const StudyIdentity& st = r.study;
  doc.setPatientName(Clean(st.patient_name, 64 * 5));
  doc.setPatientID(Clean(st.patient_id, 64));
  doc.setIssuerOfPatientID(Clean(st.issuer_of_patient_id, 64));
  doc.setPatientBirthDate(Clean(st.patient_birth_date, 8));
  doc.setPatientSex(Clean(st.patient_sex, 16));
  doc.setStudyDate(Clean(st.study_date, 8));
  doc.setStudyTime(Clean(st.study_time, 16));
  doc.setStudyID(Clean(st.study_id, 16));
  doc.setAccessionNumber(Clean(st.accession_number, 16));
  doc.setStudyDescription(Clean(st.study_description, 64));
  doc.setReferringPhysicianName(Clean(st.referring_physician_name, 64 * 5));
  AIHUB_SR_CHECK(doc.setManufacturer("aihub"), "manufacturer");
  AIHUB_SR_CHECK(doc.setManufacturerModelName("aihub result composer"), "model name");
  AIHUB_SR_CHECK(doc.setDeviceSerialNumber("aihub"), "device serial number");
  AIHUB_SR_CHECK(doc.setSoftwareVersions("aihub"), "software versions");
  doc.setSeriesDescription(Clean("AI result " + (r.algorithm.name.empty() ? r.algorithm.plugin_id : r.algorithm.name), 64));
  AIHUB_SR_CHECK(doc.setSeriesNumber(std::to_string(r.sr_series_number)), "series number");
  AIHUB_SR_CHECK(doc.setInstanceNumber(std::to_string(r.sr_instance_number)), "instance number");
  AIHUB_SR_CHECK(doc.setContentDate(ts->date), "content date");
  AIHUB_SR_CHECK(doc.setContentTime(ts->time), "content time");
  AIHUB_SR_CHECK(doc.setSeriesDate(ts->date), "series date");
  AIHUB_SR_CHECK(doc.setSeriesTime(ts->time), "series time");
  if (!ts->offset.empty()) AIHUB_SR_CHECK(doc.setTimezoneOffsetFromUTC(ts->offset), "timezone");
  doc.completeDocument();  // CompletionFlag COMPLETE; VerificationFlag stays UNVERIFIED

  // Evidence: every source instance, plus any region reference not among them.
  DSRSOPInstanceReferenceList& evidence = doc.getCurrentRequestedProcedureEvidence();
  for (const SourceSeries& series : r.sources) {
    for (const SourceInstance& inst : series.instances) {
      AIHUB_SR_CHECK(evidence.addItem(st.study_instance_uid, Clean(series.series_instance_uid, 64),
                                      Clean(inst.sop_class_uid, 64), Clean(inst.sop_instance_uid, 64)),
                     "evidence");
    }
  }
  for (const Finding& f : r.findings) {
    for (const Region& g : f.regions) {
      if (g.series_instance_uid.empty()) continue;
      evidence.addItem(st.study_instance_uid, Clean(g.series_instance_uid, 64), Clean(g.sop_class_uid, 64),
                       Clean(g.sop_instance_uid, 64));  // duplicates are merged by DCMTK
    }
  }

  if (!r.predecessor_sr_sop_instance_uid.empty()) {
    AIHUB_SR_CHECK(doc.getPredecessorDocuments().addItem(st.study_instance_uid,
                                                         Clean(r.predecessor_sr_series_instance_uid, 64),
                                                         UID_Comprehensive3DSRStorage,
                                                         Clean(r.predecessor_sr_sop_instance_uid, 64)),
                   "predecessor document");
  }

  DcmFileFormat file;
  DcmDataset& dataset = *file.getDataset();
  AIHUB_SR_CHECK(doc.write(dataset), "write document");
  // DCMTK draws these from a random generator and the clock; replace them with the result's own values.
  Status s = Put(dataset, DCM_SeriesInstanceUID, r.sr_series_instance_uid, "series uid");
  if (s.ok()) s = Put(dataset, DCM_SOPInstanceUID, r.sr_sop_instance_uid, "sop instance uid");
  if (s.ok()) s = Put(dataset, DCM_InstanceCreationDate, ts->date, "instance creation date");
  if (s.ok()) s = Put(dataset, DCM_InstanceCreationTime, ts->time, "instance creation time");
  if (s.ok()) s = AddContributingEquipment(r, *ts, dataset);
  if (s.ok()) s = IdentifyLocalScheme(dataset);
  if (s.ok()) s = AddPixelOriginInterpretation(dataset);
  if (!s.ok()) return s;
  return Serialize(file);
}

}  // namespace aihub::compose
