// The host table's frame geometry across ABI minor versions: a 1.1 caller gets the cine phase and whole-slide
// tile fields, a 1.0 caller (smaller struct_size) gets exactly the 1.0 bytes and nothing past them.
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

}  // namespace
}  // namespace aihub::plugins
