#include "hl7/mllp.h"

#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hl7/orders.h"
#include "test_util.h"

namespace aihub::hl7 {
namespace {

using namespace std::chrono_literals;

std::string Msg(const std::string& control_id, const std::string& type = "ORM^O01") {
  return "MSH|^~\\&|RIS|HOSP|AIHUB|HOSP|20260301||" + type + "|" + control_id +
         "|P|2.5.1\r"
         "PID|1||123456\rORC|NW|P1|F1\rOBR|1|P1|F1|CT^Head|||||||||||||ACC1\r";
}

TEST_CASE("Frame wraps a message in start block, end block and CR") {
  CHECK(Frame("MSH|x") == std::string("\x0bMSH|x\x1c\r"));
}

TEST_CASE("Decoder reassembles frames whatever the read boundaries") {
  const std::string a = Msg("A1");
  const std::string b = Msg("B2");
  const std::string stream = Frame(a) + "\r\n" + Frame(b);
  Decoder one_byte(1024);
  std::vector<std::string> frames;
  for (char c : stream) REQUIRE(one_byte.Feed(std::string_view(&c, 1), &frames).ok());
  CHECK(frames == std::vector<std::string>{a, b});
  CHECK_FALSE(one_byte.in_frame());

  Decoder whole(1024);
  frames.clear();
  REQUIRE(whole.Feed(stream + Frame("") + std::string("\x0bMSH|part"), &frames).ok());
  CHECK(frames == std::vector<std::string>{a, b, ""});
  CHECK(whole.in_frame());
  CHECK(whole.partial() == "MSH|part");
}

TEST_CASE("Decoder errors are final and keep the frames completed before them") {
  auto fail = [](const std::string& bytes, aihub_status_code code, const std::string& why) {
    Decoder d(64);
    std::vector<std::string> frames;
    const Status st = d.Feed(bytes, &frames);
    CHECK(st.code() == code);
    CHECK_MESSAGE(st.message().find(why) != std::string::npos, st.message());
    CHECK(d.Feed(Frame("MSH|ok"), &frames).code() == code);  // final
    return frames;
  };
  CHECK(fail("junk" + Frame("x"), AIHUB_INVALID_ARGUMENT, "byte 0x6A outside an MLLP frame").empty());
  CHECK(fail(Frame("first") + "\x0bMSH|a\x0b", AIHUB_INVALID_ARGUMENT, "start block 0x0B inside") ==
        std::vector<std::string>{"first"});
  CHECK(fail("\x0bMSH|a\x1cX", AIHUB_INVALID_ARGUMENT, "end block 0x1C not followed by 0x0D").empty());
  CHECK(fail("\x0b" + std::string(65, 'x') + "\x1c\r", AIHUB_RESOURCE_EXHAUSTED, "over the limit of 64").empty());

  // Oversize: buffering stops at the limit, however much arrives at once.
  Decoder d(64);
  std::vector<std::string> frames;
  CHECK(d.Feed("\x0b" + std::string(1 << 20, 'x'), &frames).code() == AIHUB_RESOURCE_EXHAUSTED);
  CHECK(d.partial().size() == 64);
  // Exactly at the limit is fine.
  Decoder exact(64);
  CHECK(exact.Feed(Frame(std::string(64, 'y')), &frames).ok());
  CHECK(frames.size() == 1);
}

// Records what a listener received; the handler persists (here: appends) before it returns the ACK.
struct Inbox {
  std::mutex mu;
  std::vector<std::string> control_ids;
  std::vector<std::string> peers;
  Status next = Status::Ok();

