// Small helpers for the composer tests: unique temp dirs, files, running a command.
#pragma once

#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace aihub::compose::testing {

inline std::filesystem::path TempDir(const std::string& tag) {
  static int counter = 0;
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("aihub_compose_" + tag + "_" + std::to_string(::getpid()) + "_" +
                               std::to_string(counter++));
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::filesystem::path WriteFile(const std::filesystem::path& dir, const std::string& name,
                                       const std::string& bytes) {
  std::filesystem::path p = dir / name;
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

// stdout and stderr of a shell command; exit status into *status when given.
inline std::string Run(const std::string& command, int* status = nullptr) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int rc = ::pclose(pipe);
  if (status != nullptr) *status = rc;
  return out;
}

}  // namespace aihub::compose::testing
