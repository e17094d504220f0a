// The active site config, swappable at run time (SIGHUP): readers take a snapshot that stays valid for as long
// as they hold it, so a reload never changes the config under a study that is being routed.
#pragma once

#include <memory>
#include <mutex>

#include "config/site_config.h"

namespace aihub::core {

class ConfigHolder {
 public:
  explicit ConfigHolder(config::SiteConfig config)
      : current_(std::make_shared<const config::SiteConfig>(std::move(config))) {}

  std::shared_ptr<const config::SiteConfig> Get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return current_;
  }
  void Set(config::SiteConfig config) {
    auto next = std::make_shared<const config::SiteConfig>(std::move(config));
    std::lock_guard<std::mutex> lock(mutex_);
    current_ = std::move(next);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const config::SiteConfig> current_;
};

}  // namespace aihub::core
