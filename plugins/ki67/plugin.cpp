// "Ki-67 proliferation index on whole-slide images": a reference deep-learning plugin. It streams the tiles of a
// TILED_FULL VL Whole Slide Microscopy image one at a time into one reusable buffer (memory bounded whatever the
// slide size), detects nuclei by colour deconvolution (ki67_analysis.h), classifies each nucleus Ki-67 positive or
// negative with a small TorchScript MLP (trained by train.py on aihub-phantom slides), and reports the whole-slide
// index, the hot-spot index (densest-positive high-power-field window) and the nucleus counts. Not for clinical use.
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "aihub/plugin.hpp"
#include "aihub_ref/model_metadata.h"
#include "aihub_ref/format.h"
#include "aihub_ref/torch_model.h"
#include "ki67_analysis.h"

#ifndef AIHUB_KI67_MODEL_VERSION
#error "AIHUB_KI67_MODEL_VERSION must be defined by the build (from plugins/ki67/model/MODEL_VERSION)"
#endif

namespace {

using aihub::ki67::DetectionParams;
using aihub::ki67::HotSpot;
using aihub::ki67::kFeatureCount;
using aihub::ki67::Nucleus;
using aihub::ki67::TiledLayout;

constexpr uint32_t kTagImageType = 0x00080008;
constexpr uint32_t kTagSopClassUid = 0x00080016;
constexpr uint32_t kTagModality = 0x00080060;
constexpr uint32_t kTagDimensionOrganizationType = 0x00209311;
constexpr uint32_t kTagTotalPixelMatrixColumns = 0x00480006;
constexpr uint32_t kTagTotalPixelMatrixRows = 0x00480007;
constexpr const char* kWholeSlideSopClass = "1.2.840.10008.5.1.4.1.1.77.1.6";
// Nuclei are classified in batches across tiles: one model call per ~512 nuclei, not one per tile.
constexpr size_t kBatch = 512;

const aihub_plugin_descriptor kDescriptor = aihub::MakeDescriptor(
    "ki67", "Ki-67 proliferation index on whole-slide images (reference model, not for clinical use)", "1.0.0",
    AIHUB_KI67_MODEL_VERSION, "aihub reference plugins",
    "{Modality: SM, SOPClassUID: \"1.2.840.10008.5.1.4.1.1.77.1.6\"}");

// No standard code names these quantities of a Ki-67 count; a private scheme says so.
const aihub_code kHighIndex{"KI67-HIGH", "99AIHUB", "High Ki-67 proliferation index"};
const aihub_code kIndex{"KI67-INDEX", "99AIHUB", "Ki-67 index, whole slide"};
const aihub_code kHotSpotIndex{"KI67-HOTSPOT-INDEX", "99AIHUB", "Ki-67 index, hot spot"};
const aihub_code kPositive{"KI67-POSITIVE", "99AIHUB", "Ki-67 positive nuclei"};
const aihub_code kNegative{"KI67-NEGATIVE", "99AIHUB", "Ki-67 negative nuclei"};
const aihub_code kHotSpotNuclei{"KI67-HOTSPOT-NUCLEI", "99AIHUB", "Nuclei in the hot spot"};

using aihub_ref::FormatNumber;

bool ParseCount(const std::string& text, uint64_t& out) {
  if (text.empty() || text.find_first_not_of("0123456789 ") != std::string::npos) return false;
  out = std::strtoull(text.c_str(), nullptr, 10);
  return true;
}

// The n-th (0-based) backslash-separated value of a multi-valued tag.
std::string Value(const std::string& text, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) {
    start = text.find('\\', start);
    if (start == std::string::npos) return "";
    ++start;
  }
  return text.substr(start, text.find('\\', start) - start);
}

// Standard normal CDF.
double Phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

// A series the model can read, or why not.
struct Slide {
  std::string reason;
  TiledLayout layout;
  double spacing_mm = 0;
};

class Ki67Plugin {
 public:
  explicit Ki67Plugin(aihub::PluginContext& ctx)
      : model_(aihub_ref::LoadReferenceModel(ctx, "ki67", "ki67.pt", AIHUB_KI67_MODEL_VERSION,
                                             [&](const std::string& json) { ReadMetadata(json); })) {
    high_index_percent_ = ctx.config_number("high_index_percent", 20);
    if (!(high_index_percent_ >= 0 && high_index_percent_ <= 100)) {
      throw aihub::Error(AIHUB_INVALID_ARGUMENT, "ki67: high_index_percent must be in [0, 100]");
    }
    const double min_nuclei = ctx.config_number("min_nuclei", 500);
    if (!(min_nuclei >= 0 && min_nuclei <= 1e9)) {
      throw aihub::Error(AIHUB_INVALID_ARGUMENT, "ki67: min_nuclei must be in [0, 1e9]");
    }
    min_nuclei_ = static_cast<uint64_t>(min_nuclei);
    ctx.info("ki67: loaded " + model_.version + " from " + model_.path + " on " + model_.runtime.device.str() + ", " +
             std::to_string(model_.runtime.threads) + " thread(s), high index >= " + FormatNumber(high_index_percent_) +
             "%");
  }

