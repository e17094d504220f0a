// A fake aihub host for tests that drive a built plugin .so through the C ABI directly (dlopen, no registry, no
// DICOM files): the opaque aihub_plugin_context and aihub_job, a host table over them, and the library loader.
//
// A test builds an aihub_job from plain data (tags, frame counts, a geometry template per series) plus callbacks
// that serve each series' pixels its own way (a volume in memory, a slide rendered per tile, a cine), runs the
// plugin on it, and asserts on what the fake host captured (findings, measurements, regions, reads, errors).
//
// The result builder and read_frame validate like the real host (host/plugins/host_api.cpp,
// host/dicom/decode.cpp): a call the real host would refuse is refused here with the same status, and the first
// refused builder call is kept in aihub_job::builder_error, which the real host turns into a failed job.
//
// Jobs and contexts are plain values: copy one, change a field, run again. Callbacks are copied with them; keep
// what they capture immutable (e.g. a shared_ptr<const ...>) so copies stay independent.
#pragma once

#include <dlfcn.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "aihub/plugin_api.h"

namespace aihub::testing {

// A mutex that a copy of its owner does not share: a copied job or context gets a fresh one.
struct CopyableMutex {
  CopyableMutex() = default;
  CopyableMutex(const CopyableMutex&) {}
  CopyableMutex& operator=(const CopyableMutex&) { return *this; }
  std::mutex mutex;
};

struct FakeLogLine {
  int32_t level = AIHUB_LOG_INFO;
  std::string message;
};

// What a FakeSeries' geometry starts as: one 16-bit MONOCHROME2 frame (frame number 1) with unknown size, spacing
// and position, an axial orientation, slope 1, intercept 0, no window, no phase (trigger time -1), not tiled.
inline aihub_frame_geometry DefaultGeometry() {
  aihub_frame_geometry g;
  std::memset(&g, 0, sizeof g);
  g.struct_size = sizeof g;
  g.samples_per_pixel = 1;
  g.bits_allocated = g.bits_stored = 16;
  g.photometric = AIHUB_PHOTOMETRIC_MONOCHROME2;
  const double axial[6] = {1, 0, 0, 0, 1, 0};
  std::copy(axial, axial + 6, g.orientation);
  g.rescale_slope = 1;
  g.frame_number = 1;
  g.trigger_time = -1;
  return g;
}

// One series of the fake study view.
struct FakeSeries {
  // Adds per-frame fields (position, frame number, temporal or tile index, ...) to `g`, which holds the series'
  // `geometry` with frame_number 1 and sop_instance_uid set, and struct_size the caller's (at most sizeof). May
  // refuse the call with a status. Optional.
  using GeometryFn = std::function<int32_t(uint32_t frame, aihub_frame_geometry& g)>;
  // Writes one frame into `buffer` in `format`. The host has already checked the indices, that `format` suits
  // `g` (MONOCHROME1/2 for FLOAT32_MODALITY, 8-bit RGB/YBR for RGB8, as the real host) and that the buffer holds
  // g.rows * g.columns pixels. Returns the status read_frame answers (e.g. DATA_LOSS for a corrupt frame).
  // May be called from several plugin threads at once.
  using ReadFn = std::function<int32_t(uint32_t frame, const aihub_frame_geometry& g, int32_t format, void* buffer)>;

  std::map<uint32_t, std::string> tags;  // DICOM tag (group << 16 | element) -> value as DICOM text
  uint32_t frames = 0;                   // what frame_count answers
  aihub_frame_geometry geometry = DefaultGeometry();  // shared by every frame (its struct_size is ignored)
  std::string sop_instance_uid = "1.2.826.0.1.3680043.10.1411.1";  // reported unless `frame_geometry` sets one
  GeometryFn frame_geometry;
  ReadFn read;  // without one, read_frame answers DATA_LOSS

