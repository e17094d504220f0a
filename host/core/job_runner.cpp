#include "core/job_runner.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/hash.h"
#include "common/json_text.h"
#include "common/log.h"
#include "compose/fhir_encoder.h"
#include "compose/hl7_encoder.h"
#include "compose/ids.h"
#include "compose/result_json.h"
#include "compose/sr_encoder.h"

namespace aihub::core {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kPatientName = 0x00100010, kPatientId = 0x00100020, kIssuerOfPatientId = 0x00100021,
                   kPatientBirthDate = 0x00100030, kPatientSex = 0x00100040, kStudyInstanceUid = 0x0020000D,
                   kAccessionNumber = 0x00080050, kStudyId = 0x00200010, kStudyDate = 0x00080020,
                   kStudyTime = 0x00080030, kStudyDescription = 0x00081030, kReferringPhysician = 0x00080090,
                   kModality = 0x00080060;

std::string TagOr(const dicom::TagMap& tags, uint32_t tag) {
  const std::string* v = dicom::FindTag(tags, tag);
  return v ? *v : std::string();
}

std::string UtcNowSeconds() {
  std::string s = NowIso8601();  // 2026-11-28T01:02:03.456Z
  return s.substr(0, 19) + "Z";
}

nlohmann::json TagsJson(const dicom::TagMap& tags) {
  static const std::pair<const char*, uint32_t> kKept[] = {
      {"PatientID", kPatientId},       {"AccessionNumber", kAccessionNumber},
      {"StudyDate", kStudyDate},       {"StudyDescription", kStudyDescription},
      {"Modality", kModality},         {"InstitutionalDepartmentName", 0x00081040}};
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, tag] : kKept) {
    if (const std::string* v = dicom::FindTag(tags, tag)) j[name] = *v;
  }
  return j;
}

}  // namespace

bool IsRetryable(aihub_status_code code) {
  switch (code) {
    case AIHUB_CANCELLED:
    case AIHUB_UNKNOWN:
    case AIHUB_DEADLINE_EXCEEDED:
    case AIHUB_RESOURCE_EXHAUSTED:
    case AIHUB_ABORTED:
    case AIHUB_INTERNAL:
    case AIHUB_UNAVAILABLE:
      return true;
    default:
      return false;
  }
}

StudyIdentity IdentityFromTags(const dicom::TagMap& tags) {
  StudyIdentity id;
  id.study_instance_uid = TagOr(tags, kStudyInstanceUid);
  id.accession_number = TagOr(tags, kAccessionNumber);
  id.study_id = TagOr(tags, kStudyId);
  id.study_date = TagOr(tags, kStudyDate);
  id.study_time = TagOr(tags, kStudyTime);
  id.study_description = TagOr(tags, kStudyDescription);
  id.referring_physician_name = TagOr(tags, kReferringPhysician);
  id.patient_id = TagOr(tags, kPatientId);
  id.issuer_of_patient_id = TagOr(tags, kIssuerOfPatientId);
  id.patient_name = TagOr(tags, kPatientName);
  id.patient_birth_date = TagOr(tags, kPatientBirthDate);
  id.patient_sex = TagOr(tags, kPatientSex);
  return id;
}

void StudyCatalog::Add(std::shared_ptr<const dicom::Study> study) {
  std::lock_guard<std::mutex> lock(mutex_);
  studies_[study->study_instance_uid] = std::move(study);
}

void StudyCatalog::Remove(const std::string& study_uid) {
  std::lock_guard<std::mutex> lock(mutex_);
  studies_.erase(study_uid);
}

std::string StudyFolderOfSource(const std::string& source) {
  if (source.rfind("adapter:", 0) != 0) return source;
  const size_t space = source.find(' ');
  return space == std::string::npos ? std::string() : source.substr(space + 1);
}

StatusOr<std::shared_ptr<const dicom::Study>> StudyCatalog::Find(const std::string& study_uid,
                                                                 const std::string& source_hint) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = studies_.find(study_uid);
    if (it != studies_.end()) return it->second;
  }
  if (source_hint.empty()) return NotFound("study " + study_uid + " is not available to this host");
  auto scanned = dicom::ScanDirectory(StudyFolderOfSource(source_hint));
  if (!scanned.ok()) return scanned.status();
  std::shared_ptr<const dicom::Study> found;
  std::lock_guard<std::mutex> lock(mutex_);
  for (dicom::Study& s : scanned->studies) {
    auto ptr = std::make_shared<const dicom::Study>(std::move(s));
    if (ptr->study_instance_uid == study_uid) found = ptr;
    studies_[ptr->study_instance_uid] = ptr;
  }
  if (!found) return NotFound("study " + study_uid + " is no longer in " + source_hint);
  return found;
}

