#include "config/embedded_default.h"

namespace aihub {
extern const char* const kEmbeddedDefaultConfig;   // generated from configs/default.yaml
}

namespace aihub::config {

StatusOr<SiteConfig> EmbeddedDefaultConfig() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path build = ec ? std::filesystem::current_path() : exe.parent_path().parent_path();
  return ParseSiteConfig(kEmbeddedDefaultConfig, build, "<embedded default config>");
}

StatusOr<SiteConfig> LoadSiteConfigOrDefault(const std::string& path) {
  return path.empty() ? EmbeddedDefaultConfig() : LoadSiteConfig(path);
}

}  // namespace aihub::config
