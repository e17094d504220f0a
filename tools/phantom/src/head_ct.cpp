#include "phantom/head_ct.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <system_error>

#include "common/hash.h"
#include "phantom/random.h"
#include "phantom_util.h"

namespace aihub::phantom {
namespace {

using internal::ExtendBox;
using internal::Smooth3x3;
using internal::ValidateSite;
using internal::VoxelBoxToJson;

constexpr double kPi = 3.14159265358979323846;
constexpr double kFieldOfViewMm = 240;
constexpr double kSliceMm = 5;
constexpr double kNoiseSdBeforeSmoothing = 13;  // the 3x3 [1 2 1] smoothing leaves ~0.375 of it: ~4.9 HU

inline double Sq(double v) { return v * v; }

enum Tissue : uint8_t {
  kAir,
  kSkin,
  kFat,
  kGalea,
  kBone,
  kCsf,
  kGrey,
  kWhite,
  kDeepGrey,
  kVentricle,
  kBlood,
  kEdema,
};

struct Ellipsoid {
  double a = 1, b = 1, c = 1;  // semi-axes along x, y, z
  double R(double x, double y, double z) const { return std::sqrt(Sq(x / a) + Sq(y / b) + Sq(z / c)); }
};

// Head model in head-centred patient coordinates (mm): x to the patient's left, y posterior, z superior.
struct Anatomy {
  double cx = 0, cy = 0, cz = 0;  // head centre in patient coordinates
  double scale = 1;
  Ellipsoid inner, outer, scalp;  // inner and outer table of the skull, skin surface
  double ventricle_scale = 1;
  double grey_hu = 38, white_hu = 28, deep_grey_hu = 35, csf_hu = 6, ventricle_hu = 5;
  double phase1 = 0, phase2 = 0, phase3 = 0;  // gyral pattern
};

struct Sample {
  Tissue tissue = kAir;
  double hu = -1000;
  double depth = -1;  // mm below the inner table along the ray from the head centre; < 0 outside the skull
};

Anatomy DrawAnatomy(Rng& rng) {
  Anatomy a;
  a.scale = rng.Uniform(0.94, 1.06);
  a.cx = rng.Uniform(-3, 3);
  a.cy = rng.Uniform(-2, 6);
  a.cz = rng.Uniform(-15, -9);
  a.inner = {66 * a.scale, 84 * a.scale, 92 * a.scale};
  const double skull = rng.Uniform(5.5, 7.5);
  const double scalp = rng.Uniform(5, 7);
  a.outer = {a.inner.a + skull, a.inner.b + skull, a.inner.c + skull};
  a.scalp = {a.outer.a + scalp, a.outer.b + scalp, a.outer.c + scalp};
  a.ventricle_scale = rng.Uniform(0.85, 1.3);
  a.grey_hu = rng.Uniform(37, 41);
  a.white_hu = rng.Uniform(24, 28);
  a.deep_grey_hu = a.grey_hu - 2;
  a.csf_hu = rng.Uniform(4, 8);
  a.ventricle_hu = a.csf_hu - 1;
  a.phase1 = rng.Uniform(0, 2 * kPi);
  a.phase2 = rng.Uniform(0, 2 * kPi);
  a.phase3 = rng.Uniform(0, 2 * kPi);
  return a;
}

// Gyral pattern: sulci lie where the field is near zero. Integer angular frequencies keep it continuous.
struct SulcusField {
  double g = 1;             // |g| small: in or near a sulcus
  double sulcal_depth = 0;  // how deep sulci reach below the inner table here, mm
  double cortex = 3;        // cortical thickness at the surface, mm
};

SulcusField Sulci(const Anatomy& a, double x, double y, double z, double ri, double depth) {
  const double theta = std::atan2(y / a.inner.b, x / a.inner.a);
  const double phi = std::asin(std::clamp(ri > 1e-9 ? z / a.inner.c / ri : 0.0, -1.0, 1.0));
  SulcusField f;
  // The depth term bends sulci as they run inward, so they do not look like radial spokes.
  f.g = std::sin(11 * theta + 2.5 * std::sin(2.3 * phi + a.phase2) + a.phase1 +
                 0.09 * depth * std::sin(3 * theta + 2 * phi + a.phase3));
  f.sulcal_depth = 8 + 5 * (0.5 + 0.5 * std::sin(5 * theta + 3 * phi + a.phase3));
  f.cortex = 3.5 + 0.8 * std::sin(7 * theta - 4 * phi);
  return f;
}

bool InVentricle(const Anatomy& a, double x, double y, double z) {
  const double s = a.ventricle_scale;
  // Third ventricle: a midline slit.
  if (std::fabs(x) < 1.5 * s && y > -8 && y < 14 && z > -14 && z < 2) return true;
  if (y < -32 || y > 36) return false;
  // Lateral ventricles: arched tubes, frontal horns near the midline, atria diverging posteriorly.
  const double t = (y - 2) / 34;
  const double taper = 1 - t * t;
  const double zc = 14 - 10 * t * t;
  for (int sgn : {-1, 1}) {
    const double xc = sgn * (6.5 + 0.16 * (y + 32)) * (0.7 + 0.3 * s);
    if (Sq((x - xc) / (4.0 * s)) + Sq((z - zc) / (7.0 * s)) < taper) return true;
  }
  return false;
}

bool InDeepGrey(double x, double y, double z) {
  for (int sgn : {-1, 1}) {
    if (Sq((x - sgn * 11) / 5) + Sq((y + 12) / 9) + Sq((z - 10) / 8) < 1) return true;  // caudate head
    if (Sq((x - sgn * 9) / 7) + Sq((y - 8) / 10) + Sq(z / 7) < 1) return true;          // thalamus
  }
  return false;
}

Sample Classify(const Anatomy& a, double x, double y, double z) {
  const double rs = a.scalp.R(x, y, z);
  if (rs >= 1) return {kAir, -1000, -1};
  const double len = std::sqrt(x * x + y * y + z * z);
  const double ro = a.outer.R(x, y, z);
  if (ro >= 1) {
    const double from_skin = len * (1 / rs - 1);
    const double from_bone = len * (1 - 1 / ro);
    if (from_skin < 1.5) return {kSkin, 45, -1};
    if (from_bone < 1.5) return {kGalea, 38, -1};
    return {kFat, -90, -1};
  }
  const double ri = a.inner.R(x, y, z);
  if (ri >= 1) {
    // Dense inner and outer tables around a less dense diploe.
    const double from_inner = len * (1 - 1 / ri);
    const double from_outer = len * (1 / ro - 1);
    const double u = from_inner / std::max(1e-6, from_inner + from_outer);
    return {kBone, 1500 - 780 * std::pow(std::sin(kPi * u), 0.7), -1};
  }
  const double depth = ri > 1e-9 ? len * (1 / ri - 1) : 1e9;
  if (depth < 1.2) return {kCsf, a.csf_hu, depth};
  if (std::fabs(x) < 1.0 && depth < 30) return {kCsf, a.csf_hu, depth};  // interhemispheric fissure
  if (InVentricle(a, x, y, z)) return {kVentricle, a.ventricle_hu, depth};
  if (InDeepGrey(x, y, z)) return {kDeepGrey, a.deep_grey_hu, depth};
  if (depth < 16) {
    const SulcusField f = Sulci(a, x, y, z, ri, depth);
    const double ag = std::fabs(f.g);
    if (depth < f.sulcal_depth && ag < 0.16) return {kCsf, a.csf_hu, depth};
    if (depth < f.cortex || (depth < f.sulcal_depth + 3 && ag < 0.55)) return {kGrey, a.grey_hu, depth};
  }
  return {kWhite, a.white_hu, depth};
}

// A hemorrhage, in head-centred coordinates.
struct Lesion {
  HemorrhageType type = HemorrhageType::kNone;
  double sgn = 1;  // +1 left, -1 right
  double blood_hu = 70;
  std::string lobe;
  double nominal_volume_ml = 0;
  // Intraparenchymal: rotated ellipsoid with an edema rim.
  double ex = 0, ey = 0, ez = 0, ax = 1, ay = 1, az = 1, cos_r = 1, sin_r = 0, edema_mm = 0;
  // Subdural and subarachnoid: angular (from the lateral direction, + posterior) and z windows.
  double theta_c = 0, theta_w = 1, zc = 0, zw = 1, thickness = 0;
  double fissure_y0 = 0, fissure_y1 = 0;
};

Lesion DrawLesion(Rng& rng, const Anatomy& a, HemorrhageType type, Side side) {
  Lesion l;
  l.type = type;
  l.sgn = side == Side::kLeft ? 1 : -1;
  const double s = a.scale;
  switch (type) {
    case HemorrhageType::kNone:
      break;
    case HemorrhageType::kIntraparenchymal: {
      struct Lobe {
        const char* name;
        double x, y, z;
      };
      static const Lobe kLobes[] = {
          {"frontal", 26, -48, 24}, {"parietal", 30, 16, 40}, {"temporal", 42, -10, -18}, {"occipital", 22, 56, 14}};
      const Lobe& lobe = kLobes[rng.UniformInt(0, 3)];
      l.lobe = lobe.name;
      l.blood_hu = rng.Uniform(62, 80);
      l.ex = l.sgn * lobe.x * s + rng.Uniform(-3, 3);
      l.ey = lobe.y * s + rng.Uniform(-3, 3);
      l.ez = lobe.z * s + rng.Uniform(-3, 3);
      l.nominal_volume_ml = std::exp(rng.Uniform(std::log(3.0), std::log(60.0)));
      const double r0 = std::cbrt(3 * l.nominal_volume_ml * 1000 / (4 * kPi));
      const double k1 = rng.Uniform(0.8, 1.25), k2 = rng.Uniform(0.8, 1.25);
      l.ax = r0 * k1;
      l.ay = r0 * k2;
      l.az = r0 / (k1 * k2);
      const double angle = rng.Uniform(0, kPi);
      l.cos_r = std::cos(angle);
      l.sin_r = std::sin(angle);
      l.edema_mm = rng.Uniform(2, 4);
      break;
    }
    case HemorrhageType::kSubdural:
      l.blood_hu = rng.Uniform(60, 75);
      l.theta_c = rng.Uniform(-0.5, 0.5);
      l.theta_w = rng.Uniform(0.9, 1.3);
      l.zc = rng.Uniform(5, 35);
      l.zw = rng.Uniform(30, 45);
      l.thickness = rng.Uniform(6, 14);
      break;
    case HemorrhageType::kSubarachnoid:
      l.blood_hu = rng.Uniform(62, 72);
      l.theta_c = rng.Uniform(-0.4, 0.4);
      l.theta_w = 1.1;
      l.zc = rng.Uniform(0, 30);
      l.zw = 35;
      l.fissure_y0 = -70 * s;
      l.fissure_y1 = -35 * s;
      break;
  }
  return l;
}

bool IsBrain(Tissue t) { return t == kGrey || t == kWhite || t == kDeepGrey; }

// What the lesion makes of one voxel: kBlood, kEdema, or the sample's own tissue.
Tissue ApplyLesion(const Lesion& l, const Anatomy& a, double x, double y, double z, const Sample& s) {
  if (s.depth < 0) return s.tissue;  // outside the skull
  switch (l.type) {
    case HemorrhageType::kNone:
      return s.tissue;
    case HemorrhageType::kIntraparenchymal: {
      if (l.sgn * x <= 2) return s.tissue;
      const double dx = x - l.ex, dy = y - l.ey, dz = z - l.ez;
      const double u = l.cos_r * dx + l.sin_r * dy;
      const double v = -l.sin_r * dx + l.cos_r * dy;
      const double q = std::sqrt(Sq(u / l.ax) + Sq(v / l.ay) + Sq(dz / l.az));
      if (q < 1 && s.depth >= 6) return kBlood;
      const double r_min = std::min({l.ax, l.ay, l.az});
      if (q < 1 + l.edema_mm / r_min && s.depth >= 2 && IsBrain(s.tissue)) return kEdema;
      return s.tissue;
    }
    case HemorrhageType::kSubdural: {
      if (l.sgn * x <= 1) return s.tissue;
      const double d_theta = std::atan2(y, l.sgn * x) - l.theta_c;
      const double t = l.thickness * std::max(0.0, 1 - Sq(d_theta / l.theta_w)) *
                       std::max(0.0, 1 - Sq((z - l.zc) / l.zw));
      return s.depth < t ? kBlood : s.tissue;
    }
    case HemorrhageType::kSubarachnoid: {
      if (std::fabs(z - l.zc) >= l.zw) return s.tissue;
      // Anterior interhemispheric fissure.
      if (std::fabs(x) < 1.6 && s.depth < 20 && y > l.fissure_y0 && y < l.fissure_y1) return kBlood;
      if (l.sgn * x <= 2 || s.depth < 0.8 || s.depth > 16) return s.tissue;
      if (std::fabs(std::atan2(y, l.sgn * x) - l.theta_c) >= l.theta_w) return s.tissue;
      const double ri = a.inner.R(x, y, z);
      const SulcusField f = Sulci(a, x, y, z, ri, s.depth);
      return (s.depth < f.sulcal_depth + 1 && std::fabs(f.g) < 0.24) ? kBlood : s.tissue;
    }
  }
  return s.tissue;
}

// In-place [1 2 1] x [1 2 1] / 16 smoothing with edge replication: the scanner's reconstruction blur.
uint32_t NearestIndex(double value, double origin, double step, uint32_t count) {
  const double i = std::round((value - origin) / step);
  return static_cast<uint32_t>(std::clamp(i, 0.0, static_cast<double>(count - 1)));
}

// Nearest voxel to (column, row) on `slice` within `radius` whose 3x3 neighbourhood is all `tissue`.
bool FindUniform(const std::vector<uint8_t>& tissue_map, const CtVolume& v, uint32_t slice, int column, int row,
                 Tissue tissue, int radius, uint32_t& out_column, uint32_t& out_row) {
  long best = -1;
  const int cols = static_cast<int>(v.columns), rows = static_cast<int>(v.rows);
  const uint8_t* map = tissue_map.data() + static_cast<size_t>(slice) * v.SliceVoxels();
  for (int r = std::max(1, row - radius); r <= std::min(rows - 2, row + radius); ++r) {
    for (int c = std::max(1, column - radius); c <= std::min(cols - 2, column + radius); ++c) {
      const long d = static_cast<long>(Sq(c - column) + Sq(r - row));
      if (best >= 0 && d >= best) continue;
      bool uniform = true;
      for (int dr = -1; dr <= 1 && uniform; ++dr)
        for (int dc = -1; dc <= 1 && uniform; ++dc) uniform = map[(r + dr) * cols + c + dc] == tissue;
      if (!uniform) continue;
      best = d;
      out_column = static_cast<uint32_t>(c);
      out_row = static_cast<uint32_t>(r);
    }
  }
  return best >= 0;
}

Status ValidateOptions(const HeadCtOptions& o) {
  if (o.slices < 1 || o.slices > 400) return InvalidArgument("slices must be in 1..400");
  if (o.size < 64 || o.size > 1024) return InvalidArgument("size must be in 64..1024");
  return ValidateSite(o.department, o.calling_ae, o.institution);
}

}  // namespace

std::string_view HemorrhageTypeName(HemorrhageType type) {
  switch (type) {
    case HemorrhageType::kNone:
      return "none";
    case HemorrhageType::kIntraparenchymal:
      return "intraparenchymal";
    case HemorrhageType::kSubdural:
      return "subdural";
    case HemorrhageType::kSubarachnoid:
      return "subarachnoid";
  }
  return "none";
}

StatusOr<HemorrhageType> ParseHemorrhageType(std::string_view name) {
  for (HemorrhageType t : {HemorrhageType::kNone, HemorrhageType::kIntraparenchymal, HemorrhageType::kSubdural,
                           HemorrhageType::kSubarachnoid}) {
    if (name == HemorrhageTypeName(t)) return t;
  }
  return InvalidArgument("unknown hemorrhage type '" + std::string(name) +
                         "' (none, intraparenchymal, subdural, subarachnoid)");
}

std::string_view SideName(Side side) { return side == Side::kLeft ? "left" : "right"; }

StatusOr<Side> ParseSide(std::string_view name) {
  if (name == "left") return Side::kLeft;
  if (name == "right") return Side::kRight;
  return InvalidArgument("unknown side '" + std::string(name) + "' (left, right)");
}

std::string HeadCtFolderName(const HeadCtOptions& o) {
  std::string name = "head-ct-s" + std::to_string(o.seed) + "-" + std::string(HemorrhageTypeName(o.hemorrhage));
  if (o.hemorrhage != HemorrhageType::kNone) name += "-" + std::string(SideName(o.side));
  return name;
}

StatusOr<HeadCtStudy> GenerateHeadCt(const HeadCtOptions& o) {
  if (Status s = ValidateOptions(o); !s.ok()) return s;
  HeadCtStudy study;
  const bool has_lesion = o.hemorrhage != HemorrhageType::kNone;

  // Anatomy, lesion and noise draw from separate streams: adding a lesion changes nothing else.
  Rng anatomy_rng(MixSeed(o.seed, 1));
  const Anatomy anatomy = DrawAnatomy(anatomy_rng);
  Rng lesion_rng(MixSeed(o.seed, 2));
  const Lesion lesion = DrawLesion(lesion_rng, anatomy, o.hemorrhage, o.side);

  CtVolume& v = study.volume;
  v.columns = v.rows = o.size;
  v.slices = o.slices;
  v.column_spacing_mm = v.row_spacing_mm = kFieldOfViewMm / o.size;
  v.slice_spacing_mm = kSliceMm;
  const double half_size = (static_cast<double>(o.size) - 1) / 2;
  v.origin_mm = {-half_size * v.column_spacing_mm, -half_size * v.row_spacing_mm,
                 -(static_cast<double>(o.slices) - 1) / 2 * kSliceMm};
  const size_t n = v.SliceVoxels();
  v.hu.resize(n * v.slices);
  study.blood_mask.assign(n * v.slices, 0);
  std::vector<uint8_t> tissue_map(n * v.slices, kAir);

  HemorrhageTruth& h = study.truth.hemorrhage;
  h.present = false;
  h.type = o.hemorrhage;
  h.side = o.side;
  h.lobe = lesion.lobe;
  h.blood_hu = has_lesion ? lesion.blood_hu : 0;
  double sum_x = 0, sum_y = 0, sum_z = 0;

  std::vector<float> slice(n), tmp;
  std::vector<double> xs(v.columns), ys(v.rows);
  for (uint32_t c = 0; c < v.columns; ++c) xs[c] = v.origin_mm[0] + c * v.column_spacing_mm - anatomy.cx;
  for (uint32_t r = 0; r < v.rows; ++r) ys[r] = v.origin_mm[1] + r * v.row_spacing_mm - anatomy.cy;

  for (uint32_t k = 0; k < v.slices; ++k) {
    const double z = v.origin_mm[2] + k * kSliceMm - anatomy.cz;
    uint8_t* tissue = tissue_map.data() + k * n;
    uint8_t* blood = study.blood_mask.data() + k * n;
    SliceExtent extent;
    extent.slice = k;
    for (uint32_t r = 0; r < v.rows; ++r) {
      for (uint32_t c = 0; c < v.columns; ++c) {
        const size_t i = static_cast<size_t>(r) * v.columns + c;
        const Sample s = Classify(anatomy, xs[c], ys[r], z);
        double hu = s.hu;
        Tissue t = s.tissue;
        if (has_lesion) {
          const Tissue lt = ApplyLesion(lesion, anatomy, xs[c], ys[r], z, s);
          if (lt == kBlood) {
            hu = lesion.blood_hu;
            blood[i] = 1;
            ExtendBox(extent.box, extent.voxels, c, r, k);
            ++extent.voxels;
            sum_x += xs[c];
            sum_y += ys[r];
            sum_z += z;
          } else if (lt == kEdema) {
            hu -= 10;
          }
          t = lt;
        }
        tissue[i] = t;
        slice[i] = static_cast<float>(hu);
      }
    }
    if (extent.voxels > 0) {
      ExtendBox(h.box, h.voxels, extent.box.column_min, extent.box.row_min, k);
      ExtendBox(h.box, 1, extent.box.column_max, extent.box.row_max, k);
      h.voxels += extent.voxels;
      h.slices.push_back(extent);
    }
    // Quantum noise, then the reconstruction kernel's blur (which also softens edges like partial volume).
    Rng noise(MixSeed(o.seed, 1000 + k));
    for (size_t i = 0; i < n; ++i) slice[i] += static_cast<float>(kNoiseSdBeforeSmoothing * noise.Normal());
    Smooth3x3(slice, v.columns, v.rows, tmp);
    int16_t* out = v.Slice(k);
    for (size_t i = 0; i < n; ++i) {
      out[i] = static_cast<int16_t>(std::clamp(std::lround(slice[i]), -1024L, 3071L));
    }
  }

  const double voxel_ml = v.column_spacing_mm * v.row_spacing_mm * v.slice_spacing_mm / 1000;
  h.present = h.voxels > 0;
  h.volume_ml = h.voxels * voxel_ml;
  if (h.present) {
    h.centroid_mm = {sum_x / h.voxels + anatomy.cx, sum_y / h.voxels + anatomy.cy, sum_z / h.voxels + anatomy.cz};
  }

  // Identity, UIDs and series attributes: everything that shapes the content goes into the key.
  const std::string content_key = std::string(HemorrhageTypeName(o.hemorrhage)) + "/" +
                                  std::string(SideName(o.side)) + "/" + std::to_string(o.slices) + "/" +
                                  std::to_string(o.size) + "/" + o.department + "/" + o.institution;
  study.identity = MakeStudyIdentity("HEAD", o.seed, content_key);
  study.identity.study_description = "CT HEAD WO CONTRAST";
  study.identity.institution_name = o.institution;
  study.identity.department = o.department;
  study.identity.calling_ae = o.calling_ae;
  CtSeriesInfo& series = study.series;
  series.series_instance_uid = UidFromSeed(study.identity.study_instance_uid + "/series/2");
  series.frame_of_reference_uid = UidFromSeed(study.identity.study_instance_uid + "/frame-of-reference");
  series.series_number = 2;
  series.series_description = "AXIAL 5MM";
  series.protocol_name = "ROUTINE HEAD";
  series.body_part_examined = "HEAD";

  HeadCtTruth& truth = study.truth;
  truth.seed = o.seed;
  truth.study_instance_uid = study.identity.study_instance_uid;
  truth.series_instance_uid = series.series_instance_uid;
  truth.folder = HeadCtFolderName(o);
  truth.size = o.size;
  truth.slices = o.slices;
  truth.pixel_spacing_mm = v.column_spacing_mm;
  truth.slice_thickness_mm = kSliceMm;
  truth.midline_x_mm = anatomy.cx;

  // Landmarks for checking densities in the written files.
  const auto column_of = [&](double x) { return NearestIndex(x + anatomy.cx, v.origin_mm[0], v.column_spacing_mm, v.columns); };
  const auto row_of = [&](double y) { return NearestIndex(y + anatomy.cy, v.origin_mm[1], v.row_spacing_mm, v.rows); };
  const auto slice_of = [&](double z) { return NearestIndex(z + anatomy.cz, v.origin_mm[2], kSliceMm, v.slices); };
  const auto expected = [&](uint32_t c, uint32_t r, uint32_t k) {
    const double x = xs[c], y = ys[r], z = v.origin_mm[2] + k * kSliceMm - anatomy.cz;
    const Sample s = Classify(anatomy, x, y, z);
    const Tissue t = has_lesion ? ApplyLesion(lesion, anatomy, x, y, z, s) : s.tissue;
    return t == kBlood ? lesion.blood_hu : t == kEdema ? s.hu - 10 : s.hu;
  };
  const auto add_landmark = [&](const char* name, uint32_t k, double x, double y, Tissue t, int radius) {
    uint32_t c = 0, r = 0;
    if (FindUniform(tissue_map, v, k, static_cast<int>(column_of(x)), static_cast<int>(row_of(y)), t, radius, c, r)) {
      truth.landmarks.push_back({name, c, r, k, expected(c, r, k)});
    }
  };
  const uint32_t mid = slice_of(0);
  {
    uint32_t c = 0, r = 0;
    if (FindUniform(tissue_map, v, mid, 2, 2, kAir, 4, c, r)) truth.landmarks.push_back({"air", c, r, mid, -1000});
  }
  const double far_side = has_lesion ? -lesion.sgn : 1;  // keep tissue landmarks away from the lesion
  const double z_mid = v.origin_mm[2] + mid * kSliceMm - anatomy.cz;
  const double bone_scale = std::sqrt(std::max(0.0, 1 - Sq(z_mid / anatomy.outer.c)));
  const double inner_scale = std::sqrt(std::max(0.0, 1 - Sq(z_mid / anatomy.inner.c)));
  add_landmark("bone", mid, far_side * (anatomy.inner.a * inner_scale + anatomy.outer.a * bone_scale) / 2, 0, kBone,
               6);
  add_landmark("white_matter", slice_of(32), far_side * 24, 0, kWhite, 40);
  add_landmark("ventricle", slice_of(13), far_side * 9, 2, kVentricle, 20);
  if (h.present) {
    const double cx = h.centroid_mm[0] - anatomy.cx, cy = h.centroid_mm[1] - anatomy.cy;
    for (int dk = 0; dk < static_cast<int>(v.slices); ++dk) {  // nearest slice to the centroid first
      const uint32_t k = slice_of(h.centroid_mm[2] - anatomy.cz);
      const long kk = static_cast<long>(k) + ((dk % 2) ? -(dk + 1) / 2 : dk / 2);
      if (kk < 0 || kk >= static_cast<long>(v.slices)) continue;
      const size_t before = truth.landmarks.size();
      add_landmark("blood", static_cast<uint32_t>(kk), cx, cy, kBlood, static_cast<int>(v.columns));
      if (truth.landmarks.size() > before) break;
    }
  }
  return study;
}

nlohmann::json HeadCtTruthToJson(const HeadCtTruth& t) {
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
                   {"midline_x_mm", t.midline_x_mm}};
  const HemorrhageTruth& h = t.hemorrhage;
  nlohmann::json hj;
  hj["present"] = h.present;
  hj["type"] = std::string(HemorrhageTypeName(h.type));
  hj["side"] = h.type == HemorrhageType::kNone ? nlohmann::json(nullptr) : nlohmann::json(std::string(SideName(h.side)));
  hj["lobe"] = h.lobe.empty() ? nlohmann::json(nullptr) : nlohmann::json(h.lobe);
  hj["volume_ml"] = h.volume_ml;
  hj["voxels"] = h.voxels;
  hj["blood_hu"] = h.blood_hu;
  if (h.present) {
    hj["bounding_box"] = VoxelBoxToJson(h.box);
    hj["centroid_mm"] = h.centroid_mm;
    nlohmann::json slices = nlohmann::json::array();
    for (const SliceExtent& s : h.slices) {
      slices.push_back({{"slice", s.slice},
                        {"instance_number", s.slice + 1},
                        {"voxels", s.voxels},
                        {"bounding_box", VoxelBoxToJson(s.box)}});
    }
    hj["slices"] = slices;
  } else {
    hj["bounding_box"] = nullptr;
    hj["slices"] = nlohmann::json::array();
  }
  j["hemorrhage"] = hj;
  nlohmann::json marks = nlohmann::json::array();
  for (const Landmark& l : t.landmarks) {
    marks.push_back({{"name", l.name}, {"column", l.column}, {"row", l.row}, {"slice", l.slice},
                     {"expected_hu", l.expected_hu}});
  }
  j["landmarks"] = marks;
  return j;
}

StatusOr<HeadCtTruth> WriteHeadCt(const HeadCtOptions& options, const std::filesystem::path& out_dir) {
  StatusOr<HeadCtStudy> study = GenerateHeadCt(options);
  if (!study.ok()) return study.status();
  const std::filesystem::path dir = out_dir / study->truth.folder;
  StatusOr<std::vector<std::string>> files = WriteCtSeries(study->identity, study->series, study->volume, dir);
  if (!files.ok()) return files.status();
  HeadCtTruth truth = std::move(study->truth);
  truth.files = std::move(*files);
  nlohmann::json j = HeadCtTruthToJson(truth);
  j["patient_id"] = study->identity.patient_id;
  j["accession_number"] = study->identity.accession_number;
  j["calling_ae"] = study->identity.calling_ae;
  j["department"] = study->identity.department;
  const std::filesystem::path truth_path = dir / "truth.json";
  std::ofstream out(truth_path, std::ios::binary | std::ios::trunc);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) return Unavailable("cannot write " + truth_path.string());
  return truth;
}

}  // namespace aihub::phantom
