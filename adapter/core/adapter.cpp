#include "core/adapter.h"

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <nlohmann/json.hpp>

#include "common/hash.h"
#include "common/status_macros.h"
#include "common/log.h"
#include "core/dicom_receiver.h"
#include "core/service.h"
#include "core/spool.h"
#include "core/stow_server.h"
#include "core/study_tracker.h"
#include "dicomweb/client.h"
#include "dicomweb/fhir.h"
#include "hl7/message.h"
#include "hl7/mllp.h"
#include "hl7/orders.h"

namespace aihub::adapter {

namespace fs = std::filesystem;

const char* AdapterVersion() { return "0.1.0"; }

namespace {

dicomweb::ClientOptions HttpOptions(const config::HttpLinkSettings& link) {
  dicomweb::ClientOptions o;
  o.base_url = link.url;
  o.verify_tls = link.verify_tls;
  o.ca_file = link.ca_file;
  o.timeout_ms = static_cast<long>(link.timeout_seconds) * 1000;
  auto env = [](const std::string& name) {
    const char* v = name.empty() ? nullptr : std::getenv(name.c_str());
    return v ? std::string(v) : std::string();
  };
  o.auth.bearer_token = env(link.bearer_token_env);
  o.auth.username = link.username;
  o.auth.password = env(link.password_env);
  return o;
}

hl7::OutboundOptions Outbound(const config::AdapterHl7Settings& hl7) {
  hl7::OutboundOptions o;
  o.sending_facility = hl7.sending_facility;
  o.receiving_application = hl7.receiving_application;
  o.receiving_facility = hl7.receiving_facility;
  o.alert_message_type = hl7.alert_message_type;
  return o;
}

// The message with MSH-3..6 (sending / receiving application and facility) set from this adapter's HL7 config,
// where configured: the host composes results without knowing the site's HL7 addressing. Assumes the default
// field separator, which the host's composer uses.
std::string WithEnvelope(const std::string& message, const hl7::OutboundOptions& o) {
  const size_t end = message.find('\r');
  std::string msh = message.substr(0, end);
  std::vector<std::string> fields;
  for (size_t start = 0;;) {
    const size_t bar = msh.find('|', start);
    fields.push_back(msh.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  if (fields.size() < 6 || fields[0] != "MSH") return message;
  // fields[k] is MSH-(k+1) for k >= 1 (MSH-1 is the separator itself, between fields[0] and fields[1]).
  const std::string* values[] = {&o.sending_application, &o.sending_facility, &o.receiving_application,
                                 &o.receiving_facility};
  for (int k = 0; k < 4; ++k) {
    if (!values[k]->empty()) fields[2 + k] = hl7::Escape(*values[k]);
  }
  std::string out = fields[0];
  for (size_t k = 1; k < fields.size(); ++k) out += "|" + fields[k];
  return out + (end == std::string::npos ? "" : message.substr(end));
}

// The links of the standard adapter. Each remembers its last error for Describe.
class StandardLinks : public DeliveryLinks {
 public:
  explicit StandardLinks(const config::AdapterSettings& s) : settings_(s), outbound_(Outbound(s.hl7)) {
    if (!s.dicomweb.url.empty()) dicomweb_ = std::make_unique<dicomweb::Client>(HttpOptions(s.dicomweb));
    if (!s.fhir.url.empty()) fhir_ = std::make_unique<dicomweb::FhirClient>(HttpOptions(s.fhir));
    if (!s.hl7.send_to.empty()) sender_ = std::make_unique<hl7::Sender>(s.hl7.send_to);
  }

  dicomweb::Client* dicomweb() { return dicomweb_.get(); }

  StatusOr<std::string> StoreDicom(const std::string& part10) override {
    if (!dicomweb_) return Off("dicomweb");
    auto result = Note("dicomweb", dicomweb_->Store({part10}));
    if (!result.ok()) return result.status();
    if (!result->failed.empty()) {
      return Note("dicomweb", StatusOr<std::string>(FailedPrecondition(
                                  "PACS refused the object (STOW-RS FailureReason " +
                                  std::to_string(result->failed.front().reason) + ")")));
    }
    return "STOW-RS stored " + (result->stored.empty() ? std::string("1 instance") : result->stored.front());
  }

  StatusOr<std::string> SendHl7(const std::string& message) override { return Send(WithEnvelope(message, outbound_)); }

  StatusOr<std::string> PostFhir(const std::string& bundle_json) override {
    if (!fhir_) return Off("fhir");
    auto response = Note("fhir", fhir_->Transaction(bundle_json));
    if (!response.ok()) return response.status();
    // The locations of what the server created or matched, for the audit detail.
    std::string detail = "FHIR transaction:";
    const auto json = nlohmann::json::parse(*response, nullptr, false);
    if (json.is_object() && json.contains("entry") && json["entry"].is_array()) {
      for (const auto& e : json["entry"]) {
        if (e.contains("response") && e["response"].contains("location")) {
          detail += " " + e["response"]["location"].get<std::string>();
        }
      }
    }
    return detail;
  }

  StatusOr<std::string> UpdatePriority(const v1::UpdatePriorityRequest& r) override {
    hl7::PriorityUpdate u;
    u.patient_id = r.study().patient_id();
    u.patient_name = r.study().patient_name();
    u.accession_number = r.study().accession_number();
    u.study_instance_uid = r.study().study_instance_uid();
    u.priority = r.priority() == v1::PRIORITY_STAT     ? hl7::Priority::kStat
                 : r.priority() == v1::PRIORITY_URGENT ? hl7::Priority::kAsap
                                                       : hl7::Priority::kRoutine;
    u.reason = r.reason();
    return Send(hl7::BuildPriorityUpdate(u, outbound_));
  }

  StatusOr<std::string> SendAlert(const v1::SendAlertRequest& r) override {
    hl7::AlertInfo a;
    a.patient_id = r.study().patient_id();
    a.patient_name = r.study().patient_name();
    a.accession_number = r.study().accession_number();
    a.study_instance_uid = r.study().study_instance_uid();
    for (const std::string& f : r.findings()) a.finding_text += (a.finding_text.empty() ? "" : "; ") + f;
    a.critical = r.urgency() == "critical";
    a.plugin_id = r.plugin_id();
    a.plugin_version = r.plugin_version();
    return Send(hl7::BuildAlert(a, outbound_));
  }

  std::vector<v1::LinkState> Links() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<v1::LinkState> out;
    auto add = [&](const char* name, bool enabled, const std::string& endpoint) {
      v1::LinkState l;
      l.set_name(name);
      l.set_enabled(enabled);
      l.set_endpoint(endpoint);
      l.set_last_error(errors_[name]);
      out.push_back(std::move(l));
    };
    add("dicom", true, settings_.dicom.ae_title + "@" + std::to_string(settings_.dicom.port));
    add("dicomweb", dicomweb_ != nullptr, settings_.dicomweb.url);
    add("hl7_in", !settings_.hl7.listen.empty(), settings_.hl7.listen);
    add("hl7_out", sender_ != nullptr, settings_.hl7.send_to);
    add("fhir", fhir_ != nullptr, settings_.fhir.url);
    return out;
  }

  template <typename T>
  StatusOr<T> Note(const char* link, StatusOr<T> result) {
    std::lock_guard<std::mutex> lock(mu_);
    errors_[link] = result.ok() ? "" : result.status().ToString();
    return result;
  }

 private:
  static Status Off(const std::string& link) {
    return FailedPrecondition("the adapter's " + link + " link is off (no URL / address configured)");
  }

  StatusOr<std::string> Send(const std::string& message) {
    if (!sender_) return Off("hl7 send_to");
    auto ack = Note("hl7_out", sender_->Send(message));
    if (!ack.ok()) return ack.status();
    return "ACK " + ack->Get("MSA-1") + " " + ack->Get("MSA-2");
  }

  const config::AdapterSettings settings_;
  const hl7::OutboundOptions outbound_;
  std::unique_ptr<dicomweb::Client> dicomweb_;
  std::unique_ptr<dicomweb::FhirClient> fhir_;
  std::unique_ptr<hl7::Sender> sender_;
  std::mutex mu_;
  std::map<std::string, std::string> errors_;
};

}  // namespace

class Adapter::Impl {
 public:
  config::AdapterSettings settings;
  std::unique_ptr<Spool> spool;
  std::unique_ptr<StudyTracker> tracker;
  std::unique_ptr<StandardLinks> links;
  std::unique_ptr<PacsAdapterService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<DicomReceiver> receiver;
  std::unique_ptr<StowServer> stow;
  std::unique_ptr<hl7::Listener> listener;
  std::thread orders;
  std::mutex orders_mu;
  std::condition_variable orders_wake;
  std::atomic<bool> stop{false};
  std::string grpc_endpoint;
  // expected_count_from_qido: studies to ask the PACS about, and those asked already (in this process).
  std::deque<std::string> count_queue;
  std::set<std::string> count_asked;

