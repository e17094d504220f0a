// "Acute intracranial hyperdensity screen": the reference plugin of the demo. Classical rules (detector.h),
// no learned model; it exists to exercise the hub end to end and is not for clinical use.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "aihub/plugin.hpp"
#include "detector.h"

namespace {

using aihub::hyperdensity::Detection;
using aihub::hyperdensity::DetectorConfig;
using aihub::hyperdensity::HuVolume;
using aihub::hyperdensity::Laterality;

constexpr uint32_t kTagModality = 0x00080060;
constexpr uint64_t kMaxVoxels = uint64_t{1} << 28;  // 1 GiB of floats
constexpr uint32_t kMinSlices = 10;

const aihub_plugin_descriptor kDescriptor = aihub::MakeDescriptor(
    "hyperdensity", "Acute intracranial hyperdensity screen (reference plugin, not for clinical use)", "1.0.0",
    "rules-1", "aihub reference plugins", "{Modality: CT, BodyPartExamined: [HEAD, BRAIN]}", AIHUB_CAP_THREAD_SAFE);

const aihub_code kIntracranialHemorrhage{"1386000", "SCT", "Intracranial hemorrhage"};
const aihub_code kVolume{"118565006", "SCT", "Volume"};

// Why a series does not suit the detector, or "".
std::string Unsuitable(const aihub::Job& job, uint32_t series) {
  const uint32_t frames = job.frame_count(series);
  if (frames < kMinSlices) {
    return "series has " + std::to_string(frames) + " slices; at least " + std::to_string(kMinSlices) + " needed";
  }
  const std::string modality = job.series_tag(series, kTagModality);
  if (!modality.empty() && modality != "CT") return "modality " + modality + " is not CT";
  const aihub_frame_geometry g = job.geometry(series, 0);
  if (g.samples_per_pixel != 1 ||
      (g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME1 && g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME2)) {
    return "photometric interpretation is not monochrome";
  }
  if (!(g.pixel_spacing[0] > 0 && g.pixel_spacing[1] > 0)) return "pixel spacing is missing";
  // Axial: rows run along patient x and columns along patient y (gantry tilt up to ~25 degrees allowed).
  if (!g.has_position || std::fabs(g.orientation[0]) < 0.9 || std::fabs(g.orientation[4]) < 0.9) {
    return "series is not axial";
  }
  if (!(g.spacing_between_slices > 0) && !(g.slice_thickness > 0)) return "slice spacing is unknown";
  if (static_cast<uint64_t>(g.rows) * g.columns * frames > kMaxVoxels) return "series is too large";
  return "";
}

std::string FormatMl(double ml) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", ml);
  return buf;
}

aihub_laterality ToAbi(Laterality l) {
  switch (l) {
    case Laterality::kLeft:
      return AIHUB_LATERALITY_LEFT;
    case Laterality::kRight:
      return AIHUB_LATERALITY_RIGHT;
    case Laterality::kBilateral:
      return AIHUB_LATERALITY_BILATERAL;
    case Laterality::kNone:
      break;
  }
  return AIHUB_LATERALITY_NONE;
}

const char* SideText(Laterality l) {
  switch (l) {
    case Laterality::kLeft:
      return ", left";
    case Laterality::kRight:
      return ", right";
    case Laterality::kBilateral:
      return ", bilateral";
    case Laterality::kNone:
      break;
  }
  return "";
}

class HyperdensityPlugin {
 public:
  explicit HyperdensityPlugin(aihub::PluginContext& ctx) {
    config_.min_volume_ml = ctx.config_number("min_volume_ml", config_.min_volume_ml);
    config_.min_component_ml = ctx.config_number("min_component_ml", config_.min_component_ml);
    config_.blood_min_hu = ctx.config_number("blood_min_hu", config_.blood_min_hu);
    config_.blood_max_hu = ctx.config_number("blood_max_hu", config_.blood_max_hu);
    config_.bone_min_hu = ctx.config_number("bone_min_hu", config_.bone_min_hu);
    config_.rim_mm = ctx.config_number("rim_mm", config_.rim_mm);
    const std::string invalid = aihub::hyperdensity::ValidateConfig(config_);
    if (!invalid.empty()) throw aihub::Error(AIHUB_INVALID_ARGUMENT, "hyperdensity config: " + invalid);
  }

