// Minimal structured logging to stderr: one line per event, UTC timestamp, level, component.
#pragma once

#include <string>

namespace aihub {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// "2026-11-28T01:02:03.456Z INFO  [registry] loaded ich 1.0.0"
void Log(LogLevel level, const std::string& component, const std::string& message);

inline void LogInfo(const std::string& component, const std::string& message) {
  Log(LogLevel::kInfo, component, message);
}
inline void LogWarning(const std::string& component, const std::string& message) {
  Log(LogLevel::kWarning, component, message);
}
inline void LogError(const std::string& component, const std::string& message) {
  Log(LogLevel::kError, component, message);
}

// Current UTC time as ISO 8601 with milliseconds and 'Z'.
std::string NowIso8601();

}  // namespace aihub
