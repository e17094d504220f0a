// Loading a reference TorchScript model the same way in every libtorch plugin: the `threads` and `device`
// config keys, the model file check, the model version check, and load errors mapped to statuses the host shows
// to admins.
// Include only from plugin sources that link libtorch.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "aihub/plugin.hpp"
#include "aihub_ref/model_metadata.h"

namespace aihub_ref {

// First line of a (libtorch) error message, at most 300 chars: its backtraces are not for admins.
inline std::string FirstLine(const std::string& s) {
  const std::string line = s.substr(0, s.find('\n'));
  return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

struct TorchRuntime {
  torch::Device device{torch::kCPU};
  int threads = 2;

  // torch::set_num_threads is process-wide: every torch plugin in the host shares one intra-op pool, so each
  // plugin sets its own count again before it runs a model.
  void Apply() const { torch::set_num_threads(threads); }
};

// Reads `threads` (1..256, default 2) and `device` (auto | cpu | cuda; auto picks CUDA when it is available).
// Throws aihub::Error naming `plugin` for a bad value or for cuda without CUDA.
inline TorchRuntime ReadTorchRuntime(const aihub::PluginContext& ctx, const std::string& plugin) {
  TorchRuntime rt;
  const double threads = ctx.config_number("threads", 2);
  if (!(threads >= 1 && threads <= 256)) throw aihub::Error(AIHUB_INVALID_ARGUMENT, plugin + ": threads must be 1..256");
  rt.threads = static_cast<int>(threads);
  const std::string device = ctx.config_string("device", "auto");
  if (device == "cuda" || (device == "auto" && torch::cuda::is_available())) {
    if (!torch::cuda::is_available()) {
      throw aihub::Error(AIHUB_FAILED_PRECONDITION, plugin + ": device 'cuda' configured but CUDA is not available");
    }
    rt.device = torch::Device(torch::kCUDA);
  } else if (device != "cpu" && device != "auto") {
    throw aihub::Error(AIHUB_INVALID_ARGUMENT, plugin + ": device must be auto, cpu or cuda, not '" + device + "'");
  }
  return rt;
}

// Loads the TorchScript file at `path` onto rt.device in eval mode and returns it; `*metadata` gets the text of
// its "aihub_model.json" extra file ("" when absent). A missing file is NOT_FOUND, an unreadable or corrupt one
// FAILED_PRECONDITION, both naming `plugin` and the path, so the host refuses the plugin with that reason.
inline torch::jit::Module LoadTorchScript(const std::string& path, const TorchRuntime& rt, const std::string& plugin,
                                          std::string* metadata) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw aihub::Error(AIHUB_NOT_FOUND, plugin + ": model file not found: " + path);
  }
  torch::jit::ExtraFilesMap extra{{"aihub_model.json", ""}};
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, rt.device, extra);
    module.eval();
  } catch (const c10::Error& e) {
    throw aihub::Error(AIHUB_FAILED_PRECONDITION,
                       plugin + ": cannot load TorchScript model " + path + ": " + FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw aihub::Error(AIHUB_FAILED_PRECONDITION,
                       plugin + ": cannot load TorchScript model " + path + ": " + FirstLine(e.what()));
  }
  *metadata = extra["aihub_model.json"];
  return module;
}

// A plugin instance's model: the module on its device, the runtime settings, the file and its model version.
struct ReferenceModel {
  torch::jit::Module module;
  TorchRuntime runtime;
  std::string path;
  std::string version;
};

// What every libtorch reference plugin does at creation: reads `threads` and `device` (ReadTorchRuntime) and applies
// the thread count; loads the file the `model` config key names (default `default_file` beside the plugin) with
// LoadTorchScript; checks that its metadata's model_version is `expected_version` (the model the plugin was built
// for, FAILED_PRECONDITION otherwise); and hands the metadata to `parse(json)`, which reads the plugin's own
// values and throws std::exception for a bad one (FAILED_PRECONDITION naming the plugin and the file).
template <typename Parse>
ReferenceModel LoadReferenceModel(const aihub::PluginContext& ctx, const std::string& plugin,
                                  const std::string& default_file, const std::string& expected_version,
                                  Parse&& parse) {
  ReferenceModel m;
  m.runtime = ReadTorchRuntime(ctx, plugin);
  m.runtime.Apply();
  m.path = ctx.config_path("model", default_file);
  std::string metadata;
  m.module = LoadTorchScript(m.path, m.runtime, plugin, &metadata);
  m.version = JsonValue(metadata, "model_version");
  if (m.version != expected_version) {
    throw aihub::Error(AIHUB_FAILED_PRECONDITION, plugin + ": model file " + m.path + " is '" + m.version +
                                                      "', this plugin expects '" + expected_version + "'");
  }
  try {
    parse(metadata);
  } catch (const std::exception& e) {
    throw aihub::Error(AIHUB_FAILED_PRECONDITION, plugin + ": " + m.path + ": " + e.what());
  }
  return m;
}

}  // namespace aihub_ref
