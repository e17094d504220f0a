// Spool: the adapter's durable state. Instance files under <dir>/files/<study>/<series>/<sop>.dcm, and one
// SQLite database (<dir>/adapter.db, WAL, synchronous=FULL) that knows every spooled instance, which studies are
// still open (receiving), the completed-study event log that WatchStudies streams, delivered idempotency keys,
// received HL7 messages and pending orders.
//
// Durability contract: AddInstance returns OK only when the file and its row are on disk, so the C-STORE
// success response (and the MLLP ACK, via RecordHl7) is sent for data that survives a crash. The open-study set is
// in the database, so a restarted adapter completes the studies it was receiving.
//
// Thread-safe: calls are serialized on one connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace aihub::adapter {

// One received instance, already written to a temporary file inside the spool folder (see IncomingPath).
struct IncomingInstance {
  std::filesystem::path temp_file;
  std::string study_uid, series_uid, sop_uid;   // validated by the caller (IsValidUid)
  std::string calling_ae;                       // "" for DICOMweb
  int64_t size = 0;
};

struct SpooledInstance {
  std::string study_uid, series_uid, sop_uid;
  std::filesystem::path path;
  int64_t size = 0;
};

// A study still receiving instances.
struct OpenStudy {
  std::string study_uid;
  int64_t last_instance_ms = 0;     // Unix ms of the newest instance
  int64_t instances = 0;            // instances of the study in the spool
  int64_t expected_instances = 0;   // 0 = unknown
  std::string calling_ae;
  std::string hl7_location;
};

struct StoredEvent {
  uint64_t cursor = 0;
  std::string study_uid;
  int64_t generation = 0;
  std::string event_bytes;          // serialized aihub.v1.StudyEvent (cursor field filled in on read)
};

struct Order {
  int64_t id = 0;
  std::string accession_number;
  std::string study_uid;            // "" when the order named only the accession
  std::string hl7_location;
  int64_t expected_instances = 0;
  int attempts = 0;
  int64_t next_check_ms = 0;
  int64_t created_ms = 0;
};

struct InstanceUids {
  std::string study_uid, series_uid, sop_uid;
  std::string sop_class_uid;  // as the file says; "" when absent or not a valid UID (it is echoed to senders)
};
// The UIDs in a DICOM file's header (parsing stops before the pixel data). INVALID_ARGUMENT when the file does
// not parse or a UID is missing or not a valid UID (never used as a path then).
StatusOr<InstanceUids> ReadInstanceUids(const std::filesystem::path& file);

class Spool {
 public:
  static StatusOr<std::unique_ptr<Spool>> Open(const std::filesystem::path& dir);
  ~Spool();

  const std::filesystem::path& dir() const;
  // Random id of this spool's event log, made when the spool was created (see AdapterInfo.event_log_id).
  const std::string& event_log_id() const;
  // A fresh temporary file path for a receiver to write an instance into (same file system as the spool).
  std::filesystem::path IncomingPath();
  // Writes a DICOM Part 10 file received whole (a WADO-RS or STOW-RS part) to a fresh temporary file and reads its
  // UIDs, for the caller to check and pass to AddInstance. On error no file is left: UNAVAILABLE when it cannot be
  // written, INVALID_ARGUMENT when it is not DICOM or its UIDs are missing or invalid.
  struct WrittenInstance {
    std::filesystem::path temp_file;
    InstanceUids uids;
    int64_t bytes = 0;
    IncomingInstance Incoming(const std::string& calling_ae) const {
      return {temp_file, uids.study_uid, uids.series_uid, uids.sop_uid, calling_ae, bytes};
    }
  };
  StatusOr<WrittenInstance> WriteIncoming(std::string_view part10);

  // fsyncs the temporary file, renames it to its place, fsyncs the folders, records it (re-opening the study
  // when it had completed: late instances start a new generation). A SOP instance received again replaces the
  // earlier file. On error the temporary file is removed and nothing is recorded.
  Status AddInstance(const IncomingInstance& in, int64_t now_ms);

  // Studies still receiving, oldest activity first. Held studies (being retrieved for an order) are left out:
  // they complete when their retrieval ends, not by quiet time.
  StatusOr<std::vector<OpenStudy>> OpenStudies();
  // Holds or releases a study (see OpenStudies); CompleteStudy releases it.
  Status HoldStudy(const std::string& study_uid, bool held);
  // Sets what an HL7 order or QIDO told about a study before or while it arrives (0 keeps the old count).
  Status NoteExpectation(const std::string& study_uid, int64_t expected_instances, const std::string& hl7_location);
  // Closes the study and appends its completion event (`event_bytes` = serialized StudyEvent without cursor and
  // generation, which this call assigns) in one transaction. Returns the event as stored.
  StatusOr<StoredEvent> CompleteStudy(const std::string& study_uid, std::string event_bytes, int64_t now_ms);
  // The study's spooled instances (for building the event and for FetchSeries); `series` empty = all.
  StatusOr<std::vector<SpooledInstance>> Instances(const std::string& study_uid,
                                                   const std::vector<std::string>& series = {});
  // Events after `cursor`, oldest first, at most `limit`.
  StatusOr<std::vector<StoredEvent>> EventsAfter(uint64_t cursor, int limit);
  StatusOr<uint64_t> LastCursor();
  // Whether the study is known and complete (has at least one event); for HL7 orders of studies already here.
  StatusOr<bool> HasCompleted(const std::string& study_uid);

  // Delivery idempotency: the detail recorded when `key` was delivered, or nullopt.
  StatusOr<std::optional<std::string>> Delivered(const std::string& key);
  Status MarkDelivered(const std::string& key, const std::string& detail, int64_t now_ms);

  // Received HL7 messages, persisted before the ACK. Returns the row id.
  StatusOr<int64_t> RecordHl7(const std::string& peer, const std::string& message_type, const std::string& control_id,
                              const std::string& raw, int64_t now_ms);
  // Orders waiting for their study to appear in the PACS.
  Status AddOrder(const Order& order);
  StatusOr<std::vector<Order>> DueOrders(int64_t now_ms);
  Status RescheduleOrder(int64_t id, int64_t next_check_ms, const std::string& error);
  Status FinishOrder(int64_t id, const std::string& outcome);

 private:
  class Impl;
  explicit Spool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

int64_t NowUnixMs();

}  // namespace aihub::adapter