  void execute(aihub::Job& job) {
    const uint32_t series_count = job.series_count();
    if (series_count == 0) throw aihub::NotApplicable("no series to analyse");
    std::string first_reason;
    uint32_t series = series_count;
    Slide slide;
    for (uint32_t s = 0; s < series_count && series == series_count; ++s) {
      Slide candidate = Inspect(job, s);
      if (candidate.reason.empty()) {
        series = s;
        slide = candidate;
      } else if (first_reason.empty()) {
        first_reason = candidate.reason;
      }
    }
    if (series == series_count) throw aihub::NotApplicable("ki67: " + first_reason);
    Analyze(job, series, slide);
  }

  // Renders a synthetic tile (pale stroma, one hematoxylin-blue and one DAB-brown nucleus) with the phantom's
  // Beer-Lambert model and checks that the detector finds both and the model tells them apart.
  void self_test() {
    const uint32_t size = 128;
    std::vector<uint8_t> rgb(size * size * 3);
    const double h[3] = {0.650, 0.704, 0.286}, dab[3] = {0.268, 0.570, 0.776};
    for (uint32_t r = 0; r < size; ++r) {
      for (uint32_t c = 0; c < size; ++c) {
        double od[3];
        for (int k = 0; k < 3; ++k) od[k] = 0.06 + 0.08 * h[k];
        const double blue = std::hypot(c + 0.5 - 36.0, r + 0.5 - 64.0), brown = std::hypot(c + 0.5 - 92.0, r + 0.5 - 64.0);
        for (int k = 0; k < 3; ++k) {
          if (blue < 15) od[k] += 0.7 * h[k];
          if (brown < 15) od[k] += 0.1 * h[k] + 0.6 * dab[k];
        }
        for (int k = 0; k < 3; ++k) {
          rgb[(r * size + c) * 3 + k] = static_cast<uint8_t>(std::lround(255 * std::pow(10.0, -od[k])));
        }
      }
    }
    aihub::ki67::TileDetector detector(detection_);
    const std::vector<Nucleus> found = detector.Detect(rgb.data(), size, size, size, size);
    if (found.size() != 2) {
      throw aihub::Error(AIHUB_INTERNAL, "ki67 self-test: " + std::to_string(found.size()) +
                                             " nuclei detected on the test tile, 2 expected");
    }
    std::vector<float> features;
    for (const Nucleus& n : found) features.insert(features.end(), n.features.begin(), n.features.end());
    const std::vector<float> p = Classify(features);
    const bool left_first = found[0].column < found[1].column;
    const float p_blue = left_first ? p[0] : p[1], p_brown = left_first ? p[1] : p[0];
    if (!(p_blue < threshold_ && p_brown >= threshold_)) {
      throw aihub::Error(AIHUB_INTERNAL, "ki67 self-test: blue nucleus scored " + FormatNumber(p_blue, "%.3f") +
                                             ", brown " + FormatNumber(p_brown, "%.3f") + " (threshold " +
                                             FormatNumber(threshold_, "%.2f") + ")");
    }
  }

 private:
  void ReadMetadata(const std::string& json) {
    const std::string feature_set = aihub_ref::JsonValue(json, "feature_set");
    if (feature_set != aihub::ki67::kFeatureSet) {
      throw std::invalid_argument("model features '" + feature_set + "', this plugin computes '" +
                                  aihub::ki67::kFeatureSet + "'");
    }
    if (aihub_ref::JsonNumber(json, "features", -1, 0, 1e6) != kFeatureCount) {
      throw std::invalid_argument("model metadata: features must be " + std::to_string(kFeatureCount));
    }
    threshold_ = aihub_ref::JsonNumber(json, "threshold", 0.5, 0, 1);
    detection_.stain_threshold = aihub_ref::JsonNumber(json, "stain_threshold", 0.25, 0.01, 3);
    detection_.min_area_px = static_cast<uint32_t>(aihub_ref::JsonNumber(json, "min_area_px", 100, 1, 1e6));
    detection_.max_area_px = static_cast<uint32_t>(aihub_ref::JsonNumber(json, "max_area_px", 4000, 1, 1e7));
    model_spacing_um_ = aihub_ref::JsonNumber(json, "pixel_spacing_um", 0.25, 0.01, 100);
  }

