// Header-only C++17 helper for writing aihub plugins against the C ABI in plugin_api.h.
//
//   class MyModel {
//    public:
//     explicit MyModel(aihub::PluginContext& ctx);   // load the model; throw aihub::Error on failure
//     void execute(aihub::Job& job);                 // read frames, add findings; throw on failure
//     void self_test() {}                            // optional (see AIHUB_PLUGIN_SELF_TEST)
//   };
//   static const aihub_plugin_descriptor kDescriptor = aihub::MakeDescriptor("my-model", ...);
//   AIHUB_PLUGIN(kDescriptor, MyModel)
//
// Exceptions never cross the C boundary: aihub::Error keeps its status code, any other std::exception becomes
// AIHUB_INTERNAL with its what(), anything else AIHUB_UNKNOWN; the message goes to the host as error detail.
#ifndef AIHUB_PLUGIN_HPP
#define AIHUB_PLUGIN_HPP

#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "aihub/plugin_api.h"

namespace aihub {

// An error with a status code, thrown by plugin code and turned into a status at the boundary.
class Error : public std::runtime_error {
 public:
  Error(aihub_status_code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  aihub_status_code code() const { return code_; }

 private:
  aihub_status_code code_;
};

// "Not applicable": the study matched the routing rules but does not suit the model.
inline Error NotApplicable(const std::string& why) { return Error(AIHUB_FAILED_PRECONDITION, why); }

inline void ThrowIfError(int32_t status, const char* what) {
  if (status != AIHUB_OK) throw Error(static_cast<aihub_status_code>(status), std::string(what) + " failed");
}

// Instance-level access: configuration and logging.
class PluginContext {
 public:
  PluginContext(const aihub_host_api* host, aihub_plugin_context* ctx) : host_(host), ctx_(ctx) {}

  void log(aihub_log_level level, const std::string& message) const { host_->log(ctx_, level, message.c_str()); }
  void info(const std::string& message) const { log(AIHUB_LOG_INFO, message); }
  void warn(const std::string& message) const { log(AIHUB_LOG_WARNING, message); }

  std::string config_json() const { return host_->config_json(ctx_); }
  std::string config_string(const char* key, const std::string& fallback = "") const {
    const char* v = host_->config_string(ctx_, key);
    return v ? std::string(v) : fallback;
  }
  double config_number(const char* key, double fallback) const { return host_->config_number(ctx_, key, fallback); }
  // Folder of the deployed .so (plugin_dir): where a plugin's model files live.
  std::string plugin_directory() const { return host_->plugin_directory(ctx_); }
  // A config path resolved against plugin_directory() when relative; `fallback` when the key is absent.
  std::string config_path(const char* key, const std::string& fallback) const {
    const std::string p = config_string(key, fallback);
    return (!p.empty() && p[0] == '/') ? p : plugin_directory() + "/" + p;
  }

  const aihub_host_api* host() const { return host_; }
  aihub_plugin_context* raw() const { return ctx_; }

 private:
  const aihub_host_api* host_;
  aihub_plugin_context* ctx_;
};

// A finding to add; the C++ face of aihub_finding.
struct Finding {
  aihub_code code{};
  aihub_presence presence = AIHUB_PRESENCE_ABSENT;
  double confidence = 0;
  aihub_urgency urgency = AIHUB_URGENCY_ROUTINE;
  aihub_laterality laterality = AIHUB_LATERALITY_NONE;
  const aihub_code* site = nullptr;
  std::string text;
};

// One execute call: study access and the result builder.
class Job {
 public:
  Job(const aihub_host_api* host, aihub_job* job) : host_(host), job_(job) {}

  void log(aihub_log_level level, const std::string& message) const { host_->job_log(job_, level, message.c_str()); }
  bool cancelled() const { return host_->job_is_cancelled(job_) != 0; }
  void progress(double fraction) const { host_->job_progress(job_, fraction); }

  // Tag value as text, or `fallback` when absent.
  std::string study_tag(uint32_t tag, const std::string& fallback = "") const {
    const char* v = host_->study_tag(job_, tag);
    return v ? std::string(v) : fallback;
  }
  uint32_t series_count() const { return host_->series_count(job_); }
  std::string series_tag(uint32_t series, uint32_t tag, const std::string& fallback = "") const {
    const char* v = host_->series_tag(job_, series, tag);
    return v ? std::string(v) : fallback;
  }
  uint32_t frame_count(uint32_t series) const { return host_->frame_count(job_, series); }

