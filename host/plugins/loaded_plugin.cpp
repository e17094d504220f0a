#include "plugins/loaded_plugin.h"

#include <boost/dll/shared_library.hpp>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <vector>

#include <system_error>

#include "common/hash.h"
#include "common/log.h"

namespace aihub::plugins {

namespace fs = std::filesystem;

struct LoadedPlugin::Library {
  boost::dll::shared_library dll;
  aihub_plugin_describe_fn describe = nullptr;
  aihub_plugin_create_fn create = nullptr;
  aihub_plugin_execute_fn execute = nullptr;
  aihub_plugin_destroy_fn destroy = nullptr;
  aihub_plugin_self_test_fn self_test = nullptr;
};

namespace {

// Copies `src` to `dst` through a temporary file and an atomic rename, so a concurrent reader never sees a
// partial copy. An existing `dst` with the same name has the same content (the name is its hash).
Status CopyAtomically(const fs::path& src, const fs::path& dst) {
  std::error_code ec;
  if (fs::exists(dst, ec)) return Status::Ok();
  const fs::path tmp = dst.string() + ".tmp." + std::to_string(::getpid());
  fs::copy_file(src, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) return Internal("cannot copy " + src.string() + " to the plugin cache: " + ec.message());
  int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(tmp, dst, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return Internal("cannot rename into the plugin cache: " + ec.message());
  }
  return Status::Ok();
}

// dlopen maps segments straight from the file: a truncated or corrupt .so (a deploy still being copied) would
// fault (SIGBUS) inside the loader instead of failing. So check the ELF headers first: a 64-bit shared object
// for this machine whose program headers and loadable segments all lie inside the file.
Status ValidateElf(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("unreadable");
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return NotFound("unreadable: " + ec.message());
  Elf64_Ehdr eh{};
  if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
    return FailedPrecondition("cannot load shared library: not an ELF file");
  }
#if defined(__x86_64__)
  constexpr uint16_t kMachine = EM_X86_64;
#elif defined(__aarch64__)
  constexpr uint16_t kMachine = EM_AARCH64;
#else
  constexpr uint16_t kMachine = 0;
#endif
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_type != ET_DYN || (kMachine != 0 && eh.e_machine != kMachine)) {
    return FailedPrecondition("cannot load shared library: not a 64-bit shared object for this machine");
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
      eh.e_phoff + static_cast<uint64_t>(eh.e_phnum) * sizeof(Elf64_Phdr) > size) {
    return FailedPrecondition("cannot load shared library: truncated (program headers past the end of the file)");
  }
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  in.seekg(static_cast<std::streamoff>(eh.e_phoff));
  if (!in.read(reinterpret_cast<char*>(ph.data()), static_cast<std::streamsize>(ph.size() * sizeof(Elf64_Phdr)))) {
    return FailedPrecondition("cannot load shared library: truncated program headers");
  }
  for (const Elf64_Phdr& p : ph) {
    if ((p.p_type == PT_LOAD || p.p_type == PT_DYNAMIC) && p.p_offset + p.p_filesz > size) {
      return FailedPrecondition("cannot load shared library: truncated (a segment ends at byte " +
                                std::to_string(p.p_offset + p.p_filesz) + " of a " + std::to_string(size) +
                                "-byte file)");
    }
  }
  if (eh.e_shoff != 0 && eh.e_shoff + static_cast<uint64_t>(eh.e_shnum) * eh.e_shentsize > size) {
    return FailedPrecondition("cannot load shared library: truncated (section headers past the end of the file)");
  }
  return Status::Ok();
}

template <typename Fn>
Fn Symbol(boost::dll::shared_library& dll, const char* name) {
  if (!dll.has(name)) return nullptr;
  return reinterpret_cast<Fn>(dll.get<void()>(name));
}

std::string Str(const char* s) { return s ? std::string(s) : std::string(); }

}  // namespace

bool ValidPluginId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

LoadedPlugin::LoadedPlugin() : lib_(std::make_unique<Library>()) {}

LoadedPlugin::~LoadedPlugin() {
  if (instance_ == nullptr) return;  // never fully loaded: nothing to announce; lib_ still unmaps
  if (lib_->destroy != nullptr) {
    try {
      lib_->destroy(instance_);
    } catch (...) {
      LogError("registry", "plugin " + info_.id + " threw from destroy");
    }
  }
  instance_ = nullptr;
  // lib_ is destroyed next; its shared_library destructor calls dlclose.
  LogInfo("registry", "unloaded " + info_.id + " " + info_.version + " (" + info_.so_sha256.substr(0, 12) + ")");
}

