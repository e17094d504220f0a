// An axial CT series read back from phantom files (tests/tools/ct_series_reader.h) as a fake-host job
// (fake_host.h), for the plugin tests of the CT reference plugins (hyperdensity, ich, pe).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "aihub/plugin_api.h"
#include "reference/support/fake_host.h"
#include "tools/ct_series_reader.h"

namespace aihub::testing {

// One series (Modality CT) served from memory as signed 16-bit data with intercept -1024: pixel spacing, slice
// thickness and spacing between slices from `ct`, image positions centred in x and y, z from `ct`, axial.
// Tests change the job's geometry template (orientation, photometric, spacing) to make unsuitable variants.
inline aihub_job CtJob(const CtSeriesHu& ct) {
  FakeSeries s;
  s.tags = {{0x00080060, "CT"}};
  s.frames = ct.slices;
  aihub_frame_geometry& g = s.geometry;
  g.rows = ct.rows;
  g.columns = ct.columns;
  g.pixel_representation = 1;
  g.pixel_spacing[0] = ct.row_spacing_mm;
  g.pixel_spacing[1] = ct.column_spacing_mm;
  g.slice_thickness = ct.slice_spacing_mm;
  g.spacing_between_slices = ct.slice_spacing_mm;
  g.position[0] = -0.5 * ct.columns * ct.column_spacing_mm;
  g.position[1] = -0.5 * ct.rows * ct.row_spacing_mm;
  g.has_position = 1;
  g.rescale_intercept = -1024;
  s.frame_geometry = [z = std::make_shared<const std::vector<double>>(ct.z)](uint32_t f, aihub_frame_geometry& out) {
    out.position[2] = (*z)[f];
    return int32_t{AIHUB_OK};
  };
  s.read = ServeFloatFrames(std::make_shared<const std::vector<float>>(ct.hu));
  aihub_job job;
  job.series.push_back(std::move(s));
  return job;
}

}  // namespace aihub::testing
