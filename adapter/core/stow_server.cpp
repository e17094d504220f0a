#include "core/stow_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "common/hash.h"
#include "common/log.h"
#include "dicomweb/multipart.h"

namespace aihub::adapter {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
namespace fs = std::filesystem;

// PS3.18 Table 10.5.3-3 (Store Instances Response failure reasons) and PS3.7 C.4.2.
constexpr uint16_t kOutOfResources = 0xA700;
constexpr uint16_t kCannotUnderstand = 0xC000;
constexpr uint16_t kProcessingFailure = 0x0110;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The value of parameter `name` in a Content-Type header (quotes removed), "" when absent.
std::string ContentTypeParameter(const std::string& content_type, const std::string& name) {
  const std::string lower = Lower(content_type);
  size_t at = 0;
  while ((at = lower.find(';', at)) != std::string::npos) {
    ++at;
    while (at < lower.size() && (lower[at] == ' ' || lower[at] == '\t')) ++at;
    if (lower.compare(at, name.size(), name) == 0 && at + name.size() < lower.size() &&
        lower[at + name.size()] == '=') {
      std::string value = content_type.substr(at + name.size() + 1);
      const bool quoted = !value.empty() && value[0] == '"';
      if (quoted) {
        const size_t close = value.find('"', 1);
        return value.substr(1, close == std::string::npos ? std::string::npos : close - 1);
      }
      return value.substr(0, value.find_first_of("; \t"));
    }
  }
  return "";
}

std::string MediaType(const std::string& content_type) {
  std::string type = Lower(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  return type;
}

// "…/studies" -> "" (any study), "…/studies/{uid}" -> uid; nullopt for any other path (query string ignored).
std::optional<std::string> StudyFromTarget(std::string target) {
  target = target.substr(0, target.find('?'));
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  static const std::string kStudies = "/studies";
  if (target.size() >= kStudies.size() && target.compare(target.size() - kStudies.size(), kStudies.size(),
                                                         kStudies) == 0) {
    return std::string();
  }
  const size_t at = target.rfind("/studies/");
  if (at == std::string::npos) return std::nullopt;
  const std::string uid = target.substr(at + kStudies.size() + 1);
  if (uid.empty() || uid.find('/') != std::string::npos) return std::nullopt;
  return uid;
}

struct Outcome {
  std::vector<nlohmann::json> referenced, failed;
  std::set<std::string> studies;  // studies this request stored into
};

nlohmann::json Uids(const std::string& sop_class, const std::string& sop_instance) {
  nlohmann::json item = nlohmann::json::object();
  if (!sop_class.empty()) item["00081150"] = {{"vr", "UI"}, {"Value", {sop_class}}};
  if (!sop_instance.empty()) item["00081155"] = {{"vr", "UI"}, {"Value", {sop_instance}}};
  return item;
}

}  // namespace

class StowServer::Impl {
 public:
  Impl(const StowSettings& s, Spool& sp, StudyCallback st, StudyCallback co)
      : settings(s), spool(sp), stored(std::move(st)), complete(std::move(co)) {}

  StowSettings settings;
  Spool& spool;
  StudyCallback stored, complete;
  asio::io_context io;
  std::unique_ptr<tcp::acceptor> acceptor;
  int port = 0;
  std::atomic<bool> stop{false};
  std::thread accept_thread, completion_thread;

  std::mutex mu;
  std::condition_variable wake;
  std::map<uint64_t, std::thread> connections;   // running or finished, joined by Reap / Stop
  std::map<uint64_t, int> connection_fds;        // running ones
  std::vector<uint64_t> finished;
  uint64_t next_id = 0;
  std::map<std::string, int> in_flight;          // study -> running requests that stored into it
  std::map<std::string, int64_t> due_ms;         // study -> when it completes

