#include "dicom/study.h"


#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcspchrs.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "common/utf8.h"
#include "dicom/dicom_file.h"

namespace aihub::dicom {
namespace {

namespace fs = std::filesystem;

// Text values longer than this are not copied into a TagMap (they are notes or blobs, never routing keys).
constexpr Uint32 kMaxTagTextBytes = 64 * 1024;
// Slice gaps may differ from the median by this fraction before a volume counts as unevenly sampled.
constexpr double kSliceGapTolerance = 0.10;
// Positions closer than this along the normal (mm) are the same slice.
constexpr double kDuplicatePositionMm = 1e-3;
// Direction cosines of two frames may differ by this much per component and still count as equal.
constexpr double kOrientationTolerance = 1e-4;

std::string Trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(s.find_last_not_of(ws) + 1);
  while (!s.empty() && s.back() == '\0') s.pop_back();
  s.erase(0, s.find_first_not_of(ws));
  return s;
}

bool IsTextOrNumberVr(DcmEVR vr) {
  switch (vr) {
    case EVR_AE: case EVR_AS: case EVR_CS: case EVR_DA: case EVR_DS: case EVR_DT: case EVR_IS:
    case EVR_LO: case EVR_LT: case EVR_PN: case EVR_SH: case EVR_ST: case EVR_TM: case EVR_UC:
    case EVR_UI: case EVR_UR: case EVR_UT: case EVR_US: case EVR_SS: case EVR_UL: case EVR_SL:
    case EVR_FL: case EVR_FD: case EVR_AT: case EVR_UV: case EVR_SV:
      return true;
    default:
      return false;
  }
}

// True when `value` may hold characters outside the default repertoire: a byte above 0x7F, or ESC, which starts
// an ISO 2022 code extension even in 7-bit encodings (ISO 2022 IR 87).
bool NeedsCharsetConversion(const OFString& value) {
  for (size_t i = 0; i < value.length(); ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if (c >= 0x80 || c == 0x1b) return true;
  }
  return false;
}

// Renders the text and number elements of `item` into `tags` as UTF-8. `dataset` (the item that holds
// SpecificCharacterSet) is null for the meta header, which is always in the default repertoire.
class TagRenderer {
 public:
  explicit TagRenderer(DcmItem* dataset) : dataset_(dataset) {}

  void Add(DcmItem* item, TagMap& tags) {
    if (item == nullptr) return;
    for (unsigned long i = 0; i < item->card(); ++i) {
      DcmElement* element = item->getElement(i);
      if (element == nullptr || !IsTextOrNumberVr(element->ident())) continue;
      if (element->getLength() > kMaxTagTextBytes) continue;
      OFString value;
      if (element->getOFStringArray(value).bad()) continue;
      // Only the kept values are converted (not the whole dataset), and only when they are not plain ASCII.
      if (NeedsCharsetConversion(value) && element->isAffectedBySpecificCharacterSet() && Converter() != nullptr) {
        // Converts the element in place (our private parse of the file) with the delimiters of its VR, which
        // ISO 2022 code extensions need; on failure the raw bytes are kept and sanitised below.
        OFString converted;
        if (element->convertCharacterSet(*converter_).good() && element->getOFStringArray(converted).good()) {
          value = converted;
        }
      }
      const DcmTagKey key = element->getTag();
      tags[(uint32_t{key.getGroup()} << 16) | key.getElement()] =
          Trim(ReplaceInvalidUtf8(std::string_view(value.c_str(), value.length())));
    }
  }

 private:
  // The converter for the dataset's SpecificCharacterSet, made on first need; nullptr when there is none or the
  // character set is unknown here (then invalid bytes become U+FFFD).
  DcmSpecificCharacterSet* Converter() {
    if (!converter_tried_) {
      converter_tried_ = true;
      if (dataset_ != nullptr) {
        auto converter = std::make_unique<DcmSpecificCharacterSet>();
        if (converter->selectCharacterSet(*dataset_).good()) converter_ = std::move(converter);
      }
    }
    return converter_.get();
  }

