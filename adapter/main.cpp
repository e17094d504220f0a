// aihub-adapter: the standard PACS adapter (DICOM destination, DICOMweb, HL7 v2 over MLLP, FHIR) behind the
// PacsAdapter gRPC service that aihubd subscribes to.
//
//   aihub-adapter [--config FILE]     run until SIGTERM / SIGINT
//   aihub-adapter version
//
// Without --config the embedded default config is used (paths relative to the build folder), the same one
// aihubd uses, so one command starts both halves on one machine.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>
#include <iostream>
#include <string>

#include "common/log.h"
#include "config/embedded_default.h"
#include "core/adapter.h"

namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  aihub-adapter [--config FILE]\n"
    "  aihub-adapter version\n"
    "Without --config, the embedded default config is used, with paths relative to the build folder.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "version" || arg == "--version") {
      std::cout << "aihub-adapter " << aihub::adapter::AdapterVersion() << "\n";
      return 0;
    }
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else {
      std::cerr << "aihub-adapter: unexpected argument '" << arg << "'\n" << kUsage;
      return 2;
    }
  }
  // DCMTK logs every DIMSE message at INFO and warns on every header-only read; the adapter logs what matters.
  OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
  // DCMTK turns Nagle off for its sockets when this is set (every peer in a benchmark runs with it).
  setenv("TCP_NODELAY", "1", 0);
  auto config = aihub::config::LoadSiteConfigOrDefault(config_path);
  if (!config.ok()) {
    std::cerr << "aihub-adapter: " << config.status().message() << "\n";
    return 2;
  }
  // Signals are taken synchronously by this thread: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto adapter = aihub::adapter::Adapter::Start(*config);
  if (!adapter.ok()) {
    std::cerr << "aihub-adapter: " << adapter.status().ToString() << "\n";
    return 2;
  }
  std::cout << "aihub-adapter serving PacsAdapter on " << (*adapter)->grpc_endpoint() << std::endl;
  int sig = 0;
  sigwait(&signals, &sig);
  aihub::LogInfo("adapter", "stopping");
  (*adapter)->Stop();
  std::cout << "aihub-adapter stopped" << std::endl;
  return 0;
}
