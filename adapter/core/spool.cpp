#include "core/spool.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <random>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include "aihub/v1/adapter.pb.h"
#include "common/hash.h"
#include "common/fsync.h"
#include "common/status_macros.h"
#include "store/sqlite_util.h"

namespace aihub::adapter {

namespace fs = std::filesystem;
using store::Db;
using store::Transaction;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
  sop_uid TEXT PRIMARY KEY,
  study_uid TEXT NOT NULL,
  series_uid TEXT NOT NULL,
  path TEXT NOT NULL,
  size INTEGER NOT NULL,
  received_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances(study_uid, series_uid);
CREATE TABLE IF NOT EXISTS studies (
  study_uid TEXT PRIMARY KEY,
  open INTEGER NOT NULL DEFAULT 0,          -- 1 while receiving
  generation INTEGER NOT NULL DEFAULT 0,    -- completions so far
  last_instance_ms INTEGER NOT NULL DEFAULT 0,
  expected_instances INTEGER NOT NULL DEFAULT 0,
  calling_ae TEXT NOT NULL DEFAULT '',
  hl7_location TEXT NOT NULL DEFAULT '',
  held INTEGER NOT NULL DEFAULT 0);         -- 1 while an order's retrieval fills it
CREATE TABLE IF NOT EXISTS events (
  cursor INTEGER PRIMARY KEY AUTOINCREMENT,
  study_uid TEXT NOT NULL,
  generation INTEGER NOT NULL,
  event BLOB NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS delivered (
  key TEXT PRIMARY KEY,
  detail TEXT NOT NULL,
  delivered_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hl7_messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received_ms INTEGER NOT NULL,
  peer TEXT NOT NULL,
  message_type TEXT NOT NULL,
  control_id TEXT NOT NULL,
  raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  accession_number TEXT NOT NULL,
  study_uid TEXT NOT NULL,
  hl7_location TEXT NOT NULL,
  expected_instances INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_check_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',    -- pending | done
  outcome TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS orders_due ON orders(state, next_check_ms);
)sql";

}  // namespace

StatusOr<InstanceUids> ReadInstanceUids(const fs::path& file) {
  DcmFileFormat ff;
  OFCondition cond = ff.loadFileUntilTag(file.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect, DCM_PixelData);
  if (cond.bad()) return InvalidArgument(std::string("unreadable data set: ") + cond.text());
  DcmDataset* ds = ff.getDataset();
  auto get = [ds](const DcmTagKey& key) {
    OFString v;
    ds->findAndGetOFString(key, v);
    std::string out = v.c_str();
    while (!out.empty() && (out.back() == ' ' || out.back() == '\0')) out.pop_back();
    return out;
  };
  InstanceUids uids{get(DCM_StudyInstanceUID), get(DCM_SeriesInstanceUID), get(DCM_SOPInstanceUID),
                    get(DCM_SOPClassUID)};
  if (!IsValidUid(uids.study_uid) || !IsValidUid(uids.series_uid) || !IsValidUid(uids.sop_uid)) {
    return InvalidArgument("missing or invalid Study/Series/SOP Instance UID");
  }
  // The class UID is echoed to senders (STOW-RS responses, JSON): a malformed one is dropped, not passed on.
  if (!IsValidUid(uids.sop_class_uid)) uids.sop_class_uid.clear();
  return uids;
}

class Spool::Impl {
 public:
  fs::path dir;
  std::unique_ptr<Db> db;
  std::mutex mu;
  std::atomic<uint64_t> incoming_counter{0};
  std::string event_log_id;
};

Spool::Spool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Spool::~Spool() = default;

StatusOr<std::unique_ptr<Spool>> Spool::Open(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir / "incoming", ec);
  if (!ec) fs::create_directories(dir / "files", ec);
  if (ec) return Unavailable("cannot create spool " + dir.string() + ": " + ec.message());
  // Temporary files of a previous run belong to transfers that were never acknowledged: drop them.
  for (fs::directory_iterator it(dir / "incoming", ec), end; !ec && it != end; it.increment(ec)) {
    fs::remove(it->path(), ec);
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = fs::absolute(dir);
  ASSIGN_OR_RETURN(db, Db::Open(dir / "adapter.db", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  impl->db = std::move(db);
  sqlite3_busy_timeout(impl->db->handle(), 10000);
  RETURN_IF_ERROR(impl->db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
  RETURN_IF_ERROR(impl->db->Exec(kSchema));
  {
    // Made once, when the spool is created; kept for its life.
    ASSIGN_OR_RETURN(s, impl->db->Prepare("INSERT OR IGNORE INTO meta(key, value) VALUES ('event_log_id', ?1)"));
    RETURN_IF_ERROR(s.Bind(1, Sha256Hex(std::to_string(NowUnixMs()) + fs::absolute(dir).string() +
                                        std::to_string(::getpid()) + std::to_string(std::random_device()()))
                                  .substr(0, 16))
                        .Run());
  }
  {
    ASSIGN_OR_RETURN(s, impl->db->Prepare("SELECT value FROM meta WHERE key = 'event_log_id'"));
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) return Internal("spool without event_log_id");
    impl->event_log_id = s.Text(0);
  }
  return std::unique_ptr<Spool>(new Spool(std::move(impl)));
}

const fs::path& Spool::dir() const { return impl_->dir; }
const std::string& Spool::event_log_id() const { return impl_->event_log_id; }

fs::path Spool::IncomingPath() {
  return impl_->dir / "incoming" /
         (std::to_string(::getpid()) + "-" + std::to_string(impl_->incoming_counter++) + ".part");
}

StatusOr<Spool::WrittenInstance> Spool::WriteIncoming(std::string_view part10) {
  WrittenInstance out;
  out.temp_file = IncomingPath();
  out.bytes = static_cast<int64_t>(part10.size());
  std::error_code ec;
  {
    std::ofstream file(out.temp_file, std::ios::binary | std::ios::trunc);
    file.write(part10.data(), static_cast<std::streamsize>(part10.size()));
    if (!file) {
      file.close();
      fs::remove(out.temp_file, ec);
      return Unavailable("cannot write " + out.temp_file.string());
    }
  }
  auto uids = ReadInstanceUids(out.temp_file);
  if (!uids.ok()) {
    fs::remove(out.temp_file, ec);
    return uids.status();
  }
  out.uids = std::move(uids).value();
  return out;
}

Status Spool::AddInstance(const IncomingInstance& in, int64_t now_ms) {
  std::error_code ec;
  const fs::path series_dir = impl_->dir / "files" / in.study_uid / in.series_uid;
  const fs::path target = series_dir / (in.sop_uid + ".dcm");
  auto fail = [&](Status st) {
    fs::remove(in.temp_file, ec);
    return st;
  };
  if (Status st = FsyncFile(in.temp_file); !st.ok()) return fail(st);
  const bool new_series = !fs::exists(series_dir, ec);
  fs::create_directories(series_dir, ec);
  if (ec) return fail(Unavailable("cannot create " + series_dir.string() + ": " + ec.message()));
  fs::rename(in.temp_file, target, ec);
  if (ec) return fail(Unavailable("cannot move instance into " + target.string() + ": " + ec.message()));
  RETURN_IF_ERROR(FsyncDir(series_dir));
  if (new_series) {
    RETURN_IF_ERROR(FsyncDir(series_dir.parent_path()));
    RETURN_IF_ERROR(FsyncDir(series_dir.parent_path().parent_path()));
  }

  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  Transaction txn(db);
  RETURN_IF_ERROR(txn.Begin());
  std::string previous_path;   // the SOP instance sent before under another study or series
  {
    ASSIGN_OR_RETURN(s, db.Prepare("SELECT path FROM instances WHERE sop_uid = ?1"));
    s.Bind(1, in.sop_uid);
    ASSIGN_OR_RETURN(row, s.Step());
    if (row && s.Text(0) != target.string()) previous_path = s.Text(0);
  }
  {
    ASSIGN_OR_RETURN(s, db.Prepare("INSERT INTO instances(sop_uid, study_uid, series_uid, path, size, received_ms) "
                                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(sop_uid) DO UPDATE SET "
                                   "study_uid = excluded.study_uid, series_uid = excluded.series_uid, "
                                   "path = excluded.path, size = excluded.size, received_ms = excluded.received_ms"));
    RETURN_IF_ERROR(s.Bind(1, in.sop_uid).Bind(2, in.study_uid).Bind(3, in.series_uid).Bind(4, target.string())
                        .Bind(5, in.size).Bind(6, now_ms).Run());
  }
  {
    // A completed study that gets another instance opens again (its next completion is a new generation).
    ASSIGN_OR_RETURN(s, db.Prepare("INSERT INTO studies(study_uid, open, last_instance_ms, calling_ae) "
                                   "VALUES (?1, 1, ?2, ?3) ON CONFLICT(study_uid) DO UPDATE SET open = 1, "
                                   "last_instance_ms = excluded.last_instance_ms, "
                                   "calling_ae = CASE WHEN excluded.calling_ae = '' THEN calling_ae "
                                   "ELSE excluded.calling_ae END"));
    RETURN_IF_ERROR(s.Bind(1, in.study_uid).Bind(2, now_ms).Bind(3, in.calling_ae).Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  if (!previous_path.empty()) fs::remove(previous_path, ec);
  return Status::Ok();
}

StatusOr<std::vector<OpenStudy>> Spool::OpenStudies() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare(
                          "SELECT s.study_uid, s.last_instance_ms, "
                          "(SELECT COUNT(*) FROM instances i WHERE i.study_uid = s.study_uid), "
                          "s.expected_instances, s.calling_ae, s.hl7_location "
                          "FROM studies s WHERE s.open = 1 AND s.held = 0 ORDER BY s.last_instance_ms"));
  std::vector<OpenStudy> out;
  for (;;) {
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) break;
    OpenStudy o;
    o.study_uid = s.Text(0);
    o.last_instance_ms = s.Int(1);
    o.instances = s.Int(2);
    o.expected_instances = s.Int(3);
    o.calling_ae = s.Text(4);
    o.hl7_location = s.Text(5);
    out.push_back(std::move(o));
  }
  return out;
}

Status Spool::HoldStudy(const std::string& study_uid, bool held) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("INSERT INTO studies(study_uid, held) VALUES (?1, ?2) "
                                         "ON CONFLICT(study_uid) DO UPDATE SET held = excluded.held"));
  return s.Bind(1, study_uid).Bind(2, int64_t{held ? 1 : 0}).Run();
}

