#include "core/adapter_link.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <set>

#include <grpcpp/grpcpp.h>

#include "aihub/v1/adapter.grpc.pb.h"
#include "common/hash.h"
#include "common/log.h"
#include "compose/format.h"
#include "config/rules.h"
#include "core/router.h"
#include "dicom/study.h"

namespace aihub::core {

namespace fs = std::filesystem;

std::string AdapterSource(const std::string& endpoint, const std::string& folder) {
  return "adapter:" + endpoint + " " + folder;
}

std::string AdapterOfSource(const std::string& source) {
  if (source.rfind("adapter:", 0) != 0) return "";
  const size_t space = source.find(' ');
  return source.substr(8, space == std::string::npos ? std::string::npos : space - 8);
}

namespace {

Status FromGrpc(const grpc::Status& st, const std::string& what) {
  if (st.ok()) return Status::Ok();
  return Status(static_cast<aihub_status_code>(st.error_code()), what + ": " + st.error_message());
}

std::shared_ptr<grpc::Channel> ChannelTo(const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

// Tags by keyword (event) -> TagMap by number; names the dictionary does not know are dropped.
dicom::TagMap TagsFromKeywords(const google::protobuf::Map<std::string, std::string>& named) {
  dicom::TagMap tags;
  for (const auto& [name, value] : named) {
    auto tag = config::ResolveTag(name);
    if (tag.ok()) tags[*tag] = value;
  }
  return tags;
}

// A study built from the event's tags only: enough for the router, no files.
dicom::Study StudyFromEvent(const v1::StudyEvent& event) {
  dicom::Study study;
  study.study_instance_uid = event.study_instance_uid();
  study.tags = TagsFromKeywords(event.study_tags());
  for (const v1::SeriesInfo& info : event.series()) {
    dicom::Series series;
    series.series_instance_uid = info.series_instance_uid();
    series.tags = study.tags;
    for (const auto& [tag, value] : TagsFromKeywords(info.tags())) series.tags[tag] = value;
    if (info.tags().empty()) series.error = "no image instances (not scanned by the adapter)";
    study.series.push_back(std::move(series));
  }
  return study;
}

Status SyncFileSystem(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Unavailable("cannot open " + path.string());
  const int rc = ::syncfs(fd);
  ::close(fd);
  return rc == 0 ? Status::Ok() : Unavailable("syncfs " + path.string() + " failed");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
void AdapterDirectory::SetLinks(const std::string& endpoint, std::set<std::string> enabled) {
  std::lock_guard<std::mutex> lock(mu_);
  links_[endpoint] = std::move(enabled);
}

bool AdapterDirectory::LinkOn(const std::string& endpoint, const std::string& link) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = links_.find(endpoint);
  return it == links_.end() || it->second.count(link) > 0;
}

class AdapterSubscriber::Impl {
 public:
  Impl(Host& host, std::string endpoint, std::function<void(const std::string&)> say,
       std::shared_ptr<AdapterDirectory> directory)
      : host(host), endpoint(std::move(endpoint)), say(std::move(say)), directory(std::move(directory)) {}

  Host& host;
  const std::string endpoint;
  std::function<void(const std::string&)> say;
  std::shared_ptr<AdapterDirectory> directory;
  std::atomic<bool> stop{false};
  std::thread thread;
  std::mutex mu;
  std::condition_variable wake;
  grpc::ClientContext* active_call = nullptr;   // guarded by mu, for Stop() to cancel
  std::atomic<int64_t> events{0}, reconnects{0};
  Router router;

  void Run() {
    auto channel = ChannelTo(endpoint);
    auto stub = v1::PacsAdapter::NewStub(channel);
    int backoff_ms = 250;
    while (!stop) {
      auto cursor = host.store().AdapterCursor(endpoint);
      if (!cursor.ok()) {
        LogError("adapter", cursor.status().ToString());
        Sleep(1000);
        continue;
      }
      Describe(*stub);
      grpc::ClientContext context;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stop) break;
        active_call = &context;
      }
      v1::WatchStudiesRequest request;
      request.set_after_cursor(*cursor);
      request.set_subscriber("aihubd@" + HostOwner());
      auto reader = stub->WatchStudies(&context, request);
      v1::StudyEvent event;
      bool healthy = false;
      while (!stop && reader->Read(&event)) {
        healthy = true;
        backoff_ms = 250;
        Status st = Handle(*stub, event);
        if (!st.ok()) {
          // Not recorded: the event comes again after the reconnect below.
          LogError("adapter", endpoint + ": study " + event.study_instance_uid() + " not taken: " + st.ToString());
          context.TryCancel();
          break;
        }
        if (Status c = host.store().SetAdapterCursor(endpoint, event.cursor()); !c.ok()) {
          LogError("adapter", c.ToString());
        }
        ++events;
      }
      const grpc::Status end = reader->Finish();
      {
        std::lock_guard<std::mutex> lock(mu);
        active_call = nullptr;
      }
      if (stop) break;
      ++reconnects;
      if (!healthy) backoff_ms = std::min(backoff_ms * 2, 4000);
      LogWarning("adapter", endpoint + ": watch ended (" + std::to_string(end.error_code()) + " " +
                                end.error_message() + "), reconnecting in " + std::to_string(backoff_ms) + " ms");
      Sleep(backoff_ms);
    }
  }

