#include "config/rules.h"

#include <cctype>
#include <cstdio>
#include <regex>
#include <string_view>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcdicent.h>
#include <yaml-cpp/yaml.h>

#include "config/yaml_util.h"

namespace aihub::config {

using internal::Describe;
using internal::ErrorAt;
using internal::MapEntry;
using internal::MapReader;
using internal::Trim;

namespace {

constexpr size_t kMaxRegexInput = 4096;  // std::regex recurses per character; longer values never match
constexpr int kMaxDepth = 32;            // nesting of not/any; deeper is surely a mistake

// A field value split for comparison: the trimmed whole value, plus each trimmed value when multi-valued.
std::vector<std::string_view> Candidates(std::string_view raw) {
  std::vector<std::string_view> out;
  std::string_view whole = Trim(raw);
  out.push_back(whole);
  if (whole.find('\\') == std::string_view::npos) return out;
  size_t start = 0;
  while (true) {
    size_t end = whole.find('\\', start);
    out.push_back(Trim(whole.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start)));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

bool PresentNonEmpty(const std::optional<std::string>& value) {
  if (!value) return false;
  for (std::string_view v : Candidates(*value)) {
    if (!v.empty()) return true;
  }
  return false;
}

// A test on one field's value (nullopt = absent).
class ValueTest {
 public:
  virtual ~ValueTest() = default;
  virtual bool Test(const std::optional<std::string>& value) const = 0;
};
using ValueTestPtr = std::unique_ptr<const ValueTest>;

class EqualsTest : public ValueTest {
 public:
  explicit EqualsTest(std::vector<std::string> targets) : targets_(std::move(targets)) {}
  bool Test(const std::optional<std::string>& value) const override {
    if (!value) return false;
    for (std::string_view c : Candidates(*value)) {
      for (const std::string& t : targets_) {
        if (c == t) return true;
      }
    }
    return false;
  }

 private:
  std::vector<std::string> targets_;
};

class RegexTest : public ValueTest {
 public:
  explicit RegexTest(std::regex re) : re_(std::move(re)) {}
  bool Test(const std::optional<std::string>& value) const override {
    if (!value || value->size() > kMaxRegexInput) return false;
    try {
      for (std::string_view c : Candidates(*value)) {
        if (std::regex_match(c.begin(), c.end(), re_)) return true;
      }
    } catch (const std::regex_error&) {
      // error_complexity / error_stack on a pathological value: treat as no match rather than fail the study.
    }
    return false;
  }

 private:
  std::regex re_;
};

class RangeTest : public ValueTest {
 public:
  RangeTest(std::optional<double> lo, std::optional<double> hi) : lo_(lo), hi_(hi) {}
  bool Test(const std::optional<std::string>& value) const override {
    if (!value) return false;
    for (std::string_view c : Candidates(*value)) {
      std::optional<double> v = internal::ParseDecimal(c);
      if (!v) continue;
      if ((!lo_ || *v >= *lo_) && (!hi_ || *v <= *hi_)) return true;
    }
    return false;
  }

 private:
  std::optional<double> lo_, hi_;
};

class ExistsTest : public ValueTest {
 public:
  explicit ExistsTest(bool want) : want_(want) {}
  bool Test(const std::optional<std::string>& value) const override { return PresentNonEmpty(value) == want_; }

 private:
  bool want_;
};

class NotTest : public ValueTest {
 public:
  explicit NotTest(ValueTestPtr inner) : inner_(std::move(inner)) {}
  bool Test(const std::optional<std::string>& value) const override { return !inner_->Test(value); }

 private:
  ValueTestPtr inner_;
};

class AllTest : public ValueTest {
 public:
  explicit AllTest(std::vector<ValueTestPtr> all) : all_(std::move(all)) {}
  bool Test(const std::optional<std::string>& value) const override {
    for (const auto& t : all_) {
      if (!t->Test(value)) return false;
    }
    return true;
  }

 private:
  std::vector<ValueTestPtr> all_;
};

enum class FieldKind { kTag, kCallingAe, kHl7Location };

bool IsHex(std::string_view s) {
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

class Matcher {
 public:
  virtual ~Matcher() = default;
  virtual bool Matches(const TagSource& source) const = 0;
};

namespace {

class FieldMatcher : public Matcher {
 public:
  FieldMatcher(FieldKind kind, uint32_t tag, ValueTestPtr test) : kind_(kind), tag_(tag), test_(std::move(test)) {}
  bool Matches(const TagSource& source) const override {
    std::optional<std::string> value;
    switch (kind_) {
      case FieldKind::kTag: value = source.Tag(tag_); break;
      case FieldKind::kCallingAe: value = source.CallingAe(); break;
      case FieldKind::kHl7Location: value = source.Hl7Location(); break;
    }
    return test_->Test(value);
  }

 private:
  FieldKind kind_;
  uint32_t tag_;
  ValueTestPtr test_;
};

class AnyMatcher : public Matcher {
 public:
  explicit AnyMatcher(std::vector<Rule> rules) : rules_(std::move(rules)) {}
  bool Matches(const TagSource& source) const override {
    for (const Rule& r : rules_) {
      if (r.Matches(source)) return true;
    }
    return false;
  }

 private:
  std::vector<Rule> rules_;
};

}  // namespace

// Compiles YAML into matchers; every error names `where` and the node's line:column.
class RuleCompiler {
 public:
  explicit RuleCompiler(std::string where) : where_(std::move(where)) {}

  StatusOr<Rule> CompileRule(const YAML::Node& node, int depth) {
    if (depth > kMaxDepth) return ErrorAt(where_, node, "rule nested too deeply");
    if (!node.IsMap()) return ErrorAt(where_, node, "expected a rule (a mapping of keys to values), got " + Describe(node));
    StatusOr<MapReader> map = MapReader::Read(node, where_, "rule", nullptr);
    if (!map.ok()) return map.status();
    Rule rule;
    for (const MapEntry& e : map->entries()) {
      if (e.key == "any") {
        StatusOr<std::shared_ptr<const Matcher>> any = CompileAny(e, depth);
        if (!any.ok()) return any.status();
        rule.all_.push_back(std::move(*any));
        continue;
      }
      FieldKind kind = FieldKind::kTag;
      uint32_t tag = 0;
      if (e.key == "calling_ae") {
        kind = FieldKind::kCallingAe;
      } else if (e.key == "hl7_location") {
        kind = FieldKind::kHl7Location;
      } else {
        StatusOr<uint32_t> resolved = ResolveTag(e.key);
        if (!resolved.ok()) {
          std::string message = resolved.status().message();
          if (resolved.status().code() == AIHUB_INVALID_ARGUMENT) {
            message += " (keys are DICOM keywords such as Modality, tags as (gggg,eeee), calling_ae, hl7_location or any)";
          }
          return Status(resolved.status().code(), ErrorAt(where_, e.key_node, message).message());
        }
        tag = *resolved;
      }
      StatusOr<ValueTestPtr> test = CompileValue(e.value, e.key, depth + 1);
      if (!test.ok()) return test.status();
      rule.all_.push_back(std::make_shared<FieldMatcher>(kind, tag, std::move(*test)));
    }
    return rule;
  }

 private:
  StatusOr<std::shared_ptr<const Matcher>> CompileAny(const MapEntry& e, int depth) {
    if (!e.value.IsSequence() || e.value.size() == 0) {
      return ErrorAt(where_, e.value, "'any' expects a non-empty list of rules, got " + Describe(e.value));
    }
    std::vector<Rule> rules;
    for (const YAML::Node& item : e.value) {
      StatusOr<Rule> r = CompileRule(item, depth + 1);
      if (!r.ok()) return r.status();
      rules.push_back(std::move(*r));
    }
    return std::shared_ptr<const Matcher>(std::make_shared<AnyMatcher>(std::move(rules)));
  }

  StatusOr<std::string> ScalarText(const YAML::Node& node, const std::string& what) {
    if (!node.IsScalar()) return ErrorAt(where_, node, what + " expects a string, got " + Describe(node));
    return std::string(Trim(node.Scalar()));
  }

  StatusOr<std::vector<std::string>> StringList(const YAML::Node& node, const std::string& what) {
    if (!node.IsSequence()) return ErrorAt(where_, node, what + " expected a list of strings, got " + Describe(node));
    if (node.size() == 0) return ErrorAt(where_, node, what + " expects a non-empty list of strings");
    std::vector<std::string> out;
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) {
        return ErrorAt(where_, item, what + " expected a list of strings, got " + Describe(item) + " in the list");
      }
      out.emplace_back(Trim(item.Scalar()));
    }
    return out;
  }

  StatusOr<std::optional<double>> Bound(const YAML::Node& node, const std::string& what) {
    if (node.IsNull()) return std::optional<double>();
    if (node.IsScalar()) {
      if (std::optional<double> v = internal::ParseDecimal(Trim(node.Scalar()))) return std::optional<double>(v);
    }
    return ErrorAt(where_, node, what + " expects a number or null, got " + Describe(node));
  }

  StatusOr<bool> Bool(const YAML::Node& node, const std::string& what) {
    if (node.IsScalar()) {
      if (std::optional<bool> b = internal::ParseBool(node.Scalar())) return *b;
    }
    return ErrorAt(where_, node, what + " expects true or false, got " + Describe(node));
  }

  StatusOr<ValueTestPtr> CompileValue(const YAML::Node& node, const std::string& key, int depth) {
    if (depth > kMaxDepth) return ErrorAt(where_, node, "rule nested too deeply");
    const std::string what = "'" + key + "'";
    if (node.IsNull()) {
      return ErrorAt(where_, node,
                     "missing value for " + what +
                         " (expected a string, a list of strings or an operator mapping such as {regex: ...})");
    }
    if (node.IsScalar()) return ValueTestPtr(std::make_unique<EqualsTest>(std::vector<std::string>{std::string(Trim(node.Scalar()))}));
    if (node.IsSequence()) {
      StatusOr<std::vector<std::string>> list = StringList(node, what);
      if (!list.ok()) return list.status();
      return ValueTestPtr(std::make_unique<EqualsTest>(std::move(*list)));
    }
    static const std::vector<std::string> kOperators = {"equals", "any_of", "regex", "range", "min",
                                                        "max",    "exists", "absent", "not"};
    StatusOr<MapReader> map = MapReader::Read(node, where_, "the operators of " + what, &kOperators);
    if (!map.ok()) return map.status();
    if (map->entries().empty()) {
      return ErrorAt(where_, node, "empty operator mapping for " + what + " (operators: " + internal::Join(kOperators, ", ") + ")");
    }
    std::vector<ValueTestPtr> tests;
    const MapEntry* range = map->Find("range");
    const MapEntry* min = map->Find("min");
    const MapEntry* max = map->Find("max");
    if (range && (min || max)) {
      return ErrorAt(where_, (min ? min : max)->key_node, "use either range or min/max for " + what + ", not both");
    }
    for (const MapEntry& e : map->entries()) {
      const std::string op = what + " " + e.key;
      if (e.key == "equals") {
        StatusOr<std::string> s = ScalarText(e.value, op);
        if (!s.ok()) return s.status();
        tests.push_back(std::make_unique<EqualsTest>(std::vector<std::string>{std::move(*s)}));
      } else if (e.key == "any_of") {
        StatusOr<std::vector<std::string>> list = StringList(e.value, op);
        if (!list.ok()) return list.status();
        tests.push_back(std::make_unique<EqualsTest>(std::move(*list)));
      } else if (e.key == "regex") {
        if (!e.value.IsScalar()) return ErrorAt(where_, e.value, op + " expects a string, got " + Describe(e.value));
        try {
          tests.push_back(std::make_unique<RegexTest>(std::regex(e.value.Scalar(), std::regex::ECMAScript)));
        } catch (const std::regex_error& err) {
          return ErrorAt(where_, e.value, "invalid regex '" + e.value.Scalar() + "' for " + what + ": " + err.what());
        }
      } else if (e.key == "range") {
        if (!e.value.IsSequence() || e.value.size() != 2) {
          return ErrorAt(where_, e.value, op + " expects a list [lo, hi] (null for an open bound), got " + Describe(e.value));
        }
        StatusOr<std::optional<double>> lo = Bound(e.value[0], op);
        if (!lo.ok()) return lo.status();
        StatusOr<std::optional<double>> hi = Bound(e.value[1], op);
        if (!hi.ok()) return hi.status();
        if (*lo && *hi && **lo > **hi) {
          return ErrorAt(where_, e.value, op + " is empty: lo " + e.value[0].Scalar() + " > hi " + e.value[1].Scalar());
        }
        tests.push_back(std::make_unique<RangeTest>(*lo, *hi));
      } else if (e.key == "min" || e.key == "max") {
        if (e.key == "max" && min) continue;  // handled together with min
        StatusOr<std::optional<double>> lo = min ? Bound(min->value, what + " min") : std::optional<double>();
        if (!lo.ok()) return lo.status();
        StatusOr<std::optional<double>> hi = max ? Bound(max->value, what + " max") : std::optional<double>();
        if (!hi.ok()) return hi.status();
        if (*lo && *hi && **lo > **hi) {
          return ErrorAt(where_, min->key_node,
                         what + " range is empty: min " + min->value.Scalar() + " > max " + max->value.Scalar());
        }
        tests.push_back(std::make_unique<RangeTest>(*lo, *hi));
      } else if (e.key == "exists" || e.key == "absent") {
        StatusOr<bool> b = Bool(e.value, op);
        if (!b.ok()) return b.status();
        tests.push_back(std::make_unique<ExistsTest>(e.key == "exists" ? *b : !*b));
      } else if (e.key == "not") {
        StatusOr<ValueTestPtr> inner = CompileValue(e.value, key, depth + 1);
        if (!inner.ok()) return inner.status();
        tests.push_back(std::make_unique<NotTest>(std::move(*inner)));
      }
    }
    if (tests.size() == 1) return std::move(tests[0]);
    return ValueTestPtr(std::make_unique<AllTest>(std::move(tests)));
  }

  std::string where_;
};

Rule::Rule() = default;
Rule::~Rule() = default;
Rule::Rule(const Rule&) = default;
Rule& Rule::operator=(const Rule&) = default;
Rule::Rule(Rule&&) noexcept = default;
Rule& Rule::operator=(Rule&&) noexcept = default;

StatusOr<Rule> Rule::FromYaml(const YAML::Node& node, const std::string& where) {
  try {
    return RuleCompiler(where).CompileRule(node, 0);
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws on some malformed inputs we did not foresee; report, never crash.
    return ErrorAt(where, e.mark, e.msg);
  }
}

StatusOr<Rule> Rule::FromYamlText(const std::string& text, const std::string& where) {
  YAML::Node node;
  Status parsed = internal::ParseYaml(text, where, &node);
  if (!parsed.ok()) return parsed;
  if (node.IsNull()) return Rule();  // an empty text: no conditions, matches everything
  return FromYaml(node, where);
}

bool Rule::Matches(const TagSource& source) const {
  for (const auto& m : all_) {
    if (!m->Matches(source)) return false;
  }
  return true;
}

bool Rule::empty() const { return all_.empty(); }

StatusOr<uint32_t> ResolveTag(const std::string& name_in) {
  std::string_view name = Trim(name_in);
  if (name.empty()) return InvalidArgument("empty DICOM keyword");
  if (name.front() == '(' || name.find(',') != std::string_view::npos) {
    std::string_view t = name;
    if (t.front() == '(') {
      if (t.back() != ')') return InvalidArgument("invalid tag '" + name_in + "' (expected (gggg,eeee) in hex)");
      t = t.substr(1, t.size() - 2);
    }
    if (t.size() != 9 || t[4] != ',' || !IsHex(t.substr(0, 4)) || !IsHex(t.substr(5, 4))) {
      return InvalidArgument("invalid tag '" + name_in + "' (expected (gggg,eeee) in hex)");
    }
    const uint32_t group = static_cast<uint32_t>(std::stoul(std::string(t.substr(0, 4)), nullptr, 16));
    const uint32_t element = static_cast<uint32_t>(std::stoul(std::string(t.substr(5, 4)), nullptr, 16));
    return (group << 16) | element;
  }
  if (!dcmDataDict.isDictionaryLoaded()) {
    return FailedPrecondition("the DICOM data dictionary is not loaded, so keyword '" + name_in +
                              "' cannot be resolved (check DCMDICTPATH, or use the tag as (gggg,eeee))");
  }
  const std::string key(name);
  bool found = false;
  bool is_private = false;
  uint32_t tag = 0;
  const DcmDataDictionary& dict = dcmDataDict.rdlock();
  if (const DcmDictEntry* entry = dict.findEntry(key.c_str())) {
    found = true;
    is_private = entry->getPrivateCreator() != nullptr;
    tag = (static_cast<uint32_t>(entry->getGroup()) << 16) | entry->getElement();
  }
  dcmDataDict.rdunlock();
  if (!found) return InvalidArgument("unknown DICOM keyword '" + name_in + "'");
  if (is_private) {
    return InvalidArgument("DICOM keyword '" + name_in + "' names a private tag; use its tag as (gggg,eeee)");
  }
  return tag;
}

std::string TagName(uint32_t tag) {
  const DcmTagKey key(static_cast<Uint16>(tag >> 16), static_cast<Uint16>(tag & 0xffff));
  std::string name;
  if (dcmDataDict.isDictionaryLoaded()) {
    const DcmDataDictionary& dict = dcmDataDict.rdlock();
    const DcmDictEntry* entry = dict.findEntry(key, nullptr);
    if (entry != nullptr && entry->getTagName() != nullptr) name = entry->getTagName();
    dcmDataDict.rdunlock();
  }
  if (!name.empty()) return name;
  char text[16];
  std::snprintf(text, sizeof text, "(%04X,%04X)", tag >> 16, tag & 0xffff);
  return text;
}

}  // namespace aihub::config
