// Runs in its own process: DCMTK loads its data dictionary once, on first use, from DCMDICTPATH.
#include <cstdlib>

#include <doctest/doctest.h>

#include "config/rules.h"
#include "config/site_config.h"

namespace aihub::config {
namespace {

TEST_CASE("without a DICOM dictionary keywords fail clearly and numeric tags still work") {
  // Must happen before anything touches dcmDataDict in this process.
  REQUIRE(::setenv("DCMDICTPATH", "/nonexistent/aihub-no-dictionary.dic", 1) == 0);
  StatusOr<uint32_t> keyword = ResolveTag("Modality");
  REQUIRE_FALSE(keyword.ok());
  CHECK(keyword.status().code() == AIHUB_FAILED_PRECONDITION);
  CHECK(keyword.status().message().find("dictionary is not loaded") != std::string::npos);
  CHECK(keyword.status().message().find("DCMDICTPATH") != std::string::npos);

  StatusOr<uint32_t> tag = ResolveTag("(0008,0060)");
  REQUIRE(tag.ok());
  CHECK(*tag == 0x00080060u);

  StatusOr<SiteConfig> config =
      ParseSiteConfig("departments:\n  - id: er\n    match: {Modality: CT}\n", "/srv", "site.yaml");
  REQUIRE_FALSE(config.ok());
  CHECK(config.status().message().rfind("site.yaml:3:13: the DICOM data dictionary is not loaded", 0) == 0);
}

}  // namespace
}  // namespace aihub::config
