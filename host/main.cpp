// aihubd: the aihub host.
//
//   aihubd analyze [--config FILE] --input DIR --output DIR [--calling-ae AE] [--hl7-location LOC]
//   aihubd serve [--config FILE] [--inbox DIR --output DIR] [--calling-ae AE] [--hl7-location LOC]
//   aihubd verify-audit [--config FILE | --db FILE]
//   aihubd check-config [--config FILE]
//   aihubd version
#include <dcmtk/oflog/oflog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "common/log.h"
#include "config/site_config.h"
#include "core/analyze.h"
#include "config/embedded_default.h"
#include "core/serve.h"
#include "store/job_store.h"

namespace {

namespace fs = std::filesystem;
using aihub::StatusOr;

constexpr const char* kUsage =
    "usage:\n"
    "  aihubd analyze [--config FILE] --input DIR --output DIR [--calling-ae AE] [--hl7-location LOC]\n"
    "  aihubd serve [--config FILE] [--inbox DIR --output DIR] [--calling-ae AE] [--hl7-location LOC]\n"
    "      (studies come from the adapters in host.adapters, and/or from folders moved into --inbox)\n"
    "  aihubd verify-audit [--config FILE | --db FILE]\n"
    "  aihubd check-config [--config FILE]\n"
    "  aihubd version\n"
    "Without --config, the embedded default config is used, with paths relative to the build folder.\n";

// --key value pairs after the subcommand; unknown or valueless options are errors.
bool ParseOptions(int argc, char** argv, const std::vector<std::string>& allowed,
                  std::map<std::string, std::string>* out) {
  for (int i = 2; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || std::find(allowed.begin(), allowed.end(), key.substr(2)) == allowed.end()) {
      std::cerr << "aihubd: unknown option '" << key << "'\n" << kUsage;
      return false;
    }
    if (i + 1 >= argc) {
      std::cerr << "aihubd: option " << key << " needs a value\n";
      return false;
    }
    (*out)[key.substr(2)] = argv[++i];
  }
  return true;
}

StatusOr<aihub::config::SiteConfig> LoadConfig(const std::map<std::string, std::string>& opts) {
  auto it = opts.find("config");
  return aihub::config::LoadSiteConfigOrDefault(it == opts.end() ? std::string() : it->second);
}

int Analyze(int argc, char** argv) {
  std::map<std::string, std::string> opts;
  if (!ParseOptions(argc, argv, {"config", "input", "output", "calling-ae", "hl7-location"}, &opts)) return 2;
  if (!opts.count("input") || !opts.count("output")) {
    std::cerr << "aihubd analyze: --input and --output are required\n" << kUsage;
    return 2;
  }
  auto config = LoadConfig(opts);
  if (!config.ok()) {
    std::cerr << "aihubd: " << config.status().message() << "\n";
    return 2;
  }
  aihub::core::AnalyzeOptions options;
  options.input = opts["input"];
  options.output = opts["output"];
  options.context.calling_ae = opts["calling-ae"];
  options.context.hl7_location = opts["hl7-location"];
  return aihub::core::RunAnalyze(*config, options, std::cout);
}

int Serve(int argc, char** argv) {
  std::map<std::string, std::string> opts;
  if (!ParseOptions(argc, argv, {"config", "inbox", "output", "calling-ae", "hl7-location"}, &opts)) return 2;
  if (opts.count("inbox") != opts.count("output")) {
    std::cerr << "aihubd serve: --inbox and --output go together\n" << kUsage;
    return 2;
  }
  auto config = LoadConfig(opts);
  if (!config.ok()) {
    std::cerr << "aihubd: " << config.status().message() << "\n";
    return 2;
  }
  aihub::core::ServeOptions options;
  options.inbox = opts["inbox"];
  options.output = opts["output"];
  options.context.calling_ae = opts["calling-ae"];
  options.context.hl7_location = opts["hl7-location"];
  return aihub::core::RunServe(*config, options, std::cout);
}

int VerifyAudit(int argc, char** argv) {
  std::map<std::string, std::string> opts;
  if (!ParseOptions(argc, argv, {"config", "db"}, &opts)) return 2;
  fs::path db;
  if (opts.count("db")) {
    db = opts["db"];
  } else {
    auto config = LoadConfig(opts);
    if (!config.ok()) {
      std::cerr << "aihubd: " << config.status().message() << "\n";
      return 2;
    }
    db = config->state_dir / "aihub.db";
  }
  auto v = aihub::store::VerifyAudit(db);
  if (!v.ok()) {
    std::cerr << "aihubd verify-audit: " << v.status().ToString() << "\n";
    return 2;
  }
  for (const std::string& p : v->problems) std::cout << "audit: " << p << "\n";
  std::cout << "audit log " << db.string() << ": " << v->entries << " entries, "
            << (v->ok ? "chain intact" : "TAMPERED") << "\n";
  return v->ok ? 0 : 1;
}

int CheckConfig(int argc, char** argv) {
  std::map<std::string, std::string> opts;
  if (!ParseOptions(argc, argv, {"config"}, &opts)) return 2;
  auto config = LoadConfig(opts);
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 1;
  }
  std::cout << "config OK: state_dir " << config->state_dir.string() << ", plugin_dir " << config->plugin_dir.string()
            << ", " << config->departments.size() << " department(s), " << config->plugins.size()
            << " plugin(s)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  // DCMTK logs parse problems of untrusted files at ERROR level on its own; aihubd reports them itself, per
  // file, so keep DCMTK's logger for fatal conditions only.
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  const std::string cmd = argv[1];
  if (cmd == "analyze") return Analyze(argc, argv);
  if (cmd == "serve") return Serve(argc, argv);
  if (cmd == "verify-audit") return VerifyAudit(argc, argv);
  if (cmd == "check-config") return CheckConfig(argc, argv);
  if (cmd == "version" || cmd == "--version") {
    std::cout << "aihubd 0.1.0, plugin ABI " << AIHUB_PLUGIN_API_VERSION_MAJOR << "." << AIHUB_PLUGIN_API_VERSION_MINOR
              << "\n";
    return 0;
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::cout << kUsage;
    return 0;
  }
  std::cerr << "aihubd: unknown command '" << cmd << "'\n" << kUsage;
  return 2;
}