  aihub_frame_geometry geometry(uint32_t series, uint32_t frame) const {
    aihub_frame_geometry g;
    std::memset(&g, 0, sizeof g);
    g.struct_size = sizeof g;
    ThrowIfError(host_->frame_geometry(job_, series, frame, &g), "frame_geometry");
    return g;
  }

  // Decodes a monochrome frame to modality values (e.g. HU) into `out`, resized to rows * columns.
  void read_frame(uint32_t series, uint32_t frame, std::vector<float>& out) const {
    const aihub_frame_geometry g = geometry(series, frame);
    out.resize(static_cast<size_t>(g.rows) * g.columns);
    check(host_->read_frame(job_, series, frame, AIHUB_PIXEL_FLOAT32_MODALITY, out.data(),
                            out.size() * sizeof(float)),
          "read_frame");
  }
  // Decodes a colour frame to interleaved RGB bytes into `out`, resized to rows * columns * 3.
  void read_frame_rgb(uint32_t series, uint32_t frame, std::vector<uint8_t>& out) const {
    const aihub_frame_geometry g = geometry(series, frame);
    out.resize(static_cast<size_t>(g.rows) * g.columns * 3);
    check(host_->read_frame(job_, series, frame, AIHUB_PIXEL_RGB8, out.data(), out.size()), "read_frame");
  }

  uint32_t add_finding(const Finding& f) const {
    aihub_finding c;
    std::memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    c.code = f.code;
    c.presence = f.presence;
    c.confidence = f.confidence;
    c.urgency = f.urgency;
    c.laterality = f.laterality;
    c.site = f.site;
    c.text = f.text.empty() ? nullptr : f.text.c_str();
    uint32_t index = 0;
    check(host_->add_finding(job_, &c, &index), "add_finding");
    return index;
  }
  void add_measurement(uint32_t finding, aihub_code code, double value, const char* unit_ucum,
                       const char* unit_meaning) const {
    aihub_measurement m;
    std::memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    m.code = code;
    m.value = value;
    m.unit_ucum = unit_ucum;
    m.unit_meaning = unit_meaning;
    check(host_->add_measurement(job_, finding, &m), "add_measurement");
  }
  // `origin` VOLUME: points on the total pixel matrix of the whole-slide image that holds `frame` (ABI 1.2).
  void add_region(uint32_t finding, uint32_t series, uint32_t frame, aihub_graphic_type type,
                  const std::vector<float>& points, aihub_pixel_origin origin = AIHUB_PIXEL_ORIGIN_FRAME) const {
    aihub_region r;
    std::memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.series_index = series;
    r.frame_index = frame;
    r.graphic_type = type;
    r.points = points.data();
    r.point_count = static_cast<uint32_t>(points.size() / 2);
    r.pixel_origin = origin;
    check(host_->add_region(job_, finding, &r), "add_region");
  }
  void set_summary(const std::string& text) const { check(host_->set_summary(job_, text.c_str()), "set_summary"); }

  aihub_job* raw() const { return job_; }

