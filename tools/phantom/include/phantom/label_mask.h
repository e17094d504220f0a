// Label masks written beside a phantom study, so a training script can load them without a DICOM reader:
//
//   mask = numpy.fromfile(path, dtype=numpy.uint8).reshape(slices, rows, columns)
//
// The file is raw uint8, C order (column fastest, then row, then slice); slice k is the (k+1)-th instance in the
// series (InstanceNumber order, inferior to superior for CT), row 0 is the top row of the image. A JSON sidecar
// "<file>.json" repeats the shape and names the label values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace aihub::phantom {

struct LabelMaskLayout {
  uint32_t slices = 1;
  uint32_t rows = 0;
  uint32_t columns = 0;
  std::map<int, std::string> labels;  // value -> meaning; 0 is always background

  size_t Voxels() const { return static_cast<size_t>(slices) * rows * columns; }
};

// {"dtype": "uint8", "order": "C", "shape": [slices, rows, columns], "labels": {"0": "background", ...}}
nlohmann::json LabelMaskLayoutToJson(const LabelMaskLayout& layout);

// Writes `mask` to `file` and the layout to `file` + ".json". The mask must hold layout.Voxels() values.
Status WriteLabelMask(const std::filesystem::path& file, const std::vector<uint8_t>& mask,
                      const LabelMaskLayout& layout);

}  // namespace aihub::phantom
