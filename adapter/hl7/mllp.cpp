#include "hl7/mllp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>

#include "common/log.h"

namespace aihub::hl7 {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kLog = "hl7";

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

enum class Wait { kReady, kTimeout, kStopped };

// Waits for `events` on `fd` (errors and hang-ups count as ready: the next call on fd reports them) or for
// `wake_fd` (-1: none) to become readable.
Wait WaitFor(int fd, short events, Clock::time_point deadline, int wake_fd) {
  pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
  for (;;) {
    const int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, RemainingMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Wait::kReady;  // poll itself failed: let the caller's read or write report it
    if (wake_fd >= 0 && fds[1].revents != 0) return Wait::kStopped;
    return n == 0 ? Wait::kTimeout : Wait::kReady;
  }
}

Status WriteAll(int fd, std::string_view data, Clock::time_point deadline, int wake_fd) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Unavailable(Errno("write failed"));
    const Wait w = WaitFor(fd, POLLOUT, deadline, wake_fd);
    if (w == Wait::kTimeout) return Unavailable("write timed out");
    if (w == Wait::kStopped) return Unavailable("stopped");
  }
  return Status::Ok();
}

// "host:port", "[v6]:port", ":port"; port digits only.
bool SplitHostPort(const std::string& host_port, std::string* host, std::string* port) {
  size_t colon;
  if (!host_port.empty() && host_port[0] == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string::npos || close + 1 >= host_port.size() || host_port[close + 1] != ':') return false;
    *host = host_port.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = host_port.rfind(':');
    if (colon == std::string::npos) return false;
    *host = host_port.substr(0, colon);
    if (host->find(':') != std::string::npos) return false;  // IPv6 needs brackets
  }
  *port = host_port.substr(colon + 1);
  return !port->empty() && port->size() <= 5 && port->find_first_not_of("0123456789") == std::string::npos;
}

StatusOr<addrinfo*> Resolve(const std::string& host_port, bool passive) {
  std::string host, port;
  if (!SplitHostPort(host_port, &host, &port)) {
    return InvalidArgument("bad address \"" + host_port + "\": expected host:port or [ipv6]:port");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* list = nullptr;
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &list);
  if (rc != 0) return Unavailable("cannot resolve " + host_port + ": " + ::gai_strerror(rc));
  return list;
}

void SetNoDelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string PeerName(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

// Ends our side, then reads and discards what the peer still sends (bounded by time) before closing: closing
// with unread input would send a reset that can destroy the AR just written before the peer reads it.
void CloseAfterError(int fd, int wake_fd) {
  ::shutdown(fd, SHUT_WR);
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(1);
  char buf[4096];
  while (WaitFor(fd, POLLIN, deadline, wake_fd) == Wait::kReady) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
  }
}

}  // namespace

std::string Frame(std::string_view message) {
  std::string out;
  out.reserve(message.size() + 3);
  out += kStartBlock;
  out.append(message);
  out += kEndBlock;
  out += kEndOfFrame;
  return out;
}

Status Decoder::Fail(Status status) {
  error_ = std::move(status);
  return error_;
}

Status Decoder::Feed(std::string_view bytes, std::vector<std::string>* complete) {
  if (!error_.ok()) return error_;
  static constexpr std::string_view kBlockBytes("\x0b\x1c", 2);
  size_t i = 0;
  while (i < bytes.size()) {
    const char c = bytes[i];
    if (state_ == State::kIdle) {
      if (c == kStartBlock) {
        state_ = State::kBody;
      } else if (c != '\r' && c != '\n' && c != ' ' && c != '\t') {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned char>(c));
        return Fail(InvalidArgument(std::string("byte ") + hex + " outside an MLLP frame (expected the start block)"));
      }
      ++i;
    } else if (state_ == State::kBody) {
      const size_t stop = std::min(bytes.find_first_of(kBlockBytes, i), bytes.size());
      if (buffer_.size() + (stop - i) > max_) {
        buffer_.append(bytes.substr(i, max_ - buffer_.size()));
        return Fail(ResourceExhausted("MLLP frame over the limit of " + std::to_string(max_) + " bytes"));
      }
      buffer_.append(bytes.substr(i, stop - i));
      i = stop;
      if (i == bytes.size()) break;
      if (bytes[i] == kStartBlock) return Fail(InvalidArgument("start block 0x0B inside an MLLP frame"));
      state_ = State::kEnd;
      ++i;
    } else {
      if (c != kEndOfFrame) return Fail(InvalidArgument("MLLP end block 0x1C not followed by 0x0D"));
      complete->push_back(std::move(buffer_));
      buffer_.clear();
      state_ = State::kIdle;
      ++i;
    }
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Listener>> Listener::Start(const std::string& host_port, ListenerOptions options,
                                                    Handler handler) {
  StatusOr<addrinfo*> addrs = Resolve(host_port, /*passive=*/true);
  if (!addrs.ok()) return addrs.status();
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* a = *addrs; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      error = Errno("socket");
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      error = Errno("bind/listen");
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(*addrs);
  if (fd < 0) return Unavailable("cannot listen on " + host_port + ": " + error);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                     : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const int wake_fd = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    const Status st = Unavailable(Errno("eventfd"));
    ::close(fd);
    return st;
  }
  std::unique_ptr<Listener> listener(new Listener(fd, wake_fd, port, std::move(options), std::move(handler)));
  listener->accept_thread_ = std::thread(&Listener::AcceptLoop, listener.get());
  LogInfo(kLog, "MLLP listening on " + host_port + " (port " + std::to_string(port) + ")");
  return listener;
}

