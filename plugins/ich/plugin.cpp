// "Intracranial hemorrhage detection": the reference deep-learning plugin. A tiny 3D U-Net (TorchScript, trained
// on aihub-phantom head CTs by train.py) maps a non-contrast head CT to a blood probability per voxel; presence,
// volume, side and region come from that map (ich_model.h). Not for clinical use.
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "aihub_ref/format.h"
#include "aihub_ref/torch_model.h"
#include "aihub/plugin.hpp"
#include "ich_model.h"

#ifndef AIHUB_ICH_MODEL_VERSION
#error "AIHUB_ICH_MODEL_VERSION must be defined by the build (from plugins/ich/model/MODEL_VERSION)"
#endif

namespace {

using aihub::ich::Analysis;
using aihub::ich::GridGeometry;
using aihub::ich::ModelSpec;
using aihub::ich::Side;

constexpr uint32_t kTagModality = 0x00080060;
constexpr uint32_t kMinSlices = 10;
constexpr uint32_t kMaxSlices = 512;
// The model was trained on 5 mm slices and a 240 mm field of view (1.875 mm model-grid cells); far from that
// the learned sizes and shapes no longer hold, so such series are refused rather than answered wrongly.
constexpr double kMinSliceMm = 2.5, kMaxSliceMm = 7.5;
constexpr double kMinCellMm = 1.2, kMaxCellMm = 2.6;

const aihub_plugin_descriptor kDescriptor = aihub::MakeDescriptor(
    "ich", "Intracranial hemorrhage detection (reference model, not for clinical use)", "1.1.0",
    AIHUB_ICH_MODEL_VERSION, "aihub reference plugins", "{Modality: CT, BodyPartExamined: [HEAD, BRAIN]}");

const aihub_code kIntracranialHemorrhage{"1386000", "SCT", "Intracranial hemorrhage"};
const aihub_code kVolume{"118565006", "SCT", "Volume"};

using aihub_ref::FormatNumber;

aihub_laterality ToAbi(Side s) {
  switch (s) {
    case Side::kLeft:
      return AIHUB_LATERALITY_LEFT;
    case Side::kRight:
      return AIHUB_LATERALITY_RIGHT;
    case Side::kBilateral:
      return AIHUB_LATERALITY_BILATERAL;
    case Side::kNone:
      break;
  }
  return AIHUB_LATERALITY_NONE;
}

const char* SideText(Side s) {
  switch (s) {
    case Side::kLeft:
      return ", left";
    case Side::kRight:
      return ", right";
    case Side::kBilateral:
      return ", bilateral";
    case Side::kNone:
      break;
  }
  return "";
}

// Why a series does not suit the model, or "".
std::string Unsuitable(const aihub::Job& job, uint32_t series, uint32_t grid) {
  const uint32_t frames = job.frame_count(series);
  if (frames < kMinSlices) {
    return "series has " + std::to_string(frames) + " slices; at least " + std::to_string(kMinSlices) + " needed";
  }
  if (frames > kMaxSlices) return "series has " + std::to_string(frames) + " slices; at most 512 supported";
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
  if (!(g.spacing_between_slices > 0)) return "slices are not evenly spaced along the slice normal";
  if (g.spacing_between_slices < kMinSliceMm || g.spacing_between_slices > kMaxSliceMm) {
    return "slice spacing " + FormatNumber(g.spacing_between_slices) + " mm is outside the model's 2.5-7.5 mm";
  }
  const uint32_t f = aihub::ich::PoolingFactor(g.rows, g.columns, grid);
  if (f == 0) {
    return "image size " + std::to_string(g.columns) + "x" + std::to_string(g.rows) +
           " cannot be pooled to the model's " + std::to_string(grid) + "x" + std::to_string(grid) + " grid";
  }
  const double cell = f * std::max(g.pixel_spacing[0], g.pixel_spacing[1]);
  if (cell < kMinCellMm || cell > kMaxCellMm || std::fabs(g.pixel_spacing[0] - g.pixel_spacing[1]) > 0.01) {
    return "pixel spacing " + FormatNumber(g.pixel_spacing[0], "%.3f") + "\\" +
           FormatNumber(g.pixel_spacing[1], "%.3f") + " mm does not match the model's field of view";
  }
  return "";
}

class IchPlugin {
 public:
  explicit IchPlugin(aihub::PluginContext& ctx)
      : model_(aihub_ref::LoadReferenceModel(
            ctx, "ich", "ich.pt", AIHUB_ICH_MODEL_VERSION,
            [&](const std::string& json) { aihub::ich::ParseModelMetadata(json, spec_); })) {
    spec_.threshold = ctx.config_number("threshold", spec_.threshold);
    if (!(spec_.threshold >= 0 && spec_.threshold <= 1)) {
      throw aihub::Error(AIHUB_INVALID_ARGUMENT, "ich: threshold must be in [0, 1]");
    }
    ctx.info("ich: loaded " + model_.version + " from " + model_.path + " on " + model_.runtime.device.str() +
             ", threshold " + FormatNumber(spec_.threshold, "%.4f") + ", " + std::to_string(model_.runtime.threads) +
             " thread(s)");
  }

