// The HL7 v2 messages the adapter reads (orders, ADT) and writes (alerts, worklist priority updates).
#pragma once

#include <string>

#include "common/status.h"
#include "hl7/message.h"

namespace aihub::hl7 {

// The first order of an ORM^O01 or OMI^O23 (a message with several orders: the first ORC/OBR group).
struct OrderInfo {
  std::string message_type;        // "ORM^O01"
  std::string order_control;       // ORC-1: NW new, XO change, CA cancel, ...
  std::string placer_order;        // ORC-2.1, else OBR-2.1
  std::string filler_order;        // ORC-3.1, else OBR-3.1
  std::string accession_number;    // IPC-1.1, else OBR-18, else the filler order number
  std::string study_instance_uid;  // ZDS-1.1, else IPC-3.1; a DICOM UID or ""
  std::string patient_id;          // PID-3.1
  std::string patient_name;        // PID-5 as "Family^Given"
  std::string patient_location;    // PV1-3 as written, components joined with '^'
  std::string procedure_code;      // OBR-4.1
  std::string procedure_text;      // OBR-4.2
  std::string modality;            // IPC-5.1, else OBR-24
  std::string priority;            // OBR-27.6, else ORC-7.6, else TQ1-9.1 ("S", "A", "R", ...)
  int expected_instances = 0;      // 0: unknown (no standard field carries it)
};

// ORM^O01 and OMI^O23; other types: UNIMPLEMENTED. An order with neither accession number nor Study Instance
// UID, or with a Study Instance UID that is not a DICOM UID: INVALID_ARGUMENT.
StatusOr<OrderInfo> ReadOrder(const Message& message);

struct PatientEvent {
  std::string message_type;      // "ADT^A08"
  std::string patient_id;        // PID-3.1
  std::string patient_name;      // PID-5 as "Family^Given"
  std::string patient_location;  // PV1-3 as written
  std::string visit_number;      // PV1-19.1
};

// ADT^A01 (admit), A04 (register), A08 (update); other types: UNIMPLEMENTED "unsupported message type ADT^A03".
// No patient id: INVALID_ARGUMENT.
StatusOr<PatientEvent> ReadAdt(const Message& message);

// A finding someone should look at soon.
struct AlertInfo {
  std::string patient_id;
  std::string patient_name;  // "Family^Given"
  std::string accession_number;
  std::string study_instance_uid;
  std::string finding_text;
  bool critical = false;
  std::string plugin_id;
  std::string plugin_version;
};

// The alert as options.alert_message_type (MSH-9, e.g. "ADT^A31" or "ORU^R01"). Segments:
//   MSH  MSH-9 the type, MSH-10 NewControlId(), MSH-11/12 from options, MSH-18 "UNICODE UTF-8"
//   EVN  (not ORU) EVN-1 the trigger event, EVN-2 now
//   PID  PID-3 patient id, PID-5 name
//   PV1  (not ORU) PV1-2 "U": patient class unknown (PV1 is required in ADT)
//   ORC  (ORU) ORC-1 "RE", ORC-3 accession
//   OBR  (ORU) OBR-3 accession, OBR-4 AIALERT^AI finding alert^99AIHUB, OBR-7 now, OBR-18 accession, OBR-25 F
//   OBX  1: TX, OBX-3 AIALERT^AI finding alert^99AIHUB, OBX-5 finding text, OBX-8 "AA" (critical) or "A",
//           OBX-11 F, OBX-17 <plugin id>^<plugin id> <plugin version>^99AIHUB
//   OBX  2: ST, OBX-3 121022^Accession Number^DCM, OBX-5 accession (when known)
//   OBX  3: ST, OBX-3 110180^Study Instance UID^DCM, OBX-5 the UID (when known)
//   NTE  NTE-2 "L", NTE-3 finding text, prefixed "CRITICAL: " when critical (for receivers that show notes only)
std::string BuildAlert(const AlertInfo& alert, const OutboundOptions& options);

enum class Priority { kStat, kAsap, kRoutine };  // HL7 codes S, A, R

struct PriorityUpdate {
  std::string patient_id;
  std::string patient_name;  // "Family^Given"
  std::string accession_number;
  std::string study_instance_uid;
  std::string placer_order;
  std::string filler_order;  // "": the accession number stands in
  Priority priority = Priority::kStat;
  std::string reason;
};

// ORM^O01 change order (readable by ReadOrder). Segments:
//   MSH  MSH-9 ORM^O01^ORM_O01, the rest as in BuildAlert
//   PID  PID-3 patient id, PID-5 name
//   ORC  ORC-1 "XO", ORC-2 placer, ORC-3 filler, ORC-7.6 priority (for receivers before v2.5)
//   TQ1  (options.version 2.5 or later) TQ1-1 "1", TQ1-9 S^Stat^HL70485 | A^ASAP^HL70485 | R^Routine^HL70485
//   OBR  OBR-2 placer, OBR-3 filler, OBR-18 accession, OBR-27.6 priority
//   NTE  NTE-2 "L", NTE-3 reason (when given)
//   ZDS  ZDS-1 <Study Instance UID>^AIHUB^Application^DICOM (when known)
std::string BuildPriorityUpdate(const PriorityUpdate& update, const OutboundOptions& options);

}  // namespace aihub::hl7
