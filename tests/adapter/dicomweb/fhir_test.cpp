#include "dicomweb/fhir.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "test_peers.h"

namespace aihub::dicomweb {
namespace {

using testing::FaultUrl;
using testing::Options;

const char kObservation[] = R"({"resourceType":"Observation","status":"final"})";

TEST_CASE("FhirClient rejects a bad resource type or identifier before any request") {
  testing::RefusingPort port;  // a request would be UNAVAILABLE instead
  FhirClient fhir(Options(port.url()));
  CHECK(fhir.Create("Observation/../Patient", kObservation, "urn:x", "1").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(fhir.Create("", kObservation, "urn:x", "1").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(fhir.Create("Observation", kObservation, "", "1").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(fhir.Create("Observation", kObservation, "urn:x", "").status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(fhir.Create("Observation", kObservation, "urn:x", "1").status().code() == AIHUB_UNAVAILABLE);
}

// The fault peer's FHIR routes are a minimal stand-in (no FHIR server in Debian): conditional create keyed by
// If-None-Exist, transaction answering one entry per entry.
TEST_SUITE("fault_peer" * doctest::skip()) {
  TEST_CASE("conditional create: 201 first, 200 with the same resource on a retry, a new one for a new identifier") {
    FhirClient fhir(Options(FaultUrl() + "/fhir"));
    auto first = fhir.Create("Observation", kObservation, "urn:aihub:result", "job 7|ich 1.0");
    REQUIRE_MESSAGE(first.ok(), first.status().ToString());
    CHECK(first->created);
    CHECK_FALSE(first->id.empty());
    CHECK(first->location == FaultUrl() + "/fhir/Observation/" + first->id + "/_history/1");

    auto again = fhir.Create("Observation", kObservation, "urn:aihub:result", "job 7|ich 1.0");
    REQUIRE_MESSAGE(again.ok(), again.status().ToString());
    CHECK_FALSE(again->created);
    CHECK(again->id == first->id);
    CHECK(again->location == first->location);

    auto other = fhir.Create("Observation", kObservation, "urn:aihub:result", "job 8");
    REQUIRE(other.ok());
    CHECK(other->created);
    CHECK(other->id != first->id);
  }

  TEST_CASE("FHIR errors: 412 several matches, 500, a body that is not JSON") {
    auto ambiguous =
        FhirClient(Options(FaultUrl() + "/fhir")).Create("Observation", kObservation, "urn:x", "ambiguous");
    CHECK(ambiguous.status().code() == AIHUB_FAILED_PRECONDITION);
    CHECK(ambiguous.status().message().find("POST " + FaultUrl() + "/fhir/Observation: HTTP/1.1 412") == 0);

    FhirClient broken(Options(FaultUrl() + "/status/500"));
    CHECK(broken.Create("Observation", kObservation, "urn:x", "1").status().code() == AIHUB_UNAVAILABLE);
    CHECK(broken.Transaction("{}").status().code() == AIHUB_UNAVAILABLE);

    FhirClient garbage(Options(FaultUrl() + "/garbage"));
    CHECK(garbage.Create("Observation", kObservation, "urn:x", "1").status().code() == AIHUB_DATA_LOSS);
    CHECK(garbage.Transaction("{}").status().code() == AIHUB_DATA_LOSS);
  }

  TEST_CASE("a transaction returns the response Bundle") {
    const nlohmann::json bundle = {
        {"resourceType", "Bundle"},
        {"type", "transaction"},
        {"entry",
         {{{"resource", nlohmann::json::parse(kObservation)}}, {{"resource", nlohmann::json::parse(kObservation)}}}}};
    auto response = FhirClient(Options(FaultUrl() + "/fhir")).Transaction(bundle.dump());
    REQUIRE_MESSAGE(response.ok(), response.status().ToString());
    const nlohmann::json answer = nlohmann::json::parse(*response);
    CHECK(answer["type"] == "transaction-response");
    CHECK(answer["entry"].size() == 2);
  }
}

}  // namespace
}  // namespace aihub::dicomweb