  void AcceptLoop() {
    while (!stop) {
      tcp::socket socket(io);
      boost::system::error_code ec;
      acceptor->accept(socket, ec);
      if (stop) break;
      if (ec) {
        if (ec != asio::error::interrupted && ec != asio::error::try_again) {
          LogWarning("stow", "accept failed: " + ec.message());
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        continue;
      }
      const int fd = socket.native_handle();
      timeval tv{settings.io_timeout_seconds, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard<std::mutex> lock(mu);
      Reap();
      if (static_cast<int>(connection_fds.size()) >= settings.max_connections) {
        http::response<http::string_body> busy{http::status::service_unavailable, 11};
        busy.set(http::field::content_type, "text/plain");
        busy.set(http::field::retry_after, "5");
        busy.set(http::field::connection, "close");
        busy.body() = "too many concurrent STOW-RS connections\n";
        busy.prepare_payload();
        http::write(socket, busy, ec);
        CloseAfterError(socket);
        continue;
      }
      const uint64_t id = next_id++;
      connection_fds[id] = fd;
      connections[id] = std::thread([this, id, s = std::move(socket)]() mutable {
        Serve(s);
        std::lock_guard<std::mutex> l(mu);
        connection_fds.erase(id);
        finished.push_back(id);
      });
    }
  }

  // Joins connection threads that ended (mu held).
  void Reap() {
    for (uint64_t id : finished) {
      auto it = connections.find(id);
      if (it == connections.end()) continue;
      it->second.join();
      connections.erase(it);
    }
    finished.clear();
  }

  // Completes studies whose requests ended `complete_after_seconds` ago with none running since.
  void CompletionLoop() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) {
      const int64_t now = NowMs();
      int64_t next = now + 60000;
      std::vector<std::string> ready;
      for (auto it = due_ms.begin(); it != due_ms.end();) {
        if (in_flight.count(it->first)) {
          it = due_ms.erase(it);  // a running request owns it again; its end reschedules
        } else if (it->second <= now) {
          ready.push_back(it->first);
          it = due_ms.erase(it);
        } else {
          next = std::min(next, it->second);
          ++it;
        }
      }
      if (!ready.empty()) {
        lock.unlock();
        for (const std::string& study : ready) complete(study);
        lock.lock();
        continue;
      }
      wake.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, next - now)));
    }
  }

  void Serve(tcp::socket& socket) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::buffer_body> parser;
      // Bodies are streamed; parts are limited by max_instance_bytes. (Not boost::none: Boost 1.74 compares the
      // Content-Length against an empty optional as "greater" and refuses every body.)
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      parser.header_limit(64 * 1024);
      boost::system::error_code ec;
      http::read_header(socket, buffer, parser, ec);
      if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::eof && ec != asio::error::connection_reset &&
            ec != asio::error::would_block && ec != asio::error::timed_out && !stop) {
          Respond(socket, http::status::bad_request, "malformed HTTP request: " + ec.message(), false);
          CloseAfterError(socket);
        }
        return;
      }
      const bool keep_alive = Handle(socket, buffer, parser);
      if (!keep_alive || stop) {
        CloseAfterError(socket);
        return;
      }
    }
  }

  // Handles one request whose header is read; returns whether the connection may serve another one.
  bool Handle(tcp::socket& socket, boost::beast::flat_buffer& buffer, http::request_parser<http::buffer_body>& parser) {
    auto& req = parser.get();
    const std::string target(req.target());
    if (req.method() != http::verb::post) {
      Respond(socket, http::status::method_not_allowed, "only POST (STOW-RS) is served here", false,
              {{http::field::allow, "POST"}});
      return false;
    }
    const std::optional<std::string> study_filter = StudyFromTarget(target);
    if (!study_filter) {
      Respond(socket, http::status::not_found, "no STOW-RS resource at " + target + " (POST .../studies)", false);
      return false;
    }
    if (!study_filter->empty() && !IsValidUid(*study_filter)) {
      Respond(socket, http::status::bad_request, "invalid StudyInstanceUID in the path", false);
      return false;
    }
    if (!settings.bearer_token.empty() &&
        std::string(req[http::field::authorization]) != "Bearer " + settings.bearer_token) {
      Respond(socket, http::status::unauthorized, "a valid bearer token is required", false,
              {{http::field::www_authenticate, "Bearer realm=\"aihub\""}});
      return false;
    }
    const std::string content_type(req[http::field::content_type]);
    const std::string type_param = Lower(ContentTypeParameter(content_type, "type"));
    if (MediaType(content_type) != "multipart/related" || type_param != "application/dicom") {
      Respond(socket, http::status::unsupported_media_type,
              "expected Content-Type multipart/related; type=\"application/dicom\", got \"" + content_type + "\"",
              false);
      return false;
    }
    Outcome outcome;
    auto multipart = dicomweb::MultipartParser::Create(
        content_type,
        [&](std::string_view part_type, std::string&& body) {
          StorePart(part_type, std::move(body), *study_filter, outcome);
          return Status::Ok();
        },
        settings.max_instance_bytes);
    if (!multipart.ok()) {
      Respond(socket, http::status::unsupported_media_type, multipart.status().message(), false);
      return false;
    }
    if (Lower(std::string(req[http::field::expect])) == "100-continue") {
      http::response<http::empty_body> go_on{http::status::continue_, 11};
      boost::system::error_code ec;
      http::write(socket, go_on, ec);
      if (ec) return false;
    }

    // The body, chunk by chunk into the multipart parser.
    Status body_status;
    bool transport_failed = false;
    std::vector<char> chunk(256 * 1024);
    while (!parser.is_done() && body_status.ok()) {
      req.body().data = chunk.data();
      req.body().size = chunk.size();
      boost::system::error_code ec;
      http::read(socket, buffer, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      const size_t n = chunk.size() - req.body().size;
      if (n > 0) body_status = (*multipart)->Feed(std::string_view(chunk.data(), n));
      if (ec) {
        transport_failed = true;
        body_status = DataLoss("the request body ended early: " + ec.message());
      }
    }
    if (body_status.ok()) body_status = (*multipart)->Finish();
    Finished(outcome);

    if (transport_failed) {
      LogWarning("stow", "STOW-RS request to " + target + " broken off after " +
                             std::to_string(outcome.referenced.size()) + " stored instance(s): " +
                             body_status.message());
      return false;  // nothing to answer on a dead connection; what was stored stays stored
    }
    nlohmann::json response = nlohmann::json::object();
    if (!outcome.referenced.empty()) response["00081199"] = {{"vr", "SQ"}, {"Value", outcome.referenced}};
    if (!outcome.failed.empty()) response["00081198"] = {{"vr", "SQ"}, {"Value", outcome.failed}};
    if (!body_status.ok()) {
      const http::status status =
          body_status.code() == AIHUB_RESOURCE_EXHAUSTED ? http::status::payload_too_large : http::status::bad_request;
      LogWarning("stow", "STOW-RS request to " + target + ": " + body_status.message());
      if (outcome.referenced.empty() && outcome.failed.empty()) {
        Respond(socket, status, body_status.message(), false);
      } else {
        // What was stored before the fault is listed, so the sender knows what it need not send again; the reason
        // goes in a Warning header (PS3.18 8.3.5.1).
        Respond(socket, status, response.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), false,
                {{http::field::warning, "299 aihub-adapter: \"" + body_status.message() + "\""}},
                "application/dicom+json");
      }
      return false;
    }
    http::status status = http::status::ok;
    if (outcome.referenced.empty()) {
      status = http::status::conflict;
    } else if (!outcome.failed.empty()) {
      status = http::status::accepted;
    }
    LogInfo("stow", "STOW-RS " + target + ": " + std::to_string(outcome.referenced.size()) + " stored, " +
                        std::to_string(outcome.failed.size()) + " failed");
    return Respond(socket, status, response.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                   req.keep_alive(), {}, "application/dicom+json");
  }

  void StorePart(std::string_view part_type, std::string&& body, const std::string& study_filter, Outcome& out) {
    auto fail = [&](uint16_t reason, const std::string& sop_class, const std::string& sop_instance,
                    const std::string& why) {
      nlohmann::json item = Uids(sop_class, sop_instance);
      item["00081197"] = {{"vr", "US"}, {"Value", {reason}}};
      out.failed.push_back(std::move(item));
      LogWarning("stow", "instance " + std::to_string(out.referenced.size() + out.failed.size()) + " refused: " + why);
    };
    const std::string type = MediaType(std::string(part_type));
    if (!type.empty() && type != "application/dicom") {
      fail(kCannotUnderstand, "", "", "part of type " + std::string(part_type) + ", not application/dicom");
      return;
    }
    auto written = spool.WriteIncoming(body);
    std::string().swap(body);
    if (!written.ok()) {
      const bool unreadable = written.status().code() == AIHUB_INVALID_ARGUMENT;
      fail(unreadable ? kCannotUnderstand : kOutOfResources, "", "", written.status().message());
      return;
    }
    const InstanceUids* uids = &written->uids;
    if (!study_filter.empty() && uids->study_uid != study_filter) {
      std::error_code ec;
      fs::remove(written->temp_file, ec);
      fail(kCannotUnderstand, uids->sop_class_uid, uids->sop_uid,
           "belongs to study " + uids->study_uid + ", not to " + study_filter);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      if (out.studies.insert(uids->study_uid).second) {
        ++in_flight[uids->study_uid];
        due_ms.erase(uids->study_uid);
      }
    }
    const Status st = spool.AddInstance(written->Incoming(""), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
    if (!st.ok()) {
      fail(st.code() == AIHUB_UNAVAILABLE ? kOutOfResources : kProcessingFailure, uids->sop_class_uid, uids->sop_uid,
           st.ToString());
      return;
    }
    out.referenced.push_back(Uids(uids->sop_class_uid, uids->sop_uid));
    stored(uids->study_uid);
  }

  // The request ended: its studies complete after the grace period unless another request holds them.
  void Finished(const Outcome& out) {
    if (out.studies.empty()) return;
    std::lock_guard<std::mutex> lock(mu);
    const int64_t due = NowMs() + static_cast<int64_t>(settings.complete_after_seconds * 1000);
    for (const std::string& study : out.studies) {
      if (--in_flight[study] > 0) continue;
      in_flight.erase(study);
      due_ms[study] = due;
    }
    wake.notify_all();
  }

  // Sends a response; returns whether the connection stays usable.
  bool Respond(tcp::socket& socket, http::status status, const std::string& body, bool keep_alive,
               const std::vector<std::pair<http::field, std::string>>& headers = {},
               const std::string& content_type = "text/plain; charset=utf-8") {
    if (static_cast<int>(status) >= 400 && content_type.rfind("text/", 0) == 0) {
      LogWarning("stow", "refused with " + std::to_string(static_cast<int>(status)) + ": " + body);
    }
    http::response<http::string_body> res{status, 11};
    res.set(http::field::server, "aihub-adapter");
    res.set(http::field::content_type, content_type);
    for (const auto& [field, value] : headers) res.set(field, value);
    res.keep_alive(keep_alive);
    res.body() = content_type.rfind("text/", 0) == 0 ? body + "\n" : body;
    res.prepare_payload();
    boost::system::error_code ec;
    http::write(socket, res, ec);
    return !ec && keep_alive;
  }

  // Ends our side, then reads and drops what the peer still sends (for at most a second) before closing: closing
  // with unread input would reset the connection and could destroy the response before the peer reads it.
  static void CloseAfterError(tcp::socket& socket) {
    boost::system::error_code ec;
    socket.shutdown(tcp::socket::shutdown_send, ec);
    timeval tv{0, 200000};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    char sink[16384];
    while (std::chrono::steady_clock::now() < deadline) {
      const size_t n = socket.read_some(asio::buffer(sink), ec);
      if (ec || n == 0) break;
    }
    // The socket closes when its owner (the connection thread) ends, after Stop can no longer shut its fd down.
  }
};