  // After each stored instance: wake the tracker, and queue a count lookup for a study seen the first time.
  void Stored(const std::string& study_uid) {
    tracker->Poke();
    if (!settings.dicom.expected_count_from_qido || !links->dicomweb()) return;
    std::lock_guard<std::mutex> lock(orders_mu);
    if (!count_asked.insert(study_uid).second) return;
    count_queue.push_back(study_uid);
    orders_wake.notify_all();
  }

  // QIDO-RS NumberOfStudyRelatedInstances for studies that started to arrive; best effort (quiet time still
  // completes the study when the PACS does not know it or cannot be asked).
  void LookUpCounts() {
    for (;;) {
      std::string study_uid;
      {
        std::lock_guard<std::mutex> lock(orders_mu);
        if (count_queue.empty()) return;
        study_uid = count_queue.front();
        count_queue.pop_front();
      }
      dicomweb::StudyQuery q;
      q.study_instance_uid = study_uid;
      auto found = links->Note("dicomweb", links->dicomweb()->FindStudies(q));
      if (!found.ok() || found->empty() || found->front().number_of_instances <= 0) continue;
      const int64_t expected = found->front().number_of_instances;
      if (spool->NoteExpectation(study_uid, expected, "").ok()) {
        LogInfo("tracker", "study " + study_uid + ": the PACS holds " + std::to_string(expected) + " instance(s)");
        tracker->Poke();
      }
    }
  }

