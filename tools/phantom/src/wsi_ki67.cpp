#include "phantom/wsi_ki67.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djcparam.h>
#include <dcmtk/dcmjpeg/djeijg8.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "common/hash.h"
#include "phantom/random.h"
#include "phantom_util.h"

namespace aihub::phantom {
namespace {

using internal::DicomPutter;
using internal::FormatDs;

constexpr double kPi = 3.14159265358979323846;
// Ruifrok & Johnston (2001) stain optical-density vectors (R, G, B), unit length: what colour deconvolution in the
// plugin inverts.
constexpr double kHematoxylin[3] = {0.650, 0.704, 0.286};
constexpr double kDab[3] = {0.268, 0.570, 0.776};
constexpr double kGlassOd = 0.035;          // clear glass: RGB ~236
constexpr uint32_t kEdgeMargin = 24;        // px from a nucleus centre to its tile's edge (> 20 + soft edge)
constexpr double kNucleusGap = 4;           // px between the semi-major circles of two nuclei
constexpr double kCellsPer256Tile = 18;     // mean nuclei per 256 x 256 px of tissue
constexpr double kHotSpotSigmaMm = 0.15;
constexpr uint32_t kGridStep = 32;          // tissue and stroma fields are sampled every 32 px and interpolated
// Uncompressed PixelData's value length is 32-bit and 0xFFFFFFFF means "undefined".
constexpr uint64_t kMaxNativeBytes = 0xFFFFFFFEull;
constexpr uint64_t kTileStream = 1ull << 32;   // MixSeed streams: tile nuclei, tile noise
constexpr uint64_t kNoiseStream = 2ull << 32;

// A uniform in [0, 1) from integer coordinates: the same value whichever tile asks, so textures match at seams.
double HashUniform(uint64_t seed, uint64_t a, uint64_t b) {
  return static_cast<double>(MixSeed(seed, (a << 32) ^ b) >> 11) * (1.0 / 9007199254740992.0);
}

std::string DateTime(const StudyIdentity& id) { return id.study_date + id.study_time; }

// A minimal ICC v2 display profile for sRGB (D50-adapted primaries, gamma 2.2 curves): the Optical Path module
// requires an ICC profile for colour images, and viewers use it to show the colours as scanned.
std::vector<uint8_t> SrgbIccProfile() {
  std::vector<uint8_t> p(128, 0);
  auto put32 = [](std::vector<uint8_t>& v, size_t at, uint32_t x) {
    if (v.size() < at + 4) v.resize(at + 4, 0);
    for (int i = 0; i < 4; ++i) v[at + i] = static_cast<uint8_t>(x >> (24 - 8 * i));
  };
  auto sig = [](const char* s) {
    return (uint32_t(uint8_t(s[0])) << 24) | (uint32_t(uint8_t(s[1])) << 16) | (uint32_t(uint8_t(s[2])) << 8) |
           uint32_t(uint8_t(s[3]));
  };
  auto fixed = [](double v) { return static_cast<uint32_t>(static_cast<int32_t>(std::lround(v * 65536))); };
  auto append_xyz = [&](std::vector<uint8_t>& v, double x, double y, double z) {
    const size_t at = v.size();
    put32(v, at, sig("XYZ "));
    put32(v, at + 4, 0);
    put32(v, at + 8, fixed(x));
    put32(v, at + 12, fixed(y));
    put32(v, at + 16, fixed(z));
  };
  struct Tag {
    const char* signature;
    std::vector<uint8_t> data;
  };
  std::vector<Tag> tags;
  {
    const std::string text = "aihub phantom sRGB";
    std::vector<uint8_t> d;
    put32(d, 0, sig("desc"));
    put32(d, 4, 0);
    put32(d, 8, static_cast<uint32_t>(text.size() + 1));
    d.insert(d.end(), text.begin(), text.end());
    d.push_back(0);
    d.resize(d.size() + 4 + 4 + 2 + 1 + 67, 0);  // Unicode and ScriptCode parts, empty
    tags.push_back({"desc", d});
  }
  {
    const std::string text = "No copyright, synthetic data";
    std::vector<uint8_t> d;
    put32(d, 0, sig("text"));
    put32(d, 4, 0);
    d.insert(d.end(), text.begin(), text.end());
    d.push_back(0);
    tags.push_back({"cprt", d});
  }
  std::vector<uint8_t> d;
  append_xyz(d, 0.9642, 1.0, 0.8249);
  tags.push_back({"wtpt", d});
  d.clear();
  append_xyz(d, 0.4361, 0.2225, 0.0139);
  tags.push_back({"rXYZ", d});
  d.clear();
  append_xyz(d, 0.3851, 0.7169, 0.0971);
  tags.push_back({"gXYZ", d});
  d.clear();
  append_xyz(d, 0.1431, 0.0606, 0.7141);
  tags.push_back({"bXYZ", d});
  std::vector<uint8_t> curve;
  put32(curve, 0, sig("curv"));
  put32(curve, 4, 0);
  put32(curve, 8, 1);
  curve.push_back(0x02);  // gamma 2.2 as u8Fixed8Number (0x0233)
  curve.push_back(0x33);
  for (const char* trc : {"rTRC", "gTRC", "bTRC"}) tags.push_back({trc, curve});

  put32(p, 128, static_cast<uint32_t>(tags.size()));
  size_t offset = 128 + 4 + 12 * tags.size();
  std::vector<uint8_t> body;
  for (size_t i = 0; i < tags.size(); ++i) {
    while ((offset + body.size()) % 4 != 0) body.push_back(0);
    put32(p, 132 + 12 * i, sig(tags[i].signature));
    put32(p, 136 + 12 * i, static_cast<uint32_t>(offset + body.size()));
    put32(p, 140 + 12 * i, static_cast<uint32_t>(tags[i].data.size()));
    body.insert(body.end(), tags[i].data.begin(), tags[i].data.end());
  }
  p.insert(p.end(), body.begin(), body.end());
  while (p.size() % 4 != 0) p.push_back(0);
  put32(p, 0, static_cast<uint32_t>(p.size()));
  put32(p, 8, 0x02100000);  // version 2.1
  put32(p, 12, sig("mntr"));
  put32(p, 16, sig("RGB "));
  put32(p, 20, sig("XYZ "));
  const uint16_t date[6] = {2024, 1, 1, 0, 0, 0};
  for (int i = 0; i < 6; ++i) p[24 + 2 * i] = static_cast<uint8_t>(date[i] >> 8), p[25 + 2 * i] = static_cast<uint8_t>(date[i]);
  put32(p, 36, sig("acsp"));
  put32(p, 68, fixed(0.9642));
  put32(p, 72, fixed(1.0));
  put32(p, 76, fixed(0.8249));
  return p;
}

}  // namespace

uint32_t Ki67HotSpotWindowTiles(uint32_t tile_px, double spacing_mm, uint32_t across, uint32_t down) {
  const double side_tiles = std::sqrt(kKi67HotSpotFieldMm2) / (tile_px * spacing_mm);
  // The odd number nearest to side_tiles, so that the window has a centre tile.
  int64_t w = 2 * static_cast<int64_t>(std::floor((side_tiles - 1) / 2 + 0.5)) + 1;
  w = std::max<int64_t>(1, w);
  w = std::min<int64_t>(w, std::min(across, down));
  return static_cast<uint32_t>(std::max<int64_t>(1, w));
}

Ki67HotSpot FindKi67HotSpot(const std::vector<uint32_t>& positive, const std::vector<uint32_t>& negative,
                            uint32_t across, uint32_t down, uint32_t window_tiles) {
  Ki67HotSpot best;
  best.window_tiles = window_tiles;
  if (across == 0 || down == 0 || window_tiles == 0 || window_tiles > across || window_tiles > down) return best;
  // Direct sums over every window position: slow but plainly right, and independent of the plugin's summed-area
  // search (plugins/ki67), which the tests check against this truth.
  bool found = false;
  for (uint32_t r = 0; r + window_tiles <= down; ++r) {
    for (uint32_t c = 0; c + window_tiles <= across; ++c) {
      uint64_t p = 0, n = 0;
      for (uint32_t dr = 0; dr < window_tiles; ++dr) {
        for (uint32_t dc = 0; dc < window_tiles; ++dc) {
          const size_t t = static_cast<size_t>(r + dr) * across + c + dc;
          p += positive[t];
          n += negative[t];
        }
      }
      if (!found || p > best.positive) {
        found = true;
        best.tile_row = r;
        best.tile_column = c;
        best.positive = p;
        best.negative = n;
      }
    }
  }
  const uint64_t total = best.positive + best.negative;
  best.index_percent = total == 0 ? 0 : 100.0 * static_cast<double>(best.positive) / static_cast<double>(total);
  return best;
}

StatusOr<WsiKi67Slide> WsiKi67Slide::Create(const WsiKi67Options& o) {
  if (o.tile != 256 && o.tile != 512) return InvalidArgument("tile must be 256 or 512");
  if (o.size < 1024 || o.size % o.tile != 0) {
    return InvalidArgument("size must be a multiple of the tile (" + std::to_string(o.tile) + ") and at least 1024");
  }
  const uint64_t tiles = uint64_t{o.size / o.tile} * (o.size / o.tile);
  const uint64_t bytes = tiles * o.tile * o.tile * 3;
  if (o.size > 65536) return InvalidArgument("size must be at most 65536");
  if (o.rle && o.jpeg) return InvalidArgument("rle and jpeg exclude each other");
  if (o.jpeg && (o.jpeg_quality < 50 || o.jpeg_quality > 100)) return InvalidArgument("jpeg quality must be 50..100");
  if (!o.rle && !o.jpeg && bytes > kMaxNativeBytes) {
    const uint64_t max_across = static_cast<uint64_t>(
        std::floor(std::sqrt(static_cast<double>(kMaxNativeBytes / (uint64_t{o.tile} * o.tile * 3)))));
    return InvalidArgument("a " + std::to_string(o.size) + " px slide needs " + std::to_string(bytes) +
                           " bytes of uncompressed PixelData, over the 32-bit value length (4 GiB - 2); the largest "
                           "slide with " + std::to_string(o.tile) + " px tiles is " +
                           std::to_string(max_across * o.tile) + " px (RLE Lossless and JPEG have no such limit)");
  }
  if (!(o.index_percent >= 1 && o.index_percent <= 80)) return InvalidArgument("index must be in 1..80 %");
  if (o.hotspots > 3) return InvalidArgument("hotspots must be 0..3");
  if (o.missing_tile && *o.missing_tile >= tiles) {
    return InvalidArgument("missing tile " + std::to_string(*o.missing_tile) + " is not below the " +
                           std::to_string(tiles) + " tiles");
  }
  if (Status s = internal::ValidateSite(o.department, o.calling_ae, o.institution); !s.ok()) return s;

  WsiKi67Slide slide;
  slide.options_ = o;
  const double size = o.size;
  Rng rng(MixSeed(o.seed, 1));
  const int blobs = rng.UniformInt(3, 5);
  for (int b = 0; b < blobs; ++b) {
    Blob blob{};
    blob.cx = rng.Uniform(0.28, 0.72) * size;
    blob.cy = rng.Uniform(0.28, 0.72) * size;
    blob.rx = rng.Uniform(0.25, 0.40) * size;
    blob.ry = rng.Uniform(0.25, 0.40) * size;
    const double angle = rng.Uniform(0, kPi);
    blob.cos_a = std::cos(angle);
    blob.sin_a = std::sin(angle);
    for (int k = 0; k < 3; ++k) {
      blob.wobble[k] = rng.Uniform(0, 0.14) / (k + 1);
      blob.phase[k] = rng.Uniform(0, 2 * kPi);
    }
    blob.stroma_od = rng.Uniform(0.06, 0.11);
    slide.blobs_.push_back(blob);
  }
  for (int i = 0; i < 2; ++i) {
    slide.field_k_[i] = 2 * kPi / (rng.Uniform(1.5, 3.0) * size);
    slide.field_phase_[i] = rng.Uniform(0, 2 * kPi);
    slide.density_k_[i] = 2 * kPi / (rng.Uniform(0.8, 2.0) * size);
    slide.density_phase_[i] = rng.Uniform(0, 2 * kPi);
  }
  slide.hotspot_sigma_px_ = kHotSpotSigmaMm / kWsiKi67PixelSpacingMm;
  for (uint32_t h = 0; h < o.hotspots; ++h) {
    // In well-inside tissue and, when the slide allows, 5 sigma from the other hot spots.
    std::array<double, 2> best{size / 2, size / 2};
    double best_score = -1e300;
    for (int attempt = 0; attempt < 400; ++attempt) {
      const std::array<double, 2> c{rng.Uniform(0.1, 0.9) * size, rng.Uniform(0.1, 0.9) * size};
      double nearest = 1e300;
      for (const auto& other : slide.hotspot_centers_) nearest = std::min(nearest, std::hypot(c[0] - other[0], c[1] - other[1]));
      const double t = slide.Tissue(c[0], c[1]);
      const double score = (t > 0.3 ? 1.0 : t - 1.0) + std::min(nearest, 5 * slide.hotspot_sigma_px_) / size;
      if (score > best_score) {
        best_score = score;
        best = c;
      }
    }
    slide.hotspot_centers_.push_back(best);
    slide.hotspot_amplitude_.push_back(rng.Uniform(0.20, 0.35));
  }
  return slide;
}

double WsiKi67Slide::Tissue(double column, double row) const {
  double best = -1e300;
  for (const Blob& b : blobs_) {
    const double dx = column - b.cx, dy = row - b.cy;
    const double u = (dx * b.cos_a + dy * b.sin_a) / b.rx, v = (-dx * b.sin_a + dy * b.cos_a) / b.ry;
    const double rho = std::sqrt(u * u + v * v);
    const double theta = std::atan2(v, u);
    double edge = 1;
    for (int k = 0; k < 3; ++k) edge += b.wobble[k] * std::sin((k + 2) * theta + b.phase[k]);
    best = std::max(best, 1 - rho / edge);
  }
  return best;
}

double WsiKi67Slide::StromaOd(double column, double row) const {
  // The blob that holds the point most deeply gives its counterstain strength.
  double best = -1e300, od = 0.08;
  for (const Blob& b : blobs_) {
    const double dx = column - b.cx, dy = row - b.cy;
    const double u = (dx * b.cos_a + dy * b.sin_a) / b.rx, v = (-dx * b.sin_a + dy * b.cos_a) / b.ry;
    const double depth = 1 - std::sqrt(u * u + v * v);
    if (depth > best) best = depth, od = b.stroma_od;
  }
  return od;
}

double WsiKi67Slide::PositiveFraction(double column, double row) const {
  const double base = options_.index_percent / 100.0;
  double p = base * (1 + 0.4 * std::sin(field_k_[0] * column + field_phase_[0]) *
                             std::sin(field_k_[1] * row + field_phase_[1]));
  const double s2 = 2 * hotspot_sigma_px_ * hotspot_sigma_px_;
  for (size_t h = 0; h < hotspot_centers_.size(); ++h) {
    const double dx = column - hotspot_centers_[h][0], dy = row - hotspot_centers_[h][1];
    p += hotspot_amplitude_[h] * std::exp(-(dx * dx + dy * dy) / s2);
  }
  return std::clamp(p, 0.005, 0.95);
}

double WsiKi67Slide::CellsPerTile(double column, double row) const {
  const double scale = static_cast<double>(options_.tile) * options_.tile / (256.0 * 256.0);
  return kCellsPer256Tile * scale *
         (0.85 + 0.15 * std::sin(density_k_[0] * column + density_phase_[0]) *
                     std::sin(density_k_[1] * row + density_phase_[1]));
}

std::vector<Ki67Nucleus> WsiKi67Slide::TileNuclei(uint32_t index) const {
  const uint32_t t = options_.tile;
  const double x0 = static_cast<double>(index % tiles_across()) * t, y0 = static_cast<double>(index / tiles_across()) * t;
  Rng rng(MixSeed(options_.seed, kTileStream + index));
  const double lambda = CellsPerTile(x0 + t / 2.0, y0 + t / 2.0);
  const auto slots = static_cast<int>(std::floor(lambda + rng.Uniform()));
  std::vector<Ki67Nucleus> out;
  for (int s = 0; s < slots; ++s) {
    // Draw the candidate's shape once, then up to 12 places for it; a place outside tissue ends the slot, so the
    // density is per tissue area.
    Ki67Nucleus n;
    n.semi_major = static_cast<float>(rng.Uniform(12, 20));
    n.semi_minor = static_cast<float>(n.semi_major * rng.Uniform(0.65, 1.0));
    n.angle = static_cast<float>(rng.Uniform(0, kPi));
    bool placed = false;
    for (int attempt = 0; attempt < 12 && !placed; ++attempt) {
      const double c = rng.Uniform(kEdgeMargin, t - kEdgeMargin), r = rng.Uniform(kEdgeMargin, t - kEdgeMargin);
      if (Tissue(x0 + c, y0 + r) <= 0) break;
      bool clear = true;
      for (const Ki67Nucleus& o : out) {
        if (std::hypot(o.column - c, o.row - r) < o.semi_major + n.semi_major + kNucleusGap) {
          clear = false;
          break;
        }
      }
      if (!clear) continue;
      n.column = static_cast<float>(c);
      n.row = static_cast<float>(r);
      placed = true;
    }
    if (!placed) continue;
    n.positive = rng.Uniform() < PositiveFraction(x0 + n.column, y0 + n.row);
    if (n.positive) {
      n.dab = static_cast<float>(rng.Uniform(0.35, 0.90));
      n.hematoxylin = static_cast<float>(rng.Uniform(0.05, 0.20));
    } else {
      n.dab = static_cast<float>(rng.Uniform(0.0, 0.04));
      n.hematoxylin = static_cast<float>(rng.Uniform(0.45, 0.85));
    }
    out.push_back(n);
  }
  return out;
}

void WsiKi67Slide::RenderTile(uint32_t index, const std::vector<Ki67Nucleus>& nuclei, uint8_t* rgb) const {
  const uint32_t t = options_.tile;
  const uint32_t tx = index % tiles_across(), ty = index / tiles_across();
  const double x0 = static_cast<double>(tx) * t, y0 = static_cast<double>(ty) * t;
  // Tissue and stroma on a coarse grid in slide coordinates (shared by neighbouring tiles' edges).
  const uint32_t g = t / kGridStep + 1;
  std::vector<float> tissue(g * g), stroma(g * g);
  for (uint32_t j = 0; j < g; ++j) {
    for (uint32_t i = 0; i < g; ++i) {
      const double x = x0 + i * kGridStep, y = y0 + j * kGridStep;
      tissue[j * g + i] = static_cast<float>(Tissue(x, y));
      const uint64_t gx = tx * (t / kGridStep) + i, gy = ty * (t / kGridStep) + j;
      stroma[j * g + i] = static_cast<float>(StromaOd(x, y) * (0.75 + 0.5 * HashUniform(options_.seed, gx, gy)));
    }
  }
  std::vector<float> od(static_cast<size_t>(t) * t * 3);
  for (uint32_t r = 0; r < t; ++r) {
    const uint32_t j = r / kGridStep;
    const float fy = static_cast<float>(r % kGridStep) / kGridStep;
    for (uint32_t c = 0; c < t; ++c) {
      const uint32_t i = c / kGridStep;
      const float fx = static_cast<float>(c % kGridStep) / kGridStep;
      auto lerp = [&](const std::vector<float>& f) {
        const float top = f[j * g + i] * (1 - fx) + f[j * g + i + 1] * fx;
        const float bottom = f[(j + 1) * g + i] * (1 - fx) + f[(j + 1) * g + i + 1] * fx;
        return top * (1 - fy) + bottom * fy;
      };
      const float alpha = std::clamp(lerp(tissue) / 0.04f, 0.0f, 1.0f);
      const float h = alpha * lerp(stroma), d = alpha * 0.015f;
      float* p = &od[(static_cast<size_t>(r) * t + c) * 3];
      for (int k = 0; k < 3; ++k) p[k] = static_cast<float>(kGlassOd + alpha * 0.02 + h * kHematoxylin[k] + d * kDab[k]);
    }
  }
  for (size_t n = 0; n < nuclei.size(); ++n) {
    const Ki67Nucleus& nu = nuclei[n];
    const double ca = std::cos(nu.angle), sa = std::sin(nu.angle);
    const int lo_c = std::max(0, static_cast<int>(nu.column - nu.semi_major - 2));
    const int hi_c = std::min(static_cast<int>(t) - 1, static_cast<int>(nu.column + nu.semi_major + 2));
    const int lo_r = std::max(0, static_cast<int>(nu.row - nu.semi_major - 2));
    const int hi_r = std::min(static_cast<int>(t) - 1, static_cast<int>(nu.row + nu.semi_major + 2));
    double stain[3];
    for (int k = 0; k < 3; ++k) stain[k] = nu.hematoxylin * kHematoxylin[k] + nu.dab * kDab[k];
    for (int r = lo_r; r <= hi_r; ++r) {
      for (int c = lo_c; c <= hi_c; ++c) {
        const double dx = c + 0.5 - nu.column, dy = r + 0.5 - nu.row;
        const double u = (dx * ca + dy * sa) / nu.semi_major, v = (-dx * sa + dy * ca) / nu.semi_minor;
        const double rho2 = u * u + v * v;
        if (rho2 >= 1.3) continue;
        const double rho = std::sqrt(rho2);
        // About a 1.2 px soft edge, half strength on the ellipse itself.
        const double w = std::clamp((1 - rho) * nu.semi_minor / 1.2 + 0.5, 0.0, 1.0);
        if (w <= 0) continue;
        // Chromatin texture: coarse granules (hashed per 3 px cell of the nucleus) and a lighter rim.
        const double grain = HashUniform(options_.seed ^ (kTileStream + index), n * 4096 + (r / 3) * 64 + c / 3, 7);
        const double tex = (0.82 + 0.36 * grain) * (1 - 0.12 * rho2);
        float* p = &od[(static_cast<size_t>(r) * t + c) * 3];
        for (int k = 0; k < 3; ++k) p[k] += static_cast<float>(w * tex * stain[k]);
      }
    }
  }
  // Beer-Lambert (I = 255 * 10^-OD) through a table, plus +-3 levels of uniform sensor noise.
  static const std::vector<float> kIntensity = [] {
    std::vector<float> v(4096);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(255.0 * std::pow(10.0, -(i + 0.5) / 1024.0));
    return v;
  }();
  Rng noise(MixSeed(options_.seed, kNoiseStream + index));
  const size_t pixels = static_cast<size_t>(t) * t;
  for (size_t i = 0; i < pixels; ++i) {
    const uint64_t bits = noise.Bits();
    for (int k = 0; k < 3; ++k) {
      const float o = od[i * 3 + k];
      const auto q = static_cast<size_t>(std::clamp(o * 1024.0f, 0.0f, 4095.0f));
      const float n = static_cast<float>((bits >> (16 * k)) & 0xff) * (6.0f / 255.0f) - 3.0f;
      rgb[i * 3 + k] = static_cast<uint8_t>(std::clamp(std::lround(kIntensity[q] + n), 0L, 255L));
    }
  }
}

StatusOr<std::vector<uint8_t>> EncodeJpegBaselineRgbFrame(const uint8_t* rgb, uint32_t rows, uint32_t columns,
                                                          int quality) {
  if (rows == 0 || columns == 0 || rows > 65535 || columns > 65535) return InvalidArgument("bad JPEG frame size");
  // ECC_lossyYCbCr with 4:2:2 sampling: the IJG compressor converts the RGB input to YCbCr and subsamples chroma
  // horizontally, which PS3.5 8.2.1 names YBR_FULL_422.
  const DJCodecParameter parameters(ECC_lossyYCbCr, EDC_photometricInterpretation, EUC_never, EPC_default, OFFalse,
                                    OFFalse, OFFalse, OFFalse, 0, 0, 0, OFFalse, ESS_422);
  DJCompressIJG8Bit encoder(parameters, EJM_baseline, static_cast<Uint8>(quality));
  std::vector<uint8_t> input(rgb, rgb + size_t{rows} * columns * 3);  // the codec's signature is not const
  Uint8* out = nullptr;
  Uint32 length = 0;
  const OFCondition c = encoder.encode(static_cast<Uint16>(columns), static_cast<Uint16>(rows), EPI_RGB, 3,
                                       input.data(), out, length);
  std::unique_ptr<Uint8[]> owned(out);  // DCMTK allocates the stream with new[]
  if (c.bad() || out == nullptr || length == 0) return Internal(std::string("JPEG encoding failed: ") + c.text());
  return std::vector<uint8_t>(out, out + length);
}

std::string WsiKi67FolderName(const WsiKi67Options& o) {
  std::string name = "wsi-ki67-s" + std::to_string(o.seed) + "-" + std::to_string(o.size);
  if (o.tile != 256) name += "-t" + std::to_string(o.tile);
  if (o.missing_tile) name += "-missing-tile-" + std::to_string(*o.missing_tile);
  if (o.bad_tile_geometry) name += "-bad-tile-geometry";
  if (o.rle) name += "-rle";
  if (o.jpeg) name += "-jpeg" + std::to_string(o.jpeg_quality);
  return name;
}

namespace {

// Per-tile counts and totals, filled tile by tile.
struct Counter {
  std::vector<uint32_t> positive, negative;
  uint64_t total_positive = 0, total_negative = 0;

