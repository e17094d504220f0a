// Internal helpers shared by rules.cpp and site_config.cpp: position-prefixed errors, strict mapping
// reading (unknown and duplicate keys are errors) and strict scalar conversions. Not part of the public API.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/status.h"

namespace aihub::config::internal {

// "name:LINE:COLUMN: message" (1-based); "name: message" when the node carries no position.
Status ErrorAt(const std::string& name, const YAML::Mark& mark, const std::string& message);
Status ErrorAt(const std::string& name, const YAML::Node& node, const std::string& message);

// "a mapping", "a list", "a string", "null" — for "expected X, got Y" messages.
std::string Describe(const YAML::Node& node);

// Parses one YAML document. An empty text yields a null node. Syntax errors carry line:column.
Status ParseYaml(const std::string& text, const std::string& name, YAML::Node* out);

struct MapEntry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};

// The entries of a mapping in document order. Keys must be scalars and unique; when `allowed` is given,
// a key outside it is an error naming the valid keys. `what` names the mapping in messages ("plugin").
class MapReader {
 public:
  static StatusOr<MapReader> Read(const YAML::Node& node, const std::string& name, const std::string& what,
                                  const std::vector<std::string>* allowed);
  const std::vector<MapEntry>& entries() const { return entries_; }
  // nullptr when the key is not there.
  const MapEntry* Find(const std::string& key) const;

 private:
  std::vector<MapEntry> entries_;
};

std::string Join(const std::vector<std::string>& items, const char* separator);
// Trims spaces and NUL padding (DICOM pads values with either).
std::string_view Trim(std::string_view s);

// Strict conversions of plain scalars; nullopt when the text is not of that type.
std::optional<int64_t> ParseInteger(std::string_view s);   // [+-]digits
std::optional<double> ParseDecimal(std::string_view s);    // [+-]digits[.digits][e[+-]digits], no inf/nan/hex
std::optional<bool> ParseBool(std::string_view s);         // true/True/TRUE/false/False/FALSE

}  // namespace aihub::config::internal
