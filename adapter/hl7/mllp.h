// MLLP (HL7 v2 Minimal Lower Layer Protocol, release 2): <0x0B> message <0x1C><0x0D> over TCP. A framing
// decoder with bounded memory, a listener (thread per connection) and a sender that waits for the ACK.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "hl7/message.h"

namespace aihub::hl7 {

inline constexpr char kStartBlock = 0x0B;
inline constexpr char kEndBlock = 0x1C;
inline constexpr char kEndOfFrame = 0x0D;  // follows kEndBlock

std::string Frame(std::string_view message);

// Splits a byte stream into frames, whatever the read boundaries.
class Decoder {
 public:
  explicit Decoder(size_t max_message_bytes) : max_(max_message_bytes) {}

  // Appends each frame that `bytes` completes to *complete (frames that end before an error are kept).
  // Between frames CR, LF, space and tab are skipped. Errors, all final (every later Feed returns the same, and
  // the connection is to be closed): INVALID_ARGUMENT for any other byte between frames, a start block inside a
  // frame or an end block not followed by CR; RESOURCE_EXHAUSTED once a frame passes the limit (nothing more of it
  // is buffered).
  Status Feed(std::string_view bytes, std::vector<std::string>* complete);
  // True while part of a frame has arrived.
  bool in_frame() const { return state_ != State::kIdle; }
  // The unfinished (or failed) frame so far, at most max_message_bytes.
  const std::string& partial() const { return buffer_; }

 private:
  enum class State { kIdle, kBody, kEnd };
  Status Fail(Status status);

  size_t max_;
  State state_ = State::kIdle;
  std::string buffer_;
  Status error_;
};

struct ListenerOptions {
  size_t max_message_bytes = kMaxMessageBytes;
  int max_connections = 64;  // more are closed at once
  // No frame begun for this long: close. A begun frame must end within read_timeout, which also bounds
  // writing each ACK.
  std::chrono::milliseconds idle_timeout = std::chrono::minutes(10);
  std::chrono::milliseconds read_timeout = std::chrono::seconds(30);
  OutboundOptions ack;  // how the AR ACKs the listener writes itself (framing errors) name the hub
};

// Accepts MLLP connections on one address and answers every frame with what the handler returns. A connection
// that breaks the framing is closed, after an AR (MakeAckForUnparsable) when its frame so far starts with MSH;
// the listener keeps serving the others.
class Listener {
 public:
  // Called on the connection's thread, once per frame, frames of one connection in order; returns the ACK. The
  // ACK is written only after it returns, so the handler persists the message first. If it throws, the
  // connection is closed without an ACK (the sender will resend).
  using Handler = std::function<std::string(const std::string& raw_message, const std::string& peer)>;

  // `host_port`: "127.0.0.1:2575", "[::1]:0", ":2575" (all addresses); port 0 picks a free one (see port()).
  // Bad address: INVALID_ARGUMENT; cannot listen: UNAVAILABLE.
  static StatusOr<std::unique_ptr<Listener>> Start(const std::string& host_port, ListenerOptions options,
                                                   Handler handler);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  int port() const { return port_; }
  // Closes the listening socket, ends every connection (after a handler call in progress returns) and joins the
  // threads.
  void Stop();

 private:
  struct Connection {
    std::thread thread;
    bool done = false;  // guarded by mu_
  };
  Listener(int listen_fd, int wake_fd, int port, ListenerOptions options, Handler handler);
  void AcceptLoop();
  void Serve(int fd, const std::string& peer);
  void ReapFinished();  // with mu_ held

  const int listen_fd_;
  const int wake_fd_;  // an eventfd, readable once Stop() begins: every poll() in the listener watches it
  const int port_;
  const ListenerOptions options_;
  const Handler handler_;
  std::mutex mu_;
  std::list<Connection> connections_;
  bool stopped_ = false;
  std::thread accept_thread_;
};

// The usual handler body: parses `raw`, calls `accept` (which persists) and returns the ACK:
//   unparsable -> AR, ERR-3 100; MSH-9 or MSH-10 empty -> AR, ERR-3 101;
//   accept UNIMPLEMENTED -> AR, ERR-3 200; accept other error -> AE, ERR-3 207; both with the status text;
//   accept OK -> AA.
std::string HandleInbound(const std::string& raw, const std::function<Status(const Message&)>& accept,
                          const OutboundOptions& options);

struct SenderOptions {
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(5);
  std::chrono::milliseconds ack_timeout = std::chrono::seconds(30);  // from the first byte written to the ACK
  size_t max_message_bytes = kMaxMessageBytes;                       // largest ACK read
};

// Sends messages to one MLLP peer over a kept connection, one at a time (thread-safe: calls are serialised).
class Sender {
 public:
  explicit Sender(std::string host_port, SenderOptions options = {});
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Writes one framed message and waits for the framed ACK. OK (the ACK) only when MSA-1 is AA or CA and MSA-2
  // is the message's MSH-10. Otherwise, and the connection is dropped (the next call reconnects):
  //   INVALID_ARGUMENT     the message does not parse or has no MSH-10; nothing was sent (final)
  //   FAILED_PRECONDITION  AR or CR: the peer rejects the message (final: do not resend it)
  //   ABORTED              AE or CE: application error at the peer (resend later)
  //   UNAVAILABLE          cannot connect, write or read; no ACK within ack_timeout; a garbled ACK or one for
  //                        another message (resend later)
  StatusOr<Message> Send(const std::string& message);

 private:
  Status Connect();
  StatusOr<Message> Exchange(const std::string& message, const std::string& control_id);
  void Close();

  const std::string host_port_;
  const SenderOptions options_;
  std::mutex mu_;
  int fd_ = -1;
};

}  // namespace aihub::hl7
