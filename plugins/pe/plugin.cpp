// "Pulmonary embolism detection on CTPA": a reference deep-learning plugin. A small 3D U-Net (TorchScript,
// trained on aihub-phantom CT pulmonary angiograms by train.py) maps a CTPA to per-voxel probabilities of artery
// lumen and embolus; presence, clot volume, burden, side, most proximal branch and region come from those maps
// and the clot components' positions (pe_model.h). Not for clinical use.
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "aihub_ref/torch_model.h"
#include "aihub/plugin.hpp"
#include "aihub_ref/volume.h"
#include "pe_model.h"

#ifndef AIHUB_PE_MODEL_VERSION
#error "AIHUB_PE_MODEL_VERSION must be defined by the build (from plugins/pe/model/MODEL_VERSION)"
#endif

namespace {

using aihub::pe::Analysis;
using aihub::pe::GridGeometry;
using aihub::pe::ModelSpec;
using aihub::pe::Side;
using aihub::pe::Site;
using aihub_ref::FormatNumber;

// Thin slices are what CTPA is read on; the model grid is 3.1 mm along z, so thicker slices than that would be
// upsampled and are refused. Fields of view far from the 360 mm the model saw change every learned size.
const aihub_ref::SeriesLimits kLimits{32, 1200, 0.3, 3.2};
constexpr double kMinCoverageMm = 100;  // the central pulmonary arteries and the lobar branches
constexpr double kMinCellMm = 2.0, kMaxCellMm = 3.6;

const aihub_plugin_descriptor kDescriptor = aihub::MakeDescriptor(
    "pe", "Pulmonary embolism detection on CTPA (reference model, not for clinical use)", "1.1.0",
    AIHUB_PE_MODEL_VERSION, "aihub reference plugins",
    "{Modality: CT, BodyPartExamined: [CHEST, THORAX], "
    "SeriesDescription: {regex: \".*([Cc][Tt][Pp][Aa]|[Aa][Nn][Gg][Ii][Oo]|\\\\b[Pp][Ee]\\\\b).*\"}}");

const aihub_code kPulmonaryEmbolism{"59282003", "SCT", "Pulmonary embolism"};
const aihub_code kVolume{"118565006", "SCT", "Volume"};
const aihub_code kClotBurden{"pe-clot-burden", "99AIHUB", "Pulmonary arterial clot burden"};
// Finding sites: DICOM CID 4031 codes for the pulmonary arteries. A lobar embolus is coded as "Pulmonary artery"
// with its laterality; the text names the lobar level.
const aihub_code kPulmonaryArtery{"81040000", "SCT", "Pulmonary artery"};
const aihub_code kRightPulmonaryArtery{"78480002", "SCT", "Right pulmonary artery"};
const aihub_code kLeftPulmonaryArtery{"50408007", "SCT", "Left pulmonary artery"};

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
      return "left";
    case Side::kRight:
      return "right";
    case Side::kBilateral:
      return "bilateral";
    case Side::kNone:
      break;
  }
  return "";
}

const aihub_code* SiteCode(Site s) {
  switch (s) {
    case Site::kRightPulmonary:
      return &kRightPulmonaryArtery;
    case Site::kLeftPulmonary:
      return &kLeftPulmonaryArtery;
    case Site::kMain:
    case Site::kRightLobar:
    case Site::kLeftLobar:
      return &kPulmonaryArtery;
    case Site::kNone:
      break;
  }
  return nullptr;
}

// Why a series does not suit the model, or "".
std::string Unsuitable(const aihub::Job& job, uint32_t series, uint32_t grid) {
  std::string reason = aihub_ref::CheckAxialCtSeries(job, series, kLimits);
  if (!reason.empty()) return reason;
  const aihub_frame_geometry g = job.geometry(series, 0);
  const double coverage = g.spacing_between_slices * job.frame_count(series);
  if (coverage < kMinCoverageMm) {
    return "series covers " + FormatNumber(coverage) + " mm; at least 100 mm of the chest needed";
  }
  const uint32_t f = aihub_ref::PoolingFactor(g.rows, g.columns, grid);
  if (f == 0) {
    return "image size " + std::to_string(g.columns) + "x" + std::to_string(g.rows) +
           " cannot be pooled to the model's " + std::to_string(grid) + "x" + std::to_string(grid) + " grid";
  }
  const double cell = f * g.pixel_spacing[0];
  if (cell < kMinCellMm || cell > kMaxCellMm || std::fabs(g.pixel_spacing[0] - g.pixel_spacing[1]) > 0.01) {
    return "pixel spacing " + FormatNumber(g.pixel_spacing[0], "%.3f") + "\\" +
           FormatNumber(g.pixel_spacing[1], "%.3f") + " mm does not match the model's field of view";
  }
  return "";
}