JobRunner::JobRunner(const ConfigHolder& config, store::JobStore& store, plugins::PluginRegistry& registry,
                     StudyCatalog& catalog, DeliveryPlanner planner)
    : config_(config),
      store_(store),
      registry_(registry),
      catalog_(catalog),
      planner_(std::move(planner)) {}

StatusOr<RouteDecision> JobRunner::Submit(const dicom::Study& study, const StudyContext& context,
                                          const std::string& source) {
  try {
    return SubmitImpl(study, context, source);
  } catch (const std::exception& e) {  // a bug, or bad_alloc: this study fails, the host keeps serving
    LogError("jobs", "routing " + study.study_instance_uid + " failed: " + e.what());
    return Internal(std::string("routing failed: ") + e.what());
  }
}

StatusOr<RouteDecision> JobRunner::SubmitImpl(const dicom::Study& study, const StudyContext& context,
                                              const std::string& source) {
  if (!IsValidUid(study.study_instance_uid)) {
    return InvalidArgument("invalid StudyInstanceUID '" + study.study_instance_uid + "'");
  }
  const store::StudyRecord record{study.study_instance_uid, source, DumpJson(TagsJson(study.tags))};
  const std::shared_ptr<const config::SiteConfig> config = config_.Get();
  RouteDecision decision = router_.Route(*config, study, context, registry_.Active());
  for (const RouteSkip& skip : decision.skipped) {
    LogInfo("router", study.study_instance_uid + ": " + skip.plugin_id + " skipped: " + skip.reason);
  }
  std::vector<store::NewJob> new_jobs;
  std::vector<std::string> pinned_here;  // pins this call added (a study routed again keeps its first pins)
  nlohmann::json routed = nlohmann::json::array();
  for (const RoutedJob& job : decision.jobs) {
    const plugins::PluginInfo& info = job.plugin->info();
    store::NewJob nj;
    nj.study_instance_uid = study.study_instance_uid;
    nj.plugin_id = info.id;
    nj.plugin_version = info.version;
    nj.model_version = info.model_version;
    nj.so_sha256 = info.so_sha256;
    nj.department = job.department;
    nj.mode = config::ModeName(job.mode);
    nj.series_uids = job.series_uids;
    nj.max_attempts = config->host.job_max_attempts;
    nj.generation = context.generation;
    // Pin before the job becomes claimable, so a worker that claims it at once still finds the routed version.
    const std::string pin = PinKey(nj.study_instance_uid, nj.plugin_id, nj.plugin_version);
    {
      std::lock_guard<std::mutex> lock(pinned_mutex_);
      if (pinned_.emplace(pin, job.plugin).second) pinned_here.push_back(pin);
    }
    routed.push_back({{"plugin", info.id}, {"version", info.version}, {"mode", nj.mode}});
    new_jobs.push_back(std::move(nj));
  }
  auto unpin = [&](const std::string& pin) {
    std::lock_guard<std::mutex> lock(pinned_mutex_);
    pinned_.erase(pin);
  };
  // The study, its jobs and the routing decision are durable together, or not at all.
  const nlohmann::json detail = {{"source", source},
                                 {"department", decision.department},
                                 {"calling_ae", context.calling_ae},
                                 {"hl7_location", context.hl7_location},
                                 {"generation", context.generation},
                                 {"series", study.series.size()},
                                 {"jobs", routed}};
  auto ids = store_.RecordRouting(record, new_jobs, DumpJson(detail));
  if (!ids.ok()) {
    for (const std::string& pin : pinned_here) unpin(pin);
    return ids.status();
  }
  for (size_t k = 0; k < decision.jobs.size(); ++k) {
    decision.jobs[k].job_id = (*ids)[k];
    // A study routed again whose job already ended keeps no pin (it would keep the library mapped).
    auto existing = store_.GetJob((*ids)[k]);
    const std::string pin = PinKey(new_jobs[k].study_instance_uid, new_jobs[k].plugin_id, new_jobs[k].plugin_version);
    if (existing.ok() && IsTerminal(existing->state) &&
        std::find(pinned_here.begin(), pinned_here.end(), pin) != pinned_here.end()) {
      unpin(pin);
    }
  }
  return decision;
}

