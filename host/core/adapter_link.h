// The host's side of the PacsAdapter contract (proto/aihub/v1/adapter.proto).
//
// AdapterSubscriber: one per adapter endpoint in host.adapters. It watches the adapter's completed-study events
// from the cursor the job store last recorded, routes each study on the event's tags, fetches only the series the
// routed jobs need (FetchSeries) into state_dir/studies/<study>/g<generation>/, hands the study to the job runner,
// and only then records the event's cursor. A crash anywhere before that replays the event, and replay is
// harmless: jobs are idempotent by (study, plugin, version, generation) and an event whose generation already
// has jobs is skipped. A lost connection is retried with backoff for as long as the host runs.
//
// AdapterPlanner: what a result delivers, by governance mode (DESIGN.md): silent and off deliver nothing;
// assistive raises the worklist priority for urgent or critical findings and alerts on critical ones;
// integrated also stores the SR in the PACS, sends the ORU^R01 and posts the FHIR Bundle. Items go to the
// adapter the study came from, as serialized request messages, with idempotency keys derived from the
// deterministic SR SOP Instance UID (the same result always has the same keys).
//
// AdapterDeliverer: drains those outbox items through the adapters. Per (adapter, link) it delivers strictly in
// outbox order: an item waiting for its retry holds back the later ones of that link (HL7 receivers expect
// order), while other links go on. Retryable failures (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED)
// back off in the store and dead-letter after its limit; final ones (INVALID_ARGUMENT, FAILED_PRECONDITION, ...)
// dead-letter at once.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "core/host.h"
#include "core/job_runner.h"
#include "store/job_store.h"

namespace aihub::core {

// Source recorded for studies that came from an adapter: "adapter:<endpoint> <local folder>" (endpoints never
// hold spaces). StudyFolderOfSource (job_runner.h) gives the folder back.
std::string AdapterSource(const std::string& endpoint, const std::string& folder);
// The endpoint of such a source, or "" for other sources.
std::string AdapterOfSource(const std::string& source);

// Which links each adapter has on (from its Describe answer), so results are not planned for a link that is
// off (e.g. no FHIR server configured) only to be dead-lettered. Thread-safe.
class AdapterDirectory {
 public:
  void SetLinks(const std::string& endpoint, std::set<std::string> enabled);
  // True when the link ("dicomweb", "hl7_out", "fhir") is on, or when the endpoint has not answered yet (then
  // the delivery is planned and the adapter's answer decides).
  bool LinkOn(const std::string& endpoint, const std::string& link) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::set<std::string>> links_;
};

class AdapterSubscriber {
 public:
  // `say` gets one human-readable line per routed study (serve's output). `directory` (may be null) learns the
  // adapter's links at every (re)connect.
  AdapterSubscriber(Host& host, std::string endpoint, std::function<void(const std::string&)> say,
                    std::shared_ptr<AdapterDirectory> directory = nullptr);
  ~AdapterSubscriber();
  void Start();
  void Stop();

  struct Stats {
    int64_t events = 0;      // events handled (routed or skipped as already seen)
    int64_t reconnects = 0;
  };
  Stats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// `adapter_of(study_uid)`: the adapter endpoint the study came from, "" when it did not come from one (then
// `fallback` plans its deliveries, e.g. files for the folder inbox; may be null).
DeliveryPlanner AdapterPlanner(std::function<std::string(const std::string&)> adapter_of, DeliveryPlanner fallback,
                               std::shared_ptr<const AdapterDirectory> directory = nullptr);

class AdapterDeliverer {
 public:
  explicit AdapterDeliverer(store::JobStore& store, int max_attempts = 10);
  ~AdapterDeliverer();
  // One pass over the pending adapter items; returns how many were delivered. Thread-compatible: call from one
  // thread.
  StatusOr<int> DrainOnce();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace aihub::core