class PePlugin {
 public:
  explicit PePlugin(aihub::PluginContext& ctx)
      : model_(aihub_ref::LoadReferenceModel(ctx, "pe", "pe.pt", AIHUB_PE_MODEL_VERSION, [&](const std::string& json) {
          aihub::pe::ParseModelMetadata(json, spec_);
        })) {
    min_contrast_hu_ = ctx.config_number("min_contrast_hu", 150);
    if (!(min_contrast_hu_ >= -1000 && min_contrast_hu_ <= 3000)) {
      throw aihub::Error(AIHUB_INVALID_ARGUMENT, "pe: min_contrast_hu must be in [-1000, 3000]");
    }
    spec_.threshold = ctx.config_number("threshold", spec_.threshold);
    if (!(spec_.threshold >= 0 && spec_.threshold <= 1)) {
      throw aihub::Error(AIHUB_INVALID_ARGUMENT, "pe: threshold must be in [0, 1]");
    }
    ctx.info("pe: loaded " + model_.version + " from " + model_.path + " on " + model_.runtime.device.str() +
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
    double contrast_hu = -1e9;
    std::vector<float> input = ReadInput(job, series, grid, contrast_hu);
    if (contrast_hu < min_contrast_hu_) {
      throw aihub::NotApplicable("not a contrast-enhanced study: the central mediastinum peaks at " +
                                 FormatNumber(contrast_hu, "%.0f") + " HU, below " +
                                 FormatNumber(min_contrast_hu_, "%.0f") + " HU (no opacified pulmonary arteries)");
    }
    model_.runtime.Apply();  // process-wide: another torch plugin may have changed it
    const auto start = std::chrono::steady_clock::now();
    const std::vector<float> prob = Infer(input, grid.cells);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
    job.progress(0.9);
    const Analysis a = aihub::pe::Analyze(prob, grid, spec_);
    Report(job, series, grid, a);
    job.log(AIHUB_LOG_INFO, "pe: inference " + FormatNumber(seconds, "%.3f") + " s on " + model_.runtime.device.str() +
                                " for " + std::to_string(grid.cells) + " x " + std::to_string(grid.grid) + " x " +
                                std::to_string(grid.grid) + " cells");
    job.progress(1.0);
  }

  // Runs the model on a small synthetic block: a lobar-sized opacified artery (330 HU, 5.6 mm across) running
  // through lung, plugged by a 40 HU filling defect over 4 cells. Checks the output's shape, that the classes sum to
  // one, that the open artery scores as lumen above the lung, and that the plug scores as clot above the open lumen.
  void self_test() {
    const uint32_t cells = 16, grid = spec_.grid;
    const size_t plane = static_cast<size_t>(grid) * grid, n = plane * cells;
    std::vector<float> input(aihub::pe::kInputChannels * n, 0);
    const double c = (grid - 1) / 2.0;
    for (uint32_t k = 0; k < cells; ++k) {
      for (uint32_t r = 0; r < grid; ++r) {
        for (uint32_t col = 0; col < grid; ++col) {
          const size_t i = k * plane + static_cast<size_t>(r) * grid + col;
          const bool artery = std::hypot(r - c, col - c) < 2;
          const bool plug = artery && k >= 6 && k <= 9;
          input[i] = plug ? 0.34f : artery ? 0.76f : 0.0f;
          input[n + i] = artery ? 0.0f : 1.0f;  // lung around the artery
          input[2 * n + i] = plug ? 1.0f : 0.0f;
          input[3 * n + i] = artery && !plug ? 1.0f : 0.0f;
        }
      }
    }
    const std::vector<float> prob = Infer(input, cells);
    if (prob.size() != aihub::pe::kClassCount * n) throw aihub::Error(AIHUB_INTERNAL, "pe self-test: bad output size");
    for (size_t i = 0; i < n; i += 97) {
      double s = 0;
      for (uint32_t cl = 0; cl < aihub::pe::kClassCount; ++cl) s += prob[cl * n + i];
      if (!(std::fabs(s - 1) < 1e-3)) throw aihub::Error(AIHUB_INTERNAL, "pe self-test: classes do not sum to 1");
    }
    auto clot = [&](size_t i) {
      double p = 0;
      for (uint32_t cl = aihub::pe::kClassClotMain; cl < aihub::pe::kClassCount; ++cl) p += prob[cl * n + i];
      return p;
    };
    const size_t centre = static_cast<size_t>(c) * grid + static_cast<size_t>(c);
    const size_t open = 2 * plane + centre, plugged = 8 * plane + centre, lung = 2 * plane + centre + 20;
    if (!(prob[aihub::pe::kClassLumen * n + open] > prob[aihub::pe::kClassLumen * n + lung])) {
      throw aihub::Error(AIHUB_INTERNAL, "pe self-test: the artery does not score above the lung as lumen");
    }
    if (!(clot(plugged) > clot(open))) {
      throw aihub::Error(AIHUB_INTERNAL, "pe self-test: the filling defect does not score above the open lumen");
    }
  }

 private:
  std::vector<float> ReadInput(const aihub::Job& job, uint32_t series, GridGeometry& grid,
                               double& contrast_hu) const {
    const uint32_t frames = job.frame_count(series);
    const aihub_frame_geometry first = job.geometry(series, 0);
    const aihub_frame_geometry last = job.geometry(series, frames - 1);
    const aihub_ref::ZResampling z = aihub_ref::MakeZResampling(frames, first.spacing_between_slices, spec_.cell_z_mm);
    grid.cells = z.cells;
    grid.grid = spec_.grid;
    grid.factor = aihub_ref::PoolingFactor(first.rows, first.columns, spec_.grid);
    grid.pixel_mm = first.pixel_spacing[0];
    grid.cell_z_mm = z.cell_mm;
    grid.slice_spacing_mm = first.spacing_between_slices;
    grid.center_slice = z.center_slice;
    double length = 0;
    for (int d = 0; d < 3; ++d) {
      grid.origin[d] = first.position[d];
      grid.row_dir[d] = first.orientation[d];
      grid.column_dir[d] = first.orientation[3 + d];
      grid.normal[d] = last.position[d] - first.position[d];
      length += grid.normal[d] * grid.normal[d];
    }
    length = std::sqrt(length);
    for (int d = 0; d < 3; ++d) grid.normal[d] = length > 0 ? grid.normal[d] / length : (d == 2 ? 1 : 0);

    const size_t plane = static_cast<size_t>(spec_.grid) * spec_.grid, n = plane * z.cells;
    constexpr uint32_t channels = aihub::pe::kInputChannels;
    std::vector<float> input(channels * n, 0.0f), slice(channels * plane);
    aihub_ref::ForEachFrame(job, series, 0.6, [&](uint32_t k, const std::vector<float>& hu) {
      aihub::pe::PreprocessSlice(hu.data(), first.rows, grid.factor, spec_, slice.data(), plane);
      contrast_hu = std::max(contrast_hu, aihub::pe::MediastinumMaxHu(hu.data(), first.rows, grid.factor,
                                                                       grid.pixel_mm));
      for (const auto& share : z.by_slice[k]) {
        const auto w = static_cast<float>(share.weight);
        for (uint32_t ch = 0; ch < channels; ++ch) {
          float* cell = input.data() + ch * n + share.cell * plane;
          const float* from = slice.data() + ch * plane;
          for (size_t i = 0; i < plane; ++i) cell[i] += w * from[i];
        }
      }
    });
    grid.midline_column = aihub::pe::BodyMidlineColumn(input, z.cells, spec_.grid);
    return input;
  }

  // Class probabilities [7, cells, grid, grid]; the input is padded along z (repeating the last cell) to a
  // multiple of 4, as the U-Net pools twice by 2.
  std::vector<float> Infer(const std::vector<float>& input, uint32_t cells) {
    const int64_t g = spec_.grid, s = cells, padded = (s + 3) / 4 * 4;
    torch::NoGradGuard no_grad;
    c10::InferenceMode inference;
    const int64_t channels = aihub::pe::kInputChannels;
    torch::Tensor x = torch::from_blob(const_cast<float*>(input.data()), {1, channels, s, g, g}, torch::kFloat32);
    if (padded != s) {
      x = torch::cat({x, x.slice(2, s - 1, s).expand({1, channels, padded - s, g, g})}, 2);
    }
    torch::Tensor y = model_.module.forward({x.to(model_.runtime.device)}).toTensor();
    if (y.dim() != 5 || y.size(0) != 1 || y.size(1) != aihub::pe::kClassCount || y.size(2) != padded ||
        y.size(3) != g || y.size(4) != g) {
      throw aihub::Error(AIHUB_INTERNAL, "pe: model output has an unexpected shape");
    }
    y = y.slice(2, 0, s).to(torch::kCPU, torch::kFloat32).contiguous();
    const float* p = y.data_ptr<float>();
    return std::vector<float>(p, p + y.numel());
  }

  void Report(const aihub::Job& job, uint32_t series, const GridGeometry& grid, const Analysis& a) const {
    aihub::Finding f;
    f.code = kPulmonaryEmbolism;
    f.presence = a.present ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT;
    f.confidence = a.score;
    f.urgency = a.present ? AIHUB_URGENCY_CRITICAL : AIHUB_URGENCY_ROUTINE;
    f.laterality = a.present ? ToAbi(a.side) : AIHUB_LATERALITY_NONE;
    f.site = a.present ? SiteCode(a.site) : nullptr;
    const std::string tail = " (reference model " AIHUB_PE_MODEL_VERSION ", not for clinical use)";
    std::string summary;
    if (a.present) {
      const std::string what = std::string(SideText(a.side)) + ", most proximal in the " +
                               aihub::pe::SiteName(a.site) + ", " + FormatNumber(a.volume_ml, "%.2f") +
                               " mL, clot burden " + FormatNumber(a.burden_percent, "%.1f") + " %";
      f.text = "Pulmonary embolism, " + what + tail;
      summary = "PE model: pulmonary embolism detected (score " + FormatNumber(a.score, "%.2f") + "), " + what +
                ", largest on image " + std::to_string(a.best_frame + 1) + "." + tail;
    } else {
      f.text = "No pulmonary embolism detected" + tail;
      summary = "PE model: no pulmonary embolism detected (score " + FormatNumber(a.score, "%.2f") +
                ", operating point " + FormatNumber(spec_.threshold, "%.2f") + ")." + tail;
    }
    const uint32_t finding = job.add_finding(f);
    if (a.present) {
      job.add_measurement(finding, kVolume, a.volume_ml, "mL", "milliliter");
      job.add_measurement(finding, kClotBurden, a.burden_percent, "%", "percent");
      if (a.contour.size() >= 6 && a.contour.size() <= 2 * 4096) {
        job.add_region(finding, series, a.best_frame, AIHUB_GRAPHIC_POLYGON, a.contour);
      }
    }
    job.set_summary(summary);
    job.log(AIHUB_LOG_INFO,
            "pe: score " + FormatNumber(a.score, "%.4f") + ", site " +
                (a.present ? aihub::pe::SiteName(a.site) : "none") + ", " + std::to_string(a.clot_voxels) +
                " clot cells in " +
                std::to_string(a.components) + " component(s), " + FormatNumber(a.volume_ml, "%.3f") +
                " mL clot, " + FormatNumber(a.lumen_ml, "%.1f") + " mL lumen, largest clot " + FormatNumber(a.offset_mm) + " mm from the midline, centroid LPS (" +
                FormatNumber(a.centroid_lps[0]) + ", " + FormatNumber(a.centroid_lps[1]) + ", " +
                FormatNumber(a.centroid_lps[2]) + ") mm, grid " + std::to_string(grid.cells) + " cells");
  }

  double min_contrast_hu_ = 150;
  ModelSpec spec_;
  // Last: its initialiser fills the members above from the model metadata, so they must exist before it.
  aihub_ref::ReferenceModel model_;
};

}  // namespace

AIHUB_PLUGIN(kDescriptor, PePlugin)
