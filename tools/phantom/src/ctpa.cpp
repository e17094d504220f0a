#include "phantom/ctpa.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <system_error>

#include "common/hash.h"
#include "phantom/random.h"
#include "phantom_util.h"

namespace aihub::phantom {
namespace {

using internal::ExtendBox;
using internal::FormatDs;
using internal::VoxelBoxToJson;

constexpr double kPi = 3.14159265358979323846;
constexpr double kFieldOfViewMm = 360;
constexpr double kCoverageMm = 200;
constexpr double kZBottomMm = -125;  // inferior edge of the coverage; z = 0 lies near the pulmonary bifurcation
constexpr double kNoiseSdBeforeSmoothing = 24;  // ~9 HU after the 3x3 smoothing: a chest CT is noisier than a head
constexpr double kTextureCellMm = 5;
constexpr double kLungTextureHu = 30;

inline double Sq(double v) { return v * v; }

struct Vec3 {
  double x = 0, y = 0, z = 0;
};
inline Vec3 operator+(Vec3 a, Vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline Vec3 operator-(Vec3 a, Vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline Vec3 operator*(Vec3 a, double k) { return {a.x * k, a.y * k, a.z * k}; }
inline double Dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline double Norm(Vec3 a) { return std::sqrt(Dot(a, a)); }
inline Vec3 Normalized(Vec3 a) {
  const double n = Norm(a);
  return n > 1e-12 ? a * (1 / n) : Vec3{0, 0, 1};
}

// A tapered capsule: the points within r(t) = r0 + t (r1 - r0) of p0 + t (p1 - p0), t in [0, 1].
struct Tube {
  Vec3 p0, p1;
  double r0 = 1, r1 = 1;
};

enum Tissue : uint8_t {
  kAir,
  kTable,
  kSkin,
  kFat,
  kMuscle,
  kSoft,
  kLiver,
  kMediastinalFat,
  kLung,
  kHeartWall,
  kHeartBlood,
  kAorta,
  kVein,
  kAirwayWall,
  kAirway,
  kCartilage,
  kBone,    // cortical bone
  kMarrow,  // cancellous bone
  kCanal,
  kArtery,
  kClot,
};

inline bool IsBone(uint8_t t) { return t == kBone || t == kMarrow; }

// In-plane sampling of one slice: voxel (c, r) is at patient (x0 + c * spacing, y0 + r * spacing).
struct Grid {
  uint32_t columns = 0, rows = 0;
  double spacing = 1, x0 = 0, y0 = 0;
};

// Index range [lo, hi] of the voxels whose centres lie in [a, b] along one axis; empty when lo > hi.
inline void IndexRange(double a, double b, double origin, double spacing, uint32_t count, int& lo, int& hi) {
  const double fa = std::ceil((a - origin) / spacing), fb = std::floor((b - origin) / spacing);
  lo = static_cast<int>(std::clamp(fa, 0.0, static_cast<double>(count)));
  hi = static_cast<int>(std::clamp(fb, -1.0, static_cast<double>(count) - 1));
}

// Calls f(index, x, y) for every voxel centre inside the ellipse, row by row over spans.
template <class F>
void ForEllipse(const Grid& g, double cx, double cy, double a, double b, F&& f) {
  if (a <= 0 || b <= 0) return;
  int r_lo = 0, r_hi = 0;
  IndexRange(cy - b, cy + b, g.y0, g.spacing, g.rows, r_lo, r_hi);
  for (int r = r_lo; r <= r_hi; ++r) {
    const double y = g.y0 + r * g.spacing;
    const double t = 1 - Sq((y - cy) / b);
    if (t <= 0) continue;
    const double w = a * std::sqrt(t);
    int c_lo = 0, c_hi = 0;
    IndexRange(cx - w, cx + w, g.x0, g.spacing, g.columns, c_lo, c_hi);
    const size_t row = static_cast<size_t>(r) * g.columns;
    for (int c = c_lo; c <= c_hi; ++c) f(row + c, g.x0 + c * g.spacing, y);
  }
}

// Calls f(index, x, y) for every voxel centre between two concentric ellipses (inner excluded).
template <class F>
void ForAnnulus(const Grid& g, double cx, double cy, double ai, double bi, double ao, double bo, F&& f) {
  int r_lo = 0, r_hi = 0;
  IndexRange(cy - bo, cy + bo, g.y0, g.spacing, g.rows, r_lo, r_hi);
  for (int r = r_lo; r <= r_hi; ++r) {
    const double y = g.y0 + r * g.spacing;
    const double to = 1 - Sq((y - cy) / bo);
    if (to <= 0) continue;
    const double wo = ao * std::sqrt(to);
    const double ti = 1 - Sq((y - cy) / bi);
    const double wi = ti > 0 ? ai * std::sqrt(ti) : -1;
    const size_t row = static_cast<size_t>(r) * g.columns;
    int c_lo = 0, c_hi = 0;
    if (wi < 0) {
      IndexRange(cx - wo, cx + wo, g.x0, g.spacing, g.columns, c_lo, c_hi);
      for (int c = c_lo; c <= c_hi; ++c) f(row + c, g.x0 + c * g.spacing, y);
      continue;
    }
    IndexRange(cx - wo, cx - wi, g.x0, g.spacing, g.columns, c_lo, c_hi);
    for (int c = c_lo; c <= c_hi; ++c) f(row + c, g.x0 + c * g.spacing, y);
    IndexRange(cx + wi, cx + wo, g.x0, g.spacing, g.columns, c_lo, c_hi);
    for (int c = c_lo; c <= c_hi; ++c) f(row + c, g.x0 + c * g.spacing, y);
  }
}

// Calls f(index, x, y) for every voxel centre of slice z inside the tube.
template <class F>
void ForTube(const Grid& g, double z, const Tube& t, F&& f) {
  const double r_max = std::max(t.r0, t.r1);
  if (z < std::min(t.p0.z, t.p1.z) - r_max || z > std::max(t.p0.z, t.p1.z) + r_max) return;
  const Vec3 d = t.p1 - t.p0;
  // Only the part of the axis within r_max of the plane can reach it.
  double t_lo = 0, t_hi = 1;
  if (std::fabs(d.z) > 1e-9) {
    double ta = (z - r_max - t.p0.z) / d.z, tb = (z + r_max - t.p0.z) / d.z;
    if (ta > tb) std::swap(ta, tb);
    t_lo = std::max(0.0, ta);
    t_hi = std::min(1.0, tb);
    if (t_lo > t_hi) return;
  }
  const double xa = t.p0.x + t_lo * d.x, xb = t.p0.x + t_hi * d.x;
  const double ya = t.p0.y + t_lo * d.y, yb = t.p0.y + t_hi * d.y;
  int c_lo = 0, c_hi = 0, r_lo = 0, r_hi = 0;
  IndexRange(std::min(xa, xb) - r_max, std::max(xa, xb) + r_max, g.x0, g.spacing, g.columns, c_lo, c_hi);
  IndexRange(std::min(ya, yb) - r_max, std::max(ya, yb) + r_max, g.y0, g.spacing, g.rows, r_lo, r_hi);
  const double dd = Dot(d, d);
  const double dr = t.r1 - t.r0;
  for (int r = r_lo; r <= r_hi; ++r) {
    const double y = g.y0 + r * g.spacing;
    const size_t row = static_cast<size_t>(r) * g.columns;
    for (int c = c_lo; c <= c_hi; ++c) {
      const double x = g.x0 + c * g.spacing;
      const Vec3 q{x - t.p0.x, y - t.p0.y, z - t.p0.z};
      const double u = dd > 0 ? std::clamp(Dot(q, d) / dd, 0.0, 1.0) : 0.0;
      const Vec3 e = q - d * u;
      const double radius = t.r0 + dr * u;
      if (Dot(e, e) <= radius * radius) f(row + c, x, y);
    }
  }
}

// A named artery as a polyline with radii.
struct Branch {
  std::vector<Vec3> points;
  std::vector<double> radii;
};

// Chest model in patient coordinates (mm): x to the patient's left, y posterior, z superior.
struct Anatomy {
  double s = 1;           // overall scale
  double ox = 0, oy = 0;  // body centre
  double body_a = 150, body_b = 105, skin = 2, fat = 15, muscle = 11;
  double cavity_a = 110, cavity_b = 65;  // thoracic cavity inside the ribs
  double apex_z = 68;
  std::array<double, 2> dome_top{}, dome_cx{};  // [0] right, [1] left
  double dome_cy = 0, dome_curvature = 0.0075;
  double heart_cx = 0, heart_cy = 0, heart_cz = 0, heart_a = 1, heart_b = 1, heart_c = 1;
  double spine_cy = 48, disc_pitch = 28, disc_phase = 0;
  double rib_z0 = 66, rib_pitch = 22, rib_drop = 55;
  double fat_hu = -100, muscle_hu = 50, lung_hu = -850, artery_hu = 330, aorta_hu = 230, svc_hu = 600,
         rv_hu = 320, lv_hu = 200, liver_hu = 62, spleen_hu = 50;
  std::vector<Tube> aorta, svc, airway, esophagus;
  std::array<Branch, kPulmonaryBranchCount> branches;
  std::vector<Tube> peripheral;  // segmental and subsegmental arteries
  std::vector<Tube> veins, peripheral_veins;  // pulmonary veins to the left atrium: bright, but not arteries

  Vec3 P(double x, double y, double z) const { return {ox + s * x, oy + s * y, s * z}; }
  // The lower boundary of the lung on the side of x: the diaphragm dome.
  double DomeZ(double x, double y) const {
    const int side = x < ox ? 0 : 1;
    return dome_top[side] - dome_curvature / s * (Sq(x - dome_cx[side]) + Sq(y - dome_cy));
  }
};

Branch MakeBranch(Rng& rng, const Anatomy& a, Vec3 start, double r_start,
                  std::initializer_list<std::array<double, 4>> rest) {
  Branch b;
  b.points.push_back(start);
  b.radii.push_back(r_start);
  for (const auto& p : rest) {
    b.points.push_back(a.P(p[0] + rng.Uniform(-3, 3), p[1] + rng.Uniform(-3, 3), p[2] + rng.Uniform(-3, 3)));
    b.radii.push_back(a.s * p[3]);
  }
  return b;
}

// Segmental and subsegmental arteries: each branch divides into two or three narrower ones.
void GrowArteries(Rng& rng, double s, Vec3 start, Vec3 dir, double r, int depth, std::vector<Tube>& out) {
  if (depth == 0 || r < 0.6) return;
  const int children = depth >= 3 ? 3 : 2;
  for (int i = 0; i < children; ++i) {
    const Vec3 jitter{rng.Uniform(-1, 1), rng.Uniform(-1, 1), rng.Uniform(-1, 1)};
    const Vec3 d = Normalized(dir + jitter * 0.75);
    const double length = s * rng.Uniform(14, 22) * std::sqrt(r / 2.0 / s);
    const double r_end = r * rng.Uniform(0.55, 0.7);
    const Vec3 end = start + d * length;
    out.push_back({start, end, r * 0.85, r_end});
    GrowArteries(rng, s, end, d, r_end, depth - 1, out);
  }
}

Anatomy DrawAnatomy(Rng& rng) {
  Anatomy a;
  a.s = rng.Uniform(0.93, 1.06);
  const double s = a.s;
  a.ox = rng.Uniform(-5, 5);
  a.oy = rng.Uniform(-6, 4);
  a.body_a = 150 * s * rng.Uniform(0.95, 1.04);
  a.body_b = 105 * s * rng.Uniform(0.95, 1.05);
  a.fat = rng.Uniform(8, 22);
  a.muscle = rng.Uniform(8, 14);
  const double wall = a.skin + a.fat + a.muscle + 12 * s;  // ribs and intercostal muscle take the last 12 mm
  a.cavity_a = a.body_a - wall;
  a.cavity_b = a.body_b - wall;
  a.apex_z = 68 * s;
  a.dome_top = {-74 * s + rng.Uniform(-4, 4), -82 * s + rng.Uniform(-4, 4)};
  a.dome_cx = {a.ox - 62 * s, a.ox + 62 * s};
  a.dome_cy = a.oy - 5 * s;
  a.heart_cx = a.ox + 18 * s;
  a.heart_cy = a.oy - 26 * s;
  a.heart_cz = -62 * s;
  a.heart_a = 60 * s * rng.Uniform(0.92, 1.1);
  a.heart_b = 50 * s * rng.Uniform(0.92, 1.08);
  a.heart_c = 42 * s;
  a.spine_cy = a.oy + 48 * s;
  a.disc_pitch = 28 * s;
  a.disc_phase = rng.Uniform(0, a.disc_pitch);
  a.rib_z0 = 66 * s;
  a.rib_pitch = 22 * s;
  a.rib_drop = 55 * s;
  a.fat_hu = rng.Uniform(-110, -90);
  a.muscle_hu = rng.Uniform(45, 55);
  a.lung_hu = rng.Uniform(-865, -835);
  a.artery_hu = rng.Uniform(280, 380);
  a.aorta_hu = rng.Uniform(190, 260);
  a.svc_hu = rng.Uniform(450, 800);
  a.rv_hu = a.artery_hu - rng.Uniform(0, 30);
  a.lv_hu = a.aorta_hu - rng.Uniform(0, 20);
  a.liver_hu = rng.Uniform(55, 70);
  a.spleen_hu = rng.Uniform(45, 55);

  // Aorta: ascending right of the main pulmonary artery, arch over the left pulmonary artery, descending to the
  // left of the spine; the arch gives off the brachiocephalic, left carotid and left subclavian arteries.
  const auto tube = [&](std::array<double, 3> p, std::array<double, 3> q, double r0, double r1) {
    return Tube{a.P(p[0], p[1], p[2]), a.P(q[0], q[1], q[2]), s * r0, s * r1};
  };
  a.aorta = {tube({-14, -20, -45}, {-14, -20, 38}, 14, 14),  tube({-14, -20, 38}, {2, -20, 50}, 14, 13.5),
             tube({2, -20, 50}, {20, -2, 50}, 13.5, 13),     tube({20, -2, 50}, {26, 28, 40}, 13, 12.5),
             tube({26, 28, 40}, {26, 34, 25}, 12.5, 12),     tube({26, 34, 25}, {26, 34, -140}, 12, 11),
             tube({-8, -18, 48}, {-16, -14, 95}, 6, 6),      tube({6, -14, 52}, {10, -12, 95}, 4, 4),
             tube({18, -4, 52}, {32, 4, 95}, 5, 5)};
  a.svc = {tube({-40, -14, 95}, {-40, -14, -22}, 10, 10)};
  // Trachea to the carina, then the main bronchi, as the outer wall; the lumen is 1.5 mm narrower.
  a.airway = {tube({-4, 6, 95}, {-4, 6, 14}, 10.5, 10.5), tube({-4, 6, 14}, {-24, 10, 8}, 8.5, 8.5),
              tube({-24, 10, 8}, {-44, 14, 4}, 8.5, 7.5), tube({-4, 6, 14}, {18, 10, 4}, 8, 8),
              tube({18, 10, 4}, {42, 14, -10}, 8, 7)};
  a.esophagus = {tube({-6, 22, 95}, {-6, 22, -100}, 6, 6)};

  // Pulmonary arteries: main trunk from the right ventricular outflow up to the bifurcation, right pulmonary
  // artery behind the ascending aorta, left over the left main bronchus, and the lobar arteries.
  auto& br = a.branches;
  br[static_cast<int>(PulmonaryBranch::kMain)] =
      MakeBranch(rng, a, a.P(12, -46, -36), 14 * s, {{16, -30, -16, 14}, {16, -14, -2, 13.5}});
  const Vec3 bifurcation = br[static_cast<int>(PulmonaryBranch::kMain)].points.back();
  br[static_cast<int>(PulmonaryBranch::kRight)] =
      MakeBranch(rng, a, bifurcation, 12 * s, {{-4, 4, -8, 11.5}, {-30, 8, -14, 10.5}, {-56, 8, -18, 9.5}});
  br[static_cast<int>(PulmonaryBranch::kLeft)] =
      MakeBranch(rng, a, bifurcation, 11.5 * s, {{34, 2, 12, 10.5}, {54, 14, 8, 9.5}});
  const Branch& right = br[static_cast<int>(PulmonaryBranch::kRight)];
  const Branch& left = br[static_cast<int>(PulmonaryBranch::kLeft)];
  br[static_cast<int>(PulmonaryBranch::kRightUpperLobar)] =
      MakeBranch(rng, a, right.points[2], 7 * s, {{-58, -4, 14, 5.5}, {-74, -10, 42, 4.5}});
  br[static_cast<int>(PulmonaryBranch::kRightMiddleLobar)] =
      MakeBranch(rng, a, right.points[3], 5 * s, {{-70, -22, -34, 4}, {-80, -42, -48, 3.5}});
  br[static_cast<int>(PulmonaryBranch::kRightLowerLobar)] =
      MakeBranch(rng, a, right.points[3], 8 * s, {{-66, 20, -50, 6.5}, {-76, 36, -78, 5}});
  br[static_cast<int>(PulmonaryBranch::kLeftUpperLobar)] =
      MakeBranch(rng, a, left.points[2], 7 * s, {{66, 0, 30, 5.5}, {76, -12, 50, 4.5}});
  br[static_cast<int>(PulmonaryBranch::kLeftLowerLobar)] =
      MakeBranch(rng, a, left.points[2], 8 * s, {{64, 28, -30, 6.5}, {74, 40, -80, 5}});

  // Segmental and subsegmental arteries from the end and the middle of every lobar artery.
  for (int i = static_cast<int>(PulmonaryBranch::kRightUpperLobar); i < kPulmonaryBranchCount; ++i) {
    const Branch& b = br[i];
    const size_t n = b.points.size();
    const Vec3 end_dir = Normalized(b.points[n - 1] - b.points[n - 2]);
    GrowArteries(rng, s, b.points[n - 1], end_dir, b.radii[n - 1], 4, a.peripheral);
    const Vec3 mid_dir = Normalized(b.points[1] - b.points[0]);
    GrowArteries(rng, s, b.points[1], mid_dir, b.radii[1] * 0.7, 3, a.peripheral);
  }
  // Four pulmonary veins from the left atrium (posterior top of the heart) into the lungs.
  for (const auto& v : {std::array<double, 6>{-8, 14, -40, -50, 2, -30}, {-8, 18, -50, -50, 26, -58},
                        {30, 14, -38, 62, 4, -26}, {30, 20, -50, 60, 30, -58}}) {
    const Vec3 p0 = a.P(v[0], v[1], v[2]);
    const Vec3 p1 = a.P(v[3] + rng.Uniform(-3, 3), v[4] + rng.Uniform(-3, 3), v[5] + rng.Uniform(-3, 3));
    a.veins.push_back({p0, p1, 6 * s, 5 * s});
    GrowArteries(rng, s, p1, Normalized(p1 - p0), 4.5 * s, 4, a.peripheral_veins);
  }
  return a;
}

// Smooth 3D value noise for the lung parenchyma, fixed in patient space so it does not depend on sampling.
struct Texture {
  int nx = 0, ny = 0, nz = 0;
  double x0 = 0, y0 = 0, z0 = 0;
  std::vector<float> values;

  explicit Texture(Rng& rng) {
    x0 = y0 = -kFieldOfViewMm / 2 - kTextureCellMm;
    z0 = kZBottomMm - kTextureCellMm;
    nx = ny = static_cast<int>(kFieldOfViewMm / kTextureCellMm) + 4;
    nz = static_cast<int>(kCoverageMm / kTextureCellMm) + 4;
    values.resize(static_cast<size_t>(nx) * ny * nz);
    for (float& v : values) v = static_cast<float>(rng.Uniform(-1, 1));
  }
  // The texture's plane at z, bilinear per voxel afterwards.
  void Plane(double z, std::vector<float>& plane) const {
    const double gz = std::clamp((z - z0) / kTextureCellMm, 0.0, nz - 1.001);
    const int iz = static_cast<int>(gz);
    const float fz = static_cast<float>(gz - iz);
    plane.resize(static_cast<size_t>(nx) * ny);
    const float* lo = values.data() + static_cast<size_t>(iz) * nx * ny;
    const float* hi = lo + static_cast<size_t>(nx) * ny;
    for (size_t i = 0; i < plane.size(); ++i) plane[i] = lo[i] + fz * (hi[i] - lo[i]);
  }
};

struct Embolus {
  bool present = false;
  EmbolusSide side = EmbolusSide::kRight;
  PulmonaryBranch branch = PulmonaryBranch::kMain;
  double hu = 40;
  double length_mm = 0;
  std::vector<Tube> tubes;
  Vec3 center;
};

StatusOr<std::pair<EmbolusSide, PulmonaryBranch>> ResolveEmbolus(const CtpaOptions& o, Rng& rng) {
  if (o.branch) {
    const EmbolusSide side = PulmonaryBranchSide(*o.branch);
    if (o.side && *o.side != side) {
      return InvalidArgument("branch " + std::string(PulmonaryBranchName(*o.branch)) + " is " +
                             std::string(EmbolusSideName(side)) + ", not " + std::string(EmbolusSideName(*o.side)));
    }
    return std::make_pair(side, *o.branch);
  }
  EmbolusSide side = EmbolusSide::kRight;
  const double u = rng.Uniform();
  if (o.side) {
    side = *o.side;
  } else {
    side = u < 0.42 ? EmbolusSide::kRight : u < 0.84 ? EmbolusSide::kLeft : EmbolusSide::kBilateral;
  }
  const double v = rng.Uniform();
  switch (side) {
    case EmbolusSide::kBilateral:
      return std::make_pair(side, PulmonaryBranch::kMain);
    case EmbolusSide::kRight:
      return std::make_pair(side, v < 0.3    ? PulmonaryBranch::kRight
                                  : v < 0.5  ? PulmonaryBranch::kRightUpperLobar
                                  : v < 0.65 ? PulmonaryBranch::kRightMiddleLobar
                                             : PulmonaryBranch::kRightLowerLobar);
    case EmbolusSide::kLeft:
      return std::make_pair(side, v < 0.35  ? PulmonaryBranch::kLeft
                                  : v < 0.65 ? PulmonaryBranch::kLeftUpperLobar
                                             : PulmonaryBranch::kLeftLowerLobar);
  }
  return std::make_pair(side, PulmonaryBranch::kMain);
}

// Point, radius and direction at arc length `at` along a polyline.
void AlongPolyline(const Branch& b, const std::vector<double>& arc, double at, Vec3& point, double& radius,
                   Vec3& direction) {
  size_t i = 1;
  while (i + 1 < b.points.size() && arc[i] < at) ++i;
  const double len = arc[i] - arc[i - 1];
  const double t = len > 0 ? std::clamp((at - arc[i - 1]) / len, 0.0, 1.0) : 0.0;
  point = b.points[i - 1] + (b.points[i] - b.points[i - 1]) * t;
  radius = b.radii[i - 1] + (b.radii[i] - b.radii[i - 1]) * t;
  direction = Normalized(b.points[i] - b.points[i - 1]);
}

// The clot: a chain of capsules along the host branch, inside its lumen. A saddle embolus (kMain) straddles the
// bifurcation from the right into the left pulmonary artery, centred; others sit eccentrically and leave a rim of
// contrast on one side.
Embolus DrawEmbolus(Rng& rng, const Anatomy& a, EmbolusSide side, PulmonaryBranch branch) {
  Embolus e;
  e.present = true;
  e.side = side;
  e.branch = branch;
  e.hu = rng.Uniform(20, 60);
  Branch path;
  double start = 0, length = 0, fill = 0, eccentricity = 0;
  if (branch == PulmonaryBranch::kMain) {
    const Branch& right = a.branches[static_cast<int>(PulmonaryBranch::kRight)];
    const Branch& left = a.branches[static_cast<int>(PulmonaryBranch::kLeft)];
    const double reach = a.s * rng.Uniform(14, 20);
    for (const Branch* b : {&right, &left}) {
      std::vector<double> arc{0};
      for (size_t i = 1; i < b->points.size(); ++i) arc.push_back(arc.back() + Norm(b->points[i] - b->points[i - 1]));
      Vec3 p, d;
      double r = 0;
      AlongPolyline(*b, arc, reach, p, r, d);
      if (b == &right) {
        path.points = {p, b->points[0]};
        path.radii = {r, b->radii[0]};
      } else {
        path.points.push_back(p);
        path.radii.push_back(r);
      }
    }
    fill = rng.Uniform(0.72, 0.88);
  } else {
    path = a.branches[static_cast<int>(branch)];
    fill = rng.Uniform(0.6, 0.85);
    eccentricity = rng.Uniform(0, 0.7) * (1 - fill);
  }
  std::vector<double> arc{0};
  for (size_t i = 1; i < path.points.size(); ++i) arc.push_back(arc.back() + Norm(path.points[i] - path.points[i - 1]));
  const double total = arc.back();
  if (branch == PulmonaryBranch::kMain) {
    length = total;
  } else {
    length = std::min(a.s * rng.Uniform(12, 32), 0.75 * total);
    const double lo = 0.08 * total, hi = std::max(lo, total - length - 0.05 * total);
    start = rng.Uniform(lo, hi);
  }
  const Vec3 w = Normalized({rng.Uniform(-1, 1), rng.Uniform(-1, 1), rng.Uniform(-1, 1)});
  const int samples = std::max(3, static_cast<int>(std::ceil(length / 1.0)) + 1);
  Vec3 previous;
  double previous_r = 0;
  for (int i = 0; i < samples; ++i) {
    const double u = static_cast<double>(i) / (samples - 1);
    Vec3 p, d;
    double r = 0;
    AlongPolyline(path, arc, start + u * length, p, r, d);
    Vec3 perp = w - d * Dot(w, d);
    perp = Normalized(perp);
    const Vec3 c = p + perp * (eccentricity * r);
    // Rounded ends.
    const double rc = fill * r * std::max(0.3, std::pow(std::sin(kPi * u), 0.3));
    if (i > 0) e.tubes.push_back({previous, c, previous_r, rc});
    if (i == samples / 2) e.center = c;
    previous = c;
    previous_r = rc;
  }
  e.length_mm = length;
  return e;
}

// Best voxel for a landmark: nearest slice to the wanted one, then nearest in-plane, whose 5x5 neighbourhood is
// one tissue (so the 3x3 smoothing leaves the 3x3 mean at the painted density).
struct LandmarkSearch {
  std::string name;
  Tissue tissue = kAir;
  double x = 0, y = 0;
  uint32_t slice = 0;
  uint32_t slice_window = 0;
  int radius = 0;  // voxels
  bool found = false;
  long best_dk = 0, best_d2 = 0;
  Landmark result;
};

void SearchLandmark(LandmarkSearch& s, const Grid& g, uint32_t k, const uint8_t* tissue, const float* hu) {
  const long dk = std::labs(static_cast<long>(k) - static_cast<long>(s.slice));
  if (dk > static_cast<long>(s.slice_window)) return;
  if (s.found && dk > s.best_dk) return;
  const int cols = static_cast<int>(g.columns), rows = static_cast<int>(g.rows);
  const int c0 = static_cast<int>(std::lround((s.x - g.x0) / g.spacing));
  const int r0 = static_cast<int>(std::lround((s.y - g.y0) / g.spacing));
  for (int r = std::max(2, r0 - s.radius); r <= std::min(rows - 3, r0 + s.radius); ++r) {
    for (int c = std::max(2, c0 - s.radius); c <= std::min(cols - 3, c0 + s.radius); ++c) {
      const long d2 = static_cast<long>(c - c0) * (c - c0) + static_cast<long>(r - r0) * (r - r0);
      if (s.found && (dk > s.best_dk || (dk == s.best_dk && d2 >= s.best_d2))) continue;
      if (tissue[r * cols + c] != s.tissue) continue;
      bool uniform = true;
      for (int dr = -2; dr <= 2 && uniform; ++dr)
        for (int dc = -2; dc <= 2 && uniform; ++dc) uniform = tissue[(r + dr) * cols + c + dc] == s.tissue;
      if (!uniform) continue;
      s.found = true;
      s.best_dk = dk;
      s.best_d2 = d2;
      s.result = {s.name, static_cast<uint32_t>(c), static_cast<uint32_t>(r), k,
                  std::round(static_cast<double>(hu[r * cols + c]) * 10) / 10};
    }
  }
}

Status ValidateOptions(const CtpaOptions& o) {
  if (o.slices < 16 || o.slices > 400) return InvalidArgument("slices must be in 16..400");
  if (o.size < 64 || o.size > 1024) return InvalidArgument("size must be in 64..1024");
  return internal::ValidateSite(o.department, o.calling_ae, o.institution);
}

std::string FolderName(uint64_t seed, const EmbolusTruth& e) {
  std::string name = "ctpa-s" + std::to_string(seed);
  if (!e.present) return name + "-none";
  std::string branch(PulmonaryBranchName(e.branch));
  std::replace(branch.begin(), branch.end(), '_', '-');
  return name + "-pe-" + branch;
}

// The contrast media attributes the shared CT series writer does not know; added to each written slice.
Status AddContrastAttributes(const std::filesystem::path& file) {
  DcmFileFormat format;
  OFCondition c = format.loadFile(file.c_str());
  if (c.good()) c = format.loadAllDataIntoMemory();
  if (c.bad()) return Unavailable("cannot reread " + file.string() + ": " + c.text());
  internal::DicomPutter put(format.getDataset());
  put.Put(DCM_ContrastBolusAgent, "IOHEXOL 350 MG/ML");
  put.Put(DCM_ContrastBolusRoute, "IV");
  put.Put(DCM_ContrastBolusVolume, "70");
  put.Put(DCM_ContrastFlowRate, "4.5");
  put.Put(DCM_ContrastFlowDuration, "15.6");
  put.Put(DCM_ContrastBolusIngredient, "IODINE");
  put.Put(DCM_ContrastBolusIngredientConcentration, "350");
  if (!put.status().ok()) return put.status();
  c = format.saveFile(file.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0,
                      EWM_updateMeta);
  if (c.bad()) return Unavailable("cannot write " + file.string() + ": " + c.text());
  return Status::Ok();
}

}  // namespace

std::string_view EmbolusSideName(EmbolusSide side) {
  switch (side) {
    case EmbolusSide::kLeft:
      return "left";
    case EmbolusSide::kRight:
      return "right";
    case EmbolusSide::kBilateral:
      return "bilateral";
  }
  return "right";
}

StatusOr<EmbolusSide> ParseEmbolusSide(std::string_view name) {
  for (EmbolusSide s : {EmbolusSide::kLeft, EmbolusSide::kRight, EmbolusSide::kBilateral}) {
    if (name == EmbolusSideName(s)) return s;
  }
  return InvalidArgument("unknown side '" + std::string(name) + "' (left, right, bilateral)");
}

std::string_view PulmonaryBranchName(PulmonaryBranch branch) {
  switch (branch) {
    case PulmonaryBranch::kMain:
      return "main";
    case PulmonaryBranch::kRight:
      return "right";
    case PulmonaryBranch::kLeft:
      return "left";
    case PulmonaryBranch::kRightUpperLobar:
      return "right_upper_lobar";
    case PulmonaryBranch::kRightMiddleLobar:
      return "right_middle_lobar";
    case PulmonaryBranch::kRightLowerLobar:
      return "right_lower_lobar";
    case PulmonaryBranch::kLeftUpperLobar:
      return "left_upper_lobar";
    case PulmonaryBranch::kLeftLowerLobar:
      return "left_lower_lobar";
  }
  return "main";
}

StatusOr<PulmonaryBranch> ParsePulmonaryBranch(std::string_view name) {
  for (int i = 0; i < kPulmonaryBranchCount; ++i) {
    const auto b = static_cast<PulmonaryBranch>(i);
    if (name == PulmonaryBranchName(b)) return b;
  }
  return InvalidArgument("unknown branch '" + std::string(name) +
                         "' (main, right, left, right_upper_lobar, right_middle_lobar, right_lower_lobar, "
                         "left_upper_lobar, left_lower_lobar)");
}

EmbolusSide PulmonaryBranchSide(PulmonaryBranch branch) {
  switch (branch) {
    case PulmonaryBranch::kMain:
      return EmbolusSide::kBilateral;
    case PulmonaryBranch::kRight:
    case PulmonaryBranch::kRightUpperLobar:
    case PulmonaryBranch::kRightMiddleLobar:
    case PulmonaryBranch::kRightLowerLobar:
      return EmbolusSide::kRight;
    case PulmonaryBranch::kLeft:
    case PulmonaryBranch::kLeftUpperLobar:
    case PulmonaryBranch::kLeftLowerLobar:
      return EmbolusSide::kLeft;
  }
  return EmbolusSide::kBilateral;
}

StatusOr<CtpaStudy> GenerateCtpa(const CtpaOptions& o) {
  if (Status s = ValidateOptions(o); !s.ok()) return s;
  // Anatomy, embolus, texture and noise draw from separate streams: adding an embolus changes nothing else.
  Rng anatomy_rng(MixSeed(o.seed, 1));
  const Anatomy a = DrawAnatomy(anatomy_rng);
  Rng lesion_rng(MixSeed(o.seed, 2));
  Embolus embolus;
  if (o.embolus) {
    auto resolved = ResolveEmbolus(o, lesion_rng);
    if (!resolved.ok()) return resolved.status();
    embolus = DrawEmbolus(lesion_rng, a, resolved->first, resolved->second);
  }
  Rng texture_rng(MixSeed(o.seed, 3));
  const Texture texture(texture_rng);

  CtpaStudy study;
  CtVolume& v = study.volume;
  v.columns = v.rows = o.size;
  v.slices = o.slices;
  v.column_spacing_mm = v.row_spacing_mm = kFieldOfViewMm / o.size;
  v.slice_spacing_mm = kCoverageMm / o.slices;
  const double half = (static_cast<double>(o.size) - 1) / 2;
  v.origin_mm = {-half * v.column_spacing_mm, -half * v.row_spacing_mm, kZBottomMm + v.slice_spacing_mm / 2};
  const size_t n = v.SliceVoxels();
  v.hu.resize(n * v.slices);
  study.label_mask.assign(n * v.slices, 0);

  const Grid g{v.columns, v.rows, v.column_spacing_mm, v.origin_mm[0], v.origin_mm[1]};
  const auto slice_of = [&](double z) {
    const double k = std::round((z - v.origin_mm[2]) / v.slice_spacing_mm);
    return static_cast<uint32_t>(std::clamp(k, 0.0, static_cast<double>(v.slices - 1)));
  };
  const double px = v.column_spacing_mm;

  // Landmarks, searched slice by slice as the volume is painted.
  std::vector<LandmarkSearch> searches;
  const auto search = [&](const char* name, Tissue t, double x, double y, double z, uint32_t window, double radius_mm) {
    LandmarkSearch s;
    s.name = name;
    s.tissue = t;
    s.x = x;
    s.y = y;
    s.slice = slice_of(z);
    s.slice_window = window;
    s.radius = std::max(3, static_cast<int>(radius_mm / px));
    searches.push_back(s);
  };
  search("air", kAir, g.x0 + 3 * px, g.y0 + 3 * px, 0, 0, 5);
  search("fat", kFat, a.ox, a.oy - a.body_b + a.skin + a.fat / 2, 0, 0, 10);
  const double lung_side = embolus.present && embolus.side == EmbolusSide::kRight ? 1 : -1;  // away from the clot
  search("lung", kLung, a.ox + lung_side * 0.55 * a.cavity_a, a.oy, 10 * a.s, 0, 60);
  {
    const Branch& main = a.branches[static_cast<int>(PulmonaryBranch::kMain)];
    search("pulmonary_artery", kArtery, main.points[1].x, main.points[1].y, main.points[1].z, 2, 10);
  }
  search("aorta", kAorta, a.ox + 26 * a.s, a.oy + 34 * a.s, -40 * a.s, 0, 8);
  {
    const double z = a.disc_phase + a.disc_pitch * (std::floor((-20 - a.disc_phase) / a.disc_pitch) + 0.6);
    search("vertebra", kMarrow, a.ox, a.spine_cy, z, 0, 10);
  }
  if (embolus.present) search("clot", kClot, embolus.center.x, embolus.center.y, embolus.center.z, 12, 15);

  EmbolusTruth& et = study.truth.embolus;
  double sum_x = 0, sum_y = 0, sum_z = 0;
  std::vector<float> slice(n), tmp, plane;
  std::vector<uint8_t> tissue(n);
  // Per-column and per-row bilinear weights into the texture plane.
  std::vector<int> tex_ix(v.columns), tex_iy(v.rows);
  std::vector<float> tex_fx(v.columns), tex_fy(v.rows);
  for (uint32_t c = 0; c < v.columns; ++c) {
    const double gx = std::clamp((g.x0 + c * px - texture.x0) / kTextureCellMm, 0.0, texture.nx - 1.001);
    tex_ix[c] = static_cast<int>(gx);
    tex_fx[c] = static_cast<float>(gx - tex_ix[c]);
  }
  for (uint32_t r = 0; r < v.rows; ++r) {
    const double gy = std::clamp((g.y0 + r * px - texture.y0) / kTextureCellMm, 0.0, texture.ny - 1.001);
    tex_iy[r] = static_cast<int>(gy);
    tex_fy[r] = static_cast<float>(gy - tex_iy[r]);
  }

  const double s = a.s;
  for (uint32_t k = 0; k < v.slices; ++k) {
    const double z = v.origin_mm[2] + k * v.slice_spacing_mm;
    std::fill(slice.begin(), slice.end(), -1000.0f);
    std::fill(tissue.begin(), tissue.end(), static_cast<uint8_t>(kAir));
    const auto paint = [&](size_t i, Tissue t, double hu) {
      tissue[i] = t;
      slice[i] = static_cast<float>(hu);
    };

    // Table under the patient, then the body wall from the skin inwards.
    {
      int r_lo = 0, r_hi = 0, c_lo = 0, c_hi = 0;
      IndexRange(a.oy + a.body_b + 3, a.oy + a.body_b + 10, g.y0, px, g.rows, r_lo, r_hi);
      IndexRange(-170, 170, g.x0, px, g.columns, c_lo, c_hi);
      for (int r = r_lo; r <= r_hi; ++r)
        for (int c = c_lo; c <= c_hi; ++c) paint(static_cast<size_t>(r) * g.columns + c, kTable, 120);
    }
    ForEllipse(g, a.ox, a.oy, a.body_a, a.body_b, [&](size_t i, double, double) { paint(i, kSkin, 40); });
    double inset = a.skin;
    ForEllipse(g, a.ox, a.oy, a.body_a - inset, a.body_b - inset,
               [&](size_t i, double, double) { paint(i, kFat, a.fat_hu); });
    inset += a.fat;
    ForEllipse(g, a.ox, a.oy, a.body_a - inset, a.body_b - inset,
               [&](size_t i, double, double) { paint(i, kMuscle, a.muscle_hu); });
    inset += a.muscle;
    ForEllipse(g, a.ox, a.oy, a.body_a - inset, a.body_b - inset,
               [&](size_t i, double, double) { paint(i, kSoft, 40); });

    // Thoracic cavity: abdomen under the diaphragm domes, mediastinal fat between the lungs, lungs.
    texture.Plane(z, plane);
    const double apex_f = std::sqrt(std::clamp((a.apex_z - z) / (45 * s), 0.0, 1.0));
    const double lung_a = 0.62 * a.cavity_a * apex_f, lung_b = 1.1 * a.cavity_b * apex_f;
    const double lung_cy = a.oy + 0.1 * a.cavity_b;
    {
      int r_lo = 0, r_hi = 0;
      IndexRange(a.oy - a.cavity_b, a.oy + a.cavity_b, g.y0, px, g.rows, r_lo, r_hi);
      for (int r = r_lo; r <= r_hi; ++r) {
        const double y = g.y0 + r * px;
        const double t = 1 - Sq((y - a.oy) / a.cavity_b);
        if (t <= 0) continue;
        const double w = a.cavity_a * std::sqrt(t);
        const double vy = (y - a.oy) / s;
        const double mediastinum = s * (20 + 34 * std::exp(-Sq((vy + 5) / 40)));
        const double apex_y = lung_b > 0 ? Sq((y - lung_cy) / lung_b) : 2;
        const float* tex_row0 = plane.data() + static_cast<size_t>(tex_iy[r]) * texture.nx;
        const float* tex_row1 = tex_row0 + texture.nx;
        const float fy = tex_fy[r];
        int c_lo = 0, c_hi = 0;
        IndexRange(a.ox - w, a.ox + w, g.x0, px, g.columns, c_lo, c_hi);
        const size_t row = static_cast<size_t>(r) * g.columns;
        for (int c = c_lo; c <= c_hi; ++c) {
          const double x = g.x0 + c * px;
          const size_t i = row + c;
          const double u = x - a.ox;
          if (z < a.DomeZ(x, y)) {
            paint(i, kLiver, u < 0 ? a.liver_hu : a.spleen_hu);
          } else if (std::fabs(u) < mediastinum) {
            paint(i, z < a.apex_z ? kMediastinalFat : kSoft, z < a.apex_z ? a.fat_hu : 40);
          } else if (lung_a > 0 && Sq((std::fabs(u) - 0.5 * a.cavity_a) / lung_a) + apex_y < 1) {
            const int ix = tex_ix[c];
            const float fx = tex_fx[c];
            const float t0 = tex_row0[ix] + fx * (tex_row0[ix + 1] - tex_row0[ix]);
            const float t1 = tex_row1[ix] + fx * (tex_row1[ix + 1] - tex_row1[ix]);
            paint(i, kLung, a.lung_hu + kLungTextureHu * (t0 + fy * (t1 - t0)));
          }
        }
      }
    }
    for (const Tube& t : a.esophagus) ForTube(g, z, t, [&](size_t i, double, double) { paint(i, kSoft, 40); });

    // Heart on the diaphragm: pericardial fat, myocardium, then the right (anterior-right) and left chambers
    // split by the septum.
    const auto heart_layer = [&](double inset_mm, auto&& f) {
      const double c = a.heart_c - inset_mm;
      const double dz = (z - a.heart_cz) / c;
      if (c <= 0 || std::fabs(dz) >= 1) return;
      const double k2 = std::sqrt(1 - dz * dz);
      ForEllipse(g, a.heart_cx, a.heart_cy, (a.heart_a - inset_mm) * k2, (a.heart_b - inset_mm) * k2,
                 [&](size_t i, double x, double y) {
                   if (z >= a.DomeZ(x, y) - 2) f(i, x);
                 });
    };
    heart_layer(-4 * s, [&](size_t i, double) { paint(i, kMediastinalFat, a.fat_hu); });
    heart_layer(0, [&](size_t i, double) { paint(i, kHeartWall, 45); });
    heart_layer(9 * s, [&](size_t i, double x) {
      const double septum = x - (a.heart_cx + 4 * s);
      if (std::fabs(septum) < 4 * s) {
        paint(i, kHeartWall, 45);
      } else {
        paint(i, kHeartBlood, septum < 0 ? a.rv_hu : a.lv_hu);
      }
    });

    for (const Tube& t : a.aorta) ForTube(g, z, t, [&](size_t i, double, double) { paint(i, kAorta, a.aorta_hu); });
    for (const Tube& t : a.svc) ForTube(g, z, t, [&](size_t i, double, double) { paint(i, kVein, a.svc_hu); });
    for (const Tube& t : a.veins) ForTube(g, z, t, [&](size_t i, double, double) { paint(i, kVein, a.lv_hu); });
    for (const Tube& t : a.peripheral_veins) {
      ForTube(g, z, t, [&](size_t i, double, double) {
        if (tissue[i] == kLung) paint(i, kVein, a.lv_hu);
      });
    }
    for (const Tube& t : a.airway) ForTube(g, z, t, [&](size_t i, double, double) { paint(i, kAirwayWall, 40); });
    for (Tube t : a.airway) {
      t.r0 -= 1.5 * s;
      t.r1 -= 1.5 * s;
      ForTube(g, z, t, [&](size_t i, double, double) { paint(i, kAirway, -990); });
    }

    // Spine: vertebral body (cortex and cancellous bone) or disc, canal, arch, spinous and transverse processes.
    {
      const bool disc = std::fmod(z - a.disc_phase + 10 * a.disc_pitch, a.disc_pitch) < 6 * s;
      const double canal_y = a.spine_cy + 24 * s;
      if (disc) {
        ForEllipse(g, a.ox, a.spine_cy, 16 * s, 16 * s, [&](size_t i, double, double) { paint(i, kSoft, 90); });
      } else {
        ForEllipse(g, a.ox, a.spine_cy, 16 * s, 16 * s, [&](size_t i, double, double) { paint(i, kBone, 650); });
        ForEllipse(g, a.ox, a.spine_cy, 14 * s, 14 * s, [&](size_t i, double, double) { paint(i, kMarrow, 240); });
      }
      ForEllipse(g, a.ox, canal_y, 13 * s, 13 * s, [&](size_t i, double, double y) {
        if (y > canal_y - 4 * s) paint(i, kBone, 600);
      });
      ForEllipse(g, a.ox, canal_y, 8 * s, 8 * s, [&](size_t i, double, double) { paint(i, kCanal, 15); });
      ForEllipse(g, a.ox, a.spine_cy + 40 * s, 4 * s, 8 * s, [&](size_t i, double, double) { paint(i, kBone, 600); });
      for (double side : {-1.0, 1.0}) {
        ForEllipse(g, a.ox + side * 22 * s, canal_y - 6 * s, 11 * s, 4.5 * s,
                   [&](size_t i, double, double) { paint(i, kBone, 600); });
      }
    }
    // Sternum.
    if (z > -95 * s && z < 62 * s) {
      const double sy = a.oy - a.cavity_b - 6 * s;
      ForEllipse(g, a.ox, sy, 14 * s, 6 * s, [&](size_t i, double, double) { paint(i, kBone, 650); });
      ForEllipse(g, a.ox, sy, 11.5 * s, 3.5 * s, [&](size_t i, double, double) { paint(i, kMarrow, 280); });
    }
    // Ribs: oblique hoops descending from the spine to the front, cut by the slice into oval sections; costal
    // cartilage near the sternum.
    {
      const double ra = a.cavity_a + 6 * s, rb = a.cavity_b + 6 * s, half = 5 * s, zh = 5.5 * s;
      ForAnnulus(g, a.ox, a.oy, ra - half, rb - half, ra + half, rb + half, [&](size_t i, double x, double y) {
        const double u = (x - a.ox) / ra, w = (y - a.oy) / rb;
        const double rho = std::sqrt(u * u + w * w);
        const double psi = std::atan2(std::fabs(u), w);  // 0 posterior, pi anterior
        if (psi < 0.22 || psi > 2.85) return;
        const double drop = a.rib_drop * (1 - std::cos(psi)) / 2;
        const double j = std::round((a.rib_z0 - drop - z) / a.rib_pitch);
        if (j < 0 || j > 11) return;
        const double dz = z - (a.rib_z0 - drop - j * a.rib_pitch);
        const double dr = (rho - 1) * std::hypot(x - a.ox, y - a.oy) / std::max(rho, 1e-9);
        const double q = Sq(dr / half) + Sq(dz / zh);
        if (q >= 1) return;
        if (psi > 2.45) {
          paint(i, kCartilage, 120);
        } else {
          paint(i, q < 0.4 ? kMarrow : kBone, q < 0.4 ? 300 : 700);
        }
      });
    }

    // Pulmonary arteries: named branches over everything but bone, peripheral ones only within the lungs.
    for (const Branch& b : a.branches) {
      for (size_t j = 1; j < b.points.size(); ++j) {
        ForTube(g, z, {b.points[j - 1], b.points[j], b.radii[j - 1], b.radii[j]}, [&](size_t i, double, double) {
          if (!IsBone(tissue[i])) paint(i, kArtery, a.artery_hu);
        });
      }
    }
    for (const Tube& t : a.peripheral) {
      ForTube(g, z, t, [&](size_t i, double, double) {
        if (tissue[i] == kLung) paint(i, kArtery, a.artery_hu);
      });
    }
    // The embolus fills part of the lumen.
    for (const Tube& t : embolus.tubes) {
      ForTube(g, z, t, [&](size_t i, double, double) {
        if (tissue[i] == kArtery) paint(i, kClot, embolus.hu);
      });
    }

    // Labels and truth.
    uint8_t* label = study.label_mask.data() + k * n;
    SliceExtent extent;
    extent.slice = k;
    for (uint32_t r = 0; r < v.rows; ++r) {
      const size_t row = static_cast<size_t>(r) * v.columns;
      for (uint32_t c = 0; c < v.columns; ++c) {
        const uint8_t t = tissue[row + c];
        if (t == kArtery) {
          label[row + c] = kCtpaLabelArteryLumen;
        } else if (t == kClot) {
          label[row + c] = kCtpaLabelEmbolus;
          ExtendBox(extent.box, extent.voxels, c, r, k);
          ++extent.voxels;
          sum_x += g.x0 + c * px;
          sum_y += g.y0 + r * px;
          sum_z += z;
        }
      }
    }
    if (extent.voxels > 0) {
      ExtendBox(et.box, et.voxels, extent.box.column_min, extent.box.row_min, k);
      ExtendBox(et.box, 1, extent.box.column_max, extent.box.row_max, k);
      et.voxels += extent.voxels;
      et.slices.push_back(extent);
    }
    for (LandmarkSearch& ls : searches) SearchLandmark(ls, g, k, tissue.data(), slice.data());

    // Quantum noise, then the reconstruction kernel's blur.
    Rng noise(MixSeed(o.seed, 1000 + k));
    for (size_t i = 0; i < n; ++i) slice[i] += static_cast<float>(kNoiseSdBeforeSmoothing * noise.Normal());
    internal::Smooth3x3(slice, v.columns, v.rows, tmp);
    int16_t* out = v.Slice(k);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<int16_t>(std::clamp(std::lround(slice[i]), -1024L, 3071L));
  }

  const double voxel_ml = v.column_spacing_mm * v.row_spacing_mm * v.slice_spacing_mm / 1000;
  et.present = et.voxels > 0;
  if (embolus.present) {
    et.side = embolus.side;
    et.branch = embolus.branch;
    et.clot_hu = embolus.hu;
    et.length_mm = embolus.length_mm;
  }
  et.volume_ml = et.voxels * voxel_ml;
  if (et.present) et.centroid_mm = {sum_x / et.voxels, sum_y / et.voxels, sum_z / et.voxels};

  // Identity, UIDs and series attributes: everything that shapes the content goes into the key.
  CtpaTruth& truth = study.truth;
  truth.folder = FolderName(o.seed, et);
  const std::string content_key = "ctpa/" + truth.folder + "/" + std::to_string(o.slices) + "/" +
                                  std::to_string(o.size) + "/" + o.department + "/" + o.institution;
  study.identity = MakeStudyIdentity("CHEST", o.seed, content_key);
  study.identity.study_description = "CTA CHEST PE PROTOCOL";
  study.identity.institution_name = o.institution;
  study.identity.department = o.department;
  study.identity.calling_ae = o.calling_ae;
  CtSeriesInfo& series = study.series;
  series.series_instance_uid = UidFromSeed(study.identity.study_instance_uid + "/series/3");
  series.frame_of_reference_uid = UidFromSeed(study.identity.study_instance_uid + "/frame-of-reference");
  series.series_number = 3;
  {
    char desc[32];
    std::snprintf(desc, sizeof desc, "CTPA %.3gMM", v.slice_spacing_mm);
    series.series_description = desc;
  }
  series.protocol_name = "CTA CHEST PE";
  series.body_part_examined = "CHEST";
  series.convolution_kernel = "B30F";
  series.kvp = 100;
  series.tube_current_ma = 250;
  series.exposure_mas = 150;
  series.window_center = 100;
  series.window_width = 700;

  truth.seed = o.seed;
  truth.study_instance_uid = study.identity.study_instance_uid;
  truth.series_instance_uid = series.series_instance_uid;
  truth.size = o.size;
  truth.slices = o.slices;
  truth.pixel_spacing_mm = px;
  truth.slice_thickness_mm = v.slice_spacing_mm;
  truth.origin_mm = v.origin_mm;
  truth.artery_hu = a.artery_hu;
  for (int i = 0; i < kPulmonaryBranchCount; ++i) {
    PulmonaryArteryTruth at;
    at.branch = static_cast<PulmonaryBranch>(i);
    for (const Vec3& p : a.branches[i].points) at.centerline_mm.push_back({p.x, p.y, p.z});
    at.radius_mm = a.branches[i].radii;
    truth.arteries.push_back(std::move(at));
  }
  for (const LandmarkSearch& ls : searches) {
    if (ls.found) truth.landmarks.push_back(ls.result);
  }
  return study;
}

LabelMaskLayout CtpaLabelMaskLayout(const CtpaStudy& study) {
  LabelMaskLayout layout;
  layout.slices = study.volume.slices;
  layout.rows = study.volume.rows;
  layout.columns = study.volume.columns;
  layout.labels = {{kCtpaLabelEmbolus, "embolus"}, {kCtpaLabelArteryLumen, "pulmonary_artery_lumen"}};
  return layout;
}

nlohmann::json CtpaTruthToJson(const CtpaTruth& t) {
  nlohmann::json j;
  j["seed"] = t.seed;
  j["study_instance_uid"] = t.study_instance_uid;
  j["series_instance_uid"] = t.series_instance_uid;
  j["folder"] = t.folder;
  j["files"] = t.files;
  j["geometry"] = {{"size", t.size},
                   {"slices", t.slices},
                   {"pixel_spacing_mm", t.pixel_spacing_mm},
                   {"slice_thickness_mm", t.slice_thickness_mm},
                   {"image_orientation_patient", {1, 0, 0, 0, 1, 0}},
                   {"origin_mm", t.origin_mm}};
  j["artery_hu"] = t.artery_hu;
  const EmbolusTruth& e = t.embolus;
  nlohmann::json ej;
  ej["present"] = e.present;
  ej["side"] = e.present ? nlohmann::json(std::string(EmbolusSideName(e.side))) : nlohmann::json(nullptr);
  ej["branch"] = e.present ? nlohmann::json(std::string(PulmonaryBranchName(e.branch))) : nlohmann::json(nullptr);
  ej["clot_hu"] = e.clot_hu;
  ej["length_mm"] = e.length_mm;
  ej["voxels"] = e.voxels;
  ej["volume_ml"] = e.volume_ml;
  if (e.present) {
    ej["bounding_box"] = VoxelBoxToJson(e.box);
    ej["centroid_mm"] = e.centroid_mm;
    nlohmann::json slices = nlohmann::json::array();
    for (const SliceExtent& s : e.slices) {
      slices.push_back({{"slice", s.slice},
                        {"instance_number", s.slice + 1},
                        {"voxels", s.voxels},
                        {"bounding_box", VoxelBoxToJson(s.box)}});
    }
    ej["slices"] = slices;
  } else {
    ej["bounding_box"] = nullptr;
    ej["centroid_mm"] = nullptr;
    ej["slices"] = nlohmann::json::array();
  }
  j["embolus"] = ej;
  nlohmann::json arteries = nlohmann::json::array();
  for (const PulmonaryArteryTruth& at : t.arteries) {
    arteries.push_back({{"branch", std::string(PulmonaryBranchName(at.branch))},
                        {"side", std::string(EmbolusSideName(PulmonaryBranchSide(at.branch)))},
                        {"centerline_mm", at.centerline_mm},
                        {"radius_mm", at.radius_mm}});
  }
  j["pulmonary_arteries"] = arteries;
  nlohmann::json marks = nlohmann::json::array();
  for (const Landmark& l : t.landmarks) {
    marks.push_back({{"name", l.name}, {"column", l.column}, {"row", l.row}, {"slice", l.slice},
                     {"expected_hu", l.expected_hu}});
  }
  j["landmarks"] = marks;
  return j;
}

StatusOr<CtpaTruth> WriteCtpaStudy(const CtpaStudy& study, const std::filesystem::path& out_dir) {
  const std::filesystem::path dir = out_dir / study.truth.folder;
  StatusOr<std::vector<std::string>> files = WriteCtSeries(study.identity, study.series, study.volume, dir);
  if (!files.ok()) return files.status();
  for (const std::string& name : *files) {
    if (Status s = AddContrastAttributes(dir / name); !s.ok()) return s;
  }
  CtpaTruth truth = study.truth;
  truth.files = std::move(*files);
  nlohmann::json j = CtpaTruthToJson(truth);
  j["patient_id"] = study.identity.patient_id;
  j["accession_number"] = study.identity.accession_number;
  j["calling_ae"] = study.identity.calling_ae;
  j["department"] = study.identity.department;
  j["label_mask"] = LabelMaskLayoutToJson(CtpaLabelMaskLayout(study));
  const std::filesystem::path truth_path = dir / "truth.json";
  std::ofstream out(truth_path, std::ios::binary | std::ios::trunc);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) return Unavailable("cannot write " + truth_path.string());
  return truth;
}

StatusOr<CtpaTruth> WriteCtpa(const CtpaOptions& options, const std::filesystem::path& out_dir) {
  StatusOr<CtpaStudy> study = GenerateCtpa(options);
  if (!study.ok()) return study.status();
  return WriteCtpaStudy(*study, out_dir);
}

}  // namespace aihub::phantom
