#include "config/site_config.h"

#include <climits>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "config/yaml_util.h"

namespace aihub::config {

using internal::Describe;
using internal::ErrorAt;
using internal::MapEntry;
using internal::MapReader;

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kOff: return "off";
    case Mode::kSilent: return "silent";
    case Mode::kAssistive: return "assistive";
    case Mode::kIntegrated: return "integrated";
  }
  return "unknown";
}

std::optional<Mode> ParseMode(const std::string& s) {
  if (s == "off") return Mode::kOff;
  if (s == "silent") return Mode::kSilent;
  if (s == "assistive") return Mode::kAssistive;
  if (s == "integrated") return Mode::kIntegrated;
  return std::nullopt;
}

Mode PluginSettings::ModeFor(const std::string& department) const {
  if (auto it = modes.find(department); it != modes.end()) return it->second;
  if (auto it = modes.find("default"); it != modes.end()) return it->second;
  return Mode::kSilent;
}

const PluginSettings* SiteConfig::FindPlugin(const std::string& id) const {
  for (const PluginSettings& p : plugins) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

const Department* SiteConfig::FindDepartment(const std::string& id) const {
  for (const Department& d : departments) {
    if (d.id == id) return &d;
  }
  return nullptr;
}

std::string SiteConfig::DepartmentFor(const TagSource& source) const {
  for (const Department& d : departments) {
    if (d.match.Matches(source)) return d.id;
  }
  return "default";
}

namespace {

using Json = nlohmann::ordered_json;  // keeps the YAML's key order in config_json

constexpr int kMaxJsonDepth = 64;

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
  }
  return true;
}

// HOST:PORT with PORT in 1..65535, or (where allowed) unix:PATH.
bool ValidEndpoint(const std::string& s, bool allow_unix) {
  if (allow_unix && s.rfind("unix:", 0) == 0) return s.size() > 5;
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size() || s.size() - colon - 1 > 5) return false;
  const std::string host = s.substr(0, colon);
  if (host.find_first_of(" \t/") != std::string::npos) return false;
  if (host.find(':') != std::string::npos && (host.front() != '[' || host.back() != ']')) return false;
  std::optional<int64_t> port = internal::ParseInteger(s.substr(colon + 1));
  return port && *port >= 1 && *port <= 65535 && s[colon + 1] != '+' && s[colon + 1] != '-';
}

bool ValidAeTitle(const std::string& ae) {
  if (ae.empty() || ae.size() > 16 || internal::Trim(ae).empty()) return false;
  for (char c : ae) {
    if (c == '\\' || static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) return false;
  }
  return true;
}

class SiteConfigParser {
 public:
  SiteConfigParser(std::filesystem::path base_dir, std::string name)
      : base_dir_(std::move(base_dir)), name_(std::move(name)) {}

  StatusOr<SiteConfig> Parse(const YAML::Node& root) {
    static const std::vector<std::string> kTop = {"state_dir", "plugin_dir", "host", "adapter", "departments",
                                                  "plugins"};
    SiteConfig config;
    StatusOr<MapReader> top = MapReader::Read(root, name_, "the site config", &kTop);
    if (!top.ok()) return top.status();
    std::string state_dir = "./var";
    std::string plugin_dir = "./build/plugins";
    Status s;
    if (const MapEntry* e = top->Find("state_dir")) {
      if (!(s = NonEmptyString(*e, &state_dir)).ok()) return s;
    }
    if (const MapEntry* e = top->Find("plugin_dir")) {
      if (!(s = NonEmptyString(*e, &plugin_dir)).ok()) return s;
    }
    config.state_dir = Resolve(state_dir);
    config.plugin_dir = Resolve(plugin_dir);
    if (const MapEntry* e = top->Find("host")) {
      if (!(s = ParseHost(e->value, &config.host)).ok()) return s;
    }
    if (const MapEntry* e = top->Find("adapter")) {
      if (!(s = ParseAdapter(e->value, &config.adapter)).ok()) return s;
    }
    if (const MapEntry* e = top->Find("departments")) {
      if (!(s = ParseDepartments(e->value, &config.departments)).ok()) return s;
    }
    if (const MapEntry* e = top->Find("plugins")) {
      if (!(s = ParsePlugins(e->value, config.departments, &config.plugins)).ok()) return s;
    }
    return config;
  }

