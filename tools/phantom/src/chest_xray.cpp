#include "phantom/chest_xray.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <system_error>

#include "common/hash.h"
#include "phantom/random.h"
#include "phantom_util.h"

namespace aihub::phantom {
namespace {

using internal::FormatDs;

constexpr double kPi = 3.14159265358979323846;
constexpr double kFieldWidthMm = 348;
constexpr double kFieldHeightMm = 425;
constexpr double kCentreY = kFieldHeightMm / 2;
// Pixel value = kOffset + kGain * attenuation (mm of water equivalent) + noise, in 12 bits.
constexpr double kOffset = 120;
constexpr double kGain = 13.5;
constexpr double kNoiseSd = 14;
constexpr int kMaxValue = 4095;
constexpr double kParenchyma = 0.3;  // tissue and blood fraction of aerated lung, along the beam
constexpr int kAngles = 1440;         // angular table of the pneumothorax side
constexpr double kMaxSizePercent = 50;

inline double Sq(double v) { return v * v; }

// What the projection passes through at a pixel, for landmarks.
enum Flag : uint8_t {
  kFlagBody = 1,
  kFlagLung = 2,
  kFlagPneumothorax = 4,
  kFlagRib = 8,   // posterior rib
  kFlagBone = 16, // any other bone
  kFlagVessel = 32,
  kFlagLine = 64,
  kFlagBubble = 128,
};

template <size_t N>
double Interpolate(const std::array<std::array<double, 2>, N>& table, double x) {
  if (x <= table[0][0]) return table[0][1];
  for (size_t i = 1; i < N; ++i) {
    if (x <= table[i][0]) {
      const double t = (x - table[i - 1][0]) / (table[i][0] - table[i - 1][0]);
      return table[i - 1][1] + t * (table[i][1] - table[i - 1][1]);
    }
  }
  return table[N - 1][1];
}

// Template coordinates (mm): tx to the image right (patient left), ty down from the top of the field, for a chest
// of scale 1 centred in it. u = |tx| on a lung's side is the lateral distance from the midline.
constexpr std::array<std::array<double, 2>, 8> kHalfWidth{
    {{0, 52}, {30, 56}, {60, 112}, {85, 160}, {150, 157}, {250, 150}, {330, 146}, {425, 150}}};
constexpr std::array<std::array<double, 2>, 7> kDepth{
    {{0, 95}, {40, 110}, {85, 190}, {130, 215}, {250, 230}, {330, 240}, {425, 240}}};

struct Segment {  // a vessel, in lateral template coordinates (u, ty)
  double u0, y0, u1, y1, r0, r1;
};

struct Anatomy {
  double s = 1, ox = 0, oy = 0;
  std::array<double, 2> dome_top{};  // [0] right lung, [1] left lung
  double heart = 1;                  // scale of the heart's bulge into the left lung
  double lung_depth = 150;
  double rib_shift = 0;
  std::array<std::vector<Segment>, 2> vessels;
  std::array<std::array<double, 2>, 2> hilum{};

  double DomeY(int side, double u) const { return dome_top[side] + 0.0065 * Sq(u - 62); }
  double MediastinumEdge(int side, double ty) const {
    const auto bump = [](double t) { return std::max(0.0, 1 - t * t); };
    // The heart rests on the diaphragm: below its widest level the borders stay out to the cardiophrenic angles.
    if (side == 0) return 24 + 20 * (ty > 235 ? 1.0 : bump((ty - 235) / 55));  // right atrium
    return 22 + 10 * std::exp(-Sq((ty - 112) / 16))                           // aortic knob
           + 5 * bump((ty - 150) / 20)                                         // pulmonary trunk
           + heart * 62 * (ty > 250 ? 1.0 : std::pow(bump((ty - 250) / 85), 0.6));  // left ventricle
  }
  // Depth inside the lung field (mm, > 0 inside); the smallest of the distances to the lung's boundaries.
  double LungMargin(int side, double u, double ty) const {
    if (ty < 40 || ty > 345 || u < 10 || u > 142) return -1;
    const double rho = std::sqrt(Sq((u - 74) / 62) + Sq((ty - 188) / 142));
    if (rho >= 1) return -1;
    double m = rho > 1e-6 ? std::hypot(u - 74, ty - 188) * (1 / rho - 1) : 62;  // along the ray from the centre
    m = std::min(m, DomeY(side, u) - ty);
    return std::min(m, u - MediastinumEdge(side, ty));
  }
};

// Lateral edge of the lung fields at height ty: where the ribs end at the chest wall.
double LungLateral(double ty) { return 74 + 62 * std::sqrt(std::max(0.0, 1 - Sq((ty - 188) / 142))); }

void GrowVessels(Rng& rng, double u, double y, double angle, double length, double r, int depth,
                 std::vector<Segment>& out) {
  if (depth == 0 || r < 0.3) return;
  const double u1 = u + length * std::cos(angle), y1 = y + length * std::sin(angle);
  const double r1 = r * 0.8;
  out.push_back({u, y, u1, y1, r, r1});
  for (double sign : {-1.0, 1.0}) {
    GrowVessels(rng, u1, y1, angle + sign * rng.Uniform(14, 30) * kPi / 180, length * rng.Uniform(0.68, 0.8),
                r1 * 0.85, depth - 1, out);
  }
}

Anatomy DrawAnatomy(Rng& rng) {
  Anatomy a;
  a.s = rng.Uniform(0.93, 1.05);
  a.ox = rng.Uniform(-6, 6);
  a.oy = rng.Uniform(-8, 8);
  a.dome_top = {282 + rng.Uniform(-6, 6), 294 + rng.Uniform(-6, 6)};
  a.heart = rng.Uniform(0.85, 1.15);
  a.lung_depth = rng.Uniform(140, 165);
  a.rib_shift = rng.Uniform(-4, 4);
  a.hilum = {{{46 + rng.Uniform(-3, 3), 172 + rng.Uniform(-5, 5)}, {50 + rng.Uniform(-3, 3), 166 + rng.Uniform(-5, 5)}}};
  for (int side = 0; side < 2; ++side) {
    for (double deg : {-80.0, -55.0, -30.0, -5.0, 20.0, 45.0, 70.0}) {
      GrowVessels(rng, a.hilum[side][0], a.hilum[side][1], (deg + rng.Uniform(-6, 6)) * kPi / 180,
                  rng.Uniform(26, 38), 3.2, 7, a.vessels[side]);
    }
  }
  return a;
}

// The pneumothorax in polar coordinates about a centre in the lung: the hemithorax boundary R_h(theta) and the
// collapsed lung's R_c = R_h (1 - f w(theta)), with w largest towards the apex and the lateral wall.
struct Collapse {
  int side = 0;
  double cu = 78, cy = 175;  // centre, lateral template coordinates
  double f = 0;
  std::vector<double> rh, w;  // per angle

