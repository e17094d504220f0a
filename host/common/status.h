// Status values for expected failures, with the gRPC / aihub_status_code numbering, so they map one to one
// onto plugin status codes and RPC errors. Broken invariants are bugs and assert instead.
#pragma once

#include <string>
#include <utility>

#include "aihub/plugin_api.h"

namespace aihub {

class Status {
 public:
  Status() = default;
  Status(aihub_status_code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == AIHUB_OK; }
  aihub_status_code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message"
  std::string ToString() const;

 private:
  aihub_status_code code_ = AIHUB_OK;
  std::string message_;
};

// Name of a status code, e.g. "FAILED_PRECONDITION"; "CODE_<n>" for values outside the known range.
std::string StatusCodeName(int code);

inline Status InvalidArgument(std::string m) { return Status(AIHUB_INVALID_ARGUMENT, std::move(m)); }
inline Status NotFound(std::string m) { return Status(AIHUB_NOT_FOUND, std::move(m)); }
inline Status FailedPrecondition(std::string m) { return Status(AIHUB_FAILED_PRECONDITION, std::move(m)); }
inline Status Unimplemented(std::string m) { return Status(AIHUB_UNIMPLEMENTED, std::move(m)); }
inline Status Internal(std::string m) { return Status(AIHUB_INTERNAL, std::move(m)); }
inline Status DataLoss(std::string m) { return Status(AIHUB_DATA_LOSS, std::move(m)); }
inline Status ResourceExhausted(std::string m) { return Status(AIHUB_RESOURCE_EXHAUSTED, std::move(m)); }
inline Status Unavailable(std::string m) { return Status(AIHUB_UNAVAILABLE, std::move(m)); }
inline Status Aborted(std::string m) { return Status(AIHUB_ABORTED, std::move(m)); }
inline Status OutOfRange(std::string m) { return Status(AIHUB_OUT_OF_RANGE, std::move(m)); }

// A value or the status saying why there is none.
template <typename T>
class StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)), has_value_(true) {}  // NOLINT: implicit by design
  // A StatusOr made from an OK status holds no value: that is a caller's bug, reported as INTERNAL.
  StatusOr(Status status)  // NOLINT
      : status_(status.ok() ? Status(AIHUB_INTERNAL, "StatusOr constructed from an OK status") : std::move(status)) {}
  bool ok() const { return has_value_; }
  const Status& status() const { return status_; }
  T& value() & { return value_; }
  const T& value() const& { return value_; }
  T&& value() && { return std::move(value_); }
  T* operator->() { return &value_; }
  const T* operator->() const { return &value_; }
  T& operator*() { return value_; }
  const T& operator*() const { return value_; }

 private:
  Status status_;
  T value_{};
  bool has_value_ = false;
};

}  // namespace aihub
