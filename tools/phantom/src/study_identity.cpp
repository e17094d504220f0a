#include "phantom/study_identity.h"

#include <cstdio>
#include <string>

#include "common/hash.h"
#include "phantom/random.h"

namespace aihub::phantom {
namespace {

// Proleptic Gregorian date from days since 1970-01-01 (H. Hinnant's civil_from_days).
void CivilFromDays(int64_t z, int& year, int& month, int& day) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  year = static_cast<int>(yoe + era * 400 + (month <= 2 ? 1 : 0));
}

std::string Format(const char* fmt, int a, int b, int c) {
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, a, b, c);
  return buf;
}

}  // namespace

StudyIdentity MakeStudyIdentity(std::string_view kind, uint64_t seed, std::string_view content_key) {
  Rng rng(MixSeed(seed, 0x1d));
  StudyIdentity id;
  const std::string seed_text = std::to_string(seed);
  id.patient_name = "PHANTOM^" + std::string(kind) + "^" + seed_text;
  id.patient_id = "PH" + seed_text;
  id.patient_sex = (rng.Bits() & 1) ? "F" : "M";

  // Study on a day in 2024-2025 (19723 = days to 2024-01-01), during the day shift or the night.
  int year = 0, month = 0, day = 0;
  const int64_t study_days = 19723 + rng.UniformInt(0, 730);
  CivilFromDays(study_days, year, month, day);
  id.study_date = Format("%04d%02d%02d", year, month, day);
  const int seconds = rng.UniformInt(0, 86399);
  id.study_time = Format("%02d%02d%02d", seconds / 3600, seconds / 60 % 60, seconds % 60);

  const int age = rng.UniformInt(18, 92);
  const int64_t birth_days = study_days - age * 365 - 30 - rng.UniformInt(0, 300);
  CivilFromDays(birth_days, year, month, day);
  id.patient_birth_date = Format("%04d%02d%02d", year, month, day);
  id.patient_age = Format("%03dY", age, 0, 0);

  const std::string key = "aihub-phantom/" + std::string(kind) + "/" + seed_text + "/" + std::string(content_key);
  id.study_instance_uid = UidFromSeed(key + "/study");
  id.accession_number = "PHA" + Sha256Hex(key).substr(0, 10);
  id.study_id = std::to_string(1000 + rng.UniformInt(0, 8999));
  id.referring_physician_name = "REFERRER^SYNTHETIC";
  return id;
}

}  // namespace aihub::phantom
