/*
 * aihub plugin C ABI, version 1.
 *
 * This header is the stable contract between the aihub host (aihubd) and model plugins shipped as shared
 * libraries. It is plain C99: fixed-width types, opaque handles, enums passed as int32_t, no C++ types.
 *
 * Versioning (as in Triton's backend API): the host loads a plugin only when the plugin's
 * AIHUB_PLUGIN_API_VERSION_MAJOR equals the host's and the plugin's MINOR is not newer than the host's.
 * The API grows only by appending fields to structs that start with `struct_size`, by appending function
 * pointers to the end of aihub_host_api, and by new optional entry points. Existing fields never change.
 *
 * Ownership rules, one for the whole header:
 *  - Strings and arrays a plugin hands to the host are copied by the host before the call returns; the plugin
 *    keeps ownership and may free or reuse them at once.
 *  - `const char*` returned by the host are owned by the host and stay valid until the call that received the
 *    handle they came from returns (aihub_plugin_execute for job data, aihub_plugin_create for config data).
 *    Copy them if you need them longer. Never free them.
 *  - Buffers passed to read_frame are owned by the plugin; the host only writes into them.
 *  - The descriptor returned by aihub_plugin_describe is owned by the plugin and must stay valid (static storage)
 *    while the library is loaded.
 *  - Plugins never free host memory and the host never frees plugin memory, except through
 *    aihub_plugin_destroy for the instance it created.
 *
 * Exceptions, longjmp and signals must never cross this boundary: every entry point returns a status.
 *
 * Threads and lifetimes:
 *  - An aihub_job handle is valid only during the aihub_plugin_execute call that received it; the job_* and
 *    study functions may be called from threads the plugin starts, but only until execute returns.
 *  - An aihub_plugin_context is valid from create until destroy; its functions may be called from any thread.
 *  - aihub_plugin_destroy must stop and join every thread the instance started: the host unmaps the library
 *    (dlclose) right after the last instance is destroyed.
 *  - Avoid thread_local objects with destructors in plugin code: glibc then keeps the library mapped until the
 *    host thread that touched them exits, so a hot reload cannot unmap the old version.
 *
 * Out-parameters with struct_size (aihub_frame_geometry): the caller sets struct_size to the size it was
 * compiled with; the host fills the fields it knows that fit, and writes back in struct_size how many bytes it
 * filled, so a plugin built against a newer minor version can tell which fields an older host left unset.
 */
#ifndef AIHUB_PLUGIN_API_H
#define AIHUB_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AIHUB_PLUGIN_API_VERSION_MAJOR 1
#define AIHUB_PLUGIN_API_VERSION_MINOR 2

#if defined(__GNUC__)
#define AIHUB_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define AIHUB_PLUGIN_EXPORT
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Status codes: the values of google.rpc.Code / grpc::StatusCode, so they map one to one onto RPC errors.
 * ------------------------------------------------------------------------------------------------------------- */
typedef enum aihub_status_code {
  AIHUB_OK = 0,
  AIHUB_CANCELLED = 1,
  AIHUB_UNKNOWN = 2,
  AIHUB_INVALID_ARGUMENT = 3,
  AIHUB_DEADLINE_EXCEEDED = 4,
  AIHUB_NOT_FOUND = 5,
  AIHUB_ALREADY_EXISTS = 6,
  AIHUB_PERMISSION_DENIED = 7,
  AIHUB_RESOURCE_EXHAUSTED = 8,
  AIHUB_FAILED_PRECONDITION = 9, /* e.g. the study does not suit the model: "not applicable" */
  AIHUB_ABORTED = 10,
  AIHUB_OUT_OF_RANGE = 11,
  AIHUB_UNIMPLEMENTED = 12,
  AIHUB_INTERNAL = 13,
  AIHUB_UNAVAILABLE = 14,
  AIHUB_DATA_LOSS = 15,
  AIHUB_UNAUTHENTICATED = 16,
  AIHUB_STATUS_CODE_INTERNAL_ = 0x7fffffff
} aihub_status_code;

typedef enum aihub_log_level {
  AIHUB_LOG_DEBUG = 0,
  AIHUB_LOG_INFO = 1,
  AIHUB_LOG_WARNING = 2,
  AIHUB_LOG_ERROR = 3,
  AIHUB_LOG_LEVEL_INTERNAL_ = 0x7fffffff
} aihub_log_level;