void JobRunner::SetPredecessor(const store::JobRecord& job, Result* result) {
  if (job.generation <= 1) return;
  auto jobs = store_.ListJobs(job.study_instance_uid);
  if (!jobs.ok()) return;
  const store::JobRecord* latest = nullptr;
  for (const store::JobRecord& j : *jobs) {
    if (j.plugin_id != job.plugin_id || j.generation >= job.generation || j.state != store::JobState::kSucceeded) continue;
    if (latest == nullptr || j.generation > latest->generation) latest = &j;
  }
  if (latest == nullptr) return;
  // The earlier SR's identifiers are derived from its job key, as they were when it was made.
  Result earlier;
  earlier.job_key = latest->job_key;
  compose::AssignIdentifiers(earlier);
  result->predecessor_sr_series_instance_uid = earlier.sr_series_instance_uid;
  result->predecessor_sr_sop_instance_uid = earlier.sr_sop_instance_uid;
}

StatusOr<std::optional<JobOutcome>> JobRunner::RunNext() {
  auto claimed = store_.ClaimJob(std::chrono::seconds(config_.Get()->host.job_lease_seconds));
  if (!claimed.ok()) return claimed.status();
  if (!claimed->has_value()) return std::optional<JobOutcome>();
  const store::JobRecord& job = **claimed;
  try {
    return std::optional<JobOutcome>(Run(job));
  } catch (const std::exception& e) {  // a bug, or bad_alloc: this job fails (and is retried), the host serves on
    JobOutcome outcome;
    outcome.job_id = job.id;
    outcome.job_key = job.job_key;
    outcome.study_uid = job.study_instance_uid;
    outcome.plugin_id = job.plugin_id;
    LogError("jobs", job.job_key + ": host error: " + e.what());
    if (Status st = Fail(job, Internal(std::string("host error: ") + e.what()), &outcome); !st.ok()) {
      LogError("jobs", "cannot record failure: " + st.ToString());
    }
    return std::optional<JobOutcome>(std::move(outcome));
  }
}

bool IsTerminal(store::JobState s) {
  return s == store::JobState::kSucceeded || s == store::JobState::kFailed || s == store::JobState::kDead;
}

std::string JobRunner::PinKey(const std::string& study_uid, const std::string& plugin_id, const std::string& version) {
  return study_uid + "/" + plugin_id + "/" + version;
}

void JobRunner::ForgetStudyIfDone(const std::string& study_uid) {
  auto jobs = store_.ListJobs(study_uid);
  if (!jobs.ok()) return;
  int64_t ended_generation = 0;
  for (const store::JobRecord& j : *jobs) {
    if (!IsTerminal(j.state)) return;
    ended_generation = std::max(ended_generation, j.generation);
  }
  catalog_.Remove(study_uid);
  RemoveFetchedCopies(study_uid, ended_generation);
}

// Studies fetched from an adapter live in state_dir/studies/<study>/g<generation>/ only for their jobs: once every
// job of the study ended, the copies up to the recorded generation go (results, outbox and audit are in the job
// store; the adapter's spool still holds the instances). A later generation may be being fetched or routed right
// now, so only the generations whose jobs were seen ended (up to `ended_generation`, and never past the recorded
// one) are removed, and the study folder only when that left it empty. Folders the user gave (analyze, the inbox)
// are never touched.
void JobRunner::RemoveFetchedCopies(const std::string& study_uid, int64_t ended_generation) {
  auto recorded = store_.GetStudy(study_uid);
  if (!recorded.ok() || !recorded->has_value() || (*recorded)->source.rfind("adapter:", 0) != 0) return;
  const fs::path folder = StudyFolderOfSource((*recorded)->source);
  const fs::path study_dir = config_.Get()->state_dir / "studies" / study_uid;
  auto generation_of = [](const std::string& n) -> std::optional<uint64_t> {
    if (n.size() < 2 || n.size() > 10 || n[0] != 'g' || n.find_first_not_of("0123456789", 1) != std::string::npos) {
      return std::nullopt;
    }
    return std::stoull(n.substr(1));
  };
  const std::optional<uint64_t> recorded_generation = generation_of(folder.filename().string());
  if (folder.parent_path() != study_dir || !recorded_generation || ended_generation < 1) {
    return;  // not a copy this host fetched
  }
  const uint64_t newest = std::min(*recorded_generation, static_cast<uint64_t>(ended_generation));
  std::error_code ec;
  std::vector<fs::path> copies;
  for (const fs::directory_entry& e : fs::directory_iterator(study_dir, ec)) {
    const auto g = generation_of(e.path().filename().string());
    if (g && *g <= newest) copies.push_back(e.path());
  }
  uint64_t removed = 0;
  for (const fs::path& copy : copies) {
    const auto n = fs::remove_all(copy, ec);
    if (ec) {
      LogWarning("jobs", "cannot remove " + copy.string() + ": " + ec.message());
      return;
    }
    removed += n;
  }
  fs::remove(study_dir, ec);  // only when empty: a newer generation's fetch keeps it
  if (removed > 0) LogInfo("jobs", study_uid + ": every job ended; removed its fetched copy (" + folder.string() + ")");
}

