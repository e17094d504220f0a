// StudyTracker: decides when a study is complete and publishes its completion event.
//
// A study in the spool is complete when (first that holds):
//   - the expected instance count is reached (from an HL7 order or QIDO NumberOfStudyRelatedInstances), or
//   - no instance arrived for stable_seconds, or
//   - whoever filled it says so (a finished STOW request, an HL7 order's retrieval: CompleteNow).
// The event carries the study and series tags read from the spooled files' headers (dicom::ScanFiles) and is
// appended to the spool's event log in the same transaction that closes the study, so a crash either completes
// the study with its event or leaves it open to complete after the restart. Late instances re-open a study and its
// next completion is a new generation.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "aihub/v1/adapter.pb.h"
#include "common/status.h"
#include "core/spool.h"

namespace aihub::adapter {

class StudyTracker {
 public:
  StudyTracker(Spool& spool, double stable_seconds);
  ~StudyTracker();

  void Start();
  void Stop();

  // An instance arrived (wakes the loop for count-based completion).
  void Poke();
  // Completes the study now with this trigger and context (e.g. after an order's WADO-RS retrieval).
  StatusOr<StoredEvent> CompleteNow(const std::string& study_uid, v1::Trigger trigger, const std::string& calling_ae,
                                    const std::string& hl7_location);
  // One pass over the open studies; returns how many completed. Start() runs it in a loop.
  StatusOr<int> CheckOnce(int64_t now_ms);

  // Blocks until an event newer than `cursor` exists or `timeout_ms` passes; returns the newest cursor.
  uint64_t WaitForEventAfter(uint64_t cursor, int timeout_ms);

 private:
  StatusOr<StoredEvent> Complete(const OpenStudy& study, v1::Trigger trigger, int64_t now_ms);

  Spool& spool_;
  const int64_t stable_ms_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable wake_;        // the completion loop
  std::condition_variable published_;   // watchers
  bool poked_ = false;
  uint64_t last_cursor_ = 0;
};

// The completion event of a study from its spooled files (tags by keyword). Trigger, calling AE and location as
// given; cursor, generation and completion time are set by the spool.
StatusOr<v1::StudyEvent> BuildStudyEvent(Spool& spool, const std::string& study_uid, v1::Trigger trigger,
                                         const std::string& calling_ae, const std::string& hl7_location,
                                         int64_t last_instance_ms);

}  // namespace aihub::adapter
