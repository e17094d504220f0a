#include "plugins/host_api.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "common/log.h"

namespace aihub::plugins {
namespace {

using Limits = BuilderLimits;

// Minimum struct sizes accepted: the size of each struct in ABI 1.0, frozen as the end of its last 1.0 field
// (not sizeof, which grows when a later minor version appends fields). A plugin built against a later minor
// passes a larger struct; only the 1.0 fields are read. The static_asserts pin the 1.0 layout on LP64.
constexpr uint32_t kMinFindingSize = offsetof(aihub_finding, text) + sizeof(const char*);
constexpr uint32_t kMinMeasurementSize = offsetof(aihub_measurement, unit_meaning) + sizeof(const char*);
constexpr uint32_t kMinRegionSize = offsetof(aihub_region, point_count) + sizeof(uint32_t);
constexpr uint32_t kMinGeometrySize = offsetof(aihub_frame_geometry, frame_number) + sizeof(uint32_t);
static_assert(sizeof(void*) != 8 || kMinFindingSize == 72, "aihub_finding 1.0 layout changed");
static_assert(sizeof(void*) != 8 || kMinMeasurementSize == 56, "aihub_measurement 1.0 layout changed");
static_assert(sizeof(void*) != 8 || kMinRegionSize == 28, "aihub_region 1.0 layout changed");
// aihub_region 1.2 put pixel_origin into what was tail padding: read it only from plugins that declare minor >= 2.
constexpr uint32_t kRegionSize12 = offsetof(aihub_region, pixel_origin) + sizeof(int32_t);
static_assert(sizeof(void*) != 8 || kMinGeometrySize == 188, "aihub_frame_geometry 1.0 layout changed");
static_assert(sizeof(void*) != 8 || offsetof(aihub_frame_geometry, trigger_time) == 192,
              "aihub_frame_geometry 1.1 fields must start after the 1.0 struct");
static_assert(sizeof(void*) != 8 || sizeof(aihub_frame_geometry) == 216, "aihub_frame_geometry 1.1 layout changed");
static_assert(sizeof(void*) != 8 || sizeof(aihub_code) == 24, "aihub_code is frozen");
static_assert(sizeof(void*) != 8 || offsetof(aihub_host_api, plugin_directory) == 16 + 19 * 8,
              "aihub_host_api 1.0 layout changed");

LogLevel ToLogLevel(int32_t level) {
  switch (level) {
    case AIHUB_LOG_DEBUG: return LogLevel::kDebug;
    case AIHUB_LOG_WARNING: return LogLevel::kWarning;
    case AIHUB_LOG_ERROR: return LogLevel::kError;
    default: return LogLevel::kInfo;
  }
}

const char* Safe(const char* s) { return s ? s : "(null)"; }

// Records the first refused builder call on the job and returns INVALID_ARGUMENT.
int32_t Refuse(aihub_job* job, const std::string& why) {
  if (job->builder_error.empty()) job->builder_error = why;
  LogWarning("plugin:" + job->plugin_id, "result builder refused: " + why);
  return AIHUB_INVALID_ARGUMENT;
}

bool PrintableText(const char* s, size_t max, bool allow_newlines) {
  const size_t n = strnlen(s, max + 1);
  if (n > max) return false;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 && !(allow_newlines && (c == '\n' || c == '\r' || c == '\t'))) return false;
  }
  return true;
}

// Code value, scheme and meaning: required, bounded, no control characters and no backslash (DICOM
// multi-value separator, invalid in SH/LO).
bool ValidCodeText(const char* s, size_t max) {
  if (s == nullptr || *s == '\0' || !PrintableText(s, max, false)) return false;
  return std::strchr(s, '\\') == nullptr;
}

std::string CheckCode(const aihub_code& code, const char* what, std::optional<CodedConcept>* out) {
  if (!ValidCodeText(code.value, 64) || !ValidCodeText(code.scheme, 16) || !ValidCodeText(code.meaning, 64)) {
    return std::string(what) + " needs value (<=64 chars), scheme (<=16) and meaning (<=64), printable, no '\\'";
  }
  *out = CodedConcept{code.value, code.scheme, code.meaning};
  return "";
}

