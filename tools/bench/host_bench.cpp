// aihub-bench-host: host-core benchmarks. Every figure is a ratio against a baseline measured in the same
// process on the same data, reported as medians over repeated runs. Not a pass/fail test.
//
//   aihub-bench-host decode   [--slices 300] [--size 512] [--reps 5]
//       (a) pixel decode: aihub's scan + ReadFrame(FLOAT32_MODALITY) of every slice against DCMTK's own
//           DcmFileFormat::loadFile + PixelData access of the same files.
//   aihub-bench-host overhead --plugins DIR [--slices 300] [--size 512] [--work-ms 2000] [--reps 5]
//       (b) host overhead: wall time of the whole analyze path (scan, route, job store, claim, execute, compose
//           SR/FHIR/ORU, store, deliver files) divided by the plugin's own execute time; the fixed-work plugin
//           spends a fixed CPU time.
//   aihub-bench-host reload   --plugins DIR [--swaps 20] [--work-ms 5] [--studies 400]
//       (c) hot reload while studies stream through the job runner and the job store on 2 workers: time from
//           the rename of a new version into plugin_dir to the registry serving it (inotify watcher), and jobs
//           lost, counted in the store (routed studies without a succeeded job), plus results whose version
//           differs from the version their job was routed to.
//   aihub-bench-host latency  --plugins DIR [--studies 10] [--only id,id,...] [--devices cpu,cuda]
//       (d) per reference plugin in DIR (build/plugins: hyperdensity, ich, pe, pneumothorax, ki67,
//           ejection_fraction), on --studies phantom studies of its kind made before timing: the plugin's execute
//           time (inference, p50 and p95) and the host overhead ratio, the whole path per study (scan, route, job
//           store, claim, execute, compose SR/FHIR/ORU, store, deliver files) over execute. The plugin is loaded
//           once, as a running host has it; one warm-up study runs first and is reported apart. The libtorch
//           plugins run once per device (plugin config `device:`), CPU beside GPU; on a machine without CUDA
//           the cuda row says the plugin refused the device.
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/oflog/oflog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "compose/result_json.h"
#include "config/site_config.h"
#include "core/analyze.h"
#include "core/folder_sink.h"
#include "core/host.h"
#include "dicom/study.h"
#include "phantom/cardiac_cine.h"
#include "phantom/chest_xray.h"
#include "phantom/ctpa.h"
#include "phantom/head_ct.h"
#include "phantom/wsi_ki67.h"
#include "plugins/registry.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

std::map<std::string, std::string> Options(int argc, char** argv) {
  std::map<std::string, std::string> o;
  for (int i = 2; i + 1 < argc; i += 2) o[std::string(argv[i]).substr(2)] = argv[i + 1];
  return o;
}

int Int(const std::map<std::string, std::string>& o, const std::string& k, int fallback) {
  auto it = o.find(k);
  return it == o.end() ? fallback : std::stoi(it->second);
}