  // Whether series `s` is a TILED_FULL RGB whole-slide VOLUME image at the model's resolution.
  Slide Inspect(const aihub::Job& job, uint32_t s) const {
    Slide out;
    const std::string modality = job.series_tag(s, kTagModality);
    if (!modality.empty() && modality != "SM") {
      out.reason = "modality " + modality + " is not SM (slide microscopy)";
      return out;
    }
    const std::string sop_class = job.series_tag(s, kTagSopClassUid);
    if (!sop_class.empty() && sop_class != kWholeSlideSopClass) {
      out.reason = "SOP class " + sop_class + " is not VL Whole Slide Microscopy Image";
      return out;
    }
    const std::string image_type = job.series_tag(s, kTagImageType);
    if (!image_type.empty() && Value(image_type, 2) != "VOLUME") {
      out.reason = "image type " + image_type + " is not a VOLUME image (label, overview or thumbnail)";
      return out;
    }
    const std::string organisation = job.series_tag(s, kTagDimensionOrganizationType);
    if (organisation != "TILED_FULL") {
      out.reason = organisation.empty()
                       ? "no DimensionOrganizationType: a TILED_FULL whole-slide image is needed"
                       : "dimension organization " + organisation +
                             " is not TILED_FULL (tiles without implicit positions are not supported)";
      return out;
    }
    const uint32_t frames = job.frame_count(s);
    if (frames == 0) {
      out.reason = "no frames";
      return out;
    }
    const aihub_frame_geometry g = job.geometry(s, 0);
    if (g.samples_per_pixel != 3 ||
        (g.photometric != AIHUB_PHOTOMETRIC_RGB && g.photometric != AIHUB_PHOTOMETRIC_YBR)) {
      out.reason = "not a colour (RGB or YBR) image";
      return out;
    }
    if (!(g.pixel_spacing[0] > 0 && g.pixel_spacing[1] > 0)) {
      out.reason = "pixel spacing is missing (PixelMeasuresSequence)";
      return out;
    }
    const double um = g.pixel_spacing[1] * 1000;
    if (std::fabs(g.pixel_spacing[0] / g.pixel_spacing[1] - 1) > 0.01 || std::fabs(um / model_spacing_um_ - 1) > 0.2) {
      out.reason = "pixel spacing " + FormatNumber(g.pixel_spacing[0] * 1000, "%.3f") + " x " +
                   FormatNumber(um, "%.3f") + " um is outside the model's " + FormatNumber(model_spacing_um_, "%.2f") +
                   " um +-20% (a 40x scan)";
      return out;
    }
    out.spacing_mm = g.pixel_spacing[1];
    uint64_t total_columns = 0, total_rows = 0;
    if (!ParseCount(job.series_tag(s, kTagTotalPixelMatrixColumns), total_columns) ||
        !ParseCount(job.series_tag(s, kTagTotalPixelMatrixRows), total_rows)) {
      out.reason = "TotalPixelMatrixColumns/Rows are missing";
      return out;
    }
    // The tags describe the series' first instance; further instances (lower pyramid levels, label, overview)
    // follow it in the sorted frames and are not read.
    const std::string first_uid = g.sop_instance_uid ? g.sop_instance_uid : "";
    uint32_t instance_frames = 0;
    for (uint32_t k = 0; k < frames; ++k) {
      const aihub_frame_geometry f = k == 0 ? g : job.geometry(s, k);
      if ((f.sop_instance_uid ? f.sop_instance_uid : "") != first_uid) break;
      if (f.frame_number != k + 1 || f.rows != g.rows || f.columns != g.columns) {
        out.reason = "frame " + std::to_string(k + 1) + " of the slide is out of order or differs in size";
        return out;
      }
      ++instance_frames;
    }
    out.reason = aihub::ki67::MakeTiledLayout(total_columns, total_rows, g.columns, g.rows, instance_frames, out.layout);
    if (!out.reason.empty()) return out;
    // Where the host (ABI 1.1) places tiles, it must agree with the layout.
    if (g.struct_size >= offsetof(aihub_frame_geometry, total_pixel_row) + sizeof(uint32_t)) {
      for (uint32_t k : {0u, instance_frames - 1}) {
        const aihub_frame_geometry f = job.geometry(s, k);
        if (f.total_pixel_column != 0 &&
            (f.total_pixel_column != out.layout.column_of(k) + 1 || f.total_pixel_row != out.layout.row_of(k) + 1)) {
          out.reason = "inconsistent tile positions: frame " + std::to_string(k + 1) + " is at column " +
                       std::to_string(f.total_pixel_column) + ", row " + std::to_string(f.total_pixel_row) +
                       " for the host, at " + std::to_string(out.layout.column_of(k) + 1) + ", " +
                       std::to_string(out.layout.row_of(k) + 1) + " for TILED_FULL";
          return out;
        }
      }
    }
    return out;
  }