  explicit Counter(uint32_t tiles) : positive(tiles, 0), negative(tiles, 0) {}
  void Add(uint32_t tile, const std::vector<Ki67Nucleus>& nuclei) {
    for (const Ki67Nucleus& n : nuclei) (n.positive ? positive : negative)[tile] += 1;
    total_positive += positive[tile];
    total_negative += negative[tile];
  }
  void Finish(const WsiKi67Slide& slide, WsiKi67Truth& t) const {
    const WsiKi67Options& o = slide.options();
    t.seed = o.seed;
    t.size = o.size;
    t.tile = o.tile;
    t.tiles_across = slide.tiles_across();
    t.tiles_down = slide.tiles_down();
    t.pixel_spacing_mm = kWsiKi67PixelSpacingMm;
    t.requested_index_percent = o.index_percent;
    t.positive_nuclei = total_positive;
    t.negative_nuclei = total_negative;
    const uint64_t all = total_positive + total_negative;
    t.global_index_percent = all == 0 ? 0 : 100.0 * static_cast<double>(total_positive) / static_cast<double>(all);
    const uint32_t w = Ki67HotSpotWindowTiles(o.tile, kWsiKi67PixelSpacingMm, t.tiles_across, t.tiles_down);
    t.hotspot = FindKi67HotSpot(positive, negative, t.tiles_across, t.tiles_down, w);
    t.hotspot_column = t.hotspot.tile_column * o.tile;
    t.hotspot_row = t.hotspot.tile_row * o.tile;
    t.hotspot_width = t.hotspot_height = w * o.tile;
    t.hotspot_center_tile = (t.hotspot.tile_row + w / 2) * t.tiles_across + t.hotspot.tile_column + w / 2;
    t.hotspot_centers = slide.hotspot_centers();
  }
};

Status PutSequenceItem(DcmItem* parent, const DcmTagKey& sequence, DcmItem*& item) {
  item = nullptr;
  const OFCondition c = parent->findOrCreateSequenceItem(sequence, item, -2);
  if (c.bad() || item == nullptr) {
    return Internal("cannot create an item of " + std::string(DcmTag(sequence).getTagName()) + ": " +
                    (c.bad() ? c.text() : "no item"));
  }
  return Status::Ok();
}

// Everything but PixelData.
// LossyImageCompressionRatio is DS, at most 16 characters: the placeholder takes all 16 so that the real value,
// padded with trailing spaces (allowed in DS), fits in place.
constexpr const char* kRatioPlaceholder = "0000000000000001";

// Overwrites the ratio placeholder in the written header (the explicit VR little endian element
// (0028,2112) DS, length 16) with `ratio`.
Status PatchLossyRatio(const std::filesystem::path& file, double ratio) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(file.c_str(), "r+b"), &std::fclose);
  if (!f) return Unavailable("cannot reopen " + file.string());
  std::vector<char> head(64 * 1024);
  head.resize(std::fread(head.data(), 1, head.size(), f.get()));
  const std::string element = std::string("\x28\x00\x12\x21" "DS" "\x10\x00", 8) + kRatioPlaceholder;
  const auto at = std::search(head.begin(), head.end(), element.begin(), element.end());
  if (at == head.end()) return Internal("LossyImageCompressionRatio placeholder not found in " + file.string());
  char value[17];
  std::snprintf(value, sizeof value, "%-16.4f", ratio);
  if (std::fseek(f.get(), static_cast<long>((at - head.begin()) + 8), SEEK_SET) != 0 ||
      std::fwrite(value, 1, 16, f.get()) != 16 || std::fflush(f.get()) != 0) {
    return Unavailable("cannot write the compression ratio into " + file.string());
  }
  return Status::Ok();
}