  DcmItem* dataset_;
  bool converter_tried_ = false;
  std::unique_ptr<DcmSpecificCharacterSet> converter_;
};

// The TagMap of a series: meta header and top-level dataset elements of one parsed file.
TagMap RenderTags(DcmFileFormat& file) {
  TagMap tags;
  TagRenderer(nullptr).Add(file.getMetaInfo(), tags);
  TagRenderer(file.getDataset()).Add(file.getDataset(), tags);
  return tags;
}

std::string GetString(DcmItem* item, const DcmTagKey& tag) {
  OFString value;
  if (item == nullptr || item->findAndGetOFStringArray(tag, value).bad()) return {};
  return Trim(ReplaceInvalidUtf8(std::string_view(value.c_str(), value.length())));
}

bool GetDoubles(DcmItem* item, const DcmTagKey& tag, double* out, unsigned count) {
  if (item == nullptr) return false;
  double values[6];
  for (unsigned i = 0; i < count; ++i) {
    Float64 v = 0;
    if (item->findAndGetFloat64(tag, v, i).bad() || !std::isfinite(v)) return false;
    values[i] = v;
  }
  std::copy(values, values + count, out);
  return true;
}

aihub_photometric PhotometricFromString(const std::string& pi) {
  if (pi == "MONOCHROME1") return AIHUB_PHOTOMETRIC_MONOCHROME1;
  if (pi == "MONOCHROME2") return AIHUB_PHOTOMETRIC_MONOCHROME2;
  if (pi == "RGB") return AIHUB_PHOTOMETRIC_RGB;
  if (pi.rfind("YBR_", 0) == 0) return AIHUB_PHOTOMETRIC_YBR;
  if (pi == "PALETTE COLOR") return AIHUB_PHOTOMETRIC_PALETTE;
  return AIHUB_PHOTOMETRIC_UNKNOWN;
}

// Reads the geometry-bearing attributes that may live either at the top level or inside a functional group
// macro item. Only the attributes present in `item` are changed.
void ApplyPlanePosition(DcmItem* item, FrameGeometry& g, bool* has_position) {
  if (GetDoubles(item, DCM_ImagePositionPatient, g.position, 3)) *has_position = true;
}
void ApplyPlaneOrientation(DcmItem* item, FrameGeometry& g, bool* has_orientation) {
  if (GetDoubles(item, DCM_ImageOrientationPatient, g.orientation, 6)) *has_orientation = true;
}
void ApplyPixelMeasures(DcmItem* item, FrameGeometry& g) {
  GetDoubles(item, DCM_PixelSpacing, g.pixel_spacing, 2);
  GetDoubles(item, DCM_SliceThickness, &g.slice_thickness, 1);
}
void ApplyValueTransformation(DcmItem* item, FrameGeometry& g) {
  GetDoubles(item, DCM_RescaleSlope, &g.rescale_slope, 1);
  GetDoubles(item, DCM_RescaleIntercept, &g.rescale_intercept, 1);
}
void ApplyVoiLut(DcmItem* item, FrameGeometry& g) {
  GetDoubles(item, DCM_WindowCenter, &g.window_center, 1);
  GetDoubles(item, DCM_WindowWidth, &g.window_width, 1);
}

// Item 0 of sequence `tag` inside `item`, or nullptr.
DcmItem* MacroItem(DcmItem* item, const DcmTagKey& tag) {
  DcmItem* macro = nullptr;
  if (item == nullptr || item->findAndGetSequenceItem(tag, macro, 0).bad()) return nullptr;
  return macro;
}

// Per-frame item wins over the shared item (PS3.3 C.7.6.16).
DcmItem* FindMacro(DcmItem* per_frame, DcmItem* shared, const DcmTagKey& tag) {
  if (DcmItem* m = MacroItem(per_frame, tag)) return m;
  return MacroItem(shared, tag);
}

// What a scan keeps of one accepted file until its series is built: no TagMap (only the first instance of a
// series has one) and one geometry for all frames unless the object has per-frame functional groups.
struct ParsedFile {
  std::string study_uid;
  std::string series_uid;
  int64_t series_number = 0;
  Instance instance;
  FrameGeometry base;                     // every frame's geometry when per_frame is empty
  std::vector<FrameGeometry> per_frame;   // enhanced objects: one per frame
  bool top_position = false;              // ImagePositionPatient / ImageOrientationPatient at the top level
  bool top_orientation = false;
  bool distinct_frame_positions = true;  // false: frames of a multi-frame object share one position
  uint32_t tiles_across = 0;             // TILED_FULL: tiles per row of the total pixel matrix (0: not tiled)
  uint32_t tiles_down = 0;
  std::string transfer_syntax_problem;
  std::string unsupported_pixel_module;
};

// Parses and checks one file's header into `out` (identity, pixel module, frame count and the top-level
// geometry), but not per-frame geometry: the caller checks the frame limits first. On failure returns false and
// sets `reason`.
bool ParseFile(const fs::path& path, const ScanLimits& limits, DcmFileFormat& file, ParsedFile& out,
               std::string& reason) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) {
    reason = "cannot read file: " + ec.message();
    return false;
  }
  if (size > limits.max_file_bytes) {
    reason = "file of " + std::to_string(size) + " bytes is over the limit of " +
             std::to_string(limits.max_file_bytes) + " bytes";
    return false;
  }
  const OFCondition cond = internal::LoadHeader(path, file);
  DcmDataset* ds = file.getDataset();
  if (cond.bad()) {
    reason = internal::HasPreamble(path) ? std::string("truncated or corrupt DICOM file: ") + cond.text()
                                         : "not a DICOM file";
    return false;
  }
  std::string sop_class = GetString(ds, DCM_SOPClassUID);
  out.study_uid = GetString(ds, DCM_StudyInstanceUID);
  out.series_uid = GetString(ds, DCM_SeriesInstanceUID);
  std::string sop_uid = GetString(ds, DCM_SOPInstanceUID);
  if (sop_class.empty() && out.study_uid.empty() && sop_uid.empty() && !internal::HasPreamble(path)) {
    reason = "not a DICOM file";
    return false;
  }
  if (out.study_uid.empty()) { reason = "missing StudyInstanceUID"; return false; }
  if (out.series_uid.empty()) { reason = "missing SeriesInstanceUID"; return false; }
  if (sop_uid.empty()) { reason = "missing SOPInstanceUID"; return false; }

  DcmElement* pixel_element = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, pixel_element).bad() || pixel_element == nullptr) {
    if (dcmFindNameOfUID(sop_class.c_str()) != nullptr && !dcmIsImageStorageSOPClassUID(sop_class.c_str())) {
      reason = "no PixelData (not an image: SOP class " + sop_class + ")";
    } else {
      reason = "no PixelData";
    }
    return false;
  }

  Uint16 rows = 0, columns = 0;
  if (ds->findAndGetUint16(DCM_Rows, rows).bad()) { reason = "missing Rows"; return false; }
  if (ds->findAndGetUint16(DCM_Columns, columns).bad()) { reason = "missing Columns"; return false; }
  if (rows == 0) { reason = "Rows is 0"; return false; }
  if (columns == 0) { reason = "Columns is 0"; return false; }
  if (rows > limits.max_rows) {
    reason = "Rows " + std::to_string(rows) + " over the limit of " + std::to_string(limits.max_rows);
    return false;
  }
  if (columns > limits.max_columns) {
    reason = "Columns " + std::to_string(columns) + " over the limit of " + std::to_string(limits.max_columns);
    return false;
  }
  const uint64_t pixels = uint64_t{rows} * columns;
  if (pixels > limits.max_frame_pixels) {
    reason = "Rows*Columns " + std::to_string(pixels) + " over the limit of " +
             std::to_string(limits.max_frame_pixels) + " pixels per frame";
    return false;
  }
  Sint32 frames = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1) frames = 1;
  if (static_cast<uint64_t>(frames) > limits.max_frames_per_series) {
    reason = "NumberOfFrames " + std::to_string(frames) + " over the limit of " +
             std::to_string(limits.max_frames_per_series);
    return false;
  }

  FrameGeometry base;
  base.rows = rows;
  base.columns = columns;
  Uint16 u = 0;
  base.samples_per_pixel = ds->findAndGetUint16(DCM_SamplesPerPixel, u).good() ? u : 1;
  if (ds->findAndGetUint16(DCM_BitsAllocated, u).good()) base.bits_allocated = u;
  base.bits_stored = ds->findAndGetUint16(DCM_BitsStored, u).good() ? u : base.bits_allocated;
  if (ds->findAndGetUint16(DCM_PixelRepresentation, u).good()) base.pixel_representation = u;
  const std::string photometric = GetString(ds, DCM_PhotometricInterpretation);
  base.photometric = PhotometricFromString(photometric);

  const std::string ts_uid = internal::TransferSyntaxUid(file);
  const DcmXfer xfer(ts_uid.c_str());
  // Native data: PixelData must hold every frame, else the file was cut short (or lies about its size).
  if (xfer.getXfer() != EXS_Unknown && !xfer.isEncapsulated()) {
    const uint64_t frame_bytes =
        internal::NativeFrameBytes(rows, columns, base.samples_per_pixel, base.bits_allocated, photometric);
    const uint64_t expected = frame_bytes * static_cast<uint64_t>(frames);
    const uint64_t length = pixel_element->getLength();
    if (frame_bytes != 0 && length < expected) {
      reason = "truncated: PixelData holds " + std::to_string(length) + " bytes, " + std::to_string(expected) +
               " expected";
      return false;
    }
    // A file cut inside PixelData fails in LoadHeader already: DCMTK compares value lengths with the bytes
    // left in the file even for values it leaves on disk.
  } else if (xfer.isEncapsulated()) {
    if (pixel_element->ident() != EVR_PixelData) {
      reason = "corrupt: PixelData is not encapsulated as its transfer syntax requires";
      return false;
    }
    DcmPixelData* pixel_data = OFstatic_cast(DcmPixelData*, pixel_element);
    E_TransferSyntax original = EXS_Unknown;
    const DcmRepresentationParameter* param = nullptr;
    pixel_data->getOriginalRepresentationKey(original, param);
    DcmPixelSequence* sequence = nullptr;
    if (pixel_data->getEncapsulatedRepresentation(original, param, sequence).bad() || sequence == nullptr ||
        sequence->card() < 2) {
      reason = "truncated or corrupt: encapsulated PixelData has no fragments";
      return false;
    }
    // Every frame has at least one fragment of its own (PS3.5 A.4); item 0 is the offset table.
    if (sequence->card() - 1 < static_cast<unsigned long>(frames)) {
      reason = "truncated or corrupt: " + std::to_string(sequence->card() - 1) + " fragments for " +
               std::to_string(frames) + " frames";
      return false;
    }
  }

  out.instance.path = path;
  out.instance.sop_class_uid = sop_class;
  out.instance.sop_instance_uid = sop_uid;
  out.instance.transfer_syntax_uid = ts_uid;
  out.instance.number_of_frames = static_cast<uint32_t>(frames);
  Sint32 number = 0;
  if (ds->findAndGetSint32(DCM_InstanceNumber, number).good()) out.instance.instance_number = number;
  Sint32 series_number = 0;
  if (ds->findAndGetSint32(DCM_SeriesNumber, series_number).good()) out.series_number = series_number;
  out.transfer_syntax_problem = internal::TransferSyntaxProblem(ts_uid);
  if (base.bits_allocated != 8 && base.bits_allocated != 16 && base.bits_allocated != 32) {
    out.unsupported_pixel_module = "unsupported BitsAllocated " + std::to_string(base.bits_allocated);
  }

  // Top-level geometry (classic objects); ReadFunctionalGroups adds that of enhanced multi-frame objects.
  bool top_position = false, top_orientation = false;
  ApplyPlanePosition(ds, base, &top_position);
  ApplyPlaneOrientation(ds, base, &top_orientation);
  ApplyPixelMeasures(ds, base);
  ApplyValueTransformation(ds, base);
  ApplyVoiLut(ds, base);
  base.has_position = top_position && top_orientation;
  Sint32 temporal = 0;
  if (ds->findAndGetSint32(DCM_TemporalPositionIdentifier, temporal).good()) base.temporal_position = temporal;
  GetDoubles(ds, DCM_TriggerTime, &base.trigger_time, 1);
  // TILED_FULL whole-slide images: frames are tiles in row-major order over the total pixel matrix.
  Uint32 total_columns = 0, total_rows = 0;
  if (GetString(ds, DCM_DimensionOrganizationType) == "TILED_FULL" &&
      ds->findAndGetUint32(DCM_TotalPixelMatrixColumns, total_columns).good() &&
      ds->findAndGetUint32(DCM_TotalPixelMatrixRows, total_rows).good() && total_columns > 0 && total_rows > 0) {
    out.tiles_across = (total_columns + columns - 1) / columns;
    out.tiles_down = (total_rows + rows - 1) / rows;
    out.instance.total_pixel_columns = total_columns;
    out.instance.total_pixel_rows = total_rows;
  }
  out.base = base;
  out.top_position = top_position;
  out.top_orientation = top_orientation;
  out.distinct_frame_positions = frames == 1;
  return true;
}

