// The built ki67.so and its model deployed in a plugin folder and run by the real host (registry, job runner) on
// phantom whole-slide files scanned from disk, as aihubd runs it: routing by the default rules, tiles decoded by
// the host's read_frame, the hot-spot window on the slide's total pixel matrix (VOLUME in the SR), and the defects
// refused with the reason.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "compose/sr_encoder.h"
#include "dicom/study.h"
#include "phantom/wsi_ki67.h"
#include "reference/support/reference_host.h"

TEST_CASE("ki67 through the host: a phantom slide's Ki-67 index, hot spot and counts, and its hot-spot region") {
  aihub::testing::ReferenceHost host("ki67", {"ki67.pt", "ki67.so"});
  REQUIRE(host.registry->Get("ki67") != nullptr);
  aihub::phantom::WsiKi67Options o;
  o.seed = 90010;
  o.size = 2048;
  o.index_percent = 25;
  bool rle = false, jpeg = false;
  SUBCASE("uncompressed") {}
  SUBCASE("RLE Lossless, read through the host's fragment index") { rle = true; }
  SUBCASE("JPEG Baseline YBR_FULL_422 (lossy), as scanners write") { jpeg = true; }
  o.rle = rle;
  o.jpeg = jpeg;
  const auto truth = aihub::phantom::WriteWsiKi67(o, host.root / "in");
  REQUIRE_MESSAGE(truth.ok(), truth.status().ToString());

  const auto out = host.RunStudy(host.root / "in" / truth->folder);
  REQUIRE_MESSAGE(out.status.ok(), out.status.ToString());
  REQUIRE(out.result.has_value());
  REQUIRE(out.result->findings.size() == 1);
  const auto& f = out.result->findings[0];
  CHECK(f.concept.value == "KI67-HIGH");
  REQUIRE(f.measurements.size() == 5);
  CHECK(f.measurements[0].unit_ucum == "%");
  CHECK(std::fabs(f.measurements[0].value - truth->global_index_percent) <= 3);
  CHECK(std::fabs(f.measurements[1].value - truth->hotspot.index_percent) <= 3);
  CHECK(f.measurements[2].unit_ucum == "{nuclei}");
  const double counted = f.measurements[2].value + f.measurements[3].value;
  CHECK(counted == doctest::Approx(truth->positive_nuclei + truth->negative_nuclei).epsilon(0.03));
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].graphic_type == aihub::GraphicType::kPolygon);
  CHECK(f.regions[0].sop_instance_uid == truth->sop_instance_uid);
  CHECK(f.regions[0].total_pixel_matrix);
  const float x0 = static_cast<float>(truth->hotspot_column), y0 = static_cast<float>(truth->hotspot_row);
  const float x1 = x0 + static_cast<float>(truth->hotspot_width), y1 = y0 + static_cast<float>(truth->hotspot_height);
  CHECK(f.regions[0].points == std::vector<float>{x0, y0, x1, y0, x1, y1, x0, y1});
  // The SR marks it on the slide as a whole: no frame number, Pixel Origin Interpretation VOLUME.
  const auto sr = aihub::compose::EncodeSr(*out.result);
  REQUIRE_MESSAGE(sr.ok(), sr.status().ToString());
  CHECK(sr->find("VOLUME") != std::string::npos);
  CHECK(sr->find("FRAME") == std::string::npos);
}

TEST_CASE("ki67 through the host: a slide with a missing tile or a bad tile geometry is not applicable, with the reason") {
  aihub::testing::ReferenceHost host("ki67", {"ki67.pt", "ki67.so"});
  aihub::phantom::WsiKi67Options o;
  o.seed = 90011;
  o.size = 1024;
  o.missing_tile = 3;
  const auto missing = aihub::phantom::WriteWsiKi67(o, host.root / "in-missing");
  REQUIRE(missing.ok());
  const auto a = host.RunStudy(host.root / "in-missing" / missing->folder);
  CHECK(a.status.code() == AIHUB_FAILED_PRECONDITION);
  CHECK_MESSAGE(a.status.message().find("missing tiles") != std::string::npos, a.status.message());
  CHECK(a.status.message().find("the image has 15") != std::string::npos);

  o.seed = 90012;
  o.missing_tile.reset();
  o.bad_tile_geometry = true;
  const auto bad = aihub::phantom::WriteWsiKi67(o, host.root / "in-bad");
  REQUIRE(bad.ok());
  const auto b = host.RunStudy(host.root / "in-bad" / bad->folder);
  CHECK(b.status.code() == AIHUB_FAILED_PRECONDITION);
  CHECK_MESSAGE(b.status.message().find("1152 x 1152 px total pixel matrix") != std::string::npos,
                b.status.message());
}

TEST_CASE("ki67 through the host: a slide in a transfer syntax the host cannot decode fails with the reason") {
  aihub::testing::ReferenceHost host("ki67", {"ki67.pt", "ki67.so"});
  aihub::phantom::WsiKi67Options o;
  o.seed = 90013;
  o.size = 1024;
  o.jpeg = true;
  const auto slide = aihub::phantom::WriteWsiKi67(o, host.root / "in");
  REQUIRE(slide.ok());
  // Relabel it JPEG 2000 (same UID length, so only the meta header's bytes change): no codec in this build.
  const std::filesystem::path file = host.root / "in" / slide->folder / slide->file;
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string jpeg_baseline = "1.2.840.10008.1.2.4.50", jpeg2000 = "1.2.840.10008.1.2.4.90";
  const size_t at = bytes.find(jpeg_baseline);
  REQUIRE(at != std::string::npos);
  REQUIRE(at < 1024);  // in the meta header
  bytes.replace(at, jpeg2000.size(), jpeg2000);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;

  const auto out = host.RunStudy(host.root / "in" / slide->folder);
  CHECK(out.status.code() == AIHUB_FAILED_PRECONDITION);
  CHECK_FALSE(out.result.has_value());
  CHECK_MESSAGE(out.status.message().find("unsupported transfer syntax: JPEG 2000") != std::string::npos,
                out.status.message());
  CHECK(out.status.message().find("(1.2.840.10008.1.2.4.90), no decoder available") != std::string::npos);
}

