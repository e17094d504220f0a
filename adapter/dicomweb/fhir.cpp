#include "dicomweb/fhir.h"

#include <nlohmann/json.hpp>

namespace aihub::dicomweb {

namespace {

using nlohmann::json;

const char kFhirJson[] = "application/fhir+json";

bool IsResourceType(const std::string& type) {
  if (type.empty() || type.size() > 64) return false;
  for (char c : type) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  }
  return true;
}

// "http://host/fhir/Observation/123/_history/1" or "Observation/123" -> "123"; "" when the type is not in it.
std::string IdFromLocation(const std::string& location, const std::string& type) {
  const std::string path = "/" + location;
  const size_t at = path.rfind("/" + type + "/");
  if (at == std::string::npos) return "";
  const size_t begin = at + type.size() + 2;
  return path.substr(begin, path.find_first_of("/?#", begin) - begin);
}

}  // namespace

FhirClient::FhirClient(ClientOptions options) : http_(std::make_unique<HttpSession>(std::move(options))) {}

StatusOr<FhirOutcome> FhirClient::Create(const std::string& resource_type, const std::string& resource_json,
                                         const std::string& identifier_system, const std::string& identifier_value) {
  if (!IsResourceType(resource_type)) return InvalidArgument("invalid FHIR resource type \"" + resource_type + "\"");
  if (identifier_system.empty() || identifier_value.empty()) {
    return InvalidArgument("conditional create of " + resource_type + " needs an identifier system and value");
  }
  HttpRequest request{"POST",
                      http_->options().base_url + "/" + resource_type,
                      {std::string("Content-Type: ") + kFhirJson, std::string("Accept: ") + kFhirJson,
                       "If-None-Exist: identifier=" + UrlEncode(identifier_system) + "|" + UrlEncode(identifier_value)},
                      resource_json,
                      {}};
  StatusOr<HttpResponse> response = http_->Perform(request);
  if (!response.ok()) return response.status();
  if (response->status != 200 && response->status != 201) return HttpError(request, *response);
  FhirOutcome outcome{response->status == 201, response->location, IdFromLocation(response->location, resource_type)};
  if (!response->body.empty()) {
    const json resource = json::parse(response->body, nullptr, false);
    if (!resource.is_object()) {
      return DataLoss(DescribeRequest(request) + ": " + response->status_line + ": body is not a JSON object");
    }
    auto id = resource.find("id");
    if (id != resource.end() && id->is_string()) outcome.id = id->get<std::string>();
  }
  return outcome;
}

StatusOr<std::string> FhirClient::Transaction(const std::string& bundle_json) {
  HttpRequest request{"POST",
                      http_->options().base_url,
                      {std::string("Content-Type: ") + kFhirJson, std::string("Accept: ") + kFhirJson},
                      bundle_json,
                      {}};
  StatusOr<HttpResponse> response = http_->Perform(request);
  if (!response.ok()) return response.status();
  if (response->status != 200) return HttpError(request, *response);
  const json bundle = json::parse(response->body, nullptr, false);
  if (!bundle.is_object() || bundle.value("resourceType", json()) != "Bundle") {
    return DataLoss(DescribeRequest(request) + ": " + response->status_line + ": body is not a FHIR Bundle");
  }
  return std::move(response->body);
}

}  // namespace aihub::dicomweb
