// Outline of a region on a 2D mask as a polygon, for aihub regions (SCOORD POLYGON). Header-only.
#pragma once

#include <cstdint>
#include <vector>

namespace aihub_ref {

// The outer boundary of the 8-connected region holding the first set pixel (raster order) of `mask`
// (rows x columns, non-zero = set), traced along pixel edges. Returns the polygon's corners as x, y pairs
// (x = column, y = row) in pixel-corner coordinates (origin at the top-left corner of the top-left pixel),
// multiplied by `scale` (to map a pooled grid back to the original pixels), clockwise on screen, without
// repeating the first point. Holes are ignored. Empty when the mask is empty.
inline std::vector<float> TraceOuterContour(const std::vector<uint8_t>& mask, uint32_t rows, uint32_t columns,
                                            float scale = 1) {
  auto in = [&](int64_t c, int64_t r) {
    return c >= 0 && r >= 0 && c < columns && r < rows && mask[static_cast<size_t>(r) * columns + c] != 0;
  };
  int64_t sx = -1, sy = -1;
  for (size_t i = 0; i < mask.size() && sx < 0; ++i) {
    if (mask[i]) sx = static_cast<int64_t>(i % columns), sy = static_cast<int64_t>(i / columns);
  }
  std::vector<float> out;
  if (sx < 0) return out;
  // Directions clockwise on screen (y down): east, south, west, north. The region stays on the right.
  const int dx[4] = {1, 0, -1, 0}, dy[4] = {0, 1, 0, -1};
  // Pixels ahead-left and ahead-right of a corner (x, y) for each direction, as offsets from the corner.
  const int left_px[4] = {0, 0, -1, -1}, left_py[4] = {-1, 0, 0, -1};
  const int right_px[4] = {0, -1, -1, 0}, right_py[4] = {0, 0, -1, -1};
  int64_t x = sx, y = sy;
  int dir = 0;
  int prev = -1;
  // Each boundary edge is walked once; 4 * pixels + 4 bounds the walk even on malformed input.
  const size_t limit = 4 * mask.size() + 4;
  for (size_t step = 0; step < limit; ++step) {
    if (in(x + left_px[dir], y + left_py[dir])) {
      dir = (dir + 3) % 4;  // turn left: diagonal neighbours join the region (8-connected)
    } else if (!in(x + right_px[dir], y + right_py[dir])) {
      dir = (dir + 1) % 4;  // turn right
    }
    if (dir != prev) {
      out.push_back(static_cast<float>(x) * scale);
      out.push_back(static_cast<float>(y) * scale);
      prev = dir;
    }
    x += dx[dir];
    y += dy[dir];
    if (x == sx && y == sy) break;
  }
  return out;
}

}  // namespace aihub_ref