  // Full collapse from 20 degrees medial of the apex round to 100 degrees lateral of it, tapering to none at 55
  // degrees medial (the lung stays at the mediastinum and hilum) and 140 degrees lateral (the costophrenic angle).
  static double Weight(double theta) {
    const double phi = (theta + kPi / 2) * 180 / kPi;  // 0 up, positive lateral
    if (phi <= -55 || phi >= 140) return 0;
    if (phi < -20) return Smooth((phi + 55) / 35);
    if (phi > 100) return Smooth((140 - phi) / 40);
    return 1;
  }
  static double Smooth(double t) { return t * t * (3 - 2 * t); }
  int Index(double theta) const {
    const int i = static_cast<int>(std::floor((theta + kPi) / (2 * kPi) * kAngles));
    return std::clamp(i, 0, kAngles - 1);
  }
  void Build(const Anatomy& a) {
    rh.assign(kAngles, 0);
    w.assign(kAngles, 0);
    for (int i = 0; i < kAngles; ++i) {
      const double theta = -kPi + (i + 0.5) * 2 * kPi / kAngles;
      const double du = std::cos(theta), dy = std::sin(theta);
      double r = 0;
      while (r < 260 && a.LungMargin(side, cu + (r + 0.25) * du, cy + (r + 0.25) * dy) > 0) r += 0.25;
      rh[i] = r;
      w[i] = Weight(theta);
    }
  }
};

// Fraction of the hemithorax inside the pneumothorax for collapse f, on a 1 mm grid.
struct AreaModel {
  std::vector<double> q, w;  // r / R_h and weight per lung cell
  size_t total = 0;
  double Fraction(double f) const {
    size_t n = 0;
    for (size_t i = 0; i < q.size(); ++i) n += w[i] > 0 && q[i] > 1 - f * w[i] && q[i] <= 1;
    return total ? static_cast<double>(n) / total : 0;
  }
};

AreaModel BuildAreaModel(const Anatomy& a, const Collapse& c) {
  AreaModel m;
  for (double ty = 40.5; ty < 345; ty += 1) {
    for (double u = 10.5; u < 142; u += 1) {
      if (a.LungMargin(c.side, u, ty) <= 0) continue;
      ++m.total;
      const double du = u - c.cu, dy = ty - c.cy;
      const int i = c.Index(std::atan2(dy, du));
      m.q.push_back(c.rh[i] > 0 ? std::hypot(du, dy) / c.rh[i] : 2);
      m.w.push_back(c.w[i]);
    }
  }
  return m;
}

// Best pixel near (c0, r0) whose 5x5 neighbourhood has exactly `flags`.
bool FindPixel(const std::vector<uint8_t>& flags, uint32_t cols, uint32_t rows, double c0d, double r0d, uint8_t want,
               int radius, uint32_t& out_c, uint32_t& out_r) {
  const int c0 = static_cast<int>(std::lround(c0d)), r0 = static_cast<int>(std::lround(r0d));
  long best = -1;
  for (int r = std::max(2, r0 - radius); r <= std::min(static_cast<int>(rows) - 3, r0 + radius); ++r) {
    for (int c = std::max(2, c0 - radius); c <= std::min(static_cast<int>(cols) - 3, c0 + radius); ++c) {
      const long d = static_cast<long>(c - c0) * (c - c0) + static_cast<long>(r - r0) * (r - r0);
      if (best >= 0 && d >= best) continue;
      if (flags[static_cast<size_t>(r) * cols + c] != want) continue;
      bool uniform = true;
      for (int dr = -2; dr <= 2 && uniform; ++dr)
        for (int dc = -2; dc <= 2 && uniform; ++dc) uniform = flags[static_cast<size_t>(r + dr) * cols + c + dc] == want;
      if (!uniform) continue;
      best = d;
      out_c = static_cast<uint32_t>(c);
      out_r = static_cast<uint32_t>(r);
    }
  }
  return best >= 0;
}

Status ValidateOptions(const ChestXrayOptions& o) {
  if (o.rows < 256 || o.rows > 4096 || o.columns < 256 || o.columns > 4096) {
    return InvalidArgument("rows and columns must be in 256..4096");
  }
  if (o.size_percent && !(*o.size_percent >= 1 && *o.size_percent <= kMaxSizePercent)) {
    return InvalidArgument("pneumothorax size must be in 1..50 percent of the hemithorax");
  }
  return internal::ValidateSite(o.department, o.calling_ae, o.institution);
}

}  // namespace

StatusOr<ChestXrayStudy> GenerateChestXray(const ChestXrayOptions& o) {
  if (Status s = ValidateOptions(o); !s.ok()) return s;
  Rng anatomy_rng(MixSeed(o.seed, 1));
  const Anatomy a = DrawAnatomy(anatomy_rng);
  Rng lesion_rng(MixSeed(o.seed, 2));
  const Side side = o.side ? *o.side : (lesion_rng.Uniform() < 0.5 ? Side::kRight : Side::kLeft);
  const double wanted = o.size_percent ? *o.size_percent : lesion_rng.Uniform(5, 45);

  ChestXrayStudy study;
  ChestXrayTruth& truth = study.truth;
  PneumothoraxTruth& pt = truth.pneumothorax;
  const uint32_t cols = o.columns, rows = o.rows;
  const double sp = std::max(kFieldWidthMm / cols, kFieldHeightMm / rows);
  const double width_mm = cols * sp, height_mm = rows * sp;
  const double s = a.s;

  // Template coordinates of every column and row.
  std::vector<double> tx(cols), ty(rows);
  for (uint32_t c = 0; c < cols; ++c) tx[c] = ((c + 0.5) * sp - width_mm / 2 - a.ox) / s;
  for (uint32_t r = 0; r < rows; ++r) {
    const double y = (r + 0.5) * sp - (height_mm - kFieldHeightMm) / 2;
    ty[r] = (y - a.oy - kCentreY) / s + kCentreY;
  }
  const auto column_of = [&](double t) { return ((a.ox + s * t) + width_mm / 2) / sp - 0.5; };
  const auto row_of = [&](double t) {
    return (a.oy + kCentreY + s * (t - kCentreY) + (height_mm - kFieldHeightMm) / 2) / sp - 0.5;
  };
  const auto sigma = [](int lung_side) { return lung_side == 0 ? -1.0 : 1.0; };  // right lung on the image left

  // The pneumothorax: collapse fraction f solved on a coarse grid for the wanted size.
  Collapse collapse;
  collapse.side = side == Side::kRight ? 0 : 1;
  if (o.pneumothorax) {
    collapse.Build(a);
    const AreaModel model = BuildAreaModel(a, collapse);
    double lo = 0, hi = 0.97;
    if (model.Fraction(hi) * 100 < wanted - 0.5) {
      return InvalidArgument("pneumothorax size " + FormatDs(wanted) + "% is larger than this chest allows");
    }
    for (int i = 0; i < 40; ++i) {
      const double mid = (lo + hi) / 2;
      (model.Fraction(mid) * 100 < wanted ? lo : hi) = mid;
    }
    collapse.f = (lo + hi) / 2;
  }
  const bool ptx = o.pneumothorax;
  const double line_mm = std::max(0.6, 1.5 * sp) / s;

  std::vector<float> att(static_cast<size_t>(rows) * cols, 0.0f);
  std::vector<uint8_t> flags(att.size(), 0);
  study.label_mask.assign(att.size(), 0);

  // Body and lungs, pixel by pixel.
  for (uint32_t r = 0; r < rows; ++r) {
    const double y = ty[r];
    const double half_width = Interpolate(kHalfWidth, y), depth = Interpolate(kDepth, y) * s;
    const size_t row = static_cast<size_t>(r) * cols;
    for (uint32_t c = 0; c < cols; ++c) {
      const double x = tx[c];
      if (std::fabs(x) >= half_width) continue;
      const size_t i = row + c;
      double A = depth * std::sqrt(1 - Sq(x / half_width));
      uint8_t f = kFlagBody;
      const int lung_side = x < 0 ? 0 : 1;
      const double u = std::fabs(x);
      const double margin = a.LungMargin(lung_side, u, y);
      if (margin > 0) {
        double air = a.lung_depth * s * std::sqrt(std::min(margin / 20, 1.0));
        f |= kFlagLung;
        double density = kParenchyma;
        if (ptx && lung_side == collapse.side) {
          ++pt.hemithorax_pixels;
          const double du = u - collapse.cu, dy = y - collapse.cy;
          const int k = collapse.Index(std::atan2(dy, du));
          const double w = collapse.w[k], rh = collapse.rh[k];
          const double rc = rh * (1 - collapse.f * w);
          const double rad = std::hypot(du, dy);
          if (w > 0 && rad > rc && rad <= rh + 0.5) {
            // Pleural air: no lung tissue, and it fills the space out to the curved chest wall, so the air column
            // stays deep almost to the edge of the hemithorax.
            density = 0;
            air = a.lung_depth * s * std::sqrt(std::min(margin / 6, 1.0));
            f |= kFlagPneumothorax;
            study.label_mask[i] = kXrayLabelPneumothorax;
          } else {
            density = kParenchyma + 0.25 * collapse.f * w;  // the collapsed lung is denser
            if (w > 0 && collapse.f * w * rh > 1 && rad > rc - line_mm && rad <= rc) {
              A += 6 * s;  // visceral pleura
              f |= kFlagLine;
              study.label_mask[i] = kXrayLabelPleuralLine;
            }
          }
        }
        A -= (1 - density) * std::min(air, 0.8 * A);  // the air column cannot outgrow the body
      }
      att[i] = static_cast<float>(A);
      flags[i] = f;
    }
  }

  // Bones and vessels, added band by band.
  const auto add = [&](size_t i, double value, uint8_t flag) {
    att[i] += static_cast<float>(value);
    flags[i] |= flag;
  };
  // Thoracic spine, dimmer at the discs.
  for (uint32_t r = 0; r < rows; ++r) {
    const double disc = std::fmod(ty[r] + 400 - a.rib_shift, 26) < 5 ? 0.45 : 1.0;
    for (uint32_t c = 0; c < cols; ++c) {
      const double t = tx[c] / 22;
      if (std::fabs(t) < 1 && (flags[static_cast<size_t>(r) * cols + c] & kFlagBody)) {
        add(static_cast<size_t>(r) * cols + c, 16 * s * disc * std::sqrt(1 - t * t), kFlagBone);
      }
    }
  }
  // A band along a curve ty = centre(u) on one side, u in [u0, u1], half height hw(u) mm.
  const auto band = [&](int lung_side, double u0, double u1, auto&& centre, auto&& half_height, auto&& amplitude,
                        bool cortical, uint8_t flag) {
    for (uint32_t c = 0; c < cols; ++c) {
      const double u = sigma(lung_side) * tx[c];
      if (u < u0 || u > u1) continue;
      const double yc = centre(u), hw = half_height(u), amp = amplitude(u);
      const double r_lo = std::max(0.0, std::floor(row_of(yc - hw))), r_hi = std::min(rows - 1.0, std::ceil(row_of(yc + hw)));
      for (double rr = r_lo; rr <= r_hi; ++rr) {
        const uint32_t r = static_cast<uint32_t>(rr);
        const double v = (ty[r] - yc) / hw;
        if (std::fabs(v) >= 1) continue;
        double p = std::sqrt(1 - v * v);
        if (cortical) p -= 0.5 * std::sqrt(std::max(0.0, 1 - Sq(v / 0.72)));
        const size_t i = static_cast<size_t>(r) * cols + c;
        if (flags[i] & kFlagBody) add(i, amp * s * p, flag);
      }
    }
  };
  for (int lung_side = 0; lung_side < 2; ++lung_side) {
    for (int j = 0; j < 10; ++j) {
      const double yj = 62 + j * 23.5 + a.rib_shift;
      // Posterior ribs: from the spine laterally, rising, then turning down at the chest wall.
      band(lung_side, 14, 150,
           [&](double u) { return yj - 0.42 * u + 0.0036 * u * u + 0.008 * Sq(std::max(0.0, u - 110)); },
           [](double u) { return 5.0 + 0.012 * u; },
           [&](double u) { return u > LungLateral(yj) + 10 ? 0.0 : 30.0; }, true, kFlagRib);
      // Anterior ribs: fainter, from the lateral wall medially and down, fading where cartilage begins.
      if (j < 7) {
        band(lung_side, 30, 128, [&](double u) { return yj + 12 + 0.42 * (128 - u); },
             [](double) { return 6.5; },
             [&](double u) { return u > LungLateral(yj + 12) + 10 ? 0.0 : 10.0 * std::clamp((u - 30) / 20, 0.0, 1.0); },
             false, kFlagBone);
      }
    }
    // Clavicle.
    band(lung_side, 16, 150, [](double u) { return 92 - 0.16 * u + 6 * std::sin(kPi * u / 150); },
         [](double) { return 7.0; }, [](double) { return 18.0; }, true, kFlagBone);
  }
  // Humeral heads at the upper corners.
  for (int lung_side = 0; lung_side < 2; ++lung_side) {
    const double cu = 168, cy = 78, rad = 26;
    const double c_lo = std::max(0.0, std::floor(std::min(column_of(sigma(lung_side) * (cu - rad)),
                                                          column_of(sigma(lung_side) * (cu + rad)))));
    const double c_hi = std::min(cols - 1.0, std::ceil(std::max(column_of(sigma(lung_side) * (cu - rad)),
                                                                 column_of(sigma(lung_side) * (cu + rad)))));
    const double r_lo = std::max(0.0, std::floor(row_of(cy - rad))), r_hi = std::min(rows - 1.0, std::ceil(row_of(cy + rad)));
    for (double rr = r_lo; rr <= r_hi; ++rr) {
      for (double cc = c_lo; cc <= c_hi; ++cc) {
        const uint32_t r = static_cast<uint32_t>(rr), c = static_cast<uint32_t>(cc);
        const double q = (Sq(sigma(lung_side) * tx[c] - cu) + Sq(ty[r] - cy)) / (rad * rad);
        if (q < 1) {
          const size_t i = static_cast<size_t>(r) * cols + c;
          att[i] += static_cast<float>(30 * s * std::sqrt(1 - q));
          flags[i] |= kFlagBone | kFlagBody;
        }
      }
    }
  }
  // Lung markings: vessels from the hila, only in aerated lung; on the collapsed side they follow the lung.
  for (int lung_side = 0; lung_side < 2; ++lung_side) {
    const bool collapsed = ptx && lung_side == collapse.side;
    const auto shrink = [&](double& u, double& y) {
      if (!collapsed) return;
      const double du = u - collapse.cu, dy = y - collapse.cy;
      const double k = 1 - collapse.f * collapse.w[collapse.Index(std::atan2(dy, du))];
      u = collapse.cu + du * k;
      y = collapse.cy + dy * k;
    };
    for (Segment seg : a.vessels[lung_side]) {
      shrink(seg.u0, seg.y0);
      shrink(seg.u1, seg.y1);
      const double r_max = std::max(seg.r0, seg.r1);
      const double ca = column_of(sigma(lung_side) * seg.u0), cb = column_of(sigma(lung_side) * seg.u1);
      const double ra = row_of(seg.y0), rb = row_of(seg.y1);
      const double pad = r_max * s / sp + 1;
      const int c_lo = static_cast<int>(std::max(0.0, std::floor(std::min(ca, cb) - pad)));
      const int c_hi = static_cast<int>(std::min(cols - 1.0, std::ceil(std::max(ca, cb) + pad)));
      const int r_lo = static_cast<int>(std::max(0.0, std::floor(std::min(ra, rb) - pad)));
      const int r_hi = static_cast<int>(std::min(rows - 1.0, std::ceil(std::max(ra, rb) + pad)));
      const double du = seg.u1 - seg.u0, dy = seg.y1 - seg.y0, dd = du * du + dy * dy;
      for (int r = r_lo; r <= r_hi; ++r) {
        for (int c = c_lo; c <= c_hi; ++c) {
          const size_t i = static_cast<size_t>(r) * cols + c;
          if ((flags[i] & (kFlagLung | kFlagPneumothorax | kFlagLine)) != kFlagLung) continue;
          const double pu = sigma(lung_side) * tx[c] - seg.u0, py = ty[r] - seg.y0;
          const double t = dd > 0 ? std::clamp((pu * du + py * dy) / dd, 0.0, 1.0) : 0.0;
          const double d2 = Sq(pu - t * du) + Sq(py - t * dy);
          const double rad = seg.r0 + t * (seg.r1 - seg.r0);
          // Vessels overlap along the beam; one drawn layer stands for several.
          if (d2 < rad * rad) add(i, 1.8 * 2 * std::sqrt(rad * rad - d2) * s, kFlagVessel);
        }
      }
    }
  }
  // Gastric air bubble under the left dome.
  {
    const double cu = 55, cy = a.DomeY(1, 55) + 30, au = 28, ay = 16;
    for (double rr = std::max(0.0, std::floor(row_of(cy - ay))); rr <= std::min(rows - 1.0, std::ceil(row_of(cy + ay)));
         ++rr) {
      const uint32_t r = static_cast<uint32_t>(rr);
      for (uint32_t c = 0; c < cols; ++c) {
        const double q = Sq((tx[c] - cu) / au) + Sq((ty[r] - cy) / ay);
        const size_t i = static_cast<size_t>(r) * cols + c;
        if (q < 1 && (flags[i] & kFlagBody) && !(flags[i] & kFlagLung)) add(i, -35 * s * std::sqrt(1 - q), kFlagBubble);
      }
    }
  }

  // Truth from the painted labels.
  const double pixel_mm2 = sp * sp;
  for (uint32_t r = 0; r < rows; ++r) {
    for (uint32_t c = 0; c < cols; ++c) {
      if (study.label_mask[static_cast<size_t>(r) * cols + c] != kXrayLabelPneumothorax) continue;
      if (pt.pixels == 0) {
        pt.box = {c, c, r, r};
      } else {
        pt.box.column_min = std::min(pt.box.column_min, c);
        pt.box.column_max = std::max(pt.box.column_max, c);
        pt.box.row_max = r;
      }
      ++pt.pixels;
    }
  }
  pt.present = pt.pixels > 0;
  pt.side = side;
  pt.requested_size_percent = ptx ? wanted : 0;
  if (!ptx) pt.hemithorax_pixels = 0;
  pt.size_percent = pt.hemithorax_pixels ? 100.0 * pt.pixels / pt.hemithorax_pixels : 0;
  pt.area_mm2 = pt.pixels * pixel_mm2;
  if (pt.present) {
    for (int deg10 = -1800; deg10 < 1800; deg10 += 10) {
      const double theta = deg10 * kPi / 1800;
      const int k = collapse.Index(theta);
      const double w = collapse.w[k], rh = collapse.rh[k];
      if (w <= 0.01 || collapse.f * w * rh < 0.5) continue;
      const double rad = rh * (1 - collapse.f * w);
      const double u = collapse.cu + rad * std::cos(theta), y = collapse.cy + rad * std::sin(theta);
      pt.pleural_line.push_back({std::round(column_of(sigma(collapse.side) * u) * 10) / 10,
                                 std::round(row_of(y) * 10) / 10});
    }
  }

  // Landmarks before noise.
  const auto value_at = [&](size_t i) { return std::clamp(kOffset + kGain * att[i], 0.0, static_cast<double>(kMaxValue)); };
  const auto landmark = [&](const char* name, double c0, double r0, uint8_t want, double radius_mm) {
    uint32_t c = 0, r = 0;
    if (FindPixel(flags, cols, rows, c0, r0, want, static_cast<int>(radius_mm / sp), c, r)) {
      truth.landmarks.push_back({name, c, r, std::round(value_at(static_cast<size_t>(r) * cols + c) * 10) / 10});
    }
  };
  landmark("background", 4, 4, 0, 3);
  // Lung is measured on the other side, at the mirror image of the pneumothorax landmark when there is one, so
  // the two see the same chest wall and soft tissue.
  const int normal_side = ptx ? 1 - collapse.side : 0;
  double lung_u = 95, lung_y = 150;
  if (pt.present) {
    const double theta = std::atan2(-0.876, 0.482);  // 29 degrees lateral of the apex: full collapse
    const int k = collapse.Index(theta);
    const double rad = collapse.rh[k] * (1 - collapse.f * collapse.w[k] / 2);
    lung_u = collapse.cu + rad * std::cos(theta);
    lung_y = collapse.cy + rad * std::sin(theta);
    landmark("pneumothorax", column_of(sigma(collapse.side) * lung_u), row_of(lung_y),
             kFlagBody | kFlagLung | kFlagPneumothorax, 40);
    // The collapsed lung just inside the pleural line, on the same ray: same chest wall, denser lung.
    const double inside = collapse.rh[k] * (1 - collapse.f * collapse.w[k]) - 8;
    landmark("collapsed_lung", column_of(sigma(collapse.side) * (collapse.cu + inside * std::cos(theta))),
             row_of(collapse.cy + inside * std::sin(theta)), kFlagBody | kFlagLung, 15);
  }
  landmark("lung", column_of(sigma(normal_side) * lung_u), row_of(lung_y), kFlagBody | kFlagLung, 40);
  {
    const double u = 90, yj = 62 + 4 * 23.5 + a.rib_shift;
    const double yc = yj - 0.42 * u + 0.0036 * u * u;
    landmark("rib", column_of(sigma(normal_side) * u), row_of(yc), kFlagBody | kFlagLung | kFlagRib, 20);
    // The intercostal space below it: the same lung without the rib.
    landmark("intercostal_lung", column_of(sigma(normal_side) * u), row_of(yc + 23.5 / 2), kFlagBody | kFlagLung, 8);
  }
  landmark("mediastinum", column_of(45), row_of(255), kFlagBody, 15);

  // Quantum noise and quantisation.
  study.pixels.resize(att.size());
  for (uint32_t r = 0; r < rows; ++r) {
    Rng noise(MixSeed(o.seed, 1000 + r));
    const size_t row = static_cast<size_t>(r) * cols;
    for (uint32_t c = 0; c < cols; ++c) {
      const double v = kOffset + kGain * att[row + c] + kNoiseSd * noise.Normal();
      study.pixels[row + c] = static_cast<uint16_t>(std::clamp(std::lround(v), 0L, static_cast<long>(kMaxValue)));
    }
  }

  // Identity and UIDs: everything that shapes the content goes into the key.
  truth.folder = "chest-xray-s" + std::to_string(o.seed) +
                 (ptx ? "-ptx-" + std::string(SideName(side)) : std::string("-none"));
  const std::string content_key = "chest-xray/" + truth.folder + "/" + (ptx ? FormatDs(wanted) : "0") + "/" +
                                  std::to_string(rows) + "x" + std::to_string(cols) + "/" + o.department + "/" +
                                  o.institution;
  study.identity = MakeStudyIdentity("CHEST", o.seed, content_key);
  study.identity.study_description = "XR CHEST PA";
  study.identity.institution_name = o.institution;
  study.identity.department = o.department;
  study.identity.calling_ae = o.calling_ae;
  truth.seed = o.seed;
  truth.study_instance_uid = study.identity.study_instance_uid;
  truth.series_instance_uid = UidFromSeed(truth.study_instance_uid + "/series/1");
  truth.sop_instance_uid = UidFromSeed(truth.series_instance_uid + "/instance/1");
  truth.file = "DX000001.dcm";
  truth.rows = rows;
  truth.columns = cols;
  truth.pixel_spacing_mm = sp;
  return study;
}

LabelMaskLayout ChestXrayLabelMaskLayout(const ChestXrayStudy& study) {
  LabelMaskLayout layout;
  layout.slices = 1;
  layout.rows = study.truth.rows;
  layout.columns = study.truth.columns;
  layout.labels = {{kXrayLabelPneumothorax, "pneumothorax"}, {kXrayLabelPleuralLine, "visceral_pleural_line"}};
  return layout;
}

nlohmann::json ChestXrayTruthToJson(const ChestXrayTruth& t) {
  nlohmann::json j;
  j["seed"] = t.seed;
  j["study_instance_uid"] = t.study_instance_uid;
  j["series_instance_uid"] = t.series_instance_uid;
  j["sop_instance_uid"] = t.sop_instance_uid;
  j["folder"] = t.folder;
  j["files"] = {t.file};
  j["geometry"] = {{"rows", t.rows},
                   {"columns", t.columns},
                   {"pixel_spacing_mm", t.pixel_spacing_mm},
                   {"patient_orientation", {"L", "F"}},
                   {"view_position", "PA"}};
  const PneumothoraxTruth& p = t.pneumothorax;
  nlohmann::json pj;
  pj["present"] = p.present;
  pj["side"] = p.present ? nlohmann::json(std::string(SideName(p.side))) : nlohmann::json(nullptr);
  pj["requested_size_percent"] = p.requested_size_percent;
  pj["size_percent"] = p.size_percent;
  pj["pixels"] = p.pixels;
  pj["hemithorax_pixels"] = p.hemithorax_pixels;
  pj["area_mm2"] = p.area_mm2;
  if (p.present) {
    pj["bounding_box"] = {{"column_min", p.box.column_min},
                          {"column_max", p.box.column_max},
                          {"row_min", p.box.row_min},
                          {"row_max", p.box.row_max}};
    pj["pleural_line"] = p.pleural_line;
  } else {
    pj["bounding_box"] = nullptr;
    pj["pleural_line"] = nlohmann::json::array();
  }
  j["pneumothorax"] = pj;
  nlohmann::json marks = nlohmann::json::array();
  for (const XrayLandmark& l : t.landmarks) {
    marks.push_back({{"name", l.name}, {"column", l.column}, {"row", l.row}, {"expected_value", l.expected_value}});
  }
  j["landmarks"] = marks;
  return j;
}

StatusOr<ChestXrayTruth> WriteChestXrayStudy(const ChestXrayStudy& study, const std::filesystem::path& out_dir) {
  const ChestXrayTruth& t = study.truth;
  const StudyIdentity& id = study.identity;
  if (study.pixels.size() != static_cast<size_t>(t.rows) * t.columns) {
    return InvalidArgument("image size does not match rows x columns");
  }
  const std::filesystem::path dir = out_dir / t.folder;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create " + dir.string() + ": " + ec.message());

  DcmFileFormat format;
  DcmDataset* ds = format.getDataset();
  internal::DicomPutter w(ds);
  const std::string& date = id.study_date;
  // SOP Common, Patient, General Study.
  w.Put(DCM_SpecificCharacterSet, "ISO_IR 100");
  w.Put(DCM_ImageType, "ORIGINAL\\PRIMARY");
  w.Put(DCM_SOPClassUID, UID_DigitalXRayImageStorageForPresentation);
  w.Put(DCM_SOPInstanceUID, t.sop_instance_uid);
  w.Put(DCM_StudyDate, date);
  w.Put(DCM_SeriesDate, date);
  w.Put(DCM_AcquisitionDate, date);
  w.Put(DCM_ContentDate, date);
  w.Put(DCM_StudyTime, id.study_time);
  w.Put(DCM_SeriesTime, id.study_time);
  w.Put(DCM_AcquisitionTime, id.study_time);
  w.Put(DCM_ContentTime, id.study_time);
  w.Put(DCM_AccessionNumber, id.accession_number);
  w.Put(DCM_Modality, "DX");
  w.Put(DCM_PresentationIntentType, "FOR PRESENTATION");
  w.Put(DCM_Manufacturer, "AIHUB PHANTOM");
  w.Put(DCM_InstitutionName, id.institution_name);
  w.Put(DCM_ReferringPhysicianName, id.referring_physician_name);
  w.Put(DCM_StationName, "DXROOM1");
  w.Put(DCM_StudyDescription, id.study_description);
  w.Put(DCM_SeriesDescription, "PA");
  w.Put(DCM_InstitutionalDepartmentName, id.department);
  w.Put(DCM_ManufacturerModelName, "SYNTHETIC DR");
  w.Put(DCM_PatientName, id.patient_name);
  w.Put(DCM_PatientID, id.patient_id);
  w.Put(DCM_PatientBirthDate, id.patient_birth_date);
  w.Put(DCM_PatientSex, id.patient_sex);
  w.Put(DCM_PatientAge, id.patient_age);
  // Acquisition, detector and positioning.
  w.Put(DCM_BodyPartExamined, "CHEST");
  w.PutCode(DCM_AnatomicRegionSequence, "43799004", "SCT", "Chest");
  w.Put(DCM_KVP, "120");
  w.Put(DCM_DistanceSourceToDetector, "1800");
  w.Put(DCM_DistanceSourceToPatient, "1650");
  w.Put(DCM_ExposureTime, "8");
  w.Put(DCM_XRayTubeCurrent, "250");
  w.Put(DCM_Exposure, "2");
  w.Put(DCM_SoftwareVersions, "aihub-phantom 1");
  w.Put(DCM_ProtocolName, "CHEST PA");
  w.Put(DCM_ImagerPixelSpacing, FormatDs({t.pixel_spacing_mm, t.pixel_spacing_mm}));
  w.Put(DCM_DetectorType, "SCINTILLATOR");
  w.Put(DCM_DetectorConfiguration, "AREA");
  w.Put(DCM_ViewPosition, "PA");
  w.Put(DCM_PositionerType, "COLUMN");  // upright wall stand
  w.PutCode(DCM_ViewCodeSequence, "399348003", "SCT", "postero-anterior");
  w.Put(DCM_PatientOrientation, "L\\F");
  w.Put(DCM_ImageLaterality, "U");
  // Series and image.
  w.Put(DCM_StudyInstanceUID, t.study_instance_uid);
  w.Put(DCM_SeriesInstanceUID, t.series_instance_uid);
  w.Put(DCM_StudyID, id.study_id);
  w.Put(DCM_SeriesNumber, "1");
  w.Put(DCM_AcquisitionNumber, "1");
  w.Put(DCM_InstanceNumber, "1");
  w.PutEmptySequence(DCM_AcquisitionContextSequence);
  w.PutU16(DCM_SamplesPerPixel, 1);
  w.Put(DCM_PhotometricInterpretation, "MONOCHROME2");
  w.PutU16(DCM_Rows, static_cast<uint16_t>(t.rows));
  w.PutU16(DCM_Columns, static_cast<uint16_t>(t.columns));
  w.Put(DCM_PixelSpacing, FormatDs({t.pixel_spacing_mm, t.pixel_spacing_mm}));
  w.PutU16(DCM_BitsAllocated, 16);
  w.PutU16(DCM_BitsStored, 12);
  w.PutU16(DCM_HighBit, 11);
  w.PutU16(DCM_PixelRepresentation, 0);
  w.Put(DCM_BurnedInAnnotation, "NO");
  w.Put(DCM_PixelIntensityRelationship, "LOG");
  w.Put(DCM_PixelIntensityRelationshipSign, "-1");  // higher values: less X-ray reached the detector
  w.Put(DCM_WindowCenter, "1900");
  w.Put(DCM_WindowWidth, "3200");
  w.Put(DCM_VOILUTFunction, "LINEAR");
  w.Put(DCM_RescaleIntercept, "0");
  w.Put(DCM_RescaleSlope, "1");
  w.Put(DCM_RescaleType, "US");
  w.Put(DCM_LossyImageCompression, "00");
  w.Put(DCM_PresentationLUTShape, "IDENTITY");
  if (!w.status().ok()) return w.status();
  OFCondition c = ds->putAndInsertUint16Array(DCM_PixelData, study.pixels.data(),
                                              static_cast<unsigned long>(study.pixels.size()));
  if (c.bad()) return Internal(std::string("cannot set PixelData: ") + c.text());
  if (!id.calling_ae.empty()) {
    c = format.getMetaInfo()->putAndInsertString(DCM_SourceApplicationEntityTitle, id.calling_ae.c_str());
    if (c.bad()) return Internal(std::string("cannot set SourceApplicationEntityTitle: ") + c.text());
  }
  const std::filesystem::path file = dir / t.file;
  c = format.saveFile(file.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0,
                      EWM_updateMeta);
  if (c.bad()) return Unavailable("cannot write " + file.string() + ": " + c.text());

  nlohmann::json j = ChestXrayTruthToJson(t);
  j["patient_id"] = id.patient_id;
  j["accession_number"] = id.accession_number;
  j["calling_ae"] = id.calling_ae;
  j["department"] = id.department;
  j["label_mask"] = LabelMaskLayoutToJson(ChestXrayLabelMaskLayout(study));
  const std::filesystem::path truth_path = dir / "truth.json";
  std::ofstream out(truth_path, std::ios::binary | std::ios::trunc);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) return Unavailable("cannot write " + truth_path.string());
  return t;
}

StatusOr<ChestXrayTruth> WriteChestXray(const ChestXrayOptions& options, const std::filesystem::path& out_dir) {
  StatusOr<ChestXrayStudy> study = GenerateChestXray(options);
  if (!study.ok()) return study.status();
  return WriteChestXrayStudy(*study, out_dir);
}

}  // namespace aihub::phantom
