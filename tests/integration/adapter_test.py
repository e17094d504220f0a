#!/usr/bin/env python3
"""Integration tests of the hub serving end to end against a real PACS.

Real processes on 127.0.0.1 free ports: Orthanc with the DICOMweb plugin (the PACS), aihub-adapter, aihubd serve,
DCMTK storescu as the modality / PACS sender, tools/mllp_peer.py as the RIS receiving HL7, python3-hl7 as the
ordering system's MLLP client, dciodvfy as the SR validator.

Run by ctest with: adapter_test.py BUILD_DIR SOURCE_DIR AdapterTest.test_name
"""
import glob
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
SOURCE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else ".")
sys.path.insert(0, os.path.join(SOURCE, "tests", "support"))
from peers import Orthanc, free_port, get_json  # noqa: E402

AIHUBD = os.path.join(BUILD, "bin", "aihubd")
ADAPTER = os.path.join(BUILD, "bin", "aihub-adapter")
PHANTOM = os.path.join(BUILD, "bin", "aihub-phantom")
MLLP_PEER = os.path.join(SOURCE, "tools", "mllp_peer.py")
ENV = dict(os.environ, TCP_NODELAY="1")


def wait_until(what, predicate, timeout=60.0, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def run(args, timeout=120, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV, **kw)


class Stack:
    """Orthanc + MLLP peer + aihub-adapter + aihubd serve in one temp folder, configured by one site config."""

    def __init__(self, modes="{emergency: integrated, default: silent}", stable_seconds=1.0, allowed_callers=None,
                 departments=None, count_from_qido=False, fhir_fail_first=None, stow=False, stow_token=None,
                 stow_max_mb=256):
        self.root = tempfile.mkdtemp(prefix="aihub-adapter-test-")
        self.grpc_port, self.dicom_port = free_port(), free_port()
        self.hl7_in, self.hl7_out = free_port(), free_port()
        self.fhir_port = free_port() if fhir_fail_first is not None else None
        self.fhir_fail_first = fhir_fail_first
        # With stow, the adapter is also a STOW-RS server, and the PACS knows it as DICOMweb server "aihub".
        self.stow_port = free_port() if stow else None
        self.stow_url = "http://127.0.0.1:%d/dicom-web" % self.stow_port if stow else None
        self.orthanc = Orthanc(os.path.join(self.root, "orthanc"),
                               dicomweb_servers={"aihub": self.stow_url + "/"} if stow else None)
        self.orthanc.start()
        self.oru_path = os.path.join(self.root, "received.hl7")
        self.procs = {}
        self.env = dict(ENV, AIHUB_TEST_STOW_TOKEN=stow_token) if stow_token else ENV
        os.makedirs(os.path.join(self.root, "plugins"))
        shutil.copy(os.path.join(BUILD, "plugins", "hyperdensity.so"), os.path.join(self.root, "plugins"))
        departments = departments or "  - id: emergency\n    match: {InstitutionalDepartmentName: EMERGENCY}\n"
        callers = "[%s]" % ", ".join(allowed_callers or [])
        self.config = os.path.join(self.root, "site.yaml")
        with open(self.config, "w") as f:
            f.write("""state_dir: ./var
plugin_dir: ./plugins
host:
  workers: 1
  adapters: [127.0.0.1:%(grpc)d]
adapter:
  grpc_listen: 127.0.0.1:%(grpc)d
  dicom: {ae_title: AIHUB, port: %(dicom)d, stable_seconds: %(stable)s, allowed_callers: %(callers)s,
          expected_count_from_qido: %(count)s}
  dicomweb: {url: "%(dicomweb)s"}
  stow: {listen: "%(stow)s", bearer_token_env: "%(stow_token_env)s", max_instance_mb: %(stow_max)d}
  hl7: {listen: 127.0.0.1:%(hl7in)d, send_to: 127.0.0.1:%(hl7out)d, receiving_application: RADRIS,
        receiving_facility: GENHOSP}
  fhir: {url: "%(fhir)s"}
departments:
%(departments)splugins:
  - id: hyperdensity
    modes: %(modes)s
""" % dict(grpc=self.grpc_port, dicom=self.dicom_port, stable=stable_seconds, callers=callers,
           count="true" if count_from_qido else "false",
           fhir="http://127.0.0.1:%d/fhir" % self.fhir_port if self.fhir_port else "",
           dicomweb=self.orthanc.dicomweb_url, stow="127.0.0.1:%d" % self.stow_port if stow else "",
           stow_token_env="AIHUB_TEST_STOW_TOKEN" if stow_token else "", stow_max=stow_max_mb,
           hl7in=self.hl7_in, hl7out=self.hl7_out, departments=departments,
           modes=modes))
        self.start("peer")
        if self.fhir_port:
            self.start("fhir")
        self.start("adapter")
        self.start("hub")

    def start(self, name):
        if name == "peer":
            args = ["/usr/bin/python3", MLLP_PEER, "--port", str(self.hl7_out), "--out", self.oru_path]
        elif name == "fhir":
            args = ["/usr/bin/python3", os.path.join(SOURCE, "tests", "support", "fhir_peer.py"), "--port",
                    str(self.fhir_port), "--fail-first", str(self.fhir_fail_first)]
        elif name == "adapter":
            args = [ADAPTER, "--config", self.config]
        else:
            args = [AIHUBD, "serve", "--config", self.config]
        with open(os.path.join(self.root, name + ".log"), "a") as log:
            self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                                cwd=self.root)
        if name == "adapter":
            wait_until("the adapter's DICOM port", lambda: self._port_open(self.dicom_port), 30)
            if self.stow_port:
                wait_until("the adapter's STOW-RS port", lambda: self._port_open(self.stow_port), 30)
        if name == "peer":
            wait_until("the MLLP peer", lambda: self._port_open(self.hl7_out), 30)
        if name == "fhir":
            wait_until("the FHIR peer", lambda: self._port_open(self.fhir_port), 30)

    def wait(self, what, predicate, timeout=60.0):
        """wait_until, failing at once (with the log) when a process of the stack exited."""
        def check():
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise AssertionError("%s exited with %s while waiting for %s:\n%s"
                                         % (name, p.returncode, what, self.log(name)[-3000:]))
            return predicate()
        return wait_until(what, check, timeout)

    def stop(self, name, sig=signal.SIGTERM):
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, sig)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()

    @staticmethod
    def _port_open(port):
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    def log(self, name):
        with open(os.path.join(self.root, name + ".log"), errors="replace") as f:
            return f.read()

    def phantom(self, seed, hemorrhage="intraparenchymal", slices=16, size=128, department="EMERGENCY"):
        out = os.path.join(self.root, "studies", str(seed))
        r = run([PHANTOM, "head-ct", "--out", out, "--seed", str(seed), "--hemorrhage", hemorrhage, "--side", "left",
                 "--slices", str(slices), "--size", str(size), "--department", department])
        assert r.returncode == 0, r.stderr
        [folder] = os.listdir(out)
        with open(os.path.join(out, folder, "truth.json")) as f:
            truth = json.load(f)
        files = sorted(glob.glob(os.path.join(out, folder, "**", "*.dcm"), recursive=True))
        return truth["study_instance_uid"], files

    def upload_to_pacs(self, files):
        for path in files:
            with open(path, "rb") as f:
                req = urllib.request.Request(self.orthanc.http_url + "/instances", data=f.read(), method="POST")
                urllib.request.urlopen(req).read()

    def storescu(self, files, aet="CT_ER1"):
        return run(["storescu", "-v", "-aet", aet, "-aec", "AIHUB", "127.0.0.1", str(self.dicom_port)] + files)

    def received(self):
        """HL7 messages the RIS peer received, in order: [(type, message)]."""
        path = self.oru_path + ".jsonl"
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [(m["type"], m["message"]) for m in map(json.loads, f)]

    def pacs_sr(self, study_uid):
        """SOP Instance UIDs of the SR instances the PACS holds for the study (QIDO-RS)."""
        url = "%s/studies/%s/instances?Modality=SR" % (self.orthanc.dicomweb_url, study_uid)
        try:
            return [i["00080018"]["Value"][0] for i in get_json(url)]
        except urllib.error.HTTPError:
            return []
        except urllib.error.URLError:
            return []

    def db(self, sql, *args):
        con = sqlite3.connect(os.path.join(self.root, "var", "aihub.db"))
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def cleanup(self):
        for name in list(self.procs):
            self.stop(name)
        self.orthanc.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def post_json(url, payload, raw=False):
    """POSTs JSON (or, with raw, the string as is) and returns the decoded JSON answer."""
    data = payload.encode() if raw else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def dicom_uid(path, tag):
    """The value of a UI attribute ("gggg,eeee") in a DICOM file, read with dcmdump."""
    r = run(["dcmdump", "+P", tag, path])
    return r.stdout.split("[", 1)[1].split("]", 1)[0]