Listener::Listener(int listen_fd, int wake_fd, int port, ListenerOptions options, Handler handler)
    : listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      port_(port),
      options_(std::move(options)),
      handler_(std::move(handler)) {}

Listener::~Listener() {
  Stop();
  ::close(wake_fd_);
}

void Listener::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  const uint64_t one = 1;
  while (::write(wake_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  accept_thread_.join();
  ::close(listen_fd_);  // new connections are refused from now on
  // The accept thread is gone: nobody adds connections any more.
  for (Connection& c : connections_) c.thread.join();
  connections_.clear();
}

void Listener::ReapFinished() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (!it->done) {
      ++it;
      continue;
    }
    it->thread.join();
    it = connections_.erase(it);
  }
}

void Listener::AcceptLoop() {
  for (;;) {
    const Wait w = WaitFor(listen_fd_, POLLIN, Clock::time_point::max(), wake_fd_);
    if (w == Wait::kStopped) return;
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        LogError(kLog, Errno("accept"));
        // Out of descriptors: the pending connection stays readable, so back off instead of spinning.
        if (WaitFor(wake_fd_, POLLIN, Clock::now() + std::chrono::milliseconds(100), -1) == Wait::kReady) return;
      }
      continue;
    }
    const std::string peer = PeerName(addr);
    std::lock_guard<std::mutex> lock(mu_);
    ReapFinished();
    if (connections_.size() >= static_cast<size_t>(options_.max_connections)) {
      LogWarning(kLog, "refused " + peer + ": already " + std::to_string(connections_.size()) + " connections");
      ::close(fd);
      continue;
    }
    SetNoDelay(fd);
    Connection& c = connections_.emplace_back();
    c.thread = std::thread([this, &c, fd, peer] {
      Serve(fd, peer);
      ::close(fd);
      std::lock_guard<std::mutex> done_lock(mu_);
      c.done = true;
    });
  }
}

void Listener::Serve(int fd, const std::string& peer) {
  Decoder decoder(options_.max_message_bytes);
  std::vector<std::string> frames;
  Clock::time_point frame_started;
  char buf[64 * 1024];
  for (;;) {
    const bool was_in_frame = decoder.in_frame();
    const Clock::time_point deadline =
        was_in_frame ? frame_started + options_.read_timeout : Clock::now() + options_.idle_timeout;
    const Wait w = WaitFor(fd, POLLIN, deadline, wake_fd_);
    if (w == Wait::kStopped) return;
    if (w == Wait::kTimeout) {
      LogWarning(kLog,
                 peer + (was_in_frame ? ": frame not completed within the read timeout" : ": idle") + ", closing");
      return;
    }
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) {
      if (was_in_frame) LogWarning(kLog, peer + ": connection ended inside a frame");
      return;
    }
    const Status st = decoder.Feed(std::string_view(buf, static_cast<size_t>(n)), &frames);
    if (decoder.in_frame() && (!was_in_frame || !frames.empty())) frame_started = Clock::now();
    for (const std::string& frame : frames) {
      std::string ack;
      try {
        ack = handler_(frame, peer);
      } catch (const std::exception& e) {
        LogError(kLog, peer + ": handler failed (" + e.what() + "), closing without an ACK");
        return;
      }
      const Status written = WriteAll(fd, Frame(ack), Clock::now() + options_.read_timeout, wake_fd_);
      if (!written.ok()) {
        LogWarning(kLog, peer + ": ACK not sent: " + written.message());
        return;
      }
    }
    frames.clear();
    if (!st.ok()) {
      LogWarning(kLog, peer + ": " + st.ToString() + ", closing");
      if (decoder.partial().compare(0, 3, "MSH") == 0) {
        const ErrorCode code =
            st.code() == AIHUB_RESOURCE_EXHAUSTED ? ErrorCode::kApplicationInternal : ErrorCode::kSegmentSequence;
        const std::string ack = MakeAckForUnparsable(decoder.partial(), options_.ack, code, st.message());
        WriteAll(fd, Frame(ack), Clock::now() + options_.read_timeout, wake_fd_);
      }
      CloseAfterError(fd, wake_fd_);
      return;
    }
  }
}

