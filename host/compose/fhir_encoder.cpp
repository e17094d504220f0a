#include "compose/fhir_encoder.h"

#include <cctype>

#include <nlohmann/json.hpp>

#include "compose/format.h"
#include "compose/ids.h"

namespace aihub::compose {

using nlohmann::json;

namespace {

constexpr const char* kDicomUidSystem = "urn:dicom:uid";
constexpr const char* kSrIdentifierSystem = "urn:aihub:sr";
constexpr const char* kInterpretationSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

json Coding(const CodedConcept& c) {
  json j = {{"system", FhirSystem(c.scheme)}, {"code", c.value}};
  if (!c.meaning.empty()) j["display"] = c.meaning;
  return j;
}

json Concept(const CodedConcept& c) {
  json j = {{"coding", json::array({Coding(c)})}};
  if (!c.meaning.empty()) j["text"] = c.meaning;
  return j;
}

json Quantity(double value, const std::string& ucum, const std::string& meaning) {
  json q = {{"value", value}, {"system", "http://unitsofmeasure.org"}, {"code", ucum.empty() ? "1" : ucum}};
  q["unit"] = meaning.empty() ? q["code"] : json(meaning);
  return q;
}

json PatientReference(const StudyIdentity& s) {
  json identifier = {{"value", s.patient_id}};
  if (!s.issuer_of_patient_id.empty()) {
    // Issuer of Patient ID is free text in DICOM; make it a URI by percent-encoding everything unusual.
    std::string issuer;
    static const char kHex[] = "0123456789ABCDEF";
    for (unsigned char c : ReplaceInvalidUtf8(s.issuer_of_patient_id)) {
      if (std::isalnum(c) || c == '-' || c == '.' || c == '_') {
        issuer += static_cast<char>(c);
      } else {
        issuer += '%';
        issuer += kHex[c >> 4];
        issuer += kHex[c & 15];
      }
    }
    identifier["system"] = "urn:aihub:patient-id-issuer:" + issuer;
  }
  json ref = {{"type", "Patient"}, {"identifier", identifier}};
  if (!s.patient_name.empty()) {
    std::string display = s.patient_name.substr(0, s.patient_name.find('='));
    for (char& c : display) c = c == '^' ? ' ' : c;
    ref["display"] = display;
  }
  return ref;
}

// Coded (present/absent) results take POS / NEG, not A / N: "Normal" for an absent finding would let a
// worklist read it as a normal study. A critical present finding keeps AA ("Critical abnormal"), the one code of
// the R4 observation-interpretation value set that says critical.
json Interpretation(const Finding& f) {
  const char* code = "NEG";
  const char* display = "Negative";
  if (f.presence == Presence::kIndeterminate) {
    code = "IND";
    display = "Indeterminate";
  } else if (f.presence == Presence::kPresent) {
    code = f.urgency == Urgency::kCritical ? "AA" : "POS";
    display = f.urgency == Urgency::kCritical ? "Critical abnormal" : "Positive";
  }
  return json::array({{{"coding", json::array({{{"system", kInterpretationSystem}, {"code", code}, {"display", display}}})}}});
}

// Every string in the tree, made valid UTF-8 with the encoders' shared rule (the keys are ours and ASCII).
void ReplaceInvalidUtf8Strings(json& j) {
  if (j.is_string()) {
    j = ReplaceInvalidUtf8(j.get_ref<const std::string&>());
  } else if (j.is_structured()) {
    for (json& child : j) ReplaceInvalidUtf8Strings(child);
  }
}

json Entry(const std::string& full_url_seed, json resource, const std::string& type, const std::string& system,
           const std::string& value) {
  return {{"fullUrl", "urn:uuid:" + UuidFromSeed(full_url_seed)},
          {"resource", std::move(resource)},
          {"request", {{"method", "POST"}, {"url", type}, {"ifNoneExist", "identifier=" + system + "|" + value}}}};
}

}  // namespace

std::string EncodeFhirBundle(const Result& r) {
  const std::string status = r.mode == "silent"                          ? "preliminary"
                             : !r.predecessor_sr_sop_instance_uid.empty() ? "amended"
                                                                          : "final";
  std::string effective = r.completed_at;
  if (auto date = DicomDateToFhir(r.study.study_date)) effective = *date;
  const json subject = PatientReference(r.study);
  const json device = {
      {"type", "Device"},
      {"identifier", {{"system", kDicomUidSystem}, {"value", "urn:oid:" + r.algorithm.device_uid}}},
      {"display", (r.algorithm.name.empty() ? r.algorithm.plugin_id : r.algorithm.name) + " " + r.algorithm.version +
                      (r.algorithm.model_version.empty() ? "" : " (model " + r.algorithm.model_version + ")")}};
  const json study = {
      {"type", "ImagingStudy"},
      {"identifier", {{"system", kDicomUidSystem}, {"value", "urn:oid:" + r.study.study_instance_uid}}}};
  const json category = json::array(
      {{{"coding", json::array({{{"system", "http://terminology.hl7.org/CodeSystem/observation-category"},
                                 {"code", "imaging"},
                                 {"display", "Imaging"}}})}}});

  json entries = json::array();
  json results = json::array();
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const Finding& f = r.findings[i];
    const std::string id = FindingIdentifier(r, i + 1);
    json obs = {{"resourceType", "Observation"},
                {"identifier", json::array({{{"system", kFindingIdentifierSystem}, {"value", id}}})},
                {"status", status},
                {"category", category},
                {"code", Concept(f.concept)},
                {"subject", subject},
                {"effectiveDateTime", effective},
                {"issued", r.completed_at},
                {"device", device},
                {"derivedFrom", json::array({study})},
                {"valueCodeableConcept", Concept(PresenceConcept(f.presence))},
                {"interpretation", Interpretation(f)}};
    if (f.site) obs["bodySite"] = Concept(*f.site);
    if (!f.text.empty()) obs["note"] = json::array({{{"text", f.text}}});
    json components = json::array();
    for (const Measurement& m : f.measurements) {
      components.push_back({{"code", Concept(m.concept)}, {"valueQuantity", Quantity(m.value, m.unit_ucum, m.unit_meaning)}});
    }
    components.push_back({{"code", Concept(CertaintyConcept())},
                          {"valueQuantity", Quantity(ConfidencePercent(f.confidence), "%", "percent")}});
    components.push_back({{"code", Concept(UrgencyConcept())}, {"valueCodeableConcept", Concept(UrgencyValue(f.urgency))}});
    if (f.laterality != Laterality::kNone) {
      components.push_back({{"code", Concept({"272741003", "SCT", "Laterality"})},
                            {"valueCodeableConcept", Concept(LateralityConcept(f.laterality))}});
    }
    obs["component"] = std::move(components);
    json entry = Entry("aihub/fhir/observation\n" + id, std::move(obs), "Observation", kFindingIdentifierSystem, id);
    results.push_back({{"reference", entry["fullUrl"]}});
    entries.push_back(std::move(entry));
  }

