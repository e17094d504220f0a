#include "phantom/cardiac_cine.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <system_error>

#include "common/hash.h"
#include "phantom/random.h"
#include "phantom_util.h"

namespace aihub::phantom {
namespace {

using internal::FormatDs;

constexpr double kPi = 3.14159265358979323846;
constexpr double kFieldOfViewMm = 360;
constexpr double kSliceMm = 8;
constexpr double kMyocardiumGramsPerMl = 1.05;
constexpr int kMaxValue = 4095;
constexpr int kSeriesNumber = 7;
// The cavity is calibrated by one scale for all slices; its squared value is searched up to this.
constexpr double kMaxCavityScale2 = 4;

inline double Sq(double v) { return v * v; }

struct Vec3 {
  double x = 0, y = 0, z = 0;
};
Vec3 operator+(Vec3 a, Vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
Vec3 operator-(Vec3 a, Vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
Vec3 operator*(double s, Vec3 a) { return {s * a.x, s * a.y, s * a.z}; }
double Dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
Vec3 Cross(Vec3 a, Vec3 b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
Vec3 Normalize(Vec3 a) { return (1 / std::sqrt(Dot(a, a))) * a; }

// An ellipse in image-plane millimetres (x to the image right, y down), semi-axis a along angle t from +x.
struct Ellipse {
  double cx = 0, cy = 0, a = 0, b = 0, cos_t = 1, sin_t = 0;

  // The ellipse equation's left side: <= 1 inside.
  double F(double x, double y) const {
    const double dx = x - cx, dy = y - cy;
    return Sq((dx * cos_t + dy * sin_t) / a) + Sq((-dx * sin_t + dy * cos_t) / b);
  }
  bool Inside(double x, double y) const { return a > 0 && b > 0 && F(x, y) <= 1; }
  Ellipse Grown(double mm) const {
    Ellipse e = *this;
    if (a > 0 && b > 0) {
      e.a += mm;
      e.b += mm;
    }
    return e;
  }
};

Ellipse MakeEllipse(double cx, double cy, double a, double b, double angle) {
  return {cx, cy, a, b, std::cos(angle), std::sin(angle)};
}

// Study-wide anatomy, drawn from the anatomy stream; nothing here depends on options other than the slice count.
struct Anatomy {
  // Orientation: base_to_apex is the long axis, row and col the image's directions.
  Vec3 base_to_apex, row, col;
  Vec3 base_centre;  // patient position of the image centre of slice 0
  // Thorax, in image-plane mm.
  Ellipse body;
  double fat_mm = 12, muscle_mm = 12;
  Ellipse left_lung, right_lung;
  double liver_cx = 0, liver_cy = 0, liver_a = 0, liver_b = 0, liver_rise = 0.6;
  double aorta_r = 11;
  // Left ventricle at end-diastole: a half ellipsoid from the base plane (depth 0) to the apex (depth length_mm),
  // elliptical in plane (minor / major = ecc, major axis at angle theta), with a wall of wall_mm (apex_wall_mm at
  // the apex) around it.
  double lv_cx = 0, lv_cy = 0, tilt_x = 0, tilt_y = 0;  // centre at depth d: (lv_cx + tilt_x d, lv_cy + tilt_y d)
  double ecc = 0.92, theta = 0;
  double length_mm = 70, wall_mm = 9, epi_length_mm = 80;
  double rv_length_mm = 60, rv_theta = 0;
  double pericardial_fat_mm = 3;
  std::vector<double> slice_jitter, slice_dx, slice_dy;  // per slice
  // Signal.
  double blood = 800, rv_blood = 760, myocardium = 300, fat = 540, muscle = 220, lung = 35, liver = 300;
  double bias_x = 0, bias_y = 0;  // linear receive-coil shading over +-180 mm
  double noise_sd = 12;
};

Anatomy DrawAnatomy(Rng& rng, uint32_t slices) {
  Anatomy a;
  // Long axis: from the base anterior, to the left and inferior (azimuth from anterior towards the left, elevation
  // below the axial plane), as a planned short-axis stack is.
  const double az = rng.Uniform(38, 52) * kPi / 180;
  const double el = rng.Uniform(-42, -28) * kPi / 180;
  a.base_to_apex = {std::cos(el) * std::sin(az), -std::cos(el) * std::cos(az), std::sin(el)};
  // Image down = patient inferior projected into the plane (the inferior wall at the bottom), image right = the
  // lateral wall; the DICOM normal row x col is then -base_to_apex.
  const Vec3 inferior{0, 0, -1};
  a.col = Normalize(inferior - Dot(inferior, a.base_to_apex) * a.base_to_apex);
  a.row = Normalize(Cross(a.base_to_apex, a.col));
  // The row has no z component by construction; keep rounding residue out of the headers.
  for (Vec3* v : {&a.row, &a.col}) {
    for (double* c : {&v->x, &v->y, &v->z}) {
      if (std::fabs(*c) < 1e-12) *c = 0;
    }
  }
  a.base_centre = {rng.Uniform(10, 40), rng.Uniform(-40, -15), rng.Uniform(-10, 30)};

  const double body_a = rng.Uniform(158, 172), body_b = rng.Uniform(116, 130);
  a.body = MakeEllipse(rng.Uniform(-6, 6), rng.Uniform(8, 20), body_a, body_b, rng.Uniform(-0.06, 0.06));
  a.fat_mm = rng.Uniform(8, 16);
  a.muscle_mm = rng.Uniform(10, 16);

  a.lv_cx = rng.Uniform(8, 22);
  a.lv_cy = rng.Uniform(-16, -4);
  a.tilt_x = rng.Uniform(-0.1, 0.15);
  a.tilt_y = rng.Uniform(-0.1, 0.1);
  a.ecc = rng.Uniform(0.86, 0.98);
  a.theta = rng.Uniform(-0.5, 0.5);
  a.wall_mm = rng.Uniform(7.5, 10.5);
  // The stack is planned from the base to the apex: the cavity ends within the last slice or just before it.
  const double coverage = slices * kSliceMm;
  a.length_mm = rng.Uniform(0.86, 1.0) * coverage;
  a.epi_length_mm = std::max(a.length_mm + 0.7 * a.wall_mm, coverage + 2);
  a.rv_length_mm = rng.Uniform(0.75, 0.9) * a.length_mm;
  a.rv_theta = rng.Uniform(-0.2, 0.2);
  a.pericardial_fat_mm = rng.Uniform(2, 5);
  for (uint32_t k = 0; k < slices; ++k) {
    a.slice_jitter.push_back(rng.Uniform(0.96, 1.04));
    a.slice_dx.push_back(rng.Uniform(-1.5, 1.5));
    a.slice_dy.push_back(rng.Uniform(-1.5, 1.5));
  }

  // Lungs beside the heart, a liver that rises into the apical slices, the descending aorta behind the heart.
  a.left_lung = MakeEllipse(a.lv_cx + rng.Uniform(80, 95), a.lv_cy + rng.Uniform(-15, 5), rng.Uniform(65, 80),
                            rng.Uniform(90, 105), rng.Uniform(-0.2, 0.1));
  a.right_lung = MakeEllipse(a.lv_cx - rng.Uniform(125, 140), a.lv_cy + rng.Uniform(-15, 5), rng.Uniform(60, 75),
                             rng.Uniform(85, 100), rng.Uniform(-0.1, 0.2));
  a.liver_cx = a.lv_cx - rng.Uniform(60, 90);
  a.liver_cy = a.lv_cy + rng.Uniform(130, 150);
  a.liver_a = rng.Uniform(100, 120);
  a.liver_b = rng.Uniform(60, 75);
  a.liver_rise = rng.Uniform(0.5, 0.8);
  a.aorta_r = rng.Uniform(9.5, 12.5);

  a.blood = rng.Uniform(720, 860);
  a.rv_blood = a.blood * rng.Uniform(0.92, 1.0);
  a.myocardium = rng.Uniform(260, 340);
  a.fat = rng.Uniform(480, 600);
  a.muscle = rng.Uniform(190, 250);
  a.lung = rng.Uniform(25, 50);
  a.liver = rng.Uniform(270, 330);
  a.bias_x = rng.Uniform(-0.05, 0.05);
  a.bias_y = rng.Uniform(-0.05, 0.05);
  a.noise_sd = rng.Uniform(9, 16);
  return a;
}

// The cardiac cycle, drawn from the function stream.
struct Function {
  double edv_ml = 150;  // wanted, before the cavity radius is limited
  double ef = 0.55;
  int heart_rate = 70;
  double es_fraction = 0.37;  // of the cycle, before it is put on a phase
  double rv_ef = 0.5;
};

Function DrawFunction(Rng& rng) {
  Function f;
  f.edv_ml = rng.Uniform(100, 200);
  f.ef = rng.Uniform(0.20, 0.70);
  f.heart_rate = rng.UniformInt(60, 80);
  f.es_fraction = rng.Uniform(0.35, 0.40);
  f.rv_ef = rng.Uniform(0.45, 0.6);
  return f;
}

// Contraction at cycle fraction t in [0, 1): 0 at end-diastole (t = 0), 1 at end-systole (t_es); a raised cosine
// in systole, and in diastole a raised cosine on a warped time so that early (rapid) filling is faster.
double Contraction(double t, double t_es) {
  if (t <= t_es) return 0.5 * (1 - std::cos(kPi * t / t_es));
  const double u = (t - t_es) / (1 - t_es);
  return 0.5 * (1 + std::cos(kPi * std::pow(u, 0.75)));
}

// One slice's left ventricle at end-diastole for a cavity scale of 1.
struct SliceHeart {
  double depth_mm = 0;  // from the base plane along the long axis
  double cx = 0, cy = 0;
  Ellipse endo_unit;      // cavity at scale 1; a = 0 where the slice is beyond the cavity's apex
  double myo_term = 0;    // (epicardial a)^2 - (endocardial a)^2 at scale 1: the wall's area / (pi ecc)
  double epi_ed_a = 0;    // epicardial major semi-axis at end-diastole
  double rv_profile = 0;  // right ventricle's size at this depth, 1 at the base
};

std::vector<SliceHeart> SliceHearts(const Anatomy& a, const std::vector<double>& depths, double radius_mm) {
  std::vector<SliceHeart> out;
  for (size_t k = 0; k < depths.size(); ++k) {
    SliceHeart s;
    const double d = depths[k];
    s.depth_mm = d;
    s.cx = a.lv_cx + a.tilt_x * d + a.slice_dx[k];
    s.cy = a.lv_cy + a.tilt_y * d + a.slice_dy[k];
    const double j = a.slice_jitter[k];
    const double endo = d < a.length_mm ? radius_mm * j * std::sqrt(1 - Sq(d / a.length_mm)) : 0;
    const double epi = d < a.epi_length_mm ? (radius_mm + a.wall_mm) * j * std::sqrt(1 - Sq(d / a.epi_length_mm)) : 0;
    s.endo_unit = MakeEllipse(s.cx, s.cy, endo, endo * a.ecc, a.theta);
    s.myo_term = std::max(0.0, Sq(epi) - Sq(endo));
    s.epi_ed_a = std::max(epi, endo);
    const double rv_flat = 0.35 * a.rv_length_mm;
    if (d <= rv_flat) {
      s.rv_profile = 1;
    } else if (d < a.rv_length_mm) {
      s.rv_profile = std::sqrt(1 - Sq((d - rv_flat) / (a.rv_length_mm - rv_flat)));
    }
    out.push_back(s);
  }
  return out;
}

// The shapes of one frame. The cavity is tested as endo_unit.F <= scale2 on precomputed values, so that the
// calibration's counts and the painted mask are the same comparisons of the same numbers.
struct FrameHeart {
  double scale2 = 1;
  Ellipse epi, rv, rv_wall, lv_fat, rv_fat;
};

FrameHeart MakeFrameHeart(const Anatomy& a, const SliceHeart& s, double scale2, double contraction, double rv_ef) {
  FrameHeart f;
  f.scale2 = scale2;
  // The wall keeps its area in every slice, so it thickens as the cavity shrinks.
  const double epi_a = std::sqrt(scale2 * Sq(s.endo_unit.a) + s.myo_term);
  f.epi = MakeEllipse(s.cx, s.cy, epi_a, epi_a * a.ecc, a.theta);
  // Right ventricle: an ellipse beside the septum, less the left ventricle: a crescent on the image's left.
  const double rv_scale = (1 - (1 - std::sqrt(1 - rv_ef)) * contraction) * s.rv_profile;
  const double r = s.epi_ed_a;
  f.rv = MakeEllipse(s.cx - 0.55 * r, s.cy - 0.2 * r, 1.05 * r * rv_scale, 1.3 * r * rv_scale, a.rv_theta);
  if (rv_scale <= 0 || r <= 0) f.rv.a = f.rv.b = 0;
  f.rv_wall = f.rv.Grown(3);
  f.lv_fat = f.epi.Grown(a.pericardial_fat_mm);
  f.rv_fat = f.rv_wall.Grown(a.pericardial_fat_mm);
  return f;
}

Status ValidateOptions(const CardiacCineOptions& o) {
  if (o.slices < 2 || o.slices > 24) return InvalidArgument("slices must be in 2..24");
  if (o.phases < 2 || o.phases > 50) return InvalidArgument("phases must be in 2..50");
  if (o.size < 64 || o.size > 512) return InvalidArgument("size must be in 64..512");
  if (o.ef_percent && !(*o.ef_percent >= 10 && *o.ef_percent <= 80)) {
    return InvalidArgument("ejection fraction must be in 10..80 percent");
  }
  if (o.missing_phase && *o.missing_phase >= o.phases) {
    return InvalidArgument("missing phase must be below the number of phases");
  }
  if (o.uneven_spacing && o.slices < 3) return InvalidArgument("uneven spacing needs 3 slices or more");
  return internal::ValidateSite(o.department, o.calling_ae, o.institution);
}

std::string FileName(uint32_t instance_number) {
  char name[32];
  std::snprintf(name, sizeof name, "MR%06u.dcm", instance_number);
  return name;
}

}  // namespace

std::string CardiacCineFolderName(const CardiacCineOptions& o) {
  std::string name = "cardiac-cine-s" + std::to_string(o.seed);
  if (o.ef_percent) {
    std::string ef = FormatDs(*o.ef_percent);
    std::replace(ef.begin(), ef.end(), '.', 'p');
    name += "-ef" + ef;
  }
  if (o.missing_phase) name += "-missing-phase-" + std::to_string(*o.missing_phase);
  if (o.uneven_spacing) name += "-uneven";
  return name;
}

StatusOr<CardiacCineStudy> GenerateCardiacCine(const CardiacCineOptions& o) {
  if (Status s = ValidateOptions(o); !s.ok()) return s;
  Rng anatomy_rng(MixSeed(o.seed, 1));
  const Anatomy a = DrawAnatomy(anatomy_rng, o.slices);
  Rng function_rng(MixSeed(o.seed, 2));
  const Function fn = DrawFunction(function_rng);

  const uint32_t n_slices = o.slices, n_phases = o.phases, size = o.size;
  const double px = kFieldOfViewMm / size;
  const double voxel_ml = px * px * kSliceMm / 1000;
  const uint32_t mid = n_slices / 2;

  CardiacCineStudy study;
  CardiacCineTruth& truth = study.truth;

  // Slice depths from the base plane; the uneven variant moves one mid slice half a spacing towards the apex and
  // images the heart where that slice really is.
  std::vector<double> nominal_depths(n_slices);
  for (uint32_t k = 0; k < n_slices; ++k) nominal_depths[k] = (k + 0.5) * kSliceMm;
  std::vector<double> depths = nominal_depths;
  if (o.uneven_spacing) {
    depths[mid] += kSliceMm / 2;
    truth.defects.push_back({"uneven_spacing", mid, 0, 0, kSliceMm / 2});
  }

  // Cavity radius for the wanted end-diastolic volume (a half ellipsoid: 2/3 pi R^2 ecc L), within what fits.
  const double ef = o.ef_percent ? *o.ef_percent / 100 : fn.ef;
  double radius = std::sqrt(1.5 * fn.edv_ml * 1000 / (kPi * a.ecc * a.length_mm));
  radius = std::clamp(radius, 15.0, 50.0);
  const double edv_target = 2.0 / 3 * kPi * Sq(radius) * a.ecc * a.length_mm / 1000;
  const double esv_target = edv_target * (1 - ef);
  const std::vector<SliceHeart> hearts = SliceHearts(a, depths, radius);
  // The cavity is calibrated on the planned stack, so a moved slice changes no other slice's image.
  const std::vector<SliceHeart> planned = SliceHearts(a, nominal_depths, radius);

  // Image-plane coordinates of pixel centres, computed once and shared by calibration and painting.
  std::vector<double> xs(size), ys(size);
  for (uint32_t i = 0; i < size; ++i) {
    xs[i] = (i - (size - 1) * 0.5) * px;
    ys[i] = (i - (size - 1) * 0.5) * px;
  }
  const size_t n = static_cast<size_t>(size) * size;
  // Per slice, the cavity equation at scale 1 for every pixel (infinity where there is no cavity), and all values
  // a cavity of scale up to 2 can reach, sorted: the rendered cavity at scale^2 = s2 is every value <= s2.
  auto cavity_equation = [&](const SliceHeart& heart) {
    std::vector<double> f(n, HUGE_VAL);
    const Ellipse& e = heart.endo_unit;
    if (!(e.a > 0 && e.b > 0)) return f;
    for (uint32_t r = 0; r < size; ++r) {
      for (uint32_t c = 0; c < size; ++c) f[static_cast<size_t>(r) * size + c] = e.F(xs[c], ys[r]);
    }
    return f;
  };
  std::vector<std::vector<double>> endo_f(n_slices);
  std::vector<double> reachable;
  for (uint32_t k = 0; k < n_slices; ++k) {
    endo_f[k] = cavity_equation(hearts[k]);
    const std::vector<double> f = depths[k] == nominal_depths[k] ? endo_f[k] : cavity_equation(planned[k]);
    for (double v : f) {
      if (v <= kMaxCavityScale2) reachable.push_back(v);
    }
  }
  std::sort(reachable.begin(), reachable.end());

  // End-systole falls on a phase, so the rendered minimum is the wanted end-systolic volume.
  const uint32_t es_target = std::clamp<uint32_t>(static_cast<uint32_t>(std::lround(fn.es_fraction * n_phases)), 1,
                                                  n_phases - 1);
  const double t_es = static_cast<double>(es_target) / n_phases;
  std::vector<double> scale2(n_phases), contraction(n_phases);
  for (uint32_t p = 0; p < n_phases; ++p) {
    contraction[p] = Contraction(static_cast<double>(p) / n_phases, t_es);
    const double target = edv_target - (edv_target - esv_target) * contraction[p];
    // The threshold halfway between the wanted count's value and the next one renders that many voxels.
    const size_t m = reachable.size();
    const size_t want = std::clamp<size_t>(static_cast<size_t>(std::llround(target / voxel_ml)), 1, m);
    scale2[p] = want < m ? 0.5 * (reachable[want - 1] + reachable[want]) : reachable[m - 1];
  }

  // Paint every frame.
  study.pixels.resize(n * n_slices * n_phases);
  study.label_mask.resize(n * n_slices * n_phases);
  std::vector<float> img(n), tmp;
  for (uint32_t k = 0; k < n_slices; ++k) {
    const SliceHeart& sh = hearts[k];
    const double d = depths[k];
    const Ellipse muscle = a.body.Grown(-a.fat_mm);
    const Ellipse thorax = a.body.Grown(-a.fat_mm - a.muscle_mm);
    const Ellipse liver = MakeEllipse(a.liver_cx, a.liver_cy - a.liver_rise * d, a.liver_a, a.liver_b, 0.15);
    const Ellipse aorta = MakeEllipse(hearts[0].cx - 0.4 * hearts[0].epi_ed_a - 0.05 * d,
                                      hearts[0].cy + hearts[0].epi_ed_a + 24 - 0.1 * d, a.aorta_r, a.aorta_r, 0);
    for (uint32_t p = 0; p < n_phases; ++p) {
      const size_t frame = static_cast<size_t>(k) * n_phases + p;
      const FrameHeart fh = MakeFrameHeart(a, sh, scale2[p], contraction[p], fn.rv_ef);
      uint8_t* mask = &study.label_mask[frame * n];
      const double* ef_k = endo_f[k].data();
      for (uint32_t r = 0; r < size; ++r) {
        const double y = ys[r];
        for (uint32_t c = 0; c < size; ++c) {
          const double x = xs[c];
          const size_t i = static_cast<size_t>(r) * size + c;
          double v = 0;
          uint8_t label = 0;
          if (ef_k[i] <= fh.scale2) {
            v = a.blood;
            label = kCineLabelLvCavity;
          } else if (fh.epi.Inside(x, y)) {
            v = a.myocardium;
            label = kCineLabelLvMyocardium;
          } else if (fh.rv.Inside(x, y)) {
            v = a.rv_blood;
            label = kCineLabelRvCavity;
          } else if (fh.rv_wall.Inside(x, y)) {
            v = a.myocardium;
          } else if (fh.lv_fat.Inside(x, y) || fh.rv_fat.Inside(x, y)) {
            v = a.fat;
          } else if (a.body.Inside(x, y)) {
            if (!muscle.Inside(x, y)) {
              v = a.fat;
            } else if (!thorax.Inside(x, y)) {
              v = a.muscle;
            } else if (aorta.Inside(x, y)) {
              v = a.blood * 0.95;
            } else if (liver.Inside(x, y)) {
              v = a.liver;
            } else if (a.left_lung.Inside(x, y) || a.right_lung.Inside(x, y)) {
              v = a.lung;
            } else {
              v = a.fat * 0.75;  // mediastinal fat and vessels between the lungs
            }
          }
          mask[i] = label;
          img[i] = static_cast<float>(v * (1 + a.bias_x * x / 180 + a.bias_y * y / 180));
        }
      }
      // Finite resolution, then magnitude (Rician) noise from two Gaussian channels.
      internal::Smooth3x3(img, size, size, tmp);
      Rng noise(MixSeed(o.seed, 1000 + frame));
      uint16_t* out = &study.pixels[frame * n];
      for (size_t i = 0; i < n; ++i) {
        const double re = img[i] + a.noise_sd * noise.Normal();
        const double im = a.noise_sd * noise.Normal();
        out[i] = static_cast<uint16_t>(std::clamp(std::lround(std::hypot(re, im)), 0L, static_cast<long>(kMaxValue)));
      }
    }
  }

  // Ground truth counted on the masks.
  truth.cavity_voxels.assign(n_slices, std::vector<uint64_t>(n_phases, 0));
  std::vector<uint64_t> myo_voxels(n_phases, 0);
  for (uint32_t k = 0; k < n_slices; ++k) {
    for (uint32_t p = 0; p < n_phases; ++p) {
      const uint8_t* mask = &study.label_mask[(static_cast<size_t>(k) * n_phases + p) * n];
      uint64_t cavity = 0, myo = 0;
      for (size_t i = 0; i < n; ++i) {
        cavity += mask[i] == kCineLabelLvCavity;
        myo += mask[i] == kCineLabelLvMyocardium;
      }
      truth.cavity_voxels[k][p] = cavity;
      myo_voxels[p] += myo;
    }
  }
  truth.volume_ml.assign(n_phases, 0);
  for (uint32_t p = 0; p < n_phases; ++p) {
    uint64_t voxels = 0;
    for (uint32_t k = 0; k < n_slices; ++k) voxels += truth.cavity_voxels[k][p];
    truth.volume_ml[p] = voxels * voxel_ml;
  }
  truth.ed_phase = static_cast<uint32_t>(std::max_element(truth.volume_ml.begin(), truth.volume_ml.end()) -
                                         truth.volume_ml.begin());
  truth.es_phase = static_cast<uint32_t>(std::min_element(truth.volume_ml.begin(), truth.volume_ml.end()) -
                                         truth.volume_ml.begin());
  truth.edv_ml = truth.volume_ml[truth.ed_phase];
  truth.esv_ml = truth.volume_ml[truth.es_phase];
  truth.sv_ml = truth.edv_ml - truth.esv_ml;
  truth.ef_percent = truth.edv_ml > 0 ? 100 * truth.sv_ml / truth.edv_ml : 0;
  truth.myocardium_ml_ed = myo_voxels[truth.ed_phase] * voxel_ml;
  truth.lv_mass_g = truth.myocardium_ml_ed * kMyocardiumGramsPerMl;
  truth.requested_ef_percent = ef * 100;
  truth.target_edv_ml = edv_target;
  truth.target_esv_ml = esv_target;

  // Geometry and timing.
  truth.slices = n_slices;
  truth.phases = n_phases;
  truth.rows = truth.columns = size;
  truth.pixel_spacing_mm = px;
  truth.slice_thickness_mm = kSliceMm;
  truth.voxel_ml = voxel_ml;
  truth.image_orientation_patient = {a.row.x, a.row.y, a.row.z, a.col.x, a.col.y, a.col.z};
  truth.base_to_apex = {a.base_to_apex.x, a.base_to_apex.y, a.base_to_apex.z};
  for (uint32_t k = 0; k < n_slices; ++k) {
    const Vec3 centre = a.base_centre + (depths[k] - 0.5 * kSliceMm) * a.base_to_apex;
    const Vec3 first = centre - ((size - 1) * 0.5 * px) * a.row - ((size - 1) * 0.5 * px) * a.col;
    truth.image_position_mm.push_back({first.x, first.y, first.z});
  }
  truth.heart_rate_bpm = fn.heart_rate;
  truth.rr_ms = 60000.0 / fn.heart_rate;
  for (uint32_t p = 0; p < n_phases; ++p) truth.trigger_time_ms.push_back(p * truth.rr_ms / n_phases);
  if (o.missing_phase) {
    truth.defects.insert(truth.defects.begin(),
                         {"missing_phase", mid, *o.missing_phase, mid * n_phases + *o.missing_phase + 1, 0});
  }

  // Identity and UIDs: everything that shapes the content goes into the key.
  truth.folder = CardiacCineFolderName(o);
  const std::string content_key = "cardiac-cine/" + truth.folder + "/" + std::to_string(n_slices) + "/" +
                                  std::to_string(n_phases) + "/" + std::to_string(size) + "/" + o.department + "/" +
                                  o.institution;
  study.identity = MakeStudyIdentity("HEART", o.seed, content_key);
  study.identity.study_description = "MR HEART FUNCTION";
  study.identity.institution_name = o.institution;
  study.identity.department = o.department;
  study.identity.calling_ae = o.calling_ae;
  truth.seed = o.seed;
  truth.study_instance_uid = study.identity.study_instance_uid;
  truth.series_instance_uid = UidFromSeed(truth.study_instance_uid + "/series/" + std::to_string(kSeriesNumber));
  for (uint32_t k = 0; k < n_slices; ++k) {
    for (uint32_t p = 0; p < n_phases; ++p) {
      if (o.missing_phase && k == mid && p == *o.missing_phase) continue;
      truth.files.push_back(FileName(k * n_phases + p + 1));
    }
  }
  return study;
}

LabelMaskLayout CardiacCineLabelMaskLayout(const CardiacCineStudy& study) {
  LabelMaskLayout layout;
  layout.slices = study.truth.slices * study.truth.phases;
  layout.rows = study.truth.rows;
  layout.columns = study.truth.columns;
  layout.labels = {{kCineLabelLvCavity, "lv_cavity"},
                   {kCineLabelLvMyocardium, "lv_myocardium"},
                   {kCineLabelRvCavity, "rv_cavity"}};
  return layout;
}

nlohmann::json CardiacCineTruthToJson(const CardiacCineTruth& t) {
  nlohmann::json j;
  j["seed"] = t.seed;
  j["study_instance_uid"] = t.study_instance_uid;
  j["series_instance_uid"] = t.series_instance_uid;
  j["folder"] = t.folder;
  j["files"] = t.files;
  j["slices"] = t.slices;
  j["phases"] = t.phases;
  j["instance_number"] = "slice * phases + phase + 1 (0-based slice from the base, 0-based phase)";
  j["geometry"] = {{"rows", t.rows},
                   {"columns", t.columns},
                   {"pixel_spacing_mm", t.pixel_spacing_mm},
                   {"slice_thickness_mm", t.slice_thickness_mm},
                   {"spacing_between_slices_mm", t.slice_thickness_mm},
                   {"image_orientation_patient", t.image_orientation_patient},
                   {"base_to_apex", t.base_to_apex},
                   {"image_position_mm", t.image_position_mm}};
  j["voxel_size_mm"] = {t.pixel_spacing_mm, t.pixel_spacing_mm, t.slice_thickness_mm};
  j["voxel_ml"] = t.voxel_ml;
  j["heart_rate"] = t.heart_rate_bpm;
  j["rr_ms"] = t.rr_ms;
  j["trigger_time_ms"] = t.trigger_time_ms;
  j["ed_phase"] = t.ed_phase;
  j["es_phase"] = t.es_phase;
  j["edv_ml"] = t.edv_ml;
  j["esv_ml"] = t.esv_ml;
  j["sv_ml"] = t.sv_ml;
  j["ef_percent"] = t.ef_percent;
  j["volume_ml"] = t.volume_ml;
  j["cavity_voxels"] = t.cavity_voxels;
  j["volume_method"] = "sum over slices of LV cavity voxels (label 1) x voxel_ml (Simpson's discs of SliceThickness)";
  j["myocardium_ml_ed"] = t.myocardium_ml_ed;
  j["lv_mass_g"] = t.lv_mass_g;
  j["requested"] = {{"ef_percent", t.requested_ef_percent},
                    {"edv_ml", t.target_edv_ml},
                    {"esv_ml", t.target_esv_ml}};
  nlohmann::json defects = nlohmann::json::array();
  for (const CineDefect& d : t.defects) {
    nlohmann::json dj = {{"kind", d.kind}, {"slice", d.slice}};
    if (d.kind == "missing_phase") {
      dj["phase"] = d.phase;
      dj["instance_number"] = d.instance_number;
    } else {
      dj["shift_mm"] = d.shift_mm;
    }
    defects.push_back(dj);
  }
  j["defects"] = defects;
  return j;
}

StatusOr<CardiacCineTruth> WriteCardiacCineStudy(const CardiacCineStudy& study, const std::filesystem::path& out_dir) {
  const CardiacCineTruth& t = study.truth;
  const StudyIdentity& id = study.identity;
  const size_t n = static_cast<size_t>(t.rows) * t.columns;
  if (study.pixels.size() != n * t.slices * t.phases || t.image_position_mm.size() != t.slices) {
    return InvalidArgument("cine frames do not match slices x phases x rows x columns");
  }
  const std::filesystem::path dir = out_dir / t.folder;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create " + dir.string() + ": " + ec.message());

  const std::string series_uid = t.series_instance_uid;
  const std::string frame_of_reference = UidFromSeed(t.study_instance_uid + "/frame-of-reference");
  const std::array<double, 6>& iop = t.image_orientation_patient;
  const Vec3 row{iop[0], iop[1], iop[2]}, col{iop[3], iop[4], iop[5]};
  const Vec3 normal = Cross(row, col);
  const std::string size = std::to_string(t.rows);
  // A window over the myocardium and blood pool.
  double blood_max = 0;
  for (size_t i = 0; i < n; ++i) {
    if (study.label_mask[i] == kCineLabelLvCavity) blood_max = std::max<double>(blood_max, study.pixels[i]);
  }
  const double window_width = std::max(600.0, std::round(blood_max * 1.1));
  const double window_center = std::round(window_width / 2);

  for (const std::string& name : t.files) {
    const uint32_t instance = static_cast<uint32_t>(std::stoul(name.substr(2, 6)));
    const uint32_t k = (instance - 1) / t.phases, p = (instance - 1) % t.phases;
    const std::array<double, 3>& ipp = t.image_position_mm[k];
    const double slice_location = Dot({ipp[0], ipp[1], ipp[2]}, normal);
    const std::string sop_uid = UidFromSeed(series_uid + "/instance/" + std::to_string(instance));

    DcmFileFormat format;
    DcmDataset* ds = format.getDataset();
    internal::DicomPutter w(ds);
    const std::string& date = id.study_date;
    // SOP Common, Patient, General Study, General Series, General Equipment.
    w.Put(DCM_SpecificCharacterSet, "ISO_IR 100");
    w.Put(DCM_ImageType, "ORIGINAL\\PRIMARY\\M");
    w.Put(DCM_SOPClassUID, UID_MRImageStorage);
    w.Put(DCM_SOPInstanceUID, sop_uid);
    w.Put(DCM_StudyDate, date);
    w.Put(DCM_SeriesDate, date);
    w.Put(DCM_AcquisitionDate, date);
    w.Put(DCM_ContentDate, date);
    w.Put(DCM_StudyTime, id.study_time);
    w.Put(DCM_SeriesTime, id.study_time);
    w.Put(DCM_AcquisitionTime, id.study_time);
    w.Put(DCM_ContentTime, id.study_time);
    w.Put(DCM_AccessionNumber, id.accession_number);
    w.Put(DCM_Modality, "MR");
    w.Put(DCM_Manufacturer, "AIHUB PHANTOM");
    w.Put(DCM_InstitutionName, id.institution_name);
    w.Put(DCM_ReferringPhysicianName, id.referring_physician_name);
    w.Put(DCM_StationName, "MRCARD1");
    w.Put(DCM_StudyDescription, id.study_description);
    w.Put(DCM_SeriesDescription, "CINE SAX");
    w.Put(DCM_InstitutionalDepartmentName, id.department);
    w.Put(DCM_ManufacturerModelName, "SYNTHETIC MR");
    w.Put(DCM_PatientName, id.patient_name);
    w.Put(DCM_PatientID, id.patient_id);
    w.Put(DCM_PatientBirthDate, id.patient_birth_date);
    w.Put(DCM_PatientSex, id.patient_sex);
    w.Put(DCM_PatientAge, id.patient_age);
    w.Put(DCM_BodyPartExamined, "HEART");
    w.PutCode(DCM_AnatomicRegionSequence, "80891009", "SCT", "Heart");
    // MR Image: a retrospectively gated 2D balanced steady-state free precession cine at 1.5 T.
    w.Put(DCM_ScanningSequence, "GR");
    w.Put(DCM_SequenceVariant, "SS");
    w.Put(DCM_ScanOptions, "CG");
    w.Put(DCM_MRAcquisitionType, "2D");
    w.Put(DCM_SequenceName, "*BSSFP_CINE");
    w.Put(DCM_AngioFlag, "N");
    w.Put(DCM_SliceThickness, FormatDs(t.slice_thickness_mm));
    w.Put(DCM_RepetitionTime, "3.1");
    w.Put(DCM_EchoTime, "1.35");
    w.Put(DCM_NumberOfAverages, "1");
    w.Put(DCM_ImagingFrequency, "63.676");
    w.Put(DCM_ImagedNucleus, "1H");
    w.Put(DCM_EchoNumbers, "1");
    w.Put(DCM_MagneticFieldStrength, "1.5");
    w.Put(DCM_SpacingBetweenSlices, FormatDs(t.slice_thickness_mm));
    w.Put(DCM_NumberOfPhaseEncodingSteps, size);
    w.Put(DCM_EchoTrainLength, "1");
    w.Put(DCM_PercentSampling, "100");
    w.Put(DCM_PercentPhaseFieldOfView, "100");
    w.Put(DCM_PixelBandwidth, "930");
    w.Put(DCM_SoftwareVersions, "aihub-phantom 1");
    w.Put(DCM_ProtocolName, "CINE SAX");
    w.Put(DCM_TriggerTime, FormatDs(t.trigger_time_ms[p]));
    w.Put(DCM_NominalInterval, std::to_string(std::lround(t.rr_ms)));
    w.Put(DCM_BeatRejectionFlag, "N");
    w.Put(DCM_HeartRate, std::to_string(t.heart_rate_bpm));
    w.Put(DCM_CardiacNumberOfImages, std::to_string(t.phases));
    w.Put(DCM_ReconstructionDiameter, FormatDs(t.pixel_spacing_mm * t.columns));
    w.Put(DCM_ReceiveCoilName, "BODY18");
    w.Put(DCM_TransmitCoilName, "BODY");
    w.Put(DCM_AcquisitionMatrix, "0\\" + size + "\\" + size + "\\0");
    w.Put(DCM_InPlanePhaseEncodingDirection, "ROW");
    w.Put(DCM_FlipAngle, "60");
    w.Put(DCM_VariableFlipAngleFlag, "N");
    w.Put(DCM_PatientPosition, "HFS");
    // Series, frame of reference, image plane, time.
    w.Put(DCM_StudyInstanceUID, t.study_instance_uid);
    w.Put(DCM_SeriesInstanceUID, series_uid);
    w.Put(DCM_StudyID, id.study_id);
    w.Put(DCM_SeriesNumber, std::to_string(kSeriesNumber));
    w.Put(DCM_AcquisitionNumber, "1");
    w.Put(DCM_InstanceNumber, std::to_string(instance));
    w.Put(DCM_ImagePositionPatient, FormatDs({ipp[0], ipp[1], ipp[2]}));
    w.Put(DCM_ImageOrientationPatient, FormatDs({iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]}));
    w.Put(DCM_FrameOfReferenceUID, frame_of_reference);
    w.Put(DCM_PositionReferenceIndicator, "");
    w.Put(DCM_TemporalPositionIdentifier, std::to_string(p + 1));
    w.Put(DCM_NumberOfTemporalPositions, std::to_string(t.phases));
    w.Put(DCM_SliceLocation, FormatDs(slice_location));
    // Image pixel and presentation.
    w.PutU16(DCM_SamplesPerPixel, 1);
    w.Put(DCM_PhotometricInterpretation, "MONOCHROME2");
    w.PutU16(DCM_Rows, static_cast<uint16_t>(t.rows));
    w.PutU16(DCM_Columns, static_cast<uint16_t>(t.columns));
    w.Put(DCM_PixelSpacing, FormatDs({t.pixel_spacing_mm, t.pixel_spacing_mm}));
    w.PutU16(DCM_BitsAllocated, 16);
    w.PutU16(DCM_BitsStored, 12);
    w.PutU16(DCM_HighBit, 11);
    w.PutU16(DCM_PixelRepresentation, 0);
    w.Put(DCM_WindowCenter, FormatDs(window_center));
    w.Put(DCM_WindowWidth, FormatDs(window_width));
    w.Put(DCM_LossyImageCompression, "00");
    if (!w.status().ok()) return w.status();
    const uint16_t* pixels = &study.pixels[(static_cast<size_t>(k) * t.phases + p) * n];
    OFCondition c = ds->putAndInsertUint16Array(DCM_PixelData, pixels, static_cast<unsigned long>(n));
    if (c.bad()) return Internal(std::string("cannot set PixelData: ") + c.text());
    if (!id.calling_ae.empty()) {
      c = format.getMetaInfo()->putAndInsertString(DCM_SourceApplicationEntityTitle, id.calling_ae.c_str());
      if (c.bad()) return Internal(std::string("cannot set SourceApplicationEntityTitle: ") + c.text());
    }
    const std::filesystem::path file = dir / name;
    c = format.saveFile(file.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0,
                        0, EWM_updateMeta);
    if (c.bad()) return Unavailable("cannot write " + file.string() + ": " + c.text());
  }

  nlohmann::json j = CardiacCineTruthToJson(t);
  j["patient_id"] = id.patient_id;
  j["accession_number"] = id.accession_number;
  j["calling_ae"] = id.calling_ae;
  j["department"] = id.department;
  j["label_mask"] = LabelMaskLayoutToJson(CardiacCineLabelMaskLayout(study));
  j["label_mask"]["frames"] = "slice * phases + phase (InstanceNumber - 1), all frames including a missing one";
  const std::filesystem::path truth_path = dir / "truth.json";
  std::ofstream out(truth_path, std::ios::binary | std::ios::trunc);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) return Unavailable("cannot write " + truth_path.string());
  return t;
}

StatusOr<CardiacCineTruth> WriteCardiacCine(const CardiacCineOptions& options, const std::filesystem::path& out_dir) {
  StatusOr<CardiacCineStudy> study = GenerateCardiacCine(options);
  if (!study.ok()) return study.status();
  return WriteCardiacCineStudy(*study, out_dir);
}

}  // namespace aihub::phantom
