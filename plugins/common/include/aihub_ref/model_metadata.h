// Reads the flat JSON that the reference models' train.py scripts store in their TorchScript file as
// "aihub_model.json" (json.dumps of a dict whose values are numbers, strings or flat lists). Header-only; no
// JSON library, because plugins depend only on plugin_api and libtorch.
#pragma once

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace aihub_ref {

// Value of "key" as text: strings lose their quotes; "" when absent. Top-level keys only in practice (the
// metadata is flat), so no nesting is parsed.
inline std::string JsonValue(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  size_t i = at + needle.size();
  while (i < json.size() && json[i] == ' ') ++i;
  if (i < json.size() && json[i] == '"') {
    const size_t end = json.find('"', i + 1);
    return end == std::string::npos ? "" : json.substr(i + 1, end - i - 1);
  }
  size_t end = i;
  while (end < json.size() && json[end] != ',' && json[end] != '}' && json[end] != ']') ++end;
  return json.substr(i, end - i);
}

// A number in [lo, hi], `fallback` when absent; throws std::invalid_argument naming the key when present but bad.
inline double JsonNumber(const std::string& json, const std::string& key, double fallback, double lo, double hi) {
  const std::string v = JsonValue(json, key);
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || !std::isfinite(d) || d < lo || d > hi) {
    throw std::invalid_argument("model metadata: bad " + key + " '" + v + "'");
  }
  return d;
}

}  // namespace aihub_ref
