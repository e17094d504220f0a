#include "hl7/orders.h"

#include <doctest/doctest.h>

#include <string>

#include "test_util.h"

namespace aihub::hl7 {
namespace {

Message MustParse(const std::string& text) {
  StatusOr<Message> m = Message::Parse(text);
  INFO(m.status().ToString());
  REQUIRE(m.ok());
  return *m;
}

// A RIS order as many send it: v2.3.1, accession in OBR-18, Study Instance UID in ZDS-1, priority in OBR-27.6.
const std::string kOrm =
    "MSH|^~\\&|RIS|HOSP|AIHUB|HOSP|20260301101500||ORM^O01|MSG00001|P|2.3.1\r"
    "PID|1||123456^^^HOSP^MR||DOE^JOHN^A||19600101|M\r"
    "PV1|1|E|ER^101^1^HOSP||||1234^SMITH^ANNA\r"
    "ORC|NW|PL1001^RIS|FL2002^PACS||SC||^^^^^R\r"
    "OBR|1|PL1001^RIS|FL2002^PACS|CTHEAD^CT Head without contrast^L|||20260301101000|||||||||||ACC123||||||CT|||"
    "^^^^^S\r"
    "ZDS|1.2.840.113619.2.55.3.1234^RIS^Application^DICOM\r";

// IHE SWF OMI^O23 (v2.5.1): accession, Study Instance UID and modality in IPC, priority in TQ1-9.
const std::string kOmi =
    "MSH|^~\\&|RIS|HOSP|AIHUB|HOSP|20260301101500||OMI^O23^OMI_O23|MSG00002|P|2.5.1\r"
    "PID|1||654321^^^HOSP^MR||ROE^JANE||19701231|F\r"
    "PV1|1|O|RAD^2^^HOSP\r"
    "ORC|NW|PL2001|FL3002||SC\r"
    "TQ1|1||||||||A^ASAP^HL70485\r"
    "OBR|1|PL2001|FL3002|MRBRAIN^MR Brain^L\r"
    "IPC|ACC456|REQ1|1.2.840.10008.9.1|SPS1|MR\r";

TEST_CASE("ReadOrder reads a RIS ORM^O01") {
  StatusOr<OrderInfo> o = ReadOrder(MustParse(kOrm));
  REQUIRE(o.ok());
  CHECK(o->message_type == "ORM^O01");
  CHECK(o->order_control == "NW");
  CHECK(o->placer_order == "PL1001");
  CHECK(o->filler_order == "FL2002");
  CHECK(o->accession_number == "ACC123");
  CHECK(o->study_instance_uid == "1.2.840.113619.2.55.3.1234");
  CHECK(o->patient_id == "123456");
  CHECK(o->patient_name == "DOE^JOHN");
  CHECK(o->patient_location == "ER^101^1^HOSP");
  CHECK(o->procedure_code == "CTHEAD");
  CHECK(o->procedure_text == "CT Head without contrast");
  CHECK(o->modality == "CT");
  CHECK(o->priority == "S");  // OBR-27.6 before ORC-7.6
  CHECK(o->expected_instances == 0);
}

TEST_CASE("ReadOrder reads an IHE OMI^O23") {
  StatusOr<OrderInfo> o = ReadOrder(MustParse(kOmi));
  REQUIRE(o.ok());
  CHECK(o->message_type == "OMI^O23");
  CHECK(o->placer_order == "PL2001");
  CHECK(o->filler_order == "FL3002");
  CHECK(o->accession_number == "ACC456");
  CHECK(o->study_instance_uid == "1.2.840.10008.9.1");
  CHECK(o->modality == "MR");
  CHECK(o->priority == "A");
  CHECK(o->patient_name == "ROE^JANE");
  CHECK(o->patient_location == "RAD^2^^HOSP");
  CHECK(o->procedure_code == "MRBRAIN");
}

TEST_CASE("ReadOrder falls back to the filler order number and refuses orders it cannot match to a study") {
  const std::string head = "MSH|^~\\&|RIS|H|||||ORM^O01|M3|P|2.3\rPID|1||1\r";
  StatusOr<OrderInfo> filler = ReadOrder(MustParse(head + "ORC|NW|P1|F9\rOBR|1|P1|F9|X\r"));
  REQUIRE(filler.ok());
  CHECK(filler->accession_number == "F9");
  CHECK(filler->study_instance_uid.empty());

  StatusOr<OrderInfo> uid_only = ReadOrder(MustParse(head + "ORC|NW|P1\rOBR|1|P1\rZDS|1.2.3^RIS^Application^DICOM\r"));
  REQUIRE(uid_only.ok());
  CHECK(uid_only->accession_number.empty());
  CHECK(uid_only->study_instance_uid == "1.2.3");

  StatusOr<OrderInfo> neither = ReadOrder(MustParse(head + "ORC|NW|P1\rOBR|1|P1\r"));
  REQUIRE_FALSE(neither.ok());
  CHECK(neither.status().code() == AIHUB_INVALID_ARGUMENT);
  CHECK(neither.status().message().find("neither an accession number") != std::string::npos);

  for (const char* bad : {"1.2.abc", "1..2", ".1.2", "1.2.",
                          "1.2.840.10008.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25"}) {
    StatusOr<OrderInfo> o = ReadOrder(MustParse(head + "ORC|NW|P1|F1\rZDS|" + bad + "\r"));
    REQUIRE_FALSE(o.ok());
    CHECK(o.status().message().find("is not a DICOM UID") != std::string::npos);
  }

  StatusOr<OrderInfo> oru = ReadOrder(MustParse("MSH|^~\\&|A|B|||||ORU^R01|M4|P|2.5\r"));
  REQUIRE_FALSE(oru.ok());
  CHECK(oru.status().code() == AIHUB_UNIMPLEMENTED);
  CHECK(oru.status().message() == "unsupported message type ORU^R01");
}

std::string Adt(const std::string& trigger) {
  return "MSH|^~\\&|HIS|HOSP|AIHUB|HOSP|20260301||ADT^" + trigger +
         "^ADT_A01|ADT1|P|2.5.1\r"
         "EVN|" +
         trigger +
         "|20260301\r"
         "PID|1||P77^^^HOSP^MR~X1^^^OTHER||ROE^RICHARD^^^DR\r"
         "PV1|1|I|W3^12^B||||||||||||||||V123^^^HOSP\r";
}

TEST_CASE("ReadAdt reads A01, A04 and A08 and refuses other events") {
  for (const char* trigger : {"A01", "A04", "A08"}) {
    StatusOr<PatientEvent> e = ReadAdt(MustParse(Adt(trigger)));
    REQUIRE(e.ok());
    CHECK(e->message_type == std::string("ADT^") + trigger);
    CHECK(e->patient_id == "P77");
    CHECK(e->patient_name == "ROE^RICHARD");
    CHECK(e->patient_location == "W3^12^B");
    CHECK(e->visit_number == "V123");
  }
  StatusOr<PatientEvent> a03 = ReadAdt(MustParse(Adt("A03")));
  REQUIRE_FALSE(a03.ok());
  CHECK(a03.status().code() == AIHUB_UNIMPLEMENTED);
  CHECK(a03.status().message() == "unsupported message type ADT^A03");
  CHECK(ReadAdt(MustParse(kOrm)).status().code() == AIHUB_UNIMPLEMENTED);
  StatusOr<PatientEvent> no_id = ReadAdt(MustParse("MSH|^~\\&|HIS|H|||||ADT^A08|9|P|2.5\rPID|1||\r"));
  CHECK(no_id.status().code() == AIHUB_INVALID_ARGUMENT);
}

PriorityUpdate Update() {
  PriorityUpdate u;
  u.patient_id = "123456";
  u.patient_name = "DOE^JOHN";
  u.accession_number = "ACC123";
  u.study_instance_uid = "1.2.840.113619.2.55.3.1234";
  u.placer_order = "PL1001";
  u.filler_order = "FL2002";
  u.reason = "AI: suspected haemorrhage | 97% ^ review";
  return u;
}

TEST_CASE("BuildPriorityUpdate writes an ORM^O01 change order that ReadOrder reads back") {
  OutboundOptions options;
  options.sending_facility = "SITE";
  options.receiving_application = "RIS";
  const Message m = MustParse(BuildPriorityUpdate(Update(), options));
  CHECK(m.Get("MSH-9") == "ORM^O01^ORM_O01");
  CHECK(m.Get("MSH-3") == "AIHUB");
  CHECK(m.Get("MSH-4") == "SITE");
  CHECK(m.Get("MSH-5") == "RIS");
  CHECK(m.Version() == "2.5.1");
  CHECK(m.Get("MSH-18") == "UNICODE UTF-8");
  CHECK(m.ControlId().size() == 20);
  CHECK(m.Get("ORC-7.6") == "S");
  CHECK(m.Get("OBR-27.6") == "S");
  CHECK(m.Get("TQ1-9") == "S^Stat^HL70485");
  CHECK(m.Get("NTE-3") == "AI: suspected haemorrhage | 97% ^ review");
  CHECK(m.Get("ZDS-1") == "1.2.840.113619.2.55.3.1234^AIHUB^Application^DICOM");
  StatusOr<OrderInfo> o = ReadOrder(m);
  REQUIRE(o.ok());
  CHECK(o->order_control == "XO");
  CHECK(o->placer_order == "PL1001");
  CHECK(o->filler_order == "FL2002");
  CHECK(o->accession_number == "ACC123");
  CHECK(o->study_instance_uid == "1.2.840.113619.2.55.3.1234");
  CHECK(o->patient_id == "123456");
  CHECK(o->patient_name == "DOE^JOHN");
  CHECK(o->priority == "S");

  // Before v2.5 there is no TQ1; without a filler order number the accession number stands in.
  PriorityUpdate routine = Update();
  routine.priority = Priority::kRoutine;
  routine.filler_order.clear();
  routine.reason.clear();
  options.version = "2.3";
  const Message old = MustParse(BuildPriorityUpdate(routine, options));
  CHECK(old.Count("TQ1") == 0);
  CHECK(old.Count("NTE") == 0);
  CHECK(old.Get("ORC-3") == "ACC123");
  CHECK(old.Get("OBR-27.6") == "R");
  CHECK(old.Version() == "2.3");
}

AlertInfo Alert() {
  AlertInfo a;
  a.patient_id = "123456";
  a.patient_name = "DOE^JOHN";
  a.accession_number = "ACC123";
  a.study_instance_uid = "1.2.3.4";
  a.finding_text = "Intracranial haemorrhage suspected\r\nleft parietal";
  a.critical = true;
  a.plugin_id = "ich";
  a.plugin_version = "1.2.0";
  return a;
}

TEST_CASE("BuildAlert writes ADT^A31 by default and ORU^R01 when configured") {
  const Message adt = MustParse(BuildAlert(Alert(), {}));
  CHECK(adt.MessageType() == "ADT^A31");
  CHECK(adt.Get("EVN-1") == "A31");
  CHECK(adt.Get("PID-3") == "123456");
  CHECK(adt.Get("PID-5") == "DOE^JOHN");
  CHECK(adt.Get("PV1-2") == "U");
  CHECK(adt.Count("OBX") == 3);
  CHECK(adt.Get("OBX-3") == "AIALERT^AI finding alert^99AIHUB");
  CHECK(adt.Get("OBX-5") == "Intracranial haemorrhage suspected\r\nleft parietal");
  CHECK(adt.Get("OBX-8") == "AA");
  CHECK(adt.Get("OBX-17") == "ich^ich 1.2.0^99AIHUB");
  CHECK(adt.Get("OBX-3.1", 1) == "121022");
  CHECK(adt.Get("OBX-5", 1) == "ACC123");
  CHECK(adt.Get("OBX-3.1", 2) == "110180");
  CHECK(adt.Get("OBX-5", 2) == "1.2.3.4");
  CHECK(adt.Get("NTE-3") == "CRITICAL: Intracranial haemorrhage suspected\r\nleft parietal");
  CHECK(adt.Count("OBR") == 0);

  AlertInfo plain = Alert();
  plain.critical = false;
  plain.accession_number.clear();
  OutboundOptions options;
  options.alert_message_type = "ORU^R01^ORU_R01";
  const Message oru = MustParse(BuildAlert(plain, options));
  CHECK(oru.Get("MSH-9") == "ORU^R01^ORU_R01");
  CHECK(oru.Count("EVN") == 0);
  CHECK(oru.Count("PV1") == 0);
  CHECK(oru.Get("ORC-1") == "RE");
  CHECK(oru.Get("OBR-4.1") == "AIALERT");
  CHECK(oru.Get("OBR-25") == "F");
  CHECK(oru.Count("OBX") == 2);  // no accession number: no OBX for it
  CHECK(oru.Get("OBX-8") == "A");
  CHECK(oru.Get("OBX-3.1", 1) == "110180");
  CHECK(oru.Get("NTE-3") == "Intracranial haemorrhage suspected\r\nleft parietal");
}

TEST_CASE("python3-hl7 reads the alert and the priority update") {
  const nlohmann::json alert = testing::PythonFields(
      BuildAlert(Alert(), {}), {"MSH.F9.R1.C1", "MSH.F9.R1.C2", "MSH.F18", "PID.F3", "PID.F5.R1.C2", "OBX.F5", "OBX.F8",
                                "OBX2.F5", "OBX3.F5", "OBX.F17.R1.C2", "NTE.F3"});
  INFO(alert.dump());
  CHECK(alert["segments"] == nlohmann::json::array({"MSH", "EVN", "PID", "PV1", "OBX", "OBX", "OBX", "NTE"}));
  CHECK(alert["MSH.F9.R1.C1"] == "ADT");
  CHECK(alert["MSH.F9.R1.C2"] == "A31");
  CHECK(alert["MSH.F18"] == "UNICODE UTF-8");
  CHECK(alert["PID.F3"] == "123456");
  CHECK(alert["PID.F5.R1.C2"] == "JOHN");
  CHECK(alert["OBX.F5"] == "Intracranial haemorrhage suspected\r\nleft parietal");
  CHECK(alert["OBX.F8"] == "AA");
  CHECK(alert["OBX2.F5"] == "ACC123");
  CHECK(alert["OBX3.F5"] == "1.2.3.4");
  CHECK(alert["OBX.F17.R1.C2"] == "ich 1.2.0");
  CHECK(alert["NTE.F3"] == "CRITICAL: Intracranial haemorrhage suspected\r\nleft parietal");

  const nlohmann::json update = testing::PythonFields(
      BuildPriorityUpdate(Update(), {}),
      {"MSH.F9.R1.C2", "ORC.F1", "ORC.F3", "TQ1.F9", "OBR.F18", "OBR.F27.R1.C6", "ZDS.F1", "ZDS.F1.R1.C4", "NTE.F3"});
  INFO(update.dump());
  CHECK(update["segments"] == nlohmann::json::array({"MSH", "PID", "ORC", "TQ1", "OBR", "NTE", "ZDS"}));
  CHECK(update["MSH.F9.R1.C2"] == "O01");
  CHECK(update["ORC.F1"] == "XO");
  CHECK(update["ORC.F3"] == "FL2002");
  CHECK(update["TQ1.F9"] == "S");
  CHECK(update["OBR.F18"] == "ACC123");
  CHECK(update["OBR.F27.R1.C6"] == "S");
  CHECK(update["ZDS.F1"] == "1.2.840.113619.2.55.3.1234");
  CHECK(update["ZDS.F1.R1.C4"] == "DICOM");
  CHECK(update["NTE.F3"] == "AI: suspected haemorrhage | 97% ^ review");
}

}  // namespace
}  // namespace aihub::hl7