  // TotalPixelMatrixColumns / Rows (0048,0006) / (0048,0007) as numbers; 0 when absent or not a number. A region
  // with pixel origin VOLUME needs both.
  uint32_t TotalPixelMatrix(uint32_t tag) const {
    auto it = tags.find(tag);
    if (it == tags.end()) return 0;
    try {
      const unsigned long v = std::stoul(it->second);
      return v > UINT32_MAX ? 0 : static_cast<uint32_t>(v);
    } catch (const std::exception&) {
      return 0;
    }
  }
};

// A read callback serving FLOAT32_MODALITY frames of rows * columns floats stored one after another in `pixels`
// (frame f at f * rows * columns). A frame beyond the data answers DATA_LOSS.
inline FakeSeries::ReadFn ServeFloatFrames(std::shared_ptr<const std::vector<float>> pixels) {
  return [pixels = std::move(pixels)](uint32_t f, const aihub_frame_geometry& g, int32_t format,
                                      void* buffer) -> int32_t {
    const size_t n = static_cast<size_t>(g.rows) * g.columns;
    if (format != AIHUB_PIXEL_FLOAT32_MODALITY) return AIHUB_FAILED_PRECONDITION;
    if ((static_cast<size_t>(f) + 1) * n > pixels->size()) return AIHUB_DATA_LOSS;
    std::copy_n(pixels->begin() + static_cast<std::ptrdiff_t>(f * n), n, static_cast<float*>(buffer));
    return AIHUB_OK;
  };
}

struct FakeCode {
  std::string value, scheme, meaning;  // all empty for an absent code (a finding without site)
};

struct FakeMeasurement {
  FakeCode code;
  double value = 0;
  std::string unit, unit_meaning;  // UCUM code and its meaning
};

struct FakeRegion {
  uint32_t series = 0, frame = 0;
  int32_t graphic_type = AIHUB_GRAPHIC_POINT;
  int32_t pixel_origin = AIHUB_PIXEL_ORIGIN_FRAME;  // as the host read it: FRAME unless ABI 1.2 said otherwise
  std::vector<float> points;                        // column, row, column, row, ...
};

// A finding as the plugin added it, with what it attached.
struct FakeFinding {
  FakeCode code;
  int32_t presence = 0, urgency = 0, laterality = 0;
  double confidence = 0;
  FakeCode site;
  std::string text;
  std::vector<FakeMeasurement> measurements;  // in the order added
  std::vector<FakeRegion> regions;

  size_t Count(const std::string& code_value) const {
    return static_cast<size_t>(std::count_if(measurements.begin(), measurements.end(),
                                             [&](const FakeMeasurement& m) { return m.code.value == code_value; }));
  }
  // The measurement with that code value; throws std::out_of_range (a failed test case) when there is none.
  const FakeMeasurement& Measurement(const std::string& code_value) const {
    for (const auto& m : measurements) {
      if (m.code.value == code_value) return m;
    }
    throw std::out_of_range("no measurement with code " + code_value);
  }
  double Value(const std::string& code_value) const { return Measurement(code_value).value; }
  const std::string& Unit(const std::string& code_value) const { return Measurement(code_value).unit; }
};

// One read_frame call the host accepted (indices, format and buffer checked), whatever the callback answered.
struct FakeRead {
  uint32_t series = 0, frame = 0;
  int32_t format = AIHUB_PIXEL_FLOAT32_MODALITY;
  const void* buffer = nullptr;
};

}  // namespace aihub::testing

// The opaque handles of plugin_api.h, completed for the fake host (global, as the C header declares them).
struct aihub_plugin_context {
  std::string directory = std::string(AIHUB_BINARY_DIR) + "/plugins";  // what plugin_directory answers
  std::map<std::string, std::string> strings;  // config_string
  std::map<std::string, double> numbers;       // config_number
  std::string json = "{}";                     // config_json
  // What the plugin did.
  std::string error;  // the last context_set_error
  std::vector<aihub::testing::FakeLogLine> log;
  aihub::testing::CopyableMutex lock;  // guards `log` and `error` (the context may be used from any thread)
};

struct aihub_job {
  // The study view. study_tag answers from `study_tags`, else from the first series' tags (the real host reads
  // study tags from the study's first instance).
  std::map<uint32_t, std::string> study_tags;
  std::vector<aihub::testing::FakeSeries> series;
  // The plugin's declared minor ABI version: the host reads aihub_region.pixel_origin only from 1.2 on.
  uint32_t plugin_api_minor = AIHUB_PLUGIN_API_VERSION_MINOR;
  // Cancellation: job_is_cancelled answers 1 when `cancelled` is set or `cancel_after_reads` (if not 0) reads
  // were accepted.
  bool cancelled = false;
  uint32_t cancel_after_reads = 0;

