// Helpers for the HL7 tests: python3-hl7 as a foreign parser, a plain TCP client, bounded waits.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "../../support/run_command.h"
#include <vector>

namespace aihub::hl7::testing {

inline std::filesystem::path TempDir() {
  static int counter = 0;
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("aihub_hl7_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::create_directories(dir);
  return dir;
}

using test_support::Run;

// Runs a python3-hl7 script (Debian's /usr/bin/python3) with `args`; its stdout must be one JSON document.
inline nlohmann::json RunPython(const std::string& script, const std::vector<std::string>& args) {
  const std::filesystem::path dir = TempDir();
  std::ofstream(dir / "script.py") << script;
  std::string command = "/usr/bin/python3 '" + (dir / "script.py").string() + "'";
  for (const std::string& a : args) command += " '" + a + "'";
  int status = 0;
  const std::string out = Run(command, &status);
  std::filesystem::remove_all(dir);
  if (status != 0) return {{"error", out}};
  return nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
}

// python3-hl7's reading of `message`: "segments" (ids in order) and, for each accessor key ("MSH.F9.R1.C2",
// "OBX2.F5"), the unescaped value, null where the segment is missing.
inline nlohmann::json PythonFields(const std::string& message, const std::vector<std::string>& keys) {
  const std::filesystem::path dir = TempDir();
  std::ofstream(dir / "msg.hl7", std::ios::binary) << message;
  std::vector<std::string> args = {(dir / "msg.hl7").string()};
  args.insert(args.end(), keys.begin(), keys.end());
  nlohmann::json out = RunPython(R"PY(
import hl7, json, sys
raw = open(sys.argv[1], newline='', encoding='utf-8').read()
assert not any(c in raw for c in '\n\x0b\x1c'), 'a raw LF, 0x0B or 0x1C in the message'
assert all(s == '' or (len(s) >= 3 and s[:3].isalnum()) for s in raw.split('\r')), 'a raw CR split a segment'
m = hl7.parse(raw)
out = {'segments': [str(s[0]) for s in m]}
for key in sys.argv[2:]:
    try:
        out[key] = m[key]
    except KeyError:
        out[key] = None
print(json.dumps(out))
)PY",
                                 args);
  std::filesystem::remove_all(dir);
  return out;
}

// A blocking client socket on 127.0.0.1:port with TCP_NODELAY; -1 when the connection fails.
inline int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

inline bool SendAll(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads until the peer closes (true) or `timeout` passes (false); what arrived goes to *received.
inline bool ReadUntilClosed(int fd, std::string* received,
                            std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return true;  // EOF, or a reset: closed either way
    received->append(buf, static_cast<size_t>(n));
  }
}

// Reads until `received` holds a whole MLLP frame (true), or the peer closes or `timeout` passes (false).
inline bool ReadFrame(int fd, std::string* received, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (received->find("\x1c\r") == std::string::npos) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    received->append(buf, static_cast<size_t>(n));
  }
  return true;
}

}  // namespace aihub::hl7::testing
