// ReadFrame: decodes one frame on demand. Each call opens and parses the file itself (values above
// kLazyLoadThreshold stay on disk), so concurrent calls share no DCMTK objects and memory stays at one frame.
// Encapsulated multi-frame objects (whole-slide images) are the exception: their fragment positions are indexed
// once per file and cached (see FragmentIndexFor), because DCMTK re-parses every fragment item on each load.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <cstdio>
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

Status DecodeRleBytes(const uint8_t* data, uint64_t size, const PixelModule& pm, uint8_t* out, uint64_t out_size);

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
  return DecodeRleBytes(data, size, pm, out, out_size);
}

// One RLE frame from its bytes (header and segments).
Status DecodeRleBytes(const uint8_t* data, uint64_t size, const PixelModule& pm, uint8_t* out, uint64_t out_size) {
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

// ---------------------------------------------------------------------------------------------------------------
// Encapsulated multi-frame objects (whole-slide images: tens of thousands of fragments). DCMTK parses every
// fragment item header each time a file is loaded, which makes reading all N frames O(N^2). Instead the fragment
// positions and the pixel module are found once per file (own walk over the top-level elements, explicit VR
// little endian as every encapsulated transfer syntax is) and kept in a small cache keyed by path, size and
// modification time; a frame is then one read of its fragment(s).

struct FragmentIndex {
  PixelModule pm;
  E_TransferSyntax xfer = EXS_Unknown;
  std::vector<uint32_t> offset_table;                  // Basic Offset Table (may be empty)
  std::vector<std::pair<uint64_t, uint32_t>> fragments;  // file offset and length of each fragment's bytes
  uint64_t first_fragment_item = 0;                    // file offset of the first fragment's item tag
};

class FileReader {
 public:
  explicit FileReader(const std::filesystem::path& path) : f_(std::fopen(path.c_str(), "rb")) {}
  ~FileReader() {
    if (f_ != nullptr) std::fclose(f_);
  }
  bool ok() const { return f_ != nullptr; }
  bool Read(void* out, size_t n) { return std::fread(out, 1, n, f_) == n; }
  bool Skip(uint64_t n) { return fseeko(f_, static_cast<off_t>(n), SEEK_CUR) == 0; }
  bool Seek(uint64_t at) { return fseeko(f_, static_cast<off_t>(at), SEEK_SET) == 0; }
  uint64_t Tell() { return static_cast<uint64_t>(ftello(f_)); }
  bool Tag(uint16_t* group, uint16_t* element) {
    uint8_t b[4];
    if (!Read(b, 4)) return false;
    *group = static_cast<uint16_t>(b[0] | b[1] << 8);
    *element = static_cast<uint16_t>(b[2] | b[3] << 8);
    return true;
  }
  bool U32(uint32_t* v) {
    uint8_t b[4];
    if (!Read(b, 4)) return false;
    *v = uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
    return true;
  }

 private:
  FILE* f_;
};

constexpr uint32_t kUndefinedLength = 0xFFFFFFFFu;

// Reads one explicit-VR-LE element header after its tag: the value length (kUndefinedLength for undefined).
bool ElementLength(FileReader& in, uint32_t* length) {
  char vr[2];
  if (!in.Read(vr, 2)) return false;
  static const char* const kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
  for (const char* l : kLong) {
    if (vr[0] == l[0] && vr[1] == l[1]) return in.Skip(2) && in.U32(length);
  }
  uint8_t b[2];
  if (!in.Read(b, 2)) return false;
  *length = uint32_t{b[0]} | uint32_t{b[1]} << 8;
  return true;
}

bool SkipUndefinedSequence(FileReader& in, int depth);

// Skips the elements of an item of undefined length, up to and including its Item Delimitation.
bool SkipUndefinedItem(FileReader& in, int depth) {
  for (;;) {
    uint16_t group = 0, element = 0;
    if (!in.Tag(&group, &element)) return false;
    if (group == 0xFFFE) {
      uint32_t ignored = 0;
      return element == 0xE00D && in.U32(&ignored);
    }
    uint32_t length = 0;
    if (!ElementLength(in, &length)) return false;
    if (length == kUndefinedLength ? !SkipUndefinedSequence(in, depth + 1) : !in.Skip(length)) return false;
  }
}

// Skips the items of a sequence of undefined length, up to and including its Sequence Delimitation.
bool SkipUndefinedSequence(FileReader& in, int depth) {
  if (depth > 16) return false;   // nesting this deep is not a real data set
  for (;;) {
    uint16_t group = 0, element = 0;
    uint32_t length = 0;
    if (!in.Tag(&group, &element) || !in.U32(&length) || group != 0xFFFE) return false;
    if (element == 0xE0DD) return true;
    if (element != 0xE000) return false;
    if (length == kUndefinedLength ? !SkipUndefinedItem(in, depth) : !in.Skip(length)) return false;
  }
}

StatusOr<std::shared_ptr<const FragmentIndex>> BuildFragmentIndex(const std::filesystem::path& path) {
  auto index = std::make_shared<FragmentIndex>();
  {
    DcmFileFormat file;
    if (OFCondition c = internal::LoadHeader(path, file); c.bad()) {
      return DataLoss("cannot read " + path.string() + ": " + c.text());
    }
    if (Status st = ReadPixelModule(file.getDataset(), index->pm); !st.ok()) return st;
    index->xfer = file.getDataset()->getOriginalXfer();
  }
  FileReader in(path);
  char magic[4];
  if (!in.ok() || !in.Seek(128) || !in.Read(magic, 4) || std::memcmp(magic, "DICM", 4) != 0) {
    return DataLoss(path.string() + ": no DICOM preamble");
  }
  for (;;) {
    uint16_t group = 0, element = 0;
    uint32_t length = 0;
    if (!in.Tag(&group, &element) || !ElementLength(in, &length)) {
      return DataLoss(path.string() + ": data set ends before PixelData");
    }
    if (group == 0x7FE0 && element == 0x0010) {
      if (length != kUndefinedLength) return DataLoss(path.string() + ": PixelData is not encapsulated");
      bool first = true;
      for (;;) {
        uint16_t item_group = 0, item_element = 0;
        uint32_t item_length = 0;
        const uint64_t item_at = in.Tell();
        if (!in.Tag(&item_group, &item_element) || !in.U32(&item_length) || item_group != 0xFFFE) {
          return DataLoss(path.string() + ": fragment items cut short");
        }
        if (item_element == 0xE0DD) break;
        if (item_element != 0xE000 || item_length == kUndefinedLength) {
          return DataLoss(path.string() + ": corrupt fragment item");
        }
        if (first) {
          first = false;
          for (uint32_t k = 0; k + 4 <= item_length; k += 4) {
            uint32_t v = 0;
            if (!in.U32(&v)) return DataLoss(path.string() + ": offset table cut short");
            index->offset_table.push_back(v);
          }
          if (!in.Skip(item_length % 4)) return DataLoss(path.string() + ": offset table cut short");
          continue;
        }
        if (index->fragments.empty()) index->first_fragment_item = item_at;
        index->fragments.emplace_back(in.Tell(), item_length);
        if (!in.Skip(item_length)) return DataLoss(path.string() + ": fragment cut short");
      }
      return std::shared_ptr<const FragmentIndex>(std::move(index));
    }
    if (length == kUndefinedLength ? !SkipUndefinedSequence(in, 0) : !in.Skip(length)) {
      return DataLoss(path.string() + ": cannot walk the data set");
    }
  }
}

// The cached index of a file, rebuilt when its size or modification time changed.
StatusOr<std::shared_ptr<const FragmentIndex>> FragmentIndexFor(const std::filesystem::path& path) {
  struct Entry {
    uint64_t size = 0;
    std::filesystem::file_time_type mtime;
    std::shared_ptr<const FragmentIndex> index;
    uint64_t used = 0;
  };
  static std::mutex mu;
  static std::map<std::string, Entry> cache;
  static uint64_t clock = 0;
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  const auto mtime = std::filesystem::last_write_time(path, ec);
  if (ec) return DataLoss("cannot stat " + path.string() + ": " + ec.message());
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(path.string());
    if (it != cache.end() && it->second.size == size && it->second.mtime == mtime) {
      it->second.used = ++clock;
      return it->second.index;
    }
  }
  auto built = BuildFragmentIndex(path);
  if (!built.ok()) return built.status();
  std::lock_guard<std::mutex> lock(mu);
  constexpr size_t kMaxFiles = 32;   // a few open slides; one index is ~16 bytes per fragment
  if (cache.size() >= kMaxFiles) {
    auto oldest = std::min_element(cache.begin(), cache.end(),
                                   [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
    cache.erase(oldest);
  }
  cache[path.string()] = Entry{size, mtime, *built, ++clock};
  return *built;
}

// The bytes of one frame of an indexed multi-frame object: its fragment when there is one per frame, else the
// fragments between its Basic Offset Table entries. NOT_FOUND when the frame's fragments cannot be told apart
// (several fragments per frame and no offset table): the caller decodes the slow way.
StatusOr<std::string> FrameBytes(const std::filesystem::path& path, const FragmentIndex& index, uint32_t frame_number,
                                 uint32_t frames) {
  size_t first = 0, last = 0;   // fragment range [first, last)
  if (index.fragments.size() == frames) {
    first = frame_number - 1;
    last = frame_number;
  } else if (index.offset_table.size() == frames) {
    // Offsets count from the first fragment item's tag; each item has an 8-byte header.
    auto fragment_at = [&](uint64_t offset) -> size_t {
      for (size_t k = 0; k < index.fragments.size(); ++k) {
        if (index.fragments[k].first - 8 - index.first_fragment_item == offset) return k;
      }
      return index.fragments.size();
    };
    first = fragment_at(index.offset_table[frame_number - 1]);
    last = frame_number < frames ? fragment_at(index.offset_table[frame_number]) : index.fragments.size();
    if (first >= last || first >= index.fragments.size()) return DataLoss("offset table does not match fragments");
  } else {
    return NotFound("fragments not separable per frame");
  }
  FileReader in(path);
  std::string bytes;
  for (size_t k = first; k < last; ++k) {
    const auto& [offset, length] = index.fragments[k];
    const size_t at = bytes.size();
    bytes.resize(at + length);
    if (!in.ok() || !in.Seek(offset) || !in.Read(bytes.data() + at, length)) {
      return DataLoss("cannot read fragment " + std::to_string(k + 1) + " of " + path.string());
    }
  }
  return bytes;
}

// Decodes one compressed frame from its bytes with DCMTK's codecs (JPEG, JPEG-LS): a one-frame in-memory data set.
Status DecodeCompressedBytes(const FragmentIndex& index, std::string bytes, uint8_t* out, uint64_t out_size,
                             std::string* model) {
  DcmDataset ds;
  const PixelModule& pm = index.pm;
  ds.putAndInsertUint16(DCM_Rows, pm.rows);
  ds.putAndInsertUint16(DCM_Columns, pm.columns);
  ds.putAndInsertUint16(DCM_SamplesPerPixel, pm.samples_per_pixel);
  ds.putAndInsertUint16(DCM_BitsAllocated, pm.bits_allocated);
  ds.putAndInsertUint16(DCM_BitsStored, pm.bits_stored);
  ds.putAndInsertUint16(DCM_HighBit, pm.high_bit);
  ds.putAndInsertUint16(DCM_PixelRepresentation, pm.pixel_representation);
  if (pm.samples_per_pixel > 1) ds.putAndInsertUint16(DCM_PlanarConfiguration, pm.planar_configuration);
  ds.putAndInsertString(DCM_PhotometricInterpretation, pm.photometric.c_str());
  ds.putAndInsertString(DCM_NumberOfFrames, "1");
  if (bytes.size() % 2 != 0) bytes.push_back('\0');
  auto* sequence = new DcmPixelSequence(DCM_PixelSequenceTag);
  sequence->insert(new DcmPixelItem(DCM_PixelItemTag));   // empty Basic Offset Table
  auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
  fragment->putUint8Array(reinterpret_cast<const Uint8*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
  sequence->insert(fragment);
  auto* pixel_data = new DcmPixelData(DCM_PixelData);
  pixel_data->putOriginalRepresentation(index.xfer, nullptr, sequence);
  ds.insert(pixel_data);
  Uint32 start_fragment = 0;
  OFString decoded_model;
  OFCondition cond = pixel_data->getUncompressedFrame(&ds, 0, start_fragment, out, static_cast<Uint32>(out_size),
                                                      decoded_model);
  if (cond.bad()) return DataLoss(std::string("cannot decode the frame: ") + cond.text());
  *model = decoded_model.empty() ? pm.photometric : std::string(decoded_model.c_str());
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

// Stored values of one decoded frame -> the caller's format.
Status Convert(const uint8_t* staging, const PixelModule& pm, const std::string& model, bool native,
               const FrameGeometry& g, aihub_pixel_format format, void* buffer) {
  if (format == AIHUB_PIXEL_RGB8) {
    if (pm.bits_allocated != 8) return FailedPrecondition("RGB8 needs 8-bit colour data");
    // Decoders that convert YBR report the colour model they produced (e.g. JPEG baseline gives "RGB").
    return ToRgb(staging, pm, model, native, static_cast<uint8_t*>(buffer));
  }
  if (pm.samples_per_pixel != 1) return FailedPrecondition("FLOAT32_MODALITY needs a monochrome frame");
  ConvertToModality(staging, uint64_t{pm.rows} * pm.columns, pm, g.rescale_slope, g.rescale_intercept,
                    static_cast<float*>(buffer));
  return Status::Ok();
}

// A frame of an encapsulated multi-frame object through the fragment index. NOT_FOUND: use the DCMTK path.
Status ReadIndexedFrame(const Instance& instance, const Frame& frame, const FrameGeometry& g,
                        aihub_pixel_format format, void* buffer) {
  auto index = FragmentIndexFor(instance.path);
  if (!index.ok()) return index.status();
  const PixelModule& pm = (*index)->pm;
  if (pm.rows != g.rows || pm.columns != g.columns || pm.samples_per_pixel != g.samples_per_pixel ||
      pm.bits_allocated != g.bits_allocated) {
    return DataLoss(instance.path.string() + " changed since it was scanned");
  }
  if (pm.bits_allocated != 8 && pm.bits_allocated != 16) return NotFound("left to the general path");
  auto bytes = FrameBytes(instance.path, **index, frame.frame_number, instance.number_of_frames);
  if (!bytes.ok()) return bytes.status();
  const uint64_t frame_bytes = uint64_t{pm.rows} * pm.columns * pm.samples_per_pixel * (pm.bits_allocated / 8);
  std::unique_ptr<uint8_t[]> staging(new uint8_t[frame_bytes + 1]);
  std::string model = pm.photometric;
  if ((*index)->xfer == EXS_RLELossless) {
    if (Status s = DecodeRleBytes(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size(), pm, staging.get(),
                                  frame_bytes);
        !s.ok()) {
      return s;
    }
  } else if (Status s = DecodeCompressedBytes(**index, std::move(bytes).value(), staging.get(), frame_bytes + 1,
                                              &model);
             !s.ok()) {
    return Status(s.code(), "frame " + std::to_string(frame.frame_number) + " of " + instance.path.string() + ": " +
                                s.message());
  }
  return Convert(staging.get(), pm, model, false, g, format, buffer);
}

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
  if (instance.number_of_frames > 1 && DcmXfer(instance.transfer_syntax_uid.c_str()).isEncapsulated()) {
    auto fast = ReadIndexedFrame(instance, frame, g, format, buffer);
    if (fast.code() != AIHUB_NOT_FOUND) return fast;
  }
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

  return Convert(staging.get(), pm, model, !xfer.isEncapsulated(), g, format, buffer);
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
