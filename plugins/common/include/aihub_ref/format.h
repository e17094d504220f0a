// Numbers in the text reference plugins write (summaries, finding texts, logs, reasons). Header-only.
#pragma once

#include <cstdio>
#include <string>

namespace aihub_ref {

// `v` printed with a printf format for one double (default one decimal).
inline std::string FormatNumber(double v, const char* fmt = "%.1f") {
  char buf[64];  // snprintf truncates what does not fit
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace aihub_ref