Status FillHeader(DcmDataset* ds, const StudyIdentity& id, const WsiKi67Truth& t, uint32_t frames) {
  DicomPutter w(ds);
  const std::string& date = id.study_date;
  const std::string image_type = "ORIGINAL\\PRIMARY\\VOLUME\\NONE";
  // SOP Common, Patient, General Study, General Series, Whole Slide Microscopy Series.
  w.Put(DCM_SpecificCharacterSet, "ISO_IR 100");
  w.Put(DCM_ImageType, image_type);
  w.Put(DCM_SOPClassUID, UID_VLWholeSlideMicroscopyImageStorage);
  w.Put(DCM_SOPInstanceUID, t.sop_instance_uid);
  w.Put(DCM_StudyDate, date);
  w.Put(DCM_SeriesDate, date);
  w.Put(DCM_ContentDate, date);
  w.Put(DCM_AcquisitionDateTime, DateTime(id));
  w.Put(DCM_StudyTime, id.study_time);
  w.Put(DCM_SeriesTime, id.study_time);
  w.Put(DCM_ContentTime, id.study_time);
  w.Put(DCM_AccessionNumber, id.accession_number);
  w.Put(DCM_Modality, "SM");
  w.Put(DCM_Manufacturer, "AIHUB PHANTOM");
  w.Put(DCM_InstitutionName, id.institution_name);
  w.Put(DCM_ReferringPhysicianName, id.referring_physician_name);
  w.Put(DCM_StationName, "WSISCAN1");
  w.Put(DCM_StudyDescription, id.study_description);
  w.Put(DCM_SeriesDescription, "Ki-67 (MIB-1) IHC");
  w.Put(DCM_InstitutionalDepartmentName, id.department);
  w.Put(DCM_ManufacturerModelName, "SYNTHETIC WSI");
  w.Put(DCM_DeviceSerialNumber, "PHWSI0001");
  w.Put(DCM_SoftwareVersions, "aihub-phantom 1");
  w.Put(DCM_PatientName, id.patient_name);
  w.Put(DCM_PatientID, id.patient_id);
  w.Put(DCM_PatientBirthDate, id.patient_birth_date);
  w.Put(DCM_PatientSex, id.patient_sex);
  w.Put(DCM_PatientAge, id.patient_age);
  w.Put(DCM_StudyInstanceUID, t.study_instance_uid);
  w.Put(DCM_SeriesInstanceUID, t.series_instance_uid);
  w.Put(DCM_StudyID, id.study_id);
  w.Put(DCM_SeriesNumber, "1");
  w.Put(DCM_InstanceNumber, "1");
  // Frame of Reference: the slide coordinate system.
  w.Put(DCM_FrameOfReferenceUID, UidFromSeed(t.study_instance_uid + "/frame-of-reference"));
  w.Put(DCM_PositionReferenceIndicator, "SLIDE_CORNER");
  // Image Pixel: 8-bit RGB, colour-by-pixel.
  w.PutU16(DCM_SamplesPerPixel, 3);
  const bool jpeg = t.transfer_syntax_uid == UID_JPEGProcess1TransferSyntax;
  w.Put(DCM_PhotometricInterpretation, jpeg ? "YBR_FULL_422" : "RGB");
  w.PutU16(DCM_PlanarConfiguration, 0);
  w.PutU16(DCM_Rows, static_cast<uint16_t>(t.tile));
  w.PutU16(DCM_Columns, static_cast<uint16_t>(t.tile));
  w.PutU16(DCM_BitsAllocated, 8);
  w.PutU16(DCM_BitsStored, 8);
  w.PutU16(DCM_HighBit, 7);
  w.PutU16(DCM_PixelRepresentation, 0);
  w.Put(DCM_NumberOfFrames, std::to_string(frames));
  // Whole Slide Microscopy Image.
  // ImagedVolume* are FL (mm).
  if (ds->putAndInsertFloat32(DCM_ImagedVolumeWidth, static_cast<Float32>(t.total_columns * t.pixel_spacing_mm)).bad() ||
      ds->putAndInsertFloat32(DCM_ImagedVolumeHeight, static_cast<Float32>(t.total_rows * t.pixel_spacing_mm)).bad() ||
      ds->putAndInsertFloat32(DCM_ImagedVolumeDepth, 0.004f).bad() ||
      ds->putAndInsertUint32(DCM_TotalPixelMatrixColumns, t.total_columns).bad() ||
      ds->putAndInsertUint32(DCM_TotalPixelMatrixRows, t.total_rows).bad() ||
      ds->putAndInsertUint32(DCM_TotalPixelMatrixFocalPlanes, 1).bad() ||
      ds->putAndInsertUint32(DCM_NumberOfOpticalPaths, 1).bad()) {
    return Internal("cannot set the total pixel matrix attributes");
  }
  w.Put(DCM_ImageOrientationSlide, "0\\-1\\0\\-1\\0\\0");
  w.Put(DCM_LossyImageCompression, jpeg ? "01" : "00");
  if (jpeg) {
    w.Put(DCM_LossyImageCompressionMethod, "ISO_10918_1");
    // The ratio is known only once every tile is encoded: WriteWsiKi67 overwrites this fixed-width placeholder.
    w.Put(DCM_LossyImageCompressionRatio, kRatioPlaceholder);
  }
  w.Put(DCM_VolumetricProperties, "VOLUME");
  w.Put(DCM_SpecimenLabelInImage, "NO");
  w.Put(DCM_BurnedInAnnotation, "NO");
  w.Put(DCM_FocusMethod, "AUTO");
  w.Put(DCM_ExtendedDepthOfField, "NO");
  w.Put(DCM_DimensionOrganizationType, "TILED_FULL");
  w.Put(DCM_ContentQualification, "RESEARCH");
  if (!w.status().ok()) return w.status();

  DcmItem* item = nullptr;
  if (Status s = PutSequenceItem(ds, DCM_TotalPixelMatrixOriginSequence, item); !s.ok()) return s;
  DicomPutter origin(item);
  origin.Put(DCM_XOffsetInSlideCoordinateSystem, "20");
  origin.Put(DCM_YOffsetInSlideCoordinateSystem, "50");
  if (!origin.status().ok()) return origin.status();

  // Optical Path: one brightfield path.
  if (Status s = PutSequenceItem(ds, DCM_OpticalPathSequence, item); !s.ok()) return s;
  DicomPutter path(item);
  path.Put(DCM_OpticalPathIdentifier, "1");
  path.Put(DCM_OpticalPathDescription, "Brightfield");
  path.PutCode(DCM_IlluminationTypeCodeSequence, "111744", "DCM", "Brightfield illumination");
  path.PutCode(DCM_IlluminationColorCodeSequence, "414298005", "SCT", "Full Spectrum");
  path.Put(DCM_ObjectiveLensPower, "40");
  if (!path.status().ok()) return path.status();
  const std::vector<uint8_t> icc = SrgbIccProfile();
  if (item->putAndInsertUint8Array(DCM_ICCProfile, icc.data(), static_cast<unsigned long>(icc.size())).bad()) {
    return Internal("cannot set ICCProfile");
  }

  // Multi-frame Functional Groups (shared by every tile) and Multi-frame Dimension.
  DcmItem* shared = nullptr;
  if (Status s = PutSequenceItem(ds, DCM_SharedFunctionalGroupsSequence, shared); !s.ok()) return s;
  if (Status s = PutSequenceItem(shared, DCM_PixelMeasuresSequence, item); !s.ok()) return s;
  DicomPutter measures(item);
  measures.Put(DCM_PixelSpacing, FormatDs({t.pixel_spacing_mm, t.pixel_spacing_mm}));
  measures.Put(DCM_SliceThickness, "0.004");
  if (!measures.status().ok()) return measures.status();
  if (Status s = PutSequenceItem(shared, DCM_WholeSlideMicroscopyImageFrameTypeSequence, item); !s.ok()) return s;
  DicomPutter frame_type(item);
  frame_type.Put(DCM_FrameType, image_type);
  if (!frame_type.status().ok()) return frame_type.status();
  if (Status s = PutSequenceItem(shared, DCM_OpticalPathIdentificationSequence, item); !s.ok()) return s;
  DicomPutter path_id(item);
  path_id.Put(DCM_OpticalPathIdentifier, "1");
  if (!path_id.status().ok()) return path_id.status();

  const std::string dimension_uid = UidFromSeed(t.sop_instance_uid + "/dimension-organization");
  if (Status s = PutSequenceItem(ds, DCM_DimensionOrganizationSequence, item); !s.ok()) return s;
  DicomPutter organisation(item);
  organisation.Put(DCM_DimensionOrganizationUID, dimension_uid);
  if (!organisation.status().ok()) return organisation.status();
  for (const DcmTagKey& index : {DCM_ColumnPositionInTotalImagePixelMatrix, DCM_RowPositionInTotalImagePixelMatrix}) {
    item = nullptr;
    const OFCondition c = ds->findOrCreateSequenceItem(DCM_DimensionIndexSequence, item, -2);
    if (c.bad() || item == nullptr) return Internal("cannot create a DimensionIndexSequence item");
    if (item->putAndInsertTagKey(DCM_DimensionIndexPointer, index).bad() ||
        item->putAndInsertTagKey(DCM_FunctionalGroupPointer, DCM_PlanePositionSlideSequence).bad()) {
      return Internal("cannot set a dimension index");
    }
    DicomPutter dim(item);
    dim.Put(DCM_DimensionOrganizationUID, dimension_uid);
    if (!dim.status().ok()) return dim.status();
  }

  // Specimen: one slide with one section.
  DicomPutter specimen(ds);
  specimen.Put(DCM_ContainerIdentifier, "SLIDE-" + std::to_string(t.seed));
  specimen.PutEmptySequence(DCM_IssuerOfTheContainerIdentifierSequence);
  specimen.PutCode(DCM_ContainerTypeCodeSequence, "433466003", "SCT", "Microscope slide");
  specimen.PutEmptySequence(DCM_AcquisitionContextSequence);
  if (!specimen.status().ok()) return specimen.status();
  if (Status s = PutSequenceItem(ds, DCM_SpecimenDescriptionSequence, item); !s.ok()) return s;
  DicomPutter description(item);
  description.Put(DCM_SpecimenIdentifier, "S" + std::to_string(t.seed) + "-A1");
  description.Put(DCM_SpecimenUID, UidFromSeed(t.study_instance_uid + "/specimen/1"));
  description.PutEmptySequence(DCM_IssuerOfTheSpecimenIdentifierSequence);
  description.PutEmptySequence(DCM_SpecimenPreparationSequence);
  return description.status();
}

