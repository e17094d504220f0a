// Tests of adapter/core/dicom_receiver with DCMTK's own command-line SCUs (echoscu, storescu) as the peers: what
// is acknowledged is in the spool, what is refused leaves nothing behind.
#include "core/dicom_receiver.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>

#include "test_util.h"

namespace aihub::adapter {
namespace {

namespace fs = std::filesystem;
using testing::kSeriesA;
using testing::kStudy;
using testing::Slice;
using testing::TempDir;

// DCMTK peers keep Nagle's algorithm on unless TCP_NODELAY=1 (the receiver here and the SCU children, which
// inherit it). Set before main, while the process has one thread.
const bool kNoDelay = ::setenv("TCP_NODELAY", "1", 1) == 0;

// A port that was free a moment ago (bound on 127.0.0.1:0, read back, closed).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Runs a DCMTK tool with bounded timeouts; its output goes to `log` (kept in the temp dir for failures).
int RunTool(const std::string& command, const fs::path& log) {
  const std::string line = command + " >>'" + log.string() + "' 2>&1";
  const int rc = std::system(line.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A C-STORE SCU on DCMTK's association API, for what storescu cannot do: announce a SOP Instance UID other than
// the data set's, or abort the association in the middle of an instance.
class RawScu {
 public:
  RawScu(int port, const std::string& calling_ae) {
    if (ASC_initializeNetwork(NET_REQUESTOR, 0, 5, &net_).bad()) return;
    T_ASC_Parameters* params = nullptr;
    if (ASC_createAssociationParameters(&params, 16384).bad()) return;
    ASC_setAPTitles(params, calling_ae.c_str(), "AIHUB", nullptr);
    ASC_setPresentationAddresses(params, "localhost", ("127.0.0.1:" + std::to_string(port)).c_str());
    const char* syntaxes[] = {UID_LittleEndianExplicitTransferSyntax};
    ASC_addPresentationContext(params, 1, UID_CTImageStorage, syntaxes, 1);
    if (ASC_requestAssociation(net_, params, &assoc_).bad()) return;
    associated_ = ASC_countAcceptedPresentationContexts(params) == 1;
  }
  ~RawScu() {
    if (assoc_ != nullptr) {
      if (associated_) ASC_releaseAssociation(assoc_);
      ASC_dropAssociation(assoc_);
      ASC_destroyAssociation(&assoc_);
    }
    if (net_ != nullptr) ASC_dropNetwork(&net_);
  }
  bool associated() const { return associated_; }

  // Sends `ds` as a C-STORE announcing `sop`. Returns the response status, or -1 when no response came (always
  // so with abort_midway: the association is aborted once the first data bytes are out).
  int Store(DcmDataset& ds, const std::string& sop, bool abort_midway = false) {
    T_DIMSE_C_StoreRQ req{};
    req.MessageID = assoc_->nextMsgID++;
    OFStandard::strlcpy(req.AffectedSOPClassUID, UID_CTImageStorage, sizeof(req.AffectedSOPClassUID));
    OFStandard::strlcpy(req.AffectedSOPInstanceUID, sop.c_str(), sizeof(req.AffectedSOPInstanceUID));
    req.DataSetType = DIMSE_DATASET_PRESENT;
    req.Priority = DIMSE_PRIORITY_MEDIUM;
    T_DIMSE_C_StoreRSP rsp{};
    DcmDataset* detail = nullptr;
    abort_midway_ = abort_midway;
    OFCondition cond = DIMSE_storeUser(assoc_, 1, &req, nullptr, &ds, &RawScu::Progress, this, DIMSE_BLOCKING, 5,
                                       &rsp, &detail);
    delete detail;
    if (aborted_) associated_ = false;
    return cond.good() ? rsp.DimseStatus : -1;
  }

 private:
  static void Progress(void* self_ptr, T_DIMSE_StoreProgress* progress, T_DIMSE_C_StoreRQ*) {
    auto* self = static_cast<RawScu*>(self_ptr);
    if (self->abort_midway_ && !self->aborted_ && progress->state == DIMSE_StoreProgressing &&
        progress->progressBytes > 0) {
      self->aborted_ = true;
      ASC_abortAssociation(self->assoc_);
    }
  }

  T_ASC_Network* net_ = nullptr;
  T_ASC_Association* assoc_ = nullptr;
  bool associated_ = false;
  bool abort_midway_ = false;
  bool aborted_ = false;
};

struct Fixture {
  TempDir tmp;
  std::unique_ptr<Spool> spool;
  std::unique_ptr<DicomReceiver> receiver;
  int port = 0;
  std::mutex mu;
  std::vector<std::string> stored;   // on_stored calls
  fs::path log;

  explicit Fixture(std::vector<std::string> allowed_callers = {}) {
    REQUIRE(kNoDelay);
    auto s = Spool::Open(tmp / "spool");
    REQUIRE_MESSAGE(s.ok(), s.status().ToString());
    spool = std::move(s).value();
    log = tmp / "scu.log";
    ReceiverSettings settings;
    settings.ae_title = "AIHUB";
    settings.allowed_callers = std::move(allowed_callers);
    settings.acse_timeout_seconds = 5;
    settings.dimse_timeout_seconds = 5;
    // The free port can be taken between FreePort() and Start(): try a few.
    for (int attempt = 0; attempt < 5 && !receiver; ++attempt) {
      port = FreePort();
      settings.port = port;
      auto r = DicomReceiver::Start(settings, *spool, [this](const std::string& study) {
        std::lock_guard<std::mutex> lock(mu);
        stored.push_back(study);
      });
      if (r.ok()) receiver = std::move(r).value();
    }
    REQUIRE(receiver != nullptr);
  }
  ~Fixture() {
    if (receiver) receiver->Stop();
  }

  std::string Peer() const { return "127.0.0.1 " + std::to_string(port); }
  int Echo(const std::string& calling_ae) {
    return RunTool("/usr/bin/echoscu -to 5 -ta 5 -td 5 -aet " + calling_ae + " -aec AIHUB " + Peer(), log);
  }
  int Store(const std::string& calling_ae, const std::vector<fs::path>& files) {
    std::string cmd = "/usr/bin/storescu -v -to 5 -ta 5 -td 5 -aet " + calling_ae + " -aec AIHUB " + Peer();
    for (const fs::path& f : files) cmd += " '" + f.string() + "'";
    return RunTool(cmd, log);
  }
  std::vector<std::string> Stored() {
    std::lock_guard<std::mutex> lock(mu);
    return stored;
  }
  std::string Log() const { return testing::ReadAll(log); }
};

TEST_CASE("echoscu gets a C-ECHO answer") {
  Fixture f;
  CHECK_MESSAGE(f.Echo("TESTSCU") == 0, f.Log());
}

TEST_CASE("storescu of three instances: three spooled files and rows, on_stored once per instance") {
  Fixture f;
  std::vector<fs::path> files;
  std::vector<std::string> bytes;
  for (int i = 1; i <= 3; ++i) {
    files.push_back(f.tmp / ("in" + std::to_string(i) + ".dcm"));
    testing::WriteInstance(Slice(kStudy, kSeriesA, i, 16), files.back());
    bytes.push_back(testing::ReadAll(files.back()));
  }
  REQUIRE_MESSAGE(f.Store("CT_ER1", files) == 0, f.Log());

  // Each instance is in the spool before its success response, so no waiting is needed here.
  auto instances = f.spool->Instances(kStudy);
  REQUIRE(instances.ok());
  REQUIRE(instances->size() == 3);
  for (int i = 1; i <= 3; ++i) {
    const std::string sop = std::string(kSeriesA) + "." + std::to_string(i);
    const fs::path path = testing::SpooledPath(*f.spool, kStudy, kSeriesA, sop);
    CAPTURE(sop);
    REQUIRE(fs::exists(path));
    auto uids = ReadInstanceUids(path);
    REQUIRE(uids.ok());
    CHECK(uids->sop_uid == sop);
  }
  CHECK(testing::CountFiles(f.spool->dir() / "files") == 3);
  CHECK(testing::CountFiles(f.spool->dir() / "incoming") == 0);
  auto open = f.spool->OpenStudies();
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  CHECK(open->front().instances == 3);
  CHECK(open->front().calling_ae == "CT_ER1");
  CHECK(f.Stored() == std::vector<std::string>(3, kStudy));
}

TEST_CASE("a calling AE title not in allowed_callers is refused and nothing is spooled") {
  Fixture f({"CT_ER1", "MR_2"});
  const fs::path file = f.tmp / "in.dcm";
  testing::WriteInstance(Slice(kStudy, kSeriesA, 1), file);
  CHECK(f.Echo("INTRUDER") != 0);
  CHECK(f.Store("INTRUDER", {file}) != 0);
  CHECK(f.spool->Instances(kStudy)->empty());
  CHECK(f.Stored().empty());
  CHECK(testing::CountFiles(f.spool->dir() / "files") == 0);
  CHECK(testing::CountFiles(f.spool->dir() / "incoming") == 0);

  // A listed caller gets through.
  CHECK_MESSAGE(f.Echo("MR_2") == 0, f.Log());
  CHECK_MESSAGE(f.Store("CT_ER1", {file}) == 0, f.Log());
  CHECK(f.spool->Instances(kStudy)->size() == 1);
  CHECK(f.Stored().size() == 1);
}

TEST_CASE("an instance with an invalid SOP Instance UID gets a failure status and leaves nothing behind") {
  Fixture f;
  testing::SliceSpec bad = Slice(kStudy, kSeriesA, 1);
  bad.sop_uid = "1.2.826.0.1.3680043.9.7777.abc";
  const fs::path bad_file = f.tmp / "bad.dcm";
  testing::WriteInstance(bad, bad_file);
  CHECK(f.Store("CT_ER1", {bad_file}) != 0);
  CHECK_MESSAGE(f.Log().find("Received Store Response (Error: CannotUnderstand") != std::string::npos, f.Log());
  CHECK(f.spool->Instances(kStudy)->empty());
  CHECK(testing::CountFiles(f.spool->dir() / "files") == 0);
  CHECK(testing::CountFiles(f.spool->dir() / "incoming") == 0);
  CHECK(f.spool->OpenStudies()->empty());
  CHECK(f.Stored().empty());

  // The next association with a valid instance is stored.
  const fs::path good_file = f.tmp / "good.dcm";
  testing::WriteInstance(Slice(kStudy, kSeriesA, 2), good_file);
  CHECK_MESSAGE(f.Store("CT_ER1", {good_file}) == 0, f.Log());
  auto instances = f.spool->Instances(kStudy);
  REQUIRE(instances->size() == 1);
  CHECK(instances->front().sop_uid == std::string(kSeriesA) + ".2");
  CHECK(f.Stored().size() == 1);
}

TEST_CASE("an invalid Study Instance UID is refused, the association goes on with the next instance") {
  Fixture f;
  testing::SliceSpec bad = Slice("../../etc", kSeriesA, 1);
  const fs::path bad_file = f.tmp / "bad.dcm";
  const fs::path good_file = f.tmp / "good.dcm";
  testing::WriteInstance(bad, bad_file);
  testing::WriteInstance(Slice(kStudy, kSeriesA, 2), good_file);
  // -nh: storescu goes on after the refused instance, on the same association.
  const std::string cmd = "/usr/bin/storescu -v -nh -to 5 -ta 5 -td 5 -aet CT_ER1 -aec AIHUB " + f.Peer() + " '" +
                          bad_file.string() + "' '" + good_file.string() + "'";
  RunTool(cmd, f.log);
  const std::string log = f.Log();
  const size_t refused = log.find("Received Store Response (Error: CannotUnderstand");
  CHECK_MESSAGE(refused != std::string::npos, log);
  CHECK_MESSAGE(log.find("Received Store Response (Success)", refused) != std::string::npos, log);
  auto instances = f.spool->Instances(kStudy);
  REQUIRE_MESSAGE(instances->size() == 1, log);
  CHECK(instances->front().sop_uid == std::string(kSeriesA) + ".2");
  CHECK(f.spool->Instances("../../etc")->empty());
  CHECK(testing::CountFiles(f.spool->dir() / "files") == 1);
  CHECK(!fs::exists(f.spool->dir() / "etc"));
  CHECK(!fs::exists(f.spool->dir().parent_path() / "etc"));
  CHECK(f.Stored() == std::vector<std::string>{kStudy});
}

// storescu reads the whole file before sending and aborts the association on a truncated one, so this checks the
// end-to-end outcome; the receiver's own handling of a transfer cut short is the "aborted in the middle" case.
TEST_CASE("a truncated file never reaches the spool") {
  Fixture f;
  const fs::path whole = f.tmp / "whole.dcm";
  testing::WriteInstance(Slice(kStudy, kSeriesA, 1, 64), whole);
  const std::string bytes = testing::ReadAll(whole);
  const fs::path cut = f.tmp / "cut.dcm";
  testing::WriteAll(cut, bytes.substr(0, bytes.size() - 4000));   // cut in the middle of the pixel data
  CHECK(f.Store("CT_ER1", {cut}) != 0);
  CHECK(f.spool->Instances(kStudy)->empty());
  CHECK(testing::CountFiles(f.spool->dir() / "files") == 0);
  CHECK(testing::CountFiles(f.spool->dir() / "incoming") == 0);
  CHECK(f.Stored().empty());
}

TEST_CASE("a data set whose SOP Instance UID differs from the C-STORE request is refused (0xA900)") {
  Fixture f;
  const fs::path file = f.tmp / "in.dcm";
  testing::WriteInstance(Slice(kStudy, kSeriesA, 1), file);
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  {
    RawScu scu(f.port, "CT_ER1");
    REQUIRE(scu.associated());
    CHECK(scu.Store(*ff.getDataset(), std::string(kSeriesA) + ".999") == 0xA900);
    CHECK(f.spool->Instances(kStudy)->empty());
    // The association goes on: the same data set announced correctly is stored.
    CHECK(scu.Store(*ff.getDataset(), std::string(kSeriesA) + ".1") == STATUS_Success);
    CHECK(f.spool->Instances(kStudy)->size() == 1);
  }
  CHECK(f.Stored().size() == 1);
  CHECK(testing::CountFiles(f.spool->dir() / "incoming") == 0);
}

TEST_CASE("an association aborted in the middle of an instance leaves nothing behind") {
  Fixture f;
  const fs::path file = f.tmp / "big.dcm";
  testing::WriteInstance(Slice(kStudy, kSeriesA, 1, 256), file);   // 128 KiB of pixels: many PDUs
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  {
    RawScu scu(f.port, "CT_ER1");
    REQUIRE(scu.associated());
    CHECK(scu.Store(*ff.getDataset(), std::string(kSeriesA) + ".1", /*abort_midway=*/true) == -1);
  }
  // Stop() joins the association threads, so the receiver is done with the aborted transfer here.
  f.receiver->Stop();
  CHECK(f.spool->Instances(kStudy)->empty());
  CHECK(f.spool->OpenStudies()->empty());
  CHECK(testing::CountFiles(f.spool->dir() / "incoming") == 0);
  CHECK(testing::CountFiles(f.spool->dir() / "files") == 0);
  CHECK(f.Stored().empty());
}

TEST_CASE("Start fails with UNAVAILABLE when the port is taken") {
  TempDir tmp;
  auto spool = Spool::Open(tmp / "spool");
  REQUIRE(spool.ok());
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ReceiverSettings settings;
  settings.port = ntohs(addr.sin_port);
  auto r = DicomReceiver::Start(settings, **spool, nullptr);
  ::close(fd);
  CHECK(r.status().code() == AIHUB_UNAVAILABLE);
}

}  // namespace
}  // namespace aihub::adapter
