// "Pneumothorax detection on chest X-ray": a reference deep-learning plugin. A small 2D U-Net (TorchScript,
// trained on aihub-phantom chest radiographs by train.py) maps a frontal chest X-ray to pneumothorax and lung-field
// probabilities per grid cell; presence, side, size in % of the hemithorax and an outline come from those maps
// (pneumothorax_model.h). Not for clinical use.
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "aihub_ref/format.h"
#include "aihub_ref/torch_model.h"
#include "aihub/plugin.hpp"
#include "pneumothorax_model.h"

#ifndef AIHUB_PNEUMOTHORAX_MODEL_VERSION
#error "AIHUB_PNEUMOTHORAX_MODEL_VERSION must be defined by the build (from plugins/pneumothorax/model/MODEL_VERSION)"
#endif

namespace {

using aihub::pneumothorax::Analysis;
using aihub::pneumothorax::ImageSide;
using aihub::pneumothorax::ModelSpec;

constexpr uint32_t kTagModality = 0x00080060;
constexpr uint32_t kTagImagerPixelSpacing = 0x00181164;
constexpr uint32_t kTagViewPosition = 0x00185101;
constexpr uint32_t kTagPatientOrientation = 0x00200020;
// The model was trained on a 348 mm x 425 mm detector field (a 14 x 17 inch cassette is 356 x 432 mm). Far from
// it, or below twice the model grid in pixels, the learned shapes no longer hold: such images are refused.
constexpr double kFieldWidthMm = 348, kFieldHeightMm = 425, kFieldTolerance = 0.2;
constexpr uint32_t kMinRows = 512, kMinColumns = 416;

const aihub_plugin_descriptor kDescriptor = aihub::MakeDescriptor(
    "pneumothorax", "Pneumothorax detection on chest X-ray (reference model, not for clinical use)", "1.0.0",
    AIHUB_PNEUMOTHORAX_MODEL_VERSION, "aihub reference plugins", "{Modality: [DX, CR], BodyPartExamined: CHEST}");

const aihub_code kPneumothorax{"36118008", "SCT", "Pneumothorax"};
// No standard code names "size of a pneumothorax as a fraction of the hemithorax area"; a private scheme says so.
const aihub_code kSizePercent{"PTX-SIZE-PCT", "99AIHUB", "Pneumothorax size, percent of hemithorax area"};

using aihub_ref::FormatNumber;

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// What the frame's geometry and tags say about how to read it; `reason` is non-empty when it does not suit.
struct Frontal {
  std::string reason;
  double row_spacing_mm = 0, column_spacing_mm = 0;
  bool columns_toward_patient_left = true;  // standard PA/AP display: the patient's right on the image's left
  bool orientation_assumed = false;         // no PatientOrientation or ImageOrientationPatient
  bool monochrome1 = false;
};

// Reads "a\b" into two doubles; false unless both are positive.
bool ParsePair(const std::string& text, double& a, double& b) {
  char* end = nullptr;
  a = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\\') return false;
  const char* second = end + 1;
  b = std::strtod(second, &end);
  return end != second && a > 0 && b > 0 && std::isfinite(a) && std::isfinite(b);
}

Frontal Inspect(const aihub::Job& job, uint32_t series) {
  Frontal f;
  const uint32_t frames = job.frame_count(series);
  if (frames != 1) {
    f.reason = "series has " + std::to_string(frames) + " frames; one radiograph expected";
    return f;
  }
  const std::string modality = job.series_tag(series, kTagModality);
  if (!modality.empty() && modality != "DX" && modality != "CR") {
    f.reason = "modality " + modality + " is not DX or CR";
    return f;
  }
  const std::string view = Upper(job.series_tag(series, kTagViewPosition));
  if (view == "LL" || view == "RL" || view == "LATERAL" || view == "LAT") {
    f.reason = "view position " + view + " is a lateral view; a frontal (PA or AP) chest X-ray is needed";
    return f;
  }
  if (!view.empty() && view != "PA" && view != "AP") {
    f.reason = "view position " + view + " is not a frontal (PA or AP) view";
    return f;
  }
  const aihub_frame_geometry g = job.geometry(series, 0);
  if (g.samples_per_pixel != 1 ||
      (g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME1 && g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME2)) {
    f.reason = "photometric interpretation is not monochrome";
    return f;
  }
  f.monochrome1 = g.photometric == AIHUB_PHOTOMETRIC_MONOCHROME1;
  f.row_spacing_mm = g.pixel_spacing[0];
  f.column_spacing_mm = g.pixel_spacing[1];
  if (!(f.row_spacing_mm > 0 && f.column_spacing_mm > 0) &&
      !ParsePair(job.series_tag(series, kTagImagerPixelSpacing), f.row_spacing_mm, f.column_spacing_mm)) {
    f.reason = "pixel spacing is missing (neither PixelSpacing nor ImagerPixelSpacing)";
    return f;
  }
  if (g.rows < kMinRows || g.columns < kMinColumns) {
    f.reason = "image " + std::to_string(g.columns) + "x" + std::to_string(g.rows) + " is too small; at least " +
               std::to_string(kMinColumns) + "x" + std::to_string(kMinRows) + " pixels needed";
    return f;
  }
  const double width = g.columns * f.column_spacing_mm, height = g.rows * f.row_spacing_mm;
  if (std::fabs(width / kFieldWidthMm - 1) > kFieldTolerance ||
      std::fabs(height / kFieldHeightMm - 1) > kFieldTolerance) {
    f.reason = "field of view " + FormatNumber(width, "%.0f") + " x " + FormatNumber(height, "%.0f") +
               " mm is outside the model's 348 x 425 mm (+-20%)";
    return f;
  }
  // PatientOrientation (0020,0020): the patient direction of the rows (toward rising column index), then of the
  // columns. A frontal view reads L or R, then F (feet at the bottom).
  const std::string orientation = Upper(job.series_tag(series, kTagPatientOrientation));
  if (!orientation.empty()) {
    const size_t slash = orientation.find('\\');
    const std::string row_dir = orientation.substr(0, slash);
    const std::string column_dir = slash == std::string::npos ? "" : orientation.substr(slash + 1);
    if ((row_dir != "L" && row_dir != "R") || column_dir != "F") {
      f.reason = "patient orientation " + orientation + " is not an upright frontal view (L\\F or R\\F)";
      return f;
    }
    f.columns_toward_patient_left = row_dir == "L";
  } else if (g.has_position) {
    // ImageOrientationPatient (LPS): row cosine x > 0 means the columns run toward the patient's left.
    if (std::fabs(g.orientation[0]) < 0.9 || g.orientation[5] > -0.9) {
      f.reason = "image orientation is not an upright frontal view";
      return f;
    }
    f.columns_toward_patient_left = g.orientation[0] > 0;
  } else {
    f.orientation_assumed = true;
  }
  return f;
}

aihub_laterality PatientSide(ImageSide s, bool columns_toward_patient_left) {
  switch (s) {
    case ImageSide::kLeft:  // the image's left half
      return columns_toward_patient_left ? AIHUB_LATERALITY_RIGHT : AIHUB_LATERALITY_LEFT;
    case ImageSide::kRight:
      return columns_toward_patient_left ? AIHUB_LATERALITY_LEFT : AIHUB_LATERALITY_RIGHT;
    case ImageSide::kBoth:
      return AIHUB_LATERALITY_BILATERAL;
    case ImageSide::kNone:
      break;
  }
  return AIHUB_LATERALITY_NONE;
}

const char* SideText(aihub_laterality l) {
  switch (l) {
    case AIHUB_LATERALITY_LEFT:
      return "left";
    case AIHUB_LATERALITY_RIGHT:
      return "right";
    case AIHUB_LATERALITY_BILATERAL:
      return "bilateral";
    default:
      break;
  }
  return "";
}

class PneumothoraxPlugin {
 public:
  explicit PneumothoraxPlugin(aihub::PluginContext& ctx)
      : model_(aihub_ref::LoadReferenceModel(
            ctx, "pneumothorax", "pneumothorax.pt", AIHUB_PNEUMOTHORAX_MODEL_VERSION,
            [&](const std::string& json) { aihub::pneumothorax::ParseModelMetadata(json, spec_); })) {
    spec_.threshold = ctx.config_number("threshold", spec_.threshold);
    if (!(spec_.threshold >= 0 && spec_.threshold <= 1)) {
      throw aihub::Error(AIHUB_INVALID_ARGUMENT, "pneumothorax: threshold must be in [0, 1]");
    }
    urgent_below_percent_ = ctx.config_number("urgent_below_percent", 0);
    if (!(urgent_below_percent_ >= 0 && urgent_below_percent_ <= 100)) {
      throw aihub::Error(AIHUB_INVALID_ARGUMENT, "pneumothorax: urgent_below_percent must be in [0, 100]");
    }
    ctx.info("pneumothorax: loaded " + model_.version + " from " + model_.path + " on " + model_.runtime.device.str() +
             ", threshold " + FormatNumber(spec_.threshold, "%.4f") + ", " + std::to_string(model_.runtime.threads) +
             " thread(s)");
  }