StowServer::StowServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StowServer::~StowServer() { Stop(); }
int StowServer::port() const { return impl_->port; }

StatusOr<std::unique_ptr<StowServer>> StowServer::Start(const StowSettings& settings, Spool& spool,
                                                        StudyCallback stored, StudyCallback complete) {
  auto impl = std::make_unique<Impl>(settings, spool, std::move(stored), std::move(complete));
  const size_t colon = settings.listen.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("STOW-RS listen address needs host:port");
  std::string host = settings.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = settings.listen.substr(colon + 1);
  boost::system::error_code ec;
  tcp::resolver resolver(impl->io);
  const auto endpoints = resolver.resolve(host.empty() ? "0.0.0.0" : host, port,
                                          tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return InvalidArgument("cannot resolve STOW-RS listen address " + settings.listen + ": " + ec.message());
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  impl->acceptor = std::make_unique<tcp::acceptor>(impl->io);
  impl->acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor->bind(endpoint, ec);
  if (!ec) impl->acceptor->listen(64, ec);
  if (ec) return Unavailable("cannot listen for STOW-RS on " + settings.listen + ": " + ec.message());
  impl->port = impl->acceptor->local_endpoint().port();
  Impl* raw = impl.get();
  impl->accept_thread = std::thread([raw] { raw->AcceptLoop(); });
  impl->completion_thread = std::thread([raw] { raw->CompletionLoop(); });
  return std::unique_ptr<StowServer>(new StowServer(std::move(impl)));
}

void StowServer::Stop() {
  if (!impl_ || impl_->stop.exchange(true)) return;
  Impl& s = *impl_;
  // shutdown() wakes the blocking accept (and every blocking read) at once; close() alone would not.
  ::shutdown(s.acceptor->native_handle(), SHUT_RDWR);
  if (s.accept_thread.joinable()) s.accept_thread.join();
  std::map<uint64_t, std::thread> connections;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (const auto& [id, fd] : s.connection_fds) ::shutdown(fd, SHUT_RDWR);
    connections.swap(s.connections);
    s.wake.notify_all();
  }
  for (auto& [id, thread] : connections) thread.join();
  if (s.completion_thread.joinable()) s.completion_thread.join();
  boost::system::error_code ec;
  s.acceptor->close(ec);
}

}  // namespace aihub::adapter
