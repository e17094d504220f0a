// Small helpers for the composer tests: unique temp dirs, files, running a command.
#pragma once

#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "../../support/run_command.h"

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

using test_support::Run;

}  // namespace aihub::compose::testing