  std::vector<float> Classify(const std::vector<float>& features) {
    const int64_t n = static_cast<int64_t>(features.size() / kFeatureCount);
    if (n == 0) return {};
    torch::NoGradGuard no_grad;
    torch::Tensor x = torch::from_blob(const_cast<float*>(features.data()), {n, kFeatureCount}, torch::kFloat32)
                          .to(model_.runtime.device);
    torch::Tensor p = model_.module.forward({x}).toTensor().to(torch::kCPU).contiguous();
    if (p.dim() != 1 || p.size(0) != n) {
      throw aihub::Error(AIHUB_INTERNAL, "ki67: the model returned " + std::to_string(p.numel()) +
                                             " values for " + std::to_string(n) + " nuclei");
    }
    const float* v = p.data_ptr<float>();
    return std::vector<float>(v, v + n);
  }

  void Analyze(aihub::Job& job, uint32_t series, const Slide& slide) {
    const TiledLayout& layout = slide.layout;
    const uint32_t tiles = layout.tiles();
    std::vector<uint32_t> positive(tiles, 0), negative(tiles, 0);
    std::vector<uint8_t> buffer;  // one tile, reused
    std::vector<float> features;  // pending nuclei, at most kBatch + one tile's worth
    std::vector<uint32_t> owner;  // tile of each pending nucleus
    aihub::ki67::TileDetector detector(detection_);
    model_.runtime.Apply();  // process-wide: another torch plugin may have changed it
    uint64_t detected = 0;
    auto flush = [&] {
      const std::vector<float> p = Classify(features);
      for (size_t i = 0; i < p.size(); ++i) (p[i] >= threshold_ ? positive : negative)[owner[i]] += 1;
      features.clear();
      owner.clear();
    };
    const auto start = std::chrono::steady_clock::now();
    for (uint32_t k = 0; k < tiles; ++k) {
      if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
      try {
        job.read_frame_rgb(series, k, buffer);
      } catch (const aihub::Error& e) {
        throw aihub::Error(e.code(), "ki67: cannot read tile " + std::to_string(k + 1) + " of " +
                                         std::to_string(tiles) + ": " + e.what());
      }
      const uint32_t valid_columns = std::min(layout.tile_columns, layout.total_columns - layout.column_of(k));
      const uint32_t valid_rows = std::min(layout.tile_rows, layout.total_rows - layout.row_of(k));
      const bool last_column = k % layout.across == layout.across - 1, last_row = k / layout.across == layout.down - 1;
      for (const Nucleus& n : detector.Detect(buffer.data(), layout.tile_rows, layout.tile_columns, valid_rows,
                                              valid_columns)) {
        if (!aihub::ki67::CountedInTile(n, last_column, last_row)) continue;
        features.insert(features.end(), n.features.begin(), n.features.end());
        owner.push_back(k);
        ++detected;
      }
      if (owner.size() >= kBatch) flush();
      if (k % 32 == 31) job.progress(0.95 * (k + 1) / tiles);
    }
    flush();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    uint64_t pos = 0, neg = 0;
    for (uint32_t k = 0; k < tiles; ++k) pos += positive[k], neg += negative[k];
    const uint32_t w = aihub::ki67::HotSpotWindowTiles(layout.tile_columns, slide.spacing_mm, layout.across, layout.down);
    const HotSpot hot = aihub::ki67::FindHotSpot(positive, negative, layout.across, layout.down, w);
    Report(job, series, slide, pos, neg, hot);
    job.log(AIHUB_LOG_INFO, "ki67: " + std::to_string(tiles) + " tiles in " + FormatNumber(seconds, "%.2f") + " s (" +
                                FormatNumber(tiles / std::max(seconds, 1e-9), "%.0f") + " tiles/s), " +
                                std::to_string(detected) + " nuclei on " + model_.runtime.device.str());
    job.progress(1.0);
  }

