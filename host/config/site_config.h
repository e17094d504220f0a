// The site config: one YAML file that aihubd and aihub-adapter each read their part of (see
// configs/example.yaml for every key). Paths are relative to the config file's folder.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "config/rules.h"

namespace aihub::config {

enum class Mode { kOff, kSilent, kAssistive, kIntegrated };
const char* ModeName(Mode m);                       // "off", ...
std::optional<Mode> ParseMode(const std::string& s);

struct Department {
  std::string id;
  Rule match;      // against tags, calling_ae, hl7_location
};

struct PluginSettings {
  std::string id;
  std::optional<Rule> match;                  // absent: the plugin's own default rules
  std::map<std::string, Mode> modes;          // department id -> mode; key "default" for the rest
  std::string config_json = "{}";             // the plugin's `config:` block as a JSON object
  // Mode for a department: modes[dept], else modes["default"], else silent.
  Mode ModeFor(const std::string& department) const;
};

// Endpoints are HOST:PORT ("[::1]:50051" for IPv6); gRPC endpoints may also be "unix:PATH".
struct HostSettings {
  std::string grpc_listen = "127.0.0.1:50051";
  std::string http_listen = "127.0.0.1:8080";   // "" = off
  std::vector<std::string> adapters;            // missing key = none
  int workers = 1;                 // concurrent jobs
  int job_max_attempts = 3;
  int job_lease_seconds = 600;
  int reload_poll_ms = 1000;       // plugin_dir poll interval (inotify wakes it sooner)
};

// The `adapter:` section, read by aihub-adapter. Empty strings switch a link off where noted.
struct AdapterDicomSettings {
  std::string ae_title = "AIHUB";             // 1-16 characters, no backslash
  int port = 11112;                           // 1-65535
  double stable_seconds = 5;                  // quiet time before a study counts as complete; >= 0
  std::vector<std::string> allowed_callers;   // calling AE titles; empty = any caller
  int max_associations = 16;                  // concurrent associations
  // Ask the PACS (QIDO-RS NumberOfStudyRelatedInstances) how many instances a study has when it starts to
  // arrive, so it completes as soon as they are all here instead of after stable_seconds. For PACS that forward
  // a study once they hold all of it.
  bool expected_count_from_qido = false;
};

// An HTTP peer (DICOMweb, FHIR). Secrets are never in the file: they are read from the environment variables
// it names, so the config can be shared and versioned.
struct HttpLinkSettings {
  std::string url;                  // "" = off
  std::string username;             // basic auth user ("" = none); password from $password_env
  std::string password_env;
  std::string bearer_token_env;     // bearer token from this variable (wins over basic)
  bool verify_tls = true;
  std::string ca_file;              // extra CA bundle ("" = system store)
  int timeout_seconds = 120;
};

struct AdapterHl7Settings {
  std::string listen = "127.0.0.1:2575";      // MLLP listener; "" = off
  std::string send_to = "127.0.0.1:2576";     // MLLP destination of results, alerts, priority updates; "" = off
  std::string alert_message_type = "ADT^A31"; // how alerts are sent (some middleware expects A31; or ORU^R01)
  std::string sending_facility = "AIHUB";
  std::string receiving_application;          // MSH-5 of outbound messages
  std::string receiving_facility;             // MSH-6
  int order_timeout_hours = 24;               // an order whose study never appears in the PACS is dropped then
};

// The adapter as a DICOMweb STOW-RS server, for senders that push over HTTP; off unless `listen` is set.
struct AdapterStowSettings {
  std::string listen;                   // host:port; "" = off
  std::string bearer_token_env;         // require "Authorization: Bearer $VAR"; "" = no authentication
  int max_instance_mb = 256;            // one instance's size limit (bodies stream; one instance in memory at a time)
  double complete_after_seconds = 1;    // a study completes this long after its last STOW request ended; >= 0
};

inline HttpLinkSettings DefaultDicomweb() {
  HttpLinkSettings link;
  link.url = "http://127.0.0.1:8042/dicom-web";
  return link;
}

struct AdapterSettings {
  std::string grpc_listen = "127.0.0.1:50052";  // PacsAdapter service
  AdapterDicomSettings dicom;
  HttpLinkSettings dicomweb = DefaultDicomweb();  // the PACS / VNA
  AdapterStowSettings stow;
  AdapterHl7Settings hl7;
  HttpLinkSettings fhir;                        // fhir.url "" = off
};

struct SiteConfig {
  std::filesystem::path source;    // the file it came from, absolute ("" for the embedded default)
  std::filesystem::path state_dir; // absolute
  std::filesystem::path plugin_dir;// absolute
  HostSettings host;
  AdapterSettings adapter;
  std::vector<Department> departments;
  std::vector<PluginSettings> plugins;

  const PluginSettings* FindPlugin(const std::string& id) const;
  const Department* FindDepartment(const std::string& id) const;
  // First department whose match succeeds, else "default".
  std::string DepartmentFor(const TagSource& source) const;
};

// Loads and validates a config file. Errors read "FILE:LINE:COLUMN: what is wrong" (INVALID_ARGUMENT;
// NOT_FOUND when the file cannot be read). Missing keys take the defaults above; state_dir defaults to ./var
// and plugin_dir to ./build/plugins, both relative to the file's folder.
StatusOr<SiteConfig> LoadSiteConfig(const std::filesystem::path& path);
// Parses config text; relative paths resolve against `base_dir`; `name` is used in error messages.
StatusOr<SiteConfig> ParseSiteConfig(const std::string& text, const std::filesystem::path& base_dir,
                                     const std::string& name);

}  // namespace aihub::config