 private:
  void check(int32_t status, const char* what) const { ThrowIfError(status, what); }
  const aihub_host_api* host_;
  aihub_job* job_;
};

namespace detail {

// What a plugin instance looks like to the host: the user's object plus its context, which lives as long as
// the object does (a plugin may keep the PluginContext& its constructor gets, e.g. to log later).
template <typename Impl>
struct Instance {
  const aihub_host_api* host;
  aihub_plugin_context* ctx;
  PluginContext context;
  Impl impl;
  Instance(const aihub_host_api* h, aihub_plugin_context* c) : host(h), ctx(c), context(h, c), impl(context) {}
};

// Runs `fn`, mapping exceptions to a status and reporting their message through `report`.
template <typename Fn, typename Report>
int32_t Guard(Fn&& fn, Report&& report) noexcept {
  try {
    fn();
    return AIHUB_OK;
  } catch (const Error& e) {
    report(e.what());
    return e.code();
  } catch (const std::bad_alloc&) {
    report("out of memory");
    return AIHUB_RESOURCE_EXHAUSTED;
  } catch (const std::exception& e) {
    report(e.what());
    return AIHUB_INTERNAL;
  } catch (...) {
    report("unknown exception");
    return AIHUB_UNKNOWN;
  }
}

template <typename T, typename = void>
struct HasSelfTest : std::false_type {};
template <typename T>
struct HasSelfTest<T, std::void_t<decltype(std::declval<T&>().self_test())>> : std::true_type {};

template <typename Impl>
int32_t Create(const aihub_host_api* host, aihub_plugin_context* ctx, aihub_plugin_instance** out) noexcept {
  if (out == nullptr || host == nullptr) return AIHUB_INVALID_ARGUMENT;
  *out = nullptr;
  if (host->api_version_major != AIHUB_PLUGIN_API_VERSION_MAJOR) return AIHUB_FAILED_PRECONDITION;
  return Guard([&] { *out = reinterpret_cast<aihub_plugin_instance*>(new Instance<Impl>(host, ctx)); },
      [&](const char* m) { host->context_set_error(ctx, m); });
}

template <typename Impl>
int32_t Execute(aihub_plugin_instance* instance, aihub_job* job) noexcept {
  auto* self = reinterpret_cast<Instance<Impl>*>(instance);
  if (self == nullptr) return AIHUB_INVALID_ARGUMENT;
  return Guard(
      [&] {
        Job j(self->host, job);
        self->impl.execute(j);
      },
      [&](const char* m) { self->host->job_set_error(job, m); });
}

template <typename Impl>
void Destroy(aihub_plugin_instance* instance) noexcept {
  try {
    delete reinterpret_cast<Instance<Impl>*>(instance);
  } catch (...) {
  }
}

template <typename Impl>
int32_t SelfTest(aihub_plugin_instance* instance) noexcept {
  auto* self = reinterpret_cast<Instance<Impl>*>(instance);
  if (self == nullptr) return AIHUB_INVALID_ARGUMENT;
  if constexpr (HasSelfTest<Impl>::value) {
    return Guard([&] { self->impl.self_test(); }, [&](const char* m) { self->host->context_set_error(self->ctx, m); });
  } else {
    return AIHUB_OK;
  }
}

}  // namespace detail

// Fills a descriptor with the current API version. Strings must have static storage duration.
constexpr aihub_plugin_descriptor MakeDescriptor(const char* id, const char* name, const char* version,
                                                 const char* model_version, const char* manufacturer,
                                                 const char* default_rules_yaml, uint64_t capabilities = 0) {
  return aihub_plugin_descriptor{sizeof(aihub_plugin_descriptor), AIHUB_PLUGIN_API_VERSION_MAJOR,
                                 AIHUB_PLUGIN_API_VERSION_MINOR,  id, name, version, model_version, manufacturer,
                                 default_rules_yaml, capabilities};
}

}  // namespace aihub

// Emits the C entry points for plugin class `Impl` described by `descriptor` (an aihub_plugin_descriptor
// with static storage). Use once per plugin, at namespace scope in one source file.
#define AIHUB_PLUGIN(descriptor, Impl)                                                                  \
  extern "C" {                                                                                          \
  AIHUB_PLUGIN_EXPORT const aihub_plugin_descriptor* aihub_plugin_describe(void) { return &(descriptor); } \
  AIHUB_PLUGIN_EXPORT int32_t aihub_plugin_create(const aihub_host_api* host, aihub_plugin_context* ctx,  \
                                                  aihub_plugin_instance** out) {                        \
    return ::aihub::detail::Create<Impl>(host, ctx, out);                                               \
  }                                                                                                     \
  AIHUB_PLUGIN_EXPORT int32_t aihub_plugin_execute(aihub_plugin_instance* instance, aihub_job* job) {   \
    return ::aihub::detail::Execute<Impl>(instance, job);                                               \
  }                                                                                                     \
  AIHUB_PLUGIN_EXPORT void aihub_plugin_destroy(aihub_plugin_instance* instance) {                      \
    ::aihub::detail::Destroy<Impl>(instance);                                                           \
  }                                                                                                     \
  AIHUB_PLUGIN_EXPORT int32_t aihub_plugin_self_test(aihub_plugin_instance* instance) {                 \
    return ::aihub::detail::SelfTest<Impl>(instance);                                                   \
  }                                                                                                     \
  }

#endif  // AIHUB_PLUGIN_HPP
