#include "config/rules.h"

#include <map>

#include <doctest/doctest.h>

namespace aihub::config {
namespace {

constexpr uint32_t kImageType = 0x00080008;
constexpr uint32_t kModality = 0x00080060;
constexpr uint32_t kSeriesDescription = 0x0008103E;
constexpr uint32_t kInstitutionalDepartmentName = 0x00081040;
constexpr uint32_t kContrastBolusAgent = 0x00180010;
constexpr uint32_t kBodyPartExamined = 0x00180015;
constexpr uint32_t kSliceThickness = 0x00180050;

class FakeTags : public TagSource {
 public:
  FakeTags& Set(uint32_t tag, std::string value) {
    tags_[tag] = std::move(value);
    return *this;
  }
  FakeTags& Ae(std::string ae) {
    ae_ = std::move(ae);
    return *this;
  }
  FakeTags& Location(std::string loc) {
    loc_ = std::move(loc);
    return *this;
  }
  std::optional<std::string> Tag(uint32_t tag) const override {
    auto it = tags_.find(tag);
    if (it == tags_.end()) return std::nullopt;
    return it->second;
  }
  std::string CallingAe() const override { return ae_; }
  std::string Hl7Location() const override { return loc_; }

 private:
  std::map<uint32_t, std::string> tags_;
  std::string ae_, loc_;
};

Rule Compile(const std::string& yaml) {
  StatusOr<Rule> rule = Rule::FromYamlText(yaml, "t.yaml");
  INFO(yaml);
  if (!rule.ok()) FAIL(rule.status().ToString());
  return std::move(rule).value();
}

std::string ErrorOf(const std::string& yaml) {
  StatusOr<Rule> rule = Rule::FromYamlText(yaml, "t.yaml");
  INFO(yaml);
  REQUIRE_FALSE(rule.ok());
  CHECK(rule.status().code() == AIHUB_INVALID_ARGUMENT);
  return rule.status().message();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE("ResolveTag takes keywords and (gggg,eeee) / gggg,eeee tags") {
  StatusOr<uint32_t> m = ResolveTag("Modality");
  REQUIRE(m.ok());
  CHECK(*m == kModality);
  CHECK(*ResolveTag("InstitutionalDepartmentName") == kInstitutionalDepartmentName);
  CHECK(*ResolveTag("(0008,0060)") == kModality);
  CHECK(*ResolveTag("0008,0060") == kModality);
  CHECK(*ResolveTag("(0008,103e)") == kSeriesDescription);
  CHECK(*ResolveTag("(7FE0,0010)") == 0x7FE00010u);
  StatusOr<uint32_t> typo = ResolveTag("Modalty");
  REQUIRE_FALSE(typo.ok());
  CHECK(typo.status().message() == "unknown DICOM keyword 'Modalty'");
  CHECK_FALSE(ResolveTag("(0008,006G)").ok());
  CHECK_FALSE(ResolveTag("(0008,0060").ok());
  CHECK_FALSE(ResolveTag("0008,60").ok());
  CHECK_FALSE(ResolveTag("").ok());
}

TEST_CASE("equals trims spaces and matches one value of a multi-valued element") {
  Rule r = Compile("Modality: CT");
  CHECK(r.Matches(FakeTags().Set(kModality, "CT")));
  CHECK(r.Matches(FakeTags().Set(kModality, "CT ")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kModality, "MR")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kModality, "CTX")));
  CHECK_FALSE(r.Matches(FakeTags()));  // absent

  Rule explicit_eq = Compile("Modality: {equals: CT}");
  CHECK(explicit_eq.Matches(FakeTags().Set(kModality, "CT")));
  CHECK_FALSE(explicit_eq.Matches(FakeTags().Set(kModality, "MR")));