  Listener::Handler Handler(const OutboundOptions& options = {}) {
    return [this, options](const std::string& raw, const std::string& peer) {
      return HandleInbound(
          raw,
          [&](const Message& m) {
            std::lock_guard<std::mutex> lock(mu);
            if (!next.ok()) return next;
            control_ids.push_back(m.ControlId());
            peers.push_back(peer);
            return Status::Ok();
          },
          options);
    };
  }
};

Listener::Handler NoAck() {
  return [](const std::string&, const std::string&) { return std::string(); };
}

std::unique_ptr<Listener> MustStart(Listener::Handler handler, ListenerOptions options = {}) {
  StatusOr<std::unique_ptr<Listener>> l = Listener::Start("127.0.0.1:0", std::move(options), std::move(handler));
  INFO(l.status().ToString());
  REQUIRE(l.ok());
  CHECK(l.value()->port() > 0);
  return std::move(l).value();
}

std::string Address(const Listener& l) { return "127.0.0.1:" + std::to_string(l.port()); }

TEST_CASE("Sender and Listener round-trip with AA over one kept connection") {
  Inbox inbox;
  auto listener = MustStart(inbox.Handler());
  Sender sender(Address(*listener));
  for (const char* id : {"C1", "C2"}) {
    StatusOr<Message> ack = sender.Send(Msg(id));
    INFO(ack.status().ToString());
    REQUIRE(ack.ok());
    CHECK(ack->Get("MSA-1") == "AA");
    CHECK(ack->Get("MSA-2") == id);
    CHECK(ack->MessageType() == "ACK^O01");
  }
  std::lock_guard<std::mutex> lock(inbox.mu);
  CHECK(inbox.control_ids == std::vector<std::string>{"C1", "C2"});
  REQUIRE(inbox.peers.size() == 2);
  CHECK(inbox.peers[0].rfind("127.0.0.1:", 0) == 0);
  CHECK(inbox.peers[0] == inbox.peers[1]);  // same connection
}

TEST_CASE("Sender maps AE to ABORTED and AR to FAILED_PRECONDITION, with the peer's text") {
  Inbox inbox;
  auto listener = MustStart(inbox.Handler());
  Sender sender(Address(*listener));
  inbox.next = Unavailable("database locked");
  StatusOr<Message> ae = sender.Send(Msg("E1"));
  CHECK(ae.status().code() == AIHUB_ABORTED);
  CHECK(ae.status().message().find("AE: database locked") != std::string::npos);
  inbox.next = Unimplemented("unsupported message type ORU^R01");
  StatusOr<Message> ar = sender.Send(Msg("E2", "ORU^R01"));
  CHECK(ar.status().code() == AIHUB_FAILED_PRECONDITION);
  CHECK(ar.status().message().find("AR: unsupported message type ORU^R01") != std::string::npos);
  inbox.next = Status::Ok();
  CHECK(sender.Send(Msg("E3")).ok());  // reconnects after the errors
  CHECK(sender.Send("not hl7").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(sender.Send("MSH|^~\\&|A\r").status().code() == AIHUB_INVALID_ARGUMENT);  // no MSH-10
}

TEST_CASE("HandleInbound answers AR/AE with ERR codes") {
  const OutboundOptions options;
  auto ok = [](const Message&) { return Status::Ok(); };
  auto ack = [&](const std::string& raw, const std::function<Status(const Message&)>& accept) {
    StatusOr<Message> m = Message::Parse(HandleInbound(raw, accept, options));
    REQUIRE(m.ok());
    return std::make_pair(m->Get("MSA-1") + " " + m->Get("ERR-3.1"), m->Get("MSA-2"));
  };
  CHECK(ack(Msg("H1"), ok) == std::make_pair(std::string("AA "), std::string("H1")));
  CHECK(ack("PID|1\r", ok).first == "AR 100");
  CHECK(ack("MSH|^~\\&|A|B|C|D|||ORM^O01|H2|P|2.5\rbad\r", ok) ==
        std::make_pair(std::string("AR 100"), std::string("H2")));
  CHECK(ack("MSH|^~\\&|A|B|C|D|||ORM^O01||P|2.5\r", ok).first == "AR 101");
  CHECK(ack("MSH|^~\\&|A|B|C|D||||H3|P|2.5\r", ok).first == "AR 101");
  CHECK(ack(Msg("H4"), [](const Message&) { return Unimplemented("no"); }).first == "AR 200");
  CHECK(ack(Msg("H5"), [](const Message&) { return Internal("disk"); }).first == "AE 207");
}

TEST_CASE("a garbage frame closes that connection only, one with an MSH gets an AR first") {
  Inbox inbox;
  auto listener = MustStart(inbox.Handler());
  const int garbage = testing::Connect(listener->port());
  REQUIRE(garbage >= 0);
  CHECK(testing::SendAll(garbage, "\x0bhello\x0b"));
  std::string received;
  CHECK(testing::ReadUntilClosed(garbage, &received));
  CHECK(received.empty());
  ::close(garbage);

  const int with_msh = testing::Connect(listener->port());
  REQUIRE(with_msh >= 0);
  CHECK(testing::SendAll(with_msh, "\x0bMSH|^~\\&|RIS|H|AIHUB|H|||ORM^O01|G7|P|2.3\rPID|1\x1cX"));
  received.clear();
  CHECK(testing::ReadUntilClosed(with_msh, &received));
  ::close(with_msh);
  Decoder d(1 << 20);
  std::vector<std::string> frames;
  REQUIRE(d.Feed(received, &frames).ok());
  REQUIRE(frames.size() == 1);
  StatusOr<Message> ar = Message::Parse(frames[0]);
  REQUIRE(ar.ok());
  CHECK(ar->Get("MSA-1") == "AR");
  CHECK(ar->Get("MSA-2") == "G7");
  CHECK(ar->Get("ERR-8").find("not followed by 0x0D") != std::string::npos);

  Sender sender(Address(*listener));
  CHECK(sender.Send(Msg("after")).ok());
}

TEST_CASE("an oversize frame gets an AR and a close, memory stays bounded") {
  Inbox inbox;
  ListenerOptions options;
  options.max_message_bytes = 1024;
  auto listener = MustStart(inbox.Handler(), options);
  const int fd = testing::Connect(listener->port());
  REQUIRE(fd >= 0);
  // Keeps sending after the limit: the listener must read and drop, then close, without a reset eating the AR.
  std::thread writer([fd] { testing::SendAll(fd, Frame(Msg("BIG") + std::string(256 * 1024, 'x'))); });
  std::string received;
  CHECK(testing::ReadUntilClosed(fd, &received));
  writer.join();
  ::close(fd);
  CHECK(received.find("MSA|AR|BIG") != std::string::npos);
  CHECK(received.find("over the limit of 1024 bytes") != std::string::npos);
  Sender sender(Address(*listener));
  CHECK(sender.Send(Msg("small")).ok());
}

TEST_CASE("a half-sent frame is closed after the read timeout, an idle connection after the idle timeout") {
  Inbox inbox;
  ListenerOptions options;
  options.read_timeout = 200ms;
  options.idle_timeout = 300ms;
  auto listener = MustStart(inbox.Handler(), options);
  const int stalled = testing::Connect(listener->port());
  const int idle = testing::Connect(listener->port());
  REQUIRE(stalled >= 0);
  REQUIRE(idle >= 0);
  CHECK(testing::SendAll(stalled, "\x0bMSH|^~\\&|RIS|H|||||ORM^O01|S1|P|2.3\r"));
  std::string received;
  const auto start = std::chrono::steady_clock::now();
  CHECK(testing::ReadUntilClosed(stalled, &received));
  CHECK(std::chrono::steady_clock::now() - start >= 150ms);
  CHECK(testing::ReadUntilClosed(idle, &received));
  CHECK(received.empty());
  ::close(stalled);
  ::close(idle);
  Sender sender(Address(*listener));
  CHECK(sender.Send(Msg("next")).ok());
  std::lock_guard<std::mutex> lock(inbox.mu);
  CHECK(inbox.control_ids == std::vector<std::string>{"next"});
}

TEST_CASE("connections over max_connections are closed at once") {
  Inbox inbox;
  ListenerOptions options;
  options.max_connections = 1;
  auto listener = MustStart(inbox.Handler(), options);
  auto first = std::make_unique<Sender>(Address(*listener));
  REQUIRE(first->Send(Msg("one")).ok());  // the one connection is up and served
  const int extra = testing::Connect(listener->port());
  std::string received;
  CHECK(testing::ReadUntilClosed(extra, &received));
  ::close(extra);
  first.reset();  // frees the slot once the listener notices the close
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    Sender next(Address(*listener), {1s, 1s});
    served = next.Send(Msg("two")).ok();
    if (!served) std::this_thread::sleep_for(20ms);  // retry pacing while the listener reaps the old connection
  }
  CHECK(served);
}

TEST_CASE("Sender reports UNAVAILABLE for a closed port, no ACK in time, or an ACK for another message") {
  int free_port;
  {
    auto probe = MustStart(NoAck());
    free_port = probe->port();
  }
  StatusOr<Message> refused = Sender("127.0.0.1:" + std::to_string(free_port)).Send(Msg("X1"));
  CHECK(refused.status().code() == AIHUB_UNAVAILABLE);
  CHECK(refused.status().message().find("cannot connect") != std::string::npos);
  CHECK(Sender("no-port").Send(Msg("X1")).status().code() == AIHUB_INVALID_ARGUMENT);

  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto slow = MustStart([&](const std::string& raw, const std::string&) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
    return MakeAck(*Message::Parse(raw), {});
  });
  StatusOr<Message> late = Sender(Address(*slow), {1s, 200ms}).Send(Msg("X2"));
  CHECK(late.status().code() == AIHUB_UNAVAILABLE);
  CHECK(late.status().message().find("no ACK within 200 ms") != std::string::npos);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();

