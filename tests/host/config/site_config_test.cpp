#include "config/site_config.h"

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>

#include <unistd.h>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

namespace aihub::config {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kModality = 0x00080060;
constexpr uint32_t kInstitutionalDepartmentName = 0x00081040;

class FakeTags : public TagSource {
 public:
  FakeTags& Set(uint32_t tag, std::string value) {
    tags_[tag] = std::move(value);
    return *this;
  }
  FakeTags& Ae(std::string ae) {
    ae_ = std::move(ae);
    return *this;
  }
  FakeTags& Location(std::string loc) {
    loc_ = std::move(loc);
    return *this;
  }
  std::optional<std::string> Tag(uint32_t tag) const override {
    auto it = tags_.find(tag);
    if (it == tags_.end()) return std::nullopt;
    return it->second;
  }
  std::string CallingAe() const override { return ae_; }
  std::string Hl7Location() const override { return loc_; }

 private:
  std::map<uint32_t, std::string> tags_;
  std::string ae_, loc_;
};

// A fresh folder under the system temp dir, removed at scope end.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("aihub-config-test-" + std::to_string(::getpid()) + "-" +
             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "-" +
             std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

SiteConfig Parse(const std::string& yaml, const fs::path& base = "/srv/aihub") {
  StatusOr<SiteConfig> config = ParseSiteConfig(yaml, base, "site.yaml");
  INFO(yaml);
  if (!config.ok()) FAIL(config.status().ToString());
  return std::move(config).value();
}

std::string ErrorOf(const std::string& yaml) {
  StatusOr<SiteConfig> config = ParseSiteConfig(yaml, "/srv/aihub", "site.yaml");
  INFO(yaml);
  REQUIRE_FALSE(config.ok());
  CHECK(config.status().code() == AIHUB_INVALID_ARGUMENT);
  return config.status().message();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

constexpr const char* kDepartments = R"(
departments:
  - id: emergency
    match: {InstitutionalDepartmentName: EMERGENCY}
  - id: er-scanners
    match: {calling_ae: [CT_ER1, CT_ER2]}
  - id: stroke
    match: {hl7_location: STROKE}
)";

TEST_CASE("mode names round-trip") {
  for (Mode m : {Mode::kOff, Mode::kSilent, Mode::kAssistive, Mode::kIntegrated}) {
    REQUIRE(ParseMode(ModeName(m)).has_value());
    CHECK(*ParseMode(ModeName(m)) == m);
  }
  CHECK_FALSE(ParseMode("Silent").has_value());
  CHECK_FALSE(ParseMode("").has_value());
}

TEST_CASE("defaults when keys are missing, paths resolve against the config's folder") {
  SiteConfig c = Parse("");
  CHECK(c.state_dir == fs::path("/srv/aihub/var"));
  CHECK(c.plugin_dir == fs::path("/srv/aihub/build/plugins"));
  CHECK(c.host.grpc_listen == "127.0.0.1:50051");
  CHECK(c.host.http_listen == "127.0.0.1:8080");
  CHECK(c.host.adapters.empty());
  CHECK(c.host.workers == 1);
  CHECK(c.host.job_max_attempts == 3);
  CHECK(c.host.job_lease_seconds == 600);
  CHECK(c.host.reload_poll_ms == 1000);
  CHECK(c.adapter.grpc_listen == "127.0.0.1:50052");
  CHECK(c.adapter.dicom.ae_title == "AIHUB");
  CHECK(c.adapter.dicom.port == 11112);
  CHECK(c.adapter.dicom.stable_seconds == 5.0);
  CHECK(c.adapter.fhir.url.empty());
  CHECK(c.departments.empty());
  CHECK(c.plugins.empty());

  SiteConfig p = Parse("state_dir: ../data/./state/\nplugin_dir: /opt/aihub/plugins\n", "/srv/aihub/etc");
  CHECK(p.state_dir == fs::path("/srv/aihub/data/state"));
  CHECK(p.plugin_dir == fs::path("/opt/aihub/plugins"));

  SiteConfig rel = Parse("state_dir: var\n", "relative/base");
  CHECK(rel.state_dir.is_absolute());
  CHECK(rel.state_dir == (fs::current_path() / "relative/base/var").lexically_normal());
}

TEST_CASE("host and adapter settings parse") {
  SiteConfig c = Parse(R"(
host:
  grpc_listen: 0.0.0.0:6000
  http_listen: ""
  adapters: [127.0.0.1:7000, "[::1]:7001"]
  workers: 4
  job_max_attempts: 5
  job_lease_seconds: 30
  reload_poll_ms: 250
adapter:
  grpc_listen: unix:/run/aihub/adapter.sock
  dicom: {ae_title: HUB1, port: 4242, stable_seconds: 0.5, allowed_callers: [CT_ER1, MR2]}
  dicomweb: {url: "https://pacs.example/dicom-web"}
  hl7: {listen: "", send_to: 10.0.0.5:2576}
  fhir: {url: http://fhir.example/r4}
)");
  CHECK(c.host.grpc_listen == "0.0.0.0:6000");
  CHECK(c.host.http_listen.empty());
  CHECK(c.host.adapters == std::vector<std::string>{"127.0.0.1:7000", "[::1]:7001"});
  CHECK(c.host.workers == 4);
  CHECK(c.host.job_max_attempts == 5);
  CHECK(c.host.job_lease_seconds == 30);
  CHECK(c.host.reload_poll_ms == 250);
  CHECK(c.adapter.grpc_listen == "unix:/run/aihub/adapter.sock");
  CHECK(c.adapter.dicom.ae_title == "HUB1");
  CHECK(c.adapter.dicom.port == 4242);
  CHECK(c.adapter.dicom.stable_seconds == 0.5);
  CHECK(c.adapter.dicom.allowed_callers == std::vector<std::string>{"CT_ER1", "MR2"});
  CHECK(c.adapter.dicomweb.url == "https://pacs.example/dicom-web");
  CHECK(c.adapter.hl7.listen.empty());
  CHECK(c.adapter.hl7.send_to == "10.0.0.5:2576");
  CHECK(c.adapter.fhir.url == "http://fhir.example/r4");
}

TEST_CASE("adapter HTTP links read secrets from named environment variables, HL7 options") {
  SiteConfig c = Parse(R"(
adapter:
  dicom: {max_associations: 4, expected_count_from_qido: true}
  dicomweb: {url: "https://pacs/dicom-web", username: hub, password_env: PACS_PASSWORD, verify_tls: false,
             ca_file: certs/pacs.pem, timeout_seconds: 30}
  fhir: {url: "https://fhir/r4", bearer_token_env: FHIR_TOKEN}
  hl7: {alert_message_type: "ORU^R01", sending_facility: RAD, receiving_application: RIS, order_timeout_hours: 2}
)");
  CHECK(c.adapter.dicom.max_associations == 4);
  CHECK(c.adapter.dicom.expected_count_from_qido);
  CHECK(c.adapter.dicomweb.username == "hub");
  CHECK(c.adapter.dicomweb.password_env == "PACS_PASSWORD");
  CHECK_FALSE(c.adapter.dicomweb.verify_tls);
  CHECK(std::filesystem::path(c.adapter.dicomweb.ca_file).is_absolute());
  CHECK(c.adapter.dicomweb.timeout_seconds == 30);
  CHECK(c.adapter.fhir.bearer_token_env == "FHIR_TOKEN");
  CHECK(c.adapter.fhir.verify_tls);
  CHECK(c.adapter.hl7.alert_message_type == "ORU^R01");
  CHECK(c.adapter.hl7.receiving_application == "RIS");
  CHECK(c.adapter.hl7.order_timeout_hours == 2);
  CHECK(c.adapter.hl7.listen == "127.0.0.1:2575");   // default kept

  CHECK(ErrorOf("adapter:\n  dicomweb: {verify_tls: maybe}\n").find("'verify_tls' expects true or false") !=
        std::string::npos);
  CHECK(ErrorOf("adapter:\n  hl7: {alert_message_type: ALERT}\n").find("like ADT^A31") != std::string::npos);
  CHECK(ErrorOf("adapter:\n  fhir: {password: secret}\n").find("password") != std::string::npos);
}

TEST_CASE("adapter STOW-RS server: off by default, listen, token variable, limits") {
  CHECK(Parse("adapter: {}\n").adapter.stow.listen.empty());
  SiteConfig c = Parse(R"(
adapter:
  stow: {listen: "127.0.0.1:8081", bearer_token_env: STOW_TOKEN, max_instance_mb: 2048, complete_after_seconds: 2.5}
)");
  CHECK(c.adapter.stow.listen == "127.0.0.1:8081");
  CHECK(c.adapter.stow.bearer_token_env == "STOW_TOKEN");
  CHECK(c.adapter.stow.max_instance_mb == 2048);
  CHECK(c.adapter.stow.complete_after_seconds == 2.5);
  CHECK(ErrorOf("adapter:\n  stow: {listen: nowhere}\n").find("2:18: 'listen' expects HOST:PORT") != std::string::npos);
  CHECK(ErrorOf("adapter:\n  stow: {complete_after_seconds: -1}\n").find("'complete_after_seconds' expects") !=
        std::string::npos);
  CHECK(ErrorOf("adapter:\n  stow: {complete_after_seconds: 1e300}\n").find("'complete_after_seconds' expects") !=
        std::string::npos);
  CHECK(ErrorOf("adapter:\n  stow: {max_instance_mb: 0}\n").find("max_instance_mb") != std::string::npos);
  CHECK(ErrorOf("adapter:\n  stow: {token: x}\n").find("token") != std::string::npos);
}

TEST_CASE("departments by tag, calling AE and HL7 location, else default") {
  SiteConfig c = Parse(kDepartments);
  REQUIRE(c.departments.size() == 3);
  CHECK(c.DepartmentFor(FakeTags().Set(kInstitutionalDepartmentName, "EMERGENCY ")) == "emergency");
  CHECK(c.DepartmentFor(FakeTags().Ae("CT_ER2")) == "er-scanners");
  CHECK(c.DepartmentFor(FakeTags().Location("STROKE")) == "stroke");
  CHECK(c.DepartmentFor(FakeTags().Set(kInstitutionalDepartmentName, "RADIOLOGY").Ae("CT_MAIN")) == "default");
  CHECK(c.DepartmentFor(FakeTags()) == "default");
  // First match wins.
  CHECK(c.DepartmentFor(FakeTags().Set(kInstitutionalDepartmentName, "EMERGENCY").Location("STROKE")) == "emergency");
  REQUIRE(c.FindDepartment("stroke") != nullptr);
  CHECK(c.FindDepartment("stroke")->id == "stroke");
  CHECK(c.FindDepartment("nope") == nullptr);
}

TEST_CASE("plugins: match, modes with and without default, config_json") {
  SiteConfig c = Parse(std::string(kDepartments) + R"(
plugins:
  - id: ich
    match: {Modality: CT, BodyPartExamined: [HEAD, BRAIN]}
    modes: {emergency: assistive, stroke: integrated, default: off}
    config:
      threshold: 0.75
      max_slices: 400
      negative: -3
      use_gpu: false
      strict: True
      label: "42"
      name: ich-v2
      nothing: ~
      empty: ""
      version: 1.2.3
      windows: [{center: 40, width: 80}, [1, two]]
      nested: {a: {b: yes}}
  - id: chest
    modes: {er-scanners: integrated}
)");
  REQUIRE(c.plugins.size() == 2);
  const PluginSettings* ich = c.FindPlugin("ich");
  REQUIRE(ich != nullptr);
  REQUIRE(ich->match.has_value());
  CHECK(ich->match->Matches(FakeTags().Set(kModality, "CT").Set(0x00180015, "BRAIN")));
  CHECK_FALSE(ich->match->Matches(FakeTags().Set(kModality, "CT").Set(0x00180015, "CHEST")));
  CHECK(ich->ModeFor("emergency") == Mode::kAssistive);
  CHECK(ich->ModeFor("stroke") == Mode::kIntegrated);
  CHECK(ich->ModeFor("er-scanners") == Mode::kOff);  // falls to default
  CHECK(ich->ModeFor("default") == Mode::kOff);

  const PluginSettings* chest = c.FindPlugin("chest");
  REQUIRE(chest != nullptr);
  CHECK_FALSE(chest->match.has_value());               // the plugin's own default rules apply
  CHECK(chest->ModeFor("er-scanners") == Mode::kIntegrated);
  CHECK(chest->ModeFor("emergency") == Mode::kSilent);  // no default: silent
  CHECK(chest->config_json == "{}");
  CHECK(c.FindPlugin("missing") == nullptr);

  nlohmann::json j = nlohmann::json::parse(ich->config_json);
  CHECK(j["threshold"].is_number_float());
  CHECK(j["threshold"].get<double>() == 0.75);
  CHECK(j["max_slices"].is_number_integer());
  CHECK(j["max_slices"].get<int>() == 400);
  CHECK(j["negative"].get<int>() == -3);
  CHECK(j["use_gpu"] == false);
  CHECK(j["strict"] == true);
  CHECK(j["label"] == "42");  // quoted stays a string
  CHECK(j["name"] == "ich-v2");
  CHECK(j["nothing"].is_null());
  CHECK(j["empty"] == "");
  CHECK(j["version"] == "1.2.3");
  CHECK(j["windows"][0]["center"] == 40);
  CHECK(j["windows"][1][0] == 1);
  CHECK(j["windows"][1][1] == "two");
  CHECK(j["nested"]["a"]["b"] == "yes");  // YAML 1.1 yes/no are not booleans here
  CHECK(StartsWith(ich->config_json, "{\"threshold\":0.75,"));  // document order kept
}

TEST_CASE("configs/example.yaml loads and routes") {
  const fs::path example = fs::path(AIHUB_SOURCE_DIR) / "configs" / "example.yaml";
  StatusOr<SiteConfig> loaded = LoadSiteConfig(example);
  if (!loaded.ok()) FAIL(loaded.status().ToString());
  const SiteConfig& c = *loaded;
  CHECK(c.source == fs::path(AIHUB_SOURCE_DIR) / "configs" / "example.yaml");
  CHECK(c.state_dir == (fs::path(AIHUB_SOURCE_DIR) / "configs" / "var").lexically_normal());
  CHECK(c.plugin_dir == (fs::path(AIHUB_SOURCE_DIR) / "configs" / "build" / "plugins").lexically_normal());
  CHECK(c.host.adapters == std::vector<std::string>{"127.0.0.1:50052"});
  CHECK(c.adapter.dicom.ae_title == "AIHUB");
  CHECK(c.adapter.dicom.allowed_callers.empty());
  CHECK(c.departments.size() == 3);
  REQUIRE(c.FindPlugin("ich") != nullptr);
  const PluginSettings& ich = *c.FindPlugin("ich");
  CHECK(ich.ModeFor("emergency") == Mode::kAssistive);
  CHECK(ich.ModeFor("er-scanners") == Mode::kSilent);
  FakeTags head = FakeTags();
  head.Set(kModality, "CT").Set(0x00180015, "HEAD").Set(0x00180050, "1.25").Set(0x00080008, "ORIGINAL\\PRIMARY\\AXIAL");
  head.Set(0x0008103E, "AX BRAIN");
  CHECK(ich.match->Matches(head));
  head.Set(0x00080008, "ORIGINAL\\PRIMARY\\LOCALIZER");
  CHECK_FALSE(ich.match->Matches(head));
  CHECK(nlohmann::json::parse(ich.config_json)["use_gpu"] == false);
  REQUIRE(c.FindPlugin("chest-xray") != nullptr);
  CHECK(c.FindPlugin("chest-xray")->ModeFor("emergency") == Mode::kOff);
}

TEST_CASE("LoadSiteConfig resolves against the file's folder and names the file in errors") {
  TempDir dir;
  const fs::path file = dir.path() / "site.yaml";
  {
    std::ofstream out(file);
    out << "state_dir: state\nplugins:\n  - id: a\n    modse: {default: off}\n";
  }
  StatusOr<SiteConfig> bad = LoadSiteConfig(file);
  REQUIRE_FALSE(bad.ok());
  CHECK(StartsWith(bad.status().message(), file.string() + ":4:5: unknown key 'modse' in plugin"));
  CHECK(Contains(bad.status().message(), "id, match, modes, config"));
  {
    std::ofstream out(file);
    out << "state_dir: state\n";
  }
  StatusOr<SiteConfig> good = LoadSiteConfig(file);
  REQUIRE(good.ok());
  CHECK(good->state_dir == dir.path() / "state");
  CHECK(good->source == file);

  StatusOr<SiteConfig> missing = LoadSiteConfig(dir.path() / "nope.yaml");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == AIHUB_NOT_FOUND);
  CHECK_FALSE(LoadSiteConfig(dir.path()).ok());  // a folder is not a config
}

TEST_CASE("site config errors carry name:line:column") {
  std::string e = ErrorOf("stat_dir: ./var\n");
  CHECK(StartsWith(e, "site.yaml:1:1: unknown key 'stat_dir' in the site config"));
  CHECK(Contains(e, "state_dir, plugin_dir, host, adapter, departments, plugins"));

  e = ErrorOf("host:\n  worker: 2\n");
  CHECK(StartsWith(e, "site.yaml:2:3: unknown key 'worker' in host"));
  CHECK(Contains(e, "workers"));

  e = ErrorOf("host:\n  workers: 0\n");
  CHECK(StartsWith(e, "site.yaml:2:12: 'workers' must be a positive integer"));
  e = ErrorOf("host:\n  workers: two\n");
  CHECK(StartsWith(e, "site.yaml:2:12: 'workers' expects an integer"));
  e = ErrorOf("host:\n  job_max_attempts: -1\n");
  CHECK(StartsWith(e, "site.yaml:2:21: 'job_max_attempts' must be a positive integer"));
  e = ErrorOf("host:\n  job_lease_seconds: 1.5\n");
  CHECK(StartsWith(e, "site.yaml:2:22: 'job_lease_seconds' expects an integer"));
  e = ErrorOf("host:\n  reload_poll_ms: [1]\n");
  CHECK(StartsWith(e, "site.yaml:2:19: 'reload_poll_ms' expects an integer"));
  e = ErrorOf("host:\n  adapters: 127.0.0.1:1\n");
  CHECK(StartsWith(e, "site.yaml:2:13: 'adapters' expected a list of strings"));
  e = ErrorOf("host:\n  adapters: [127.0.0.1:1, {a: b}]\n");
  CHECK(StartsWith(e, "site.yaml:2:27: 'adapters' expected a list of strings"));
  e = ErrorOf("host:\n  grpc_listen: localhost\n");
  CHECK(StartsWith(e, "site.yaml:2:16: 'grpc_listen' expects HOST:PORT"));
  e = ErrorOf("state_dir: [a]\n");
  CHECK(StartsWith(e, "site.yaml:1:12: 'state_dir' expects a string"));
  e = ErrorOf("host: 3\n");
  CHECK(StartsWith(e, "site.yaml:1:7: expected a mapping for host"));

  e = ErrorOf("adapter:\n  dicom: {port: 70000}\n");
  CHECK(StartsWith(e, "site.yaml:2:17: 'port' must be between 1 and 65535"));
  e = ErrorOf("adapter:\n  dicom: {ae_title: THIS_TITLE_IS_TOO_LONG}\n");
  CHECK(StartsWith(e, "site.yaml:2:21: 'ae_title' must be 1-16"));
  e = ErrorOf("adapter:\n  dicom: {stable_seconds: soon}\n");
  CHECK(StartsWith(e, "site.yaml:2:27: 'stable_seconds' expects a number"));
  e = ErrorOf("adapter:\n  dicom: {allowed_callers: CT1}\n");
  CHECK(StartsWith(e, "site.yaml:2:28: 'allowed_callers' expected a list of strings"));
  e = ErrorOf("adapter:\n  dicomweb: {url: ftp://pacs}\n");
  CHECK(StartsWith(e, "site.yaml:2:19: 'url' expects an http:// or https:// URL"));
  e = ErrorOf("adapter:\n  hl7: {listen: 2575}\n");
  CHECK(StartsWith(e, "site.yaml:2:17: 'listen' expects HOST:PORT"));
  e = ErrorOf("adapter:\n  fhir: {uri: x}\n");
  CHECK(StartsWith(e, "site.yaml:2:10: unknown key 'uri' in adapter.fhir (valid keys: url, username"));
  e = ErrorOf("adapter:\n  dicom_web: {url: x}\n");
  CHECK(StartsWith(e, "site.yaml:2:3: unknown key 'dicom_web' in adapter"));
}

TEST_CASE("department and plugin errors") {
  std::string e = ErrorOf("departments:\n  - id: er\n    match: {Modalty: CT}\n");
  CHECK(StartsWith(e, "site.yaml:3:13: unknown DICOM keyword 'Modalty'"));

  e = ErrorOf("departments:\n  - id: er\n    match: {Modality: CT}\n  - id: er\n    match: {Modality: MR}\n");
  CHECK(StartsWith(e, "site.yaml:4:9: duplicate department id 'er'"));

  e = ErrorOf("departments:\n  - id: default\n    match: {Modality: CT}\n");
  CHECK(StartsWith(e, "site.yaml:2:9: department id 'default' is reserved"));

  e = ErrorOf("departments:\n  - match: {Modality: CT}\n");
  CHECK(StartsWith(e, "site.yaml:2:5: department needs an 'id'"));

  e = ErrorOf("departments:\n  - id: er\n");
  CHECK(StartsWith(e, "site.yaml:2:5: department 'er' needs a 'match' rule"));

  e = ErrorOf("departments: {id: er}\n");
  CHECK(StartsWith(e, "site.yaml:1:14: 'departments' expects a list"));

  e = ErrorOf("plugins:\n  - id: a\n  - id: b\n  - id: a\n");
  CHECK(StartsWith(e, "site.yaml:4:9: duplicate plugin id 'a'"));

  e = ErrorOf("plugins:\n  - id: 'bad id'\n");
  CHECK(StartsWith(e, "site.yaml:2:9: plugin id 'bad id' must be"));

  e = ErrorOf("plugins:\n  - id: a\n    modse: {default: off}\n");
  CHECK(StartsWith(e, "site.yaml:3:5: unknown key 'modse' in plugin (valid keys: id, match, modes, config)"));

  e = ErrorOf("plugins:\n  - id: a\n    modes: {default: shadow}\n");
  CHECK(StartsWith(e, "site.yaml:3:22: unknown mode 'shadow' for 'default'"));
  CHECK(Contains(e, "off|silent|assistive|integrated"));

  e = ErrorOf(std::string(kDepartments) + "plugins:\n  - id: a\n    modes: {emergency: silent, icu: assistive}\n");
  INFO(e);
  CHECK(StartsWith(e, "site.yaml:11:32: mode for undeclared department 'icu'"));
  CHECK(Contains(e, "default, emergency, er-scanners, stroke"));

  e = ErrorOf("plugins:\n  - id: a\n    match: {Modality: {regex: '*'}}\n");
  CHECK(StartsWith(e, "site.yaml:3:31: invalid regex '*'"));

  e = ErrorOf("plugins:\n  - id: a\n    match: {SliceThickness: {range: [3, 2]}}\n");
  CHECK(StartsWith(e, "site.yaml:3:37: "));
  CHECK(Contains(e, "lo 3 > hi 2"));

  e = ErrorOf("plugins:\n  - id: a\n    config: [1, 2]\n");
  CHECK(StartsWith(e, "site.yaml:3:13: plugin 'a' config expects a mapping"));

  e = ErrorOf("plugins:\n  - id: a\n    config: {x: 1, x: 2}\n");
  CHECK(StartsWith(e, "site.yaml:3:20: duplicate key 'x'"));

  e = ErrorOf("plugins:\n  - just-a-string\n");
  CHECK(StartsWith(e, "site.yaml:2:5: a plugin must be a mapping"));
}

TEST_CASE("YAML syntax errors in a site config report line and column") {
  std::string e = ErrorOf("host:\n  workers: 2\n plugins: [\n");
  CHECK(StartsWith(e, "site.yaml:3:"));
  CHECK(Contains(e, "YAML syntax error"));
  e = ErrorOf("plugins:\n  - id: a\n    modes: {default: off\n");
  CHECK(StartsWith(e, "site.yaml:"));
  CHECK_FALSE(StartsWith(e, "site.yaml:0:"));
  CHECK(Contains(e, "YAML syntax error"));
  e = ErrorOf("a: 1\n---\nb: 2\n");
  CHECK(StartsWith(e, "site.yaml:3:1: only one YAML document"));
}

}  // namespace
}  // namespace aihub::config