  Rule image_type = Compile("ImageType: PRIMARY");
  CHECK(image_type.Matches(FakeTags().Set(kImageType, "ORIGINAL\\PRIMARY\\AXIAL")));
  CHECK(image_type.Matches(FakeTags().Set(kImageType, "ORIGINAL\\ PRIMARY \\AXIAL")));
  CHECK_FALSE(image_type.Matches(FakeTags().Set(kImageType, "DERIVED\\SECONDARY")));
  CHECK_FALSE(image_type.Matches(FakeTags().Set(kImageType, "ORIGINAL\\PRIMARYX")));
  // The whole multi-valued text also counts as one candidate.
  CHECK(Compile("ImageType: 'DERIVED\\SECONDARY'").Matches(FakeTags().Set(kImageType, "DERIVED\\SECONDARY")));
}

TEST_CASE("any-of list and explicit any_of") {
  for (const char* yaml : {"BodyPartExamined: [HEAD, BRAIN]", "BodyPartExamined: {any_of: [HEAD, BRAIN]}"}) {
    Rule r = Compile(yaml);
    CHECK(r.Matches(FakeTags().Set(kBodyPartExamined, "HEAD")));
    CHECK(r.Matches(FakeTags().Set(kBodyPartExamined, "BRAIN")));
    CHECK_FALSE(r.Matches(FakeTags().Set(kBodyPartExamined, "CHEST")));
    CHECK_FALSE(r.Matches(FakeTags()));
  }
  Rule multi = Compile("ImageType: [LOCALIZER, SCOUT]");
  CHECK(multi.Matches(FakeTags().Set(kImageType, "ORIGINAL\\PRIMARY\\LOCALIZER")));
  CHECK_FALSE(multi.Matches(FakeTags().Set(kImageType, "ORIGINAL\\PRIMARY\\AXIAL")));
}

TEST_CASE("regex is a full match on the whole value or any one value") {
  Rule r = Compile("SeriesDescription: {regex: 'AX.*'}");
  CHECK(r.Matches(FakeTags().Set(kSeriesDescription, "AX T1")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kSeriesDescription, "SAG AX")));  // search would match; full match not
  CHECK_FALSE(r.Matches(FakeTags()));
  Rule multi = Compile("ImageType: {regex: 'AX[A-Z]+'}");
  CHECK(multi.Matches(FakeTags().Set(kImageType, "ORIGINAL\\PRIMARY\\AXIAL")));
  CHECK_FALSE(multi.Matches(FakeTags().Set(kImageType, "ORIGINAL\\PRIMARY\\SAGITTAL")));
  // Too long for std::regex's recursion: never matches, never crashes.
  CHECK_FALSE(Compile("SeriesDescription: {regex: 'A*'}").Matches(FakeTags().Set(kSeriesDescription, std::string(100000, 'A'))));
}

TEST_CASE("numeric range is inclusive with open bounds") {
  Rule r = Compile("SliceThickness: {range: [0.5, 5]}");
  CHECK(r.Matches(FakeTags().Set(kSliceThickness, "0.5")));
  CHECK(r.Matches(FakeTags().Set(kSliceThickness, "5")));
  CHECK(r.Matches(FakeTags().Set(kSliceThickness, " 2.50 ")));
  CHECK(r.Matches(FakeTags().Set(kSliceThickness, "+1e0")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kSliceThickness, "5.01")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kSliceThickness, "0.4")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kSliceThickness, "thin")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kSliceThickness, "inf")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kSliceThickness, "")));
  CHECK_FALSE(r.Matches(FakeTags()));

  Rule open_hi = Compile("SliceThickness: {range: [2, null]}");
  CHECK(open_hi.Matches(FakeTags().Set(kSliceThickness, "1000")));
  CHECK_FALSE(open_hi.Matches(FakeTags().Set(kSliceThickness, "1.9")));
  Rule open_lo = Compile("SliceThickness: {range: [~, 2]}");
  CHECK(open_lo.Matches(FakeTags().Set(kSliceThickness, "-7")));
  CHECK_FALSE(open_lo.Matches(FakeTags().Set(kSliceThickness, "2.1")));

  Rule minmax = Compile("SliceThickness: {min: 1, max: 3}");
  CHECK(minmax.Matches(FakeTags().Set(kSliceThickness, "3")));
  CHECK_FALSE(minmax.Matches(FakeTags().Set(kSliceThickness, "3.5")));
  Rule only_max = Compile("SliceThickness: {max: 3}");
  CHECK(only_max.Matches(FakeTags().Set(kSliceThickness, "-3")));
  CHECK_FALSE(only_max.Matches(FakeTags().Set(kSliceThickness, "4")));
  // Any one value of a multi-valued number.
  CHECK(Compile("(0028,0030): {range: [0.9, 1.1]}").Matches(FakeTags().Set(0x00280030, "0.5\\1.0")));
}

TEST_CASE("exists and absent treat an empty value as absent") {
  Rule exists = Compile("ContrastBolusAgent: {exists: true}");
  CHECK(exists.Matches(FakeTags().Set(kContrastBolusAgent, "IODINE")));
  CHECK_FALSE(exists.Matches(FakeTags().Set(kContrastBolusAgent, "  ")));
  CHECK_FALSE(exists.Matches(FakeTags()));
  for (const char* yaml : {"ContrastBolusAgent: {absent: true}", "ContrastBolusAgent: {exists: false}"}) {
    Rule absent = Compile(yaml);
    CHECK(absent.Matches(FakeTags()));
    CHECK(absent.Matches(FakeTags().Set(kContrastBolusAgent, "")));
    CHECK_FALSE(absent.Matches(FakeTags().Set(kContrastBolusAgent, "IODINE")));
  }
  CHECK(Compile("ContrastBolusAgent: {absent: false}").Matches(FakeTags().Set(kContrastBolusAgent, "X")));
}

