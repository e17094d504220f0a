#include "core/service.h"

#include <fstream>

#include "common/hash.h"
#include "common/log.h"

namespace aihub::adapter {

grpc::Status ToGrpc(const Status& st) {
  if (st.ok()) return grpc::Status::OK;
  // aihub status codes use the gRPC numbering (common/status.h).
  return grpc::Status(static_cast<grpc::StatusCode>(st.code()), st.message());
}

PacsAdapterService::PacsAdapterService(Spool& spool, StudyTracker& tracker, DeliveryLinks& links,
                                       std::string version)
    : spool_(spool), tracker_(tracker), links_(links), version_(std::move(version)) {}

grpc::Status PacsAdapterService::WatchStudies(grpc::ServerContext* context, const v1::WatchStudiesRequest* request,
                                              grpc::ServerWriter<v1::StudyEvent>* writer) {
  uint64_t cursor = request->after_cursor();
  LogInfo("grpc", "subscriber '" + request->subscriber() + "' watches after cursor " + std::to_string(cursor));
  while (!context->IsCancelled() && !stopping_) {
    auto events = spool_.EventsAfter(cursor, 64);
    if (!events.ok()) return ToGrpc(events.status());
    for (const StoredEvent& stored : *events) {
      v1::StudyEvent event;
      if (!event.ParseFromString(stored.event_bytes)) {
        return grpc::Status(grpc::StatusCode::DATA_LOSS, "event " + std::to_string(stored.cursor) + " is corrupt");
      }
      if (!writer->Write(event)) return grpc::Status::OK;   // the subscriber went away
      cursor = stored.cursor;
    }
    if (events->empty()) tracker_.WaitForEventAfter(cursor, 500);
  }
  return grpc::Status::OK;
}

grpc::Status PacsAdapterService::FetchSeries(grpc::ServerContext* context, const v1::FetchSeriesRequest* request,
                                             grpc::ServerWriter<v1::InstanceChunk>* writer) {
  if (!IsValidUid(request->study_instance_uid())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "invalid StudyInstanceUID");
  }
  const std::vector<std::string> series(request->series_instance_uids().begin(),
                                        request->series_instance_uids().end());
  auto instances = spool_.Instances(request->study_instance_uid(), series);
  if (!instances.ok()) return ToGrpc(instances.status());
  if (instances->empty()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "no spooled instances for study " + request->study_instance_uid() + " and the series asked");
  }
  constexpr uint32_t kDefaultChunk = 1u << 20, kMaxChunk = 4u << 20;
  const uint32_t chunk = request->max_chunk_bytes() == 0 ? kDefaultChunk
                                                         : std::min(request->max_chunk_bytes(), kMaxChunk);
  std::string buffer(chunk, '\0');
  for (const SpooledInstance& i : *instances) {
    std::ifstream in(i.path, std::ios::binary);
    if (!in) return grpc::Status(grpc::StatusCode::DATA_LOSS, "spool file missing: " + i.path.string());
    in.seekg(0, std::ios::end);
    const uint64_t total = static_cast<uint64_t>(in.tellg());
    in.seekg(0);
    uint64_t offset = 0;
    do {
      in.read(buffer.data(), static_cast<std::streamsize>(std::min<uint64_t>(chunk, total - offset)));
      const auto n = static_cast<uint64_t>(in.gcount());
      if (n == 0 && offset < total) {
        return grpc::Status(grpc::StatusCode::DATA_LOSS, "spool file shrank: " + i.path.string());
      }
      v1::InstanceChunk c;
      c.set_series_instance_uid(i.series_uid);
      c.set_sop_instance_uid(i.sop_uid);
      c.set_offset(offset);
      c.set_total_size(total);
      c.set_data(buffer.data(), n);
      offset += n;
      c.set_last(offset >= total);
      if (context->IsCancelled() || !writer->Write(c)) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    } while (offset < total);
  }
  return grpc::Status::OK;
}

template <typename F>
grpc::Status PacsAdapterService::Deliver(const std::string& what, const std::string& key, F deliver,
                                         v1::DeliveryReply* reply) {
  if (key.empty() || key.size() > 512) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, what + ": idempotency_key must be 1-512 bytes");
  }
  std::lock_guard<std::mutex> lock(deliver_mu_);
  auto before = spool_.Delivered(key);
  if (!before.ok()) return ToGrpc(before.status());
  if (before->has_value()) {
    reply->set_duplicate(true);
    reply->set_detail(**before);
    return grpc::Status::OK;
  }
  StatusOr<std::string> detail = deliver();
  if (!detail.ok()) {
    LogWarning("deliver", what + " " + key + ": " + detail.status().ToString());
    return ToGrpc(detail.status());
  }
  // Delivered but not recorded (crash right here) means one repeat on retry; the peers' own idempotency (SOP
  // Instance UID in the PACS, conditional create in FHIR) covers that, HL7 receivers see one duplicate at most.
  if (Status st = spool_.MarkDelivered(key, *detail, NowUnixMs()); !st.ok()) {
    LogError("deliver", what + " " + key + " delivered but not recorded: " + st.ToString());
  }
  reply->set_detail(*detail);
  LogInfo("deliver", what + " " + key + ": " + *detail);
  return grpc::Status::OK;
}

grpc::Status PacsAdapterService::StoreDicom(grpc::ServerContext*, const v1::StoreDicomRequest* request,
                                            v1::DeliveryReply* reply) {
  if (request->dicom().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty DICOM object");
  return Deliver("StoreDicom", request->idempotency_key(), [&] { return links_.StoreDicom(request->dicom()); },
                 reply);
}

grpc::Status PacsAdapterService::SendHl7(grpc::ServerContext*, const v1::SendHl7Request* request,
                                         v1::DeliveryReply* reply) {
  if (request->message().rfind("MSH", 0) != 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "HL7 message must start with an MSH segment");
  }
  return Deliver("SendHl7", request->idempotency_key(), [&] { return links_.SendHl7(request->message()); }, reply);
}

grpc::Status PacsAdapterService::PostFhir(grpc::ServerContext*, const v1::PostFhirRequest* request,
                                          v1::DeliveryReply* reply) {
  return Deliver("PostFhir", request->idempotency_key(), [&] { return links_.PostFhir(request->bundle_json()); },
                 reply);
}

grpc::Status PacsAdapterService::UpdatePriority(grpc::ServerContext*, const v1::UpdatePriorityRequest* request,
                                                v1::DeliveryReply* reply) {
  return Deliver("UpdatePriority", request->idempotency_key(), [&] { return links_.UpdatePriority(*request); },
                 reply);
}

grpc::Status PacsAdapterService::SendAlert(grpc::ServerContext*, const v1::SendAlertRequest* request,
                                           v1::DeliveryReply* reply) {
  return Deliver("SendAlert", request->idempotency_key(), [&] { return links_.SendAlert(*request); }, reply);
}

grpc::Status PacsAdapterService::Describe(grpc::ServerContext*, const v1::DescribeRequest*, v1::AdapterInfo* reply) {
  reply->set_implementation("aihub-adapter");
  reply->set_version(version_);
  reply->set_event_log_id(spool_.event_log_id());
  for (const v1::LinkState& link : links_.Links()) *reply->add_links() = link;
  auto cursor = spool_.LastCursor();
  if (cursor.ok()) reply->set_last_cursor(*cursor);
  auto open = spool_.OpenStudies();
  if (open.ok()) reply->set_open_studies(static_cast<uint32_t>(open->size()));
  return grpc::Status::OK;
}

}  // namespace aihub::adapter
