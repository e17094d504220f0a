#include "dicom/dicom_file.h"

#include <cstring>
#include <fstream>

#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "common/utf8.h"
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

std::string TransferSyntaxUid(DcmFileFormat& file) {
  OFString uid;
  if (file.getMetaInfo() != nullptr && file.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, uid).good() &&
      !uid.empty()) {
    return ReplaceInvalidUtf8(std::string_view(uid.c_str(), uid.length()));
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