def send_hl7(port, message):
    """Sends one MLLP frame and returns the ACK text (python3-hl7 parses it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x0b" + message.encode() + b"\x1c\x0d")
        data = b""
        while not data.endswith(b"\x1c\x0d"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.strip(b"\x0b\x1c\x0d").decode()


class AdapterTest(unittest.TestCase):
    def setUp(self):
        self.stack = None

    def tearDown(self):
        if self.stack is not None:
            result = self._outcome.result
            if any(test is self for test, _ in result.failures + result.errors):
                for name in ("adapter", "hub"):
                    lines = [l for l in self.stack.log(name).splitlines() if not l.startswith(("I: ", "W: "))]
                    print("---- %s log ----\n%s" % (name, "\n".join(lines[-40:])))
            self.stack.cleanup()

    def test_cstore_to_sr_in_orthanc_oru_alert_and_priority(self):
        s = self.stack = Stack()
        study, files = s.phantom(seed=7)
        r = s.storescu(files)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        s.wait("the ORU at the RIS", lambda: any(t.startswith("ORU^R01") for t, _ in s.received()), 90)
        srs = s.wait("the SR in the PACS", lambda: s.pacs_sr(study), 30)
        self.assertEqual(len(srs), 1)
        # The SR the PACS holds validates against the IOD (dciodvfy).
        [orthanc_id] = [i for i in get_json(s.orthanc.http_url + "/instances")
                        if get_json(s.orthanc.http_url + "/instances/%s/simplified-tags" % i)["Modality"] == "SR"]
        sr_path = os.path.join(s.root, "sr.dcm")
        with urllib.request.urlopen(s.orthanc.http_url + "/instances/%s/file" % orthanc_id) as resp, \
                open(sr_path, "wb") as f:
            f.write(resp.read())
        v = run(["dciodvfy", sr_path])
        errors = [l for l in (v.stdout + v.stderr).splitlines() if l.startswith("Error")]
        self.assertEqual(errors, [], v.stdout + v.stderr)
        # RIS got, in order: the priority update (STAT) and the alert before the result.
        import hl7
        types = [t for t, _ in s.received()]
        self.assertEqual(types, ["ORM^O01^ORM_O01", "ADT^A31", "ORU^R01^ORU_R01"], types)
        orm = hl7.parse(s.received()[0][1])
        self.assertEqual(str(orm.segment("ORC")[1]), "XO")
        self.assertIn("S^Stat", str(orm.segment("TQ1")))
        oru = hl7.parse(s.received()[2][1])
        self.assertTrue(any("52101004" in str(seg) for seg in oru.segments("OBX")))
        # The adapter addresses every message it sends with the site's HL7 envelope.
        for _, message in s.received():
            msh = hl7.parse(message).segment("MSH")
            self.assertEqual((str(msh[5]), str(msh[6])), ("RADRIS", "GENHOSP"), message)
        # Every delivery is recorded as delivered, and audited.
        states = s.db("SELECT kind, state FROM outbox ORDER BY id")
        self.assertEqual(states, [("adapter.priority", "delivered"), ("adapter.alert", "delivered"),
                                  ("adapter.sr", "delivered"), ("adapter.hl7", "delivered")], states)
        # The adapter has no FHIR server configured: the FHIR delivery is not planned at all.
        self.assertIn("adapter.fhir for %s not planned" % study, s.log("hub"))
        self.assertEqual(s.db("SELECT cursor FROM adapter_cursors"), [(1,)])
        # The job ended: the host's fetched copy of the study is gone, the adapter's spool still holds it.
        s.wait("the fetched copy removed", lambda: not os.path.exists(os.path.join(s.root, "var", "studies", study)))
        self.assertIn("removed its fetched copy", s.log("hub"))
        spooled = glob.glob(os.path.join(s.root, "var", "adapter", "files", study, "*", "*.dcm"))
        self.assertEqual(len(spooled), len(files))
        v = run([AIHUBD, "verify-audit", "--config", s.config])
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_silent_mode_sends_nothing(self):
        s = self.stack = Stack(modes="{default: silent}")
        study, files = s.phantom(seed=8)
        self.assertEqual(s.storescu(files).returncode, 0)
        s.wait("the job to succeed", lambda: s.db("SELECT state FROM jobs WHERE study_instance_uid = ?", study)
                   == [("succeeded",)], 90)
        # The result is stored in the hub, nothing was planned for delivery, nothing left it.
        self.assertEqual(len(s.db("SELECT job_id FROM results")), 1)
        self.assertEqual(s.db("SELECT count(*) FROM outbox"), [(0,)])
        self.assertEqual(s.received(), [])
        self.assertEqual(s.pacs_sr(study), [])

    def test_hl7_order_retrieves_the_study_from_the_pacs_and_reports(self):
        # The department comes from the order's patient location; the study reaches the hub only through the
        # order: it is in the PACS, never sent to the adapter.
        s = self.stack = Stack(modes="{stroke: integrated, default: silent}",
                               departments="  - id: stroke\n    match: {hl7_location: STROKE^BAY1}\n")
        study, files = s.phantom(seed=9, department="NEURO")
        s.upload_to_pacs(files)
        ack = send_hl7(s.hl7_in, "\r".join([
            "MSH|^~\\&|RIS|HOSP|AIHUB|HOSP|20261128120000||ORM^O01|ORD0001|P|2.5.1",
            "PID|1||PH9||PHANTOM^HEAD^9",
            "PV1|1|E|STROKE^BAY1",
            "ORC|NW|P9|F9",
            "OBR|1|P9|F9|CTHEAD^CT head||||||||||||||ACC9",
            "ZDS|%s^RIS^Application^DICOM" % study]) + "\r")
        self.assertIn("MSA|AA|ORD0001", ack)
        s.wait("the ORU at the RIS", lambda: any(t.startswith("ORU^R01") for t, _ in s.received()), 90)
        self.assertEqual(len(s.wait("the SR in the PACS", lambda: s.pacs_sr(study), 30)), 1)
        self.assertIn("TRIGGER_HL7_ORDER", s.log("hub"))
        [(department, mode)] = s.db("SELECT department, mode FROM jobs WHERE study_instance_uid = ?", study)
        self.assertEqual((department, mode), ("stroke", "integrated"))
        # Bad HL7 gets a clear negative ACK and the listener keeps serving.
        nak = send_hl7(s.hl7_in, "MSH|^~\\&|RIS|HOSP|AIHUB|HOSP|20261128120000||ORM^O01|ORD0002|P|2.5.1\rPID|1\r")
        self.assertIn("MSA|AE|ORD0002", nak)
        self.assertIn("ERR|", nak)
        nak = send_hl7(s.hl7_in, "MSH|^~\\&|RIS|HOSP|AIHUB|HOSP|20261128120000||ADT^A03|ORD0003|P|2.5.1\r")
        self.assertIn("MSA|AR|ORD0003", nak)
        ack = send_hl7(s.hl7_in, "MSH|^~\\&|RIS|HOSP|AIHUB|HOSP|20261128120000||ADT^A08|ORD0004|P|2.5.1\r"
                                 "PID|1||PH9||PHANTOM^HEAD^9\rPV1|1|E|STROKE^BAY1\r")
        self.assertIn("MSA|AA|ORD0004", ack)

    def test_pacs_down_then_up_delivers_once(self):
        s = self.stack = Stack()
        study, files = s.phantom(seed=10)
        s.orthanc.stop()
        self.assertEqual(s.storescu(files).returncode, 0)
        # HL7 goes out; the SR waits in the outbox with failed attempts.
        s.wait("the ORU at the RIS", lambda: any(t.startswith("ORU^R01") for t, _ in s.received()), 90)
        s.wait("a failed SR attempt", lambda: s.db("SELECT attempts FROM outbox WHERE kind = 'adapter.sr' "
                                                       "AND state = 'pending' AND attempts >= 1"), 30)
        s.orthanc.start()
        s.wait("the SR delivered", lambda: s.db("SELECT state FROM outbox WHERE kind = 'adapter.sr'")
                   == [("delivered",)], 60)
        self.assertEqual(len(s.pacs_sr(study)), 1)
        actions = [a for (a,) in s.db("SELECT action FROM audit")]
        self.assertIn("outbox.failed", actions)
        self.assertEqual(actions.count("outbox.delivered"), 4)
        self.assertEqual([t for t, _ in s.received()].count("ORU^R01^ORU_R01"), 1)

    def test_adapter_restart_mid_study_processes_it_once(self):
        s = self.stack = Stack(stable_seconds=4.0)
        study, files = s.phantom(seed=11, slices=20)
        half = len(files) // 2
        self.assertEqual(s.storescu(files[:half]).returncode, 0)
        s.stop("adapter", signal.SIGKILL)   # acknowledged instances are in the spool
        s.start("adapter")
        self.assertEqual(s.storescu(files[half:]).returncode, 0)
        s.wait("the ORU at the RIS", lambda: any(t.startswith("ORU^R01") for t, _ in s.received()), 90)
        self.assertEqual(s.db("SELECT generation, state FROM jobs WHERE study_instance_uid = ?", study),
                         [(1, "succeeded")])
        self.assertIn("fetched %d instance(s)" % len(files), s.log("hub"))
        self.assertEqual(len(s.pacs_sr(study)), 1)

    def test_expected_count_from_qido_completes_without_the_quiet_time(self):
        # The PACS holds the study (it forwards what it has): the adapter learns the count and does not wait 60 s.
        s = self.stack = Stack(stable_seconds=60, count_from_qido=True)
        study, files = s.phantom(seed=13)
        s.upload_to_pacs(files)
        self.assertEqual(s.storescu(files).returncode, 0)
        s.wait("the ORU at the RIS", lambda: any(t.startswith("ORU^R01") for t, _ in s.received()), 45)
        self.assertIn("the PACS holds %d instance(s)" % len(files), s.log("adapter"))
        self.assertIn("TRIGGER_CSTORE_COUNT", s.log("hub"))

    def test_host_restart_resumes_from_its_cursor_without_repeats(self):
        s = self.stack = Stack()
        s.stop("hub")
        first, files = s.phantom(seed=14)
        self.assertEqual(s.storescu(files).returncode, 0)
        s.wait("the adapter to complete the study", lambda: "study %s complete" % first in s.log("adapter"), 30)
        s.start("hub")   # catches up from cursor 0
        s.wait("the first ORU", lambda: [t for t, _ in s.received()].count("ORU^R01^ORU_R01") == 1, 90)
        s.stop("hub")
        s.start("hub")   # resumes after cursor 1: nothing is redone
        second, files = s.phantom(seed=15)
        self.assertEqual(s.storescu(files).returncode, 0)
        s.wait("the second ORU", lambda: [t for t, _ in s.received()].count("ORU^R01^ORU_R01") == 2, 90)
        self.assertEqual(s.db("SELECT study_instance_uid, count(*) FROM jobs GROUP BY 1 ORDER BY 1"),
                         sorted([(first, 1), (second, 1)]))
        self.assertEqual(s.db("SELECT cursor FROM adapter_cursors"), [(2,)])
        self.assertEqual(s.db("SELECT count(*) FROM outbox WHERE state != 'delivered'"), [(0,)])

    def test_late_instances_rerun_the_study_and_the_new_sr_supersedes_the_first(self):
        s = self.stack = Stack()
        study, files = s.phantom(seed=16)
        self.assertEqual(s.storescu(files).returncode, 0)
        s.wait("the first ORU", lambda: [t for t, _ in s.received()].count("ORU^R01^ORU_R01") == 1, 90)
        [first_sr] = s.wait("the first SR", lambda: s.pacs_sr(study), 30)
        # Instances after completion (here: re-sent) re-open the study; it completes again as generation 2.
        self.assertEqual(s.storescu(files[:3]).returncode, 0)
        s.wait("the second ORU", lambda: [t for t, _ in s.received()].count("ORU^R01^ORU_R01") == 2, 90)
        self.assertEqual(s.db("SELECT generation, state FROM jobs WHERE study_instance_uid = ? ORDER BY generation",
                              study), [(1, "succeeded"), (2, "succeeded")])
        srs = s.wait("the second SR", lambda: len(s.pacs_sr(study)) == 2 and s.pacs_sr(study), 30)
        [second_sr] = [uid for uid in srs if uid != first_sr]
        # The new SR names the one it replaces; the new ORU is a correction.
        meta = get_json("%s/studies/%s/series/%s/metadata" % (
            s.orthanc.dicomweb_url, study,
            [i["0020000E"]["Value"][0] for i in get_json("%s/studies/%s/instances?Modality=SR" % (
                s.orthanc.dicomweb_url, study)) if i["00080018"]["Value"][0] == second_sr][0]))
        [second] = [m for m in meta if m["00080018"]["Value"][0] == second_sr]
        predecessor = second["0040A360"]["Value"][0]["00081115"]["Value"][0]["00081199"]["Value"][0]
        self.assertEqual(predecessor["00081155"]["Value"][0], first_sr)
        import hl7
        orus = [hl7.parse(m) for t, m in s.received() if t.startswith("ORU")]
        self.assertEqual([str(o.segment("OBR")[25]) for o in orus], ["F", "C"])
        # With every job ended, the host drops its fetched copies of both generations (the results stay).
        s.wait("the fetched copies removed", lambda: not os.path.exists(os.path.join(s.root, "var", "studies", study)))

    def test_fhir_observations_posted_once_through_a_server_outage(self):
        # The FHIR server answers 503 twice; the Bundle waits in the outbox, then its conditional creates make
        # one Observation per finding and one DiagnosticReport.
        s = self.stack = Stack(fhir_fail_first=2)
        study, files = s.phantom(seed=17)
        self.assertEqual(s.storescu(files).returncode, 0)
        s.wait("the FHIR delivery", lambda: s.db("SELECT state FROM outbox WHERE kind = 'adapter.fhir'")
               == [("delivered",)], 60)
        failed = s.db("SELECT count(*) FROM audit a JOIN outbox o ON a.subject = o.idempotency_key "
                      "WHERE o.kind = 'adapter.fhir' AND a.action = 'outbox.failed'")
        self.assertEqual(failed, [(2,)], s.db("SELECT action, subject FROM audit WHERE action LIKE 'outbox.%'"))
        created = get_json("http://127.0.0.1:%d/fhir/_resources" % s.fhir_port)
        types = sorted(r["resourceType"] for r in created)
        self.assertIn("DiagnosticReport", types)
        self.assertGreaterEqual(types.count("Observation"), 1)
        self.assertEqual(len(created), len({r["ifNoneExist"] for r in created}))
        self.assertIn("FHIR transaction: Observation/", s.log("adapter"))

    def test_stow_from_the_pacs_dicomweb_client_completes_the_study_and_the_sr_comes_back(self):
        # The quiet time is long: the study can only complete in time because its STOW requests ended.
        s = self.stack = Stack(stow=True, stable_seconds=60)
        study, files = s.phantom(seed=21, slices=24)
        s.upload_to_pacs(files)
        [found] = post_json(s.orthanc.http_url + "/tools/lookup", study, raw=True)
        # Orthanc's DICOMweb client sends the study to the adapter (in several requests: a few instances each).
        post_json(s.orthanc.http_url + "/dicom-web/servers/aihub/stow",
                  {"Resources": [found["ID"]], "Synchronous": True})
        srs = s.wait("the SR in the PACS", lambda: s.pacs_sr(study), 45)
        self.assertEqual(len(srs), 1)
        log = s.log("adapter")
        self.assertIn("TRIGGER_STOW", log)
        stored = sum(int(l.split(": ")[-1].split(" stored")[0]) for l in log.splitlines() if "STOW-RS /dicom-web/studies:" in l)
        self.assertEqual(stored, len(files))
        # One completion, one job, every instance in it.
        self.assertEqual(log.count("complete (generation"), 1, log)
        self.assertEqual(s.db("SELECT generation, state FROM jobs WHERE study_instance_uid = ?", study),
                         [(1, "succeeded")])
        self.assertIn("fetched %d instance(s)" % len(files), s.log("hub"))

    def test_stow_bad_bodies_get_the_reason_acknowledged_instances_are_kept_and_it_keeps_serving(self):
        s = self.stack = Stack(stow=True, stable_seconds=60, stow_max_mb=1)
        study, files = s.phantom(seed=22, slices=10, size=64)
        url = s.stow_url + "/studies"
        sop_uids = [dicom_uid(f, "0008,0018") for f in files]

        def stow(parts, target=url, content_type=None, method="POST"):
            boundary = "aihub-test-boundary-7d1"
            if parts is None:  # a body that ends inside its first part
                body = b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\ntruncated"
            else:
                body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p +
                                b"\r\n" for p in parts) + b"--" + boundary.encode() + b"--\r\n"
            req = urllib.request.Request(target, data=body if method == "POST" else None, method=method, headers={
                "Content-Type": content_type or 'multipart/related; type="application/dicom"; boundary=' + boundary})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.headers.get("Content-Type"), r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers.get("Content-Type"), e.read()

        def read(path):
            with open(path, "rb") as f:
                return f.read()

        code, _, body = stow([read(files[0])], content_type="application/dicom")
        self.assertEqual(code, 415, body)
        self.assertIn(b"multipart/related", body)
        code, _, _ = stow([], method="GET")
        self.assertEqual(code, 405)
        code, _, body = stow(None)
        self.assertEqual(code, 400)
        self.assertIn(b"no closing delimiter", body)
        code, _, body = stow([b"x" * (2 << 20)])  # over max_instance_mb (1)
        self.assertEqual(code, 413)
        self.assertIn(b"larger than 1048576 bytes", body)
        # Two good instances and one that is not DICOM: 202, the good ones acknowledged, the other failed (0xC000).
        code, ctype, body = stow([read(files[0]), b"not a DICOM file", read(files[1])])
        self.assertEqual(code, 202, body)
        self.assertEqual(ctype, "application/dicom+json")
        answer = json.loads(body)
        self.assertEqual([i["00081155"]["Value"][0] for i in answer["00081199"]["Value"]], sop_uids[:2])
        self.assertEqual([i["00081197"]["Value"][0] for i in answer["00081198"]["Value"]], [0xC000])
        # Instances of another study than the URL names fail with their UIDs; nothing stored: 409.
        code, _, body = stow([read(files[2])], target=url + "/1.2.3.4.5")
        self.assertEqual(code, 409, body)
        failed = json.loads(body)["00081198"]["Value"]
        self.assertEqual(failed[0]["00081155"]["Value"][0], sop_uids[2])
        # The adapter still serves: the rest of the study, to the study's own URL.
        code, _, body = stow([read(f) for f in files[2:]], target=url + "/" + study)
        self.assertEqual(code, 200, body)
        s.wait("the SR in the PACS", lambda: s.pacs_sr(study), 45)
        # Every acknowledged instance reached the hub, once.
        self.assertIn("fetched %d instance(s)" % len(files), s.log("hub"))
        self.assertEqual(s.db("SELECT generation, state FROM jobs WHERE study_instance_uid = ?", study),
                         [(1, "succeeded")])

    def test_stow_requires_the_configured_bearer_token(self):
        s = self.stack = Stack(stow=True, stow_token="s3cr3t-token")
        _, files = s.phantom(seed=23, slices=10, size=64)
        with open(files[0], "rb") as f:
            part = f.read()
        boundary = "aihub-token-test"
        body = (b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n--" +
                boundary.encode() + b"--\r\n")

        def post(token):
            headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=' + boundary}
            if token is not None:
                headers["Authorization"] = "Bearer " + token
            req = urllib.request.Request(s.stow_url + "/studies", data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.headers
            except urllib.error.HTTPError as e:
                return e.code, e.headers

        code, headers = post(None)
        self.assertEqual(code, 401)
        self.assertTrue(headers.get("WWW-Authenticate", "").startswith("Bearer"))
        self.assertEqual(post("wrong")[0], 401)
        self.assertEqual(post("s3cr3t-token")[0], 200)
        self.assertEqual(len(s.log("adapter").split("STOW-RS /dicom-web/studies: 1 stored")), 2)

    def test_bad_dicom_input_is_refused_and_the_adapter_keeps_serving(self):
        s = self.stack = Stack(allowed_callers=["CT_ER1"])
        study, files = s.phantom(seed=12)
        # A caller that is not allowed: association rejected, nothing spooled.
        r = s.storescu(files[:1], aet="INTRUDER")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Association Rejected", r.stdout + r.stderr)
        # An instance whose SOP Instance UID could be used as a path: refused with a failure status.
        bad = os.path.join(s.root, "bad.dcm")
        shutil.copy(files[0], bad)
        m = run(["dcmodify", "-nb", "-m", "SOPInstanceUID=../../etc/x", bad])
        self.assertEqual(m.returncode, 0, m.stderr)
        r = s.storescu([bad])
        self.assertIn("Received Store Response (Error: CannotUnderstand)", r.stdout + r.stderr)
        self.assertEqual(glob.glob(os.path.join(s.root, "var", "adapter", "files", "**", "*x*"), recursive=True), [])
        # A truncated file: storescu itself refuses to send it; the good study afterwards goes through.
        cut = os.path.join(s.root, "cut.dcm")
        with open(files[1], "rb") as src, open(cut, "wb") as dst:
            dst.write(src.read()[:2000])
        s.storescu([cut])
        self.assertEqual(s.storescu(files).returncode, 0)
        s.wait("the ORU at the RIS", lambda: any(t.startswith("ORU^R01") for t, _ in s.received()), 90)
        self.assertEqual(s.db("SELECT count(*) FROM jobs"), [(1,)])


if __name__ == "__main__":
    unittest.main()