  void Report(const aihub::Job& job, uint32_t series, const Slide& slide, uint64_t pos, uint64_t neg,
              const HotSpot& hot) const {
    const TiledLayout& layout = slide.layout;
    const uint64_t all = pos + neg;
    const double index = all == 0 ? 0 : 100.0 * static_cast<double>(pos) / static_cast<double>(all);
    const double p = index / 100, cut = high_index_percent_ / 100;
    // Confidence that the slide's index is at or above the cut-off: the binomial proportion's normal approximation.
    double confidence = 0;
    if (all > 0) {
      const double se = std::sqrt(std::max(p * (1 - p), 0.25 / static_cast<double>(all)) / static_cast<double>(all));
      confidence = std::clamp(Phi((p - cut) / se), 0.0, 1.0);
    }
    const bool enough = all >= min_nuclei_ && all > 0;
    aihub::Finding f;
    f.code = kHighIndex;
    f.presence = !enough ? AIHUB_PRESENCE_INDETERMINATE
                         : (index >= high_index_percent_ ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT);
    f.confidence = confidence;
    f.urgency = AIHUB_URGENCY_ROUTINE;
    const uint32_t hx = hot.tile_column * layout.tile_columns, hy = hot.tile_row * layout.tile_rows;
    const uint32_t hw = std::min(hot.window_tiles * layout.tile_columns, layout.total_columns - hx);
    const uint32_t hh = std::min(hot.window_tiles * layout.tile_rows, layout.total_rows - hy);
    const double area_mm2 = hw * slide.spacing_mm * hh * slide.spacing_mm;
    const uint32_t center = (hot.tile_row + hot.window_tiles / 2) * layout.across + hot.tile_column + hot.window_tiles / 2;
    const std::string tail = " (reference model " AIHUB_KI67_MODEL_VERSION ", not for clinical use)";
    const std::string counts = std::to_string(pos) + " of " + std::to_string(all) + " nuclei positive";
    const std::string where = "hot spot " + FormatNumber(hot.index_percent) + "% (" + std::to_string(hot.positive) +
                              " of " + std::to_string(hot.positive + hot.negative) + " nuclei) in " +
                              std::to_string(hot.window_tiles) + " x " + std::to_string(hot.window_tiles) + " tiles (" +
                              FormatNumber(area_mm2, "%.3f") + " mm^2) at columns " + std::to_string(hx) + "-" +
                              std::to_string(hx + hw - 1) + ", rows " + std::to_string(hy) + "-" +
                              std::to_string(hy + hh - 1) + " of the total pixel matrix (0-based)";
    f.text = "Ki-67 index " + FormatNumber(index) + "% (" + counts + "), " + where + "." + tail;
    if (!enough) f.text = "Too few nuclei (" + std::to_string(all) + ", at least " + std::to_string(min_nuclei_) +
                          " needed) for a Ki-67 index; " + f.text;
    if (f.text.size() > 1024) f.text.resize(1024);
    const uint32_t finding = job.add_finding(f);
    job.add_measurement(finding, kIndex, index, "%", "percent");
    job.add_measurement(finding, kHotSpotIndex, hot.index_percent, "%", "percent");
    job.add_measurement(finding, kPositive, static_cast<double>(pos), "{nuclei}", "nuclei");
    job.add_measurement(finding, kNegative, static_cast<double>(neg), "{nuclei}", "nuclei");
    job.add_measurement(finding, kHotSpotNuclei, static_cast<double>(hot.positive + hot.negative), "{nuclei}",
                        "nuclei");
    // The hot-spot window as a rectangle on the slide's total pixel matrix (ABI 1.2, Pixel Origin Interpretation
    // VOLUME in the SR); frame `center` names the image that holds it.
    const float x0 = static_cast<float>(hx), y0 = static_cast<float>(hy);
    const float x1 = static_cast<float>(hx + hw), y1 = static_cast<float>(hy + hh);
    job.add_region(finding, series, center, AIHUB_GRAPHIC_POLYGON, {x0, y0, x1, y0, x1, y1, x0, y1},
                   AIHUB_PIXEL_ORIGIN_VOLUME);
    job.set_summary("Ki-67 model: index " + FormatNumber(index) + "% over the whole slide (" + counts + "); " + where +
                    ". Cut-off for a high index: " + FormatNumber(high_index_percent_) + "%." + tail);
  }

  double threshold_ = 0.5;
  double model_spacing_um_ = 0.25;
  double high_index_percent_ = 20;
  uint64_t min_nuclei_ = 500;
  DetectionParams detection_;
  // Last: its initialiser fills the members above from the model metadata, so they must exist before it.
  aihub_ref::ReferenceModel model_;
};

}  // namespace

AIHUB_PLUGIN(kDescriptor, Ki67Plugin)