std::string HandleInbound(const std::string& raw, const std::function<Status(const Message&)>& accept,
                          const OutboundOptions& options) {
  StatusOr<Message> message = Message::Parse(raw);
  if (!message.ok()) {
    return MakeAckForUnparsable(raw, options, ErrorCode::kSegmentSequence, message.status().message());
  }
  const Message& m = *message;
  if (m.Get("MSH-9.1").empty() || m.ControlId().empty()) {
    return MakeAck(m, options, AckCode::kAR, ErrorCode::kRequiredFieldMissing,
                   m.ControlId().empty() ? "MSH-10 (message control id) is empty" : "MSH-9 (message type) is empty");
  }
  const Status st = accept(m);
  if (st.ok()) return MakeAck(m, options);
  if (st.code() == AIHUB_UNIMPLEMENTED) {
    return MakeAck(m, options, AckCode::kAR, ErrorCode::kUnsupportedMessageType, st.message());
  }
  return MakeAck(m, options, AckCode::kAE, ErrorCode::kApplicationInternal, st.message());
}

Sender::Sender(std::string host_port, SenderOptions options) : host_port_(std::move(host_port)), options_(options) {}

Sender::~Sender() { Close(); }

void Sender::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status Sender::Connect() {
  StatusOr<addrinfo*> addrs = Resolve(host_port_, /*passive=*/false);
  if (!addrs.ok()) return addrs.status();
  const Clock::time_point deadline = Clock::now() + options_.connect_timeout;
  std::string error = "no address";
  for (addrinfo* a = *addrs; a != nullptr && fd_ < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      error = Errno("socket");
      continue;
    }
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (WaitFor(fd, POLLOUT, deadline, -1) == Wait::kTimeout) {
        errno = ETIMEDOUT;
      } else {
        int so_error = 0;
        socklen_t len = sizeof(so_error);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
        errno = so_error;
        rc = so_error == 0 ? 0 : -1;
      }
    }
    if (rc != 0) {
      error = Errno("connect");
      ::close(fd);
      continue;
    }
    SetNoDelay(fd);
    fd_ = fd;
  }
  ::freeaddrinfo(*addrs);
  return fd_ >= 0 ? Status::Ok() : Unavailable("cannot connect to " + host_port_ + ": " + error);
}

StatusOr<Message> Sender::Send(const std::string& message) {
  StatusOr<Message> parsed = Message::Parse(message);
  if (!parsed.ok()) return InvalidArgument("not sent: " + parsed.status().message());
  const std::string control_id = parsed->ControlId();
  if (control_id.empty()) return InvalidArgument("not sent: MSH-10 (message control id) is empty");
  std::lock_guard<std::mutex> lock(mu_);
  // A kept connection with something to read has been closed by the peer (its idle timeout) or is out of step:
  // it is not reused, so a message is never written into a connection that is already gone.
  if (fd_ >= 0 && WaitFor(fd_, POLLIN, Clock::now(), -1) == Wait::kReady) Close();
  if (fd_ < 0) {
    const Status st = Connect();
    if (!st.ok()) return st;
  }
  StatusOr<Message> ack = Exchange(message, control_id);
  if (!ack.ok()) Close();
  return ack;
}

StatusOr<Message> Sender::Exchange(const std::string& message, const std::string& control_id) {
  const std::string to = host_port_ + ": message " + control_id;
  const Clock::time_point deadline = Clock::now() + options_.ack_timeout;
  const Status written = WriteAll(fd_, Frame(message), deadline, -1);
  if (!written.ok()) return Unavailable(to + ": " + written.message());
  Decoder decoder(options_.max_message_bytes);
  std::vector<std::string> frames;
  char buf[4096];
  while (frames.empty()) {
    if (WaitFor(fd_, POLLIN, deadline, -1) == Wait::kTimeout) {
      return Unavailable(to + ": no ACK within " + std::to_string(options_.ack_timeout.count()) + " ms");
    }
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n == 0) return Unavailable(to + ": connection closed before the ACK");
    if (n < 0) return Unavailable(to + ": " + Errno("read failed"));
    const Status st = decoder.Feed(std::string_view(buf, static_cast<size_t>(n)), &frames);
    if (!st.ok()) return Unavailable(to + ": garbled ACK: " + st.message());
  }
  if (frames.size() > 1 || decoder.in_frame()) return Unavailable(to + ": more than one frame in reply");
  StatusOr<Message> ack = Message::Parse(frames[0]);
  if (!ack.ok()) return Unavailable(to + ": garbled ACK: " + ack.status().message());
  const std::string code = ack->Get("MSA-1");
  if (ack->Get("MSA-2") != control_id) {
    return Unavailable(to + ": the ACK is for message \"" + ack->Get("MSA-2") + "\"");
  }
  if (code == "AA" || code == "CA") return ack;
  std::string text = ack->Get("ERR-8");
  if (text.empty()) text = ack->Get("MSA-3");
  if (text.empty()) text = ack->Get("ERR-3.2");
  const std::string why = to + ": " + code + (text.empty() ? "" : ": " + text);
  if (code == "AR" || code == "CR") return FailedPrecondition("rejected by " + why);
  if (code == "AE" || code == "CE") return Aborted("application error at " + why);
  return Unavailable("unknown acknowledgment code from " + why);
}

}  // namespace aihub::hl7
