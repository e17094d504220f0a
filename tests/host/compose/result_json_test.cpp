#include "compose/result_json.h"

#include <doctest/doctest.h>

#include "compose/ids.h"
#include "test_result.h"

namespace aihub::compose {
namespace {

using nlohmann::json;

bool SameRegion(const Region& a, const Region& b) {
  return a.series_instance_uid == b.series_instance_uid && a.sop_class_uid == b.sop_class_uid &&
         a.sop_instance_uid == b.sop_instance_uid && a.frame_number == b.frame_number &&
         a.multi_frame == b.multi_frame && a.total_pixel_matrix == b.total_pixel_matrix &&
         a.graphic_type == b.graphic_type && a.points == b.points;
}

bool SameFinding(const Finding& a, const Finding& b) {
  if (!(a.concept == b.concept) || a.presence != b.presence || a.confidence != b.confidence ||
      a.urgency != b.urgency || a.laterality != b.laterality || !(a.site == b.site) || a.text != b.text ||
      a.measurements.size() != b.measurements.size() || a.regions.size() != b.regions.size()) {
    return false;
  }
  for (size_t i = 0; i < a.measurements.size(); ++i) {
    const Measurement& x = a.measurements[i];
    const Measurement& y = b.measurements[i];
    if (!(x.concept == y.concept) || x.value != y.value || x.unit_ucum != y.unit_ucum ||
        x.unit_meaning != y.unit_meaning) {
      return false;
    }
  }
  for (size_t i = 0; i < a.regions.size(); ++i) {
    if (!SameRegion(a.regions[i], b.regions[i])) return false;
  }
  return true;
}

// Field-by-field equality (Result has no operator==; keeping it that way leaves result.h as it was).
void CheckSame(const Result& a, const Result& b) {
  CHECK(a.job_key == b.job_key);
  const StudyIdentity& s = a.study;
  const StudyIdentity& t = b.study;
  CHECK(s.study_instance_uid == t.study_instance_uid);
  CHECK(s.accession_number == t.accession_number);
  CHECK(s.study_id == t.study_id);
  CHECK(s.study_date == t.study_date);
  CHECK(s.study_time == t.study_time);
  CHECK(s.study_description == t.study_description);
  CHECK(s.referring_physician_name == t.referring_physician_name);
  CHECK(s.patient_id == t.patient_id);
  CHECK(s.issuer_of_patient_id == t.issuer_of_patient_id);
  CHECK(s.patient_name == t.patient_name);
  CHECK(s.patient_birth_date == t.patient_birth_date);
  CHECK(s.patient_sex == t.patient_sex);
  REQUIRE(a.sources.size() == b.sources.size());
  for (size_t i = 0; i < a.sources.size(); ++i) {
    CHECK(a.sources[i].series_instance_uid == b.sources[i].series_instance_uid);
    CHECK(a.sources[i].modality == b.sources[i].modality);
    REQUIRE(a.sources[i].instances.size() == b.sources[i].instances.size());
    for (size_t k = 0; k < a.sources[i].instances.size(); ++k) {
      CHECK(a.sources[i].instances[k].sop_class_uid == b.sources[i].instances[k].sop_class_uid);
      CHECK(a.sources[i].instances[k].sop_instance_uid == b.sources[i].instances[k].sop_instance_uid);
    }
  }
  CHECK(a.algorithm.plugin_id == b.algorithm.plugin_id);
  CHECK(a.algorithm.name == b.algorithm.name);
  CHECK(a.algorithm.version == b.algorithm.version);
  CHECK(a.algorithm.model_version == b.algorithm.model_version);
  CHECK(a.algorithm.manufacturer == b.algorithm.manufacturer);
  CHECK(a.algorithm.so_sha256 == b.algorithm.so_sha256);
  CHECK(a.algorithm.device_uid == b.algorithm.device_uid);
  CHECK(a.department == b.department);
  CHECK(a.mode == b.mode);
  REQUIRE(a.findings.size() == b.findings.size());
  for (size_t i = 0; i < a.findings.size(); ++i) CHECK(SameFinding(a.findings[i], b.findings[i]));
  CHECK(a.summary == b.summary);
  CHECK(a.completed_at == b.completed_at);
  CHECK(a.sr_series_instance_uid == b.sr_series_instance_uid);
  CHECK(a.sr_sop_instance_uid == b.sr_sop_instance_uid);
  CHECK(a.sr_series_number == b.sr_series_number);
  CHECK(a.sr_instance_number == b.sr_instance_number);
}

TEST_CASE("JSON round trip keeps every field") {
  Result r = testing::MakeHeadCtResult();
  r.findings[1].presence = Presence::kIndeterminate;
  r.findings[1].laterality = Laterality::kBilateral;
  r.findings[1].urgency = Urgency::kUrgent;
  r.findings[0].regions[1].graphic_type = GraphicType::kEllipse;
  r.findings[0].regions[1].points = {1.5f, 2.25f, 3.125f, 4, 5, 6, 7, 8.0625f};
  r.findings[0].regions[1].total_pixel_matrix = true;
  r.findings[0].confidence = 0.1 + 0.2;  // not exactly representable in short decimal
  r.sr_series_number = 4242;
  r.sr_instance_number = 7;
  r.predecessor_sr_series_instance_uid = "2.25.11";
  r.predecessor_sr_sop_instance_uid = "2.25.12";
  StatusOr<Result> back = ResultFromJson(ToJson(r));
  REQUIRE_MESSAGE(back.ok(), back.status().ToString());
  CheckSame(*back, r);
  // Through text too, as the job store keeps it.
  StatusOr<Result> from_text = ResultFromJson(json::parse(ToJsonText(r)));
  REQUIRE(from_text.ok());
  CheckSame(*from_text, r);
  CHECK(ToJson(*from_text) == ToJson(r));
  CHECK(back->predecessor_sr_sop_instance_uid == "2.25.12");
  CHECK(back->predecessor_sr_series_instance_uid == "2.25.11");
  // A changed field is noticed (the comparison can fail).
  Result other = r;
  other.findings[0].regions[0].points[3] += 1;
  CHECK_FALSE(SameFinding(other.findings[0], back->findings[0]));
}

TEST_CASE("ToJsonText replaces invalid UTF-8 where a plain dump throws") {
  Result r = testing::MakeHeadCtResult();
  CHECK(ToJsonText(r) == ToJson(r).dump());  // valid text is kept byte for byte
  r.summary = "ok \xff\xfe end";
  r.findings[0].text = "M\xfcller";  // Latin-1, not UTF-8
  CHECK_THROWS_AS(ToJson(r).dump(), json::type_error);  // the mistake ToJsonText prevents
  std::string text;
  REQUIRE_NOTHROW(text = ToJsonText(r));
  StatusOr<Result> back = ResultFromJson(json::parse(text));
  REQUIRE_MESSAGE(back.ok(), back.status().ToString());
  CHECK(back->summary == "ok \xEF\xBF\xBD\xEF\xBF\xBD end");
  CHECK(back->findings[0].text == "M\xEF\xBF\xBDller");
  CHECK(back->job_key == r.job_key);
}

TEST_CASE("malformed JSON is INVALID_ARGUMENT naming the field") {
  json good = ToJson(testing::MakeHeadCtResult());
  struct Case {
    const char* name;
    json doc;
    const char* field;
  };
  json no_key = good;
  no_key.erase("job_key");
  json bad_presence = good;
  bad_presence["findings"][1]["presence"] = "maybe";
  json bad_value = good;
  bad_value["findings"][0]["measurements"][0]["value"] = "12.5";
  json bad_points = good;
  bad_points["findings"][0]["regions"][0]["points"][2] = "x";
  json bad_frame = good;
  bad_frame["findings"][0]["regions"][0]["frame_number"] = -3;
  json bad_study = good;
  bad_study["study"]["patient_id"] = 12345;
  json no_concept = good;
  no_concept["findings"][0].erase("concept");
  json bad_sources = good;
  bad_sources["sources"] = "none";
  json future = good;
  future["format"] = 99;
  const Case cases[] = {
      {"missing job key", no_key, "job_key"},
      {"unknown presence", bad_presence, "findings[1].presence"},
      {"string measurement", bad_value, "findings[0].measurements[0].value"},
      {"string point", bad_points, "findings[0].regions[0].points[2]"},
      {"negative frame", bad_frame, "findings[0].regions[0].frame_number"},
      {"numeric patient id", bad_study, "study.patient_id"},
      {"missing concept", no_concept, "findings[0].concept"},
      {"sources not an array", bad_sources, "sources"},
      {"future format", future, "format"},
      {"not an object", json::array({1, 2}), "result"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    StatusOr<Result> r = ResultFromJson(c.doc);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == AIHUB_INVALID_ARGUMENT);
    CHECK_MESSAGE(r.status().message().find(std::string(c.field) + ":") != std::string::npos, r.status().message());
  }
}

TEST_CASE("identifiers are deterministic and distinct") {
  Result a = testing::MakeHeadCtResult();
  Result b = testing::MakeHeadCtResult();
  CHECK(a.sr_sop_instance_uid == b.sr_sop_instance_uid);
  CHECK(a.sr_series_instance_uid == b.sr_series_instance_uid);
  CHECK(a.sr_sop_instance_uid != a.sr_series_instance_uid);
  CHECK(a.sr_sop_instance_uid.rfind("2.25.", 0) == 0);
  CHECK(a.sr_sop_instance_uid.size() <= 64);
  CHECK(a.algorithm.device_uid == DeviceUid("ich", "1.4.0", "2"));
  CHECK(DeviceUid("ich", "1.4.0", "2") != DeviceUid("ich", "1.4.0", "3"));
  CHECK(DeviceUid("ich", "1.4", ".02") != DeviceUid("ich", "1.4.", "02"));
  b.job_key += "x";
  AssignIdentifiers(b);
  CHECK(a.sr_sop_instance_uid != b.sr_sop_instance_uid);
  CHECK(a.algorithm.device_uid == b.algorithm.device_uid);  // device depends on the plugin, not the job
  CHECK(FindingIdentifier(a, 2) == a.sr_sop_instance_uid + ".2");
  CHECK(FindingTrackingUid(a, 1) != FindingTrackingUid(a, 2));
  CHECK(FindingTrackingUid(a, 1, 0) != FindingTrackingUid(a, 1, 1));
  std::string uuid = UuidFromSeed("x");
  CHECK(uuid.size() == 36);
  CHECK(uuid[14] == '4');
}

}  // namespace
}  // namespace aihub::compose
