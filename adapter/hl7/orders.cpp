#include "hl7/orders.h"

#include <cstdio>
#include <initializer_list>

namespace aihub::hl7 {

namespace {

std::string FirstOf(const Message& m, std::initializer_list<const char*> paths) {
  for (const char* path : paths) {
    std::string value = m.Get(path);
    if (!value.empty()) return value;
  }
  return {};
}

// "Family^Given" from XPN (family name is FN: its first subcomponent is the surname).
std::string PatientName(const Message& m) {
  const std::string given = m.Get("PID-5.2");
  return m.Get("PID-5.1.1") + (given.empty() ? "" : "^" + given);
}

bool IsDicomUid(const std::string& uid) {
  return !uid.empty() && uid.size() <= 64 && uid.find_first_not_of("0123456789.") == std::string::npos &&
         uid.front() != '.' && uid.back() != '.' && uid.find("..") == std::string::npos;
}

MessageBuilder::Segment& AddHeader(MessageBuilder& builder, const OutboundOptions& o, const std::string& type) {
  MessageBuilder::Segment& msh = builder.Add("MSH");
  msh.SetComponents(3, o.sending_application).SetComponents(4, o.sending_facility);
  msh.SetComponents(5, o.receiving_application).SetComponents(6, o.receiving_facility);
  msh.Set(7, NowTimestamp()).SetComponents(9, type).Set(10, NewControlId()).Set(11, o.processing_id);
  return msh.Set(12, o.version).Set(18, "UNICODE UTF-8");
}

void AddPatient(MessageBuilder& builder, const std::string& id, const std::string& name) {
  builder.Add("PID").Set(1, "1").Set(3, id).SetComponents(5, name);
}

bool AtLeastV25(const std::string& version) {
  int major = 0;
  int minor = 0;
  std::sscanf(version.c_str(), "%d.%d", &major, &minor);
  return major > 2 || (major == 2 && minor >= 5);
}

}  // namespace

StatusOr<OrderInfo> ReadOrder(const Message& m) {
  OrderInfo o;
  o.message_type = m.MessageType();
  if (o.message_type != "ORM^O01" && o.message_type != "OMI^O23") {
    return Unimplemented("unsupported message type " + o.message_type);
  }
  o.order_control = m.Get("ORC-1");
  o.placer_order = FirstOf(m, {"ORC-2.1", "OBR-2.1"});
  o.filler_order = FirstOf(m, {"ORC-3.1", "OBR-3.1"});
  o.accession_number = FirstOf(m, {"IPC-1.1", "OBR-18.1"});
  if (o.accession_number.empty()) o.accession_number = o.filler_order;
  o.study_instance_uid = FirstOf(m, {"ZDS-1.1", "IPC-3.1"});
  o.patient_id = m.Get("PID-3.1");
  o.patient_name = PatientName(m);
  o.patient_location = m.Get("PV1-3");
  o.procedure_code = m.Get("OBR-4.1");
  o.procedure_text = m.Get("OBR-4.2");
  o.modality = FirstOf(m, {"IPC-5.1", "OBR-24"});
  o.priority = FirstOf(m, {"OBR-27.6", "ORC-7.6", "TQ1-9.1"});
  if (o.accession_number.empty() && o.study_instance_uid.empty()) {
    return InvalidArgument(o.message_type + " " + m.ControlId() +
                           ": neither an accession number (IPC-1, OBR-18, filler order number) nor a Study Instance "
                           "UID (ZDS-1, IPC-3)");
  }
  if (!o.study_instance_uid.empty() && !IsDicomUid(o.study_instance_uid)) {
    return InvalidArgument(o.message_type + " " + m.ControlId() + ": Study Instance UID \"" + o.study_instance_uid +
                           "\" is not a DICOM UID");
  }
  return o;
}

StatusOr<PatientEvent> ReadAdt(const Message& m) {
  PatientEvent e;
  e.message_type = m.MessageType();
  if (e.message_type != "ADT^A01" && e.message_type != "ADT^A04" && e.message_type != "ADT^A08") {
    return Unimplemented("unsupported message type " + e.message_type);
  }
  e.patient_id = m.Get("PID-3.1");
  if (e.patient_id.empty()) return InvalidArgument(e.message_type + " " + m.ControlId() + ": no patient id (PID-3)");
  e.patient_name = PatientName(m);
  e.patient_location = m.Get("PV1-3");
  e.visit_number = m.Get("PV1-19.1");
  return e;
}

std::string BuildAlert(const AlertInfo& a, const OutboundOptions& options) {
  const char* kAlertCode = "AIALERT^AI finding alert^99AIHUB";
  const std::string& type = options.alert_message_type;
  const bool oru = type.compare(0, 3, "ORU") == 0;
  MessageBuilder builder;
  AddHeader(builder, options, type);
  if (!oru) {
    const size_t caret = type.find('^');
    const std::string trigger =
        caret == std::string::npos ? "" : type.substr(caret + 1, type.find('^', caret + 1) - caret - 1);
    builder.Add("EVN").Set(1, trigger).Set(2, NowTimestamp());
  }
  AddPatient(builder, a.patient_id, a.patient_name);
  if (oru) {
    builder.Add("ORC").Set(1, "RE").Set(3, a.accession_number);
    builder.Add("OBR")
        .Set(1, "1")
        .Set(3, a.accession_number)
        .SetComponents(4, kAlertCode)
        .Set(7, NowTimestamp())
        .Set(18, a.accession_number)
        .Set(25, "F");
  } else {
    builder.Add("PV1").Set(1, "1").Set(2, "U");
  }
  builder.Add("OBX")
      .Set(1, "1")
      .Set(2, "TX")
      .SetComponents(3, kAlertCode)
      .Set(5, a.finding_text)
      .Set(8, a.critical ? "AA" : "A")
      .Set(11, "F")
      .Set(17, 1, a.plugin_id)
      .Set(17, 2, a.plugin_id + " " + a.plugin_version)
      .Set(17, 3, "99AIHUB");
  int set_id = 1;
  auto add_id = [&](const char* code, const std::string& value) {
    if (value.empty()) return;
    builder.Add("OBX").Set(1, std::to_string(++set_id)).Set(2, "ST").SetComponents(3, code).Set(5, value).Set(11, "F");
  };
  add_id("121022^Accession Number^DCM", a.accession_number);
  add_id("110180^Study Instance UID^DCM", a.study_instance_uid);
  builder.Add("NTE").Set(1, "1").Set(2, "L").Set(3, (a.critical ? "CRITICAL: " : "") + a.finding_text);
  return builder.ToString();
}

std::string BuildPriorityUpdate(const PriorityUpdate& u, const OutboundOptions& options) {
  const char* kPriorities[][2] = {{"S", "Stat"}, {"A", "ASAP"}, {"R", "Routine"}};
  const char* const* priority = kPriorities[static_cast<int>(u.priority)];
  const std::string filler = u.filler_order.empty() ? u.accession_number : u.filler_order;
  MessageBuilder builder;
  AddHeader(builder, options, "ORM^O01^ORM_O01");
  AddPatient(builder, u.patient_id, u.patient_name);
  builder.Add("ORC").Set(1, "XO").Set(2, u.placer_order).Set(3, filler).Set(7, 6, priority[0]);
  if (AtLeastV25(options.version)) {
    builder.Add("TQ1").Set(1, "1").Set(9, 1, priority[0]).Set(9, 2, priority[1]).Set(9, 3, "HL70485");
  }
  builder.Add("OBR")
      .Set(1, "1")
      .Set(2, u.placer_order)
      .Set(3, filler)
      .Set(18, u.accession_number)
      .Set(27, 6, priority[0]);
  if (!u.reason.empty()) builder.Add("NTE").Set(1, "1").Set(2, "L").Set(3, u.reason);
  if (!u.study_instance_uid.empty()) {
    builder.Add("ZDS").Set(1, 1, u.study_instance_uid).Set(1, 2, "AIHUB").Set(1, 3, "Application").Set(1, 4, "DICOM");
  }
  return builder.ToString();
}

}  // namespace aihub::hl7