const dicom::Series* SeriesAt(aihub_job* job, uint32_t index) {
  if (job == nullptr || job->input == nullptr || index >= job->input->series.size()) return nullptr;
  return job->input->series[index];
}

// --- context functions ---

void CtxLog(aihub_plugin_context* ctx, int32_t level, const char* message) {
  Log(ToLogLevel(level), "plugin:" + (ctx ? ctx->plugin_id : std::string("?")), Safe(message));
}

const char* CtxConfigJson(aihub_plugin_context* ctx) { return ctx ? ctx->config_json.c_str() : "{}"; }

const char* CtxConfigString(aihub_plugin_context* ctx, const char* key) {
  if (ctx == nullptr || key == nullptr) return nullptr;
  auto it = ctx->config_strings.find(key);
  return it == ctx->config_strings.end() ? nullptr : it->second.c_str();
}

double CtxConfigNumber(aihub_plugin_context* ctx, const char* key, double fallback) {
  if (ctx == nullptr || key == nullptr || !ctx->config.is_object()) return fallback;
  auto it = ctx->config.find(key);
  if (it == ctx->config.end() || !it->is_number()) return fallback;
  return it->get<double>();
}

const char* CtxPluginDirectory(aihub_plugin_context* ctx) { return ctx ? ctx->plugin_directory.c_str() : ""; }

void CtxSetError(aihub_plugin_context* ctx, const char* message) {
  if (ctx) ctx->error = Safe(message);
}

// --- job functions ---

void JobLog(aihub_job* job, int32_t level, const char* message) {
  Log(ToLogLevel(level), "plugin:" + (job ? job->plugin_id : std::string("?")), Safe(message));
}

void JobSetError(aihub_job* job, const char* message) {
  if (job) job->error = std::string(Safe(message)).substr(0, 4096);
}

int32_t JobIsCancelled(aihub_job* job) {
  return (job && job->cancel && job->cancel->load(std::memory_order_relaxed)) ? 1 : 0;
}

void JobProgress(aihub_job* job, double fraction) {
  if (job && std::isfinite(fraction)) job->progress = std::min(1.0, std::max(0.0, fraction));
}

const char* StudyTag(aihub_job* job, uint32_t tag) {
  if (job == nullptr || job->input == nullptr || job->input->study == nullptr) return nullptr;
  const std::string* v = dicom::FindTag(job->input->study->tags, tag);
  return v ? v->c_str() : nullptr;
}

uint32_t SeriesCount(aihub_job* job) {
  return (job && job->input) ? static_cast<uint32_t>(job->input->series.size()) : 0;
}

const char* SeriesTag(aihub_job* job, uint32_t series_index, uint32_t tag) {
  const dicom::Series* s = SeriesAt(job, series_index);
  if (s == nullptr) return nullptr;
  const std::string* v = dicom::FindTag(s->tags, tag);
  return v ? v->c_str() : nullptr;
}

uint32_t FrameCount(aihub_job* job, uint32_t series_index) {
  const dicom::Series* s = SeriesAt(job, series_index);
  return s ? static_cast<uint32_t>(s->frames.size()) : 0;
}