TEST_CASE("not negates any operator, nested") {
  Rule not_equals = Compile("Modality: {not: CT}");
  CHECK(not_equals.Matches(FakeTags().Set(kModality, "MR")));
  CHECK(not_equals.Matches(FakeTags()));
  CHECK_FALSE(not_equals.Matches(FakeTags().Set(kModality, "CT")));

  Rule not_list = Compile("ImageType: {not: [LOCALIZER, SCOUT]}");
  CHECK(not_list.Matches(FakeTags().Set(kImageType, "ORIGINAL\\PRIMARY\\AXIAL")));
  CHECK_FALSE(not_list.Matches(FakeTags().Set(kImageType, "ORIGINAL\\PRIMARY\\LOCALIZER")));

  Rule not_regex = Compile("SeriesDescription: {not: {regex: '.*MIP.*'}}");
  CHECK(not_regex.Matches(FakeTags().Set(kSeriesDescription, "AX T1")));
  CHECK_FALSE(not_regex.Matches(FakeTags().Set(kSeriesDescription, "AX MIP")));

  Rule not_range = Compile("SliceThickness: {not: {range: [1, 2]}}");
  CHECK(not_range.Matches(FakeTags().Set(kSliceThickness, "3")));
  CHECK_FALSE(not_range.Matches(FakeTags().Set(kSliceThickness, "1.5")));

  Rule not_exists = Compile("ContrastBolusAgent: {not: {exists: true}}");
  CHECK(not_exists.Matches(FakeTags()));
  CHECK_FALSE(not_exists.Matches(FakeTags().Set(kContrastBolusAgent, "X")));

  Rule double_not = Compile("Modality: {not: {not: CT}}");
  CHECK(double_not.Matches(FakeTags().Set(kModality, "CT")));
  CHECK_FALSE(double_not.Matches(FakeTags().Set(kModality, "MR")));

  Rule combined = Compile("Modality: {regex: 'C.*', not: CR}");  // several operators: all must hold
  CHECK(combined.Matches(FakeTags().Set(kModality, "CT")));
  CHECK_FALSE(combined.Matches(FakeTags().Set(kModality, "CR")));
  CHECK_FALSE(combined.Matches(FakeTags().Set(kModality, "MR")));
}

TEST_CASE("keys AND together, any ORs rules, context keys, tags by number") {
  Rule r = Compile("Modality: CT\nBodyPartExamined: HEAD\n");
  CHECK(r.Matches(FakeTags().Set(kModality, "CT").Set(kBodyPartExamined, "HEAD")));
  CHECK_FALSE(r.Matches(FakeTags().Set(kModality, "CT").Set(kBodyPartExamined, "CHEST")));

  Rule any = Compile("any:\n  - {Modality: CT}\n  - {Modality: MR, BodyPartExamined: HEAD}\n");
  CHECK(any.Matches(FakeTags().Set(kModality, "CT")));
  CHECK(any.Matches(FakeTags().Set(kModality, "MR").Set(kBodyPartExamined, "HEAD")));
  CHECK_FALSE(any.Matches(FakeTags().Set(kModality, "MR").Set(kBodyPartExamined, "KNEE")));
  CHECK_FALSE(any.Matches(FakeTags()));

  Rule ae = Compile("calling_ae: [CT_ER1, CT_ER2]");
  CHECK(ae.Matches(FakeTags().Ae("CT_ER2")));
  CHECK_FALSE(ae.Matches(FakeTags().Ae("CT_MAIN")));
  CHECK_FALSE(ae.Matches(FakeTags()));
  Rule loc = Compile("hl7_location: {regex: 'ER.*'}");
  CHECK(loc.Matches(FakeTags().Location("ER^BED3")));
  CHECK_FALSE(loc.Matches(FakeTags().Location("ICU")));
  CHECK(Compile("hl7_location: {absent: true}").Matches(FakeTags()));

  for (const char* yaml : {"(0008,0060): CT", "0008,0060: CT", "'(0008,0060)': CT"}) {
    Rule tag = Compile(yaml);
    CHECK(tag.Matches(FakeTags().Set(kModality, "CT")));
    CHECK_FALSE(tag.Matches(FakeTags().Set(kModality, "MR")));
  }
}

TEST_CASE("empty rules match everything, rules copy") {
  Rule empty = Compile("");
  CHECK(empty.empty());
  CHECK(empty.Matches(FakeTags()));
  Rule braces = Compile("{}");
  CHECK(braces.empty());
  Rule r = Compile("Modality: CT");
  CHECK_FALSE(r.empty());
  Rule copy = r;
  CHECK(copy.Matches(FakeTags().Set(kModality, "CT")));
  CHECK_FALSE(copy.Matches(FakeTags().Set(kModality, "MR")));
}