  // Learns which links the adapter has on, and whether its event log is still the one our cursor belongs to
  // (best effort: on failure the watch below reports the problem).
  void Describe(v1::PacsAdapter::Stub& stub) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::AdapterInfo info;
    if (!stub.Describe(&context, v1::DescribeRequest(), &info).ok()) return;
    if (directory) {
      std::set<std::string> on;
      for (const v1::LinkState& link : info.links()) {
        if (link.enabled()) on.insert(link.name());
      }
      directory->SetLinks(endpoint, std::move(on));
    }
    if (!info.event_log_id().empty()) {
      auto reset = host.store().NoteAdapterEventLog(endpoint, info.event_log_id());
      if (reset.ok() && *reset) {
        LogWarning("adapter", endpoint + ": its event log is new (id " + info.event_log_id() +
                                  "; reinstalled or spool wiped): reading it from the start");
      }
    }
  }

  void Sleep(int ms) {
    std::unique_lock<std::mutex> lock(mu);
    wake.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stop.load(); });
  }

  Status Handle(v1::PacsAdapter::Stub& stub, const v1::StudyEvent& event) {
    const std::string& study_uid = event.study_instance_uid();
    if (!IsValidUid(study_uid)) {
      LogWarning("adapter", endpoint + ": event " + std::to_string(event.cursor()) + " has an invalid study UID; skipped");
      return Status::Ok();
    }
    // Replayed event (crash between submit and cursor write): the generation already has its jobs.
    auto jobs = host.store().ListJobs(study_uid);
    if (!jobs.ok()) return jobs.status();
    for (const store::JobRecord& j : *jobs) {
      if (j.generation >= event.generation()) return Status::Ok();
    }
    StudyContext context{event.calling_ae(), event.hl7_location(), event.generation()};
    const dicom::Study tag_study = StudyFromEvent(event);
    auto config = host.config().Get();
    RouteDecision preview = router.Route(*config, tag_study, context, host.registry().Active());
    std::set<std::string> wanted;
    for (const RoutedJob& job : preview.jobs) wanted.insert(job.series_uids.begin(), job.series_uids.end());

    const fs::path folder = config->state_dir / "studies" / study_uid / ("g" + std::to_string(event.generation()));
    const auto fetch_start = std::chrono::steady_clock::now();
    int64_t fetched = 0;
    if (!wanted.empty()) {
      auto n = Fetch(stub, study_uid, wanted, folder);
      if (!n.ok()) return n.status();
      fetched = *n;
    }
    const double fetch_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - fetch_start).count();

    std::shared_ptr<const dicom::Study> study;
    if (!wanted.empty()) {
      auto scanned = dicom::ScanDirectory(folder);
      if (!scanned.ok()) return scanned.status();
      for (dicom::Study& s : scanned->studies) {
        if (s.study_instance_uid == study_uid) study = std::make_shared<const dicom::Study>(std::move(s));
      }
      if (!study) return DataLoss("fetched files of study " + study_uid + " hold no usable image");
      host.catalog().Add(study);
    } else {
      study = std::make_shared<const dicom::Study>(tag_study);
    }
    auto decision = host.runner().Submit(*study, context, AdapterSource(endpoint, folder.string()));
    if (!decision.ok()) {
      // A study that can never be routed (e.g. invalid tags) is reported, not retried forever.
      say(study_uid + ": not processed: " + decision.status().message());
      return decision.status().code() == AIHUB_UNAVAILABLE ? decision.status() : Status::Ok();
    }
    if (decision->jobs.empty()) {
      say(study_uid + ": no plugin applies (department " + decision->department + ")");
    } else {
      say(study_uid + ": " + std::to_string(decision->jobs.size()) + " job(s) from " + endpoint + " (" +
          v1::Trigger_Name(event.trigger()) + ", generation " + std::to_string(event.generation()) + ", fetched " +
          std::to_string(fetched) + " instance(s) in " + std::to_string(static_cast<int>(fetch_s * 1000)) + " ms)");
    }
    return Status::Ok();
  }

  // Streams the wanted series into `folder` (files named by SOP Instance UID, written whole then renamed), then
  // one syncfs so they are durable before the jobs that read them are.
  StatusOr<int64_t> Fetch(v1::PacsAdapter::Stub& stub, const std::string& study_uid,
                          const std::set<std::string>& series, const fs::path& folder) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
    v1::FetchSeriesRequest request;
    request.set_study_instance_uid(study_uid);
    for (const std::string& s : series) request.add_series_instance_uids(s);
    auto reader = stub.FetchSeries(&context, request);
    v1::InstanceChunk chunk;
    std::ofstream out;
    fs::path part, target;
    int64_t instances = 0;
    std::error_code ec;
    while (reader->Read(&chunk)) {
      if (chunk.offset() == 0) {
        if (!IsValidUid(chunk.series_instance_uid()) || !IsValidUid(chunk.sop_instance_uid()) ||
            series.count(chunk.series_instance_uid()) == 0) {
          context.TryCancel();
          reader->Finish();
          return DataLoss("adapter sent an instance with an invalid or unasked-for UID");
        }
        fs::create_directories(folder / chunk.series_instance_uid(), ec);
        target = folder / chunk.series_instance_uid() / (chunk.sop_instance_uid() + ".dcm");
        part = target;
        part += ".part";
        out.close();
        out.clear();
        out.open(part, std::ios::binary | std::ios::trunc);
        if (!out) {
          context.TryCancel();
          reader->Finish();
          return Unavailable("cannot write " + part.string());
        }
      }
      out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      if (chunk.last()) {
        out.close();
        if (!out) return Unavailable("cannot write " + part.string());
        fs::rename(part, target, ec);
        if (ec) return Unavailable("cannot rename " + part.string() + ": " + ec.message());
        ++instances;
      }
    }
    const grpc::Status st = reader->Finish();
    if (!st.ok()) return FromGrpc(st, "FetchSeries " + study_uid);
    if (Status s = SyncFileSystem(folder); !s.ok()) return s;
    return instances;
  }
};