// The PixelData element header (explicit VR little endian, OB, 32-bit length) for `length` bytes of frames.
std::array<uint8_t, 12> PixelDataHeader(uint32_t length) {
  return {0xe0, 0x7f, 0x10, 0x00, 'O', 'B', 0, 0, static_cast<uint8_t>(length), static_cast<uint8_t>(length >> 8),
          static_cast<uint8_t>(length >> 16), static_cast<uint8_t>(length >> 24)};
}

// PackBits of one row (DICOM RLE, PS3.5 G.3.1): runs of 3..128 equal bytes as (1 - n, byte), the rest as literal
// runs of up to 128 bytes (n - 1, bytes...).
void PackRow(const uint8_t* row, uint32_t n, std::vector<uint8_t>& out) {
  uint32_t i = 0;
  while (i < n) {
    uint32_t run = 1;
    while (i + run < n && run < 128 && row[i + run] == row[i]) ++run;
    if (run >= 3) {
      out.push_back(static_cast<uint8_t>(static_cast<int8_t>(1 - static_cast<int>(run))));
      out.push_back(row[i]);
      i += run;
      continue;
    }
    // A literal run: up to the next run of three equal bytes.
    uint32_t end = i;
    while (end < n && end - i < 128) {
      if (end + 2 < n && row[end] == row[end + 1] && row[end] == row[end + 2]) break;
      ++end;
    }
    if (end == i) end = i + 1;  // cannot happen (a run of 3 would have been taken), kept for safety
    out.push_back(static_cast<uint8_t>(end - i - 1));
    out.insert(out.end(), row + i, row + end);
    i = end;
  }
}