// Per-frame geometry of an enhanced multi-frame object (functional groups); leaves classic objects alone.
void ReadFunctionalGroups(DcmDataset* ds, ParsedFile& out) {
  DcmItem* shared = MacroItem(ds, DCM_SharedFunctionalGroupsSequence);
  DcmSequenceOfItems* per_frame_seq = nullptr;
  ds->findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, per_frame_seq);
  if (shared == nullptr && per_frame_seq == nullptr) return;
  const FrameGeometry& base = out.base;
  const uint32_t frames = out.instance.number_of_frames;
  out.per_frame.reserve(frames);
  bool all_per_frame_positions = true;
  for (uint32_t f = 0; f < frames; ++f) {
    FrameGeometry g = base;
    DcmItem* per_frame = (per_frame_seq != nullptr && static_cast<unsigned long>(f) < per_frame_seq->card())
                             ? per_frame_seq->getItem(static_cast<unsigned long>(f))
                             : nullptr;
    bool has_position = out.top_position, has_orientation = out.top_orientation;
    ApplyPlanePosition(FindMacro(per_frame, shared, DCM_PlanePositionSequence), g, &has_position);
    ApplyPlaneOrientation(FindMacro(per_frame, shared, DCM_PlaneOrientationSequence), g, &has_orientation);
    ApplyPixelMeasures(FindMacro(per_frame, shared, DCM_PixelMeasuresSequence), g);
    ApplyValueTransformation(FindMacro(per_frame, shared, DCM_PixelValueTransformationSequence), g);
    ApplyVoiLut(FindMacro(per_frame, shared, DCM_FrameVOILUTSequence), g);
    if (DcmItem* content = MacroItem(per_frame, DCM_FrameContentSequence)) {
      Uint32 index = 0;
      if (content->findAndGetUint32(DCM_TemporalPositionIndex, index).good()) g.temporal_position = index;
    }
    if (DcmItem* cardiac = FindMacro(per_frame, shared, DCM_CardiacSynchronizationSequence)) {
      GetDoubles(cardiac, DCM_NominalCardiacTriggerDelayTime, &g.trigger_time, 1);
    }
    g.has_position = has_position && has_orientation;
    if (MacroItem(per_frame, DCM_PlanePositionSequence) == nullptr) all_per_frame_positions = false;
    out.per_frame.push_back(g);
  }
  out.distinct_frame_positions = frames == 1 || all_per_frame_positions;
}