  auto wrong =
      MustStart([](const std::string&, const std::string&) { return MakeAck(*Message::Parse(Msg("OTHER")), {}); });
  StatusOr<Message> mismatch = Sender(Address(*wrong)).Send(Msg("X3"));
  CHECK(mismatch.status().code() == AIHUB_UNAVAILABLE);
  CHECK(mismatch.status().message().find("the ACK is for message \"OTHER\"") != std::string::npos);

  auto garbled = MustStart([](const std::string&, const std::string&) { return std::string("not an ack"); });
  CHECK(Sender(Address(*garbled)).Send(Msg("X4")).status().code() == AIHUB_UNAVAILABLE);
}

TEST_CASE("Sender reconnects when the listener closed the kept connection") {
  Inbox inbox;
  ListenerOptions options;
  options.idle_timeout = 50ms;
  auto listener = MustStart(inbox.Handler(), options);
  Sender sender(Address(*listener));
  REQUIRE(sender.Send(Msg("K1")).ok());
  // The listener closes the idle connection after 50 ms; give it ample time to have done so.
  std::this_thread::sleep_for(500ms);
  StatusOr<Message> again = sender.Send(Msg("K2"));
  INFO(again.status().ToString());
  CHECK(again.ok());
  std::lock_guard<std::mutex> lock(inbox.mu);
  REQUIRE(inbox.peers.size() == 2);
  CHECK(inbox.peers[0] != inbox.peers[1]);
}

TEST_CASE("Stop ends open connections promptly") {
  Inbox inbox;
  auto listener = MustStart(inbox.Handler());
  const int fd = testing::Connect(listener->port());
  REQUIRE(fd >= 0);
  CHECK(testing::SendAll(fd, "\x0bMSH|^~\\&|half"));
  REQUIRE(Sender(Address(*listener)).Send(Msg("S1")).ok());  // the listener is serving both
  const auto start = std::chrono::steady_clock::now();
  listener->Stop();
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  std::string received;
  CHECK(testing::ReadUntilClosed(fd, &received, 1s));
  ::close(fd);
  CHECK(Sender(Address(*listener), {1s, 1s}).Send(Msg("S2")).status().code() == AIHUB_UNAVAILABLE);
}

TEST_CASE("Listener addresses: IPv6 loopback, bad addresses") {
  CHECK(Listener::Start("127.0.0.1", {}, NoAck()).status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(Listener::Start("::1:0", {}, NoAck()).status().code() == AIHUB_INVALID_ARGUMENT);
  Inbox inbox;
  StatusOr<std::unique_ptr<Listener>> v6 = Listener::Start("[::1]:0", {}, inbox.Handler());
  if (!v6.ok()) {
    MESSAGE("no IPv6 loopback here: " << v6.status().ToString());
    return;
  }
  Sender sender("[::1]:" + std::to_string(v6.value()->port()));
  REQUIRE(sender.Send(Msg("V6")).ok());
  std::lock_guard<std::mutex> lock(inbox.mu);
  CHECK(inbox.peers.at(0).rfind("[::1]:", 0) == 0);
}

TEST_CASE("python3-hl7's MLLPClient talks to the Listener") {
  Inbox inbox;
  auto listener = MustStart(inbox.Handler());
  const nlohmann::json out = testing::RunPython(R"PY(
import hl7, hl7.client, json, sys
port = int(sys.argv[1])
acks = []
with hl7.client.MLLPClient('127.0.0.1', port) as client:
    for i in (1, 2):
        msg = 'MSH|^~\\&|PYRIS|H|AIHUB|H|20260301||ADT^A08|PY%d|P|2.5\rPID|1||77||DOE^JANE\r' % i
        reply = client.send_message(msg).decode()
        ack = hl7.parse(reply.strip('\x0b\x1c\r'))
        acks.append([str(ack['MSA.F1']), str(ack['MSA.F2']), str(ack['MSH.F9.R1.C2'])])
print(json.dumps({'acks': acks}))
)PY",
                                                {std::to_string(listener->port())});
  INFO(out.dump());
  CHECK(out["acks"] == nlohmann::json::parse(R"([["AA", "PY1", "A08"], ["AA", "PY2", "A08"]])"));
  std::lock_guard<std::mutex> lock(inbox.mu);
  CHECK(inbox.control_ids == std::vector<std::string>{"PY1", "PY2"});
}

}  // namespace
}  // namespace aihub::hl7
