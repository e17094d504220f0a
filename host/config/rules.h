// Routing rules: tag matchers parsed from YAML and evaluated against DICOM tags (plus calling AE title and
// HL7 location for departments).
//
// A rule is a YAML mapping; all keys must match (AND). A key is a DICOM keyword (Modality), a tag as
// (gggg,eeee) or gggg,eeee, or one of the context keys `calling_ae` and `hl7_location`. A value is:
//   scalar            equals (exact after trimming spaces; for a multi-valued element, any one value)
//   [a, b, ...]       any-of: equals one of them
//   {equals: x}       explicit equals          {any_of: [a, b]}   explicit any-of
//   {regex: "^CT"}    ECMAScript regex, must match the whole value (or any one value)
//   {range: [lo, hi]} numeric, inclusive; either bound may be null  ({min: lo, max: hi} is the same)
//   {exists: true}    present and non-empty   {absent: true} (or {exists: false}) missing or empty
//   {not: <value>}    negation of any of the above
// A top-level key `any` holds a list of rules of which one must match (OR).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace YAML {
class Node;
}

namespace aihub::config {

// What a rule is evaluated against.
class TagSource {
 public:
  virtual ~TagSource() = default;
  // Value of a DICOM tag (group << 16 | element) as DICOM text, nullopt when absent.
  virtual std::optional<std::string> Tag(uint32_t tag) const = 0;
  virtual std::string CallingAe() const { return ""; }
  virtual std::string Hl7Location() const { return ""; }
};

class Matcher;  // one compiled condition

class Rule {
 public:
  Rule();
  ~Rule();
  Rule(Rule&&) noexcept;
  Rule& operator=(Rule&&) noexcept;

  // Compiles a rule from a YAML mapping. `where` prefixes errors ("site.yaml"); errors carry line:column.
  static StatusOr<Rule> FromYaml(const YAML::Node& node, const std::string& where);
  // Parses YAML text first (e.g. a plugin descriptor's default_rules_yaml).
  static StatusOr<Rule> FromYamlText(const std::string& text, const std::string& where);

  bool Matches(const TagSource& source) const;
  bool empty() const;   // an empty rule matches everything

 private:
  std::vector<std::unique_ptr<Matcher>> all_;
};

// Resolves a DICOM keyword ("Modality") or "(0008,0060)" / "0008,0060" to a tag number.
StatusOr<uint32_t> ResolveTag(const std::string& name);

}  // namespace aihub::config