int32_t FrameGeometry(aihub_job* job, uint32_t series_index, uint32_t frame_index, aihub_frame_geometry* out) {
  const dicom::Series* s = SeriesAt(job, series_index);
  if (s == nullptr || out == nullptr || frame_index >= s->frames.size()) return AIHUB_INVALID_ARGUMENT;
  if (out->struct_size < kMinGeometrySize) return AIHUB_INVALID_ARGUMENT;
  const dicom::Frame& f = s->frames[frame_index];
  const dicom::FrameGeometry& g = f.geometry;
  aihub_frame_geometry v;
  std::memset(&v, 0, sizeof v);
  v.struct_size = static_cast<uint32_t>(std::min<size_t>(out->struct_size, sizeof v));  // what the host filled
  v.rows = g.rows;
  v.columns = g.columns;
  v.samples_per_pixel = g.samples_per_pixel;
  v.bits_allocated = g.bits_allocated;
  v.bits_stored = g.bits_stored;
  v.pixel_representation = g.pixel_representation;
  v.photometric = g.photometric;
  v.pixel_spacing[0] = g.pixel_spacing[0];
  v.pixel_spacing[1] = g.pixel_spacing[1];
  v.slice_thickness = g.slice_thickness;
  v.spacing_between_slices = s->spacing_between_slices;
  std::memcpy(v.position, g.position, sizeof v.position);
  std::memcpy(v.orientation, g.orientation, sizeof v.orientation);
  v.has_position = g.has_position ? 1 : 0;
  v.rescale_slope = g.rescale_slope;
  v.rescale_intercept = g.rescale_intercept;
  v.window_center = g.window_center;
  v.window_width = g.window_width;
  v.sop_instance_uid = s->instances[f.instance_index].sop_instance_uid.c_str();
  v.frame_number = f.frame_number;
  v.trigger_time = g.trigger_time;
  v.temporal_index = g.temporal_index;
  v.temporal_positions = s->temporal_positions;
  v.total_pixel_column = g.total_pixel_column;
  v.total_pixel_row = g.total_pixel_row;
  std::memcpy(out, &v, std::min<size_t>(out->struct_size, sizeof v));
  return AIHUB_OK;
}

int32_t ReadFrame(aihub_job* job, uint32_t series_index, uint32_t frame_index, int32_t pixel_format,
                  void* buffer, uint64_t buffer_size) {
  const dicom::Series* s = SeriesAt(job, series_index);
  if (s == nullptr || buffer == nullptr) return AIHUB_INVALID_ARGUMENT;
  if (pixel_format != AIHUB_PIXEL_FLOAT32_MODALITY && pixel_format != AIHUB_PIXEL_RGB8) {
    return AIHUB_INVALID_ARGUMENT;
  }
  Status st = dicom::ReadFrame(*s, frame_index, static_cast<aihub_pixel_format>(pixel_format), buffer, buffer_size);
  if (!st.ok()) {
    LogWarning("plugin:" + job->plugin_id, "read_frame(" + std::to_string(series_index) + ", " +
                                               std::to_string(frame_index) + "): " + st.ToString());
  }
  return st.code();
}

int32_t AddFinding(aihub_job* job, const aihub_finding* f, uint32_t* out_index) {
  if (job == nullptr || job->output == nullptr) return AIHUB_INVALID_ARGUMENT;
  if (f == nullptr) return Refuse(job, "add_finding: finding is NULL");
  if (f->struct_size < kMinFindingSize) return Refuse(job, "add_finding: struct_size too small");
  if (job->output->findings.size() >= Limits::kMaxFindings) {
    return Refuse(job, "add_finding: more than " + std::to_string(Limits::kMaxFindings) + " findings");
  }
  Finding out;
  std::optional<CodedConcept> code;
  if (std::string e = CheckCode(f->code, "finding code", &code); !e.empty()) return Refuse(job, "add_finding: " + e);
  out.concept = *code;
  if (f->presence < AIHUB_PRESENCE_ABSENT || f->presence > AIHUB_PRESENCE_INDETERMINATE) {
    return Refuse(job, "add_finding: unknown presence " + std::to_string(f->presence));
  }
  if (!std::isfinite(f->confidence) || f->confidence < 0 || f->confidence > 1) {
    return Refuse(job, "add_finding: confidence must be a finite number in [0, 1]");
  }
  if (f->urgency < AIHUB_URGENCY_ROUTINE || f->urgency > AIHUB_URGENCY_CRITICAL) {
    return Refuse(job, "add_finding: unknown urgency " + std::to_string(f->urgency));
  }
  if (f->laterality < AIHUB_LATERALITY_NONE || f->laterality > AIHUB_LATERALITY_BILATERAL) {
    return Refuse(job, "add_finding: unknown laterality " + std::to_string(f->laterality));
  }
  if (f->site != nullptr) {
    std::optional<CodedConcept> site;
    if (std::string e = CheckCode(*f->site, "site", &site); !e.empty()) return Refuse(job, "add_finding: " + e);
    out.site = site;
  }
  if (f->text != nullptr) {
    if (!PrintableText(f->text, Limits::kMaxTextChars, true)) {
      return Refuse(job, "add_finding: text longer than 1024 chars or with control characters");
    }
    out.text = f->text;
  }
  out.presence = static_cast<Presence>(f->presence);
  out.confidence = f->confidence;
  out.urgency = static_cast<Urgency>(f->urgency);
  out.laterality = static_cast<Laterality>(f->laterality);
  job->output->findings.push_back(std::move(out));
  if (out_index) *out_index = static_cast<uint32_t>(job->output->findings.size() - 1);
  return AIHUB_OK;
}

