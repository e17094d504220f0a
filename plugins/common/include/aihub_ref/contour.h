// Outline of a region on a 2D mask as a polygon, for aihub regions (SCOORD POLYGON). Header-only.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
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

// Douglas-Peucker simplification of a closed polygon (x, y pairs, first point not repeated) to within
// `tolerance`: the loop is split at its first point and the point farthest from it, and both chains are simplified
// (iteratively: a long outline must not deepen the stack). Polygons of 4 points or fewer come back unchanged.
inline std::vector<float> SimplifyClosedPolygon(const std::vector<float>& points, double tolerance) {
  const size_t n = points.size() / 2;
  if (n <= 4) return points;
  std::vector<float> loop(points);
  loop.push_back(points[0]);
  loop.push_back(points[1]);
  auto distance_to_chord = [&](size_t i, size_t a, size_t b) {
    const double ax = loop[2 * a], ay = loop[2 * a + 1], bx = loop[2 * b], by = loop[2 * b + 1];
    const double px = loop[2 * i], py = loop[2 * i + 1];
    const double dx = bx - ax, dy = by - ay, len = std::hypot(dx, dy);
    return len == 0 ? std::hypot(px - ax, py - ay) : std::fabs(dy * (px - ax) - dx * (py - ay)) / len;
  };
  size_t far = 0;
  double far_d = -1;
  for (size_t i = 1; i < n; ++i) {
    const double d = std::hypot(points[2 * i] - points[0], points[2 * i + 1] - points[1]);
    if (d > far_d) {
      far_d = d;
      far = i;
    }
  }
  std::vector<bool> keep(n + 1, false);
  keep[0] = keep[far] = keep[n] = true;
  std::vector<std::pair<size_t, size_t>> todo{{0, far}, {far, n}};
  while (!todo.empty()) {
    const auto [lo, hi] = todo.back();
    todo.pop_back();
    if (hi <= lo + 1) continue;
    size_t at = lo;
    double worst = -1;
    for (size_t i = lo + 1; i < hi; ++i) {
      const double d = distance_to_chord(i, lo, hi);
      if (d > worst) {
        worst = d;
        at = i;
      }
    }
    if (worst > tolerance) {
      keep[at] = true;
      todo.push_back({lo, at});
      todo.push_back({at, hi});
    }
  }
  std::vector<float> out;
  for (size_t i = 0; i < n; ++i) {
    if (!keep[i]) continue;
    out.push_back(points[2 * i]);
    out.push_back(points[2 * i + 1]);
  }
  return out;
}

}  // namespace aihub_ref