/* Capability bits reported in aihub_plugin_descriptor.capabilities. */
#define AIHUB_CAP_THREAD_SAFE ((uint64_t)1 << 0) /* execute may run concurrently on one instance */
#define AIHUB_CAP_GPU ((uint64_t)1 << 1)         /* can use a GPU when one is present */

/* Pixel formats read_frame can write. */
typedef enum aihub_pixel_format {
  /* One float per pixel: stored value * RescaleSlope + RescaleIntercept (Hounsfield units for CT).
   * Monochrome frames only; MONOCHROME1 is not inverted (values keep their modality meaning). */
  AIHUB_PIXEL_FLOAT32_MODALITY = 0,
  /* Three bytes per pixel, R G B interleaved; colour frames (RGB, YBR_*) are converted to RGB. */
  AIHUB_PIXEL_RGB8 = 1,
  AIHUB_PIXEL_FORMAT_INTERNAL_ = 0x7fffffff
} aihub_pixel_format;

typedef enum aihub_photometric {
  AIHUB_PHOTOMETRIC_UNKNOWN = 0,
  AIHUB_PHOTOMETRIC_MONOCHROME1 = 1,
  AIHUB_PHOTOMETRIC_MONOCHROME2 = 2,
  AIHUB_PHOTOMETRIC_RGB = 3,
  AIHUB_PHOTOMETRIC_YBR = 4, /* any YBR_* interpretation; read_frame(RGB8) converts */
  AIHUB_PHOTOMETRIC_PALETTE = 5,
  AIHUB_PHOTOMETRIC_INTERNAL_ = 0x7fffffff
} aihub_photometric;

typedef enum aihub_presence {
  AIHUB_PRESENCE_ABSENT = 0,        /* SNOMED CT 2667000 "Absent" */
  AIHUB_PRESENCE_PRESENT = 1,       /* SNOMED CT 52101004 "Present" */
  AIHUB_PRESENCE_INDETERMINATE = 2, /* SNOMED CT 82334004 "Indeterminate" */
  AIHUB_PRESENCE_INTERNAL_ = 0x7fffffff
} aihub_presence;

typedef enum aihub_urgency {
  AIHUB_URGENCY_ROUTINE = 0,
  AIHUB_URGENCY_URGENT = 1,
  AIHUB_URGENCY_CRITICAL = 2, /* triggers alerts and worklist priority in assistive/integrated modes */
  AIHUB_URGENCY_INTERNAL_ = 0x7fffffff
} aihub_urgency;

typedef enum aihub_laterality {
  AIHUB_LATERALITY_NONE = 0, /* not applicable / unpaired structure */
  AIHUB_LATERALITY_LEFT = 1,
  AIHUB_LATERALITY_RIGHT = 2,
  AIHUB_LATERALITY_BILATERAL = 3,
  AIHUB_LATERALITY_INTERNAL_ = 0x7fffffff
} aihub_laterality;

/* Graphic types of a region, as DICOM SCOORD: points are (column, row) pairs in image pixel coordinates of
 * the referenced frame, sub-pixel, origin at the top-left corner of the top-left pixel. */
typedef enum aihub_graphic_type {
  AIHUB_GRAPHIC_POINT = 0,    /* 1 point */
  AIHUB_GRAPHIC_POLYLINE = 1, /* >= 2 points, open */
  AIHUB_GRAPHIC_POLYGON = 2,  /* >= 3 points; the host closes it (first point repeated) in the SR */
  AIHUB_GRAPHIC_ELLIPSE = 3,  /* 4 points: major axis end points, then minor axis end points */
  AIHUB_GRAPHIC_TYPE_INTERNAL_ = 0x7fffffff
} aihub_graphic_type;

/* What a region's points are relative to (1.2), as DICOM's Pixel Origin Interpretation (0048,0301). */
typedef enum aihub_pixel_origin {
  AIHUB_PIXEL_ORIGIN_FRAME = 0,  /* the pixel matrix of the frame `frame_index` (every image; the default) */
  AIHUB_PIXEL_ORIGIN_VOLUME = 1, /* the total pixel matrix of the tiled whole-slide image (TILED_FULL) that holds
                                    the frame `frame_index`: a region may span many tiles; the SR references the
                                    image without a frame number */
  AIHUB_PIXEL_ORIGIN_INTERNAL_ = 0x7fffffff
} aihub_pixel_origin;

/* ---------------------------------------------------------------------------------------------------------------
 * Opaque handles. The host owns all of them.
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct aihub_plugin_context aihub_plugin_context; /* one per created instance: config and logging */
typedef struct aihub_job aihub_job;                       /* one execute call: study access and result builder */
typedef struct aihub_plugin_instance aihub_plugin_instance; /* plugin-defined; the host only passes it back */

