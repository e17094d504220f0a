#include "core/study_tracker.h"

#include <chrono>

#include "common/log.h"
#include "config/rules.h"
#include "dicom/study.h"

namespace aihub::adapter {

namespace {

void PutTags(const dicom::TagMap& tags, google::protobuf::Map<std::string, std::string>* out) {
  for (const auto& [tag, value] : tags) (*out)[config::TagName(tag)] = value;
}

// Study-level tags (group 0010 patient, and the study module) kept in the event's study_tags.
bool IsStudyLevel(uint32_t tag) {
  const uint32_t group = tag >> 16;
  if (group == 0x0010) return true;
  switch (tag) {
    case 0x00080005:  // SpecificCharacterSet
    case 0x00080020:  // StudyDate
    case 0x00080030:  // StudyTime
    case 0x00080050:  // AccessionNumber
    case 0x00080080:  // InstitutionName
    case 0x00080090:  // ReferringPhysicianName
    case 0x00081030:  // StudyDescription
    case 0x00081040:  // InstitutionalDepartmentName
    case 0x0020000D:  // StudyInstanceUID
    case 0x00200010:  // StudyID
    case 0x00321060:  // RequestedProcedureDescription
      return true;
    default:
      return false;
  }
}

}  // namespace

StatusOr<v1::StudyEvent> BuildStudyEvent(Spool& spool, const std::string& study_uid, v1::Trigger trigger,
                                         const std::string& calling_ae, const std::string& hl7_location,
                                         int64_t last_instance_ms) {
  auto instances = spool.Instances(study_uid);
  if (!instances.ok()) return instances.status();
  if (instances->empty()) return NotFound("study " + study_uid + " has no spooled instances");
  std::vector<std::filesystem::path> files;
  std::map<std::string, std::pair<uint32_t, uint64_t>> per_series;   // series -> (count, bytes)
  for (const SpooledInstance& i : *instances) {
    files.push_back(i.path);
    auto& [count, bytes] = per_series[i.series_uid];
    ++count;
    bytes += static_cast<uint64_t>(i.size);
  }
  dicom::ScanResult scan = dicom::ScanFiles(files);
  v1::StudyEvent event;
  event.set_study_instance_uid(study_uid);
  event.set_trigger(trigger);
  event.set_calling_ae(calling_ae);
  event.set_hl7_location(hl7_location);
  event.set_last_instance_unix_ms(last_instance_ms);
  for (const dicom::Study& study : scan.studies) {
    if (study.study_instance_uid != study_uid) continue;
    for (const auto& [tag, value] : study.tags) {
      if (IsStudyLevel(tag)) (*event.mutable_study_tags())[config::TagName(tag)] = value;
    }
    for (const dicom::Series& s : study.series) {
      v1::SeriesInfo* info = event.add_series();
      info->set_series_instance_uid(s.series_instance_uid);
      PutTags(s.tags, info->mutable_tags());
      const auto it = per_series.find(s.series_instance_uid);
      if (it != per_series.end()) {
        info->set_instance_count(it->second.first);
        info->set_total_bytes(it->second.second);
      }
    }
  }
  // Files the scan refused (no pixel data, e.g. an SR or a presentation state) still count as instances of the
  // study; their series are listed without tags so the host knows they exist.
  for (const auto& [series_uid, counts] : per_series) {
    bool listed = false;
    for (const v1::SeriesInfo& s : event.series()) listed = listed || s.series_instance_uid() == series_uid;
    if (listed) continue;
    v1::SeriesInfo* info = event.add_series();
    info->set_series_instance_uid(series_uid);
    info->set_instance_count(counts.first);
    info->set_total_bytes(counts.second);
  }
  for (const dicom::RejectedFile& r : scan.rejected) {
    LogInfo("tracker", "study " + study_uid + ": " + r.path.filename().string() + " not scanned: " + r.reason);
  }
  return event;
}

StudyTracker::StudyTracker(Spool& spool, double stable_seconds)
    : spool_(spool), stable_ms_(static_cast<int64_t>(stable_seconds * 1000.0)) {
  auto last = spool_.LastCursor();
  if (last.ok()) last_cursor_ = *last;
}

StudyTracker::~StudyTracker() { Stop(); }

void StudyTracker::Start() {
  thread_ = std::thread([this] {
    while (!stop_) {
      auto done = CheckOnce(NowUnixMs());
      if (!done.ok()) LogError("tracker", done.status().ToString());
      std::unique_lock<std::mutex> lock(mu_);
      // Quiet-time completion needs ~100 ms resolution; count-based completion is woken by Poke().
      wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return poked_ || stop_.load(); });
      poked_ = false;
    }
  });
}

void StudyTracker::Stop() {
  if (stop_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_.notify_all();
    published_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void StudyTracker::Poke() {
  std::lock_guard<std::mutex> lock(mu_);
  poked_ = true;
  wake_.notify_all();
}

StatusOr<int> StudyTracker::CheckOnce(int64_t now_ms) {
  auto open = spool_.OpenStudies();
  if (!open.ok()) return open.status();
  int completed = 0;
  for (const OpenStudy& s : *open) {
    v1::Trigger trigger = v1::TRIGGER_UNSPECIFIED;
    if (s.expected_instances > 0 && s.instances >= s.expected_instances) {
      trigger = v1::TRIGGER_CSTORE_COUNT;
    } else if (now_ms - s.last_instance_ms >= stable_ms_) {
      trigger = v1::TRIGGER_CSTORE_STABLE;
    }
    if (trigger == v1::TRIGGER_UNSPECIFIED) continue;
    auto event = Complete(s, trigger, now_ms);
    if (!event.ok()) {
      LogError("tracker", "study " + s.study_uid + " not completed: " + event.status().ToString());
      continue;
    }
    ++completed;
  }
  return completed;
}

StatusOr<StoredEvent> StudyTracker::CompleteNow(const std::string& study_uid, v1::Trigger trigger,
                                                const std::string& calling_ae, const std::string& hl7_location) {
  OpenStudy s;
  s.study_uid = study_uid;
  s.calling_ae = calling_ae;
  s.hl7_location = hl7_location;
  s.last_instance_ms = NowUnixMs();
  return Complete(s, trigger, s.last_instance_ms);
}

StatusOr<StoredEvent> StudyTracker::Complete(const OpenStudy& study, v1::Trigger trigger, int64_t now_ms) {
  auto event = BuildStudyEvent(spool_, study.study_uid, trigger, study.calling_ae, study.hl7_location,
                               study.last_instance_ms);
  if (!event.ok()) return event.status();
  auto stored = spool_.CompleteStudy(study.study_uid, event->SerializeAsString(), now_ms);
  if (!stored.ok()) return stored.status();
  LogInfo("tracker", "study " + study.study_uid + " complete (generation " + std::to_string(stored->generation) +
                         ", " + v1::Trigger_Name(trigger) + ", cursor " + std::to_string(stored->cursor) + ")");
  std::lock_guard<std::mutex> lock(mu_);
  if (stored->cursor > last_cursor_) last_cursor_ = stored->cursor;
  published_.notify_all();
  return stored;
}

uint64_t StudyTracker::WaitForEventAfter(uint64_t cursor, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  published_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return last_cursor_ > cursor || stop_.load(); });
  return last_cursor_;
}

}  // namespace aihub::adapter