  void execute(aihub::Job& job) {
    const uint32_t series_count = job.series_count();
    if (series_count == 0) throw aihub::NotApplicable("no series to analyse");
    std::string first_reason;
    uint32_t series = series_count;  // the suitable series with the most slices
    for (uint32_t s = 0; s < series_count; ++s) {
      const std::string reason = Unsuitable(job, s, spec_.grid);
      if (!reason.empty()) {
        if (first_reason.empty()) first_reason = reason;
        continue;
      }
      if (series == series_count || job.frame_count(s) > job.frame_count(series)) series = s;
    }
    if (series == series_count) throw aihub::NotApplicable(first_reason);

    GridGeometry grid;
    std::vector<float> input = ReadInput(job, series, grid);
    model_.runtime.Apply();  // process-wide: another torch plugin may have changed it
    const auto start = std::chrono::steady_clock::now();
    const std::vector<float> prob = Infer(input, grid.slices);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
    job.progress(0.9);
    const Analysis a = aihub::ich::Analyze(prob, input, grid, spec_);
    Report(job, series, grid, a);
    job.log(AIHUB_LOG_INFO, "ich: inference " + FormatNumber(seconds, "%.3f") + " s on " + model_.runtime.device.str() +
                                " for " + std::to_string(grid.slices) + " slices");
    job.progress(1.0);
  }

  // Runs the model on a small synthetic head (a bright ring of skull, brain, one blood-dense blob) and checks the
  // output's shape, range and that the blob scores above the plain brain.
  void self_test() {
    GridGeometry g;
    g.slices = 12;
    g.grid = spec_.grid;
    const size_t plane = static_cast<size_t>(g.grid) * g.grid, n = plane * g.slices;
    std::vector<float> input(aihub::ich::kInputChannels * n, 0);
    const double c = (g.grid - 1) / 2.0, radius = 0.4 * g.grid;
    for (uint32_t k = 0; k < g.slices; ++k) {
      for (uint32_t r = 0; r < g.grid; ++r) {
        for (uint32_t col = 0; col < g.grid; ++col) {
          const double d = std::hypot(r - c, col - c) / radius;
          const size_t i = k * plane + static_cast<size_t>(r) * g.grid + col;
          if (d < 0.93) input[i] = 0.3f;                                   // brain, 30 HU
          if (d >= 0.93 && d < 1) input[i] = input[n + i] = 1.0f;         // skull
          if (std::hypot(r - c, col - c - 0.2 * g.grid) < 6 && k >= 4 && k <= 7) {  // blood, 72 HU
            input[i] = 0.72f;
            input[2 * n + i] = 1.0f;
          }
        }
      }
    }
    const std::vector<float> prob = Infer(input, g.slices);
    if (prob.size() != n) throw aihub::Error(AIHUB_INTERNAL, "ich self-test: output size does not match the input");
    for (float p : prob) {
      if (!(p >= 0 && p <= 1)) throw aihub::Error(AIHUB_INTERNAL, "ich self-test: output outside [0, 1]");
    }
    const size_t blob = 5 * plane + static_cast<size_t>(c) * g.grid + static_cast<size_t>(c + 0.2 * g.grid);
    const size_t brain = 5 * plane + static_cast<size_t>(c) * g.grid + static_cast<size_t>(c - 0.2 * g.grid);
    if (!(prob[blob] > prob[brain])) throw aihub::Error(AIHUB_INTERNAL, "ich self-test: blob not above brain");
  }