void PutLe32(uint8_t* at, uint32_t v) {
  for (int k = 0; k < 4; ++k) at[k] = static_cast<uint8_t>(v >> (8 * k));
}

}  // namespace

std::vector<uint8_t> EncodeRleRgbFrame(const uint8_t* rgb, uint32_t rows, uint32_t columns) {
  std::vector<uint8_t> out(64, 0);
  std::vector<uint8_t> plane_row(columns);
  PutLe32(out.data(), 3);
  for (int k = 0; k < 3; ++k) {
    PutLe32(out.data() + 4 + 4 * k, static_cast<uint32_t>(out.size()));
    for (uint32_t r = 0; r < rows; ++r) {
      const uint8_t* row = rgb + static_cast<size_t>(r) * columns * 3;
      for (uint32_t c = 0; c < columns; ++c) plane_row[c] = row[3 * c + k];
      PackRow(plane_row.data(), columns, out);
    }
    if (out.size() % 2 != 0) out.push_back(0);
  }
  return out;
}

WsiKi67Truth CountWsiKi67(const WsiKi67Slide& slide) {
  Counter counter(slide.tile_count());
  for (uint32_t tile = 0; tile < slide.tile_count(); ++tile) counter.Add(tile, slide.TileNuclei(tile));
  WsiKi67Truth t;
  counter.Finish(slide, t);
  return t;
}