  void execute(aihub::Job& job) {
    const uint32_t series_count = job.series_count();
    if (series_count == 0) throw aihub::NotApplicable("no series to analyse");
    std::string first_reason;
    uint32_t series = series_count;  // the first frontal radiograph
    Frontal view;
    for (uint32_t s = 0; s < series_count && series == series_count; ++s) {
      Frontal f = Inspect(job, s);
      if (f.reason.empty()) {
        series = s;
        view = f;
      } else if (first_reason.empty()) {
        first_reason = f.reason;
      }
    }
    if (series == series_count) throw aihub::NotApplicable(first_reason);
    if (view.orientation_assumed) {
      job.log(AIHUB_LOG_WARNING, "pneumothorax: no PatientOrientation; assuming the standard display (L\\F)");
    }

    const aihub_frame_geometry g = job.geometry(series, 0);
    std::vector<float> frame;
    job.read_frame(series, 0, frame);
    if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
    std::vector<float> input =
        aihub::pneumothorax::ResampleToGrid(frame.data(), g.rows, g.columns, spec_.grid_rows, spec_.grid_columns);
    aihub::pneumothorax::Normalise(input, spec_, view.monochrome1);
    job.progress(0.3);
    model_.runtime.Apply();  // process-wide: another torch plugin may have changed it
    const auto start = std::chrono::steady_clock::now();
    const std::vector<float> prob = Infer(input);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
    job.progress(0.9);
    const Analysis a = aihub::pneumothorax::Analyze(prob, spec_);
    Report(job, series, g, view, a);
    job.log(AIHUB_LOG_INFO,
            "pneumothorax: inference " + FormatNumber(seconds, "%.3f") + " s on " + model_.runtime.device.str());
    job.progress(1.0);
  }

