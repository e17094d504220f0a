#include "core/dicom_receiver.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scpthrd.h>

#include <atomic>
#include <list>
#include <mutex>
#include <thread>

#include "common/hash.h"
#include "common/log.h"

namespace aihub::adapter {

namespace fs = std::filesystem;

namespace {

// DICOM PS3.4 C-STORE status codes.
constexpr Uint16 kStatusCannotUnderstand = 0xC000;     // Error: cannot understand
constexpr Uint16 kStatusDataSetMismatch = 0xA900;      // Error: data set does not match SOP class
constexpr Uint16 kStatusOutOfResources = 0xA700;       // Refused: out of resources

std::string Trim(const OFString& s) {
  std::string out = s.c_str();
  while (!out.empty() && (out.back() == ' ' || out.back() == '\0')) out.pop_back();
  while (!out.empty() && out.front() == ' ') out.erase(out.begin());
  return out;
}

struct Shared {
  Spool* spool = nullptr;
  std::function<void(const std::string&)> on_stored;
  std::vector<std::string> allowed_callers;
  DcmSharedSCPConfig config;
};

// One association: DCMTK's DcmThreadSCP does negotiation, C-ECHO and the DIMSE loop; C-STORE is ours.
class StoreScp : public DcmThreadSCP {
 public:
  explicit StoreScp(Shared& shared) : shared_(shared) { setSharedConfig(shared.config); }

 protected:
  OFBool checkCallingAETitleAccepted(const OFString& calling_ae) override {
    if (shared_.allowed_callers.empty()) return OFTrue;
    const std::string ae = Trim(calling_ae);
    for (const std::string& allowed : shared_.allowed_callers) {
      if (allowed == ae) return OFTrue;
    }
    LogWarning("dicom", "association from calling AE '" + ae + "' refused: not in allowed_callers");
    return OFFalse;
  }

  OFCondition handleIncomingCommand(T_DIMSE_Message* msg, const DcmPresentationContextInfo& info) override {
    if (msg->CommandField != DIMSE_C_STORE_RQ) return DcmThreadSCP::handleIncomingCommand(msg, info);
    T_DIMSE_C_StoreRQ& req = msg->msg.CStoreRQ;
    const fs::path temp = shared_.spool->IncomingPath();
    OFCondition cond = receiveSTORERequest(req, info.presentationContextID, OFString(temp.c_str()));
    if (cond.bad()) {
      // The transfer broke off (abort, timeout, network): nothing was acknowledged, nothing is kept.
      std::error_code ec;
      fs::remove(temp, ec);
      LogWarning("dicom", std::string("C-STORE receive failed, instance dropped: ") + cond.text());
      return cond;
    }
    std::string reason;
    const Uint16 status = Accept(req, temp, &reason);
    if (status != STATUS_Success) {
      std::error_code ec;
      fs::remove(temp, ec);
      LogWarning("dicom", "C-STORE of " + std::string(req.AffectedSOPInstanceUID) + " refused: " + reason);
      DcmDataset detail;
      detail.putAndInsertString(DCM_ErrorComment, reason.substr(0, 64).c_str());
      return sendSTOREResponse(info.presentationContextID, req.MessageID, req.AffectedSOPClassUID,
                               req.AffectedSOPInstanceUID, status, &detail);
    }
    return sendSTOREResponse(info.presentationContextID, req, STATUS_Success);
  }

 private:
  Uint16 Accept(const T_DIMSE_C_StoreRQ& req, const fs::path& temp, std::string* reason) {
    auto uids = ReadInstanceUids(temp);
    if (!uids.ok()) {
      *reason = uids.status().message();
      return kStatusCannotUnderstand;
    }
    const std::string& study_uid = uids->study_uid;
    const std::string& series_uid = uids->series_uid;
    const std::string& sop_uid = uids->sop_uid;
    if (sop_uid != Trim(req.AffectedSOPInstanceUID)) {
      *reason = "SOPInstanceUID differs from the C-STORE request";
      return kStatusDataSetMismatch;
    }
    std::error_code ec;
    const auto size = fs::file_size(temp, ec);
    IncomingInstance in{temp, study_uid, series_uid, sop_uid, Trim(getPeerAETitle()),
                        static_cast<int64_t>(ec ? 0 : size)};
    if (Status st = shared_.spool->AddInstance(in, NowUnixMs()); !st.ok()) {
      *reason = "spool: " + st.message();
      return kStatusOutOfResources;
    }
    if (shared_.on_stored) shared_.on_stored(study_uid);
    return STATUS_Success;
  }

  Shared& shared_;
};

// Transfer syntaxes accepted for every storage SOP class, preferred first.
const char* const kTransferSyntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,  UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,     UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,      UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,        UID_JPEGLSLosslessTransferSyntax,
    UID_JPEGLSLossyTransferSyntax,           UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_JPEG2000TransferSyntax,              UID_RLELosslessTransferSyntax,
};

}  // namespace

class DicomReceiver::Impl {
 public:
  Shared shared;
  T_ASC_Network* network = nullptr;
  std::atomic<bool> stop{false};
  std::thread acceptor;
  struct Session {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::mutex mu;
  std::list<Session> sessions;
  std::atomic<int> active{0};
  int max_associations = 16;