 private:
  std::filesystem::path Resolve(const std::string& p) const {
    std::filesystem::path path(p);
    if (path.is_relative()) path = base_dir_ / path;
    path = std::filesystem::absolute(path).lexically_normal();
    if (!path.has_filename() && path != path.root_path()) path = path.parent_path();  // drop a trailing '/'
    return path;
  }

  Status String(const MapEntry& e, std::string* out) {
    if (!e.value.IsScalar()) return ErrorAt(name_, e.value, "'" + e.key + "' expects a string, got " + Describe(e.value));
    *out = e.value.Scalar();
    return Status::Ok();
  }

  Status NonEmptyString(const MapEntry& e, std::string* out) {
    Status s = String(e, out);
    if (s.ok() && out->empty()) return ErrorAt(name_, e.value, "'" + e.key + "' must not be empty");
    return s;
  }

  Status Endpoint(const MapEntry& e, bool allow_empty, bool allow_unix, std::string* out) {
    Status s = String(e, out);
    if (!s.ok()) return s;
    if (out->empty() && allow_empty) return Status::Ok();
    if (!ValidEndpoint(*out, allow_unix)) {
      return ErrorAt(name_, e.value,
                     "'" + e.key + "' expects HOST:PORT with PORT 1-65535" + (allow_unix ? " (or unix:PATH)" : "") +
                         (allow_empty ? " (or \"\" for off)" : "") + ", got '" + *out + "'");
    }
    return Status::Ok();
  }

  Status Url(const MapEntry& e, std::string* out) {
    Status s = String(e, out);
    if (!s.ok()) return s;
    if (!out->empty() && out->rfind("http://", 0) != 0 && out->rfind("https://", 0) != 0) {
      return ErrorAt(name_, e.value, "'" + e.key + "' expects an http:// or https:// URL (or \"\" for off), got '" + *out + "'");
    }
    return Status::Ok();
  }

  Status Integer(const MapEntry& e, int64_t lo, int64_t hi, int* out) {
    std::optional<int64_t> v;
    if (e.value.IsScalar()) v = internal::ParseInteger(e.value.Scalar());
    if (!v) return ErrorAt(name_, e.value, "'" + e.key + "' expects an integer, got " + Describe(e.value));
    if (*v < lo || *v > hi) {
      return ErrorAt(name_, e.value,
                     "'" + e.key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                         std::to_string(*v));
    }
    *out = static_cast<int>(*v);
    return Status::Ok();
  }

  Status Bool(const MapEntry& e, bool* out) {
    std::optional<bool> v;
    if (e.value.IsScalar()) v = internal::ParseBool(e.value.Scalar());
    if (!v) return ErrorAt(name_, e.value, "'" + e.key + "' expects true or false, got " + Describe(e.value));
    *out = *v;
    return Status::Ok();
  }

  Status PositiveInteger(const MapEntry& e, int* out) {
    std::optional<int64_t> v;
    if (e.value.IsScalar()) v = internal::ParseInteger(e.value.Scalar());
    if (v && *v < 1) return ErrorAt(name_, e.value, "'" + e.key + "' must be a positive integer (>= 1), got " + std::to_string(*v));
    return Integer(e, 1, INT_MAX, out);
  }

  Status StringList(const MapEntry& e, std::vector<std::string>* out) {
    out->clear();
    if (e.value.IsNull()) return Status::Ok();
    if (!e.value.IsSequence()) {
      return ErrorAt(name_, e.value, "'" + e.key + "' expected a list of strings, got " + Describe(e.value));
    }
    for (const YAML::Node& item : e.value) {
      if (!item.IsScalar()) {
        return ErrorAt(name_, item, "'" + e.key + "' expected a list of strings, got " + Describe(item) + " in the list");
      }
      out->push_back(item.Scalar());
    }
    return Status::Ok();
  }

