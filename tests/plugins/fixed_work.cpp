// Test plugin "fixed-work": spends a configured time (config `work_ms`, busy-waiting so it is CPU work, not
// a sleep) and then reports one finding whose text names the plugin version. Built several times with
// different versions to test hot reload, pinning and benchmarks. Config `fail_self_test: true` or the
// compile-time FIXED_WORK_FAIL_SELF_TEST makes the self-test fail. Config `echo: model_path` puts the resolved
// config path `model` (relative to plugin_directory) in the finding's text instead of the version.
#include <aihub/plugin.hpp>

#include <chrono>

#ifndef FIXED_WORK_VERSION
#define FIXED_WORK_VERSION "1.0.0"
#endif
#ifndef FIXED_WORK_FAIL_SELF_TEST
#define FIXED_WORK_FAIL_SELF_TEST 0
#endif

namespace {

class FixedWork {
 public:
  explicit FixedWork(aihub::PluginContext& ctx)
      : work_ms_(ctx.config_number("work_ms", 0)),
        fail_self_test_(FIXED_WORK_FAIL_SELF_TEST || ctx.config_string("fail_self_test") == "true"),
        text_(ctx.config_string("echo") == "model_path" ? ctx.config_path("model", "fixed-work.pt")
                                                         : "fixed-work " FIXED_WORK_VERSION) {}

  void execute(aihub::Job& job) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double, std::milli>(work_ms_);
    volatile double sink = 0;
    while (std::chrono::steady_clock::now() < until) {
      for (int i = 0; i < 1000; ++i) sink = sink + i * 0.5;
      if (job.cancelled()) throw aihub::Error(AIHUB_CANCELLED, "cancelled");
    }
    aihub::Finding f;
    f.code = {"FW-1", "99AIHUB", "Fixed work result"};
    f.presence = AIHUB_PRESENCE_PRESENT;
    f.confidence = 0.9;
    f.urgency = AIHUB_URGENCY_CRITICAL;
    f.laterality = AIHUB_LATERALITY_LEFT;
    f.text = text_;
    const uint32_t index = job.add_finding(f);
    job.add_measurement(index, {"FW-MS", "99AIHUB", "Work time"}, work_ms_, "ms", "millisecond");
    job.set_summary("fixed-work " FIXED_WORK_VERSION " on " + std::to_string(job.series_count()) + " series");
  }

  void self_test() {
    if (fail_self_test_) throw aihub::Error(AIHUB_INTERNAL, "self-test failed: reference output mismatch");
  }

 private:
  double work_ms_;
  bool fail_self_test_;
  std::string text_;  // the finding's text: the version, or (config echo: model_path) the resolved model path
};

constexpr aihub_plugin_descriptor kDescriptor =
    aihub::MakeDescriptor("fixed-work", "Fixed work (test plugin)", FIXED_WORK_VERSION, "fw-" FIXED_WORK_VERSION,
                          "aihub tests", "{Modality: CT}", AIHUB_CAP_THREAD_SAFE);

}  // namespace

AIHUB_PLUGIN(kDescriptor, FixedWork)