  json report = {{"resourceType", "DiagnosticReport"},
                 {"identifier", json::array({{{"system", kSrIdentifierSystem}, {"value", r.sr_sop_instance_uid}}})},
                 {"status", status},
                 {"category", json::array({{{"coding", json::array({{{"system", "http://terminology.hl7.org/CodeSystem/v2-0074"},
                                                                     {"code", "RAD"},
                                                                     {"display", "Radiology"}}})}}})},
                 {"code", Concept({"18748-4", "LN", "Diagnostic imaging study"})},
                 {"subject", subject},
                 {"effectiveDateTime", effective},
                 {"issued", r.completed_at},
                 {"performer", json::array({{{"display", r.algorithm.manufacturer.empty() ? "aihub" : r.algorithm.manufacturer}}})},
                 {"result", std::move(results)}};
  if (!r.summary.empty()) report["conclusion"] = r.summary;
  entries.push_back(Entry("aihub/fhir/report\n" + r.sr_sop_instance_uid, std::move(report), "DiagnosticReport",
                          kSrIdentifierSystem, r.sr_sop_instance_uid));

  json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", std::move(entries)}};
  // Plugin text may not be valid UTF-8: replace bad sequences as the SR and HL7 encoders do. The replace
  // handler is a second guard, so that dump() can never throw on it.
  ReplaceInvalidUtf8Strings(bundle);
  return bundle.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace aihub::compose