StatusOr<WsiKi67Truth> WriteWsiKi67(const WsiKi67Options& o, const std::filesystem::path& out_dir) {
  StatusOr<WsiKi67Slide> created = WsiKi67Slide::Create(o);
  if (!created.ok()) return created.status();
  const WsiKi67Slide& slide = *created;
  const uint32_t tiles = slide.tile_count();

  WsiKi67Truth t;
  t.folder = WsiKi67FolderName(o);
  t.file = "SM000001.dcm";
  const std::string content_key = "wsi-ki67/" + t.folder + "/" + FormatDs(o.index_percent) + "/" +
                                  std::to_string(o.hotspots) + "/" + o.department + "/" + o.institution;
  StudyIdentity id = MakeStudyIdentity("SLIDE", o.seed, content_key);
  id.study_description = "SM KI-67 IHC";
  id.institution_name = o.institution;
  id.department = o.department;
  id.calling_ae = o.calling_ae;
  t.study_instance_uid = id.study_instance_uid;
  t.series_instance_uid = UidFromSeed(t.study_instance_uid + "/series/1");
  t.sop_instance_uid = UidFromSeed(t.series_instance_uid + "/instance/1");
  t.seed = o.seed;
  t.tile = o.tile;
  t.pixel_spacing_mm = kWsiKi67PixelSpacingMm;
  t.total_columns = t.total_rows = o.size + (o.bad_tile_geometry ? o.tile / 2 : 0);
  t.frames = tiles - (o.missing_tile ? 1 : 0);
  if (o.missing_tile) {
    t.defects.push_back({"missing_tile", *o.missing_tile,
                         "tile " + std::to_string(*o.missing_tile) + " (frame " + std::to_string(*o.missing_tile + 1) +
                             " of TILED_FULL) is not written: NumberOfFrames " + std::to_string(t.frames) + " for " +
                             std::to_string(tiles) + " tiles; later frames sit one place early"});
  }
  if (o.bad_tile_geometry) {
    const uint32_t needed = (t.total_columns + o.tile - 1) / o.tile;
    t.defects.push_back({"bad_tile_geometry", 0,
                         "TotalPixelMatrixColumns/Rows " + std::to_string(t.total_columns) + " are not a multiple "
                         "of the " + std::to_string(o.tile) + " px tile: TILED_FULL needs " +
                         std::to_string(needed) + " x " + std::to_string(needed) + " tiles, the file has " +
                         std::to_string(t.frames) + " frames"});
  }

  const std::filesystem::path dir = out_dir / t.folder;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create " + dir.string() + ": " + ec.message());

  const E_TransferSyntax xfer = o.rle ? EXS_RLELossless : o.jpeg ? EXS_JPEGProcess1 : EXS_LittleEndianExplicit;
  t.transfer_syntax_uid = DcmXfer(xfer).getXferID();
  const bool encapsulated = o.rle || o.jpeg;

  // The header goes through DCMTK without PixelData; PixelData's element header and the frames are appended.
  DcmFileFormat format;
  if (Status s = FillHeader(format.getDataset(), id, t, t.frames); !s.ok()) return s;
  if (!id.calling_ae.empty() &&
      format.getMetaInfo()->putAndInsertString(DCM_SourceApplicationEntityTitle, id.calling_ae.c_str()).bad()) {
    return Internal("cannot set SourceApplicationEntityTitle");
  }
  const std::filesystem::path file = dir / t.file;
  // An encapsulated transfer syntax's data set is explicit VR little endian too; only PixelData differs.
  const OFCondition c = format.saveFile(file.c_str(), xfer, EET_ExplicitLength, EGL_withoutGL, EPD_noChange, 0, 0,
                                        EWM_updateMeta);
  if (c.bad()) return Unavailable("cannot write " + file.string() + ": " + c.text());

  const uint64_t frame_bytes = uint64_t{o.tile} * o.tile * 3;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(file.c_str(), "ab"), &std::fclose);
  if (!out) return Unavailable("cannot append to " + file.string());
  std::setvbuf(out.get(), nullptr, _IOFBF, 1 << 22);
  auto write = [&](const uint8_t* data, size_t n) { return std::fwrite(data, 1, n, out.get()) == n; };
  bool ok = true;
  if (encapsulated) {
    // Undefined length, an empty Basic Offset Table item, then one fragment item per frame.
    const uint8_t start[20] = {0xe0, 0x7f, 0x10, 0x00, 'O', 'B', 0, 0, 0xff, 0xff, 0xff, 0xff,
                               0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0};
    ok = write(start, sizeof start);
  } else {
    const uint64_t length = frame_bytes * t.frames;  // < 4 GiB - 1 (checked by Create), even
    const auto header = PixelDataHeader(static_cast<uint32_t>(length));
    ok = write(header.data(), header.size());
  }
  Counter counter(tiles);
  uint64_t jpeg_bytes = 0;
  std::vector<uint8_t> rgb(frame_bytes);
  for (uint32_t tile = 0; tile < tiles && ok; ++tile) {
    const std::vector<Ki67Nucleus> nuclei = slide.TileNuclei(tile);
    counter.Add(tile, nuclei);
    if (o.missing_tile && *o.missing_tile == tile) continue;
    slide.RenderTile(tile, nuclei, rgb.data());
    if (encapsulated) {
      std::vector<uint8_t> fragment;
      if (o.rle) {
        fragment = EncodeRleRgbFrame(rgb.data(), o.tile, o.tile);
      } else {
        StatusOr<std::vector<uint8_t>> encoded = EncodeJpegBaselineRgbFrame(rgb.data(), o.tile, o.tile, o.jpeg_quality);
        if (!encoded.ok()) return encoded.status();
        fragment = std::move(*encoded);
      }
      jpeg_bytes += o.jpeg ? fragment.size() : 0;
      if (fragment.size() % 2 != 0) fragment.push_back(0);  // fragments have even length (JPEG: after EOI)
      uint8_t item[8] = {0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0};
      PutLe32(item + 4, static_cast<uint32_t>(fragment.size()));
      ok = write(item, sizeof item) && write(fragment.data(), fragment.size());
    } else {
      ok = write(rgb.data(), rgb.size());
    }
  }
  if (encapsulated && ok) {
    const uint8_t end[8] = {0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0};
    ok = write(end, sizeof end);
  }
  ok = ok && std::fflush(out.get()) == 0;
  std::FILE* raw = out.release();
  ok = (std::fclose(raw) == 0) && ok;
  if (!ok) return Unavailable("cannot write the tiles of " + file.string());
  t.file_bytes = std::filesystem::file_size(file, ec);
  if (o.jpeg) {
    const double ratio = static_cast<double>(frame_bytes * t.frames) / static_cast<double>(jpeg_bytes);
    if (Status s = PatchLossyRatio(file, ratio); !s.ok()) return s;
  }

  WsiKi67Truth counted;
  counter.Finish(slide, counted);
  t.positive_nuclei = counted.positive_nuclei;
  t.negative_nuclei = counted.negative_nuclei;
  t.global_index_percent = counted.global_index_percent;
  t.hotspot = counted.hotspot;
  t.hotspot_column = counted.hotspot_column;
  t.hotspot_row = counted.hotspot_row;
  t.hotspot_width = counted.hotspot_width;
  t.hotspot_height = counted.hotspot_height;
  t.hotspot_center_tile = counted.hotspot_center_tile;
  t.hotspot_centers = counted.hotspot_centers;
  t.size = counted.size;
  t.tiles_across = counted.tiles_across;
  t.tiles_down = counted.tiles_down;
  t.requested_index_percent = counted.requested_index_percent;

  nlohmann::json j = WsiKi67TruthToJson(t);
  j["patient_id"] = id.patient_id;
  j["accession_number"] = id.accession_number;
  j["calling_ae"] = id.calling_ae;
  j["department"] = id.department;
  const std::filesystem::path truth_path = dir / "truth.json";
  std::ofstream truth_out(truth_path, std::ios::binary | std::ios::trunc);
  truth_out << j.dump(2) << "\n";
  truth_out.close();
  if (!truth_out) return Unavailable("cannot write " + truth_path.string());
  return t;
}

