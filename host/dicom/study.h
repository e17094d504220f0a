// Study model: DICOM files grouped into studies and series, frames sorted in space, decoded on demand.
//
// Scanning reads headers only (parsing stops before PixelData), so a folder of thousands of slices is grouped
// quickly and pixel data is decoded frame by frame when a plugin asks for it (read_frame), which keeps memory
// bounded for large series and whole-slide images.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "aihub/plugin_api.h"
#include "common/status.h"

namespace aihub::dicom {

// Tag values keyed by (group << 16 | element): every top-level element of the first instance that is text or
// a number, rendered as DICOM text (multiple values joined with '\'), leading/trailing spaces trimmed.
// Sequences, binary values and PixelData are not kept.
// Every value is valid UTF-8: text is converted from the file's SpecificCharacterSet (0008,0005), e.g. ISO_IR 100
// (Latin-1) or ISO 2022 code extensions; where the character set is unknown or a value does not convert, bytes
// that are not well-formed UTF-8 are replaced by U+FFFD (the file is still used). The same holds for the UID
// strings of Study, Series and Instance.
using TagMap = std::map<uint32_t, std::string>;

// Looks a tag up; nullptr when absent.
const std::string* FindTag(const TagMap& tags, uint32_t tag);

// Limits on untrusted input; a file or series over a limit is rejected with a clear reason.
struct ScanLimits {
  uint64_t max_files = 200000;            // files looked at in one scan
  uint64_t max_file_bytes = 8ull << 30;   // one file
  uint32_t max_rows = 65535;              // Rows and Columns are US in DICOM; 0 is rejected
  uint32_t max_columns = 65535;
  uint64_t max_frame_pixels = 1ull << 27; // rows * columns of one frame (128 Mpixel)
  uint32_t max_frames_per_series = 1000000;  // also bounds NumberOfFrames of one file
  uint64_t max_frames_per_scan = 4000000;    // all frames of one scan (each costs a FrameGeometry in memory)
};
// The frame limits are checked file by file while scanning: a file whose frames would take its series (or the
// whole scan) over the limit is rejected, and its frames are never held in memory.

// Geometry of one frame; the same fields the plugin ABI exposes (aihub_frame_geometry).
struct FrameGeometry {
  uint32_t rows = 0;
  uint32_t columns = 0;
  uint32_t samples_per_pixel = 1;
  uint32_t bits_allocated = 0;
  uint32_t bits_stored = 0;
  int32_t pixel_representation = 0;
  aihub_photometric photometric = AIHUB_PHOTOMETRIC_UNKNOWN;
  double pixel_spacing[2] = {0, 0};  // row spacing, column spacing (mm)
  double slice_thickness = 0;
  double position[3] = {0, 0, 0};
  double orientation[6] = {1, 0, 0, 0, 1, 0};
  bool has_position = false;
  double rescale_slope = 1;
  double rescale_intercept = 0;
  double window_center = 0;
  double window_width = 0;
  // Time: cine and other multi-phase series. temporal_index is the 1-based phase after sorting (0 when the series
  // has one phase); temporal_position / trigger_time are what the file said (0 / -1 when absent).
  int32_t temporal_index = 0;
  int32_t temporal_position = 0;     // TemporalPositionIdentifier, or per-frame TemporalPositionIndex
  double trigger_time = -1;          // TriggerTime / NominalCardiacTriggerDelayTime, ms
  // Whole-slide images (TILED_FULL): 1-based column and row of the frame's top-left pixel in the total pixel
  // matrix, 0 when the image is not tiled.
  uint32_t total_pixel_column = 0;
  uint32_t total_pixel_row = 0;
};

struct Instance {
  std::filesystem::path path;
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string transfer_syntax_uid;
  int32_t instance_number = 0;
  uint32_t number_of_frames = 1;
  // TILED_FULL whole-slide images: TotalPixelMatrixColumns / Rows (0 when the image is not tiled).
  uint32_t total_pixel_columns = 0;
  uint32_t total_pixel_rows = 0;
};

// One frame of a series, in sorted order.
struct Frame {
  uint32_t instance_index = 0;  // into Series::instances
  uint32_t frame_number = 1;    // 1-based inside that instance
  FrameGeometry geometry;
};

// A series is treated as a volume when it has two or more frames, every frame has ImagePositionPatient and
// ImageOrientationPatient, and no multi-frame object in it shares one position across its frames (plain
// multi-frame objects without per-frame PlanePositionSequence keep instance/frame order). A volume must have equal
// Rows/Columns and orientation (1e-4 per direction cosine), distinct positions (>= 0.001 mm apart along the
// normal) and gaps within 10% of the median gap; otherwise `error` says which rule broke.
// A volume whose frames carry two or more distinct temporal positions (TemporalPositionIdentifier /
// TemporalPositionIndex, else TriggerTime) is a multi-phase (cine) series: each phase must be a regular volume at
// the same slice positions as the first (a missing phase frame or a shifted slice is an error naming the phase),
// and the frames are sorted phase by phase, each phase along the normal.
struct Series {
  std::string series_instance_uid;
  TagMap tags;                      // from the first instance (study-level tags included)
  std::vector<Instance> instances;  // ordered by InstanceNumber, then path
  std::vector<Frame> frames;        // sorted: along the slice normal for volumes, else instance/frame number
  double spacing_between_slices = 0; // from sorted positions; 0 when the series is not a regular volume
  uint32_t temporal_positions = 0;  // phases of a multi-phase (cine) series, frames sorted phase by phase; 0 = one
  // Non-empty when the series cannot be processed (inconsistent geometry, unsupported transfer syntax, ...):
  // the reason. The rest of the study is still usable.
  std::string error;
};

struct Study {
  std::string study_instance_uid;
  TagMap tags;                      // from the first instance of the first series
  std::vector<Series> series;       // ordered by SeriesNumber, then SeriesInstanceUID
};

// A file that could not be used, and why ("not a DICOM file", "truncated", "missing StudyInstanceUID", ...).
struct RejectedFile {
  std::filesystem::path path;
  std::string reason;
};

struct ScanResult {
  std::vector<Study> studies;       // ordered by StudyInstanceUID
  std::vector<RejectedFile> rejected;
};

// Scans `dir` recursively (regular files, directory symlinks not followed). Never throws for bad files: they
// land in `rejected`. NOT_FOUND when `dir` is not a directory; RESOURCE_EXHAUSTED when it holds more than
// limits.max_files files.
StatusOr<ScanResult> ScanDirectory(const std::filesystem::path& dir, const ScanLimits& limits = {});
// Groups the given files (e.g. one study folder from a spool) the same way; files past limits.max_files or over a
// frame limit are rejected. A duplicate SOPInstanceUID keeps the first file in the given order. Memory held while
// scanning is about one FrameGeometry per accepted frame plus one TagMap per series (only the series' first
// instance has its tags rendered).
ScanResult ScanFiles(const std::vector<std::filesystem::path>& files, const ScanLimits& limits = {});

// Registers DCMTK's decompression codecs (JPEG baseline/extended/lossless, JPEG-LS, RLE) once per process.
void RegisterCodecs();

// Decodes one sorted frame of `series` into `buffer`:
//  AIHUB_PIXEL_FLOAT32_MODALITY: rows*columns floats, stored value * slope + intercept (monochrome only);
//  AIHUB_PIXEL_RGB8: rows*columns*3 bytes (colour frames; monochrome frames are refused).
// Errors: INVALID_ARGUMENT (index, buffer size), FAILED_PRECONDITION (format does not suit the frame),
// UNIMPLEMENTED (transfer syntax without a codec), DATA_LOSS (missing/truncated/corrupt pixel data, or the file
// changed since the scan). Series::error other than an unsupported transfer syntax does not stop ReadFrame (each
// frame carries its own geometry); the host does not hand such series to plugins.
// Thread-safe: every call parses its own copy of the file header (values over 4 KiB stay on disk) and reads only
// the bytes of the requested frame, so memory stays at about one frame per call. Encapsulated multi-frame files
// are read through a small shared cache of their fragment positions (about 16 bytes per frame, 32 files), so
// reading all N tiles of a slide costs O(N), not O(N^2).
Status ReadFrame(const Series& series, uint32_t frame_index, aihub_pixel_format format, void* buffer,
                 uint64_t buffer_size);

}  // namespace aihub::dicom