AdapterSubscriber::AdapterSubscriber(Host& host, std::string endpoint, std::function<void(const std::string&)> say,
                                     std::shared_ptr<AdapterDirectory> directory)
    : impl_(std::make_unique<Impl>(host, std::move(endpoint), std::move(say), std::move(directory))) {}

AdapterSubscriber::~AdapterSubscriber() { Stop(); }

void AdapterSubscriber::Start() {
  impl_->thread = std::thread([this] { impl_->Run(); });
}

void AdapterSubscriber::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stop.exchange(true)) return;
    if (impl_->active_call != nullptr) impl_->active_call->TryCancel();
    impl_->wake.notify_all();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

AdapterSubscriber::Stats AdapterSubscriber::stats() const { return Stats{impl_->events, impl_->reconnects}; }

// ---------------------------------------------------------------------------------------------------------------
namespace {

// Outbox kinds of adapter deliveries and the link each one uses (order is kept per link).
constexpr const char* kKindSr = "adapter.sr";
constexpr const char* kKindHl7 = "adapter.hl7";
constexpr const char* kKindFhir = "adapter.fhir";
constexpr const char* kKindPriority = "adapter.priority";
constexpr const char* kKindAlert = "adapter.alert";

std::string LinkOf(const std::string& kind) {
  if (kind == kKindSr) return "dicomweb";
  if (kind == kKindFhir) return "fhir";
  return "hl7";
}

v1::StudyRef RefOf(const Result& r) {
  v1::StudyRef ref;
  ref.set_study_instance_uid(r.study.study_instance_uid);
  ref.set_accession_number(r.study.accession_number);
  ref.set_patient_id(r.study.patient_id);
  ref.set_patient_name(r.study.patient_name);
  return ref;
}

std::string FindingText(const Finding& f) {
  char confidence[32];
  std::snprintf(confidence, sizeof confidence, "%.2f", f.confidence);
  return f.concept.meaning + ": " + compose::PresenceName(f.presence) + ", confidence " + confidence +
         (f.text.empty() ? "" : " (" + f.text + ")");
}

}  // namespace