// Whether file `a` sorts before `b` inside a series: InstanceNumber, then path.
bool InstanceBefore(int32_t a_number, const fs::path& a_path, int32_t b_number, const fs::path& b_path) {
  if (a_number != b_number) return a_number < b_number;
  return a_path < b_path;
}

struct SeriesBuild {
  int64_t series_number = 0;
  uint64_t frames = 0;              // running count, checked against limits.max_frames_per_series
  std::vector<ParsedFile> files;
  TagMap tags;                      // of the file that sorts first so far (files[first])
  size_t first = 0;
};

void Cross(const double* a, const double* b, double* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

std::string FormatMm(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

// Sorts frames of one volume along its slice normal and checks that it is regular; returns the error, or ""
// when fine, with the median gap in *spacing and the positions along the normal in *keys.
std::string SortAlongNormal(std::vector<Frame>& frames, double* spacing, std::vector<double>* keys) {
  const FrameGeometry& first = frames.front().geometry;
  for (const Frame& f : frames) {
    if (f.geometry.rows != first.rows || f.geometry.columns != first.columns) {
      return "inconsistent geometry: frames of one volume differ in Rows/Columns (" + std::to_string(first.rows) +
             "x" + std::to_string(first.columns) + " vs " + std::to_string(f.geometry.rows) + "x" +
             std::to_string(f.geometry.columns) + ")";
    }
    for (int i = 0; i < 6; ++i) {
      if (std::fabs(f.geometry.orientation[i] - first.orientation[i]) > kOrientationTolerance) {
        return "inconsistent geometry: frames of one volume differ in ImageOrientationPatient";
      }
    }
  }
  double normal[3];
  Cross(first.orientation, first.orientation + 3, normal);
  const double norm = std::sqrt(normal[0] * normal[0] + normal[1] * normal[1] + normal[2] * normal[2]);
  if (norm < 1e-6) return "inconsistent geometry: ImageOrientationPatient row and column are parallel";
  for (double& n : normal) n /= norm;
  auto key = [&normal](const Frame& f) {
    const double* p = f.geometry.position;
    return p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2];
  };
  std::stable_sort(frames.begin(), frames.end(), [&key](const Frame& a, const Frame& b) { return key(a) < key(b); });
  std::vector<double> gaps;
  gaps.reserve(frames.size() - 1);
  for (size_t i = 1; i < frames.size(); ++i) {
    const double gap = key(frames[i]) - key(frames[i - 1]);
    if (gap < kDuplicatePositionMm) {
      return "inconsistent geometry: duplicate slice position " + FormatMm(key(frames[i])) + " mm along the normal";
    }
    gaps.push_back(gap);
  }
  std::vector<double> sorted = gaps;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  double median = sorted[sorted.size() / 2];
  if (sorted.size() % 2 == 0) {
    median = (median + *std::max_element(sorted.begin(), sorted.begin() + sorted.size() / 2)) / 2;
  }
  for (double gap : gaps) {
    if (std::fabs(gap - median) > kSliceGapTolerance * median) {
      return "inconsistent geometry: uneven slice spacing (gap " + FormatMm(gap) + " mm, median " +
             FormatMm(median) + " mm, tolerance 10%)";
    }
  }
  *spacing = median;
  keys->clear();
  for (const Frame& f : frames) keys->push_back(key(f));
  return {};
}

// The frame's phase key: TemporalPositionIdentifier / Index when every frame has one, else TriggerTime when every
// frame has one; nullopt for a single-phase series.
std::optional<std::vector<double>> TemporalKeys(const std::vector<Frame>& frames) {
  std::vector<double> by_position, by_trigger;
  for (const Frame& f : frames) {
    if (f.geometry.temporal_position > 0) by_position.push_back(f.geometry.temporal_position);
    if (f.geometry.trigger_time >= 0) by_trigger.push_back(f.geometry.trigger_time);
  }
  const std::vector<double>* keys = by_position.size() == frames.size()  ? &by_position
                                    : by_trigger.size() == frames.size() ? &by_trigger
                                                                         : nullptr;
  if (keys == nullptr) return std::nullopt;
  if (std::all_of(keys->begin(), keys->end(), [&](double k) { return k == keys->front(); })) return std::nullopt;
  return *keys;
}

// Sorts a volume (or each phase of a cine volume) along its normal; returns the error, or "" when fine.
std::string SortVolume(Series& series) {
  std::vector<double> keys;
  std::string error = SortAlongNormal(series.frames, &series.spacing_between_slices, &keys);
  // Only frames that share positions are phases: a gated CT has a trigger time per slice and is one volume.
  if (error.rfind("inconsistent geometry: duplicate", 0) != 0) return error;
  std::optional<std::vector<double>> temporal = TemporalKeys(series.frames);
  if (!temporal) return error;
  std::map<double, std::vector<Frame>> phases;
  for (size_t i = 0; i < series.frames.size(); ++i) phases[(*temporal)[i]].push_back(series.frames[i]);
  std::vector<Frame> sorted;
  sorted.reserve(series.frames.size());
  // Every phase has the same slices: a frame count off the most common one is a missing (or extra) frame.
  std::map<size_t, int> counts;
  for (const auto& [key, frames] : phases) ++counts[frames.size()];
  const size_t slices = std::max_element(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
                          return a.second < b.second;
                        })->first;
  std::vector<double> first_keys;
  double spacing = 0;
  int32_t index = 0;
  for (auto& [key, frames] : phases) {
    ++index;
    const std::string phase = "phase " + std::to_string(index) + " (temporal position " + FormatMm(key) + ")";
    if (frames.size() != slices) {
      return "inconsistent cine: " + phase + " has " + std::to_string(frames.size()) + " slices, the others " +
             std::to_string(slices) + " (missing or extra frames)";
    }
    if (frames.size() < 2) return "inconsistent cine: " + phase + " has " + std::to_string(frames.size()) + " frame";
    error = SortAlongNormal(frames, index == 1 ? &spacing : &series.spacing_between_slices, &keys);
    if (!error.empty()) return error + " in " + phase;
    if (index == 1) {
      first_keys = keys;
    } else {
      for (size_t k = 0; k < keys.size(); ++k) {
        if (std::fabs(keys[k] - first_keys[k]) > kSliceGapTolerance * spacing) {
          return "inconsistent cine: slice " + std::to_string(k + 1) + " of " + phase + " is at " + FormatMm(keys[k]) +
                 " mm, in phase 1 at " + FormatMm(first_keys[k]) + " mm";
        }
      }
    }
    for (Frame& f : frames) {
      f.geometry.temporal_index = index;
      sorted.push_back(std::move(f));
    }
  }
  series.frames = std::move(sorted);
  series.spacing_between_slices = spacing;
  series.temporal_positions = static_cast<uint32_t>(phases.size());
  return {};
}