TEST_CASE("errors carry name:line:column and say what is wrong") {
  std::string e = ErrorOf("Modality: CT\nModalty: MR\n");
  CHECK(e.rfind("t.yaml:2:1: unknown DICOM keyword 'Modalty'", 0) == 0);

  e = ErrorOf("Modality: {regex: '[CT'}");
  CHECK(e.rfind("t.yaml:1:19: invalid regex '[CT'", 0) == 0);

  e = ErrorOf("SliceThickness:\n  range: [5, 1]\n");
  CHECK(e.rfind("t.yaml:2:10: ", 0) == 0);
  CHECK(Contains(e, "lo 5 > hi 1"));

  e = ErrorOf("SliceThickness: {min: 3, max: 1}");
  CHECK(e.rfind("t.yaml:1:18: ", 0) == 0);
  CHECK(Contains(e, "min 3 > max 1"));

  e = ErrorOf("SliceThickness: {range: [a, 1]}");
  CHECK(e.rfind("t.yaml:1:26: ", 0) == 0);
  CHECK(Contains(e, "expects a number or null"));

  e = ErrorOf("SliceThickness: {range: [1]}");
  CHECK(e.rfind("t.yaml:1:25: ", 0) == 0);

  e = ErrorOf("Modality: {equal: CT}");
  CHECK(e.rfind("t.yaml:1:12: unknown key 'equal'", 0) == 0);
  CHECK(Contains(e, "equals, any_of, regex, range, min, max, exists, absent, not"));

  e = ErrorOf("Modality: [CT, {x: 1}]");
  CHECK(e.rfind("t.yaml:1:16: ", 0) == 0);
  CHECK(Contains(e, "expected a list of strings"));

  e = ErrorOf("Modality: {any_of: CT}");
  CHECK(e.rfind("t.yaml:1:20: ", 0) == 0);
  CHECK(Contains(e, "expected a list of strings"));

  e = ErrorOf("Modality:\n");
  CHECK(e.rfind("t.yaml:", 0) == 0);
  CHECK(Contains(e, "missing value for 'Modality'"));

  e = ErrorOf("Modality: {exists: maybe}");
  CHECK(e.rfind("t.yaml:1:20: ", 0) == 0);
  CHECK(Contains(e, "true or false"));

  e = ErrorOf("Modality: CT\nModality: MR\n");
  CHECK(e.rfind("t.yaml:2:1: duplicate key 'Modality'", 0) == 0);

  e = ErrorOf("any: {Modality: CT}");
  CHECK(e.rfind("t.yaml:1:6: ", 0) == 0);
  CHECK(Contains(e, "non-empty list of rules"));

  e = ErrorOf("any:\n  - {Modality: CT}\n  - {Modalty: MR}\n");
  CHECK(e.rfind("t.yaml:3:6: unknown DICOM keyword 'Modalty'", 0) == 0);

  e = ErrorOf("Modality: {not: {regex: '('}}");
  CHECK(e.rfind("t.yaml:1:25: invalid regex", 0) == 0);

  e = ErrorOf("(0008,00ZZ): CT");
  CHECK(e.rfind("t.yaml:1:1: invalid tag '(0008,00ZZ)'", 0) == 0);

  e = ErrorOf("- Modality: CT");
  CHECK(e.rfind("t.yaml:1:1: expected a rule", 0) == 0);
}

TEST_CASE("YAML syntax errors report line and column") {
  std::string e = ErrorOf("Modality: CT\nBodyPartExamined: [HEAD, BRAIN\n");
  CHECK(e.rfind("t.yaml:", 0) == 0);
  CHECK(Contains(e, "YAML syntax error"));
  // The position is 1-based and points into the document, not 0:0.
  CHECK_FALSE(e.rfind("t.yaml:0:", 0) == 0);
  std::string tab = ErrorOf("Modality: CT\n  bad: : [\n");
  CHECK(tab.rfind("t.yaml:2:", 0) == 0);
}

}  // namespace
}  // namespace aihub::config

namespace aihub::config {
TEST_CASE("TagName is the inverse of ResolveTag for public tags, other tags print as (gggg,eeee)") {
  CHECK(TagName(0x00080060) == "Modality");
  CHECK(TagName(0x00081040) == "InstitutionalDepartmentName");
  CHECK(ResolveTag(TagName(0x0020000D)).value() == 0x0020000Du);
  CHECK(TagName(0x00091010) == "(0009,1010)");
  CHECK(ResolveTag(TagName(0x00091010)).value() == 0x00091010u);
}
}  // namespace aihub::config
