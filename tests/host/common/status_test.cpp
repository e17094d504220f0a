#include "common/status.h"

#include <doctest/doctest.h>

namespace aihub {

TEST_CASE("Status names follow gRPC codes") {
  CHECK(Status().ok());
  CHECK(FailedPrecondition("not a head CT").ToString() == "FAILED_PRECONDITION: not a head CT");
  CHECK(StatusCodeName(AIHUB_UNAUTHENTICATED) == "UNAUTHENTICATED");
  CHECK(StatusCodeName(99) == "CODE_99");
}

TEST_CASE("StatusOr carries a value or a status") {
  StatusOr<int> v = 7;
  REQUIRE(v.ok());
  CHECK(*v == 7);
  StatusOr<int> e = NotFound("x");
  CHECK_FALSE(e.ok());
  CHECK(e.status().code() == AIHUB_NOT_FOUND);
}

}  // namespace aihub