Series BuildSeries(const std::string& uid, SeriesBuild& build) {
  std::vector<ParsedFile>& files = build.files;
  Series series;
  series.series_instance_uid = uid;
  std::stable_sort(files.begin(), files.end(), [](const ParsedFile& a, const ParsedFile& b) {
    return InstanceBefore(a.instance.instance_number, a.instance.path, b.instance.instance_number, b.instance.path);
  });
  series.tags = std::move(build.tags);
  bool volume = build.frames >= 2;
  for (const ParsedFile& f : files) {
    if (series.error.empty() && !f.transfer_syntax_problem.empty()) series.error = f.transfer_syntax_problem;
    if (series.error.empty() && !f.unsupported_pixel_module.empty()) series.error = f.unsupported_pixel_module;
    if (!f.distinct_frame_positions) volume = false;
  }
  series.frames.reserve(build.frames);
  series.instances.reserve(files.size());
  for (ParsedFile& f : files) {
    const uint32_t index = static_cast<uint32_t>(series.instances.size());
    for (uint32_t i = 0; i < f.instance.number_of_frames; ++i) {
      Frame frame;
      frame.instance_index = index;
      frame.frame_number = i + 1;
      frame.geometry = f.per_frame.empty() ? f.base : f.per_frame[i];
      if (f.tiles_across > 0) {
        const uint32_t tile = i % (f.tiles_across * f.tiles_down);   // further focal planes / paths repeat the grid
        frame.geometry.total_pixel_column = (tile % f.tiles_across) * frame.geometry.columns + 1;
        frame.geometry.total_pixel_row = (tile / f.tiles_across) * frame.geometry.rows + 1;
      }
      if (!frame.geometry.has_position) volume = false;
      series.frames.push_back(frame);
    }
    series.instances.push_back(std::move(f.instance));
    std::vector<FrameGeometry>().swap(f.per_frame);  // keep the peak at about one copy of the geometry
  }
  const uint32_t spp = series.frames.empty() ? 1 : series.frames.front().geometry.samples_per_pixel;
  for (const Frame& f : series.frames) {
    if (f.geometry.samples_per_pixel != spp && series.error.empty()) {
      series.error = "inconsistent geometry: mixed SamplesPerPixel in one series";
    }
  }
  // Without a position for every frame the series is a set of images, kept in instance/frame order.
  if (volume) {
    std::string error = SortVolume(series);
    if (series.error.empty()) series.error = std::move(error);
    // A spacing is only reported for a regular volume.
    if (!series.error.empty()) series.spacing_between_slices = 0;
  }
  return series;
}

}  // namespace