  // What the plugin did.
  std::vector<aihub::testing::FakeRead> reads;  // in call order
  std::vector<double> progress;
  std::vector<aihub::testing::FakeLogLine> log;
  std::string error;          // the last job_set_error
  std::string summary;
  std::string builder_error;  // the first refused add_* / set_summary call: the real host fails such a job
  std::vector<aihub::testing::FakeFinding> findings;
  aihub::testing::CopyableMutex lock;  // guards the fields above (job functions may be called from plugin threads)

  size_t frames_read() const { return reads.size(); }
  // Distinct buffers the plugin passed to read_frame.
  size_t read_buffers() const {
    std::set<const void*> buffers;
    for (const auto& r : reads) buffers.insert(r.buffer);
    return buffers.size();
  }
};

namespace aihub::testing {
namespace fake_host_internal {

// The real host's limits and minimum struct sizes (ABI 1.0 ends of each struct), see host/plugins/host_api.cpp.
constexpr size_t kMaxFindings = 64, kMaxMeasurementsPerFinding = 32, kMaxRegionsPerFinding = 16;
constexpr uint32_t kMaxPointsPerRegion = 4096;
constexpr size_t kMaxTextChars = 1024, kMaxSummaryChars = 4096;
constexpr uint32_t kMinFindingSize = offsetof(aihub_finding, text) + sizeof(const char*);
constexpr uint32_t kMinMeasurementSize = offsetof(aihub_measurement, unit_meaning) + sizeof(const char*);
constexpr uint32_t kMinRegionSize = offsetof(aihub_region, point_count) + sizeof(uint32_t);
constexpr uint32_t kRegionSize12 = offsetof(aihub_region, pixel_origin) + sizeof(int32_t);
constexpr uint32_t kMinGeometrySize = offsetof(aihub_frame_geometry, frame_number) + sizeof(uint32_t);

inline const char* Safe(const char* s) { return s ? s : "(null)"; }

inline int32_t Refuse(aihub_job* job, const std::string& why) {
  std::lock_guard<std::mutex> l(job->lock.mutex);
  if (job->builder_error.empty()) job->builder_error = why;
  return AIHUB_INVALID_ARGUMENT;
}

// At most `max` chars and no control characters (but newlines and tabs where allowed).
inline bool PrintableText(const char* s, size_t max, bool allow_newlines) {
  const size_t n = strnlen(s, max + 1);
  return n <= max && std::all_of(s, s + n, [allow_newlines](char ch) {
           const unsigned char c = static_cast<unsigned char>(ch);
           return c >= 0x20 || (allow_newlines && (c == '\n' || c == '\r' || c == '\t'));
         });
}

inline bool ValidCodeText(const char* s, size_t max) {
  if (s == nullptr || *s == '\0' || !PrintableText(s, max, false)) return false;
  return std::strchr(s, '\\') == nullptr;
}

inline bool ValidCode(const aihub_code& c) {
  return ValidCodeText(c.value, 64) && ValidCodeText(c.scheme, 16) && ValidCodeText(c.meaning, 64);
}

inline FakeCode Copy(const aihub_code& c) { return FakeCode{c.value, c.scheme, c.meaning}; }

inline const FakeSeries* SeriesAt(aihub_job* job, uint32_t index) {
  return job != nullptr && index < job->series.size() ? &job->series[index] : nullptr;
}

// The whole geometry of one frame (struct_size = min(requested, sizeof)), or a status.
inline int32_t Geometry(const FakeSeries& s, uint32_t frame, uint32_t requested_size, aihub_frame_geometry* out) {
  if (frame >= s.frames) return AIHUB_INVALID_ARGUMENT;
  aihub_frame_geometry g = s.geometry;
  g.struct_size = static_cast<uint32_t>(std::min<size_t>(requested_size, sizeof g));
  g.sop_instance_uid = s.sop_instance_uid.c_str();
  if (s.frame_geometry) {
    if (int32_t status = s.frame_geometry(frame, g); status != AIHUB_OK) return status;
  }
  *out = g;
  return AIHUB_OK;
}

inline int32_t FrameGeometry(aihub_job* job, uint32_t series_index, uint32_t frame, aihub_frame_geometry* out) {
  const FakeSeries* s = SeriesAt(job, series_index);
  if (s == nullptr || out == nullptr || frame >= s->frames) return AIHUB_INVALID_ARGUMENT;
  if (out->struct_size < kMinGeometrySize) return AIHUB_INVALID_ARGUMENT;
  aihub_frame_geometry g;
  if (int32_t status = Geometry(*s, frame, out->struct_size, &g); status != AIHUB_OK) return status;
  std::memcpy(out, &g, g.struct_size);  // only the fields that fit the caller's struct (1.0 plugins: no 1.1 fields)
  return AIHUB_OK;
}

inline int32_t ReadFrame(aihub_job* job, uint32_t series_index, uint32_t frame, int32_t format, void* buffer,
                         uint64_t buffer_size) {
  const FakeSeries* s = SeriesAt(job, series_index);
  if (s == nullptr || buffer == nullptr || frame >= s->frames) return AIHUB_INVALID_ARGUMENT;
  if (format != AIHUB_PIXEL_FLOAT32_MODALITY && format != AIHUB_PIXEL_RGB8) return AIHUB_INVALID_ARGUMENT;
  aihub_frame_geometry g;
  if (int32_t status = Geometry(*s, frame, sizeof g, &g); status != AIHUB_OK) return status;
  const uint64_t pixels = uint64_t{g.rows} * g.columns;
  uint64_t needed = 0;
  if (format == AIHUB_PIXEL_FLOAT32_MODALITY) {
    if (g.samples_per_pixel != 1 ||
        (g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME1 && g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME2)) {
      return AIHUB_FAILED_PRECONDITION;
    }
    needed = pixels * sizeof(float);
  } else {
    if (g.samples_per_pixel != 3 || g.bits_allocated != 8 ||
        (g.photometric != AIHUB_PHOTOMETRIC_RGB && g.photometric != AIHUB_PHOTOMETRIC_YBR)) {
      return AIHUB_FAILED_PRECONDITION;
    }
    needed = pixels * 3;
  }
  if (buffer_size < needed) return AIHUB_INVALID_ARGUMENT;
  {
    std::lock_guard<std::mutex> l(job->lock.mutex);
    job->reads.push_back(FakeRead{series_index, frame, format, buffer});
  }
  return s->read ? s->read(frame, g, format, buffer) : AIHUB_DATA_LOSS;
}

// Appends `item` to `list` of finding `index` under the job's lock, or refuses it (no such finding, or `limit`
// items already there) naming the call `what`.
template <typename T>
int32_t Attach(aihub_job* job, uint32_t index, std::vector<T> FakeFinding::*list, size_t limit, T item,
               const char* what) {
  std::string refused;
  {
    std::lock_guard<std::mutex> l(job->lock.mutex);
    if (index >= job->findings.size()) {
      refused = std::string(what) + ": no such finding";
    } else if ((job->findings[index].*list).size() >= limit) {
      refused = std::string(what) + ": more than " + std::to_string(limit) + " on one finding";
    } else {
      (job->findings[index].*list).push_back(std::move(item));
      return AIHUB_OK;
    }
  }
  return Refuse(job, refused);
}

inline int32_t AddFinding(aihub_job* job, const aihub_finding* f, uint32_t* out_index) {
  if (job == nullptr) return AIHUB_INVALID_ARGUMENT;
  if (f == nullptr) return Refuse(job, "add_finding: finding is NULL");
  if (f->struct_size < kMinFindingSize) return Refuse(job, "add_finding: struct_size too small");
  if (!ValidCode(f->code)) return Refuse(job, "add_finding: finding code needs value, scheme and meaning");
  // Each enum field runs from 0 to its last defined value.
  struct EnumField {
    const char* name;
    int32_t value, last;
  };
  for (const EnumField& e : {EnumField{"presence", f->presence, AIHUB_PRESENCE_INDETERMINATE},
                             EnumField{"urgency", f->urgency, AIHUB_URGENCY_CRITICAL},
                             EnumField{"laterality", f->laterality, AIHUB_LATERALITY_BILATERAL}}) {
    if (e.value < 0 || e.value > e.last) {
      return Refuse(job, std::string("add_finding: unknown ") + e.name + " " + std::to_string(e.value));
    }
  }
  if (!std::isfinite(f->confidence) || f->confidence < 0 || f->confidence > 1) {
    return Refuse(job, "add_finding: confidence must be a finite number in [0, 1]");
  }
  if (f->site != nullptr && !ValidCode(*f->site)) return Refuse(job, "add_finding: site needs value, scheme, meaning");
  if (f->text != nullptr && !PrintableText(f->text, kMaxTextChars, true)) {
    return Refuse(job, "add_finding: text longer than 1024 chars or with control characters");
  }
  FakeFinding out;
  out.code = Copy(f->code);
  out.presence = f->presence;
  out.urgency = f->urgency;
  out.laterality = f->laterality;
  out.confidence = f->confidence;
  if (f->site != nullptr) out.site = Copy(*f->site);
  if (f->text != nullptr) out.text = f->text;
  {
    std::lock_guard<std::mutex> l(job->lock.mutex);
    if (job->findings.size() < kMaxFindings) {
      job->findings.push_back(std::move(out));
      if (out_index) *out_index = static_cast<uint32_t>(job->findings.size() - 1);
      return AIHUB_OK;
    }
  }
  return Refuse(job, "add_finding: more than 64 findings");
}

inline int32_t AddMeasurement(aihub_job* job, uint32_t finding_index, const aihub_measurement* m) {
  if (job == nullptr) return AIHUB_INVALID_ARGUMENT;
  if (m == nullptr) return Refuse(job, "add_measurement: measurement is NULL");
  if (m->struct_size < kMinMeasurementSize) return Refuse(job, "add_measurement: struct_size too small");
  if (!ValidCode(m->code)) return Refuse(job, "add_measurement: measurement code needs value, scheme and meaning");
  if (!std::isfinite(m->value)) return Refuse(job, "add_measurement: value must be finite");
  if (!ValidCodeText(m->unit_ucum, 16) || !ValidCodeText(m->unit_meaning, 64)) {
    return Refuse(job, "add_measurement: unit_ucum (<=16 chars) and unit_meaning (<=64) are required");
  }
  return Attach(job, finding_index, &FakeFinding::measurements, kMaxMeasurementsPerFinding,
                FakeMeasurement{Copy(m->code), m->value, m->unit_ucum, m->unit_meaning}, "add_measurement");
}

inline int32_t AddRegion(aihub_job* job, uint32_t finding_index, const aihub_region* r) {
  if (job == nullptr) return AIHUB_INVALID_ARGUMENT;
  if (r == nullptr) return Refuse(job, "add_region: region is NULL");
  if (r->struct_size < kMinRegionSize) return Refuse(job, "add_region: struct_size too small");
  const FakeSeries* s = SeriesAt(job, r->series_index);
  if (s == nullptr) return Refuse(job, "add_region: no such series " + std::to_string(r->series_index));
  if (r->frame_index >= s->frames) return Refuse(job, "add_region: no such frame");
  const uint32_t n = r->point_count;
  if (n == 0 || n > kMaxPointsPerRegion || r->points == nullptr) return Refuse(job, "add_region: 1..4096 points");
  // Points each graphic type takes, as (fewest, most), indexed by aihub_graphic_type.
  static constexpr uint32_t kPoints[][2] = {{1, 1}, {2, kMaxPointsPerRegion}, {3, kMaxPointsPerRegion}, {4, 4}};
  if (r->graphic_type < AIHUB_GRAPHIC_POINT || r->graphic_type > AIHUB_GRAPHIC_ELLIPSE) {
    return Refuse(job, "add_region: unknown graphic type " + std::to_string(r->graphic_type));
  }
  const uint32_t* range = kPoints[r->graphic_type];
  if (n < range[0] || n > range[1]) return Refuse(job, "add_region: wrong point count for graphic type");
  // 1.2 put pixel_origin into what was tail padding: read only from 1.2 plugins that passed a struct holding it.
  int32_t origin = AIHUB_PIXEL_ORIGIN_FRAME;
  if (job->plugin_api_minor >= 2 && r->struct_size >= kRegionSize12) origin = r->pixel_origin;
  if (origin != AIHUB_PIXEL_ORIGIN_FRAME && origin != AIHUB_PIXEL_ORIGIN_VOLUME) {
    return Refuse(job, "add_region: unknown pixel origin " + std::to_string(origin));
  }
  float columns = 0, rows = 0;
  if (origin == AIHUB_PIXEL_ORIGIN_VOLUME) {
    columns = static_cast<float>(s->TotalPixelMatrix(0x00480006));
    rows = static_cast<float>(s->TotalPixelMatrix(0x00480007));
    if (columns == 0 || rows == 0) return Refuse(job, "add_region: pixel origin VOLUME needs a total pixel matrix");
  } else {
    aihub_frame_geometry g;
    if (Geometry(*s, r->frame_index, sizeof g, &g) != AIHUB_OK) return Refuse(job, "add_region: no frame geometry");
    columns = static_cast<float>(g.columns);
    rows = static_cast<float>(g.rows);
  }
  FakeRegion out{r->series_index, r->frame_index, r->graphic_type, origin,
                 std::vector<float>(r->points, r->points + 2 * static_cast<size_t>(n))};
  for (size_t i = 0; i < out.points.size(); i += 2) {
    const float x = out.points[i], y = out.points[i + 1];
    if (!std::isfinite(x) || !std::isfinite(y) || x < 0 || y < 0 || x > columns || y > rows) {
      return Refuse(job, origin == AIHUB_PIXEL_ORIGIN_VOLUME ? "add_region: point outside the total pixel matrix"
                                                             : "add_region: point outside the frame");
    }
  }
  return Attach(job, finding_index, &FakeFinding::regions, kMaxRegionsPerFinding, std::move(out), "add_region");
}

}  // namespace fake_host_internal

// The host table over the fake context and job, at this header's ABI version.
inline aihub_host_api FakeHostApi() {
  namespace in = fake_host_internal;
  aihub_host_api h{};
  h.struct_size = sizeof h;
  h.api_version_major = AIHUB_PLUGIN_API_VERSION_MAJOR;
  h.api_version_minor = AIHUB_PLUGIN_API_VERSION_MINOR;
  h.log = [](aihub_plugin_context* c, int32_t level, const char* message) {
    std::lock_guard<std::mutex> l(c->lock.mutex);
    c->log.push_back(FakeLogLine{level, in::Safe(message)});
  };
  h.config_json = [](aihub_plugin_context* c) { return c->json.c_str(); };
  h.config_string = [](aihub_plugin_context* c, const char* key) -> const char* {
    auto it = key ? c->strings.find(key) : c->strings.end();
    return it == c->strings.end() ? nullptr : it->second.c_str();
  };
  h.config_number = [](aihub_plugin_context* c, const char* key, double fallback) {
    auto it = key ? c->numbers.find(key) : c->numbers.end();
    return it == c->numbers.end() ? fallback : it->second;
  };
  h.context_set_error = [](aihub_plugin_context* c, const char* message) {
    std::lock_guard<std::mutex> l(c->lock.mutex);
    c->error = in::Safe(message);
  };
  h.job_log = [](aihub_job* j, int32_t level, const char* message) {
    std::lock_guard<std::mutex> l(j->lock.mutex);
    j->log.push_back(FakeLogLine{level, in::Safe(message)});
  };
  h.job_set_error = [](aihub_job* j, const char* message) {
    std::lock_guard<std::mutex> l(j->lock.mutex);
    j->error = in::Safe(message);
  };
  h.job_is_cancelled = [](aihub_job* j) -> int32_t {
    std::lock_guard<std::mutex> l(j->lock.mutex);
    return j->cancelled || (j->cancel_after_reads != 0 && j->reads.size() >= j->cancel_after_reads) ? 1 : 0;
  };
  h.job_progress = [](aihub_job* j, double fraction) {
    std::lock_guard<std::mutex> l(j->lock.mutex);
    j->progress.push_back(fraction);
  };
  h.study_tag = [](aihub_job* j, uint32_t tag) -> const char* {
    if (auto it = j->study_tags.find(tag); it != j->study_tags.end()) return it->second.c_str();
    if (j->series.empty()) return nullptr;
    auto it = j->series[0].tags.find(tag);
    return it == j->series[0].tags.end() ? nullptr : it->second.c_str();
  };
  h.series_count = [](aihub_job* j) { return static_cast<uint32_t>(j->series.size()); };
  h.series_tag = [](aihub_job* j, uint32_t s, uint32_t tag) -> const char* {
    const FakeSeries* series = in::SeriesAt(j, s);
    if (series == nullptr) return nullptr;
    auto it = series->tags.find(tag);
    return it == series->tags.end() ? nullptr : it->second.c_str();
  };
  h.frame_count = [](aihub_job* j, uint32_t s) -> uint32_t {
    const FakeSeries* series = in::SeriesAt(j, s);
    return series ? series->frames : 0;
  };
  h.frame_geometry = in::FrameGeometry;
  h.read_frame = in::ReadFrame;
  h.add_finding = in::AddFinding;
  h.add_measurement = in::AddMeasurement;
  h.add_region = in::AddRegion;
  h.set_summary = [](aihub_job* j, const char* text) -> int32_t {
    if (text == nullptr || !in::PrintableText(text, in::kMaxSummaryChars, true)) {
      return in::Refuse(j, "set_summary: text missing, longer than 4096 chars or with control characters");
    }
    std::lock_guard<std::mutex> l(j->lock.mutex);
    j->summary = text;
    return AIHUB_OK;
  };
  h.plugin_directory = [](aihub_plugin_context* c) { return c->directory.c_str(); };
  return h;
}

// The folder the build puts plugins in (build/plugins).
inline std::string BuiltPluginDir() { return std::string(AIHUB_BINARY_DIR) + "/plugins"; }

// A plugin .so from the build's plugins folder (e.g. "ki67.so"), opened with dlopen; the five entry points are
// REQUIREd. dlclose in the destructor: destroy every instance first.
class PluginLibrary {
 public:
  explicit PluginLibrary(const std::string& file_name) {
    const std::string path = BuiltPluginDir() + "/" + file_name;
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    REQUIRE_MESSAGE(handle_ != nullptr, dlerror());
    describe = Resolve<aihub_plugin_describe_fn>(AIHUB_PLUGIN_DESCRIBE_SYMBOL);
    create = Resolve<aihub_plugin_create_fn>(AIHUB_PLUGIN_CREATE_SYMBOL);
    execute = Resolve<aihub_plugin_execute_fn>(AIHUB_PLUGIN_EXECUTE_SYMBOL);
    destroy = Resolve<aihub_plugin_destroy_fn>(AIHUB_PLUGIN_DESTROY_SYMBOL);
    self_test = Resolve<aihub_plugin_self_test_fn>(AIHUB_PLUGIN_SELF_TEST_SYMBOL);
  }
  ~PluginLibrary() {
    if (handle_) dlclose(handle_);
  }
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  aihub_plugin_describe_fn describe = nullptr;
  aihub_plugin_create_fn create = nullptr;
  aihub_plugin_execute_fn execute = nullptr;
  aihub_plugin_destroy_fn destroy = nullptr;
  aihub_plugin_self_test_fn self_test = nullptr;

 private:
  template <typename Fn>
  Fn Resolve(const char* symbol) {
    void* address = dlsym(handle_, symbol);
    REQUIRE_MESSAGE(address != nullptr, "missing entry point " << symbol);
    return reinterpret_cast<Fn>(address);
  }

  void* handle_ = nullptr;
};

// One instance created (REQUIRE OK) over the fake host with `ctx`'s config, destroyed with the object. The host
// table and context live here, at fixed addresses, as long as the instance.
struct PluginInstance {
  PluginLibrary& library;
  const aihub_host_api host = FakeHostApi();
  aihub_plugin_context ctx;
  aihub_plugin_instance* instance = nullptr;

  explicit PluginInstance(PluginLibrary& lib, aihub_plugin_context config = {}) : library(lib), ctx(config) {
    REQUIRE_MESSAGE(library.create(&host, &ctx, &instance) == AIHUB_OK, ctx.error);
  }
  ~PluginInstance() {
    if (instance) library.destroy(instance);
  }
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  int32_t Execute(aihub_job& job) { return library.execute(instance, &job); }
  int32_t SelfTest() { return library.self_test(instance); }
};

}  // namespace aihub::testing