StatusOr<LoadedPluginPtr> LoadedPlugin::Load(const LoadOptions& options) {
  const std::string file = options.source.string();
  auto sha = Sha256File(options.source);
  if (!sha.ok()) return Status(AIHUB_NOT_FOUND, file + ": unreadable: " + sha.status().message());

  std::error_code ec;
  fs::create_directories(options.cache_dir, ec);
  const fs::path cached = options.cache_dir / (*sha + ".so");
  if (Status st = CopyAtomically(options.source, cached); !st.ok()) return Status(st.code(), file + ": " + st.message());

  if (Status st = ValidateElf(cached); !st.ok()) return Status(st.code(), file + ": " + st.message());

  LoadedPluginPtr plugin(new LoadedPlugin());
  Library& lib = *plugin->lib_;
  try {
    lib.dll.load(cached.string(), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return Status(AIHUB_FAILED_PRECONDITION, file + ": cannot load shared library: " + e.what());
  }

  lib.describe = Symbol<aihub_plugin_describe_fn>(lib.dll, AIHUB_PLUGIN_DESCRIBE_SYMBOL);
  lib.create = Symbol<aihub_plugin_create_fn>(lib.dll, AIHUB_PLUGIN_CREATE_SYMBOL);
  lib.execute = Symbol<aihub_plugin_execute_fn>(lib.dll, AIHUB_PLUGIN_EXECUTE_SYMBOL);
  lib.destroy = Symbol<aihub_plugin_destroy_fn>(lib.dll, AIHUB_PLUGIN_DESTROY_SYMBOL);
  lib.self_test = Symbol<aihub_plugin_self_test_fn>(lib.dll, AIHUB_PLUGIN_SELF_TEST_SYMBOL);
  for (auto [fn, name] : {std::pair<const void*, const char*>{reinterpret_cast<const void*>(lib.describe),
                                                               AIHUB_PLUGIN_DESCRIBE_SYMBOL},
                          {reinterpret_cast<const void*>(lib.create), AIHUB_PLUGIN_CREATE_SYMBOL},
                          {reinterpret_cast<const void*>(lib.execute), AIHUB_PLUGIN_EXECUTE_SYMBOL},
                          {reinterpret_cast<const void*>(lib.destroy), AIHUB_PLUGIN_DESTROY_SYMBOL}}) {
    if (fn == nullptr) {
      return Status(AIHUB_FAILED_PRECONDITION, file + ": missing required entry point " + name);
    }
  }

  const aihub_plugin_descriptor* d = nullptr;
  try {
    d = lib.describe();
  } catch (...) {
    return Status(AIHUB_FAILED_PRECONDITION, file + ": aihub_plugin_describe threw");
  }
  if (d == nullptr) return Status(AIHUB_FAILED_PRECONDITION, file + ": aihub_plugin_describe returned NULL");
  if (d->struct_size < offsetof(aihub_plugin_descriptor, capabilities) + sizeof(uint64_t)) {
    return Status(AIHUB_FAILED_PRECONDITION, file + ": descriptor struct_size " + std::to_string(d->struct_size) +
                                                 " is smaller than ABI 1.0's");
  }
  if (d->api_version_major != AIHUB_PLUGIN_API_VERSION_MAJOR ||
      d->api_version_minor > AIHUB_PLUGIN_API_VERSION_MINOR) {
    return Status(AIHUB_FAILED_PRECONDITION,
                  file + ": plugin ABI " + std::to_string(d->api_version_major) + "." +
                      std::to_string(d->api_version_minor) + " is not compatible with host ABI " +
                      std::to_string(AIHUB_PLUGIN_API_VERSION_MAJOR) + "." +
                      std::to_string(AIHUB_PLUGIN_API_VERSION_MINOR) +
                      " (major must be equal and minor not newer)");
  }
  PluginInfo& info = plugin->info_;
  info.id = Str(d->id);
  if (!ValidPluginId(info.id)) {
    return Status(AIHUB_FAILED_PRECONDITION, file + ": invalid plugin id '" + info.id + "' (want [a-z0-9_-]{1,64})");
  }
  info.name = Str(d->name);
  info.version = Str(d->version);
  info.model_version = Str(d->model_version);
  info.manufacturer = Str(d->manufacturer);
  info.default_rules_yaml = Str(d->default_rules_yaml);
  info.capabilities = d->capabilities;
  info.api_version_major = d->api_version_major;
  info.api_version_minor = d->api_version_minor;
  info.so_sha256 = *sha;
  info.source_path = options.source;
  info.loaded_path = cached;
  if (info.version.empty() || info.model_version.empty()) {
    return Status(AIHUB_FAILED_PRECONDITION, file + ": descriptor needs version and model_version");
  }
  if (info.name.empty()) info.name = info.id;

  aihub_plugin_context& ctx = plugin->context_;
  ctx.plugin_id = info.id;
  ctx.plugin_directory = fs::absolute(options.source).parent_path().lexically_normal().string();
  ctx.config_json = options.config_for ? options.config_for(info.id) : options.config_json;
  try {
    ctx.config = nlohmann::json::parse(ctx.config_json);
  } catch (const std::exception& e) {
    return InvalidArgument(file + ": plugin config is not valid JSON: " + e.what());
  }

  int32_t rc = AIHUB_UNKNOWN;
  try {
    rc = lib.create(HostApi(), &ctx, &plugin->instance_);
  } catch (const std::exception& e) {
    ctx.error = std::string("exception crossed the C ABI: ") + e.what();
  } catch (...) {
    ctx.error = "exception crossed the C ABI";
  }
  ctx.returned.clear();
  if (rc != AIHUB_OK || plugin->instance_ == nullptr) {
    plugin->instance_ = nullptr;
    return Status(rc == AIHUB_OK ? AIHUB_INTERNAL : static_cast<aihub_status_code>(rc),
                  file + ": plugin " + info.id + " failed to create an instance: " +
                      (ctx.error.empty() ? std::string("no reason given") : ctx.error));
  }
  LogInfo("registry", "loaded " + info.id + " " + info.version + " model " + info.model_version + " from " + file +
                          " (sha256 " + info.so_sha256.substr(0, 12) + ")");
  return plugin;
}

bool LoadedPlugin::has_self_test() const { return lib_->self_test != nullptr; }

Status LoadedPlugin::SelfTest() {
  if (lib_->self_test == nullptr) return Status::Ok();
  std::lock_guard<std::mutex> lock(execute_mutex_);
  context_.error.clear();
  int32_t rc = AIHUB_UNKNOWN;
  try {
    rc = lib_->self_test(instance_);
  } catch (...) {
    context_.error = "exception crossed the C ABI";
  }
  if (rc == AIHUB_OK) return Status::Ok();
  return Status(static_cast<aihub_status_code>(rc == AIHUB_OK ? AIHUB_INTERNAL : rc),
                "self-test of " + info_.id + " " + info_.version + " failed: " +
                    (context_.error.empty() ? StatusCodeName(rc) : context_.error));
}

Status LoadedPlugin::Execute(const JobInput& input, JobOutput* output, const std::atomic<bool>* cancel) {
  aihub_job job;
  job.plugin_id = info_.id;
  job.input = &input;
  job.output = output;
  job.cancel = cancel;
  std::unique_lock<std::mutex> lock(execute_mutex_, std::defer_lock);
  if (!(info_.capabilities & AIHUB_CAP_THREAD_SAFE)) lock.lock();
  int32_t rc = AIHUB_UNKNOWN;
  try {
    rc = lib_->execute(instance_, &job);
  } catch (const std::exception& e) {
    rc = AIHUB_INTERNAL;
    job.error = std::string("exception crossed the C ABI: ") + e.what();
  } catch (...) {
    rc = AIHUB_INTERNAL;
    job.error = "exception crossed the C ABI";
  }
  if (rc != AIHUB_OK) {
    const std::string detail = job.error.empty() ? std::string("no reason given") : job.error;
    if (rc < 0 || rc > AIHUB_UNAUTHENTICATED) {
      return Internal(info_.id + " returned an unknown status " + std::to_string(rc) + ": " + detail);
    }
    return Status(static_cast<aihub_status_code>(rc), detail);
  }
  if (!job.builder_error.empty()) {
    return InvalidArgument("plugin wrote an invalid result: " + job.builder_error);
  }
  return Status::Ok();
}

}  // namespace aihub::plugins
