// Helpers for plugin tests: temp folders, test plugin paths, a small in-memory study.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

#include "dicom/study.h"

namespace aihub::testing {

inline std::filesystem::path TestPlugin(const std::string& name) {
  return std::filesystem::path(AIHUB_TEST_PLUGIN_DIR) / (name + ".so");
}

// A fresh folder under the temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("aihub-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

// Deploys a plugin the way an admin would: write beside, then rename into place (atomic).
inline void Deploy(const std::filesystem::path& from, const std::filesystem::path& to) {
  const auto tmp = to.parent_path() / ("." + to.filename().string() + ".incoming");
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(tmp, to);
}

// True when a mapping of `path` is in this process's address space.
inline bool IsMapped(const std::filesystem::path& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(path.string()) != std::string::npos) return true;
  }
  return false;
}

// One study with one CT series of `frames` frames; no files behind it (enough for plugins that only read tags).
inline dicom::Study TagOnlyStudy(int frames = 3) {
  dicom::Study study;
  study.study_instance_uid = "1.2.826.0.1.3680043.10.1.1";
  study.tags[0x0020000D] = study.study_instance_uid;
  study.tags[0x00080060] = "CT";
  dicom::Series s;
  s.series_instance_uid = "1.2.826.0.1.3680043.10.1.2";
  s.tags = study.tags;
  s.tags[0x0020000E] = s.series_instance_uid;
  for (int i = 0; i < frames; ++i) {
    dicom::Instance inst;
    inst.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
    inst.sop_instance_uid = "1.2.826.0.1.3680043.10.1.3." + std::to_string(i + 1);
    s.instances.push_back(inst);
    dicom::Frame f;
    f.instance_index = static_cast<uint32_t>(i);
    f.geometry.rows = 16;
    f.geometry.columns = 16;
    s.frames.push_back(f);
  }
  study.series.push_back(s);
  return study;
}

}  // namespace aihub::testing
