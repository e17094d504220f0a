// Early-return helpers for Status / StatusOr, for code with many fallible steps in a row (SQL, I/O).
#pragma once

#include "common/status.h"

#define RETURN_IF_ERROR(expr)        \
  do {                               \
    ::aihub::Status st_ = (expr);    \
    if (!st_.ok()) return st_;       \
  } while (0)

#define AIHUB_ASSIGN_OR_RETURN_IMPL(var, tmp, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  auto var = std::move(tmp).value()

#define AIHUB_CONCAT2(a, b) a##b
#define AIHUB_CONCAT(a, b) AIHUB_CONCAT2(a, b)
// Declares `var` from a StatusOr expression, or returns its status.
#define ASSIGN_OR_RETURN(var, expr) AIHUB_ASSIGN_OR_RETURN_IMPL(var, AIHUB_CONCAT(statusor_, __LINE__), expr)