  Status ParseHost(const YAML::Node& node, HostSettings* host) {
    static const std::vector<std::string> kKeys = {"grpc_listen",      "http_listen",       "adapters",
                                                   "workers",          "job_max_attempts",  "job_lease_seconds",
                                                   "reload_poll_ms"};
    StatusOr<MapReader> map = MapReader::Read(node, name_, "host", &kKeys);
    if (!map.ok()) return map.status();
    for (const MapEntry& e : map->entries()) {
      Status s;
      if (e.key == "grpc_listen") {
        s = Endpoint(e, false, true, &host->grpc_listen);
      } else if (e.key == "http_listen") {
        s = Endpoint(e, true, false, &host->http_listen);
      } else if (e.key == "adapters") {
        s = StringList(e, &host->adapters);
        for (size_t i = 0; s.ok() && i < host->adapters.size(); ++i) {
          if (!ValidEndpoint(host->adapters[i], true)) {
            s = ErrorAt(name_, e.value[i], "'adapters' expects HOST:PORT endpoints, got '" + host->adapters[i] + "'");
          }
        }
      } else if (e.key == "workers") {
        s = PositiveInteger(e, &host->workers);
      } else if (e.key == "job_max_attempts") {
        s = PositiveInteger(e, &host->job_max_attempts);
      } else if (e.key == "job_lease_seconds") {
        s = PositiveInteger(e, &host->job_lease_seconds);
      } else if (e.key == "reload_poll_ms") {
        s = PositiveInteger(e, &host->reload_poll_ms);
      }
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  Status ParseAdapter(const YAML::Node& node, AdapterSettings* adapter) {
    static const std::vector<std::string> kKeys = {"grpc_listen", "dicom", "dicomweb", "stow", "hl7", "fhir"};
    static const std::vector<std::string> kStow = {"listen", "bearer_token_env", "max_instance_mb",
                                                   "complete_after_seconds"};
    static const std::vector<std::string> kDicom = {"ae_title",         "port",
                                                    "stable_seconds",   "allowed_callers",
                                                    "max_associations", "expected_count_from_qido"};
    static const std::vector<std::string> kHl7 = {"listen", "send_to", "alert_message_type", "sending_facility",
                                                  "receiving_application", "receiving_facility",
                                                  "order_timeout_hours"};
    StatusOr<MapReader> map = MapReader::Read(node, name_, "adapter", &kKeys);
    if (!map.ok()) return map.status();
    for (const MapEntry& section : map->entries()) {
      Status s;
      if (section.key == "grpc_listen") {
        s = Endpoint(section, false, true, &adapter->grpc_listen);
      } else if (section.key == "dicom") {
        StatusOr<MapReader> dicom = MapReader::Read(section.value, name_, "adapter.dicom", &kDicom);
        if (!dicom.ok()) return dicom.status();
        for (const MapEntry& e : dicom->entries()) {
          if (e.key == "ae_title") {
            s = String(e, &adapter->dicom.ae_title);
            if (s.ok() && !ValidAeTitle(adapter->dicom.ae_title)) {
              s = ErrorAt(name_, e.value, "'ae_title' must be 1-16 printable characters without backslash, got '" +
                                              adapter->dicom.ae_title + "'");
            }
          } else if (e.key == "port") {
            s = Integer(e, 1, 65535, &adapter->dicom.port);
          } else if (e.key == "stable_seconds") {
            std::optional<double> v;
            if (e.value.IsScalar()) v = internal::ParseDecimal(e.value.Scalar());
            if (!v || *v < 0) {
              s = ErrorAt(name_, e.value, "'stable_seconds' expects a number >= 0, got " + Describe(e.value));
            } else {
              adapter->dicom.stable_seconds = *v;
            }
          } else if (e.key == "expected_count_from_qido") {
            s = Bool(e, &adapter->dicom.expected_count_from_qido);
          } else if (e.key == "max_associations") {
            s = Integer(e, 1, 256, &adapter->dicom.max_associations);
          } else if (e.key == "allowed_callers") {
            s = StringList(e, &adapter->dicom.allowed_callers);
            for (size_t i = 0; s.ok() && i < adapter->dicom.allowed_callers.size(); ++i) {
              if (!ValidAeTitle(adapter->dicom.allowed_callers[i])) {
                s = ErrorAt(name_, e.value[i], "'allowed_callers' expects AE titles (1-16 characters), got '" +
                                                   adapter->dicom.allowed_callers[i] + "'");
              }
            }
          }
          if (!s.ok()) return s;
        }
      } else if (section.key == "dicomweb" || section.key == "fhir") {
        s = ParseHttpLink(section, section.key == "fhir" ? &adapter->fhir : &adapter->dicomweb);
      } else if (section.key == "stow") {
        StatusOr<MapReader> stow = MapReader::Read(section.value, name_, "adapter.stow", &kStow);
        if (!stow.ok()) return stow.status();
        for (const MapEntry& e : stow->entries()) {
          if (e.key == "listen") {
            s = Endpoint(e, true, false, &adapter->stow.listen);
          } else if (e.key == "bearer_token_env") {
            s = String(e, &adapter->stow.bearer_token_env);
          } else if (e.key == "max_instance_mb") {
            s = Integer(e, 1, 65536, &adapter->stow.max_instance_mb);
          } else if (e.key == "complete_after_seconds") {
            std::optional<double> v;
            if (e.value.IsScalar()) v = internal::ParseDecimal(e.value.Scalar());
            if (!v || !(*v >= 0 && *v <= 86400)) {  // at most a day: it becomes milliseconds in an int64
              s = ErrorAt(name_, e.value,
                          "'complete_after_seconds' expects a number in 0..86400, got " + Describe(e.value));
            } else {
              adapter->stow.complete_after_seconds = *v;
            }
          }
          if (!s.ok()) return s;
        }
      } else if (section.key == "hl7") {
        StatusOr<MapReader> hl7 = MapReader::Read(section.value, name_, "adapter.hl7", &kHl7);
        if (!hl7.ok()) return hl7.status();
        for (const MapEntry& e : hl7->entries()) {
          if (e.key == "listen" || e.key == "send_to") {
            s = Endpoint(e, true, false, e.key == "listen" ? &adapter->hl7.listen : &adapter->hl7.send_to);
          } else if (e.key == "alert_message_type") {
            s = String(e, &adapter->hl7.alert_message_type);
            const std::string& t = adapter->hl7.alert_message_type;
            const size_t caret = t.find('^');
            if (s.ok() && (t.size() != 7 || caret != 3)) {
              s = ErrorAt(name_, e.value, "'alert_message_type' expects an HL7 type like ADT^A31, got '" + t + "'");
            }
          } else if (e.key == "order_timeout_hours") {
            s = Integer(e, 1, 24 * 30, &adapter->hl7.order_timeout_hours);
          } else {
            s = String(e, e.key == "sending_facility"        ? &adapter->hl7.sending_facility
                          : e.key == "receiving_application" ? &adapter->hl7.receiving_application
                                                             : &adapter->hl7.receiving_facility);
          }
          if (!s.ok()) return s;
        }
      }
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  Status ParseHttpLink(const MapEntry& section, HttpLinkSettings* link) {
    static const std::vector<std::string> kKeys = {"url",        "username", "password_env",   "bearer_token_env",
                                                   "verify_tls", "ca_file",  "timeout_seconds"};
    StatusOr<MapReader> map = MapReader::Read(section.value, name_, "adapter." + section.key, &kKeys);
    if (!map.ok()) return map.status();
    for (const MapEntry& e : map->entries()) {
      Status s;
      if (e.key == "url") {
        s = Url(e, &link->url);
      } else if (e.key == "verify_tls") {
        s = Bool(e, &link->verify_tls);
      } else if (e.key == "timeout_seconds") {
        s = Integer(e, 1, 3600, &link->timeout_seconds);
      } else if (e.key == "ca_file") {
        std::string file;
        s = String(e, &file);
        if (s.ok() && !file.empty()) link->ca_file = Resolve(file).string();
      } else {
        s = String(e, e.key == "username" ? &link->username
                      : e.key == "password_env" ? &link->password_env : &link->bearer_token_env);
      }
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  Status Id(const MapReader& map, const YAML::Node& item, const std::string& what, std::string* id) {
    const MapEntry* e = map.Find("id");
    if (!e) return ErrorAt(name_, item, what + " needs an 'id'");
    Status s = String(*e, id);
    if (!s.ok()) return s;
    if (!ValidId(*id)) {
      return ErrorAt(name_, e->value,
                     what + " id '" + *id + "' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");
    }
    return Status::Ok();
  }

  Status ParseDepartments(const YAML::Node& node, std::vector<Department>* out) {
    static const std::vector<std::string> kKeys = {"id", "match"};
    if (node.IsNull()) return Status::Ok();
    if (!node.IsSequence()) return ErrorAt(name_, node, "'departments' expects a list, got " + Describe(node));
    std::set<std::string> seen;
    for (const YAML::Node& item : node) {
      if (!item.IsMap()) return ErrorAt(name_, item, "a department must be a mapping with id and match, got " + Describe(item));
      StatusOr<MapReader> map = MapReader::Read(item, name_, "department", &kKeys);
      if (!map.ok()) return map.status();
      Department d;
      Status s = Id(*map, item, "department", &d.id);
      if (!s.ok()) return s;
      const MapEntry* id = map->Find("id");
      if (d.id == "default") {
        return ErrorAt(name_, id->value, "department id 'default' is reserved (it names every study no department matches)");
      }
      if (!seen.insert(d.id).second) return ErrorAt(name_, id->value, "duplicate department id '" + d.id + "'");
      const MapEntry* match = map->Find("match");
      if (!match) return ErrorAt(name_, item, "department '" + d.id + "' needs a 'match' rule");
      StatusOr<Rule> rule = Rule::FromYaml(match->value, name_);
      if (!rule.ok()) return rule.status();
      d.match = std::move(*rule);
      out->push_back(std::move(d));
    }
    return Status::Ok();
  }

  Status ParsePlugins(const YAML::Node& node, const std::vector<Department>& departments,
                      std::vector<PluginSettings>* out) {
    static const std::vector<std::string> kKeys = {"id", "match", "modes", "config"};
    if (node.IsNull()) return Status::Ok();
    if (!node.IsSequence()) return ErrorAt(name_, node, "'plugins' expects a list, got " + Describe(node));
    std::set<std::string> seen;
    for (const YAML::Node& item : node) {
      if (!item.IsMap()) return ErrorAt(name_, item, "a plugin must be a mapping with id, match, modes and config, got " + Describe(item));
      StatusOr<MapReader> map = MapReader::Read(item, name_, "plugin", &kKeys);
      if (!map.ok()) return map.status();
      PluginSettings p;
      Status s = Id(*map, item, "plugin", &p.id);
      if (!s.ok()) return s;
      if (!seen.insert(p.id).second) return ErrorAt(name_, map->Find("id")->value, "duplicate plugin id '" + p.id + "'");
      if (const MapEntry* match = map->Find("match")) {
        StatusOr<Rule> rule = Rule::FromYaml(match->value, name_);
        if (!rule.ok()) return rule.status();
        p.match = std::move(*rule);
      }
      if (const MapEntry* modes = map->Find("modes")) {
        if (!(s = ParseModes(*modes, departments, &p.modes)).ok()) return s;
      }
      if (const MapEntry* config = map->Find("config")) {
        if (!config->value.IsNull() && !config->value.IsMap()) {
          return ErrorAt(name_, config->value, "plugin '" + p.id + "' config expects a mapping, got " + Describe(config->value));
        }
        Json json = Json::object();
        if (config->value.IsMap() && !(s = ToJson(config->value, 0, &json)).ok()) return s;
        p.config_json = json.dump();
      }
      out->push_back(std::move(p));
    }
    return Status::Ok();
  }

  Status ParseModes(const MapEntry& e, const std::vector<Department>& departments, std::map<std::string, Mode>* out) {
    StatusOr<MapReader> map = MapReader::Read(e.value, name_, "modes", nullptr);
    if (!map.ok()) return map.status();
    std::vector<std::string> known = {"default"};
    for (const Department& d : departments) known.push_back(d.id);
    for (const MapEntry& m : map->entries()) {
      if (std::find(known.begin(), known.end(), m.key) == known.end()) {
        return ErrorAt(name_, m.key_node,
                       "mode for undeclared department '" + m.key + "' (declared: " + internal::Join(known, ", ") + ")");
      }
      std::optional<Mode> mode;
      if (m.value.IsScalar()) mode = ParseMode(m.value.Scalar());
      if (!mode) {
        return ErrorAt(name_, m.value, "unknown mode " + Describe(m.value) + " for '" + m.key +
                                           "' (expected off|silent|assistive|integrated)");
      }
      (*out)[m.key] = *mode;
    }
    return Status::Ok();
  }

  // YAML -> JSON with sensible scalar types: plain true/false -> boolean, plain numbers -> numbers, plain
  // null/~/empty -> null, anything quoted or else -> string.
  Status ToJson(const YAML::Node& node, int depth, Json* out) {
    if (depth > kMaxJsonDepth) return ErrorAt(name_, node, "config nested too deeply");
    switch (node.Type()) {
      case YAML::NodeType::Map: {
        StatusOr<MapReader> map = MapReader::Read(node, name_, "config", nullptr);
        if (!map.ok()) return map.status();
        *out = Json::object();
        for (const MapEntry& e : map->entries()) {
          Json v;
          Status s = ToJson(e.value, depth + 1, &v);
          if (!s.ok()) return s;
          (*out)[e.key] = std::move(v);
        }
        return Status::Ok();
      }
      case YAML::NodeType::Sequence: {
        *out = Json::array();
        for (const YAML::Node& item : node) {
          Json v;
          Status s = ToJson(item, depth + 1, &v);
          if (!s.ok()) return s;
          out->push_back(std::move(v));
        }
        return Status::Ok();
      }
      case YAML::NodeType::Scalar: {
        const std::string& text = node.Scalar();
        if (node.Tag() == "!") {  // quoted: always a string
          *out = text;
        } else if (std::optional<bool> b = internal::ParseBool(text)) {
          *out = *b;
        } else if (std::optional<int64_t> i = internal::ParseInteger(text)) {
          *out = *i;
        } else if (std::optional<double> d = internal::ParseDecimal(text)) {
          *out = *d;
        } else {
          *out = text;
        }
        return Status::Ok();
      }
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        *out = nullptr;
        return Status::Ok();
    }
    return Status::Ok();
  }

  std::filesystem::path base_dir_;
  std::string name_;
};

}  // namespace

StatusOr<SiteConfig> ParseSiteConfig(const std::string& text, const std::filesystem::path& base_dir,
                                     const std::string& name) {
  YAML::Node root;
  Status parsed = internal::ParseYaml(text, name, &root);
  if (!parsed.ok()) return parsed;
  try {
    return SiteConfigParser(base_dir, name).Parse(root);
  } catch (const YAML::Exception& e) {
    return ErrorAt(name, e.mark, e.msg);  // unforeseen yaml-cpp throw: report, never crash
  } catch (const std::filesystem::filesystem_error& e) {
    return InvalidArgument(name + ": " + e.what());
  }
}

StatusOr<SiteConfig> LoadSiteConfig(const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec).lexically_normal();
  if (ec) return NotFound("cannot read site config " + path.string() + ": " + ec.message());
  if (!std::filesystem::is_regular_file(absolute, ec)) {
    return NotFound("cannot read site config " + path.string() + ": not a regular file");
  }
  std::ifstream in(absolute, std::ios::binary);
  if (!in) return NotFound("cannot read site config " + path.string() + ": no such file or not readable");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return NotFound("cannot read site config " + path.string());
  StatusOr<SiteConfig> config = ParseSiteConfig(text.str(), absolute.parent_path(), path.string());
  if (config.ok()) config->source = absolute;
  return config;
}

}  // namespace aihub::config