  // Persists an inbound HL7 message (before its ACK) and turns orders into pending retrievals.
  Status AcceptHl7(const hl7::Message& m, const std::string& raw, const std::string& peer) {
    const std::string type = m.MessageType();
    auto stored = spool->RecordHl7(peer, type, m.ControlId(), raw, NowUnixMs());
    if (!stored.ok()) return stored.status();
    if (type.rfind("ADT^", 0) == 0) {
      auto adt = hl7::ReadAdt(m);
      if (!adt.ok()) return adt.status();
      LogInfo("hl7", type + " for patient " + adt->patient_id + " at " + adt->patient_location);
      return Status::Ok();
    }
    if (type != "ORM^O01" && type != "OMI^O23") return Unimplemented("unsupported message type " + type);
    auto order = hl7::ReadOrder(m);
    if (!order.ok()) return order.status();
    if (order->order_control == "CA" || order->order_control == "DC" || order->order_control == "OC") {
      LogInfo("hl7", "order " + order->accession_number + " cancelled (" + order->order_control + ")");
      return Status::Ok();
    }
    if (!order->study_instance_uid.empty()) {
      if (!IsValidUid(order->study_instance_uid)) return InvalidArgument("ZDS-1/IPC-3 is not a valid DICOM UID");
      // A study arriving by C-STORE picks up the order's location and expected count.
      RETURN_IF_ERROR(spool->NoteExpectation(order->study_instance_uid, order->expected_instances,
                                              order->patient_location));
    }
    Order o;
    o.accession_number = order->accession_number;
    o.study_uid = order->study_instance_uid;
    o.hl7_location = order->patient_location;
    o.expected_instances = order->expected_instances;
    o.created_ms = NowUnixMs();
    RETURN_IF_ERROR(spool->AddOrder(o));
    LogInfo("hl7", type + " accession " + o.accession_number + " study " + o.study_uid + " from " + peer +
                       ": waiting for the study in the PACS");
    orders_wake.notify_all();
    return Status::Ok();
  }

  // Orders: look the study up in the PACS (QIDO-RS) until it appears, then retrieve it (WADO-RS) into the spool
  // and complete it with trigger HL7_ORDER. Studies that arrive by C-STORE first are not fetched again.
  void OrderLoop() {
    const int64_t timeout_ms = int64_t{settings.hl7.order_timeout_hours} * 3600 * 1000;
    while (!stop) {
      LookUpCounts();
      const int64_t now = NowUnixMs();
      auto due = spool->DueOrders(now);
      if (!due.ok()) LogError("orders", due.status().ToString());
      for (const Order& o : due.ok() ? *due : std::vector<Order>{}) {
        if (stop) break;
        if (now - o.created_ms > timeout_ms) {
          // A retrieval that never finished must not keep its study from completing by quiet time.
          if (!o.study_uid.empty()) (void)spool->HoldStudy(o.study_uid, false);
          (void)spool->FinishOrder(o.id, "expired: the study did not appear in the PACS");
          LogWarning("orders", "order " + o.accession_number + " expired");
          continue;
        }
        Status st = Work(o);
        if (st.ok()) continue;
        const bool retry = st.code() == AIHUB_UNAVAILABLE || st.code() == AIHUB_NOT_FOUND;
        if (retry) {
          const int64_t wait = std::min<int64_t>(60000, int64_t{2000} << std::min(o.attempts, 5));
          (void)spool->RescheduleOrder(o.id, now + wait, st.ToString());
        } else {
          LogError("orders", "order " + o.accession_number + ": " + st.ToString());
          (void)spool->FinishOrder(o.id, "failed: " + st.ToString());
        }
      }
      std::unique_lock<std::mutex> lock(orders_mu);
      orders_wake.wait_for(lock, std::chrono::milliseconds(500),
                           [this] { return stop.load() || !count_queue.empty(); });
    }
  }

