// The site config compiled into aihubd and aihub-adapter (configs/default.yaml), used when no --config is given.
#pragma once

#include "common/status.h"
#include "config/site_config.h"

namespace aihub::config {

// Paths resolve against the build folder (the parent of the executable's bin/), so build/bin/aihubd finds
// build/plugins and keeps its state in build/var.
StatusOr<SiteConfig> EmbeddedDefaultConfig();
// The config from `path`, or the embedded default when `path` is empty.
StatusOr<SiteConfig> LoadSiteConfigOrDefault(const std::string& path);

}  // namespace aihub::config