Status JobRunner::Fail(const store::JobRecord& job, const Status& why, JobOutcome* outcome) {
  outcome->status = why;
  if (cancel_) {
    // The host is stopping and asked the plugin to stop: the job did not fail; it runs again at the next start
    // without losing an attempt.
    LogInfo("jobs", job.job_key + " released: the host is stopping");
    return store_.ReleaseJob(job.lease(), "host stopping: " + why.ToString());
  }
  LogWarning("jobs", job.job_key + " failed: " + why.ToString());
  return store_.FailJob(job.lease(), why.ToString(), IsRetryable(why.code()));
}

// Renews the job's lease every lease/3 while the plugin runs, and turns a host stop or a lost lease into the
// plugin's cancellation flag.
class JobRunner::LeaseKeeper {
 public:
  LeaseKeeper(store::JobStore& store, const store::JobRecord& job, std::chrono::seconds lease,
              const std::atomic<bool>& host_cancel)
      : store_(store), lease_(job.lease()), key_(job.job_key), duration_(lease), host_cancel_(host_cancel),
        thread_([this] { Loop(); }) {}
  ~LeaseKeeper() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  const std::atomic<bool>* cancel_flag() const { return &cancel_; }
  bool lease_lost() const { return lease_lost_; }

 private:
  void Loop() {
    const auto renew_every = std::max<std::chrono::milliseconds>(duration_ / 3, std::chrono::milliseconds(100));
    auto next_renewal = std::chrono::steady_clock::now() + renew_every;
    std::unique_lock<std::mutex> lock(mutex_);
    while (!done_) {
      wake_.wait_for(lock, std::chrono::milliseconds(100));
      if (host_cancel_) cancel_ = true;
      if (done_ || std::chrono::steady_clock::now() < next_renewal) continue;
      next_renewal += renew_every;
      if (Status st = store_.RenewLease(lease_, duration_); !st.ok()) {
        LogError("jobs", key_ + ": lease renewal failed, cancelling the plugin: " + st.ToString());
        lease_lost_ = true;
        cancel_ = true;
      }
    }
  }

  store::JobStore& store_;
  const store::JobLease lease_;
  const std::string key_;
  const std::chrono::seconds duration_;
  const std::atomic<bool>& host_cancel_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> lease_lost_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  std::thread thread_;  // last: started once everything above is initialised
};