  Status Work(const Order& o) {
    if (!o.study_uid.empty()) {
      auto done = spool->HasCompleted(o.study_uid);
      if (!done.ok()) return done.status();
      if (*done) return spool->FinishOrder(o.id, "study already received");
    }
    if (!links->dicomweb()) return FailedPrecondition("an order needs the dicomweb link to retrieve its study");
    dicomweb::StudyQuery q;
    q.study_instance_uid = o.study_uid;
    q.accession_number = o.study_uid.empty() ? o.accession_number : "";
    auto found = links->Note("dicomweb", links->dicomweb()->FindStudies(q));
    if (!found.ok()) return found.status();
    if (found->empty()) return NotFound("not in the PACS yet");
    const dicomweb::StudyMatch& match = found->front();
    if (!IsValidUid(match.study_instance_uid)) return InvalidArgument("PACS answered an invalid StudyInstanceUID");
    auto done = spool->HasCompleted(match.study_instance_uid);
    if (!done.ok()) return done.status();
    if (*done) return spool->FinishOrder(o.id, "study already received");
    auto series = links->Note("dicomweb", links->dicomweb()->FindSeries(match.study_instance_uid));
    if (!series.ok()) return series.status();
    RETURN_IF_ERROR(spool->HoldStudy(match.study_instance_uid, true));
    int64_t retrieved = 0;
    for (const dicomweb::SeriesMatch& s : *series) {
      if (!IsValidUid(s.series_instance_uid)) continue;
      auto n = links->Note("dicomweb", links->dicomweb()->RetrieveSeries(
                                           match.study_instance_uid, s.series_instance_uid,
                                           [&](std::string&& part10) { return SpoolBytes(part10, match.study_instance_uid); }));
      if (!n.ok()) {
        // Retried later (instances already spooled are replaced then); a final failure releases the study so
        // what arrived completes by quiet time.
        if (n.status().code() != AIHUB_UNAVAILABLE) (void)spool->HoldStudy(match.study_instance_uid, false);
        return n.status();
      }
      retrieved += *n;
    }
    if (retrieved == 0) return NotFound("the PACS listed the study but returned no instances yet");
    RETURN_IF_ERROR(spool->NoteExpectation(match.study_instance_uid, 0, o.hl7_location));
    auto event = tracker->CompleteNow(match.study_instance_uid, v1::TRIGGER_HL7_ORDER, "", o.hl7_location);
    if (!event.ok()) return event.status();
    return spool->FinishOrder(o.id, "retrieved " + std::to_string(retrieved) + " instance(s)");
  }