  // Runs the model on a synthetic chest (two dark lung fields in brighter soft tissue) with and without a black,
  // structureless rim at the apex of one lung, and checks the output's shape, its range and that the rim scores
  // higher than the normal chest.
  void self_test() {
    const uint32_t rows = spec_.grid_rows, columns = spec_.grid_columns;
    std::vector<float> normal(static_cast<size_t>(rows) * columns), rim;
    for (uint32_t r = 0; r < rows; ++r) {
      for (uint32_t c = 0; c < columns; ++c) {
        const double y = (r + 0.5) / rows, x = (c + 0.5) / columns;
        float v = 0.7f;  // soft tissue
        for (double cx : {0.3, 0.7}) {
          const double d = std::hypot((x - cx) / 0.17, (y - 0.48) / 0.33);
          if (d < 1) v = 0.35f;  // aerated lung
        }
        normal[static_cast<size_t>(r) * columns + c] = v;
      }
    }
    rim = normal;
    for (uint32_t r = 0; r < rows; ++r) {
      for (uint32_t c = 0; c < columns; ++c) {
        const double y = (r + 0.5) / rows, x = (c + 0.5) / columns;
        const double d = std::hypot((x - 0.3) / 0.17, (y - 0.48) / 0.33);
        if (d < 1 && d > 0.7 && y < 0.48) rim[static_cast<size_t>(r) * columns + c] = 0.12f;  // air, no markings
      }
    }
    const std::vector<float> p_normal = Infer(normal), p_rim = Infer(rim);
    for (float p : p_rim) {
      if (!(p >= 0 && p <= 1)) throw aihub::Error(AIHUB_INTERNAL, "pneumothorax self-test: output outside [0, 1]");
    }
    const double s_normal = aihub::pneumothorax::Analyze(p_normal, spec_).score;
    const double s_rim = aihub::pneumothorax::Analyze(p_rim, spec_).score;
    if (!(s_rim > s_normal)) {
      throw aihub::Error(AIHUB_INTERNAL,
                         "pneumothorax self-test: an apical air rim does not score above a normal chest");
    }
  }