JobOutcome JobRunner::Run(const store::JobRecord& job) {
  JobOutcome outcome;
  outcome.job_id = job.id;
  outcome.job_key = job.job_key;
  outcome.study_uid = job.study_instance_uid;
  outcome.plugin_id = job.plugin_id;

  const std::string pin = PinKey(job.study_instance_uid, job.plugin_id, job.plugin_version);
  auto finished = [&] {  // the job will not run again in this process
    {
      std::lock_guard<std::mutex> lock(pinned_mutex_);
      pinned_.erase(pin);
    }
    ForgetStudyIfDone(job.study_instance_uid);
  };
  auto report = [&](const Status& st) {
    if (Status s = Fail(job, st, &outcome); !s.ok()) LogError("jobs", "cannot record failure: " + s.ToString());
    if (!IsRetryable(st.code()) || job.attempts >= job.max_attempts) finished();
    return outcome;
  };

  // The version the job was routed to when this process routed it; otherwise (after a restart) the active one,
  // recorded on the job when it differs from the routed version.
  plugins::LoadedPluginPtr plugin;
  {
    std::lock_guard<std::mutex> lock(pinned_mutex_);
    auto it = pinned_.find(pin);
    if (it != pinned_.end()) plugin = it->second;
  }
  if (!plugin) {
    plugin = registry_.Get(job.plugin_id);
    if (!plugin) return report(Unavailable("plugin " + job.plugin_id + " is not loaded"));
    const plugins::PluginInfo& active = plugin->info();
    if (active.so_sha256 != job.so_sha256) {
      if (Status st = store_.RepinJob(job.lease(), active.version, active.model_version, active.so_sha256); !st.ok()) {
        return report(st);
      }
    }
  }

  // Where the study's files are, as routing recorded it: a job resumed after a restart can run before its
  // folder is seen again.
  std::string source;
  if (auto recorded = store_.GetStudy(job.study_instance_uid); recorded.ok() && recorded->has_value()) {
    source = (*recorded)->source;
  }
  auto study = catalog_.Find(job.study_instance_uid, source);
  if (!study.ok()) return report(Unavailable(study.status().message()));

  // The plugin sees only the matched series that are usable; the others are reported per series.
  plugins::JobInput input;
  input.study = study->get();
  std::vector<std::string> series_errors;
  for (const std::string& uid : job.series_uids) {
    const dicom::Series* found = nullptr;
    for (const dicom::Series& s : (*study)->series) {
      if (s.series_instance_uid == uid) found = &s;
    }
    if (found == nullptr) {
      series_errors.push_back(uid + ": series not found");
    } else if (!found->error.empty()) {
      series_errors.push_back(uid + ": " + found->error);
    } else {
      input.series.push_back(found);
    }
  }
  for (const std::string& e : series_errors) {
    LogWarning("jobs", job.job_key + ": series skipped: " + e);
    (void)store_.Audit("aihubd", "series.skipped", job.job_key, DumpJson(nlohmann::json({{"reason", e}})));
  }
  if (input.series.empty()) {
    std::string all;
    for (const std::string& e : series_errors) all += (all.empty() ? "" : "; ") + e;
    return report(FailedPrecondition("no usable series: " + all));
  }

  const plugins::PluginInfo& info = plugin->info();
  plugins::JobOutput output;
  const auto started = std::chrono::steady_clock::now();
  Status executed;
  bool lease_lost = false;
  {
    LeaseKeeper keeper(store_, job, std::chrono::seconds(config_.Get()->host.job_lease_seconds), cancel_);
    executed = plugin->Execute(input, &output, keeper.cancel_flag());
    lease_lost = keeper.lease_lost();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  outcome.execute_seconds = seconds;
  if (lease_lost) {
    // Another claim owns the job now (this host was presumed dead); its outcome is not ours to record.
    outcome.status = Aborted(job.job_key + ": lease lost while the plugin ran");
    return outcome;
  }
  if (!executed.ok()) return report(executed);

  Result result;
  result.job_key = job.job_key;
  result.study = IdentityFromTags((*study)->tags);
  for (const dicom::Series* s : input.series) {
    SourceSeries src;
    src.series_instance_uid = s->series_instance_uid;
    src.modality = TagOr(s->tags, kModality);
    for (const dicom::Instance& inst : s->instances) src.instances.push_back({inst.sop_class_uid, inst.sop_instance_uid});
    result.sources.push_back(std::move(src));
  }
  result.algorithm.plugin_id = info.id;
  result.algorithm.name = info.name;
  result.algorithm.version = info.version;
  result.algorithm.model_version = info.model_version;
  result.algorithm.manufacturer = info.manufacturer;
  result.algorithm.so_sha256 = info.so_sha256;
  result.department = job.department;
  result.mode = job.mode;
  result.findings = std::move(output.findings);
  result.summary = std::move(output.summary);
  result.completed_at = UtcNowSeconds();
  compose::AssignIdentifiers(result);
  SetPredecessor(job, &result);

  EncodedResult encoded;
  auto sr = compose::EncodeSr(result);
  if (!sr.ok()) return report(Internal("cannot encode the SR: " + sr.status().message()));
  encoded.sr = std::move(sr).value();
  encoded.fhir = compose::EncodeFhirBundle(result);
  encoded.oru = compose::EncodeOru(result);

  // The result and its deliveries are stored in one transaction: a succeeded job always has its outbox rows.
  std::vector<store::OutboxItem> deliveries = planner_ ? planner_(result, encoded) : std::vector<store::OutboxItem>{};
  if (Status st = store_.CompleteJob(job.lease(), DumpJson(compose::ToJson(result)), result.sr_sop_instance_uid,
                                     deliveries);
      !st.ok()) {
    // Nothing was stored. Retried like a transient failure; if even that cannot be written, the job stays
    // claimed and is recovered at the next start.
    LogError("jobs", job.job_key + ": cannot store the result: " + st.ToString());
    return report(Unavailable("cannot store the result: " + st.message()));
  }
  finished();
  LogInfo("jobs", job.job_key + " succeeded in " + std::to_string(seconds) + " s with " +
                      std::to_string(result.findings.size()) + " finding(s)");
  outcome.result = std::move(result);
  return outcome;
}

}  // namespace aihub::core
