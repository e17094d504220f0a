// Runs a shell command from a C++ test and returns what it printed (stdout and stderr together).
#pragma once

#include <array>
#include <cstdio>
#include <string>

namespace aihub::test_support {

// stdout and stderr of `command` (run by /bin/sh); its wait status into *status when given.
inline std::string Run(const std::string& command, int* status = nullptr) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int rc = ::pclose(pipe);
  if (status != nullptr) *status = rc;
  return out;
}

}  // namespace aihub::test_support
