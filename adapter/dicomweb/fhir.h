// FHIR R4 REST client (create and transaction) for sending results, on the same HTTP layer as the DICOMweb
// client: same options, same error mapping (see client.h), same thread-safety (calls may run concurrently).
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "dicomweb/http.h"

namespace aihub::dicomweb {

struct FhirOutcome {
  bool created = false;  // true: 201, a new resource; false: 200, the one that matched If-None-Exist
  std::string location;  // Location (or nothing when the server sent none)
  std::string id;        // the resource's id: from the returned resource, else from Location ({type}/{id}/...)
};

class FhirClient {
 public:
  explicit FhirClient(ClientOptions options);  // base_url = the FHIR base, e.g. http://host/fhir

  // Conditional create: POST {base}/{resource_type}, Content-Type application/fhir+json,
  // If-None-Exist: identifier=<system>|<value> (both URL-encoded), so a retry never makes a duplicate.
  // resource_type must be letters only (INVALID_ARGUMENT otherwise); system and value must be non-empty.
  // 201 -> created; 200 -> existing; 412 (several resources match) -> FAILED_PRECONDITION; other statuses as in
  // client.h; a body that is not a JSON object (when there is one) -> DATA_LOSS.
  StatusOr<FhirOutcome> Create(const std::string& resource_type, const std::string& resource_json,
                               const std::string& identifier_system, const std::string& identifier_value);

  // POST {base} a transaction Bundle; returns the response Bundle's JSON text (HTTP 200). A response that is not a
  // JSON Bundle -> DATA_LOSS.
  StatusOr<std::string> Transaction(const std::string& bundle_json);

 private:
  std::unique_ptr<HttpSession> http_;
};

}  // namespace aihub::dicomweb