Status Spool::NoteExpectation(const std::string& study_uid, int64_t expected_instances,
                              const std::string& hl7_location) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare(
                          "INSERT INTO studies(study_uid, expected_instances, hl7_location) VALUES (?1, ?2, ?3) "
                          "ON CONFLICT(study_uid) DO UPDATE SET "
                          "expected_instances = CASE WHEN ?2 > 0 THEN ?2 ELSE expected_instances END, "
                          "hl7_location = CASE WHEN ?3 = '' THEN hl7_location ELSE ?3 END"));
  return s.Bind(1, study_uid).Bind(2, expected_instances).Bind(3, hl7_location).Run();
}

StatusOr<StoredEvent> Spool::CompleteStudy(const std::string& study_uid, std::string event_bytes, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  Transaction txn(db);
  RETURN_IF_ERROR(txn.Begin());
  int64_t generation = 0;
  {
    // An expected count this completion meets is used up: late instances then complete by quiet time as one new
    // generation instead of each completing the study again by count.
    ASSIGN_OR_RETURN(s, db.Prepare("UPDATE studies SET open = 0, held = 0, generation = generation + 1, "
                                   "expected_instances = CASE WHEN (SELECT COUNT(*) FROM instances i "
                                   "WHERE i.study_uid = studies.study_uid) >= expected_instances THEN 0 "
                                   "ELSE expected_instances END "
                                   "WHERE study_uid = ?1 "
                                   "RETURNING generation"));
    s.Bind(1, study_uid);
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) return NotFound("study " + study_uid + " is not in the spool");
    generation = s.Int(0);
  }
  v1::StudyEvent event;
  if (!event.ParseFromString(event_bytes)) return InvalidArgument("completion event does not parse");
  if (event.series_size() > 0) {
    // An event lists what it announces. An instance spooled after it was built (a C-STORE racing the completion)
    // would be closed out unannounced: refuse, and the caller builds a fresh event (the tracker on its next pass).
    uint64_t announced = 0;
    for (const v1::SeriesInfo& s : event.series()) announced += s.instance_count();
    ASSIGN_OR_RETURN(s, db.Prepare("SELECT COUNT(*) FROM instances WHERE study_uid = ?1"));
    s.Bind(1, study_uid);
    ASSIGN_OR_RETURN(row, s.Step());
    if (row && static_cast<uint64_t>(s.Int(0)) != announced) {
      return Aborted("study " + study_uid + " received instances while completing; try again");
    }
  }
  event.set_generation(generation);
  event.set_completed_unix_ms(now_ms);
  int64_t cursor = 0;
  {
    ASSIGN_OR_RETURN(s, db.Prepare("INSERT INTO events(study_uid, generation, event, created_ms) "
                                   "VALUES (?1, ?2, x'', ?3) RETURNING cursor"));
    s.Bind(1, study_uid).Bind(2, generation).Bind(3, now_ms);
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) return Internal("event insert returned no cursor");
    cursor = s.Int(0);
  }
  event.set_cursor(static_cast<uint64_t>(cursor));
  StoredEvent stored{static_cast<uint64_t>(cursor), study_uid, generation, event.SerializeAsString()};
  {
    ASSIGN_OR_RETURN(s, db.Prepare("UPDATE events SET event = ?2 WHERE cursor = ?1"));
    RETURN_IF_ERROR(s.Bind(1, cursor).BindBlob(2, stored.event_bytes).Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  return stored;
}

StatusOr<std::vector<SpooledInstance>> Spool::Instances(const std::string& study_uid,
                                                        const std::vector<std::string>& series) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("SELECT study_uid, series_uid, sop_uid, path, size FROM instances "
                                         "WHERE study_uid = ?1 ORDER BY series_uid, received_ms, sop_uid"));
  s.Bind(1, study_uid);
  std::vector<SpooledInstance> out;
  for (;;) {
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) break;
    SpooledInstance i{s.Text(0), s.Text(1), s.Text(2), fs::path(s.Text(3)), s.Int(4)};
    if (!series.empty() && std::find(series.begin(), series.end(), i.series_uid) == series.end()) continue;
    out.push_back(std::move(i));
  }
  return out;
}

