// ReadFrame: decodes one frame on demand. Each call opens and parses the file itself (values above
// kLazyLoadThreshold stay on disk), so concurrent calls share no DCMTK objects and memory stays at one frame.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>

#include "dicom/dicom_file.h"
#include "dicom/study.h"

namespace aihub::dicom {
namespace {

struct PixelModule {
  Uint16 rows = 0;
  Uint16 columns = 0;
  Uint16 samples_per_pixel = 1;
  Uint16 bits_allocated = 0;
  Uint16 bits_stored = 0;
  Uint16 high_bit = 0;
  Uint16 pixel_representation = 0;
  Uint16 planar_configuration = 0;
  std::string photometric;
};

Status ReadPixelModule(DcmDataset* ds, PixelModule& pm) {
  if (ds->findAndGetUint16(DCM_Rows, pm.rows).bad() || ds->findAndGetUint16(DCM_Columns, pm.columns).bad() ||
      ds->findAndGetUint16(DCM_BitsAllocated, pm.bits_allocated).bad()) {
    return DataLoss("pixel module incomplete (Rows, Columns or BitsAllocated missing)");
  }
  if (ds->findAndGetUint16(DCM_SamplesPerPixel, pm.samples_per_pixel).bad()) pm.samples_per_pixel = 1;
  if (ds->findAndGetUint16(DCM_BitsStored, pm.bits_stored).bad() || pm.bits_stored == 0 ||
      pm.bits_stored > pm.bits_allocated) {
    pm.bits_stored = pm.bits_allocated;
  }
  if (ds->findAndGetUint16(DCM_HighBit, pm.high_bit).bad() || pm.high_bit >= pm.bits_allocated ||
      pm.high_bit + 1 < pm.bits_stored) {
    pm.high_bit = static_cast<Uint16>(pm.bits_stored - 1);
  }
  ds->findAndGetUint16(DCM_PixelRepresentation, pm.pixel_representation);
  ds->findAndGetUint16(DCM_PlanarConfiguration, pm.planar_configuration);
  OFString pi;
  ds->findAndGetOFString(DCM_PhotometricInterpretation, pi);
  pm.photometric = pi.c_str();
  while (!pm.photometric.empty() && pm.photometric.back() == ' ') pm.photometric.pop_back();
  return Status::Ok();
}

// Stored values -> modality values, one loop per (BitsAllocated, signedness) so that the body is branch-free
// 32-bit integer work and one multiply-add, which GCC vectorises (decode.cpp is built with -O3): shift out the
// bits below the stored range, then shift the stored bits to the top and back, which masks the bits above
// HighBit and sign-extends in one step. memcpy reads the possibly unaligned staging bytes; it compiles to a load.
// noinline: inlined into the large ReadFrameImpl, GCC 12 leaves these loops scalar. On x86-64 an AVX2 clone is
// picked at load time where the CPU has it (twice the lanes of the SSE2 baseline).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define AIHUB_PIXEL_LOOP __attribute__((noinline, target_clones("avx2", "default")))
#else
#define AIHUB_PIXEL_LOOP __attribute__((noinline))
#endif
template <typename T, bool kSigned>
AIHUB_PIXEL_LOOP void ToModality(const uint8_t* raw, uint64_t count, unsigned shift, unsigned bits_stored, float slope,
                float intercept, float* out) {
  static_assert(sizeof(T) <= 2, "32-bit samples need double precision, see ToModality32");
  const unsigned up = 32 - bits_stored;  // bits_stored <= 16 here
  for (uint64_t i = 0; i < count; ++i) {
    T stored;
    std::memcpy(&stored, raw + i * sizeof(T), sizeof(T));
    const uint32_t top = (uint32_t{stored} >> shift) << up;
    // Both casts give values that fit in an int32, whose conversion to float vectorises (unsigned does not).
    const int32_t value = kSigned ? static_cast<int32_t>(top) >> up : static_cast<int32_t>(top >> up);
    out[i] = static_cast<float>(value) * slope + intercept;
  }
}

// 32-bit samples: values up to 2^32 lose digits in float, so the rescale is done in double as before.
template <bool kSigned>
AIHUB_PIXEL_LOOP void ToModality32(const uint8_t* raw, uint64_t count, unsigned shift, unsigned bits_stored, double slope,
                  double intercept, float* out) {
  const unsigned up = 32 - bits_stored;  // 0 when all 32 bits are stored
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t stored;
    std::memcpy(&stored, raw + i * sizeof(stored), sizeof(stored));
    const uint32_t top = (stored >> shift) << up;
    const double value = kSigned ? static_cast<double>(static_cast<int32_t>(top) >> up)
                                 : static_cast<double>(top >> up);
    out[i] = static_cast<float>(value * slope + intercept);
  }
}

// Picks the loop for the pixel module; ReadPixelModule guarantees 1 <= bits_stored and
// bits_stored <= high_bit + 1 <= bits_allocated, so every shift below is in range.
void ConvertToModality(const uint8_t* raw, uint64_t count, const PixelModule& pm, double slope, double intercept,
                       float* out) {
  const unsigned shift = pm.high_bit + 1u - pm.bits_stored;
  const unsigned bits = pm.bits_stored;
  const bool is_signed = pm.pixel_representation == 1;
  const float fs = static_cast<float>(slope), fi = static_cast<float>(intercept);
  switch (pm.bits_allocated) {
    case 8:
      is_signed ? ToModality<uint8_t, true>(raw, count, shift, bits, fs, fi, out)
                : ToModality<uint8_t, false>(raw, count, shift, bits, fs, fi, out);
      break;
    case 16:
      is_signed ? ToModality<uint16_t, true>(raw, count, shift, bits, fs, fi, out)
                : ToModality<uint16_t, false>(raw, count, shift, bits, fs, fi, out);
      break;
    default:
      is_signed ? ToModality32<true>(raw, count, shift, bits, slope, intercept, out)
                : ToModality32<false>(raw, count, shift, bits, slope, intercept, out);
      break;
  }
}

uint8_t Clamp8(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

void YbrToRgb(uint8_t y, uint8_t cb, uint8_t cr, uint8_t* rgb) {
  // YBR_FULL (PS3.3 C.7.6.3.1.2), the inverse of the JPEG/JFIF transform.
  const double cbd = cb - 128.0, crd = cr - 128.0;
  rgb[0] = Clamp8(y + 1.402 * crd);
  rgb[1] = Clamp8(y - 0.344136 * cbd - 0.714136 * crd);
  rgb[2] = Clamp8(y + 1.772 * cbd);
}

Status ToRgb(const uint8_t* raw, const PixelModule& pm, const std::string& model, bool native, uint8_t* out) {
  const uint64_t n = uint64_t{pm.rows} * pm.columns;
  if (model == "RGB") {
    if (pm.planar_configuration == 1) {
      for (uint64_t i = 0; i < n; ++i) {
        out[3 * i] = raw[i];
        out[3 * i + 1] = raw[n + i];
        out[3 * i + 2] = raw[2 * n + i];
      }
    } else {
      std::memcpy(out, raw, n * 3);
    }
    return Status::Ok();
  }
  if (model == "YBR_FULL") {
    for (uint64_t i = 0; i < n; ++i) {
      if (pm.planar_configuration == 1) {
        YbrToRgb(raw[i], raw[n + i], raw[2 * n + i], out + 3 * i);
      } else {
        YbrToRgb(raw[3 * i], raw[3 * i + 1], raw[3 * i + 2], out + 3 * i);
      }
    }
    return Status::Ok();
  }
  if (model == "YBR_FULL_422" && native) {
    // Each pair of pixels in a row is stored as Y1 Y2 Cb Cr; an odd last column has its own group.
    const uint8_t* p = raw;
    for (uint32_t r = 0; r < pm.rows; ++r) {
      uint8_t* row = out + uint64_t{r} * pm.columns * 3;
      for (uint32_t c = 0; c < pm.columns; c += 2) {
        const uint8_t y1 = p[0], y2 = p[1], cb = p[2], cr = p[3];
        p += 4;
        YbrToRgb(y1, cb, cr, row + 3 * c);
        if (c + 1 < pm.columns) YbrToRgb(y2, cb, cr, row + 3 * (c + 1));
      }
    }
    return Status::Ok();
  }
  return FailedPrecondition("colour model " + model + " cannot be converted to RGB8");
}

// PackBits-decodes one RLE segment into `out` (exactly `size` bytes); false when the segment is short or bad.
bool DecodeRleSegment(const uint8_t* in, uint64_t in_size, uint8_t* out, uint64_t size, uint64_t stride) {
  uint64_t i = 0, o = 0;
  while (o < size && i < in_size) {
    const int8_t header = static_cast<int8_t>(in[i++]);
    if (header >= 0) {
      const uint64_t n = static_cast<uint64_t>(header) + 1;
      if (i + n > in_size || o + n > size) return false;
      for (uint64_t k = 0; k < n; ++k) out[(o + k) * stride] = in[i + k];
      i += n;
      o += n;
    } else if (header != -128) {
      const uint64_t n = static_cast<uint64_t>(1 - header);
      if (i >= in_size || o + n > size) return false;
      const uint8_t value = in[i++];
      for (uint64_t k = 0; k < n; ++k) out[(o + k) * stride] = value;
      o += n;
    }
  }
  return o == size;
}

// RLE Lossless (PS3.5 Annex G), decoded here rather than by DCMTK: DCMTK 3.6.7's RLE decoder can read out of
// bounds on corrupt segments. Writes the frame in native little-endian layout, planar as PlanarConfiguration says.
Status DecodeRleFrame(DcmPixelData* pixel_data, uint32_t frame_number, uint32_t frames, const PixelModule& pm,
                      uint8_t* out, uint64_t out_size) {
  E_TransferSyntax original = EXS_Unknown;
  const DcmRepresentationParameter* param = nullptr;
  pixel_data->getOriginalRepresentationKey(original, param);
  DcmPixelSequence* sequence = nullptr;
  if (pixel_data->getEncapsulatedRepresentation(original, param, sequence).bad() || sequence == nullptr) {
    return DataLoss("RLE pixel data has no fragments");
  }
  const unsigned long fragments = sequence->card() > 0 ? sequence->card() - 1 : 0;
  // One fragment per frame (PS3.5 G.5); a single frame split over fragments is joined.
  unsigned long first = frame_number, last = frame_number;
  if (frames == 1 && fragments >= 1) {
    first = 1;
    last = fragments;
  } else if (fragments != frames) {
    return DataLoss("RLE pixel data has " + std::to_string(fragments) + " fragments for " + std::to_string(frames) +
                    " frames");
  }
  std::vector<uint8_t> joined;
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  for (unsigned long f = first; f <= last; ++f) {
    DcmPixelItem* item = nullptr;
    Uint8* bytes = nullptr;
    if (sequence->getItem(item, f).bad() || item == nullptr || item->getUint8Array(bytes).bad()) {
      return DataLoss("cannot read RLE fragment " + std::to_string(f));
    }
    if (first == last) {
      data = bytes;
      size = item->getLength();
    } else {
      joined.insert(joined.end(), bytes, bytes + item->getLength());
    }
  }
  if (first != last) {
    data = joined.data();
    size = joined.size();
  }
  if (data == nullptr || size < 64) return DataLoss("RLE header missing");
  auto read32 = [data](uint64_t at) {
    return uint32_t{data[at]} | uint32_t{data[at + 1]} << 8 | uint32_t{data[at + 2]} << 16 |
           uint32_t{data[at + 3]} << 24;
  };
  const uint32_t bytes_per_sample = pm.bits_allocated / 8;
  const uint32_t segments = read32(0);
  if (segments != pm.samples_per_pixel * bytes_per_sample || segments > 15) {
    return DataLoss("RLE header has " + std::to_string(segments) + " segments, " +
                    std::to_string(pm.samples_per_pixel * bytes_per_sample) + " expected");
  }
  const uint64_t pixels = uint64_t{pm.rows} * pm.columns;
  if (out_size < pixels * segments) return Internal("RLE output buffer too small");
  for (uint32_t s = 0; s < segments; ++s) {
    const uint64_t begin = read32(4 + 4 * s);
    const uint64_t end = s + 1 < segments ? read32(8 + 4 * s) : size;
    if (begin < 64 || begin > end || end > size) return DataLoss("RLE segment offsets out of range");
    // Segments hold the most significant byte of each sample first.
    const uint32_t sample = s / bytes_per_sample;
    const uint32_t byte = bytes_per_sample - 1 - s % bytes_per_sample;
    uint8_t* target;
    uint64_t stride;
    if (pm.planar_configuration == 1) {
      target = out + sample * pixels * bytes_per_sample + byte;
      stride = bytes_per_sample;
    } else {
      target = out + sample * bytes_per_sample + byte;
      stride = uint64_t{pm.samples_per_pixel} * bytes_per_sample;
    }
    if (!DecodeRleSegment(data + begin, end - begin, target, pixels, stride)) {
      return DataLoss("RLE segment " + std::to_string(s) + " is corrupt or short");
    }
  }
  return Status::Ok();
}

}  // namespace

void RegisterCodecs() {
  static std::once_flag once;
  std::call_once(once, [] {
    DJDecoderRegistration::registerCodecs();  // converts YCbCr to RGB as the photometric interpretation says
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

namespace {

Status ReadFrameImpl(const Series& series, uint32_t frame_index, aihub_pixel_format format, void* buffer,
                     uint64_t buffer_size) {
  if (frame_index >= series.frames.size()) {
    return InvalidArgument("frame index " + std::to_string(frame_index) + " out of range (series has " +
                           std::to_string(series.frames.size()) + " frames)");
  }
  const Frame& frame = series.frames[frame_index];
  if (frame.instance_index >= series.instances.size()) return Internal("frame refers to a missing instance");
  const Instance& instance = series.instances[frame.instance_index];
  const FrameGeometry& g = frame.geometry;
  const std::string problem = internal::TransferSyntaxProblem(instance.transfer_syntax_uid);
  if (!problem.empty()) return Unimplemented(problem);

  const uint64_t pixels = uint64_t{g.rows} * g.columns;
  uint64_t needed = 0;
  if (format == AIHUB_PIXEL_FLOAT32_MODALITY) {
    if (g.samples_per_pixel != 1 || (g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME1 &&
                                     g.photometric != AIHUB_PHOTOMETRIC_MONOCHROME2)) {
      return FailedPrecondition("FLOAT32_MODALITY needs a MONOCHROME1/2 frame");
    }
    needed = pixels * sizeof(float);
  } else if (format == AIHUB_PIXEL_RGB8) {
    if (g.samples_per_pixel != 3 ||
        (g.photometric != AIHUB_PHOTOMETRIC_RGB && g.photometric != AIHUB_PHOTOMETRIC_YBR)) {
      return FailedPrecondition("RGB8 needs an RGB or YBR colour frame");
    }
    if (g.bits_allocated != 8) return FailedPrecondition("RGB8 needs 8-bit colour data");
    needed = pixels * 3;
  } else {
    return InvalidArgument("unknown pixel format " + std::to_string(static_cast<int>(format)));
  }
  if (buffer == nullptr || buffer_size < needed) {
    return InvalidArgument("buffer of " + std::to_string(buffer_size) + " bytes too small, " +
                           std::to_string(needed) + " needed");
  }

  RegisterCodecs();
  DcmFileFormat file;
  // Parses up to the end of PixelData (every fragment item of encapsulated data, which the decoders need); what
  // follows PixelData is never needed, and values above the lazy-load threshold stay in the file.
  OFCondition cond = internal::LoadHeader(instance.path, file);
  if (cond.bad()) return DataLoss("cannot read " + instance.path.string() + ": " + cond.text());
  DcmDataset* ds = file.getDataset();
  PixelModule pm;
  if (Status s = ReadPixelModule(ds, pm); !s.ok()) return s;
  if (pm.rows != g.rows || pm.columns != g.columns || pm.samples_per_pixel != g.samples_per_pixel ||
      pm.bits_allocated != g.bits_allocated) {
    return DataLoss(instance.path.string() + " changed since it was scanned");
  }
  if (pm.bits_allocated != 8 && pm.bits_allocated != 16 && pm.bits_allocated != 32) {
    return FailedPrecondition("unsupported BitsAllocated " + std::to_string(pm.bits_allocated));
  }
  DcmElement* element = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, element).bad() || element == nullptr ||
      element->ident() != EVR_PixelData) {
    return DataLoss("no PixelData in " + instance.path.string());
  }
  DcmPixelData* pixel_data = OFstatic_cast(DcmPixelData*, element);
  const DcmXfer xfer(ds->getOriginalXfer());

  // The decoders write stored values here; they are then converted into the caller's format. Allocated per
  // call (not zero-filled) so that no thread keeps a whole-slide-sized buffer alive between calls.
  std::unique_ptr<uint8_t[]> staging;
  std::string model;
  uint64_t frame_bytes = 0;
  if (!xfer.isEncapsulated()) {
    frame_bytes = internal::NativeFrameBytes(pm.rows, pm.columns, pm.samples_per_pixel, pm.bits_allocated,
                                             pm.photometric);
    const uint64_t offset = uint64_t{frame.frame_number - 1} * frame_bytes;
    if (frame_bytes == 0 || offset + frame_bytes > element->getLength()) {
      return DataLoss("PixelData too short for frame " + std::to_string(frame.frame_number));
    }
    staging.reset(new uint8_t[frame_bytes + 1]);
    // Reads only this frame's bytes from the file, swapped to host byte order.
    cond = element->getPartialValue(staging.get(), static_cast<Uint32>(offset), static_cast<Uint32>(frame_bytes));
    if (cond.bad()) return DataLoss("cannot read frame " + std::to_string(frame.frame_number) + ": " + cond.text());
    element->compact();
    model = pm.photometric;
  } else if (xfer.getXfer() == EXS_RLELossless) {
    Sint32 frames = 1;
    if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1) frames = 1;
    if (frame.frame_number > static_cast<uint32_t>(frames)) return DataLoss("frame beyond NumberOfFrames");
    frame_bytes = pixels * pm.samples_per_pixel * (pm.bits_allocated / 8);
    staging.reset(new uint8_t[frame_bytes]);
    if (Status s = DecodeRleFrame(pixel_data, frame.frame_number, static_cast<uint32_t>(frames), pm, staging.get(),
                                  frame_bytes);
        !s.ok()) {
      return s;
    }
    model = pm.photometric;
  } else {
    Uint32 size = 0;
    if (pixel_data->getUncompressedFrameSize(ds, size).bad() || size == 0) {
      return DataLoss("cannot size the decoded frame");
    }
    frame_bytes = size;
    staging.reset(new uint8_t[frame_bytes + 1]);  // decoders may write one pad byte for odd sizes
    // 0: the codec finds the frame's first fragment itself, from the offset table when there is one, else by
    // walking the fragments from the start; without an offset table reading every frame of an N-frame object
    // is O(N^2) in fragment visits. Not cached: each call parses its own file (see ReadFrame's thread safety),
    // and multi-frame JPEG without an offset table is rare next to one-fragment-per-frame data.
    Uint32 start_fragment = 0;
    OFString decoded_model;
    cond = pixel_data->getUncompressedFrame(ds, frame.frame_number - 1, start_fragment, staging.get(),
                                            static_cast<Uint32>(frame_bytes + 1), decoded_model);
    if (cond.bad()) {
      return DataLoss("cannot decode frame " + std::to_string(frame.frame_number) + " (" + xfer.getXferName() +
                      "): " + cond.text());
    }
    model = decoded_model.empty() ? pm.photometric : std::string(decoded_model.c_str());
  }

  if (format == AIHUB_PIXEL_RGB8) {
    if (pm.bits_allocated != 8) return FailedPrecondition("RGB8 needs 8-bit colour data");
    // Decoders that convert YBR report the colour model they produced (e.g. JPEG baseline gives "RGB").
    return ToRgb(staging.get(), pm, model, !xfer.isEncapsulated(), static_cast<uint8_t*>(buffer));
  }
  if (pm.samples_per_pixel != 1) return FailedPrecondition("FLOAT32_MODALITY needs a monochrome frame");
  ConvertToModality(staging.get(), pixels, pm, g.rescale_slope, g.rescale_intercept, static_cast<float*>(buffer));
  return Status::Ok();
}

}  // namespace

Status ReadFrame(const Series& series, uint32_t frame_index, aihub_pixel_format format, void* buffer,
                 uint64_t buffer_size) {
  try {
    return ReadFrameImpl(series, frame_index, format, buffer, buffer_size);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("out of memory decoding frame " + std::to_string(frame_index));
  }
}

}  // namespace aihub::dicom
