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
// Several operators in one mapping must all hold ({regex: "^CT", not: CTX}). An unknown key, operator or
// DICOM keyword, a wrong type, an invalid regex or a range with lo > hi is an error at load.
// Values are compared after trimming spaces (and NUL padding); a multi-valued element ("ORIGINAL\\PRIMARY")
// matches when the whole value or any one of its backslash-separated values matches. A range matches a value
// (or one of its values) that reads as a decimal number; other values never match a range. An empty value
// counts as absent. Regexes are compiled once at load; values over 4096 characters never match a regex
// (std::regex recurses per character).
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

class Matcher;       // one compiled condition
class RuleCompiler;  // builds rules from YAML (rules.cpp)

// A compiled rule. Immutable once built, so copies share their matchers and may be used from any thread.
class Rule {
 public:
  Rule();
  ~Rule();
  Rule(const Rule&);
  Rule& operator=(const Rule&);
  Rule(Rule&&) noexcept;
  Rule& operator=(Rule&&) noexcept;

  // Compiles a rule from a YAML mapping. `where` prefixes errors ("site.yaml"); errors carry line:column.
  static StatusOr<Rule> FromYaml(const YAML::Node& node, const std::string& where);
  // Parses YAML text first (e.g. a plugin descriptor's default_rules_yaml).
  static StatusOr<Rule> FromYamlText(const std::string& text, const std::string& where);

  bool Matches(const TagSource& source) const;
  bool empty() const;   // an empty rule matches everything

 private:
  friend class RuleCompiler;
  std::vector<std::shared_ptr<const Matcher>> all_;  // all must match
};

// Resolves a DICOM keyword ("Modality") or "(0008,0060)" / "0008,0060" to a tag number (group << 16 |
// element), using DCMTK's data dictionary. Errors: INVALID_ARGUMENT "unknown DICOM keyword 'X'" / "invalid
// tag 'X'"; FAILED_PRECONDITION when the dictionary is not loaded. Private dictionary keywords are refused
// (their element numbers depend on the private creator): use the tag.
StatusOr<uint32_t> ResolveTag(const std::string& name);
// The inverse: the dictionary keyword of a public tag ("Modality"), else "(gggg,eeee)" in upper-case hex.
std::string TagName(uint32_t tag);

}  // namespace aihub::config
