#include "dicomweb/client.h"

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "common/hash.h"
#include "dicomweb/multipart.h"

namespace aihub::dicomweb {

namespace {

using nlohmann::json;

constexpr size_t kMaxInstanceBytes = size_t{2} << 30;

// The values of attribute `tag` in a DICOM JSON dataset (PS3.18 F.2), as text; numbers (IS, US) in decimal.
// Absent or malformed attributes give none.
std::vector<std::string> Values(const json& dataset, const char* tag) {
  std::vector<std::string> out;
  auto attribute = dataset.find(tag);
  if (attribute == dataset.end() || !attribute->is_object()) return out;
  auto values = attribute->find("Value");
  if (values == attribute->end() || !values->is_array()) return out;
  for (const json& v : *values) {
    if (v.is_string()) out.push_back(v.get<std::string>());
    if (v.is_number_integer()) out.push_back(std::to_string(v.get<long long>()));
  }
  return out;
}

std::string FirstValue(const json& dataset, const char* tag) {
  std::vector<std::string> values = Values(dataset, tag);
  return values.empty() ? std::string() : values.front();
}

int FirstInt(const json& dataset, const char* tag) {
  const std::string text = FirstValue(dataset, tag);
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  return text.empty() || *end != '\0' || value < 0 || value > INT32_MAX ? -1 : static_cast<int>(value);
}

// A QIDO-RS search: the datasets of a 200 JSON array answer, none for 204 or an empty body. Each must hold a
// valid UID at `uid_tag`.
StatusOr<std::vector<json>> Search(HttpSession& http, const std::string& url, const char* uid_tag) {
  HttpRequest request{"GET", url, {"Accept: application/dicom+json"}, {}, {}};
  StatusOr<HttpResponse> response = http.Perform(request);
  if (!response.ok()) return response.status();
  if (response->status == 204 || (response->status == 200 && response->body.empty())) return std::vector<json>();
  if (response->status != 200) return HttpError(request, *response);
  json array = json::parse(response->body, nullptr, false);
  if (!array.is_array()) {
    return DataLoss(DescribeRequest(request) + ": " + response->status_line + ": body is not a DICOM JSON array");
  }
  std::vector<json> datasets;
  for (json& item : array) {
    if (!item.is_object() || !IsValidUid(FirstValue(item, uid_tag))) {
      return DataLoss(DescribeRequest(request) + ": " + response->status_line + ": match without a valid " + uid_tag);
    }
    datasets.push_back(std::move(item));
  }
  return datasets;
}

Status CheckUid(const char* what, const std::string& uid) {
  return IsValidUid(uid) ? Status::Ok()
                         : InvalidArgument(std::string("invalid ") + what + " \"" + uid.substr(0, 80) +
                                           "\": want 1..64 digits and dots");
}

std::string RandomBoundary() {
  // 128 random bits: a DICOM instance containing the boundary by chance is not a practical concern.
  std::random_device random;
  std::string boundary = "aihub-";
  for (int i = 0; i < 4; ++i) {
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(random()));
    boundary += hex;
  }
  return boundary;
}

std::string FailureText(const std::vector<StowFailure>& failures) {
  std::string text;
  for (const StowFailure& f : failures) {
    char reason[16];
    std::snprintf(reason, sizeof reason, "0x%04X", static_cast<unsigned>(f.reason));
    text += (text.empty() ? "" : ", ") + (f.sop_instance_uid.empty() ? "(unknown)" : f.sop_instance_uid) + " " +
            (f.reason < 0 ? "no reason given" : "reason " + std::string(reason));
  }
  return text;
}

}  // namespace

Client::Client(ClientOptions options) : http_(std::make_unique<HttpSession>(std::move(options))) {}

StatusOr<std::vector<StudyMatch>> Client::FindStudies(const StudyQuery& query) {
  if (query.study_instance_uid.empty() && query.accession_number.empty()) {
    return InvalidArgument("FindStudies needs a StudyInstanceUID or an AccessionNumber");
  }
  std::string url = http_->options().base_url + "/studies?";
  if (!query.study_instance_uid.empty()) url += "StudyInstanceUID=" + UrlEncode(query.study_instance_uid) + "&";
  if (!query.accession_number.empty()) url += "AccessionNumber=" + UrlEncode(query.accession_number) + "&";
  url += "includefield=NumberOfStudyRelatedInstances&includefield=ModalitiesInStudy";
  StatusOr<std::vector<json>> datasets = Search(*http_, url, "0020000D");
  if (!datasets.ok()) return datasets.status();
  std::vector<StudyMatch> matches;
  for (const json& ds : *datasets) {
    StudyMatch m;
    m.study_instance_uid = FirstValue(ds, "0020000D");
    m.accession_number = FirstValue(ds, "00080050");
    m.patient_id = FirstValue(ds, "00100020");
    m.number_of_instances = FirstInt(ds, "00201208");
    m.modalities = Values(ds, "00080061");
    matches.push_back(std::move(m));
  }
  return matches;
}