const std::string* FindTag(const TagMap& tags, uint32_t tag) {
  auto it = tags.find(tag);
  return it == tags.end() ? nullptr : &it->second;
}

ScanResult ScanFiles(const std::vector<std::filesystem::path>& files, const ScanLimits& limits) {
  ScanResult result;
  // study UID -> series UID -> files; std::map keeps studies ordered by UID.
  std::map<std::string, std::map<std::string, SeriesBuild>> studies;
  std::map<std::string, fs::path> seen_sops;
  uint64_t looked_at = 0;
  uint64_t scan_frames = 0;
  for (const fs::path& path : files) {
    if (++looked_at > limits.max_files) {
      result.rejected.push_back({path, "over the limit of " + std::to_string(limits.max_files) + " files per scan"});
      continue;
    }
    ParsedFile parsed;
    std::string reason;
    SeriesBuild* build = nullptr;  // the file's series when it already exists
    TagMap first_tags;
    bool is_first = false;
    try {
      DcmFileFormat file;
      if (!ParseFile(path, limits, file, parsed, reason)) {
        result.rejected.push_back({path, reason});
        continue;
      }
      if (auto it = seen_sops.find(parsed.instance.sop_instance_uid); it != seen_sops.end()) {
        result.rejected.push_back({path, "duplicate SOPInstanceUID " + parsed.instance.sop_instance_uid +
                                             " (kept " + it->second.string() + ")"});
        continue;
      }
      if (auto study = studies.find(parsed.study_uid); study != studies.end()) {
        if (auto series = study->second.find(parsed.series_uid); series != study->second.end()) {
          build = &series->second;
        }
      }
      // The frame limits are checked before any per-frame geometry is read, so an over-limit file costs
      // nothing beyond its header parse.
      const uint64_t frames = parsed.instance.number_of_frames;
      const uint64_t series_frames = (build != nullptr ? build->frames : 0) + frames;
      if (series_frames > limits.max_frames_per_series) {
        result.rejected.push_back({path, "series " + parsed.series_uid + " would have " +
                                             std::to_string(series_frames) + " frames, over the limit of " +
                                             std::to_string(limits.max_frames_per_series) + " frames per series"});
        continue;
      }
      if (scan_frames + frames > limits.max_frames_per_scan) {
        result.rejected.push_back({path, "scan would hold " + std::to_string(scan_frames + frames) +
                                             " frames, over the limit of " +
                                             std::to_string(limits.max_frames_per_scan) + " frames per scan"});
        continue;
      }
      ReadFunctionalGroups(file.getDataset(), parsed);
      // Only the file that sorts first in its series so far has its tags rendered; in the usual folder order
      // (paths sorted, InstanceNumber rising) that is one TagMap per series.
      is_first = build == nullptr ||
                 InstanceBefore(parsed.instance.instance_number, parsed.instance.path,
                                build->files[build->first].instance.instance_number,
                                build->files[build->first].instance.path);
      if (is_first) first_tags = RenderTags(file);
    } catch (const std::exception& e) {  // e.g. std::bad_alloc on absurd lengths: reject, never crash
      result.rejected.push_back({path, std::string("cannot parse: ") + e.what()});
      continue;
    }
    scan_frames += parsed.instance.number_of_frames;
    seen_sops.emplace(parsed.instance.sop_instance_uid, path);
    if (build == nullptr) {
      build = &studies[parsed.study_uid][parsed.series_uid];
      build->series_number = parsed.series_number;
    }
    build->frames += parsed.instance.number_of_frames;
    if (is_first) {
      build->tags = std::move(first_tags);
      build->first = build->files.size();
    }
    build->files.push_back(std::move(parsed));
  }
  for (auto& [study_uid, series_map] : studies) {
    Study study;
    study.study_instance_uid = study_uid;
    std::vector<std::pair<int64_t, const std::string*>> order;
    for (auto& [series_uid, build] : series_map) order.emplace_back(build.series_number, &series_uid);
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });  // UID order on ties
    for (const auto& [number, uid] : order) {
      (void)number;
      study.series.push_back(BuildSeries(*uid, series_map[*uid]));
    }
    study.tags = study.series.front().tags;
    result.studies.push_back(std::move(study));
  }
  return result;
}

StatusOr<ScanResult> ScanDirectory(const std::filesystem::path& dir, const ScanLimits& limits) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound("not a directory: " + dir.string());
  std::vector<fs::path> files;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) return Unavailable("cannot list " + dir.string() + ": " + ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return Unavailable("cannot list " + dir.string() + ": " + ec.message());
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;
    if (files.size() >= limits.max_files) {
      return ResourceExhausted(dir.string() + " holds more than " + std::to_string(limits.max_files) + " files");
    }
    files.push_back(it->path());
  }
  if (ec) return Unavailable("cannot list " + dir.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return ScanFiles(files, limits);
}

}  // namespace aihub::dicom