nlohmann::json WsiKi67TruthToJson(const WsiKi67Truth& t) {
  nlohmann::json j;
  j["seed"] = t.seed;
  j["study_instance_uid"] = t.study_instance_uid;
  j["series_instance_uid"] = t.series_instance_uid;
  j["sop_instance_uid"] = t.sop_instance_uid;
  j["folder"] = t.folder;
  j["files"] = {t.file};
  j["file_bytes"] = t.file_bytes;
  j["geometry"] = {{"size", t.size},
                   {"tile", t.tile},
                   {"tiles_across", t.tiles_across},
                   {"tiles_down", t.tiles_down},
                   {"number_of_frames", t.frames},
                   {"total_pixel_matrix_columns", t.total_columns},
                   {"total_pixel_matrix_rows", t.total_rows},
                   {"pixel_spacing_mm", t.pixel_spacing_mm},
                   {"transfer_syntax_uid", t.transfer_syntax_uid},
                   {"frame_order", "TILED_FULL: frame k (1-based) is tile k-1, row-major"}};
  j["ki67"] = {
      {"requested_index_percent", t.requested_index_percent},
      {"positive_nuclei", t.positive_nuclei},
      {"negative_nuclei", t.negative_nuclei},
      {"global_index_percent", t.global_index_percent},
      {"definition", "index = positive / (positive + negative) * 100 over every nucleus the generator placed; "
                     "each nucleus lies wholly inside one tile"}};
  nlohmann::json centers = nlohmann::json::array();
  for (const auto& c : t.hotspot_centers) centers.push_back({{"column", c[0]}, {"row", c[1]}});
  j["hotspot"] = {
      {"index_percent", t.hotspot.index_percent},
      {"positive_nuclei", t.hotspot.positive},
      {"negative_nuclei", t.hotspot.negative},
      {"window_tiles", t.hotspot.window_tiles},
      {"tile_column", t.hotspot.tile_column},
      {"tile_row", t.hotspot.tile_row},
      {"rectangle", {{"column", t.hotspot_column}, {"row", t.hotspot_row}, {"width", t.hotspot_width},
                     {"height", t.hotspot_height}}},
      {"center_tile", t.hotspot_center_tile},
      {"generated_centers", centers},
      {"definition",
       "square window of W x W tiles, W = the odd tile count nearest to sqrt(0.196 mm^2) (one 40x high-power "
       "field) / tile width, at most the tiles across and down; stepped one tile at a time over the tile grid; a "
       "nucleus belongs to the tile holding its centre; the window with the most positive nuclei (ties: first in "
       "row-major order of its top-left tile); index = positive / all nuclei in it * 100; rectangle in 0-based "
       "total-pixel-matrix pixels"}};
  nlohmann::json defects = nlohmann::json::array();
  for (const WsiKi67Defect& d : t.defects) {
    nlohmann::json dj = {{"kind", d.kind}, {"detail", d.detail}};
    if (d.kind == "missing_tile") dj["tile"] = d.tile;
    defects.push_back(dj);
  }
  j["defects"] = defects;
  return j;
}

}  // namespace aihub::phantom