  void execute(aihub::Job& job) {
    const uint32_t series_count = job.series_count();
    if (series_count == 0) throw aihub::NotApplicable("no series to analyse");
    // The suitable series with the most slices.
    std::string first_reason;
    uint32_t series = series_count;
    for (uint32_t s = 0; s < series_count; ++s) {
      const std::string reason = Unsuitable(job, s);
      if (!reason.empty()) {
        if (first_reason.empty()) first_reason = reason;
        continue;
      }
      if (series == series_count || job.frame_count(s) > job.frame_count(series)) series = s;
    }
    if (series == series_count) throw aihub::NotApplicable(first_reason);

    const HuVolume volume = ReadVolume(job, series);
    const Detection d = aihub::hyperdensity::Detect(volume, config_, [&](double fraction) {
      if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
      job.progress(0.5 + 0.5 * fraction);
    });
    Report(job, series, d);
  }

  void self_test() {
    const std::string failure = aihub::hyperdensity::RunSelfTest(config_);
    if (!failure.empty()) throw aihub::Error(AIHUB_INTERNAL, failure);
  }

 private:
  static HuVolume ReadVolume(const aihub::Job& job, uint32_t series) {
    const uint32_t frames = job.frame_count(series);
    const aihub_frame_geometry first = job.geometry(series, 0);
    HuVolume v;
    v.columns = first.columns;
    v.rows = first.rows;
    v.slices = frames;
    v.column_spacing_mm = first.pixel_spacing[1];
    v.row_spacing_mm = first.pixel_spacing[0];
    v.slice_spacing_mm = first.spacing_between_slices > 0 ? first.spacing_between_slices : first.slice_thickness;
    v.columns_toward_patient_left = first.orientation[0] > 0;
    v.hu.resize(v.SliceVoxels() * frames);
    std::vector<float> frame;
    for (uint32_t k = 0; k < frames; ++k) {
      if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
      const aihub_frame_geometry g = job.geometry(series, k);
      if (g.rows != first.rows || g.columns != first.columns) throw aihub::NotApplicable("slices differ in size");
      job.read_frame(series, k, frame);
      std::copy(frame.begin(), frame.end(), v.hu.begin() + static_cast<std::ptrdiff_t>(k * v.SliceVoxels()));
      job.progress(0.5 * (k + 1) / frames);
    }
    return v;
  }

  void Report(const aihub::Job& job, uint32_t series, const Detection& d) const {
    aihub::Finding f;
    f.code = kIntracranialHemorrhage;
    f.presence = d.present ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT;
    f.confidence = d.confidence;
    f.urgency = d.present ? AIHUB_URGENCY_CRITICAL : AIHUB_URGENCY_ROUTINE;
    f.laterality = d.present ? ToAbi(d.laterality) : AIHUB_LATERALITY_NONE;
    std::string summary;
    if (d.present) {
      f.text = "Acute intracranial hyperdensity, " + FormatMl(d.volume_ml) + " mL" + SideText(d.laterality) +
               " (reference rules, not for clinical use)";
      summary = "Hyperdensity screen: findings compatible with acute intracranial hemorrhage, about " +
                FormatMl(d.volume_ml) + " mL in " + std::to_string(d.components.size()) + " region(s)" +
                SideText(d.laterality) + ". Reference plugin, not for clinical use.";
    } else {
      f.text = "No acute intracranial hyperdensity of " + FormatMl(config_.min_volume_ml) +
               " mL or more (reference rules, not for clinical use)";
      summary = "Hyperdensity screen: no acute intracranial hyperdensity detected. Reference plugin, not for "
                "clinical use.";
    }
    const uint32_t finding = job.add_finding(f);
    if (d.present) {
      job.add_measurement(finding, kVolume, d.volume_ml, "mL", "milliliter");
      const auto& largest = d.components.front();
      if (largest.contour.size() >= 6) {
        job.add_region(finding, series, largest.best_slice, AIHUB_GRAPHIC_POLYGON, largest.contour);
      } else {
        // A piece too small to outline: mark its centre.
        job.add_region(finding, series, largest.best_slice, AIHUB_GRAPHIC_POINT,
                       {static_cast<float>(largest.centroid_column) + 0.5f,
                        static_cast<float>(largest.centroid_row) + 0.5f});
      }
    }
    job.set_summary(summary);
    job.log(AIHUB_LOG_INFO, "hyperdensity: " + FormatMl(d.volume_ml) + " mL kept in " +
                                std::to_string(d.components.size()) + " component(s), " +
                                std::to_string(d.slices_with_brain) + " slices with brain");
  }

  DetectorConfig config_;
};

}  // namespace

AIHUB_PLUGIN(kDescriptor, HyperdensityPlugin)