StatusOr<std::vector<SeriesMatch>> Client::FindSeries(const std::string& study_uid) {
  if (Status st = CheckUid("StudyInstanceUID", study_uid); !st.ok()) return st;
  const std::string url =
      http_->options().base_url + "/studies/" + study_uid + "/series?includefield=NumberOfSeriesRelatedInstances";
  StatusOr<std::vector<json>> datasets = Search(*http_, url, "0020000E");
  if (!datasets.ok()) return datasets.status();
  std::vector<SeriesMatch> matches;
  for (const json& ds : *datasets) {
    SeriesMatch m;
    m.series_instance_uid = FirstValue(ds, "0020000E");
    m.modality = FirstValue(ds, "00080060");
    m.number_of_instances = FirstInt(ds, "00201209");
    matches.push_back(std::move(m));
  }
  return matches;
}

StatusOr<int> Client::RetrieveSeries(const std::string& study_uid, const std::string& series_uid,
                                     const std::function<Status(std::string&& dicom_part10)>& on_instance) {
  if (Status st = CheckUid("StudyInstanceUID", study_uid); !st.ok()) return st;
  if (Status st = CheckUid("SeriesInstanceUID", series_uid); !st.ok()) return st;
  std::unique_ptr<MultipartParser> parser;
  auto on_part = [&](std::string_view type, std::string&& body) {
    std::string media_type(type.substr(0, type.find(';')));
    media_type.erase(media_type.find_last_not_of(" \t") + 1);
    for (char& c : media_type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!media_type.empty() && media_type != "application/dicom") {
      return DataLoss("part of type \"" + std::string(type) + "\", expected application/dicom");
    }
    return on_instance(std::move(body));
  };
  HttpRequest request{"GET",
                      http_->options().base_url + "/studies/" + study_uid + "/series/" + series_uid,
                      {"Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*"},
                      {},
                      [&](const HttpResponse& head, std::string_view chunk) -> Status {
                        if (!parser) {
                          auto created = MultipartParser::Create(head.content_type, on_part, kMaxInstanceBytes);
                          if (!created.ok()) return DataLoss(created.status().message());
                          parser = std::move(created).value();
                        }
                        return parser->Feed(chunk);
                      }};
  StatusOr<HttpResponse> response = http_->Perform(request);
  if (!response.ok()) return response.status();
  if (response->status != 200) return HttpError(request, *response);
  Status finished = parser ? parser->Finish() : DataLoss("empty body");
  if (!finished.ok()) {
    return DataLoss(DescribeRequest(request) + ": " + response->status_line + ": " + finished.message());
  }
  return parser->parts();
}

StatusOr<StowResult> Client::Store(const std::vector<std::string>& dicom_part10_instances) {
  if (dicom_part10_instances.empty()) return InvalidArgument("Store needs at least one instance");
  const std::string boundary = RandomBoundary();
  HttpRequest request{"POST",
                      http_->options().base_url + "/studies",
                      {"Content-Type: multipart/related; type=\"application/dicom\"; boundary=" + boundary,
                       "Accept: application/dicom+json"},
                      {},
                      {}};
  size_t size = 0;
  for (const std::string& instance : dicom_part10_instances) size += instance.size() + boundary.size() + 80;
  request.body.reserve(size);
  for (const std::string& instance : dicom_part10_instances) {
    request.body += "--" + boundary +
                    "\r\nContent-Type: application/dicom\r\nContent-Length: " + std::to_string(instance.size()) +
                    "\r\n\r\n";
    request.body += instance;
    request.body += "\r\n";
  }
  request.body += "--" + boundary + "--\r\n";

  StatusOr<HttpResponse> response = http_->Perform(request);
  if (!response.ok()) return response.status();
  const long status = response->status;
  if (status != 200 && status != 202 && status != 409) return HttpError(request, *response);
  const json dataset = json::parse(response->body, nullptr, false);
  if (!dataset.is_object()) {
    if (status == 409) return HttpError(request, *response);
    return DataLoss(DescribeRequest(request) + ": " + response->status_line + ": body is not a DICOM JSON object");
  }
  StowResult result;
  auto items = [&](const char* tag) {
    auto attribute = dataset.find(tag);
    if (attribute == dataset.end() || !attribute->is_object()) return json::array();
    auto value = attribute->find("Value");
    return value != attribute->end() && value->is_array() ? *value : json::array();
  };
  for (const json& item : items("00081199")) {
    if (item.is_object()) result.stored.push_back(FirstValue(item, "00081155"));
  }
  for (const json& item : items("00081198")) {
    if (item.is_object()) result.failed.push_back({FirstValue(item, "00081155"), FirstInt(item, "00081197")});
  }
  if (status == 409) {
    return FailedPrecondition(DescribeRequest(request) + ": " + response->status_line +
                              ": no instance stored: " + FailureText(result.failed));
  }
  return result;
}

}  // namespace aihub::dicomweb