int32_t AddMeasurement(aihub_job* job, uint32_t finding_index, const aihub_measurement* m) {
  if (job == nullptr || job->output == nullptr) return AIHUB_INVALID_ARGUMENT;
  if (m == nullptr) return Refuse(job, "add_measurement: measurement is NULL");
  if (m->struct_size < kMinMeasurementSize) return Refuse(job, "add_measurement: struct_size too small");
  if (finding_index >= job->output->findings.size()) return Refuse(job, "add_measurement: no such finding");
  Finding& finding = job->output->findings[finding_index];
  if (finding.measurements.size() >= Limits::kMaxMeasurementsPerFinding) {
    return Refuse(job, "add_measurement: more than 32 measurements on one finding");
  }
  std::optional<CodedConcept> code;
  if (std::string e = CheckCode(m->code, "measurement code", &code); !e.empty()) {
    return Refuse(job, "add_measurement: " + e);
  }
  if (!std::isfinite(m->value)) return Refuse(job, "add_measurement: value must be finite");
  if (!ValidCodeText(m->unit_ucum, 16) || !ValidCodeText(m->unit_meaning, 64)) {
    return Refuse(job, "add_measurement: unit_ucum (<=16 chars) and unit_meaning (<=64) are required");
  }
  finding.measurements.push_back(Measurement{*code, m->value, m->unit_ucum, m->unit_meaning});
  return AIHUB_OK;
}

int32_t AddRegion(aihub_job* job, uint32_t finding_index, const aihub_region* r) {
  if (job == nullptr || job->output == nullptr) return AIHUB_INVALID_ARGUMENT;
  if (r == nullptr) return Refuse(job, "add_region: region is NULL");
  if (r->struct_size < kMinRegionSize) return Refuse(job, "add_region: struct_size too small");
  if (finding_index >= job->output->findings.size()) return Refuse(job, "add_region: no such finding");
  Finding& finding = job->output->findings[finding_index];
  if (finding.regions.size() >= Limits::kMaxRegionsPerFinding) {
    return Refuse(job, "add_region: more than 16 regions on one finding");
  }
  const dicom::Series* s = SeriesAt(job, r->series_index);
  if (s == nullptr) return Refuse(job, "add_region: no such series " + std::to_string(r->series_index));
  if (r->frame_index >= s->frames.size()) return Refuse(job, "add_region: no such frame");
  const uint32_t n = r->point_count;
  if (n == 0 || n > Limits::kMaxPointsPerRegion || r->points == nullptr) {
    return Refuse(job, "add_region: 1..4096 points required");
  }
  size_t min_points = 1, max_points = Limits::kMaxPointsPerRegion;
  switch (r->graphic_type) {
    case AIHUB_GRAPHIC_POINT: max_points = 1; break;
    case AIHUB_GRAPHIC_POLYLINE: min_points = 2; break;
    case AIHUB_GRAPHIC_POLYGON: min_points = 3; break;
    case AIHUB_GRAPHIC_ELLIPSE: min_points = max_points = 4; break;
    default: return Refuse(job, "add_region: unknown graphic type " + std::to_string(r->graphic_type));
  }
  if (n < min_points || n > max_points) return Refuse(job, "add_region: wrong point count for graphic type");
  int32_t origin = AIHUB_PIXEL_ORIGIN_FRAME;
  if (job->plugin_api_minor >= 2 && r->struct_size >= kRegionSize12) origin = r->pixel_origin;
  if (origin != AIHUB_PIXEL_ORIGIN_FRAME && origin != AIHUB_PIXEL_ORIGIN_VOLUME) {
    return Refuse(job, "add_region: unknown pixel origin " + std::to_string(origin));
  }
  const dicom::Frame& frame = s->frames[r->frame_index];
  const dicom::Instance& inst = s->instances[frame.instance_index];
  const bool volume = origin == AIHUB_PIXEL_ORIGIN_VOLUME;
  if (volume && (inst.total_pixel_columns == 0 || inst.total_pixel_rows == 0)) {
    return Refuse(job, "add_region: pixel origin VOLUME needs a tiled whole-slide image (TILED_FULL with a total "
                       "pixel matrix)");
  }
  const float cols = static_cast<float>(volume ? inst.total_pixel_columns : frame.geometry.columns);
  const float rows = static_cast<float>(volume ? inst.total_pixel_rows : frame.geometry.rows);
  Region out;
  out.points.assign(r->points, r->points + 2 * static_cast<size_t>(n));
  for (size_t i = 0; i < out.points.size(); i += 2) {
    const float x = out.points[i], y = out.points[i + 1];
    if (!std::isfinite(x) || !std::isfinite(y) || x < 0 || y < 0 || x > cols || y > rows) {
      return Refuse(job, volume ? "add_region: point outside the total pixel matrix or not finite"
                                : "add_region: point outside the frame or not finite");
    }
  }
  out.series_instance_uid = s->series_instance_uid;
  out.sop_class_uid = inst.sop_class_uid;
  out.sop_instance_uid = inst.sop_instance_uid;
  out.frame_number = frame.frame_number;
  out.multi_frame = inst.number_of_frames > 1;
  out.total_pixel_matrix = volume;
  out.graphic_type = static_cast<GraphicType>(r->graphic_type);
  finding.regions.push_back(std::move(out));
  return AIHUB_OK;
}