 private:
  std::vector<float> Infer(std::vector<float>& input) {
    const int64_t rows = spec_.grid_rows, columns = spec_.grid_columns;
    torch::NoGradGuard no_grad;
    c10::InferenceMode inference;
    torch::Tensor x = torch::from_blob(input.data(), {1, 1, rows, columns}, torch::kFloat32);
    torch::Tensor y =
        model_.module.forward({x.to(model_.runtime.device)}).toTensor().to(torch::kCPU, torch::kFloat32).contiguous();
    if (y.dim() != 4 || y.size(0) != 1 || y.size(1) != 2 || y.size(2) != rows || y.size(3) != columns) {
      throw aihub::Error(AIHUB_INTERNAL, "pneumothorax: model output has an unexpected shape");
    }
    const float* p = y.data_ptr<float>();
    return std::vector<float>(p, p + y.numel());
  }

  void Report(const aihub::Job& job, uint32_t series, const aihub_frame_geometry& g, const Frontal& view,
              const Analysis& a) const {
    const aihub_laterality side = a.present ? PatientSide(a.side, view.columns_toward_patient_left)
                                            : AIHUB_LATERALITY_NONE;
    aihub::Finding f;
    f.code = kPneumothorax;
    f.presence = a.present ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT;
    f.confidence = a.score;
    f.urgency = !a.present ? AIHUB_URGENCY_ROUTINE
                           : (a.size_percent < urgent_below_percent_ ? AIHUB_URGENCY_URGENT : AIHUB_URGENCY_CRITICAL);
    f.laterality = side;
    const std::string tail = " (reference model " AIHUB_PNEUMOTHORAX_MODEL_VERSION ", not for clinical use)";
    const std::string where = side == AIHUB_LATERALITY_NONE ? "" : std::string(", ") + SideText(side);
    std::string summary;
    if (a.present) {
      f.text =
          "Pneumothorax" + where + ", about " + FormatNumber(a.size_percent, "%.0f") + "% of the hemithorax" + tail;
      summary = "Pneumothorax model: pneumothorax detected (score " + FormatNumber(a.score, "%.2f") + ")" + where +
                ", about " + FormatNumber(a.size_percent, "%.0f") + "% of the hemithorax area." + tail;
    } else {
      f.text = "No pneumothorax detected" + tail;
      summary = "Pneumothorax model: no pneumothorax detected (score " + FormatNumber(a.score, "%.2f") +
                ", operating point " + FormatNumber(spec_.threshold, "%.2f") + ")." + tail;
    }
    const uint32_t finding = job.add_finding(f);
    if (a.present) {
      job.add_measurement(finding, kSizePercent, a.size_percent, "%", "percent");
      if (a.contour.size() >= 6) {
        // Grid-cell corners to native pixel coordinates (top-left corner of the top-left pixel is (0, 0)).
        const float sx = static_cast<float>(g.columns) / spec_.grid_columns;
        const float sy = static_cast<float>(g.rows) / spec_.grid_rows;
        std::vector<float> points(a.contour.size());
        for (size_t i = 0; i + 1 < points.size(); i += 2) {
          points[i] = a.contour[i] * sx;
          points[i + 1] = a.contour[i + 1] * sy;
        }
        job.add_region(finding, series, 0, AIHUB_GRAPHIC_POLYGON, points);
      }
    }
    job.set_summary(summary);
    job.log(AIHUB_LOG_INFO, "pneumothorax: score " + FormatNumber(a.score, "%.4f") + ", " +
                                std::to_string(a.pneumothorax_cells) + " of " + std::to_string(a.hemithorax_cells) +
                                " hemithorax cells (" + FormatNumber(a.size_percent, "%.1f") + "%), midline column " +
                                FormatNumber(a.midline_column) + " of " + std::to_string(spec_.grid_columns));
  }

  double urgent_below_percent_ = 0;
  ModelSpec spec_;
  // Last: its initialiser fills the members above from the model metadata, so they must exist before it.
  aihub_ref::ReferenceModel model_;
};

}  // namespace

AIHUB_PLUGIN(kDescriptor, PneumothoraxPlugin)
