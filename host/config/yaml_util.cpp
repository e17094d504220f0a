#include "config/yaml_util.h"

#include <algorithm>
#include <charconv>
#include <limits>

namespace aihub::config::internal {

Status ErrorAt(const std::string& name, const YAML::Mark& mark, const std::string& message) {
  if (mark.is_null()) return InvalidArgument(name + ": " + message);
  return InvalidArgument(name + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1) +
                         ": " + message);
}

Status ErrorAt(const std::string& name, const YAML::Node& node, const std::string& message) {
  return ErrorAt(name, node.IsDefined() ? node.Mark() : YAML::Mark::null_mark(), message);
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "'" + node.Scalar() + "'";
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Undefined: break;
  }
  return "nothing";
}

Status ParseYaml(const std::string& text, const std::string& name, YAML::Node* out) {
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(text);
    if (docs.size() > 1) return ErrorAt(name, docs[1], "only one YAML document is allowed");
    *out = docs.empty() ? YAML::Node(YAML::NodeType::Null) : docs[0];
    return Status::Ok();
  } catch (const YAML::Exception& e) {
    return ErrorAt(name, e.mark, "YAML syntax error: " + e.msg);
  }
}

StatusOr<MapReader> MapReader::Read(const YAML::Node& node, const std::string& name, const std::string& what,
                                    const std::vector<std::string>* allowed) {
  MapReader reader;
  if (node.IsNull()) return reader;  // `key:` with nothing after it reads as an empty mapping
  if (!node.IsMap()) return ErrorAt(name, node, "expected a mapping for " + what + ", got " + Describe(node));
  for (const auto& kv : node) {  // by value: the iterator's operator-> hands out a short-lived proxy
    const YAML::Node key = kv.first;
    if (!key.IsScalar()) return ErrorAt(name, key, "keys of " + what + " must be strings");
    const std::string& k = key.Scalar();
    if (allowed && std::find(allowed->begin(), allowed->end(), k) == allowed->end()) {
      return ErrorAt(name, key, "unknown key '" + k + "' in " + what + " (valid keys: " + Join(*allowed, ", ") + ")");
    }
    if (reader.Find(k)) return ErrorAt(name, key, "duplicate key '" + k + "' in " + what);
    reader.entries_.push_back(MapEntry{k, key, kv.second});
  }
  return reader;
}

const MapEntry* MapReader::Find(const std::string& key) const {
  for (const MapEntry& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

std::string Join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += items[i];
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  auto pad = [](char c) { return c == ' ' || c == '\0'; };
  while (!s.empty() && pad(s.front())) s.remove_prefix(1);
  while (!s.empty() && pad(s.back())) s.remove_suffix(1);
  return s;
}

std::optional<int64_t> ParseInteger(std::string_view s) {
  const bool plus = !s.empty() && s.front() == '+';
  if (plus) s.remove_prefix(1);
  if (s.empty() || (plus && s.front() == '-')) return std::nullopt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> ParseDecimal(std::string_view s) {
  // Check the shape by hand: from_chars alone would also take "inf", "nan" and hex-like forms.
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  size_t digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  if (s.front() == '+') s.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<bool> ParseBool(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

}  // namespace aihub::config::internal
