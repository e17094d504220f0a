// StowServer: the adapter as a DICOMweb STOW-RS origin server (PS3.18 10.5, Store Transaction), for modalities,
// gateways and PACS that push over HTTP instead of DIMSE (e.g. Orthanc's DICOMweb plugin,
// POST /dicom-web/servers/<name>/stow).
//
//   POST <any prefix>/studies                      multipart/related; type="application/dicom"
//   POST <any prefix>/studies/{StudyInstanceUID}   the same; parts of another study fail
//
// Each part is checked (a DICOM Part 10 file with valid Study/Series/SOP Instance UIDs) and spooled exactly as a
// C-STORE instance is (fsync of the file and its folders, spool row in a synchronous=FULL transaction) before the
// response is sent: what a 200 or 202 names is never lost. Bodies are read in chunks; memory holds one part at a
// time (at most `max_instance_bytes`).
//
// Response: the Store Instances Response Module as application/dicom+json: ReferencedSOPSequence (00081199) for
// each stored instance, FailedSOPSequence (00081198) with FailureReason (00081197) for the others: 0xC000 cannot
// understand (not DICOM, missing or invalid UIDs, another study than the URL's, a part that is not
// application/dicom), 0xA700 out of resources (the spool could not store it), 0x0110 processing failure. Status
// 200 all stored, 202 some failed, 409 none stored; 400 a malformed body (instances stored before the fault stay
// stored and are listed), 401 a missing or wrong bearer token (when one is configured), 404 another path, 405
// another method, 413 a part over the size limit, 415 a body that is not multipart/related DICOM, 503 too many
// connections. Errors carry a text/plain reason; the server keeps serving.
//
// Completion: when a request ends, each study it stored into completes `complete_after_seconds` later (trigger
// STOW) unless another request for it is still running or starts meanwhile, so senders that split a study over
// several requests (Orthanc sends a few instances per request) complete it once. Quiet-time completion
// (stable_seconds) still applies as for C-STORE.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "core/spool.h"

namespace aihub::adapter {

struct StowSettings {
  std::string listen;                       // host:port (port 0 picks a free one)
  std::string bearer_token;                 // required "Authorization: Bearer <token>"; "" = no authentication
  uint64_t max_instance_bytes = 256ull << 20;
  double complete_after_seconds = 1;
  int max_connections = 8;
  int io_timeout_seconds = 60;              // a peer silent for this long is disconnected
};

class StowServer {
 public:
  // `stored` runs after each spooled instance (wakes the study tracker); `complete` when a study's STOW requests
  // have ended (completes it with TRIGGER_STOW). Both run on server threads.
  using StudyCallback = std::function<void(const std::string& study_uid)>;

  static StatusOr<std::unique_ptr<StowServer>> Start(const StowSettings& settings, Spool& spool,
                                                     StudyCallback stored, StudyCallback complete);
  ~StowServer();
  StowServer(const StowServer&) = delete;
  StowServer& operator=(const StowServer&) = delete;

  // Stops accepting, disconnects running requests (their spooled instances stay) and joins every thread.
  void Stop();
  int port() const;

  class Impl;

 private:
  explicit StowServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace aihub::adapter