StatusOr<std::vector<StoredEvent>> Spool::EventsAfter(uint64_t cursor, int limit) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("SELECT cursor, study_uid, generation, event FROM events "
                                         "WHERE cursor > ?1 ORDER BY cursor LIMIT ?2"));
  s.Bind(1, static_cast<int64_t>(cursor)).Bind(2, static_cast<int64_t>(limit));
  std::vector<StoredEvent> out;
  for (;;) {
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) break;
    out.push_back(StoredEvent{static_cast<uint64_t>(s.Int(0)), s.Text(1), s.Int(2), s.Text(3)});
  }
  return out;
}

StatusOr<uint64_t> Spool::LastCursor() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("SELECT COALESCE(MAX(cursor), 0) FROM events"));
  ASSIGN_OR_RETURN(row, s.Step());
  return row ? static_cast<uint64_t>(s.Int(0)) : 0;
}

StatusOr<bool> Spool::HasCompleted(const std::string& study_uid) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("SELECT generation FROM studies WHERE study_uid = ?1"));
  s.Bind(1, study_uid);
  ASSIGN_OR_RETURN(row, s.Step());
  return row && s.Int(0) > 0;
}

StatusOr<std::optional<std::string>> Spool::Delivered(const std::string& key) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("SELECT detail FROM delivered WHERE key = ?1"));
  s.Bind(1, key);
  ASSIGN_OR_RETURN(row, s.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(s.Text(0));
}

