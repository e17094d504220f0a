// "Left-ventricular ejection fraction from short-axis cine MR": a reference deep-learning plugin. A small 2D U-Net
// (TorchScript, trained on aihub-phantom cardiac cines by train.py) segments the left-ventricular blood pool on every
// (slice, phase) frame; the volume of each phase is the sum of the slice areas times the slice spacing (Simpson's
// discs), end-diastole is the largest volume, end-systole the smallest, and EF = (EDV - ESV) / EDV (ef_model.h).
// Not for clinical use.
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include "aihub/plugin.hpp"
#include "aihub_ref/format.h"
#include "aihub_ref/torch_model.h"
#include "ef_model.h"

#ifndef AIHUB_EJECTION_FRACTION_MODEL_VERSION
#error "AIHUB_EJECTION_FRACTION_MODEL_VERSION must be defined by the build (from model/MODEL_VERSION)"
#endif

namespace {

using aihub::ejection_fraction::CineAnalysis;
using aihub::ejection_fraction::ModelSpec;

constexpr uint32_t kTagSeriesInstanceUid = 0x0020000E;
// 24 slices x 50 phases (the phantom's limits, and more than a clinical short-axis cine holds): the stack of
// model-grid frames stays under ~160 MB.
constexpr uint32_t kMaxFrames = 1200;

const aihub_plugin_descriptor kDescriptor = aihub::MakeDescriptor(
    "ejection_fraction",
    "Left ventricular ejection fraction from short-axis cine MR (reference model, not for clinical use)", "1.0.0",
    AIHUB_EJECTION_FRACTION_MODEL_VERSION, "aihub reference plugins",
    "{Modality: MR, SeriesDescription: {regex: \".*(CINE|cine|Cine).*\"}, NumberOfTemporalPositions: {exists: true}}");

// The finding: EF below the operating point is left-ventricular systolic dysfunction.
const aihub_code kSystolicDysfunction{"134401001", "SCT", "Left ventricular systolic dysfunction"};
const aihub_code kLeftVentricle{"87878005", "SCT", "Left ventricle structure"};
// Measurement concepts as DICOM PS3.16 uses them for cardiac function (LOINC; stroke volume from SNOMED CT).
const aihub_code kEjectionFraction{"10230-1", "LN", "Left ventricular Ejection fraction"};
const aihub_code kEndDiastolicVolume{"18026-5", "LN", "Left Ventricular End Diastolic Volume"};
const aihub_code kEndSystolicVolume{"18148-7", "LN", "Left Ventricular End Systolic Volume"};
const aihub_code kStrokeVolume{"90096001", "SCT", "Stroke Volume"};

using aihub_ref::FormatNumber;

// The frames of a cine series, phase by phase: frames[phase][slice] are sorted frame indices.
struct Cine {
  uint32_t series = 0;
  std::string uid;
  std::vector<std::vector<uint32_t>> frames;
  uint32_t slices = 0;
  aihub_frame_geometry geometry{};  // of the first frame
  double slice_spacing_mm = 0;
};

// Reads the phase layout of `series` into `cine`; returns why it does not suit, or "" when it does.
std::string InspectCine(const aihub::Job& job, uint32_t series, Cine& cine) {
  cine.series = series;
  cine.uid = job.series_tag(series, kTagSeriesInstanceUid, "(no SeriesInstanceUID)");
  const uint32_t count = job.frame_count(series);
  if (count == 0) return "series " + cine.uid + " has no frames";
  const aihub_frame_geometry g = job.geometry(series, 0);
  if (g.struct_size < offsetof(aihub_frame_geometry, temporal_positions) + sizeof g.temporal_positions) {
    return "the host does not report cardiac phases (plugin ABI 1.0 host)";
  }
  if (g.temporal_positions < 2) {
    return "not a cine series: series " + cine.uid + " has no cardiac phases (TemporalPositionIdentifier / "
           "TriggerTime)";
  }
  if (g.samples_per_pixel != 1 ||
      (g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME1 && g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME2)) {
    return "series " + cine.uid + " is not monochrome";
  }
  if (!(g.pixel_spacing[0] > 0 && g.pixel_spacing[1] > 0)) return "series " + cine.uid + " has no PixelSpacing";
  if (count > kMaxFrames) {
    return "series " + cine.uid + " has " + std::to_string(count) + " frames; at most " +
           std::to_string(kMaxFrames) + " are analysed";
  }
  cine.geometry = g;
  cine.frames.assign(g.temporal_positions, {});
  for (uint32_t f = 0; f < count; ++f) {
    const aihub_frame_geometry fg = f == 0 ? g : job.geometry(series, f);
    if (fg.temporal_index < 1 || static_cast<uint32_t>(fg.temporal_index) > g.temporal_positions) {
      return "frame " + std::to_string(f + 1) + " of series " + cine.uid + " has no cardiac phase";
    }
    if (fg.rows != g.rows || fg.columns != g.columns || fg.pixel_spacing[0] != g.pixel_spacing[0] ||
        fg.pixel_spacing[1] != g.pixel_spacing[1]) {
      return "frames of series " + cine.uid + " differ in size or pixel spacing";
    }
    cine.frames[fg.temporal_index - 1].push_back(f);
  }
  cine.slices = static_cast<uint32_t>(cine.frames[0].size());
  for (size_t t = 0; t < cine.frames.size(); ++t) {
    if (cine.frames[t].size() != cine.slices) {
      return "inconsistent cine: phase " + std::to_string(t + 1) + " has " + std::to_string(cine.frames[t].size()) +
             " slices, phase 1 has " + std::to_string(cine.slices);
    }
  }
  if (cine.slices < 2) return "series " + cine.uid + " has one slice per phase; a short-axis stack is needed";
  cine.slice_spacing_mm = g.spacing_between_slices > 0 ? g.spacing_between_slices : g.slice_thickness;
  if (!(cine.slice_spacing_mm > 0)) return "series " + cine.uid + " has no slice spacing or thickness";
  return "";
}

void ThrowIfCancelled(const aihub::Job& job) {
  if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
}

class EjectionFractionPlugin {
 public:
  explicit EjectionFractionPlugin(aihub::PluginContext& ctx)
      : model_(aihub_ref::LoadReferenceModel(
            ctx, "ejection_fraction", "ejection_fraction.pt", AIHUB_EJECTION_FRACTION_MODEL_VERSION,
            [&](const std::string& json) { aihub::ejection_fraction::ParseModelMetadata(json, spec_); })) {
    spec_.threshold_percent = ctx.config_number("threshold_percent", spec_.threshold_percent);
    if (!(spec_.threshold_percent >= 0 && spec_.threshold_percent <= 100)) {
      throw aihub::Error(AIHUB_INVALID_ARGUMENT, "ejection_fraction: threshold_percent must be in [0, 100]");
    }
    ctx.info("ejection_fraction: loaded " + model_.version + " from " + model_.path + " on " +
             model_.runtime.device.str() + ", reduced EF below " + FormatNumber(spec_.threshold_percent) + " %, " +
             std::to_string(model_.runtime.threads) + " thread(s)");
  }

