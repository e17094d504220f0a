#include "dicomweb/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

namespace aihub::dicomweb {

namespace {

constexpr size_t kMaxCollectedBody = 64u << 20;

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

struct Transfer {
  const HttpRequest& request;
  HttpResponse response;
  Status aborted;  // why a callback stopped the transfer
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  if (StartsWithIgnoreCase(line, "HTTP/")) {
    // A new response (after 100 Continue or an authentication round) replaces the previous one.
    t->response = HttpResponse();
    t->response.status_line = std::string(line);
    const size_t space = line.find(' ');
    if (space != std::string_view::npos)
      t->response.status = std::strtol(t->response.status_line.c_str() + space, nullptr, 10);
    return size * count;
  }
  auto value = [&](std::string_view name) {
    std::string_view v = line.substr(name.size());
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    return std::string(v);
  };
  if (StartsWithIgnoreCase(line, "Content-Type:")) t->response.content_type = value("Content-Type:");
  if (StartsWithIgnoreCase(line, "Location:")) t->response.location = value("Location:");
  return size * count;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t->request.on_body && t->response.status / 100 == 2) {
    t->aborted = t->request.on_body(t->response, std::string_view(data, n));
    return t->aborted.ok() ? n : 0;
  }
  if (t->response.body.size() + n > kMaxCollectedBody) {
    t->aborted = ResourceExhausted("response body over " + std::to_string(kMaxCollectedBody >> 20) + " MiB");
    return 0;
  }
  t->response.body.append(data, n);
  return n;
}

Status CurlError(const HttpRequest& request, const Transfer& t, CURLcode rc, const char* detail) {
  std::string message = DescribeRequest(request) + ": " + (*detail ? detail : curl_easy_strerror(rc)) +
                        (t.response.status ? " (after " + t.response.status_line + ")" : " (no HTTP response)");
  switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return InvalidArgument(message);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return FailedPrecondition(message);
    default:
      return Unavailable(message);
  }
}

}  // namespace

struct HttpSession::Shared {
  CURLSH* share = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];
};

HttpSession::HttpSession(ClientOptions options) : options_(std::move(options)), shared_(std::make_unique<Shared>()) {
  static std::once_flag curl_initialized;
  std::call_once(curl_initialized, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  while (!options_.base_url.empty() && options_.base_url.back() == '/') options_.base_url.pop_back();
  CURLSH* share = curl_share_init();
  curl_share_setopt(
      share, CURLSHOPT_LOCKFUNC, +[](CURL*, curl_lock_data data, curl_lock_access, void* user) {
        static_cast<Shared*>(user)->locks[data].lock();
      });
  curl_share_setopt(
      share, CURLSHOPT_UNLOCKFUNC,
      +[](CURL*, curl_lock_data data, void* user) { static_cast<Shared*>(user)->locks[data].unlock(); });
  curl_share_setopt(share, CURLSHOPT_USERDATA, shared_.get());
  curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  shared_->share = share;
}

HttpSession::~HttpSession() { curl_share_cleanup(shared_->share); }

StatusOr<HttpResponse> HttpSession::Perform(const HttpRequest& request) {
  const bool post = request.method == "POST";
  if (!post && request.method != "GET") return InvalidArgument("unsupported HTTP method " + request.method);
  std::vector<std::string> headers = request.headers;
  const HttpAuth& auth = options_.auth;
  if (!auth.bearer_token.empty()) headers.push_back("Authorization: Bearer " + auth.bearer_token);
  if (post) headers.push_back("Expect:");
  curl_slist* header_list = nullptr;
  for (const std::string& h : headers) {
    if (h.find_first_of("\r\n") != std::string::npos) {
      curl_slist_free_all(header_list);
      return InvalidArgument(DescribeRequest(request) + ": line break in a header value");
    }
    header_list = curl_slist_append(header_list, h.c_str());
  }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_guard(header_list, curl_slist_free_all);
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return Internal("curl_easy_init failed");
  CURL* c = curl.get();

  Transfer transfer{request, {}, {}};
  char error_buffer[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_SHARE, shared_->share);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, options_.connect_timeout_ms);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, options_.timeout_ms);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options_.low_speed_timeout_s);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (auth.bearer_token.empty() && !auth.username.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, auth.username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, auth.password.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, header_list);
  if (post) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);

  const CURLcode rc = curl_easy_perform(c);
  if (!transfer.aborted.ok()) {
    return Status(transfer.aborted.code(),
                  DescribeRequest(request) + " (" + transfer.response.status_line + "): " + transfer.aborted.message());
  }
  if (rc != CURLE_OK) return CurlError(request, transfer, rc, error_buffer);
  return std::move(transfer.response);
}

std::string DescribeRequest(const HttpRequest& request) {
  std::string url = request.url;
  const size_t scheme_end = url.find("://");
  if (scheme_end != std::string::npos) {
    const size_t authority = scheme_end + 3;
    const size_t authority_end = std::min(url.find_first_of("/?#", authority), url.size());
    const size_t at = url.rfind('@', authority_end - 1);
    if (at != std::string::npos && at >= authority) url.erase(authority, at + 1 - authority);
  }
  return request.method + " " + url;
}

Status HttpError(const HttpRequest& request, const HttpResponse& response) {
  std::string message = DescribeRequest(request) + ": " + response.status_line;
  if (!response.body.empty()) {
    message += ": ";
    for (char c : std::string_view(response.body).substr(0, 200)) {
      const bool space = c == ' ' || c == '\t' || c == '\r' || c == '\n';
      if (space && message.back() == ' ') continue;  // pretty-printed JSON reads better on one line
      message += space ? ' ' : (c > 0x20 && c < 0x7f) ? c : '.';
    }
  }
  const long s = response.status;
  if (s == 401 || s == 403) return FailedPrecondition("not authorized: " + message);
  if (s == 404) return NotFound(message);
  if (s == 408 || s == 429 || s >= 500) return Unavailable(message);
  if (s == 400 || s == 413 || s == 414 || s == 415 || s == 422) return InvalidArgument(message);
  return FailedPrecondition(message);
}

std::string UrlEncode(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace aihub::dicomweb
