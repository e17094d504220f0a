// Test helpers shared by the phantom tests: file bytes, DICOM tags, dciodvfy, running the CLI.
#pragma once

#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <sys/wait.h>

namespace aihub::testing {

inline std::string ReadBytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::string Tag(const std::filesystem::path& file, const DcmTagKey& key, bool meta = false) {
  DcmFileFormat f;
  REQUIRE(f.loadFile(file.c_str()).good());
  OFString v;
  DcmItem* item = meta ? static_cast<DcmItem*>(f.getMetaInfo()) : f.getDataset();
  item->findAndGetOFStringArray(key, v);
  return v.c_str();
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

inline CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) result.output.append(buf, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// Runs dciodvfy on `file`, checks it recognised `iod` and printed no line starting with "Error".
inline void CheckDciodvfyClean(const std::filesystem::path& file, const std::string& iod) {
  const CommandResult r = RunCommand("dciodvfy '" + file.string() + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find(iod) != std::string::npos);
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) CHECK(line.rfind("Error", 0) != 0);
}

inline std::string PhantomCli() { return std::string(AIHUB_BINARY_DIR) + "/bin/aihub-phantom"; }

}  // namespace aihub::testing
