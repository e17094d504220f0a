#include "compose/fhir_encoder.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "compose/format.h"
#include "compose/ids.h"
#include "test_result.h"

namespace aihub::compose {
namespace {

using nlohmann::json;

const json* ComponentByCode(const json& obs, const std::string& code) {
  for (const json& c : obs["component"]) {
    if (c["code"]["coding"][0]["code"] == code) return &c;
  }
  return nullptr;
}

TEST_CASE("FHIR bundle: one Observation per finding, sharing identifiers with the SR") {
  Result r = testing::MakeHeadCtResult();
  json b = json::parse(EncodeFhirBundle(r));
  CHECK(b["resourceType"] == "Bundle");
  CHECK(b["type"] == "transaction");
  REQUIRE(b["entry"].size() == 3);  // 2 observations + 1 DiagnosticReport

  const json& ich = b["entry"][0]["resource"];
  CHECK(ich["resourceType"] == "Observation");
  CHECK(ich["status"] == "final");
  CHECK(ich["category"][0]["coding"][0]["code"] == "imaging");
  CHECK(ich["code"]["coding"][0]["system"] == "http://snomed.info/sct");
  CHECK(ich["code"]["coding"][0]["code"] == "50960005");
  CHECK(ich["valueCodeableConcept"]["coding"][0]["system"] == "http://snomed.info/sct");
  CHECK(ich["valueCodeableConcept"]["coding"][0]["code"] == "52101004");
  CHECK(ich["interpretation"][0]["coding"][0]["system"] ==
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation");
  CHECK(ich["interpretation"][0]["coding"][0]["code"] == "AA");
  CHECK(ich["interpretation"][0]["coding"][0]["display"] == "Critical abnormal");
  CHECK(ich["subject"]["identifier"]["value"] == "MRN12345");
  CHECK(ich["effectiveDateTime"] == "2026-11-28");
  CHECK(ich["issued"] == "2026-11-28T01:02:03Z");
  CHECK(ich["device"]["identifier"]["system"] == "urn:dicom:uid");
  CHECK(ich["device"]["identifier"]["value"] == "urn:oid:" + r.algorithm.device_uid);
  CHECK(ich["derivedFrom"][0]["identifier"]["value"] == std::string("urn:oid:") + testing::kStudyUid);
  CHECK(ich["derivedFrom"][0]["identifier"]["system"] == "urn:dicom:uid");
  CHECK(ich["identifier"][0]["system"] == "urn:aihub:finding");
  CHECK(ich["identifier"][0]["value"] == r.sr_sop_instance_uid + ".1");
  CHECK(ich["bodySite"]["coding"][0]["code"] == "12738006");
  CHECK(ich["note"][0]["text"] == "Acute left parietal hemorrhage.");
  const json* volume = ComponentByCode(ich, "118565006");
  REQUIRE(volume != nullptr);
  CHECK((*volume)["valueQuantity"]["value"] == 12.5);
  CHECK((*volume)["valueQuantity"]["system"] == "http://unitsofmeasure.org");
  CHECK((*volume)["valueQuantity"]["code"] == "mL");
  CHECK((*volume)["valueQuantity"]["unit"] == "milliliter");
  const json* certainty = ComponentByCode(ich, "111012");
  REQUIRE(certainty != nullptr);
  CHECK((*certainty)["valueQuantity"]["value"] == 93.0);
  const json* laterality = ComponentByCode(ich, "272741003");
  REQUIRE(laterality != nullptr);
  CHECK((*laterality)["valueCodeableConcept"]["coding"][0]["code"] == "7771000");

  const json& request = b["entry"][0]["request"];
  CHECK(request["method"] == "POST");
  CHECK(request["url"] == "Observation");
  CHECK(request["ifNoneExist"] == "identifier=urn:aihub:finding|" + r.sr_sop_instance_uid + ".1");
  CHECK(b["entry"][0]["fullUrl"].get<std::string>().rfind("urn:uuid:", 0) == 0);

  const json& midline = b["entry"][1]["resource"];
  CHECK(midline["code"]["coding"][0]["system"] == "http://www.radlex.org");
  CHECK(midline["valueCodeableConcept"]["coding"][0]["code"] == "2667000");
  // Absent is NEG (negative), never N (normal): an absent finding says nothing about the rest of the study.
  CHECK(midline["interpretation"][0]["coding"][0]["code"] == "NEG");
  CHECK(midline["interpretation"][0]["coding"][0]["display"] == "Negative");
  CHECK(midline["identifier"][0]["value"] == r.sr_sop_instance_uid + ".2");

  const json& report = b["entry"][2]["resource"];
  CHECK(report["resourceType"] == "DiagnosticReport");
  CHECK(report["conclusion"] == r.summary);
  REQUIRE(report["result"].size() == 2);
  CHECK(report["result"][0]["reference"] == b["entry"][0]["fullUrl"]);
}

TEST_CASE("FHIR interpretation: POS for present, NEG for absent, AA only when critical, IND") {
  Result r = testing::MakeHeadCtResult();
  auto interpretation = [&](Presence p, Urgency u) {
    r.findings[0].presence = p;
    r.findings[0].urgency = u;
    json b = json::parse(EncodeFhirBundle(r));
    REQUIRE(b["entry"][0]["resource"]["interpretation"].size() == 1);
    return b["entry"][0]["resource"]["interpretation"][0]["coding"][0]["code"].get<std::string>();
  };
  CHECK(interpretation(Presence::kPresent, Urgency::kCritical) == "AA");
  CHECK(interpretation(Presence::kPresent, Urgency::kUrgent) == "POS");
  CHECK(interpretation(Presence::kPresent, Urgency::kRoutine) == "POS");
  CHECK(interpretation(Presence::kAbsent, Urgency::kRoutine) == "NEG");
  CHECK(interpretation(Presence::kAbsent, Urgency::kCritical) == "NEG");
  CHECK(interpretation(Presence::kIndeterminate, Urgency::kCritical) == "IND");
}

TEST_CASE("FHIR: invalid UTF-8 becomes U+FFFD everywhere, as in the SR and HL7") {
  Result r = testing::MakeHeadCtResult();
  const std::string fffd = "\xEF\xBF\xBD";
  r.findings[0].text = "bad \xff\xfe end";
  r.summary = "M\xfcller";
  r.study.issuer_of_patient_id = "H\xffP";
  r.findings[1].concept.meaning = "shift \xe2\x82";
  std::string text = EncodeFhirBundle(r);
  CHECK(ReplaceInvalidUtf8(text) == text);
  json b = json::parse(text);
  const json& obs = b["entry"][0]["resource"];
  CHECK(obs["note"][0]["text"] == "bad " + fffd + fffd + " end");
  // The issuer is made valid before it is percent-encoded, so the URI decodes to UTF-8 too (not "%FF").
  CHECK(obs["subject"]["identifier"]["system"] == "urn:aihub:patient-id-issuer:H%EF%BF%BDP");
  CHECK(b["entry"][1]["resource"]["code"]["text"] == "shift " + fffd);
  CHECK(b["entry"][2]["resource"]["conclusion"] == "M" + fffd + "ller");
}

TEST_CASE("FHIR: silent mode is preliminary, output is deterministic, bad UTF-8 does not throw") {
  Result r = testing::MakeHeadCtResult();
  CHECK(EncodeFhirBundle(r) == EncodeFhirBundle(r));
  r.mode = "silent";
  r.findings[0].text = std::string("bad \xff\xfe utf8 \"quoted\"");
  r.findings[1].concept.scheme = "99LOCAL";
  std::string text;
  CHECK_NOTHROW(text = EncodeFhirBundle(r));
  json b = json::parse(text);
  CHECK(b["entry"][0]["resource"]["status"] == "preliminary");
  CHECK(b["entry"][2]["resource"]["status"] == "preliminary");
  CHECK(b["entry"][1]["resource"]["code"]["coding"][0]["system"] == "urn:aihub:scheme:99LOCAL");
  r.mode = "integrated";
  r.predecessor_sr_sop_instance_uid = "2.25.1";   // a re-run replacing an earlier result
  b = json::parse(EncodeFhirBundle(r));
  CHECK(b["entry"][0]["resource"]["status"] == "amended");
  r.findings.clear();
  b = json::parse(EncodeFhirBundle(r));
  REQUIRE(b["entry"].size() == 1);
  CHECK(b["entry"][0]["resource"]["resourceType"] == "DiagnosticReport");
}

}  // namespace
}  // namespace aihub::compose
