// The one result model every encoding (DICOM SR, FHIR R4, HL7 v2 ORU) is made from.
// Plain data: filled by the plugin host from the result builder, stored as JSON in the job store,
// rendered by the composers. Identifiers shared by the three encodings live here, computed once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace aihub {

struct CodedConcept {
  std::string value;    // code value, e.g. "52101004"
  std::string scheme;   // coding scheme designator, e.g. "SCT"
  std::string meaning;  // code meaning, e.g. "Present"
  bool operator==(const CodedConcept& o) const {
    return value == o.value && scheme == o.scheme && meaning == o.meaning;
  }
};

enum class Presence { kAbsent = 0, kPresent = 1, kIndeterminate = 2 };
enum class Urgency { kRoutine = 0, kUrgent = 1, kCritical = 2 };
enum class Laterality { kNone = 0, kLeft = 1, kRight = 2, kBilateral = 3 };
enum class GraphicType { kPoint = 0, kPolyline = 1, kPolygon = 2, kEllipse = 3 };

struct Measurement {
  CodedConcept concept;
  double value = 0;
  std::string unit_ucum;     // e.g. "mL"
  std::string unit_meaning;  // e.g. "milliliter"
};

// A region on one frame, in pixel coordinates (column, row) of that frame.
struct Region {
  std::string series_instance_uid;
  std::string sop_class_uid;         // of the referenced image
  std::string sop_instance_uid;      // of the referenced image
  uint32_t frame_number = 1;         // 1-based frame in that instance (for multi-frame images)
  bool multi_frame = false;          // true when the referenced instance has more than one frame
  bool total_pixel_matrix = false;   // points on the whole-slide image's total pixel matrix, not on one frame
  GraphicType graphic_type = GraphicType::kPoint;
  std::vector<float> points;         // column, row, column, row, ...
};

struct Finding {
  CodedConcept concept;              // what was looked for, e.g. intracranial hemorrhage
  Presence presence = Presence::kAbsent;
  double confidence = 0;             // [0, 1]
  Urgency urgency = Urgency::kRoutine;
  Laterality laterality = Laterality::kNone;
  std::optional<CodedConcept> site;  // anatomic location
  std::string text;                  // short statement
  std::vector<Measurement> measurements;
  std::vector<Region> regions;
};

// Which algorithm produced the result (IHE AI Results: Contributing Equipment Sequence).
struct AlgorithmInfo {
  std::string plugin_id;
  std::string name;
  std::string version;        // plugin software version
  std::string model_version;
  std::string manufacturer;
  std::string so_sha256;      // content hash of the loaded .so
  std::string device_uid;     // 2.25 UID derived from (plugin id, version, model version)
};

// A source image the result was derived from.
struct SourceInstance {
  std::string sop_class_uid;
  std::string sop_instance_uid;
};

struct SourceSeries {
  std::string series_instance_uid;
  std::string modality;
  std::vector<SourceInstance> instances;
};

// Patient and study identification copied from the source study so reports file where they belong.
struct StudyIdentity {
  std::string study_instance_uid;
  std::string accession_number;
  std::string study_id;
  std::string study_date;          // DICOM DA
  std::string study_time;          // DICOM TM
  std::string study_description;
  std::string referring_physician_name;
  std::string patient_id;
  std::string issuer_of_patient_id;
  std::string patient_name;        // DICOM PN, '^'-separated
  std::string patient_birth_date;
  std::string patient_sex;
};

struct Result {
  std::string job_key;             // stable key of the job: study uid, plugin id, plugin version, generation
  StudyIdentity study;
  std::vector<SourceSeries> sources;
  AlgorithmInfo algorithm;
  std::string department;
  std::string mode;                // governance mode the job ran under
  std::vector<Finding> findings;
  std::string summary;
  std::string completed_at;        // UTC, ISO 8601 e.g. 2026-11-28T01:02:03Z

  // Identifiers shared by all encodings, derived deterministically from job_key (see ids.h).
  std::string sr_series_instance_uid;
  std::string sr_sop_instance_uid;
  uint32_t sr_series_number = 9900;
  uint32_t sr_instance_number = 1;

  // Set when this result replaces an earlier one for the same study and plugin (the study was re-run after late
  // instances): the SR lists it in Predecessor Documents, the ORU's result status is C (corrected) and the FHIR
  // Observations are "amended".
  std::string predecessor_sr_series_instance_uid;
  std::string predecessor_sr_sop_instance_uid;
};

}  // namespace aihub
