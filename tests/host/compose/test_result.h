// A realistic Result for the composer tests: head CT, intracranial hemorrhage present (volume 12.5 mL, a polygon
// on frame 17 of a multi-frame image and a point on a single-frame image), plus an absent finding.
#pragma once

#include <string>

#include "compose/ids.h"
#include "compose/result.h"

namespace aihub::compose::testing {

inline constexpr const char* kStudyUid = "1.2.826.0.1.3680043.8.498.10001";
inline constexpr const char* kEnhancedSeriesUid = "1.2.826.0.1.3680043.8.498.10002";
inline constexpr const char* kEnhancedCtUid = "1.2.826.0.1.3680043.8.498.10003";
inline constexpr const char* kLegacySeriesUid = "1.2.826.0.1.3680043.8.498.10004";
inline constexpr const char* kCtImageUid1 = "1.2.826.0.1.3680043.8.498.10005";
inline constexpr const char* kCtImageUid2 = "1.2.826.0.1.3680043.8.498.10006";
inline constexpr const char* kEnhancedCtClass = "1.2.840.10008.5.1.4.1.1.2.1";
inline constexpr const char* kCtImageClass = "1.2.840.10008.5.1.4.1.1.2";

inline Result MakeHeadCtResult() {
  Result r;
  r.job_key = std::string(kStudyUid) + "|ich|1.4.0|2";
  r.study.study_instance_uid = kStudyUid;
  r.study.accession_number = "ACC20261128";
  r.study.study_id = "S1";
  r.study.study_date = "20261128";
  r.study.study_time = "005500";
  r.study.study_description = "CT HEAD WO CONTRAST";
  r.study.referring_physician_name = "Referrer^Rita";
  r.study.patient_id = "MRN12345";
  r.study.issuer_of_patient_id = "HOSP";
  r.study.patient_name = "Doe^John^Q^Dr^Jr";
  r.study.patient_birth_date = "19600214";
  r.study.patient_sex = "M";
  r.sources = {{kEnhancedSeriesUid, "CT", {{kEnhancedCtClass, kEnhancedCtUid}}},
               {kLegacySeriesUid, "CT", {{kCtImageClass, kCtImageUid1}, {kCtImageClass, kCtImageUid2}}}};
  r.algorithm.plugin_id = "ich";
  r.algorithm.name = "ICH Detector";
  r.algorithm.version = "1.4.0";
  r.algorithm.model_version = "2";
  r.algorithm.manufacturer = "Example AI Lab";
  r.algorithm.so_sha256 = std::string(64, 'a');
  r.department = "emergency";
  r.mode = "assistive";

  Finding ich;
  ich.concept = {"50960005", "SCT", "Hemorrhage"};
  ich.presence = Presence::kPresent;
  ich.confidence = 0.93;
  ich.urgency = Urgency::kCritical;
  ich.laterality = Laterality::kLeft;
  ich.site = CodedConcept{"12738006", "SCT", "Brain"};
  ich.text = "Acute left parietal hemorrhage.";
  ich.measurements.push_back({{"118565006", "SCT", "Volume"}, 12.5, "mL", "milliliter"});
  ich.measurements.push_back({{"410668003", "SCT", "Length"}, 31.25, "mm", "millimeter"});
  Region polygon;
  polygon.series_instance_uid = kEnhancedSeriesUid;
  polygon.sop_class_uid = kEnhancedCtClass;
  polygon.sop_instance_uid = kEnhancedCtUid;
  polygon.frame_number = 17;
  polygon.multi_frame = true;
  polygon.graphic_type = GraphicType::kPolygon;
  polygon.points = {100, 100, 140, 102, 150, 140, 105, 145};
  ich.regions.push_back(polygon);
  Region point;
  point.series_instance_uid = kLegacySeriesUid;
  point.sop_class_uid = kCtImageClass;
  point.sop_instance_uid = kCtImageUid2;
  point.graphic_type = GraphicType::kPoint;
  point.points = {256.5f, 200.25f};
  ich.regions.push_back(point);
  r.findings.push_back(ich);

  Finding midline;
  midline.concept = {"RID4700", "RADLEX", "Midline shift"};
  midline.presence = Presence::kAbsent;
  midline.confidence = 0.88;
  r.findings.push_back(midline);

  r.summary = "Intracranial hemorrhage detected (12.5 mL). No midline shift.";
  r.completed_at = "2026-11-28T01:02:03Z";
  AssignIdentifiers(r);
  return r;
}

}  // namespace aihub::compose::testing
