// `aihubd serve`: the host as a daemon. Studies come from the PacsAdapter endpoints listed in host.adapters
// (see adapter_link.h: watched, fetched, routed; results delivered back through the adapter by governance mode)
// and/or from a folder inbox.
//
// Each complete study folder moved (renamed) into the inbox is routed once; jobs run on worker threads through
// the durable job store and results are written like `analyze` does. Plugins hot-reload when a new .so is
// renamed into plugin_dir (inotify, polling fallback). SIGHUP re-reads the config file (a bad one is refused
// and the last good one stays) and rescans plugin_dir. SIGTERM/SIGINT stop cleanly: running plugins are asked
// to cancel and their jobs go back to pending for the next start.
#pragma once

#include <filesystem>
#include <ostream>

#include "config/site_config.h"
#include "core/router.h"

namespace aihub::core {

struct ServeOptions {
  std::filesystem::path inbox;    // "" = no folder inbox
  std::filesystem::path output;   // where inbox studies' results are written
  StudyContext context;
  int inbox_poll_ms = 500;
};

// Runs until SIGTERM or SIGINT. Returns the process exit status.
int RunServe(const config::SiteConfig& config, const ServeOptions& options, std::ostream& out);

}  // namespace aihub::core
