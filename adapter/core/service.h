// The PacsAdapter gRPC service of the standard adapter: WatchStudies and FetchSeries from the spool, deliveries
// through the links (DICOMweb, HL7, FHIR) with idempotency keys recorded in the spool.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "aihub/v1/adapter.grpc.pb.h"
#include "common/status.h"
#include "core/spool.h"
#include "core/study_tracker.h"

namespace aihub::adapter {

// What the service needs from the outside world to deliver. Each call returns what the peer said (for the audit
// detail) or a status whose code says whether a retry can help (see adapter.proto).
class DeliveryLinks {
 public:
  virtual ~DeliveryLinks() = default;
  virtual StatusOr<std::string> StoreDicom(const std::string& part10) = 0;
  virtual StatusOr<std::string> SendHl7(const std::string& message) = 0;
  virtual StatusOr<std::string> PostFhir(const std::string& bundle_json) = 0;
  virtual StatusOr<std::string> UpdatePriority(const v1::UpdatePriorityRequest& request) = 0;
  virtual StatusOr<std::string> SendAlert(const v1::SendAlertRequest& request) = 0;
  virtual std::vector<v1::LinkState> Links() = 0;
};

grpc::Status ToGrpc(const Status& st);

class PacsAdapterService final : public v1::PacsAdapter::Service {
 public:
  PacsAdapterService(Spool& spool, StudyTracker& tracker, DeliveryLinks& links, std::string version);
  // Ends open WatchStudies streams (they return within one wait period).
  void Shutdown() { stopping_ = true; }

  grpc::Status WatchStudies(grpc::ServerContext* context, const v1::WatchStudiesRequest* request,
                            grpc::ServerWriter<v1::StudyEvent>* writer) override;
  grpc::Status FetchSeries(grpc::ServerContext* context, const v1::FetchSeriesRequest* request,
                           grpc::ServerWriter<v1::InstanceChunk>* writer) override;
  grpc::Status StoreDicom(grpc::ServerContext* context, const v1::StoreDicomRequest* request,
                          v1::DeliveryReply* reply) override;
  grpc::Status SendHl7(grpc::ServerContext* context, const v1::SendHl7Request* request,
                       v1::DeliveryReply* reply) override;
  grpc::Status PostFhir(grpc::ServerContext* context, const v1::PostFhirRequest* request,
                        v1::DeliveryReply* reply) override;
  grpc::Status UpdatePriority(grpc::ServerContext* context, const v1::UpdatePriorityRequest* request,
                              v1::DeliveryReply* reply) override;
  grpc::Status SendAlert(grpc::ServerContext* context, const v1::SendAlertRequest* request,
                         v1::DeliveryReply* reply) override;
  grpc::Status Describe(grpc::ServerContext* context, const v1::DescribeRequest* request,
                        v1::AdapterInfo* reply) override;

 private:
  // Runs `deliver` once per idempotency key: a key already delivered answers duplicate=true without sending.
  template <typename F>
  grpc::Status Deliver(const std::string& what, const std::string& key, F deliver, v1::DeliveryReply* reply);

  Spool& spool_;
  StudyTracker& tracker_;
  DeliveryLinks& links_;
  std::string version_;
  std::atomic<bool> stopping_{false};
  std::mutex deliver_mu_;   // one delivery at a time keeps HL7 in order and keys single-use
};

}  // namespace aihub::adapter
