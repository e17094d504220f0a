// The host table across ABI minor versions: a 1.1 caller of frame_geometry gets the cine phase and whole-slide
// tile fields, a 1.0 caller (smaller struct_size) gets exactly the 1.0 bytes and nothing past them; a 1.2 plugin's
// region may lie on a whole-slide image's total pixel matrix, and an older plugin's padding is never read as one.
#include "plugins/host_api.h"

#include <doctest/doctest.h>

#include <cstring>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>

#include "../dicom/dicom_test_util.h"

namespace aihub::plugins {
namespace {

using dicom::testing::SliceSpec;
using dicom::testing::TempDir;

dicom::Study ScanCine(const std::filesystem::path& dir) {
  for (int slice = 0; slice < 3; ++slice) {
    for (int phase = 0; phase < 2; ++phase) {
      SliceSpec spec;
      spec.sop_class_uid = "1.2.840.10008.5.1.4.1.1.4";
      spec.instance_number = slice * 2 + phase + 1;
      spec.position = std::array<double, 3>{0, 0, 6.0 * slice};
      auto file = dicom::testing::MakeSlice(spec);
      file->getDataset()->putAndInsertString(DCM_TriggerTime, phase == 0 ? "0" : "350");
      dicom::testing::WriteFile(*file, dir / ("f" + std::to_string(spec.instance_number)), EXS_LittleEndianExplicit);
    }
  }
  auto scanned = dicom::ScanDirectory(dir);
  REQUIRE(scanned.ok());
  REQUIRE(scanned->studies.size() == 1);
  return scanned->studies[0];
}

TEST_CASE("frame_geometry fills the 1.1 cine fields, and only the 1.0 bytes for a 1.0 caller") {
  TempDir dir;
  const dicom::Study study = ScanCine(dir.path());
  JobInput input;
  input.study = &study;
  input.series.push_back(&study.series[0]);
  aihub_job job;
  job.input = &input;

  aihub_frame_geometry g;
  std::memset(&g, 0, sizeof g);
  g.struct_size = sizeof g;
  REQUIRE(HostApi()->frame_geometry(&job, 0, 4, &g) == AIHUB_OK);   // phase 2, slice 2
  CHECK(g.struct_size == sizeof g);
  CHECK(g.temporal_positions == 2);
  CHECK(g.temporal_index == 2);
  CHECK(g.trigger_time == doctest::Approx(350));
  CHECK(g.position[2] == doctest::Approx(6.0));
  CHECK(g.spacing_between_slices == doctest::Approx(6.0));
  CHECK(g.total_pixel_column == 0);

  // A plugin compiled against 1.0 passes the 1.0 size: the host writes that many bytes and says so.
  constexpr size_t k10Size = 192;
  unsigned char raw[sizeof(aihub_frame_geometry)];
  std::memset(raw, 0xAB, sizeof raw);
  aihub_frame_geometry* old = reinterpret_cast<aihub_frame_geometry*>(raw);
  old->struct_size = k10Size;
  REQUIRE(HostApi()->frame_geometry(&job, 0, 4, old) == AIHUB_OK);
  CHECK(old->struct_size == k10Size);
  CHECK(old->frame_number == 1);
  for (size_t i = k10Size; i < sizeof raw; ++i) CHECK(raw[i] == 0xAB);
}

// A two-instance series: a TILED_FULL slide of 4 x 3 tiles of 256 px over a 1000 x 700 total pixel matrix, and a
// plain 512 x 512 image.
dicom::Series SlideAndImage() {
  dicom::Series s;
  s.series_instance_uid = "2.25.1";
  dicom::Instance slide;
  slide.sop_class_uid = "1.2.840.10008.5.1.4.1.1.77.1.6";
  slide.sop_instance_uid = "2.25.2";
  slide.number_of_frames = 12;
  slide.total_pixel_columns = 1000;
  slide.total_pixel_rows = 700;
  dicom::Instance image;
  image.sop_class_uid = "1.2.840.10008.5.1.4.1.1.7";
  image.sop_instance_uid = "2.25.3";
  s.instances = {slide, image};
  for (uint32_t i = 0; i < 12; ++i) {
    dicom::Frame f;
    f.instance_index = 0;
    f.frame_number = i + 1;
    f.geometry.rows = f.geometry.columns = 256;
    f.geometry.total_pixel_column = (i % 4) * 256 + 1;
    f.geometry.total_pixel_row = (i / 4) * 256 + 1;
    s.frames.push_back(f);
  }
  dicom::Frame plain;
  plain.instance_index = 1;
  plain.geometry.rows = plain.geometry.columns = 512;
  s.frames.push_back(plain);
  return s;
}

TEST_CASE("add_region: a 1.2 plugin marks the total pixel matrix of a slide; bounds and image kind are checked") {
  const dicom::Series series = SlideAndImage();
  JobInput input;
  input.series.push_back(&series);
  JobOutput output;
  output.findings.resize(1);
  aihub_job job;
  job.input = &input;
  job.output = &output;
  job.plugin_api_minor = 2;

  // A window across six tiles, far outside any one 256 px frame.
  const float window[] = {300, 200, 900, 200, 900, 650, 300, 650};
  aihub_region r;
  std::memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.series_index = 0;
  r.frame_index = 5;
  r.graphic_type = AIHUB_GRAPHIC_POLYGON;
  r.points = window;
  r.point_count = 4;
  r.pixel_origin = AIHUB_PIXEL_ORIGIN_VOLUME;
  REQUIRE(HostApi()->add_region(&job, 0, &r) == AIHUB_OK);
  REQUIRE(output.findings[0].regions.size() == 1);
  const Region& g = output.findings[0].regions[0];
  CHECK(g.total_pixel_matrix);
  CHECK(g.sop_instance_uid == "2.25.2");
  CHECK(g.points == std::vector<float>(window, window + 8));

  SUBCASE("the same window on one frame is outside it") {
    r.pixel_origin = AIHUB_PIXEL_ORIGIN_FRAME;
    CHECK(HostApi()->add_region(&job, 0, &r) == AIHUB_INVALID_ARGUMENT);
    CHECK(job.builder_error.find("outside the frame") != std::string::npos);
  }
  SUBCASE("past the total pixel matrix") {
    const float past[] = {300, 200, 1001, 200, 900, 650};
    r.points = past;
    r.point_count = 3;
    CHECK(HostApi()->add_region(&job, 0, &r) == AIHUB_INVALID_ARGUMENT);
    CHECK(job.builder_error.find("outside the total pixel matrix") != std::string::npos);
  }
  SUBCASE("VOLUME on an image that is not tiled") {
    r.frame_index = 12;
    CHECK(HostApi()->add_region(&job, 0, &r) == AIHUB_INVALID_ARGUMENT);
    CHECK(job.builder_error.find("needs a tiled whole-slide image") != std::string::npos);
  }
  SUBCASE("an unknown origin") {
    r.pixel_origin = 7;
    CHECK(HostApi()->add_region(&job, 0, &r) == AIHUB_INVALID_ARGUMENT);
    CHECK(job.builder_error.find("unknown pixel origin 7") != std::string::npos);
  }
  SUBCASE("a 1.1 plugin's tail padding is not read as an origin") {
    job.plugin_api_minor = 1;
    const float tile[] = {0, 0, 256, 0, 256, 256, 0, 256};
    r.points = tile;
    r.pixel_origin = 0x5A5A5A5A;  // whatever the padding held
    REQUIRE(HostApi()->add_region(&job, 0, &r) == AIHUB_OK);
    REQUIRE(output.findings[0].regions.size() == 2);
    CHECK_FALSE(output.findings[0].regions[1].total_pixel_matrix);
    CHECK(output.findings[0].regions[1].frame_number == 6);
  }
}

}  // namespace
}  // namespace aihub::plugins