  void execute(aihub::Job& job) {
    const uint32_t series_count = job.series_count();
    if (series_count == 0) throw aihub::NotApplicable("not a cine series: no series to analyse");
    Cine cine;
    std::string first_reason;
    bool found = false;
    for (uint32_t s = 0; s < series_count && !found; ++s) {
      Cine candidate;
      const std::string reason = InspectCine(job, s, candidate);
      if (reason.empty()) {
        cine = std::move(candidate);
        found = true;
      } else if (first_reason.empty()) {
        first_reason = reason;
      }
    }
    if (!found) throw aihub::NotApplicable(first_reason);

    const uint32_t phases = static_cast<uint32_t>(cine.frames.size()), slices = cine.slices;
    const aihub_frame_geometry& g = cine.geometry;
    const aihub::ejection_fraction::GridMapper mapper(g.rows, g.columns, g.pixel_spacing[0], g.pixel_spacing[1],
                                                      spec_);
    const size_t plane = static_cast<size_t>(spec_.grid) * spec_.grid;
    std::vector<float> stack(plane * phases * slices), frame;
    for (uint32_t t = 0; t < phases; ++t) {
      for (uint32_t k = 0; k < slices; ++k) {
        ThrowIfCancelled(job);
        job.read_frame(cine.series, cine.frames[t][k], frame);
        mapper.Map(frame.data(), stack.data() + (static_cast<size_t>(t) * slices + k) * plane);
      }
      job.progress(0.4 * (t + 1) / phases);
    }
    aihub::ejection_fraction::Normalise(stack, spec_);

    model_.runtime.Apply();  // process-wide: another torch plugin may have changed it
    const auto start = std::chrono::steady_clock::now();
    std::vector<float> prob(stack.size());
    for (uint32_t t = 0; t < phases; ++t) {
      ThrowIfCancelled(job);
      Infer(stack.data() + static_cast<size_t>(t) * slices * plane, slices,
            prob.data() + static_cast<size_t>(t) * slices * plane);
      job.progress(0.4 + 0.55 * (t + 1) / phases);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ThrowIfCancelled(job);

    const CineAnalysis a = aihub::ejection_fraction::AnalyzeCine(prob, phases, slices, cine.slice_spacing_mm, spec_);
    if (!(a.edv_ml > 0)) {
      throw aihub::NotApplicable("no left-ventricular blood pool found in series " + cine.uid);
    }
    Report(job, cine, a);
    job.log(AIHUB_LOG_INFO, "ejection_fraction: inference " + FormatNumber(seconds, "%.3f") + " s for " +
                                std::to_string(phases * slices) + " frames on " + model_.runtime.device.str());
    job.progress(1.0);
  }

  // Runs the model on a synthetic short-axis frame (a bright disc inside a dark ring in grey tissue) and checks
  // the output's shape and range and that the disc's measured area is within 25 % of the drawn one.
  void self_test() {
    const uint32_t g = spec_.grid;
    const double radius_cells = 22;  // ~35 mm: a left ventricle at end-diastole
    std::vector<float> input(static_cast<size_t>(g) * g);
    double drawn = 0;
    for (uint32_t r = 0; r < g; ++r) {
      for (uint32_t c = 0; c < g; ++c) {
        const double d = std::hypot(r + 0.5 - g / 2.0, c + 0.5 - g / 2.0);
        float v = 0.45f;                          // soft tissue
        if (d < radius_cells + 6) v = 0.3f;       // myocardium
        if (d < radius_cells) v = 1.0f, ++drawn;  // blood pool
        input[static_cast<size_t>(r) * g + c] = v;
      }
    }
    std::vector<float> prob(input.size());
    Infer(input.data(), 1, prob.data());
    double area = 0;
    for (float p : prob) {
      if (!(p >= 0 && p <= 1)) throw aihub::Error(AIHUB_INTERNAL, "ejection_fraction self-test: output outside [0, 1]");
      area += p;
    }
    if (std::fabs(area / drawn - 1) > 0.25) {
      throw aihub::Error(AIHUB_INTERNAL, "ejection_fraction self-test: a synthetic blood pool of " +
                                             FormatNumber(drawn, "%.0f") + " cells measures " +
                                             FormatNumber(area, "%.0f"));
    }
  }

 private:
  // `frames` model-grid frames at `input` -> as many probability maps at `output`.
  void Infer(float* input, uint32_t frames, float* output) {
    const int64_t g = spec_.grid;
    torch::NoGradGuard no_grad;
    c10::InferenceMode inference;
    torch::Tensor x = torch::from_blob(input, {frames, 1, g, g}, torch::kFloat32);
    torch::Tensor y =
        model_.module.forward({x.to(model_.runtime.device)}).toTensor().to(torch::kCPU, torch::kFloat32).contiguous();
    if (y.dim() != 4 || y.size(0) != frames || y.size(1) != 1 || y.size(2) != g || y.size(3) != g) {
      throw aihub::Error(AIHUB_INTERNAL, "ejection_fraction: model output has an unexpected shape");
    }
    const float* p = y.data_ptr<float>();
    std::copy(p, p + y.numel(), output);
  }

  void Report(const aihub::Job& job, const Cine& cine, const CineAnalysis& a) const {
    const bool reduced = a.ef_percent < spec_.threshold_percent;
    aihub::Finding f;
    f.code = kSystolicDysfunction;
    f.presence = reduced ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT;
    // Not a calibrated probability: a logistic in the distance to the operating point, with the scale of the
    // model's held-out EF error (~2 points), so cases near the threshold read as uncertain.
    f.confidence = 1 / (1 + std::exp(-(spec_.threshold_percent - a.ef_percent) / 2));
    f.urgency = reduced ? AIHUB_URGENCY_CRITICAL : AIHUB_URGENCY_ROUTINE;
    f.site = &kLeftVentricle;
    const std::string tail = " (reference model " AIHUB_EJECTION_FRACTION_MODEL_VERSION ", not for clinical use)";
    const std::string numbers = "LVEF " + FormatNumber(a.ef_percent, "%.0f") + " % (EDV " +
                                FormatNumber(a.edv_ml, "%.0f") + " mL, ESV " + FormatNumber(a.esv_ml, "%.0f") + " mL)";
    f.text = (reduced ? "Reduced left ventricular ejection fraction: " : "No severely reduced ejection fraction: ") +
             numbers + ", operating point " + FormatNumber(spec_.threshold_percent, "%.0f") + " %" + tail;
    const uint32_t finding = job.add_finding(f);
    job.add_measurement(finding, kEjectionFraction, a.ef_percent, "%", "percent");
    job.add_measurement(finding, kEndDiastolicVolume, a.edv_ml, "mL", "milliliter");
    job.add_measurement(finding, kEndSystolicVolume, a.esv_ml, "mL", "milliliter");
    job.add_measurement(finding, kStrokeVolume, a.sv_ml, "mL", "milliliter");
    if (a.contour.size() >= 6) {
      const aihub::ejection_fraction::GridMapper mapper(cine.geometry.rows, cine.geometry.columns,
                                                        cine.geometry.pixel_spacing[0],
                                                        cine.geometry.pixel_spacing[1], spec_);
      std::vector<float> points(a.contour.size());
      for (size_t i = 0; i + 1 < points.size(); i += 2) {
        points[i] = static_cast<float>(mapper.NativeColumn(a.contour[i]));
        points[i + 1] = static_cast<float>(mapper.NativeRow(a.contour[i + 1]));
      }
      job.add_region(finding, cine.series, cine.frames[a.ed_phase][a.contour_slice], AIHUB_GRAPHIC_POLYGON, points);
    }
    const uint32_t phases = static_cast<uint32_t>(cine.frames.size());
    job.set_summary("Left ventricular function model: " + numbers + ", stroke volume " + FormatNumber(a.sv_ml, "%.0f") +
                    " mL; end-diastole phase " + std::to_string(a.ed_phase + 1) + ", end-systole phase " +
                    std::to_string(a.es_phase + 1) + " of " + std::to_string(phases) + ", " +
                    std::to_string(cine.slices) + " slices. " +
                    (reduced ? "Ejection fraction below " : "Ejection fraction not below ") +
                    FormatNumber(spec_.threshold_percent, "%.0f") + " %." + tail);
    job.log(AIHUB_LOG_INFO,
            "ejection_fraction: EF " + FormatNumber(a.ef_percent, "%.3f") + " % EDV " + FormatNumber(a.edv_ml, "%.3f") +
                " mL ESV " + FormatNumber(a.esv_ml, "%.3f") + " mL ED phase " + std::to_string(a.ed_phase + 1) +
                " ES phase " + std::to_string(a.es_phase + 1) + " of " + std::to_string(phases) + ", " +
                std::to_string(cine.slices) + " slices at " + FormatNumber(cine.slice_spacing_mm, "%.2f") + " mm");
  }

  ModelSpec spec_;
  // Last: its initialiser fills the members above from the model metadata, so they must exist before it.
  aihub_ref::ReferenceModel model_;
};

}  // namespace

AIHUB_PLUGIN(kDescriptor, EjectionFractionPlugin)