  void AcceptLoop() {
    while (!stop) {
      T_ASC_Association* assoc = nullptr;
      // Non-blocking with a 1 s timeout so Stop() is noticed.
      OFCondition cond = ASC_receiveAssociation(network, &assoc, ASC_DEFAULTMAXPDU, nullptr, nullptr, OFFalse,
                                                DUL_NOBLOCK, 1);
      if (cond == DUL_NOASSOCIATIONREQUEST || assoc == nullptr || cond.bad()) {
        if (assoc != nullptr) {
          ASC_dropAssociation(assoc);
          ASC_destroyAssociation(&assoc);
        }
        if (cond.bad() && cond != DUL_NOASSOCIATIONREQUEST) {
          LogWarning("dicom", std::string("association request failed: ") + cond.text());
        }
        Reap();
        continue;
      }
      if (active >= max_associations) {
        LogWarning("dicom", "association refused: " + std::to_string(max_associations) + " already open");
        T_ASC_RejectParameters rej = {ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                                      ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
        ASC_rejectAssociation(assoc, &rej);
        ASC_dropAssociation(assoc);
        ASC_destroyAssociation(&assoc);
        continue;
      }
      ++active;
      std::lock_guard<std::mutex> lock(mu);
      Session& session = sessions.emplace_back();
      session.thread = std::thread([this, assoc, &session] {
        {
          StoreScp scp(shared);
          // run() negotiates, serves DIMSE until release/abort, and drops and destroys the association.
          OFCondition c = scp.run(assoc);
          if (c.bad() && c != DUL_PEERREQUESTEDRELEASE) LogInfo("dicom", std::string("association ended: ") + c.text());
        }
        --active;
        session.done = true;
      });
      ReapLocked();
    }
  }

  // Joins finished session threads so a long-running receiver does not pile them up. Caller holds mu.
  void ReapLocked() {
    for (auto it = sessions.begin(); it != sessions.end();) {
      if (it->done) {
        it->thread.join();
        it = sessions.erase(it);
      } else {
        ++it;
      }
    }
  }
  void Reap() {
    std::unique_lock<std::mutex> lock(mu, std::try_to_lock);
    if (lock.owns_lock()) ReapLocked();
  }
};

DicomReceiver::DicomReceiver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DicomReceiver::~DicomReceiver() { Stop(); }

StatusOr<std::unique_ptr<DicomReceiver>> DicomReceiver::Start(const ReceiverSettings& settings, Spool& spool,
                                                              std::function<void(const std::string&)> on_stored) {
  auto impl = std::make_unique<Impl>();
  impl->shared.spool = &spool;
  impl->shared.on_stored = std::move(on_stored);
  impl->shared.allowed_callers = settings.allowed_callers;
  impl->max_associations = std::max(1, settings.max_associations);
  DcmSCPConfig& cfg = *impl->shared.config;
  cfg.setAETitle(settings.ae_title.c_str());
  cfg.setPort(static_cast<Uint16>(settings.port));
  cfg.setACSETimeout(static_cast<Uint32>(settings.acse_timeout_seconds));
  cfg.setDIMSETimeout(static_cast<Uint32>(settings.dimse_timeout_seconds));
  cfg.setConnectionBlockingMode(DUL_NOBLOCK);
  cfg.setHostLookupEnabled(OFFalse);
  cfg.setMaxReceivePDULength(ASC_MAXIMUMPDUSIZE / 4);   // 256 KiB PDUs: fewer reads per instance
  OFList<OFString> syntaxes;
  for (const char* ts : kTransferSyntaxes) syntaxes.push_back(ts);
  OFList<OFString> verification;
  verification.push_back(UID_LittleEndianExplicitTransferSyntax);
  verification.push_back(UID_LittleEndianImplicitTransferSyntax);
  OFCondition cond = cfg.addPresentationContext(UID_VerificationSOPClass, verification);
  // A DCMTK presentation context list holds at most 128 entries: the "long" storage list (every storage SOP
  // class in common use) fits beside Verification.
  for (int i = 0; cond.good() && i < numberOfDcmLongSCUStorageSOPClassUIDs; ++i) {
    cond = cfg.addPresentationContext(dcmLongSCUStorageSOPClassUIDs[i], syntaxes);
  }
  if (cond.bad()) return Internal(std::string("DICOM presentation contexts: ") + cond.text());

  cond = ASC_initializeNetwork(NET_ACCEPTOR, settings.port, settings.acse_timeout_seconds, &impl->network);
  if (cond.bad()) {
    return Unavailable("cannot listen for DICOM on port " + std::to_string(settings.port) + ": " + cond.text());
  }
  Impl* raw = impl.get();
  impl->acceptor = std::thread([raw] { raw->AcceptLoop(); });
  LogInfo("dicom", "DICOM destination " + settings.ae_title + " listening on port " + std::to_string(settings.port));
  return std::unique_ptr<DicomReceiver>(new DicomReceiver(std::move(impl)));
}

void DicomReceiver::Stop() {
  if (!impl_ || impl_->stop.exchange(true)) return;
  if (impl_->acceptor.joinable()) impl_->acceptor.join();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (Impl::Session& session : impl_->sessions) session.thread.join();
    impl_->sessions.clear();
  }
  ASC_dropNetwork(&impl_->network);
}

}  // namespace aihub::adapter