/* ---------------------------------------------------------------------------------------------------------------
 * Plain data exchanged through the host table. Each starts with struct_size: the caller sets it to
 * sizeof(the struct it was compiled with); the callee reads or writes only fields that fit in it.
 * ------------------------------------------------------------------------------------------------------------- */

/* A coded concept, as a DICOM code sequence item: (code value, coding scheme designator, code meaning),
 * e.g. ("52101004", "SCT", "Present") or ("RID50", "RADLEX", ...). All three are required. This struct is
 * embedded by value and therefore frozen: it will never grow (a later need, e.g. a coding scheme version,
 * comes as a new optional field of the struct that embeds it). */
typedef struct aihub_code {
  const char* value;   /* max 64 chars */
  const char* scheme;  /* max 16 chars, e.g. "SCT", "DCM", "RADLEX", "LN", "99LOCAL" */
  const char* meaning; /* max 64 chars */
} aihub_code;

/* Geometry of one frame of a series, in the order the host sorted the frames: along the slice normal
 * (ImageOrientationPatient x ImagePositionPatient) for cross-sectional images, else by InstanceNumber and
 * frame number. */
typedef struct aihub_frame_geometry {
  uint32_t struct_size;
  uint32_t rows;
  uint32_t columns;
  uint32_t samples_per_pixel;
  uint32_t bits_allocated;
  uint32_t bits_stored;
  int32_t pixel_representation; /* 0 unsigned, 1 two's complement */
  int32_t photometric;          /* aihub_photometric */
  double pixel_spacing[2];      /* mm, (row spacing, column spacing); 0 when unknown */
  double slice_thickness;       /* mm; 0 when unknown */
  double spacing_between_slices; /* mm, measured from positions of the sorted frames; 0 when not a volume */
  double position[3];           /* ImagePositionPatient of the first pixel, mm */
  double orientation[6];        /* ImageOrientationPatient row then column direction cosines */
  int32_t has_position;         /* 1 when position/orientation are from the data, 0 when unknown */
  double rescale_slope;         /* 1 when absent */
  double rescale_intercept;     /* 0 when absent */
  double window_center;         /* first value; 0 with window_width 0 when absent */
  double window_width;
  const char* sop_instance_uid; /* of the instance holding this frame (host-owned) */
  uint32_t frame_number;        /* 1-based frame number inside that instance */
  /* Since 1.1 (a 1.0 host leaves struct_size at the 1.0 size: these were not filled). */
  double trigger_time;          /* ms after the R wave (TriggerTime / NominalCardiacTriggerDelayTime); -1 unknown */
  int32_t temporal_index;       /* cine and other multi-phase series: 1-based phase of this frame; 0 = one phase.
                                   The frames of such a series are sorted phase by phase, each along the normal. */
  uint32_t temporal_positions;  /* phases in the series; 0 = one */
  uint32_t total_pixel_column;  /* whole-slide images (TILED_FULL): 1-based column and row of this frame's first */
  uint32_t total_pixel_row;     /* pixel in the total pixel matrix; 0 when the image is not tiled */
} aihub_frame_geometry;

/* One finding. `code` says what was looked for (e.g. intracranial hemorrhage); `presence` whether it is there. */
typedef struct aihub_finding {
  uint32_t struct_size;
  aihub_code code;
  int32_t presence;     /* aihub_presence */
  double confidence;    /* probability in [0, 1] that the finding is present */
  int32_t urgency;      /* aihub_urgency */
  int32_t laterality;   /* aihub_laterality */
  const aihub_code* site; /* anatomic location, may be NULL */
  const char* text;     /* short human-readable statement, max 1024 chars, may be NULL */
} aihub_finding;

/* A numeric measurement attached to a finding, with a UCUM unit, e.g. ("mL", "milliliter") or ("%", "percent"). */
typedef struct aihub_measurement {
  uint32_t struct_size;
  aihub_code code;        /* what was measured, e.g. volume */
  double value;           /* must be finite */
  const char* unit_ucum;  /* UCUM code, max 16 chars, e.g. "mL", "mm", "%", "1" */
  const char* unit_meaning; /* max 64 chars, e.g. "milliliter" */
} aihub_measurement;

/* A region on one frame of the study, in that frame's pixel coordinates, or (1.2) on the total pixel matrix of a
 * tiled whole-slide image. */
