#include "dicom/dicom_file.h"

#include <cstring>
#include <fstream>

#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "dicom/study.h"

namespace aihub::dicom::internal {

OFCondition LoadHeader(const std::filesystem::path& path, DcmFileFormat& file) {
  // Stop at the first tag after PixelData: trailing padding and private groups are never needed, while the
  // PixelData element header (its length, or its fragment structure) tells truncated files apart cheaply.
  return file.loadFileUntilTag(path.c_str(), EXS_Unknown, EGL_noChange, kLazyLoadThreshold, ERM_autoDetect,
                               DcmTagKey(0x7fe0, 0x0011));
}

bool HasPreamble(const std::filesystem::path& path) {
  char head[132] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(head, sizeof(head));
  return in.gcount() == static_cast<std::streamsize>(sizeof(head)) && std::memcmp(head + 128, "DICM", 4) == 0;
}

std::string ToValidUtf8(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size() && static_cast<unsigned char>(bytes[i]) < 0x80) ++i;
  if (i == bytes.size()) return std::string(bytes);  // plain ASCII, the common case
  std::string out(bytes.substr(0, i));
  out.reserve(bytes.size() + 8);
  while (i < bytes.size()) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Sequence length and the allowed range of the second byte (RFC 3629 table), which rules out overlong
    // forms, UTF-16 surrogates and code points above U+10FFFF.
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    size_t valid = 0;  // bytes of a well-formed sequence starting at i; 0 when there is none
    if (n != 0 && i + n <= bytes.size()) {
      valid = n;
      for (size_t k = 1; k < n; ++k) {
        const unsigned char b = static_cast<unsigned char>(bytes[i + k]);
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) {
          valid = 0;
          break;
        }
      }
    }
    if (valid != 0) {
      out.append(bytes.data() + i, valid);
      i += valid;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER, one per bad byte
      ++i;
    }
  }
  return out;
}

std::string TransferSyntaxUid(DcmFileFormat& file) {
  OFString uid;
  if (file.getMetaInfo() != nullptr && file.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, uid).good() &&
      !uid.empty()) {
    return ToValidUtf8(std::string_view(uid.c_str(), uid.length()));
  }
  const DcmXfer xfer(file.getDataset()->getOriginalXfer());
  return xfer.getXfer() == EXS_Unknown ? std::string() : std::string(xfer.getXferID());
}

std::string TransferSyntaxProblem(const std::string& uid) {
  if (uid.empty()) return "unknown transfer syntax (none recorded)";
  const DcmXfer xfer(uid.c_str());
  if (xfer.getXfer() == EXS_Unknown) return "unsupported transfer syntax: unknown UID " + uid;
  if (!xfer.isEncapsulated()) return {};  // native, including big endian and deflated
  RegisterCodecs();
  if (DcmCodecList::canChangeCoding(xfer.getXfer(), EXS_LittleEndianExplicit)) return {};
  return std::string("unsupported transfer syntax: ") + xfer.getXferName() + " (" + uid + "), no decoder available";
}

uint64_t NativeFrameBytes(uint32_t rows, uint32_t columns, uint32_t samples_per_pixel, uint32_t bits_allocated,
                          const std::string& photometric) {
  if (bits_allocated == 0 || bits_allocated % 8 != 0) return 0;
  const uint64_t pixels = uint64_t{rows} * columns;
  const uint64_t bytes = bits_allocated / 8;
  // YBR_FULL_422 stores two luminance samples and one chroma pair per two pixels of a row (PS3.3 C.7.6.3.1.2).
  if (samples_per_pixel == 3 && photometric == "YBR_FULL_422") {
    return uint64_t{rows} * ((columns + 1) / 2) * 4 * bytes;
  }
  return pixels * samples_per_pixel * bytes;
}

}  // namespace aihub::dicom::internal