  Status SpoolBytes(const std::string& part10, const std::string& study_uid) {
    auto written = spool->WriteIncoming(part10);
    if (!written.ok() && written.status().code() != AIHUB_INVALID_ARGUMENT) return written.status();
    if (!written.ok() || written->uids.study_uid != study_uid) {
      if (written.ok()) {
        std::error_code ec;
        fs::remove(written->temp_file, ec);
      }
      LogWarning("orders", "retrieved instance skipped: " + (written.ok() ? std::string("belongs to another study")
                                                                          : written.status().message()));
      return Status::Ok();
    }
    return spool->AddInstance(written->Incoming(""), NowUnixMs());
  }
};

Adapter::Adapter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Adapter::~Adapter() { Stop(); }
const std::string& Adapter::grpc_endpoint() const { return impl_->grpc_endpoint; }

StatusOr<std::unique_ptr<Adapter>> Adapter::Start(const config::SiteConfig& config) {
  auto impl = std::make_unique<Impl>();
  Impl& a = *impl;
  a.settings = config.adapter;
  auto spool = Spool::Open(config.state_dir / "adapter");
  if (!spool.ok()) return spool.status();
  a.spool = std::move(spool).value();
  a.tracker = std::make_unique<StudyTracker>(*a.spool, a.settings.dicom.stable_seconds);
  a.links = std::make_unique<StandardLinks>(a.settings);
  a.service = std::make_unique<PacsAdapterService>(*a.spool, *a.tracker, *a.links, AdapterVersion());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(a.settings.grpc_listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(a.service.get());
  builder.SetMaxReceiveMessageSize(64 << 20);
  a.server = builder.BuildAndStart();
  if (!a.server || (port == 0 && a.settings.grpc_listen.rfind("unix:", 0) != 0)) {
    return Unavailable("cannot listen for gRPC on " + a.settings.grpc_listen);
  }
  a.server->GetHealthCheckService()->SetServingStatus("aihub.v1.PacsAdapter", true);
  a.grpc_endpoint = a.settings.grpc_listen;
  if (port > 0) a.grpc_endpoint = a.settings.grpc_listen.substr(0, a.settings.grpc_listen.rfind(':') + 1) +
                                  std::to_string(port);

  ReceiverSettings rs;
  rs.ae_title = a.settings.dicom.ae_title;
  rs.port = a.settings.dicom.port;
  rs.allowed_callers = a.settings.dicom.allowed_callers;
  rs.max_associations = a.settings.dicom.max_associations;
  Impl* raw = impl.get();
  auto receiver = DicomReceiver::Start(rs, *a.spool, [raw](const std::string& study) { raw->Stored(study); });
  if (!receiver.ok()) return receiver.status();
  a.receiver = std::move(receiver).value();

  if (!a.settings.stow.listen.empty()) {
    StowSettings ss;
    ss.listen = a.settings.stow.listen;
    ss.max_instance_bytes = static_cast<uint64_t>(a.settings.stow.max_instance_mb) << 20;
    ss.complete_after_seconds = a.settings.stow.complete_after_seconds;
    if (!a.settings.stow.bearer_token_env.empty()) {
      const char* token = std::getenv(a.settings.stow.bearer_token_env.c_str());
      if (token == nullptr || *token == '\0') {
        return FailedPrecondition("adapter.stow.bearer_token_env names " + a.settings.stow.bearer_token_env +
                                  ", which is not set");
      }
      ss.bearer_token = token;
    }
    auto stow = StowServer::Start(
        ss, *a.spool, [raw](const std::string& study) { raw->Stored(study); },
        [raw](const std::string& study) {
          auto event = raw->tracker->CompleteNow(study, v1::TRIGGER_STOW, "", "");
          if (!event.ok()) LogInfo("stow", "study " + study + " not completed by STOW: " + event.status().ToString());
        });
    if (!stow.ok()) return stow.status();
    a.stow = std::move(stow).value();
  }
  if (!a.settings.hl7.listen.empty()) {
    hl7::ListenerOptions lo;
    lo.ack = Outbound(a.settings.hl7);
    const hl7::OutboundOptions ack_from = lo.ack;
    auto listener = hl7::Listener::Start(
        a.settings.hl7.listen, lo, [raw, ack_from](const std::string& message, const std::string& peer) {
          return hl7::HandleInbound(
              message, [&](const hl7::Message& m) { return raw->AcceptHl7(m, message, peer); }, ack_from);
        });
    if (!listener.ok()) return listener.status();
    a.listener = std::move(listener).value();
  }
  a.tracker->Start();
  a.orders = std::thread([raw] { raw->OrderLoop(); });
  LogInfo("adapter", std::string("aihub-adapter ") + AdapterVersion() + ": gRPC " + a.grpc_endpoint + ", DICOM " +
                         rs.ae_title + " port " + std::to_string(rs.port) + ", STOW-RS " +
                         (a.stow ? a.settings.stow.listen.substr(0, a.settings.stow.listen.rfind(':') + 1) +
                                       std::to_string(a.stow->port())
                                 : std::string("off")) +
                         ", HL7 in " +
                         (a.settings.hl7.listen.empty() ? "off" : a.settings.hl7.listen) + ", out " +
                         (a.settings.hl7.send_to.empty() ? "off" : a.settings.hl7.send_to) + ", DICOMweb " +
                         (a.settings.dicomweb.url.empty() ? "off" : a.settings.dicomweb.url) + ", FHIR " +
                         (a.settings.fhir.url.empty() ? "off" : a.settings.fhir.url));
  return std::unique_ptr<Adapter>(new Adapter(std::move(impl)));
}

void Adapter::Stop() {
  if (!impl_ || impl_->stop.exchange(true)) return;
  Impl& a = *impl_;
  if (a.receiver) a.receiver->Stop();
  if (a.stow) a.stow->Stop();
  if (a.listener) a.listener->Stop();
  {
    std::lock_guard<std::mutex> lock(a.orders_mu);
    a.orders_wake.notify_all();
  }
  if (a.orders.joinable()) a.orders.join();
  if (a.service) a.service->Shutdown();
  if (a.tracker) a.tracker->Stop();
  if (a.server) a.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

}  // namespace aihub::adapter
