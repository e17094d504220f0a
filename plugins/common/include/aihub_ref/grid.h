// Mapping CT slices onto a model grid: in-plane mean pooling and overlap-weighted resampling along z.
// Header-only, no dependencies: pre-processing code and its tests use it without the plugin ABI.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <vector>

namespace aihub_ref {

// Pooling factor mapping rows x columns onto grid x grid, or 0 when the size cannot be mapped (not square, not
// a multiple of the grid, or more than 16 pixels per cell).
inline uint32_t PoolingFactor(uint32_t rows, uint32_t columns, uint32_t grid) {
  if (grid == 0 || rows != columns || rows < grid || rows % grid != 0) return 0;
  const uint32_t f = rows / grid;
  return f <= 16 ? f : 0;
}

// Per-pixel features pooled in one pass: fn(pixel) returns a std::array<float, N>; channel ch of each
// factor x factor cell's mean goes to out[ch * channel_stride + cell] (cells row by row, grid = size / factor).
// Sums in double, as numpy's mean(dtype=float64) in the training scripts.
template <size_t N, typename Fn>
void PoolSliceChannels(const float* pixels, uint32_t size, uint32_t factor, Fn fn, float* out, size_t channel_stride) {
  const uint32_t grid = size / factor;
  const double cell = static_cast<double>(factor) * factor;
  for (uint32_t gr = 0; gr < grid; ++gr) {
    for (uint32_t gc = 0; gc < grid; ++gc) {
      std::array<double, N> sum{};
      for (uint32_t dr = 0; dr < factor; ++dr) {
        const float* row = pixels + static_cast<size_t>(gr * factor + dr) * size + static_cast<size_t>(gc) * factor;
        for (uint32_t dc = 0; dc < factor; ++dc) {
          const std::array<float, N> f = fn(row[dc]);
          for (size_t ch = 0; ch < N; ++ch) sum[ch] += f[ch];
        }
      }
      for (size_t ch = 0; ch < N; ++ch) {
        out[ch * channel_stride + static_cast<size_t>(gr) * grid + gc] = static_cast<float>(sum[ch] / cell);
      }
    }
  }
}

// Resampling along z onto cells of about cell_mm: the series' extent (slices x spacing) is cut into
// cells = max(1, round(extent / cell_mm)) equal cells, and each cell is the overlap-weighted mean of the input
// slices it covers. Mirrors z_weights() in the training scripts.
struct ZResampling {
  uint32_t cells = 0;
  double cell_mm = 0;  // actual cell height: extent / cells
  struct Share {
    uint32_t cell;
    double weight;  // fraction of the cell covered by the input slice
  };
  std::vector<std::vector<Share>> by_slice;  // for each input slice, the cells it contributes to
  std::vector<uint32_t> center_slice;        // for each cell, the input slice that contributes most
};

inline ZResampling MakeZResampling(uint32_t slices, double spacing_mm, double cell_mm) {
  ZResampling z;
  const double extent = slices * spacing_mm;
  z.cells = std::max<uint32_t>(1, static_cast<uint32_t>(std::floor(extent / cell_mm + 0.5)));
  z.cell_mm = extent / z.cells;
  z.by_slice.assign(slices, {});
  z.center_slice.assign(z.cells, 0);
  for (uint32_t j = 0; j < z.cells; ++j) {
    const double lo = j * z.cell_mm, hi = (j + 1) * z.cell_mm;
    const auto k0 = static_cast<uint32_t>(std::floor(lo / spacing_mm));
    const auto k1 = std::min<uint32_t>(slices - 1, static_cast<uint32_t>(std::ceil(hi / spacing_mm)) - 1);
    double best = -1;
    for (uint32_t k = k0; k <= k1 && k < slices; ++k) {
      const double w = std::max(0.0, std::min(hi, (k + 1) * spacing_mm) - std::max(lo, k * spacing_mm)) / z.cell_mm;
      z.by_slice[k].push_back({j, w});
      if (w > best) {
        best = w;
        z.center_slice[j] = k;
      }
    }
  }
  return z;
}

}  // namespace aihub_ref
