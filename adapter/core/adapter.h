// Adapter: aihub-adapter's parts wired together from the site config's `adapter:` section.
//
//   spool (state_dir/adapter)  <- DicomReceiver (C-STORE SCP)       -> StudyTracker (completion, event log)
//                              <- orders (HL7 ORM/OMI over MLLP, then QIDO-RS + WADO-RS from the PACS)
//   PacsAdapter gRPC service   -> WatchStudies / FetchSeries from the spool
//                              -> deliveries: STOW-RS (SR), MLLP (ORU, alert, priority update), FHIR transaction
//
// Each link is off when its config value is "" (dicomweb.url, hl7.listen, hl7.send_to, fhir.url). A delivery to
// a link that is off fails with FAILED_PRECONDITION (the host dead-letters it and says why).
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "config/site_config.h"

namespace aihub::adapter {

class Adapter {
 public:
  // Opens the spool, starts the DICOM receiver, the MLLP listener, the order worker, the tracker and the gRPC
  // server. Any part that cannot start fails the whole start with the reason (a port in use, a bad address).
  static StatusOr<std::unique_ptr<Adapter>> Start(const config::SiteConfig& config);
  ~Adapter();
  // Stops accepting, ends streams, joins everything. Idempotent.
  void Stop();
  // The gRPC endpoint actually bound (e.g. "127.0.0.1:50052").
  const std::string& grpc_endpoint() const;

 private:
  class Impl;
  explicit Adapter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "aihub-adapter <version>"
const char* AdapterVersion();

}  // namespace aihub::adapter