typedef struct aihub_region {
  uint32_t struct_size;
  uint32_t series_index;   /* as in the study view */
  uint32_t frame_index;    /* sorted frame index in that series */
  int32_t graphic_type;    /* aihub_graphic_type */
  const float* points;     /* 2 * point_count floats: column, row, column, row, ... */
  uint32_t point_count;    /* at most 4096 */
  /* --- 1.2 --- read only from plugins that declare api_version_minor >= 2 (in 1.0/1.1 these bytes were padding,
   * which a C initialiser need not zero) */
  int32_t pixel_origin;    /* aihub_pixel_origin */
} aihub_region;

/* ---------------------------------------------------------------------------------------------------------------
 * Host table: functions the host offers to plugins. Passed to aihub_plugin_create; valid while the library is
 * loaded. Check `struct_size` before using a function appended in a later minor version.
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct aihub_host_api {
  uint32_t struct_size;
  uint32_t api_version_major;
  uint32_t api_version_minor;

  /* --- instance context: logging and configuration --- */
  void (*log)(aihub_plugin_context* ctx, int32_t level, const char* message);
  /* The plugin's `config:` block from the site config, as a JSON object text ("{}" when absent). */
  const char* (*config_json)(aihub_plugin_context* ctx);
  /* A top-level config value as text, or NULL when the key is absent or not a scalar. */
  const char* (*config_string)(aihub_plugin_context* ctx, const char* key);
  /* A top-level numeric config value, or `fallback` when the key is absent or not a number. */
  double (*config_number)(aihub_plugin_context* ctx, const char* key, double fallback);
  /* Detail for the status a create/self-test call is about to return; the host copies it. */
  void (*context_set_error)(aihub_plugin_context* ctx, const char* message);

  /* --- job: logging, cancellation, progress --- */
  void (*job_log)(aihub_job* job, int32_t level, const char* message);
  /* Detail for the status execute is about to return (e.g. why the study is not applicable). */
  void (*job_set_error)(aihub_job* job, const char* message);
  /* 1 when the host asks the plugin to stop (shutdown, deadline); return AIHUB_CANCELLED soon after. */
  int32_t (*job_is_cancelled)(aihub_job* job);
  /* Progress in [0, 1], for dashboards. */
  void (*job_progress)(aihub_job* job, double fraction);

  /* --- job: study access. Tags are DICOM (group << 16 | element), e.g. 0x00080060 for Modality. --- */
  /* A study-level tag value (from the first instance of the study), or NULL when absent. Multi-valued
   * elements come as DICOM text with backslash separators. */
  const char* (*study_tag)(aihub_job* job, uint32_t tag);
  /* Number of series in this job's view: only the series the routing rules matched. */
  uint32_t (*series_count)(aihub_job* job);
  /* A tag of a series (from its first instance), or NULL when absent or series_index is out of range. */
  const char* (*series_tag)(aihub_job* job, uint32_t series_index, uint32_t tag);
  /* Number of frames in the series, after sorting (single-frame instances count one each). */
  uint32_t (*frame_count)(aihub_job* job, uint32_t series_index);
  /* Fills `out` (whose struct_size the caller set) for one frame. */
  int32_t (*frame_geometry)(aihub_job* job, uint32_t series_index, uint32_t frame_index,
                            aihub_frame_geometry* out);
  /* Decodes one frame into the plugin's buffer. buffer_size must be at least rows * columns * 4 bytes for
   * FLOAT32_MODALITY and rows * columns * 3 for RGB8. Returns INVALID_ARGUMENT for a bad index or size,
   * FAILED_PRECONDITION for a format that does not suit the frame, UNIMPLEMENTED for an unsupported transfer
   * syntax, DATA_LOSS for truncated or corrupt pixel data. Frames are decoded on demand, so a plugin can stream
   * a large series frame by frame with bounded memory. */
  int32_t (*read_frame)(aihub_job* job, uint32_t series_index, uint32_t frame_index, int32_t pixel_format,
                        void* buffer, uint64_t buffer_size);

  /* --- job: result builder. Invalid input is refused with INVALID_ARGUMENT, and a job whose plugin wrote
   * invalid input fails even if execute returns AIHUB_OK, so a bad result never reaches a clinician. --- */
  /* Adds a finding; writes its index (for measurements and regions) to *out_index. At most 64 per job. */
  int32_t (*add_finding)(aihub_job* job, const aihub_finding* finding, uint32_t* out_index);
  /* At most 32 measurements per finding. */
  int32_t (*add_measurement)(aihub_job* job, uint32_t finding_index, const aihub_measurement* measurement);
  /* At most 16 regions per finding. */
  int32_t (*add_region)(aihub_job* job, uint32_t finding_index, const aihub_region* region);
  /* Study-level summary text for reports, max 4096 chars; a later call replaces an earlier one. */
  int32_t (*set_summary)(aihub_job* job, const char* text);

  /* --- instance context, continued --- */
  /* The folder the plugin's .so was deployed to (the site's plugin_dir), absolute, without a trailing slash.
   * Ship model files beside the .so and find them here: the host maps a content-addressed copy of the .so, so
   * dladdr() would point into the host's cache instead. */
  const char* (*plugin_directory)(aihub_plugin_context* ctx);
} aihub_host_api;