fs::path TempDir(const std::string& tag) {
  fs::path p = fs::temp_directory_path() / ("aihub-bench-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Writes the benchmark CT and returns the folder holding its slices.
fs::path MakeCt(const fs::path& root, int slices, int size) {
  aihub::phantom::HeadCtOptions o;
  o.seed = 424242;
  o.slices = static_cast<uint32_t>(slices);
  o.size = static_cast<uint32_t>(size);
  o.hemorrhage = aihub::phantom::HemorrhageType::kIntraparenchymal;
  auto truth = aihub::phantom::WriteHeadCt(o, root);
  if (!truth.ok()) {
    std::fprintf(stderr, "phantom: %s\n", truth.status().ToString().c_str());
    std::exit(2);
  }
  fs::remove(root / truth->folder / "truth.json");
  return root / truth->folder;
}

int Decode(const std::map<std::string, std::string>& o) {
  const int slices = Int(o, "slices", 300), size = Int(o, "size", 512), reps = Int(o, "reps", 5);
  const fs::path root = TempDir("decode");
  const fs::path dir = MakeCt(root, slices, size);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  aihub::dicom::RegisterCodecs();

  std::vector<double> dcmtk_s, aihub_s;
  double checksum_dcmtk = 0, checksum_aihub = 0;
  for (int r = 0; r < reps; ++r) {
    // Baseline: DCMTK loads each file fully and hands out the pixel array.
    auto t0 = Clock::now();
    for (const fs::path& f : files) {
      DcmFileFormat ff;
      if (ff.loadFile(f.c_str()).bad()) return 2;
      const Uint16* px = nullptr;
      unsigned long n = 0;
      if (ff.getDataset()->findAndGetUint16Array(DCM_PixelData, px, &n).bad() || n == 0) return 2;
      checksum_dcmtk += px[n / 2];
    }
    dcmtk_s.push_back(Seconds(t0));

    // aihub: header scan, grouping and sorting, then every frame decoded to float modality values.
    t0 = Clock::now();
    auto scanned = aihub::dicom::ScanDirectory(dir);
    if (!scanned.ok() || scanned->studies.size() != 1) return 2;
    const aihub::dicom::Series& series = scanned->studies[0].series.at(0);
    std::vector<float> frame(static_cast<size_t>(size) * size);
    for (uint32_t i = 0; i < series.frames.size(); ++i) {
      aihub::Status st = aihub::dicom::ReadFrame(series, i, AIHUB_PIXEL_FLOAT32_MODALITY, frame.data(),
                                                 frame.size() * sizeof(float));
      if (!st.ok()) {
        std::fprintf(stderr, "ReadFrame: %s\n", st.ToString().c_str());
        return 2;
      }
      checksum_aihub += frame[frame.size() / 2];
    }
    aihub_s.push_back(Seconds(t0));
  }
  const double base = slices / Median(dcmtk_s), ours = slices / Median(aihub_s);
  std::printf("decode: %d slices of %dx%d, %d reps (medians)\n", slices, size, size, reps);
  std::printf("  DCMTK DcmFileFormat::loadFile + PixelData : %8.1f slices/s\n", base);
  std::printf("  aihub scan + ReadFrame(FLOAT32_MODALITY)  : %8.1f slices/s\n", ours);
  std::printf("  ratio aihub / DCMTK                       : %8.2f\n", ours / base);
  std::printf("  (checksums %.0f %.0f)\n", checksum_dcmtk, checksum_aihub);
  fs::remove_all(root);
  return 0;
}

aihub::config::SiteConfig BenchConfig(const fs::path& root, const fs::path& plugin_dir, int work_ms) {
  const std::string text = "state_dir: ./var\nplugin_dir: " + plugin_dir.string() +
                           "\nplugins:\n  - id: fixed-work\n    modes: {default: integrated}\n"
                           "    config: {work_ms: " + std::to_string(work_ms) + "}\n";
  auto c = aihub::config::ParseSiteConfig(text, root, "bench.yaml");
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
    std::exit(2);
  }
  return *c;
}

fs::path PluginDirWith(const fs::path& root, const fs::path& test_plugins, const std::string& name) {
  const fs::path dir = root / "plugins";
  fs::create_directories(dir);
  fs::copy_file(test_plugins / (name + ".so"), dir / "fixed_work.so", fs::copy_options::overwrite_existing);
  return dir;
}

int Overhead(const std::map<std::string, std::string>& o) {
  const int slices = Int(o, "slices", 300), size = Int(o, "size", 512), reps = Int(o, "reps", 5);
  const int work_ms = Int(o, "work-ms", 2000);
  const fs::path root = TempDir("overhead");
  const fs::path input = MakeCt(root / "input", slices, size);
  const fs::path plugin_dir = PluginDirWith(root, o.at("plugins"), "fixed_work_v1");

  std::vector<double> wall, exec, ratio;
  for (int r = 0; r < reps; ++r) {
    const fs::path run = root / ("run" + std::to_string(r));  // fresh state: every rep does the full path
    fs::create_directories(run);
    const auto t0 = Clock::now();
    auto host = aihub::core::Host::Open(BenchConfig(run, plugin_dir, work_ms),
                                        aihub::core::FilePlanner(run / "output"));
    if (!host.ok()) return 2;
    auto scanned = aihub::dicom::ScanDirectory(input);
    if (!scanned.ok()) return 2;
    auto study = std::make_shared<const aihub::dicom::Study>(std::move(scanned->studies.at(0)));
    (*host)->catalog().Add(study);
    if (!(*host)->runner().Submit(*study, {}, input.string()).ok()) return 2;
    auto outcome = (*host)->runner().RunNext();
    if (!outcome.ok() || !outcome->has_value() || !(**outcome).status.ok()) return 2;
    if (!aihub::core::DrainFileOutbox((*host)->store()).ok()) return 2;
    const double w = Seconds(t0);
    wall.push_back(w);
    exec.push_back((**outcome).execute_seconds);
    ratio.push_back(w / (**outcome).execute_seconds);
  }
  std::printf("host overhead: %d-slice %dx%d CT, fixed-work plugin (%d ms of CPU), %d reps (medians)\n", slices,
              size, size, work_ms, reps);
  std::printf("  whole analyze path : %8.3f s\n", Median(wall));
  std::printf("  plugin execute     : %8.3f s\n", Median(exec));
  std::printf("  host overhead      : %8.3f s (%.1f%% of execute)\n", Median(wall) - Median(exec),
              100 * (Median(wall) - Median(exec)) / Median(exec));
  std::printf("  ratio wall/execute : %8.3f\n", Median(ratio));
  fs::remove_all(root);
  return 0;
}

int Reload(const std::map<std::string, std::string>& o) {
  const int swaps = Int(o, "swaps", 20), work_ms = Int(o, "work-ms", 5), studies = Int(o, "studies", 400);
  const fs::path test_plugins = o.at("plugins");
  const fs::path root = TempDir("reload");
  const fs::path plugin_dir = PluginDirWith(root, test_plugins, "fixed_work_v1");
  aihub::config::SiteConfig config = BenchConfig(root, plugin_dir, work_ms);
  config.host.workers = 2;
  // Results are stored but delivered nowhere: this measures routing, jobs and reload, not file writes.
  auto host = aihub::core::Host::Open(config, nullptr);
  if (!host.ok()) return 2;
  aihub::core::Host& h = **host;
  h.registry().StartWatching(std::chrono::milliseconds(60000));  // inotify does the work; the poll is a fallback

  // Studies stream in (tag-only: fixed-work reads no pixels) while two workers run jobs and versions swap.
  std::atomic<bool> fed{false};
  std::thread feeder([&] {
    for (int i = 0; i < studies; ++i) {
      auto study = std::make_shared<aihub::dicom::Study>();
      study->study_instance_uid = "1.2.826.0.1.3680043.10.99." + std::to_string(i + 1);
      study->tags[0x0020000D] = study->study_instance_uid;
      study->tags[0x00080060] = "CT";
      aihub::dicom::Series series;
      series.series_instance_uid = study->study_instance_uid + ".1";
      series.tags = study->tags;
      study->series.push_back(series);
      h.catalog().Add(study);
      if (!h.runner().Submit(*study, {}, "").ok()) std::fprintf(stderr, "submit %d failed\n", i);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    fed = true;
  });
  std::atomic<long> ran{0};
  auto worker = [&] {
    for (;;) {
      auto next = h.runner().RunNext();
      if (!next.ok()) return;
      if (next->has_value()) {
        ++ran;
      } else if (fed) {
        return;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  };
  std::thread a(worker), b(worker);
  std::vector<double> latency_ms;
  for (int i = 0; i < swaps; ++i) {
    const std::string version = i % 2 == 0 ? "2.0.0" : "1.0.0";
    const fs::path src = test_plugins / (i % 2 == 0 ? "fixed_work_v2.so" : "fixed_work_v1.so");
    const fs::path tmp = plugin_dir / ".fixed_work.so.incoming";
    fs::copy_file(src, tmp, fs::copy_options::overwrite_existing);
    const auto t0 = Clock::now();
    fs::rename(tmp, plugin_dir / "fixed_work.so");
    while (h.registry().Get("fixed-work")->info().version != version) {
      if (Seconds(t0) > 30) {
        std::fprintf(stderr, "swap %d never happened\n", i);
        return 2;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    latency_ms.push_back(1000 * Seconds(t0));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  feeder.join();
  a.join();
  b.join();
  h.registry().StopWatching();

  // Count in the store: every routed study must have one succeeded job, run on the version it was routed to.
  auto jobs = h.store().ListJobs();
  if (!jobs.ok()) return 2;
  long succeeded = 0, other = 0, version_mismatch = 0;
  std::map<std::string, long> by_version;
  for (const auto& j : *jobs) {
    if (j.state != aihub::store::JobState::kSucceeded) {
      ++other;
      continue;
    }
    ++succeeded;
    ++by_version[j.plugin_version];
    auto stored = h.store().GetResult(j.id);
    auto result = stored.ok() && stored->has_value()
                      ? aihub::compose::ResultFromJson(nlohmann::json::parse(**stored, nullptr, false))
                      : aihub::StatusOr<aihub::Result>(aihub::Internal("no result"));
    if (!result.ok() || result->algorithm.version != j.plugin_version) ++version_mismatch;
  }
  std::printf("hot reload: %d swaps while %d studies stream through 2 workers (fixed-work, %d ms per job)\n", swaps,
              studies, work_ms);
  std::printf("  rename -> new version serving: median %.2f ms, p95 %.2f ms\n", Median(latency_ms),
              Percentile(latency_ms, 0.95));
  std::printf("  jobs: %zu routed, %ld succeeded, %ld not succeeded, lost %ld (routed studies without a job: %ld)\n",
              jobs->size(), succeeded, other, studies - succeeded, studies - static_cast<long>(jobs->size()));
  std::printf("  by version:");
  for (const auto& [v, n] : by_version) std::printf(" %s=%ld", v.c_str(), n);
  std::printf("; result version != routed version: %ld\n", version_mismatch);
  fs::remove_all(root);
  return (succeeded == studies && version_mismatch == 0) ? 0 : 1;
}

// Writes phantom study `i` of the kind `plugin` reads into `dir`; returns its folder, or "" for an unknown plugin.
// Seeds 91000+ are never used by the training scripts; positives and negatives alternate.
fs::path MakeStudyFor(const std::string& plugin, int i, const fs::path& dir) {
  namespace ph = aihub::phantom;
  const bool positive = i % 2 == 0;
  auto folder = [&](const auto& truth) -> fs::path {
    if (!truth.ok()) {
      std::fprintf(stderr, "phantom for %s: %s\n", plugin.c_str(), truth.status().ToString().c_str());
      std::exit(2);
    }
    fs::remove(dir / truth->folder / "truth.json");  // the hub sees only DICOM
    return dir / truth->folder;
  };
  if (plugin == "ich" || plugin == "hyperdensity") {
    ph::HeadCtOptions o;
    o.seed = 91000 + i;
    o.hemorrhage = positive ? ph::HemorrhageType::kIntraparenchymal : ph::HemorrhageType::kNone;
    return folder(ph::WriteHeadCt(o, dir));
  }
  if (plugin == "pe") {
    ph::CtpaOptions o;
    o.seed = 92000 + i;
    o.embolus = positive;
    return folder(ph::WriteCtpa(o, dir));
  }
  if (plugin == "pneumothorax") {
    ph::ChestXrayOptions o;
    o.seed = 93000 + i;
    o.pneumothorax = positive;
    return folder(ph::WriteChestXray(o, dir));
  }
  if (plugin == "ki67") {
    ph::WsiKi67Options o;
    o.seed = 94000 + i;
    o.jpeg = true;
    return folder(ph::WriteWsiKi67(o, dir));
  }
  if (plugin == "ejection_fraction") {
    ph::CardiacCineOptions o;
    o.seed = 95000 + i;
    o.ef_percent = positive ? 25 : 60;
    return folder(ph::WriteCardiacCine(o, dir));
  }
  return {};
}

// "a,b,,c" -> {a, b, c}.
std::vector<std::string> List(const std::string& text) {
  std::vector<std::string> items;
  for (size_t start = 0; start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) items.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

int LatencyRun(const std::string& id, const std::string& device, const fs::path& root, const fs::path& plugin_dir,
               const std::vector<fs::path>& inputs);

int Latency(const std::map<std::string, std::string>& o) {
  const int studies = std::max(1, Int(o, "studies", 10));
  const std::vector<std::string> plugins =
      List(o.count("only") ? o.at("only") : "hyperdensity,ich,pe,pneumothorax,ki67,ejection_fraction");
  const std::vector<std::string> devices = List(o.count("devices") ? o.at("devices") : "cpu,cuda");
  const fs::path from = o.at("plugins");
  std::printf("latency: per plugin, %d phantom studies after one warm-up, loaded once; medians (p50) and p95\n",
              studies);
  std::printf("  %-18s %-6s %-34s %9s %9s %9s %9s %8s\n", "plugin", "device", "study", "first s", "exec p50",
              "exec p95", "path p50", "ratio");
  int rc = 0;
  for (const std::string& id : plugins) {
    if (!fs::exists(from / (id + ".so"))) {
      std::printf("  %-18s not built (no %s.so in %s)\n", id.c_str(), id.c_str(), from.c_str());
      continue;
    }
    const fs::path root = TempDir("latency-" + id);
    const fs::path plugin_dir = root / "plugins";
    fs::create_directories(plugin_dir);
    if (fs::exists(from / (id + ".pt"))) fs::copy_file(from / (id + ".pt"), plugin_dir / (id + ".pt"));
    fs::copy_file(from / (id + ".so"), plugin_dir / (id + ".so"));
    std::vector<fs::path> inputs;
    for (int i = 0; i <= studies; ++i) inputs.push_back(MakeStudyFor(id, i, root / ("in" + std::to_string(i))));
    // hyperdensity has no model: it runs on the CPU whatever the config says.
    const std::vector<std::string> runs = id == "hyperdensity" ? std::vector<std::string>{"cpu"} : devices;
    for (const std::string& device : runs) {
      const int run_rc = LatencyRun(id, device, root, plugin_dir, inputs);
      if (run_rc == 2) return 2;
      rc = std::max(rc, run_rc);
    }
    fs::remove_all(root);
  }
  std::printf("  (exec: the plugin's execute; path: scan to delivered files; ratio: path / exec per study, median)\n");
  return rc;
}

// One plugin on one device over `inputs` (the first is the warm-up): prints its row; 1 when a study failed, 2 on
// a setup error.
int LatencyRun(const std::string& id, const std::string& device, const fs::path& root, const fs::path& plugin_dir,
               const std::vector<fs::path>& inputs) {
  const fs::path state = root / ("var-" + device);
  const std::string text = "state_dir: " + state.string() + "\nplugin_dir: " + plugin_dir.string() +
                           "\nplugins:\n  - id: " + id + "\n    modes: {default: integrated}\n    config: {device: " +
                           device + "}\n";
  auto config = aihub::config::ParseSiteConfig(text, root, "bench.yaml");
  if (!config.ok()) return 2;
  auto host = aihub::core::Host::Open(*config, aihub::core::FilePlanner(root / ("output-" + device)));
  if (!host.ok()) {
    std::fprintf(stderr, "%s: %s\n", id.c_str(), host.status().ToString().c_str());
    return 2;
  }
  if ((*host)->registry().Get(id) == nullptr) {
    std::printf("  %-18s %-6s not run: the plugin refused `device: %s` (its reason is in the log above)\n",
                id.c_str(), device.c_str(), device.c_str());
    std::fflush(stdout);
    return 0;
  }
  int rc = 0;
  std::vector<double> wall, exec, ratio;
  double first = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto t0 = Clock::now();
    auto scanned = aihub::dicom::ScanDirectory(inputs[i]);
    if (!scanned.ok() || scanned->studies.size() != 1) return 2;
    auto study = std::make_shared<const aihub::dicom::Study>(std::move(scanned->studies[0]));
    (*host)->catalog().Add(study);
    if (!(*host)->runner().Submit(*study, {}, inputs[i].string()).ok()) return 2;
    auto outcome = (*host)->runner().RunNext();
    if (!outcome.ok() || !outcome->has_value() || !(**outcome).status.ok()) {
      std::fprintf(stderr, "%s: study %zu did not succeed: %s\n", id.c_str(), i,
                   !outcome.ok() ? outcome.status().ToString().c_str()
                   : !outcome->has_value() ? "no job routed"
                                           : (**outcome).status.ToString().c_str());
      rc = 1;
      break;
    }
    if (!aihub::core::DrainFileOutbox((*host)->store()).ok()) return 2;
    const double w = Seconds(t0), e = (**outcome).execute_seconds;
    if (i == 0) {
      first = w;
      continue;
    }
    wall.push_back(w);
    exec.push_back(e);
    ratio.push_back(w / e);
  }
  if (!exec.empty()) {
    const std::string kind = inputs[1].filename().string();
    std::printf("  %-18s %-6s %-34s %9.3f %9.3f %9.3f %9.3f %8.3f\n", id.c_str(), device.c_str(),
                kind.substr(0, 34).c_str(), first, Median(exec), Percentile(exec, 0.95), Median(wall),
                Median(ratio));
    std::fflush(stdout);
  }
  host->reset();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  aihub::SetLogLevel(aihub::LogLevel::kWarning);
  const std::string cmd = argc > 1 ? argv[1] : "";
  const auto o = Options(argc, argv);
  if (cmd == "decode") return Decode(o);
  if ((cmd == "overhead" || cmd == "reload" || cmd == "latency") && !o.count("plugins")) {
    std::fprintf(stderr, "--plugins DIR (build/test-plugins; build/plugins for latency) is required\n");
    return 2;
  }
  if (cmd == "overhead") return Overhead(o);
  if (cmd == "reload") return Reload(o);
  if (cmd == "latency") return Latency(o);
  std::fprintf(stderr, "usage: aihub-bench-host decode|overhead|reload|latency [options]\n");
  return 2;
}
