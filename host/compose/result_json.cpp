#include "compose/result_json.h"

#include <cmath>
#include <limits>
#include <utility>

#include "compose/format.h"

namespace aihub::compose {

using nlohmann::json;

namespace {

constexpr int kFormatVersion = 1;

json ConceptJson(const CodedConcept& c) { return {{"value", c.value}, {"scheme", c.scheme}, {"meaning", c.meaning}}; }

}  // namespace

json ToJson(const Result& r) {
  json j;
  j["format"] = kFormatVersion;
  j["job_key"] = r.job_key;
  const StudyIdentity& s = r.study;
  j["study"] = {{"study_instance_uid", s.study_instance_uid},
                {"accession_number", s.accession_number},
                {"study_id", s.study_id},
                {"study_date", s.study_date},
                {"study_time", s.study_time},
                {"study_description", s.study_description},
                {"referring_physician_name", s.referring_physician_name},
                {"patient_id", s.patient_id},
                {"issuer_of_patient_id", s.issuer_of_patient_id},
                {"patient_name", s.patient_name},
                {"patient_birth_date", s.patient_birth_date},
                {"patient_sex", s.patient_sex}};
  json sources = json::array();
  for (const SourceSeries& series : r.sources) {
    json instances = json::array();
    for (const SourceInstance& i : series.instances) {
      instances.push_back({{"sop_class_uid", i.sop_class_uid}, {"sop_instance_uid", i.sop_instance_uid}});
    }
    sources.push_back({{"series_instance_uid", series.series_instance_uid},
                       {"modality", series.modality},
                       {"instances", std::move(instances)}});
  }
  j["sources"] = std::move(sources);
  const AlgorithmInfo& a = r.algorithm;
  j["algorithm"] = {{"plugin_id", a.plugin_id},       {"name", a.name},
                    {"version", a.version},           {"model_version", a.model_version},
                    {"manufacturer", a.manufacturer}, {"so_sha256", a.so_sha256},
                    {"device_uid", a.device_uid}};
  j["department"] = r.department;
  j["mode"] = r.mode;
  json findings = json::array();
  for (const Finding& f : r.findings) {
    json fj;
    fj["concept"] = ConceptJson(f.concept);
    fj["presence"] = PresenceName(f.presence);
    fj["confidence"] = f.confidence;
    fj["urgency"] = UrgencyName(f.urgency);
    fj["laterality"] = LateralityName(f.laterality);
    fj["site"] = f.site ? ConceptJson(*f.site) : json(nullptr);
    fj["text"] = f.text;
    json ms = json::array();
    for (const Measurement& m : f.measurements) {
      ms.push_back({{"concept", ConceptJson(m.concept)},
                    {"value", m.value},
                    {"unit_ucum", m.unit_ucum},
                    {"unit_meaning", m.unit_meaning}});
    }
    fj["measurements"] = std::move(ms);
    json rs = json::array();
    for (const Region& g : f.regions) {
      rs.push_back({{"series_instance_uid", g.series_instance_uid},
                    {"sop_class_uid", g.sop_class_uid},
                    {"sop_instance_uid", g.sop_instance_uid},
                    {"frame_number", g.frame_number},
                    {"multi_frame", g.multi_frame},
                    {"total_pixel_matrix", g.total_pixel_matrix},
                    {"graphic_type", GraphicTypeName(g.graphic_type)},
                    {"points", g.points}});
    }
    fj["regions"] = std::move(rs);
    findings.push_back(std::move(fj));
  }
  j["findings"] = std::move(findings);
  j["summary"] = r.summary;
  j["completed_at"] = r.completed_at;
  j["sr_series_instance_uid"] = r.sr_series_instance_uid;
  j["sr_sop_instance_uid"] = r.sr_sop_instance_uid;
  j["sr_series_number"] = r.sr_series_number;
  j["sr_instance_number"] = r.sr_instance_number;
  if (!r.predecessor_sr_sop_instance_uid.empty()) {
    j["predecessor_sr_series_instance_uid"] = r.predecessor_sr_series_instance_uid;
    j["predecessor_sr_sop_instance_uid"] = r.predecessor_sr_sop_instance_uid;
  }
  return j;
}

std::string ToJsonText(const Result& result) {
  return ToJson(result).dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// Thrown inside the reader only and turned into a Status at its one entry point.
struct JsonFieldError {
  std::string path;
  std::string message;
};

[[noreturn]] void Fail(const std::string& path, const std::string& message) { throw JsonFieldError{path, message}; }

std::string Join(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

const json* Member(const json& obj, const std::string& parent, const char* key, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) Fail(Join(parent, key), "required member is missing");
    return nullptr;
  }
  return &*it;
}

void ReadString(const json& obj, const std::string& parent, const char* key, std::string& out,
                bool required = false) {
  const json* v = Member(obj, parent, key, required);
  if (v == nullptr) return;
  if (!v->is_string()) Fail(Join(parent, key), std::string("expected a string, got ") + v->type_name());
  out = v->get<std::string>();
}

void ReadDouble(const json& obj, const std::string& parent, const char* key, double& out) {
  const json* v = Member(obj, parent, key, false);
  if (v == nullptr) return;
  if (!v->is_number()) Fail(Join(parent, key), std::string("expected a number, got ") + v->type_name());
  out = v->get<double>();
}

void ReadBool(const json& obj, const std::string& parent, const char* key, bool& out) {
  const json* v = Member(obj, parent, key, false);
  if (v == nullptr) return;
  if (!v->is_boolean()) Fail(Join(parent, key), std::string("expected a boolean, got ") + v->type_name());
  out = v->get<bool>();
}

void ReadUint32(const json& obj, const std::string& parent, const char* key, uint32_t& out) {
  const json* v = Member(obj, parent, key, false);
  if (v == nullptr) return;
  if (!v->is_number_unsigned() || v->get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
    Fail(Join(parent, key), "expected an unsigned 32-bit integer");
  }
  out = static_cast<uint32_t>(v->get<uint64_t>());
}

const json& RequireObject(const json& v, const std::string& path) {
  if (!v.is_object()) Fail(path.empty() ? "result" : path, std::string("expected an object, got ") + v.type_name());
  return v;
}

// Calls fn(element, element_path) for each element of the array member `key`, if present.
template <typename Fn>
void ForEach(const json& obj, const std::string& parent, const char* key, Fn fn) {
  const json* v = Member(obj, parent, key, false);
  if (v == nullptr) return;
  std::string path = Join(parent, key);
  if (!v->is_array()) Fail(path, std::string("expected an array, got ") + v->type_name());
  for (size_t i = 0; i < v->size(); ++i) fn((*v)[i], path + "[" + std::to_string(i) + "]");
}

CodedConcept ReadConcept(const json& v, const std::string& path) {
  RequireObject(v, path);
  CodedConcept c;
  ReadString(v, path, "value", c.value, true);
  ReadString(v, path, "scheme", c.scheme, true);
  ReadString(v, path, "meaning", c.meaning);
  return c;
}

template <typename E>
E ReadEnum(const json& obj, const std::string& parent, const char* key, E fallback, const char* (*name)(E),
           std::initializer_list<E> values) {
  std::string text;
  ReadString(obj, parent, key, text);
  if (text.empty()) return fallback;
  std::string allowed;
  for (E e : values) {
    if (text == name(e)) return e;
    allowed += std::string(allowed.empty() ? "" : ", ") + name(e);
  }
  Fail(Join(parent, key), "unknown value \"" + text + "\" (expected one of " + allowed + ")");
}

Result ReadResult(const json& j) {
  RequireObject(j, "");
  Result r;
  if (const json* f = Member(j, "", "format", false)) {
    if (!f->is_number_integer() || f->get<int64_t>() < 1 || f->get<int64_t>() > kFormatVersion) {
      Fail("format", "unsupported result format (this build reads 1)");
    }
  }
  ReadString(j, "", "job_key", r.job_key, true);
  if (const json* s = Member(j, "", "study", false)) {
    RequireObject(*s, "study");
    StudyIdentity& st = r.study;
    ReadString(*s, "study", "study_instance_uid", st.study_instance_uid);
    ReadString(*s, "study", "accession_number", st.accession_number);
    ReadString(*s, "study", "study_id", st.study_id);
    ReadString(*s, "study", "study_date", st.study_date);
    ReadString(*s, "study", "study_time", st.study_time);
    ReadString(*s, "study", "study_description", st.study_description);
    ReadString(*s, "study", "referring_physician_name", st.referring_physician_name);
    ReadString(*s, "study", "patient_id", st.patient_id);
    ReadString(*s, "study", "issuer_of_patient_id", st.issuer_of_patient_id);
    ReadString(*s, "study", "patient_name", st.patient_name);
    ReadString(*s, "study", "patient_birth_date", st.patient_birth_date);
    ReadString(*s, "study", "patient_sex", st.patient_sex);
  }
  ForEach(j, "", "sources", [&](const json& v, const std::string& path) {
    RequireObject(v, path);
    SourceSeries series;
    ReadString(v, path, "series_instance_uid", series.series_instance_uid);
    ReadString(v, path, "modality", series.modality);
    ForEach(v, path, "instances", [&](const json& iv, const std::string& ipath) {
      RequireObject(iv, ipath);
      SourceInstance inst;
      ReadString(iv, ipath, "sop_class_uid", inst.sop_class_uid);
      ReadString(iv, ipath, "sop_instance_uid", inst.sop_instance_uid);
      series.instances.push_back(std::move(inst));
    });
    r.sources.push_back(std::move(series));
  });
  if (const json* a = Member(j, "", "algorithm", false)) {
    RequireObject(*a, "algorithm");
    AlgorithmInfo& al = r.algorithm;
    ReadString(*a, "algorithm", "plugin_id", al.plugin_id);
    ReadString(*a, "algorithm", "name", al.name);
    ReadString(*a, "algorithm", "version", al.version);
    ReadString(*a, "algorithm", "model_version", al.model_version);
    ReadString(*a, "algorithm", "manufacturer", al.manufacturer);
    ReadString(*a, "algorithm", "so_sha256", al.so_sha256);
    ReadString(*a, "algorithm", "device_uid", al.device_uid);
  }
  ReadString(j, "", "department", r.department);
  ReadString(j, "", "mode", r.mode);
  ForEach(j, "", "findings", [&](const json& v, const std::string& path) {
    RequireObject(v, path);
    Finding f;
    f.concept = ReadConcept(*Member(v, path, "concept", true), Join(path, "concept"));
    f.presence = ReadEnum(v, path, "presence", Presence::kAbsent, PresenceName,
                          {Presence::kAbsent, Presence::kPresent, Presence::kIndeterminate});
    ReadDouble(v, path, "confidence", f.confidence);
    f.urgency = ReadEnum(v, path, "urgency", Urgency::kRoutine, UrgencyName,
                         {Urgency::kRoutine, Urgency::kUrgent, Urgency::kCritical});
    f.laterality = ReadEnum(v, path, "laterality", Laterality::kNone, LateralityName,
                            {Laterality::kNone, Laterality::kLeft, Laterality::kRight, Laterality::kBilateral});
    if (const json* site = Member(v, path, "site", false)) f.site = ReadConcept(*site, Join(path, "site"));
    ReadString(v, path, "text", f.text);
    ForEach(v, path, "measurements", [&](const json& mv, const std::string& mpath) {
      RequireObject(mv, mpath);
      Measurement m;
      m.concept = ReadConcept(*Member(mv, mpath, "concept", true), Join(mpath, "concept"));
      const json* value = Member(mv, mpath, "value", true);
      if (!value->is_number()) Fail(Join(mpath, "value"), "expected a number");
      m.value = value->get<double>();
      ReadString(mv, mpath, "unit_ucum", m.unit_ucum);
      ReadString(mv, mpath, "unit_meaning", m.unit_meaning);
      f.measurements.push_back(std::move(m));
    });
    ForEach(v, path, "regions", [&](const json& gv, const std::string& gpath) {
      RequireObject(gv, gpath);
      Region g;
      ReadString(gv, gpath, "series_instance_uid", g.series_instance_uid);
      ReadString(gv, gpath, "sop_class_uid", g.sop_class_uid);
      ReadString(gv, gpath, "sop_instance_uid", g.sop_instance_uid);
      ReadUint32(gv, gpath, "frame_number", g.frame_number);
      ReadBool(gv, gpath, "multi_frame", g.multi_frame);
      ReadBool(gv, gpath, "total_pixel_matrix", g.total_pixel_matrix);
      g.graphic_type = ReadEnum(gv, gpath, "graphic_type", GraphicType::kPoint, GraphicTypeName,
                                {GraphicType::kPoint, GraphicType::kPolyline, GraphicType::kPolygon,
                                 GraphicType::kEllipse});
      ForEach(gv, gpath, "points", [&](const json& pv, const std::string& ppath) {
        if (!pv.is_number()) Fail(ppath, "expected a number");
        g.points.push_back(pv.get<float>());
      });
      f.regions.push_back(std::move(g));
    });
    r.findings.push_back(std::move(f));
  });
  ReadString(j, "", "summary", r.summary);
  ReadString(j, "", "completed_at", r.completed_at);
  ReadString(j, "", "sr_series_instance_uid", r.sr_series_instance_uid);
  ReadString(j, "", "sr_sop_instance_uid", r.sr_sop_instance_uid);
  ReadUint32(j, "", "sr_series_number", r.sr_series_number);
  ReadUint32(j, "", "sr_instance_number", r.sr_instance_number);
  ReadString(j, "", "predecessor_sr_series_instance_uid", r.predecessor_sr_series_instance_uid);
  ReadString(j, "", "predecessor_sr_sop_instance_uid", r.predecessor_sr_sop_instance_uid);
  return r;
}

}  // namespace

StatusOr<Result> ResultFromJson(const json& j) {
  try {
    return ReadResult(j);
  } catch (const JsonFieldError& e) {
    return InvalidArgument("result JSON: " + e.path + ": " + e.message);
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("result JSON: ") + e.what());
  }
}

}  // namespace aihub::compose