DeliveryPlanner AdapterPlanner(std::function<std::string(const std::string&)> adapter_of, DeliveryPlanner fallback,
                               std::shared_ptr<const AdapterDirectory> directory) {
  return [adapter_of = std::move(adapter_of), fallback = std::move(fallback), directory = std::move(directory)](
             const Result& r, const EncodedResult& e) {
    const std::string endpoint = adapter_of(r.study.study_instance_uid);
    if (endpoint.empty()) return fallback ? fallback(r, e) : std::vector<store::OutboxItem>{};
    const auto mode = config::ParseMode(r.mode).value_or(config::Mode::kSilent);
    std::vector<store::OutboxItem> items;
    if (mode == config::Mode::kOff || mode == config::Mode::kSilent) return items;   // nothing leaves the hub
    auto add = [&](const char* kind, const google::protobuf::Message& request, const std::string& key) {
      const std::string link = LinkOf(kind) == "hl7" ? "hl7_out" : LinkOf(kind);
      if (directory && !directory->LinkOn(endpoint, link)) {
        LogInfo("deliver", std::string(kind) + " for " + r.study.study_instance_uid + " not planned: the " + link +
                               " link of adapter " + endpoint + " is off");
        return;
      }
      store::OutboxItem item;
      item.kind = kind;
      item.destination = endpoint;
      item.idempotency_key = key;
      item.payload = request.SerializeAsString();
      items.push_back(std::move(item));
    };
    const std::string& uid = r.sr_sop_instance_uid;   // deterministic per (job, plugin version)

    Urgency top = Urgency::kRoutine;
    std::vector<std::string> critical;
    for (const Finding& f : r.findings) {
      if (f.presence != Presence::kPresent) continue;
      top = std::max(top, f.urgency);
      if (f.urgency == Urgency::kCritical) critical.push_back(FindingText(f));
    }
    if (top != Urgency::kRoutine) {
      v1::UpdatePriorityRequest p;
      p.set_idempotency_key(std::string(kKindPriority) + ":" + uid);
      *p.mutable_study() = RefOf(r);
      p.set_priority(top == Urgency::kCritical ? v1::PRIORITY_STAT : v1::PRIORITY_URGENT);
      p.set_reason("AI " + r.algorithm.plugin_id + " " + r.algorithm.version + ": " +
                   (critical.empty() ? std::string("urgent finding") : critical.front()));
      add(kKindPriority, p, p.idempotency_key());
    }
    if (!critical.empty()) {
      v1::SendAlertRequest a;
      a.set_idempotency_key(std::string(kKindAlert) + ":" + uid);
      *a.mutable_study() = RefOf(r);
      for (const std::string& line : critical) a.add_findings(line);
      a.set_plugin_id(r.algorithm.plugin_id);
      a.set_plugin_version(r.algorithm.version);
      a.set_urgency("critical");
      add(kKindAlert, a, a.idempotency_key());
    }
    if (mode == config::Mode::kIntegrated) {
      v1::StoreDicomRequest sr;
      sr.set_idempotency_key(std::string(kKindSr) + ":" + uid);
      sr.set_study_instance_uid(r.study.study_instance_uid);
      sr.set_dicom(e.sr);
      add(kKindSr, sr, sr.idempotency_key());
      v1::SendHl7Request oru;
      oru.set_idempotency_key(std::string(kKindHl7) + ":" + uid);
      oru.set_study_instance_uid(r.study.study_instance_uid);
      oru.set_message(e.oru);
      add(kKindHl7, oru, oru.idempotency_key());
      v1::PostFhirRequest fhir;
      fhir.set_idempotency_key(std::string(kKindFhir) + ":" + uid);
      fhir.set_study_instance_uid(r.study.study_instance_uid);
      fhir.set_bundle_json(e.fhir);
      add(kKindFhir, fhir, fhir.idempotency_key());
    }
    return items;
  };
}

