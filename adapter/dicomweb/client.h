// DICOMweb client (QIDO-RS, WADO-RS, STOW-RS) for the PACS / VNA, on libcurl.
//
// Errors (every message names the method, the URL without credentials and the HTTP status line or "no HTTP
// response"):
//   - connection refused/reset, DNS, connect or transfer timeouts, HTTP 5xx, 408, 429 -> UNAVAILABLE: retry later.
//   - HTTP 401, 403 -> FAILED_PRECONDITION "not authorized: ...".
//   - HTTP 404 -> NOT_FOUND.
//   - HTTP 400, 413, 414, 415, 422 -> INVALID_ARGUMENT; other 4xx and unexpected statuses -> FAILED_PRECONDITION;
//     the message carries the first 200 bytes of the body.
//   - a malformed body (bad JSON, bad multipart, a match without its UID) -> DATA_LOSS.
//   - a UID that is not 1..64 digits and dots -> INVALID_ARGUMENT before any request: unchecked text never goes
//     into a URL path.
// Thread-safety: every method may be called from several threads at once. Each call uses its own libcurl handle;
// connections are kept alive in a connection cache shared by the calls of one Client.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "dicomweb/http.h"

namespace aihub::dicomweb {

// At least one key must be set; set keys are combined (AND).
struct StudyQuery {
  std::string study_instance_uid;
  std::string accession_number;
};

struct StudyMatch {
  std::string study_instance_uid;
  std::string accession_number;  // "" when the server sent none
  std::string patient_id;
  int number_of_instances = -1;         // NumberOfStudyRelatedInstances, -1 when unknown
  std::vector<std::string> modalities;  // ModalitiesInStudy
};

struct SeriesMatch {
  std::string series_instance_uid;
  std::string modality;
  int number_of_instances = -1;  // NumberOfSeriesRelatedInstances, -1 when unknown
};

struct StowFailure {
  std::string sop_instance_uid;  // "" when the server could not tell (e.g. bytes that are no DICOM)
  int reason = -1;               // FailureReason (0008,1197), e.g. 0xC000; -1 when absent
};

struct StowResult {
  std::vector<std::string> stored;  // ReferencedSOPSequence (0008,1199): SOP Instance UIDs now in the archive
  std::vector<StowFailure> failed;  // FailedSOPSequence (0008,1198)
};

class Client {
 public:
  explicit Client(ClientOptions options);

  // QIDO-RS GET {base}/studies?StudyInstanceUID=..&AccessionNumber=..&includefield=NumberOfStudyRelatedInstances
  // &includefield=ModalitiesInStudy (values URL-encoded), Accept: application/dicom+json. No match is an empty
  // vector (HTTP 200 [] or 204), not an error. An empty query -> INVALID_ARGUMENT.
  StatusOr<std::vector<StudyMatch>> FindStudies(const StudyQuery& query);

  // QIDO-RS GET {base}/studies/{study}/series. An unknown study is an empty vector or NOT_FOUND, as the server
  // answers (Orthanc: empty).
  StatusOr<std::vector<SeriesMatch>> FindSeries(const std::string& study_uid);

  // WADO-RS GET {base}/studies/{study}/series/{series}, Accept: multipart/related; type="application/dicom";
  // transfer-syntax=* (instances as stored, no transcoding). The body is parsed as it streams in: each instance
  // goes to on_instance as soon as its part is complete, so memory stays bounded by one instance (at most
  // 2 GiB). Returns the number of instances. An error from on_instance aborts the transfer and is returned
  // (instances handed over before stay handed over). A part of another type than application/dicom -> DATA_LOSS.
  StatusOr<int> RetrieveSeries(const std::string& study_uid, const std::string& series_uid,
                               const std::function<Status(std::string&& dicom_part10)>& on_instance);

  // STOW-RS POST {base}/studies, one multipart/related; type="application/dicom" request. HTTP 200: all stored;
  // 202: some failed, still OK with the failures listed; 409: all failed -> FAILED_PRECONDITION naming the
  // failure reasons. Storing an instance again is not an error (Orthanc lists it as stored). Orthanc 1.10 with
  // DICOMweb 1.7 answers 400 (-> INVALID_ARGUMENT) when any part is no DICOM, yet stores the other instances of
  // the request. No instances -> INVALID_ARGUMENT.
  StatusOr<StowResult> Store(const std::vector<std::string>& dicom_part10_instances);

 private:
  std::unique_ptr<HttpSession> http_;
};

}  // namespace aihub::dicomweb
