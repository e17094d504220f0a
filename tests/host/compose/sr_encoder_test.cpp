#include "compose/sr_encoder.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "compose/format.h"
#include "compose/ids.h"
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcbytstr.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcstack.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "test_result.h"
#include "test_util.h"

namespace aihub::compose {
namespace {

namespace fs = std::filesystem;
using testing::MakeHeadCtResult;
using testing::Run;
using testing::WriteFile;

// Runs dciodvfy; returns its "Error" lines, printing warnings so a reviewer sees them.
std::string DciodvfyErrors(const fs::path& file) {
  std::string out = Run("dciodvfy -new '" + file.string() + "'");
  // dciodvfy names the IOD it checked first; without that it did not run (or did not recognise the file).
  REQUIRE_MESSAGE(out.find("Comprehensive3DSR") != std::string::npos, out);
  std::istringstream lines(out);
  std::string line, errors;
  while (std::getline(lines, line)) {
    if (line.rfind("Error", 0) == 0) errors += line + "\n";
    if (line.rfind("Warning", 0) == 0) MESSAGE("dciodvfy: " << line);
  }
  return errors;
}

// All (concept name, code value) pairs of CODE items in the document, as "concept=value" lines.
std::string CodePairs(DSRDocumentTree& tree) {
  std::string out;
  if (tree.gotoRoot() == 0) return out;
  do {
    DSRContentItem& item = tree.getCurrentContentItem();
    if (item.getValueType() == DSRTypes::VT_Code) {
      out += std::string(item.getConceptName().getCodeValue().c_str()) + "=" +
             item.getCodeValue().getCodeValue().c_str() + "\n";
    }
  } while (tree.iterate() > 0);
  return out;
}

// "<graphic type> <points> <referenced SOP instance> frame <n|->" per SCOORD, in document order.
std::string ScoordSummary(DSRDocumentTree& tree) {
  std::string out;
  if (tree.gotoRoot() == 0) return out;
  do {
    DSRContentItem& item = tree.getCurrentContentItem();
    if (item.getValueType() != DSRTypes::VT_SCoord) continue;
    DSRSpatialCoordinatesValue* scoord = item.getSpatialCoordinatesPtr();
    out += std::string(DSRTypes::graphicTypeToEnumeratedValue(scoord->getGraphicType())) + " " +
           std::to_string(scoord->getGraphicDataList().getNumberOfItems()) + " ";
    if (tree.goDown() > 0) {
      DSRImageReferenceValue* image = tree.getCurrentContentItem().getImageReferencePtr();
      out += image != nullptr ? image->getSOPInstanceUID().c_str() : "<no image>";
      DSRImageFrameList& frames = image->getFrameList();
      Sint32 frame = 0;
      out += frames.isEmpty() || frames.getItem(1, frame).bad() ? std::string(" frame -")
                                                                 : " frame " + std::to_string(frame);
      tree.goUp();
    }
    out += "\n";
  } while (tree.iterate() > 0);
  return out;
}

// Values of all TEXT items, one a line.
std::string TextValues(DSRDocumentTree& tree) {
  std::string out;
  if (tree.gotoRoot() == 0) return out;
  do {
    if (tree.getCurrentContentItem().getValueType() == DSRTypes::VT_Text) {
      out += std::string(tree.getCurrentContentItem().getStringValue().c_str()) + "\n";
    }
  } while (tree.iterate() > 0);
  return out;
}

TEST_CASE("SR of a head CT result validates with dciodvfy and reads back with DCMTK") {
  Result r = MakeHeadCtResult();
  StatusOr<std::string> sr = EncodeSr(r);
  REQUIRE_MESSAGE(sr.ok(), sr.status().ToString());
  fs::path dir = testing::TempDir("sr");
  fs::path file = WriteFile(dir, "sr.dcm", *sr);
  CHECK(sr->substr(128, 4) == "DICM");
  CHECK(DciodvfyErrors(file) == "");

  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  DSRDocument doc;
  REQUIRE(doc.read(*ff.getDataset()).good());
  OFString value;
  auto get = [&](OFCondition (DSRDocument::*getter)(OFString&, const signed long) const) {
    return std::string((doc.*getter)(value, 0).good() ? value.c_str() : "<missing>");
  };
  CHECK(get(&DSRDocument::getSOPInstanceUID) == r.sr_sop_instance_uid);
  CHECK(get(&DSRDocument::getSeriesInstanceUID) == r.sr_series_instance_uid);
  CHECK(get(&DSRDocument::getStudyInstanceUID) == r.study.study_instance_uid);
  CHECK(get(&DSRDocument::getSOPClassUID) == kComprehensive3DSrSopClassUid);
  CHECK(get(&DSRDocument::getPatientID) == "MRN12345");
  CHECK(get(&DSRDocument::getContentDate) == "20261128");
  CHECK(get(&DSRDocument::getContentTime) == "010203");
  CHECK(doc.getCompletionFlag() == DSRTypes::CF_Complete);
  CHECK(doc.getVerificationFlag() == DSRTypes::VF_Unverified);
  std::string codes = CodePairs(doc.getTree());
  CHECK(codes.find("50960005=52101004\n") != std::string::npos);  // hemorrhage: Present
  CHECK(codes.find("RID4700=2667000\n") != std::string::npos);    // midline shift: Absent
  CHECK(codes.find("urgency=critical\n") != std::string::npos);
  CHECK(codes.find("363698007=12738006\n") != std::string::npos);  // finding site: brain
  CHECK(codes.find("272741003=7771000\n") != std::string::npos);   // laterality: left
  CHECK(ScoordSummary(doc.getTree()) ==
        std::string("POLYLINE 5 ") + testing::kEnhancedCtUid + " frame 17\n" + "POINT 1 " + testing::kCtImageUid2 +
            " frame -\n");
  CHECK(TextValues(doc.getTree()).find(FindingIdentifier(r, 1) + "\n") != std::string::npos);

  DcmItem* equipment = nullptr;
  REQUIRE(ff.getDataset()->findAndGetSequenceItem(DCM_ContributingEquipmentSequence, equipment, 0).good());
  CHECK(std::string(equipment->findAndGetOFString(DCM_DeviceUID, value).good() ? value.c_str() : "") ==
        r.algorithm.device_uid);
  CHECK(equipment->findAndGetOFStringArray(DCM_SoftwareVersions, value).good());
  CHECK(std::string(value.c_str()) == "1.4.0\\2");
  fs::remove_all(dir);
}

TEST_CASE("SR is byte-identical for the same result and changes with the job key") {
  Result r = MakeHeadCtResult();
  StatusOr<std::string> a = EncodeSr(r);
  StatusOr<std::string> b = EncodeSr(r);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(*a == *b);
  r.job_key += "|retry";
  AssignIdentifiers(r);
  StatusOr<std::string> c = EncodeSr(r);
  REQUIRE(c.ok());
  CHECK(*a != *c);
  CHECK(c->find(r.sr_sop_instance_uid) != std::string::npos);
}

TEST_CASE("a re-run's SR names the SR it replaces in Predecessor Documents and still validates") {
  Result earlier = MakeHeadCtResult();
  Result r = earlier;
  r.job_key += "/g2";
  AssignIdentifiers(r);
  r.predecessor_sr_series_instance_uid = earlier.sr_series_instance_uid;
  r.predecessor_sr_sop_instance_uid = earlier.sr_sop_instance_uid;
  StatusOr<std::string> sr = EncodeSr(r);
  REQUIRE_MESSAGE(sr.ok(), sr.status().ToString());
  fs::path dir = testing::TempDir("sr");
  fs::path file = WriteFile(dir, "rerun.dcm", *sr);
  CHECK(DciodvfyErrors(file) == "");
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  DSRDocument doc;
  REQUIRE(doc.read(*ff.getDataset()).good());
  DSRSOPInstanceReferenceList& predecessors = doc.getPredecessorDocuments();
  REQUIRE(predecessors.gotoFirstItem().good());
  OFString value;
  CHECK(std::string(predecessors.getSOPInstanceUID(value).c_str()) == earlier.sr_sop_instance_uid);
  CHECK(std::string(predecessors.getSeriesInstanceUID(value).c_str()) == earlier.sr_series_instance_uid);
  CHECK(predecessors.gotoNextItem().bad());
  // A first run has none.
  StatusOr<std::string> first = EncodeSr(earlier);
  REQUIRE(first.ok());
  DcmFileFormat ff1;
  REQUIRE(ff1.loadFile(WriteFile(dir, "first.dcm", *first).c_str()).good());
  DSRDocument doc1;
  REQUIRE(doc1.read(*ff1.getDataset()).good());
  CHECK(doc1.getPredecessorDocuments().isEmpty());
  fs::remove_all(dir);
}

TEST_CASE("SR regions on a whole-slide image state their pixel origin: FRAME on a tile, VOLUME on the slide") {
  Result r = MakeHeadCtResult();
  const std::string slide_uid = "1.2.826.0.1.3680043.8.498.10077";
  r.sources = {{"1.2.826.0.1.3680043.8.498.10070", "SM", {{UID_VLWholeSlideMicroscopyImageStorage, slide_uid}}}};
  r.findings.resize(1);
  std::vector<Region>& regions = r.findings[0].regions;
  REQUIRE(regions.size() == 2);
  for (Region& g : regions) {
    g.series_instance_uid = r.sources[0].series_instance_uid;
    g.sop_class_uid = UID_VLWholeSlideMicroscopyImageStorage;
    g.sop_instance_uid = slide_uid;
    g.multi_frame = true;
    g.graphic_type = GraphicType::kPolygon;
  }
  regions[0].frame_number = 12;
  regions[0].points = {0, 0, 256, 0, 256, 256, 0, 256};
  regions[1].frame_number = 12;  // the frame only names the image: the points lie on the total pixel matrix
  regions[1].total_pixel_matrix = true;
  regions[1].points = {2048, 1024, 3072, 1024, 3072, 2048, 2048, 2048};
  StatusOr<std::string> sr = EncodeSr(r);
  REQUIRE_MESSAGE(sr.ok(), sr.status().ToString());
  fs::path dir = testing::TempDir("sr");
  fs::path file = WriteFile(dir, "slide.dcm", *sr);
  CHECK(DciodvfyErrors(file) == "");

  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  std::string origins;
  DcmStack stack;
  while (ff.getDataset()->search(DCM_PixelOriginInterpretation, stack, ESM_afterStackTop, OFTrue).good()) {
    OFString value;
    static_cast<DcmByteString*>(stack.top())->getOFString(value, 0);
    origins += std::string(value.c_str()) + "\n";
  }
  CHECK(origins == "FRAME\nVOLUME\n");
  DSRDocument doc;
  REQUIRE(doc.read(*ff.getDataset()).good());
  CHECK(ScoordSummary(doc.getTree()) == "POLYLINE 5 " + slide_uid + " frame 12\n" + "POLYLINE 5 " + slide_uid +
                                            " frame -\n");

  // Regions on other images carry no pixel origin.
  Result ct = MakeHeadCtResult();
  StatusOr<std::string> ct_sr = EncodeSr(ct);
  REQUIRE(ct_sr.ok());
  DcmFileFormat ct_ff;
  REQUIRE(ct_ff.loadFile(WriteFile(dir, "ct.dcm", *ct_sr).c_str()).good());
  DcmStack none;
  CHECK(ct_ff.getDataset()->search(DCM_PixelOriginInterpretation, none, ESM_fromHere, OFTrue).bad());
  fs::remove_all(dir);
}

TEST_CASE("SR without findings validates") {
  Result r = MakeHeadCtResult();
  r.findings.clear();
  r.summary.clear();
  StatusOr<std::string> sr = EncodeSr(r);
  REQUIRE_MESSAGE(sr.ok(), sr.status().ToString());
  fs::path dir = testing::TempDir("sr");
  CHECK(DciodvfyErrors(WriteFile(dir, "empty.dcm", *sr)) == "");
  fs::remove_all(dir);
}

TEST_CASE("SR keeps hostile and non-ASCII text valid") {
  Result r = MakeHeadCtResult();
  r.study.patient_name = "M\xc3\xbcller\\Back^J\xc3\xbcrgen";
  r.study.study_description = std::string(200, 'x');
  r.study.patient_birth_date = "not a date";
  r.algorithm.name = "Name\\with\\backslashes";
  r.findings[0].text = "line1\r\nline2\x01 \xc3\xa9";
  r.findings[1].concept = {"a-very-long-code-value-beyond-16", "99LOCAL", std::string(100, 'm')};
  r.findings[0].regions[0].graphic_type = GraphicType::kEllipse;
  r.findings[0].regions[0].points = {10, 20, 50, 20, 30, 10, 30, 30};
  StatusOr<std::string> sr = EncodeSr(r);
  REQUIRE_MESSAGE(sr.ok(), sr.status().ToString());
  fs::path dir = testing::TempDir("sr");
  CHECK(DciodvfyErrors(WriteFile(dir, "hostile.dcm", *sr)) == "");
  fs::remove_all(dir);
}

// Tags (with their values) of string elements anywhere in the dataset that are not valid UTF-8.
std::string InvalidUtf8Elements(DcmItem& dataset) {
  std::string out;
  DcmStack stack;
  while (dataset.nextObject(stack, OFTrue).good()) {
    auto* element = dynamic_cast<DcmByteString*>(stack.top());
    if (element == nullptr) continue;
    OFString value;
    if (element->getOFStringArray(value).bad()) continue;
    std::string v(value.c_str(), value.length());
    if (ReplaceInvalidUtf8(v) != v) out += std::string(element->getTag().toString().c_str()) + " " + v + "\n";
  }
  return out;
}

TEST_CASE("SR replaces invalid UTF-8, since it declares ISO_IR 192") {
  Result r = MakeHeadCtResult();
  const std::string fffd = "\xEF\xBF\xBD";
  r.study.patient_name = "M\xfcller^J\xc3\xbcrgen";  // Latin-1 family name, UTF-8 given name
  r.study.study_description = "CT \xff\xfe";
  r.algorithm.manufacturer = "Lab \xc0\xaf";  // overlong
  r.findings[0].text = "bad \xff end\r\nline2";
  r.findings[1].concept.meaning = "shift \xe2\x82";  // truncated
  r.summary = "summary \xed\xa0\x80";             // surrogate
  StatusOr<std::string> sr = EncodeSr(r);
  REQUIRE_MESSAGE(sr.ok(), sr.status().ToString());
  fs::path dir = testing::TempDir("sr");
  fs::path file = WriteFile(dir, "utf8.dcm", *sr);
  CHECK(DciodvfyErrors(file) == "");

  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  OFString value;
  REQUIRE(ff.getDataset()->findAndGetOFString(DCM_SpecificCharacterSet, value).good());
  CHECK(std::string(value.c_str()) == "ISO_IR 192");
  CHECK(InvalidUtf8Elements(*ff.getDataset()) == "");
  REQUIRE(ff.getDataset()->findAndGetOFString(DCM_PatientName, value).good());
  CHECK(std::string(value.c_str()) == "M" + fffd + "ller^J\xc3\xbcrgen");
  DSRDocument doc;
  REQUIRE(doc.read(*ff.getDataset()).good());
  std::string texts = TextValues(doc.getTree());
  CHECK(texts.find("bad " + fffd + " end\r\nline2\n") != std::string::npos);  // line breaks kept in UT
  CHECK(texts.find("summary " + fffd + fffd + fffd + "\n") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("the dciodvfy check notices a broken SR") {
  StatusOr<std::string> sr = EncodeSr(MakeHeadCtResult());
  REQUIRE(sr.ok());
  fs::path dir = testing::TempDir("sr");
  fs::path file = WriteFile(dir, "broken.dcm", *sr);
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  ff.getDataset()->findAndDeleteElement(DCM_ContentDate);
  ff.getDataset()->findAndDeleteElement(DCM_CompletionFlag);
  REQUIRE(ff.saveFile(file.c_str(), EXS_LittleEndianExplicit).good());
  CHECK(DciodvfyErrors(file) != "");
  fs::remove_all(dir);
}

TEST_CASE("SR rejects results it cannot encode") {
  Result r = MakeHeadCtResult();
  Result no_ids = r;
  no_ids.sr_sop_instance_uid.clear();
  CHECK(EncodeSr(no_ids).status().code() == AIHUB_FAILED_PRECONDITION);
  Result bad_time = r;
  bad_time.completed_at = "yesterday";
  CHECK(EncodeSr(bad_time).status().code() == AIHUB_INVALID_ARGUMENT);
  Result bad_region = r;
  bad_region.findings[0].regions[0].points.pop_back();
  CHECK(EncodeSr(bad_region).status().code() == AIHUB_INVALID_ARGUMENT);
  Result bad_study = r;
  bad_study.study.study_instance_uid = "not a uid";
  CHECK(EncodeSr(bad_study).status().code() == AIHUB_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace aihub::compose
