#include "plugins/loaded_plugin.h"

#include <boost/dll/shared_library.hpp>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <vector>

#include <system_error>

#include "common/hash.h"
#include "common/json_text.h"
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

// Copies `src` into the cache under the hash of what was copied: the copy is hashed, not the source, because
// a deploy may overwrite the source while it is read. The copy is fsync'd and renamed into place, so a reader
// never sees a partial file; an existing cache file of that name is trusted only if its content still hashes
// to its name. Returns the cached path; NOT_FOUND when the source cannot be read.
StatusOr<fs::path> CopyToCache(const fs::path& src, const fs::path& cache_dir) {
  static std::atomic<unsigned> counter{0};
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  const fs::path tmp =
      cache_dir / (".incoming-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::copy_file(src, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return NotFound("unreadable: " + ec.message());
  }
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  auto sha = Sha256File(tmp);
  if (!sha.ok()) {
    fs::remove(tmp, ec);
    return NotFound("unreadable: " + sha.status().message());
  }
  const fs::path cached = cache_dir / (*sha + ".so");
  if (fs::exists(cached, ec)) {
    auto existing = Sha256File(cached);
    if (existing.ok() && *existing == *sha) {
      fs::remove(tmp, ec);
      return cached;
    }
    LogWarning("registry", "plugin cache file " + cached.string() + " does not match its hash; replacing it");
  }
  fs::rename(tmp, cached, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return Internal("cannot rename into the plugin cache: " + ec.message());
  }
  return cached;
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

namespace {

// How many LoadedPlugin objects map each cached file (the same content can be loaded twice, e.g. a version
// swapped out and back in while a job still holds the first load): dlclose unmaps only after the last.
std::mutex g_mapped_mutex;
std::map<std::string, int> g_mapped;

void NoteMapped(const fs::path& p) {
  std::lock_guard<std::mutex> lock(g_mapped_mutex);
  ++g_mapped[p.string()];
}

// Returns true when this was the last load of `p`.
bool NoteUnmapped(const fs::path& p) {
  std::lock_guard<std::mutex> lock(g_mapped_mutex);
  auto it = g_mapped.find(p.string());
  if (it == g_mapped.end()) return false;
  if (--it->second > 0) return false;
  g_mapped.erase(it);
  return true;
}

bool IsMappedNow(const fs::path& p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(p.string()) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

LoadedPlugin::~LoadedPlugin() {
  const bool created = instance_ != nullptr;
  if (created && lib_->destroy != nullptr) {
    try {
      lib_->destroy(instance_);
    } catch (...) {
      LogError("registry", "plugin " + info_.id + " threw from destroy");
    }
  }
  instance_ = nullptr;
  if (!lib_->dll.is_loaded()) return;
  lib_->dll.unload();
  // dlclose can silently keep a library mapped (thread_local destructors, unique symbols in linked static
  // libraries); say so, since a hot reload would then not free the old version.
  if (NoteUnmapped(info_.loaded_path) && IsMappedNow(info_.loaded_path)) {
    LogWarning("registry", info_.id + " " + info_.version + " is still mapped after dlclose (thread_local objects "
                           "with destructors or STB_GNU_UNIQUE symbols in the plugin?)");
  } else if (created) {
    LogInfo("registry", "unloaded " + info_.id + " " + info_.version + " (" + info_.so_sha256.substr(0, 12) + ")");
  }
}

StatusOr<LoadedPluginPtr> LoadedPlugin::Load(const LoadOptions& options) {
  const std::string file = options.source.string();
  auto copied = CopyToCache(options.source, options.cache_dir);
  if (!copied.ok()) return Status(copied.status().code(), file + ": " + copied.status().message());
  const fs::path cached = *copied;
  const std::string sha = cached.stem().string();

  if (Status st = ValidateElf(cached); !st.ok()) return Status(st.code(), file + ": " + st.message());

  LoadedPluginPtr plugin(new LoadedPlugin());
  Library& lib = *plugin->lib_;
  try {
    lib.dll.load(cached.string(), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return Status(AIHUB_FAILED_PRECONDITION, file + ": cannot load shared library: " + e.what());
  }
  plugin->info_.loaded_path = cached;
  NoteMapped(cached);

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
  info.so_sha256 = sha;
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
  if (ctx.config.is_object()) {
    for (const auto& [key, value] : ctx.config.items()) {
      if (value.is_structured() || value.is_null()) continue;
      ctx.config_strings[key] = value.is_string() ? value.get<std::string>() : DumpJson(value);
    }
  }

  int32_t rc = AIHUB_UNKNOWN;
  try {
    rc = lib.create(HostApi(), &ctx, &plugin->instance_);
  } catch (const std::exception& e) {
    ctx.error = std::string("exception crossed the C ABI: ") + e.what();
  } catch (...) {
    ctx.error = "exception crossed the C ABI";
  }
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
  const aihub_status_code code =
      (rc > 0 && rc <= AIHUB_UNAUTHENTICATED) ? static_cast<aihub_status_code>(rc) : AIHUB_INTERNAL;
  return Status(code, "self-test of " + info_.id + " " + info_.version + " failed: " +
                          (context_.error.empty() ? StatusCodeName(rc) : context_.error));
}

Status LoadedPlugin::Execute(const JobInput& input, JobOutput* output, const std::atomic<bool>* cancel) {
  aihub_job job;
  job.plugin_id = info_.id;
  job.plugin_api_minor = info_.api_version_minor;
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
    std::string detail = job.error.empty() ? std::string("no reason given") : job.error;
    // A plugin that stops at a refused builder call (the C++ helper throws) reports "add_finding failed";
    // the builder knows why.
    if (!job.builder_error.empty()) detail += " (result builder: " + job.builder_error + ")";
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
