// Peers for the dicomweb tests. The suites "orthanc" and "fault_peer" are skipped in plain runs; run_with_peers.py
// starts a real Orthanc and the fault peer and runs them with their URLs in the environment.
#pragma once

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "dicomweb/http.h"

namespace aihub::dicomweb::testing {

inline std::string PeerUrl(const char* variable) {
  const char* url = std::getenv(variable);
  REQUIRE_MESSAGE(url != nullptr, variable << " is unset: run this suite through run_with_peers.py");
  return url;
}

// e.g. http://127.0.0.1:8042/dicom-web
inline std::string OrthancUrl() { return PeerUrl("AIHUB_TEST_DICOMWEB_URL"); }
// http://127.0.0.1:<port>; routes in run_with_peers.py
inline std::string FaultUrl() { return PeerUrl("AIHUB_TEST_FAULT_URL"); }

inline ClientOptions Options(std::string base_url) {
  ClientOptions options;
  options.base_url = std::move(base_url);
  options.connect_timeout_ms = 2000;
  options.timeout_ms = 20000;
  options.low_speed_timeout_s = 5;
  return options;
}

// A port on 127.0.0.1 that refuses connections: bound, never listening, for as long as the object lives.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace aihub::dicomweb::testing