Status Spool::MarkDelivered(const std::string& key, const std::string& detail, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("INSERT OR IGNORE INTO delivered(key, detail, delivered_ms) "
                                         "VALUES (?1, ?2, ?3)"));
  return s.Bind(1, key).Bind(2, detail).Bind(3, now_ms).Run();
}

StatusOr<int64_t> Spool::RecordHl7(const std::string& peer, const std::string& message_type,
                                   const std::string& control_id, const std::string& raw, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("INSERT INTO hl7_messages(received_ms, peer, message_type, control_id, raw) "
                                         "VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id"));
  s.Bind(1, now_ms).Bind(2, peer).Bind(3, message_type).Bind(4, control_id).BindBlob(5, raw);
  ASSIGN_OR_RETURN(row, s.Step());
  if (!row) return Internal("HL7 insert returned no id");
  return s.Int(0);
}

Status Spool::AddOrder(const Order& order) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare(
                          "INSERT INTO orders(accession_number, study_uid, hl7_location, expected_instances, "
                          "next_check_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
  return s.Bind(1, order.accession_number).Bind(2, order.study_uid).Bind(3, order.hl7_location)
      .Bind(4, order.expected_instances).Bind(5, std::max(order.next_check_ms, order.created_ms))
      .Bind(6, order.created_ms).Run();
}

StatusOr<std::vector<Order>> Spool::DueOrders(int64_t now_ms) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare(
                          "SELECT id, accession_number, study_uid, hl7_location, expected_instances, attempts, "
                          "next_check_ms, created_ms FROM orders WHERE state = 'pending' AND next_check_ms <= ?1 "
                          "ORDER BY id LIMIT 32"));
  s.Bind(1, now_ms);
  std::vector<Order> out;
  for (;;) {
    ASSIGN_OR_RETURN(row, s.Step());
    if (!row) break;
    out.push_back(Order{s.Int(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4), static_cast<int>(s.Int(5)), s.Int(6),
                        s.Int(7)});
  }
  return out;
}

Status Spool::RescheduleOrder(int64_t id, int64_t next_check_ms, const std::string& error) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("UPDATE orders SET attempts = attempts + 1, next_check_ms = ?2, "
                                         "outcome = ?3 WHERE id = ?1"));
  return s.Bind(1, id).Bind(2, next_check_ms).Bind(3, error).Run();
}

Status Spool::FinishOrder(int64_t id, const std::string& outcome) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(s, impl_->db->Prepare("UPDATE orders SET state = 'done', outcome = ?2 WHERE id = ?1"));
  return s.Bind(1, id).Bind(2, outcome).Run();
}

}  // namespace aihub::adapter