 private:
  std::vector<float> ReadInput(const aihub::Job& job, uint32_t series, GridGeometry& grid) const {
    const uint32_t frames = job.frame_count(series);
    const aihub_frame_geometry first = job.geometry(series, 0);
    grid.slices = frames;
    grid.grid = spec_.grid;
    grid.factor = aihub::ich::PoolingFactor(first.rows, first.columns, spec_.grid);
    grid.column_spacing_mm = first.pixel_spacing[1];
    grid.row_spacing_mm = first.pixel_spacing[0];
    grid.slice_spacing_mm = first.spacing_between_slices;
    grid.columns_toward_patient_left = first.orientation[0] > 0;
    const size_t plane = static_cast<size_t>(spec_.grid) * spec_.grid, n = plane * frames;
    std::vector<float> input(aihub::ich::kInputChannels * n), frame;
    for (uint32_t k = 0; k < frames; ++k) {
      if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
      const aihub_frame_geometry g = job.geometry(series, k);
      if (g.rows != first.rows || g.columns != first.columns) throw aihub::NotApplicable("slices differ in size");
      job.read_frame(series, k, frame);
      aihub::ich::PreprocessSlice(frame.data(), first.rows, grid.factor, spec_, input.data() + k * plane, n);
      job.progress(0.6 * (k + 1) / frames);
    }
    return input;
  }

  std::vector<float> Infer(std::vector<float>& input, uint32_t slices) {
    const int64_t g = spec_.grid;
    torch::NoGradGuard no_grad;
    c10::InferenceMode inference;
    torch::Tensor x = torch::from_blob(input.data(), {1, aihub::ich::kInputChannels, static_cast<int64_t>(slices), g, g},
                                       torch::kFloat32);
    torch::Tensor y =
        model_.module.forward({x.to(model_.runtime.device)}).toTensor().to(torch::kCPU, torch::kFloat32).contiguous();
    if (y.dim() != 5 || y.size(0) != 1 || y.size(1) != 1 || y.size(2) != slices || y.size(3) != g ||
        y.size(4) != g) {
      throw aihub::Error(AIHUB_INTERNAL, "ich: model output has an unexpected shape");
    }
    const float* p = y.data_ptr<float>();
    return std::vector<float>(p, p + y.numel());
  }

  void Report(const aihub::Job& job, uint32_t series, const GridGeometry& grid, const Analysis& a) const {
    aihub::Finding f;
    f.code = kIntracranialHemorrhage;
    f.presence = a.present ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT;
    f.confidence = a.score;
    f.urgency = a.present ? AIHUB_URGENCY_CRITICAL : AIHUB_URGENCY_ROUTINE;
    f.laterality = a.present ? ToAbi(a.side) : AIHUB_LATERALITY_NONE;
    const std::string tail = " (reference model " AIHUB_ICH_MODEL_VERSION ", not for clinical use)";
    std::string summary;
    if (a.present) {
      f.text = "Intracranial hemorrhage, " + FormatNumber(a.volume_ml) + " mL" + SideText(a.side) + tail;
      summary = "ICH model: intracranial hemorrhage detected (score " + FormatNumber(a.score, "%.2f") + "), about " +
                FormatNumber(a.volume_ml) + " mL" + SideText(a.side) + ", largest on image " +
                std::to_string(a.best_slice + 1) + " of " + std::to_string(grid.slices) + "." + tail;
    } else {
      f.text = "No intracranial hemorrhage detected" + tail;
      summary = "ICH model: no intracranial hemorrhage detected (score " + FormatNumber(a.score, "%.2f") +
                ", operating point " + FormatNumber(spec_.threshold, "%.2f") + ")." + tail;
    }
    const uint32_t finding = job.add_finding(f);
    if (a.present) {
      job.add_measurement(finding, kVolume, a.volume_ml, "mL", "milliliter");
      if (a.blood_voxels > 0) {
        const float* b = a.box;
        job.add_region(finding, series, a.best_slice, AIHUB_GRAPHIC_POLYGON,
                       {b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]});
      }
    }
    job.set_summary(summary);
    job.log(AIHUB_LOG_INFO, "ich: score " + FormatNumber(a.score, "%.4f") + ", " + std::to_string(a.blood_voxels) +
                                " blood voxels, " + FormatNumber(a.volume_ml, "%.2f") + " mL, offset " +
                                FormatNumber(a.offset_mm) + " mm");
  }

  ModelSpec spec_;
  // Last: its initialiser fills the members above from the model metadata, so they must exist before it.
  aihub_ref::ReferenceModel model_;
};

}  // namespace

AIHUB_PLUGIN(kDescriptor, IchPlugin)
