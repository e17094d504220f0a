// Connected components of a binary mask on a 3D grid (26-connected; a single slice gives 8-connected 2D
// components). Header-only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace aihub_ref {

struct Component {
  uint64_t voxels = 0;
  double weight = 0;             // sum of the optional per-voxel weight (e.g. probability) over the component
  double centroid[3] = {0, 0, 0};  // slice, row, column (voxel indices; weighted when weights are given)
  uint32_t min[3] = {0, 0, 0};   // bounding box, inclusive: slice, row, column
  uint32_t max[3] = {0, 0, 0};
};

// Labels the voxels of `mask` (slices x rows x columns, C order, non-zero = set). Writes 1-based component
// labels to *labels (0 = background) when given. Components come in raster order of their first voxel.
inline std::vector<Component> LabelComponents(const std::vector<uint8_t>& mask, uint32_t slices, uint32_t rows,
                                              uint32_t columns, std::vector<int32_t>* labels = nullptr,
                                              const std::vector<float>* weights = nullptr) {
  const size_t plane = static_cast<size_t>(rows) * columns;
  std::vector<int32_t> label(mask.size(), 0);
  std::vector<Component> out;
  std::vector<size_t> stack;
  for (size_t start = 0; start < mask.size(); ++start) {
    if (!mask[start] || label[start]) continue;
    Component c;
    const auto id = static_cast<int32_t>(out.size() + 1);
    c.min[0] = slices, c.min[1] = rows, c.min[2] = columns;
    double wsum = 0, sk = 0, sr = 0, sc = 0;
    label[start] = id;
    stack.push_back(start);
    while (!stack.empty()) {
      const size_t i = stack.back();
      stack.pop_back();
      const auto k = static_cast<uint32_t>(i / plane), r = static_cast<uint32_t>(i % plane / columns),
                 col = static_cast<uint32_t>(i % columns);
      const double w = weights ? static_cast<double>((*weights)[i]) : 1.0;
      ++c.voxels;
      wsum += w;
      sk += w * k, sr += w * r, sc += w * col;
      const uint32_t at[3] = {k, r, col};
      for (int d = 0; d < 3; ++d) {
        c.min[d] = std::min(c.min[d], at[d]);
        c.max[d] = std::max(c.max[d], at[d]);
      }
      for (int dk = -1; dk <= 1; ++dk) {
        for (int dr = -1; dr <= 1; ++dr) {
          for (int dc = -1; dc <= 1; ++dc) {
            const int64_t nk = int64_t{k} + dk, nr = int64_t{r} + dr, nc = int64_t{col} + dc;
            if (nk < 0 || nr < 0 || nc < 0 || nk >= slices || nr >= rows || nc >= columns) continue;
            const size_t j = static_cast<size_t>(nk) * plane + static_cast<size_t>(nr) * columns +
                             static_cast<size_t>(nc);
            if (mask[j] && !label[j]) {
              label[j] = id;
              stack.push_back(j);
            }
          }
        }
      }
    }
    c.weight = weights ? wsum : static_cast<double>(c.voxels);
    if (wsum > 0) {
      c.centroid[0] = sk / wsum, c.centroid[1] = sr / wsum, c.centroid[2] = sc / wsum;
    }
    out.push_back(c);
  }
  if (labels) *labels = std::move(label);
  return out;
}

}  // namespace aihub_ref
