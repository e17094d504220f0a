// DicomReceiver: the adapter as a DICOM destination. A C-STORE SCP and C-ECHO SCP (DCMTK dcmnet) with its own AE
// title, an optional calling-AE allow-list, one thread per association (up to max_associations at once) and the
// common storage SOP classes with uncompressed, deflated, JPEG, JPEG-LS, JPEG 2000 and RLE transfer syntaxes.
//
// Each instance is received straight into a spool file (bit-preserving: the bytes as sent), its header is read
// up to the pixel data and checked (SOP Instance UID as announced, valid Study / Series / SOP UIDs), and it is
// written to the spool with fsync BEFORE the success response goes out. A file that fails the checks gets a
// failure status (0xA900 / 0xC000, with the reason in ErrorComment) and is deleted; the association continues. An
// association that aborts mid-transfer leaves only a temporary file, which is deleted: no partial instance is
// ever recorded.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/spool.h"

namespace aihub::adapter {

struct ReceiverSettings {
  std::string ae_title = "AIHUB";
  int port = 11112;
  std::vector<std::string> allowed_callers;   // empty = any calling AE title
  int max_associations = 16;
  int acse_timeout_seconds = 30;
  int dimse_timeout_seconds = 60;
};

class DicomReceiver {
 public:
  // Opens the listening port and starts accepting. `on_stored(study_uid)` runs after each durable instance.
  static StatusOr<std::unique_ptr<DicomReceiver>> Start(const ReceiverSettings& settings, Spool& spool,
                                                        std::function<void(const std::string&)> on_stored);
  ~DicomReceiver();
  // Stops accepting, lets running associations end (they are released by their peers or time out), joins.
  void Stop();

 private:
  class Impl;
  explicit DicomReceiver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace aihub::adapter