// ---------------------------------------------------------------------------------------------------------------
class AdapterDeliverer::Impl {
 public:
  Impl(store::JobStore& store, int max_attempts) : store(store), max_attempts(max_attempts) {}
  store::JobStore& store;
  const int max_attempts;
  std::map<std::string, std::unique_ptr<v1::PacsAdapter::Stub>> stubs;

  v1::PacsAdapter::Stub& StubFor(const std::string& endpoint) {
    auto& stub = stubs[endpoint];
    if (!stub) stub = v1::PacsAdapter::NewStub(ChannelTo(endpoint));
    return *stub;
  }

  grpc::Status Call(const store::OutboxItem& item, v1::DeliveryReply* reply) {
    v1::PacsAdapter::Stub& stub = StubFor(item.destination);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    auto parse_failed = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "outbox payload does not parse");
    if (item.kind == kKindSr) {
      v1::StoreDicomRequest r;
      return r.ParseFromString(item.payload) ? stub.StoreDicom(&context, r, reply) : parse_failed;
    }
    if (item.kind == kKindHl7) {
      v1::SendHl7Request r;
      return r.ParseFromString(item.payload) ? stub.SendHl7(&context, r, reply) : parse_failed;
    }
    if (item.kind == kKindFhir) {
      v1::PostFhirRequest r;
      return r.ParseFromString(item.payload) ? stub.PostFhir(&context, r, reply) : parse_failed;
    }
    if (item.kind == kKindPriority) {
      v1::UpdatePriorityRequest r;
      return r.ParseFromString(item.payload) ? stub.UpdatePriority(&context, r, reply) : parse_failed;
    }
    v1::SendAlertRequest r;
    return r.ParseFromString(item.payload) ? stub.SendAlert(&context, r, reply) : parse_failed;
  }
};

AdapterDeliverer::AdapterDeliverer(store::JobStore& store, int max_attempts)
    : impl_(std::make_unique<Impl>(store, max_attempts)) {}
AdapterDeliverer::~AdapterDeliverer() = default;

StatusOr<int> AdapterDeliverer::DrainOnce() {
  auto pending = impl_->store.PendingOutbox(256);
  if (!pending.ok()) return pending.status();
  std::set<std::string> held;   // (destination, link) whose head item is waiting: later items wait too
  int delivered = 0;
  const auto now = std::chrono::system_clock::now();
  for (const store::OutboxItem& item : *pending) {
    if (item.kind.rfind("adapter.", 0) != 0) continue;
    const std::string lane = item.destination + "|" + LinkOf(item.kind);
    if (held.count(lane)) continue;
    if (item.next_attempt_at > now) {
      held.insert(lane);
      continue;
    }
    v1::DeliveryReply reply;
    const grpc::Status st = impl_->Call(item, &reply);
    if (st.ok()) {
      if (Status m = impl_->store.MarkDelivered(item.id); !m.ok()) return m;
      ++delivered;
      continue;
    }
    const auto code = st.error_code();
    const bool retryable = code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
                           code == grpc::StatusCode::ABORTED || code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                           code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::UNKNOWN ||
                           code == grpc::StatusCode::INTERNAL;
    const std::string error = StatusCodeName(code) + ": " + st.error_message();
    // A final failure dead-letters at once: its attempt count reaches the limit now.
    const int limit = retryable ? impl_->max_attempts : item.attempts + 1;
    if (Status m = impl_->store.MarkDeliveryFailed(item.id, error, limit); !m.ok()) return m;
    LogWarning("deliver", item.kind + " " + item.idempotency_key + " via " + item.destination + ": " + error +
                              (retryable ? " (will retry)" : " (dead-lettered)"));
    held.insert(lane);
  }
  return delivered;
}

}  // namespace aihub::core
