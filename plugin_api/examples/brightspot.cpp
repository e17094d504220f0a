#include <aihub/plugin.hpp>

#include <algorithm>
#include <vector>

namespace {

class BrightSpot {
 public:
  // Load the model here (torch::jit::load, ...). Throw aihub::Error to refuse creation with a reason.
  explicit BrightSpot(aihub::PluginContext& ctx)
      : threshold_hu_(ctx.config_number("threshold_hu", 300)),
        min_fraction_(ctx.config_number("min_fraction", 0.01)) {}

  void execute(aihub::Job& job) {
    if (job.series_count() == 0 || job.frame_count(0) == 0) throw aihub::NotApplicable("no frames");
    const uint32_t mid = job.frame_count(0) / 2;
    const aihub_frame_geometry g = job.geometry(0, mid);
    if (g.samples_per_pixel != 1) throw aihub::NotApplicable("needs a monochrome series");

    std::vector<float> hu;
    job.read_frame(0, mid, hu);  // modality values (HU), decoded on demand
    const double bright = std::count_if(hu.begin(), hu.end(), [&](float v) { return v > threshold_hu_; });
    const double fraction = bright / hu.size();

    aihub::Finding f;
    f.code = {"RID5736", "RADLEX", "Hyperdense structure"};
    f.presence = fraction >= min_fraction_ ? AIHUB_PRESENCE_PRESENT : AIHUB_PRESENCE_ABSENT;
    f.confidence = std::min(1.0, fraction / (2 * min_fraction_));
    f.urgency = AIHUB_URGENCY_ROUTINE;
    const uint32_t index = job.add_finding(f);
    job.add_measurement(index, {"RID5736-F", "99LOCAL", "Bright area fraction"}, 100 * fraction, "%", "percent");
    job.add_region(index, 0, mid, AIHUB_GRAPHIC_POINT, {g.columns / 2.0f, g.rows / 2.0f});
  }

  // Optional: the host runs it before a new version goes live; throwing keeps the old version serving.
  void self_test() {}

 private:
  double threshold_hu_;
  double min_fraction_;
};

// Strings must have static storage. Default rules use the site config's rule syntax.
constexpr aihub_plugin_descriptor kDescriptor = aihub::MakeDescriptor(
    "brightspot", "Bright spot finder (example)", "1.0.0", "threshold-1", "Example Hospital AI Lab",
    "{Modality: CT}");

}  // namespace

AIHUB_PLUGIN(kDescriptor, BrightSpot)