int32_t SetSummary(aihub_job* job, const char* text) {
  if (job == nullptr || job->output == nullptr) return AIHUB_INVALID_ARGUMENT;
  if (text == nullptr || !PrintableText(text, Limits::kMaxSummaryChars, true)) {
    return Refuse(job, "set_summary: text missing, longer than 4096 chars or with control characters");
  }
  job->output->summary = text;
  return AIHUB_OK;
}

// Host functions are called from C frames: nothing may propagate out of them. The ones that allocate (logging,
// copies into the result, decoding) answer an exception with a neutral value: RESOURCE_EXHAUSTED for statuses,
// 0/NULL otherwise.
template <typename R>
R OnThrow() {
  if constexpr (std::is_void_v<R>) {
    return;
  } else if constexpr (std::is_same_v<R, int32_t>) {
    return AIHUB_RESOURCE_EXHAUSTED;
  } else {
    return R{};
  }
}

template <auto Fn>
struct NoThrow;
template <typename R, typename... A, R (*Fn)(A...)>
struct NoThrow<Fn> {
  static R Call(A... a) noexcept {
    try {
      return Fn(a...);
    } catch (...) {
      return OnThrow<R>();
    }
  }
};

const aihub_host_api kHostApi = {
    sizeof(aihub_host_api),
    AIHUB_PLUGIN_API_VERSION_MAJOR,
    AIHUB_PLUGIN_API_VERSION_MINOR,
    &NoThrow<&CtxLog>::Call,
    &CtxConfigJson,
    &CtxConfigString,
    &CtxConfigNumber,
    &NoThrow<&CtxSetError>::Call,
    &NoThrow<&JobLog>::Call,
    &NoThrow<&JobSetError>::Call,
    &JobIsCancelled,
    &JobProgress,
    &StudyTag,
    &SeriesCount,
    &SeriesTag,
    &FrameCount,
    &FrameGeometry,
    &NoThrow<&ReadFrame>::Call,
    &NoThrow<&AddFinding>::Call,
    &NoThrow<&AddMeasurement>::Call,
    &NoThrow<&AddRegion>::Call,
    &NoThrow<&SetSummary>::Call,
    &CtxPluginDirectory,
};

}  // namespace

const aihub_host_api* HostApi() { return &kHostApi; }

}  // namespace aihub::plugins
