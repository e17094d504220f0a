#include "ki67_analysis.h"

#include <algorithm>
#include <cmath>

namespace aihub::ki67 {
namespace {

// Ruifrok & Johnston (2001) optical-density vectors (R, G, B) of hematoxylin and DAB; the third row is their
// normalised cross product, so any pixel decomposes exactly.
struct Deconvolution {
  float od[256];       // -log10((v + 1) / 256): optical density of a channel value
  float inverse[3][3]; // stains = od_rgb x inverse
};

Deconvolution MakeDeconvolution() {
  Deconvolution d{};
  for (int v = 0; v < 256; ++v) d.od[v] = static_cast<float>(-std::log10((v + 1) / 256.0));
  const double h[3] = {0.650, 0.704, 0.286}, dab[3] = {0.268, 0.570, 0.776};
  double res[3] = {h[1] * dab[2] - h[2] * dab[1], h[2] * dab[0] - h[0] * dab[2], h[0] * dab[1] - h[1] * dab[0]};
  const double n = std::sqrt(res[0] * res[0] + res[1] * res[1] + res[2] * res[2]);
  for (double& x : res) x /= n;
  const double m[3][3] = {{h[0], h[1], h[2]}, {dab[0], dab[1], dab[2]}, {res[0], res[1], res[2]}};
  const double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
                     m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                     m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  // inverse = adjugate / det; with od = stains x m, stains = od x inverse.
  const double inv[3][3] = {
      {(m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det, (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det,
       (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det},
      {(m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det, (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det,
       (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det},
      {(m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det, (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det,
       (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det}};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) d.inverse[i][j] = static_cast<float>(inv[i][j]);
  }
  return d;
}

const Deconvolution kDeconvolution = MakeDeconvolution();

}  // namespace

Stains Deconvolve(uint8_t r, uint8_t g, uint8_t b) {
  const Deconvolution& d = kDeconvolution;
  const float o[3] = {d.od[r], d.od[g], d.od[b]};
  Stains s;
  s.hematoxylin = o[0] * d.inverse[0][0] + o[1] * d.inverse[1][0] + o[2] * d.inverse[2][0];
  s.dab = o[0] * d.inverse[0][1] + o[1] * d.inverse[1][1] + o[2] * d.inverse[2][1];
  s.residual = o[0] * d.inverse[0][2] + o[1] * d.inverse[1][2] + o[2] * d.inverse[2][2];
  return s;
}

TileDetector::TileDetector(const DetectionParams& params) : params_(params) {}

const std::vector<Nucleus>& TileDetector::Detect(const uint8_t* rgb, uint32_t rows, uint32_t columns,
                                                 uint32_t valid_rows, uint32_t valid_columns) {
  nuclei_.clear();
  valid_rows = std::min(valid_rows, rows);
  valid_columns = std::min(valid_columns, columns);
  const size_t n = static_cast<size_t>(rows) * columns;
  hematoxylin_.resize(n);
  dab_.resize(n);
  mask_.assign(n, 0);
  labels_.assign(n, 0);
  const float threshold = static_cast<float>(params_.stain_threshold);
  for (uint32_t r = 0; r < valid_rows; ++r) {
    for (uint32_t c = 0; c < valid_columns; ++c) {
      const size_t i = static_cast<size_t>(r) * columns + c;
      const Stains s = Deconvolve(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
      hematoxylin_[i] = s.hematoxylin;
      dab_[i] = s.dab;
      mask_[i] = s.hematoxylin + s.dab > threshold ? 1 : 0;
    }
  }
  // 8-connected components by flood fill; stack_ holds the component's pixels, so a second pass over them needs
  // no scan of the tile.
  int32_t next_label = 0;
  for (uint32_t r0 = 0; r0 < valid_rows; ++r0) {
    for (uint32_t c0 = 0; c0 < valid_columns; ++c0) {
      const size_t start = static_cast<size_t>(r0) * columns + c0;
      if (!mask_[start] || labels_[start] != 0) continue;
      const int32_t label = ++next_label;
      stack_.clear();
      stack_.push_back(static_cast<uint32_t>(start));
      labels_[start] = label;
      for (size_t head = 0; head < stack_.size(); ++head) {
        const uint32_t i = stack_[head];
        const uint32_t r = i / columns, c = i % columns;
        for (int dr = -1; dr <= 1; ++dr) {
          for (int dc = -1; dc <= 1; ++dc) {
            const int64_t nr = int64_t{r} + dr, nc = int64_t{c} + dc;
            if (nr < 0 || nc < 0 || nr >= valid_rows || nc >= valid_columns) continue;
            const size_t j = static_cast<size_t>(nr) * columns + static_cast<size_t>(nc);
            if (mask_[j] && labels_[j] == 0) {
              labels_[j] = label;
              stack_.push_back(static_cast<uint32_t>(j));
            }
          }
        }
      }
      const auto area = static_cast<uint32_t>(stack_.size());
      if (area < params_.min_area_px || area > params_.max_area_px) continue;
      Nucleus nu;
      nu.area = area;
      double sc = 0, sr = 0, sh = 0, sh2 = 0, sd = 0, sd2 = 0, red = 0, green = 0, blue = 0, brown = 0;
      for (uint32_t i : stack_) {
        const uint32_t r = i / columns, c = i % columns;
        sc += c + 0.5;
        sr += r + 0.5;
        const double h = hematoxylin_[i], d = dab_[i];
        sh += h, sh2 += h * h, sd += d, sd2 += d * d;
        red += rgb[3 * i], green += rgb[3 * i + 1], blue += rgb[3 * i + 2];
        brown += d > 0.15 ? 1 : 0;
        nu.touches_left = nu.touches_left || c == 0;
        nu.touches_top = nu.touches_top || r == 0;
        nu.touches_right = nu.touches_right || c + 1 == valid_columns;
        nu.touches_bottom = nu.touches_bottom || r + 1 == valid_rows;
      }
      const double a = area;
      const double mean_d = sd / a;
      double above = 0, above_n = 0;
      for (uint32_t i : stack_) {
        if (dab_[i] >= mean_d) above += dab_[i], above_n += 1;
      }
      nu.column = static_cast<float>(sc / a);
      nu.row = static_cast<float>(sr / a);
      nu.features = {static_cast<float>(a / 1000.0),
                     static_cast<float>(sh / a),
                     static_cast<float>(std::sqrt(std::max(0.0, sh2 / a - (sh / a) * (sh / a)))),
                     static_cast<float>(mean_d),
                     static_cast<float>(std::sqrt(std::max(0.0, sd2 / a - mean_d * mean_d))),
                     static_cast<float>(above_n > 0 ? above / above_n : mean_d),
                     static_cast<float>(red / a / 255.0),
                     static_cast<float>(green / a / 255.0),
                     static_cast<float>(blue / a / 255.0),
                     static_cast<float>(brown / a)};
      nuclei_.push_back(nu);
    }
  }
  return nuclei_;
}

bool CountedInTile(const Nucleus& n, bool last_column, bool last_row) {
  return !(n.touches_right && !last_column) && !(n.touches_bottom && !last_row);
}

std::string MakeTiledLayout(uint64_t total_columns, uint64_t total_rows, uint32_t tile_columns, uint32_t tile_rows,
                            uint64_t frames, TiledLayout& out) {
  if (tile_columns == 0 || tile_rows == 0) return "frame Rows/Columns are 0";
  if (total_columns == 0 || total_rows == 0) return "TotalPixelMatrixColumns/Rows are missing or 0";
  if (total_columns > 0xffffffffull || total_rows > 0xffffffffull) return "total pixel matrix too large";
  const uint64_t across = (total_columns + tile_columns - 1) / tile_columns;
  const uint64_t down = (total_rows + tile_rows - 1) / tile_rows;
  const uint64_t tiles = across * down;
  const std::string layout = "TILED_FULL tiling of the " + std::to_string(total_columns) + " x " +
                             std::to_string(total_rows) + " px total pixel matrix in " +
                             std::to_string(tile_columns) + " x " + std::to_string(tile_rows) + " px tiles needs " +
                             std::to_string(across) + " x " + std::to_string(down) + " = " + std::to_string(tiles) +
                             " frames";
  if (frames < tiles) {
    return "missing tiles or inconsistent tile geometry: the " + layout + ", the image has " +
           std::to_string(frames);
  }
  if (frames > tiles) {
    return "more frames than tiles: the " + layout + ", the image has " + std::to_string(frames) +
           " (several focal planes or optical paths are not supported)";
  }
  out.total_columns = static_cast<uint32_t>(total_columns);
  out.total_rows = static_cast<uint32_t>(total_rows);
  out.tile_columns = tile_columns;
  out.tile_rows = tile_rows;
  out.across = static_cast<uint32_t>(across);
  out.down = static_cast<uint32_t>(down);
  return "";
}

uint32_t HotSpotWindowTiles(uint32_t tile_px, double spacing_mm, uint32_t across, uint32_t down) {
  const double side_tiles = std::sqrt(kHighPowerFieldMm2) / (tile_px * spacing_mm);
  int64_t w = 2 * static_cast<int64_t>(std::floor((side_tiles - 1) / 2 + 0.5)) + 1;
  w = std::max<int64_t>(1, w);
  w = std::min<int64_t>(w, std::min(across, down));
  return static_cast<uint32_t>(std::max<int64_t>(1, w));
}

HotSpot FindHotSpot(const std::vector<uint32_t>& positive, const std::vector<uint32_t>& negative, uint32_t across,
                    uint32_t down, uint32_t window_tiles) {
  HotSpot best;
  best.window_tiles = window_tiles;
  if (across == 0 || down == 0 || window_tiles == 0 || window_tiles > across || window_tiles > down) return best;
  const size_t stride = size_t{across} + 1;
  std::vector<uint64_t> sp((size_t{down} + 1) * stride, 0), st((size_t{down} + 1) * stride, 0);
  for (uint32_t r = 0; r < down; ++r) {
    for (uint32_t c = 0; c < across; ++c) {
      const size_t t = static_cast<size_t>(r) * across + c;
      const size_t i = (r + 1) * stride + c + 1;
      sp[i] = positive[t] + sp[i - 1] + sp[i - stride] - sp[i - stride - 1];
      st[i] = positive[t] + negative[t] + st[i - 1] + st[i - stride] - st[i - stride - 1];
    }
  }
  const uint32_t w = window_tiles;
  auto sum = [&](const std::vector<uint64_t>& s, uint32_t r, uint32_t c) {
    return s[(r + w) * stride + c + w] - s[r * stride + c + w] - s[(r + w) * stride + c] + s[r * stride + c];
  };
  bool found = false;
  for (uint32_t r = 0; r + w <= down; ++r) {
    for (uint32_t c = 0; c + w <= across; ++c) {
      const uint64_t p = sum(sp, r, c);
      if (!found || p > best.positive) {
        found = true;
        best.tile_row = r;
        best.tile_column = c;
        best.positive = p;
        best.negative = sum(st, r, c) - p;
      }
    }
  }
  const uint64_t total = best.positive + best.negative;
  best.index_percent = total == 0 ? 0 : 100.0 * static_cast<double>(best.positive) / static_cast<double>(total);
  return best;
}

}  // namespace aihub::ki67
