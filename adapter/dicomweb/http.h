// HTTP over libcurl, shared by the DICOMweb and FHIR clients: options, one request/response exchange, and the
// mapping of HTTP and transport failures onto status codes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace aihub::dicomweb {

// Bearer wins when both are set; HTTP basic authentication when username is set; none otherwise.
struct HttpAuth {
  std::string bearer_token;
  std::string username, password;
};

struct ClientOptions {
  std::string base_url;  // e.g. http://127.0.0.1:8042/dicom-web (a trailing '/' is ignored); http or https only
  HttpAuth auth;
  bool verify_tls = true;  // peer certificate and host name
  std::string ca_file;     // PEM bundle; "" = the system's
  long connect_timeout_ms = 5000;
  long timeout_ms = 120000;       // whole exchange, body included
  long low_speed_timeout_s = 30;  // abort when not one byte moved for this long
};

struct HttpResponse {
  long status = 0;           // HTTP status code
  std::string status_line;   // "HTTP/1.1 404 Not Found"
  std::string content_type;  // Content-Type header, "" when absent
  std::string location;      // Location header, "" when absent
  std::string body;          // the body, unless streamed to HttpRequest::on_body
};

struct HttpRequest {
  std::string method;  // "GET" or "POST"
  std::string url;
  std::vector<std::string> headers;  // "Name: value"; values must not contain CR or LF
  std::string body;                  // sent with POST
  // When set, the body of a 2xx response goes here chunk by chunk (head complete, body empty) instead of into
  // HttpResponse::body. An error aborts the transfer and Perform returns it with the request named.
  std::function<Status(const HttpResponse& head, std::string_view chunk)> on_body;
};

// One connection cache (keep-alive), DNS cache and TLS session cache shared by every request of a session; each
// Perform uses its own easy handle, so Perform may be called from several threads at once. TCP_NODELAY is on
// (libcurl's default); POST sends no "Expect: 100-continue". Redirects are not followed.
class HttpSession {
 public:
  explicit HttpSession(ClientOptions options);
  ~HttpSession();
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  const ClientOptions& options() const { return options_; }

  // Any HTTP status is a response (judge it with HttpError). Transport failures: connection refused or reset,
  // DNS, timeouts -> UNAVAILABLE; a malformed URL or unsupported scheme -> INVALID_ARGUMENT; TLS verification or
  // a bad CA file -> FAILED_PRECONDITION; a collected body over 64 MiB -> RESOURCE_EXHAUSTED.
  StatusOr<HttpResponse> Perform(const HttpRequest& request);

 private:
  struct Shared;
  ClientOptions options_;
  std::unique_ptr<Shared> shared_;
};

// "GET http://host/path?query", with any user:password@ taken out of the URL.
std::string DescribeRequest(const HttpRequest& request);

// The status for a response that is not the one expected:
//   401, 403 -> FAILED_PRECONDITION "not authorized: ..."; 404 -> NOT_FOUND; 408, 429, 5xx -> UNAVAILABLE;
//   400, 413, 414, 415, 422 -> INVALID_ARGUMENT; any other status -> FAILED_PRECONDITION.
// The message names the method, URL and status line, then the first 200 bytes of the body (whitespace runs as one
// space, other non-printable bytes as '.').
Status HttpError(const HttpRequest& request, const HttpResponse& response);

// Percent-encoding of everything but RFC 3986 unreserved characters.
std::string UrlEncode(std::string_view text);

}  // namespace aihub::dicomweb
