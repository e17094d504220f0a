// Synthetic patient and study identity shared by all phantom generators (head CT today; CT angiography and
// chest X-ray can reuse it): names, IDs, dates and UIDs derived from the seed only, never from the clock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace aihub::phantom {

struct StudyIdentity {
  std::string patient_name;        // "PHANTOM^HEAD^<seed>"
  std::string patient_id;          // "PH<seed>"
  std::string patient_birth_date;  // YYYYMMDD
  std::string patient_sex;         // "F" or "M"
  std::string patient_age;         // "067Y"
  std::string study_instance_uid;
  std::string study_date;          // YYYYMMDD, in 2024-2025
  std::string study_time;          // HHMMSS
  std::string study_id;
  std::string accession_number;
  std::string study_description;
  std::string referring_physician_name;
  std::string institution_name;
  std::string department;          // InstitutionalDepartmentName
  std::string calling_ae;          // the AE title a sender of this study would use; goes to the file meta
};

// Derives an identity from `seed`. `kind` names the body part in the patient name ("HEAD", "CHEST");
// `content_key` must differ between studies that differ in content, so their UIDs differ even with one seed.
StudyIdentity MakeStudyIdentity(std::string_view kind, uint64_t seed, std::string_view content_key);

}  // namespace aihub::phantom