/* ---------------------------------------------------------------------------------------------------------------
 * Plugin description.
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct aihub_plugin_descriptor {
  uint32_t struct_size;
  uint32_t api_version_major; /* set to AIHUB_PLUGIN_API_VERSION_MAJOR */
  uint32_t api_version_minor; /* set to AIHUB_PLUGIN_API_VERSION_MINOR */
  const char* id;             /* stable id, [a-z0-9_-], 1..64 chars; one plugin per id in a plugin_dir */
  const char* name;           /* human-readable name, e.g. "Intracranial hemorrhage detection" */
  const char* version;        /* plugin software version, e.g. "1.4.2" */
  const char* model_version;  /* version of the model weights, e.g. "ich-2026.10" */
  const char* manufacturer;   /* who ships it; goes to the SR's Contributing Equipment */
  /* Default routing rules as a YAML mapping (the same syntax as a site config's `match:`), or NULL.
   * A site config's `match:` for this plugin replaces these. */
  const char* default_rules_yaml;
  uint64_t capabilities; /* AIHUB_CAP_* bits */
} aihub_plugin_descriptor;

/* ---------------------------------------------------------------------------------------------------------------
 * Entry points. The first four are required; the rest are optional and looked up by name.
 * ------------------------------------------------------------------------------------------------------------- */

/* Required. Returns a pointer to static storage. Must not fail and must be cheap: the host calls it before
 * deciding whether to load the plugin at all. */
typedef const aihub_plugin_descriptor* (*aihub_plugin_describe_fn)(void);

/* Required. Creates an instance (load the model here). `host` and `ctx` stay valid until destroy.
 * On failure return a non-OK status, call host->context_set_error with the reason, and leave *out NULL. */
typedef int32_t (*aihub_plugin_create_fn)(const aihub_host_api* host, aihub_plugin_context* ctx,
                                          aihub_plugin_instance** out);

/* Required. Runs the model on one job. AIHUB_FAILED_PRECONDITION means "not applicable to this study". */
typedef int32_t (*aihub_plugin_execute_fn)(aihub_plugin_instance* instance, aihub_job* job);

/* Required. Frees the instance. Never fails. */
typedef void (*aihub_plugin_destroy_fn)(aihub_plugin_instance* instance);

/* Optional. Runs a quick check of the loaded model (e.g. inference on a built-in input against a known
 * output). The host calls it before a new version takes over; a non-OK status keeps the old version active. */
typedef int32_t (*aihub_plugin_self_test_fn)(aihub_plugin_instance* instance);

#define AIHUB_PLUGIN_DESCRIBE_SYMBOL "aihub_plugin_describe"
#define AIHUB_PLUGIN_CREATE_SYMBOL "aihub_plugin_create"
#define AIHUB_PLUGIN_EXECUTE_SYMBOL "aihub_plugin_execute"
#define AIHUB_PLUGIN_DESTROY_SYMBOL "aihub_plugin_destroy"
#define AIHUB_PLUGIN_SELF_TEST_SYMBOL "aihub_plugin_self_test"

AIHUB_PLUGIN_EXPORT const aihub_plugin_descriptor* aihub_plugin_describe(void);
AIHUB_PLUGIN_EXPORT int32_t aihub_plugin_create(const aihub_host_api* host, aihub_plugin_context* ctx,
                                                aihub_plugin_instance** out);
AIHUB_PLUGIN_EXPORT int32_t aihub_plugin_execute(aihub_plugin_instance* instance, aihub_job* job);
AIHUB_PLUGIN_EXPORT void aihub_plugin_destroy(aihub_plugin_instance* instance);
AIHUB_PLUGIN_EXPORT int32_t aihub_plugin_self_test(aihub_plugin_instance* instance);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* AIHUB_PLUGIN_API_H */
