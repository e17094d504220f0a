#!/usr/bin/env python3
"""Integration tests of `aihubd analyze`: real processes, real DICOM files from the phantom generator, real
plugin .so files, the SQLite job store on disk, dciodvfy on the SR and python3-hl7 on the ORU.

Run by ctest with: analyze_test.py BUILD_DIR SOURCE_DIR
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
SOURCE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else ".")
AIHUBD = os.path.join(BUILD, "bin", "aihubd")
PHANTOM = os.path.join(BUILD, "bin", "aihub-phantom")
TEST_PLUGINS = os.path.join(BUILD, "test-plugins")
PLUGINS = os.path.join(BUILD, "plugins")


def run(args, timeout=120, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


class Workspace:
    """A temp folder with a site config, a plugin folder and an input folder."""

    def __init__(self, plugins, plugin_yaml, departments_yaml=None):
        self.root = tempfile.mkdtemp(prefix="aihub-it-")
        self.plugin_dir = os.path.join(self.root, "plugins")
        self.input = os.path.join(self.root, "input")
        self.output = os.path.join(self.root, "output")
        os.makedirs(self.plugin_dir)
        os.makedirs(self.input)
        for src in plugins:
            shutil.copy(src, self.plugin_dir)
        departments = departments_yaml or (
            "departments:\n"
            "  - id: emergency\n"
            "    match: {InstitutionalDepartmentName: EMERGENCY}\n")
        self.config = os.path.join(self.root, "site.yaml")
        with open(self.config, "w") as f:
            f.write("state_dir: ./var\nplugin_dir: ./plugins\nhost: {workers: 1, job_max_attempts: 2}\n")
            f.write(departments)
            f.write("plugins:\n" + plugin_yaml)
        self.db = os.path.join(self.root, "var", "aihub.db")

    def phantom(self, seed, hemorrhage="none", side="left", slices=12, size=128, sub=""):
        out = os.path.join(self.input, sub) if sub else self.input
        r = run([PHANTOM, "head-ct", "--out", out, "--seed", str(seed), "--hemorrhage", hemorrhage,
                 "--side", side, "--slices", str(slices), "--size", str(size)])
        assert r.returncode == 0, r.stderr
        truths = []
        for dirpath, _, files in os.walk(out):
            if "truth.json" in files:
                with open(os.path.join(dirpath, "truth.json")) as f:
                    truths.append(json.load(f))
        return truths

    def analyze(self, *extra, timeout=180):
        return run([AIHUBD, "analyze", "--config", self.config, "--input", self.input, "--output", self.output,
                    *extra], timeout=timeout)

    def jobs(self):
        con = sqlite3.connect(self.db)
        try:
            return con.execute("SELECT plugin_id, state, attempts, error FROM jobs ORDER BY id").fetchall()
        finally:
            con.close()

    def audit_actions(self):
        con = sqlite3.connect(self.db)
        try:
            return [r[0] for r in con.execute("SELECT action FROM audit ORDER BY seq")]
        finally:
            con.close()

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def plugin(name, test=True):
    return os.path.join(TEST_PLUGINS if test else PLUGINS, name + ".so")


class AnalyzeTest(unittest.TestCase):
    def setUp(self):
        self.ws = None

    def tearDown(self):
        if self.ws:
            self.ws.cleanup()

    def test_hemorrhage_found_and_three_encodings_written(self):
        ws = self.ws = Workspace([plugin("hyperdensity", test=False)],
                                 "  - id: hyperdensity\n    modes: {emergency: assistive, default: silent}\n")
        truth = ws.phantom(seed=7, hemorrhage="intraparenchymal", side="left", slices=24, size=256)[0]
        r = ws.analyze()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        study = truth["study_instance_uid"]
        lines = [l for l in r.stdout.splitlines() if " hyperdensity " in l]
        self.assertEqual(len(lines), 1, r.stdout)
        self.assertIn("Intracranial hemorrhage PRESENT", lines[0])
        self.assertIn("CRITICAL left", lines[0])
        out = os.path.join(ws.output, study)
        self.assertEqual(sorted(os.listdir(out)),
                         ["hyperdensity.fhir.json", "hyperdensity.oru.hl7", "hyperdensity.sr.dcm"])
        # The SR validates against the IOD.
        v = run(["dciodvfy", os.path.join(out, "hyperdensity.sr.dcm")])
        errors = [l for l in (v.stdout + v.stderr).splitlines() if l.startswith("Error")]
        self.assertEqual(errors, [], v.stdout + v.stderr)
        # FHIR: one Observation, Present, derived from the study.
        with open(os.path.join(out, "hyperdensity.fhir.json")) as f:
            bundle = json.load(f)
        obs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
        self.assertEqual(len(obs), 1)
        self.assertEqual(obs[0]["valueCodeableConcept"]["coding"][0]["code"], "52101004")
        # HL7: parsed by python3-hl7; the OBX carries the finding.
        import hl7
        with open(os.path.join(out, "hyperdensity.oru.hl7"), newline="") as f:  # keep the \r separators
            msg = hl7.parse(f.read())
        self.assertEqual(str(msg.segment("MSH")[9]), "ORU^R01^ORU_R01")
        self.assertTrue(any("52101004" in str(seg) for seg in msg.segments("OBX")))
        self.assertEqual(ws.jobs(), [("hyperdensity", "succeeded", 1, "")])
        self.assertIn("job.succeeded", ws.audit_actions())
        v = run([AIHUBD, "verify-audit", "--config", ws.config])
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertIn("chain intact", v.stdout)

        # A second run over the same input is idempotent: same job, same result, same SR UID.
        with open(os.path.join(out, "hyperdensity.sr.dcm"), "rb") as f:
            first_sr = f.read()
        r2 = ws.analyze()
        self.assertEqual(r2.returncode, 0, r2.stdout + r2.stderr)
        self.assertEqual(ws.jobs(), [("hyperdensity", "succeeded", 1, "")])
        with open(os.path.join(out, "hyperdensity.sr.dcm"), "rb") as f:
            self.assertEqual(f.read(), first_sr)

    def test_bad_files_are_skipped_and_the_rest_proceeds(self):
        ws = self.ws = Workspace([plugin("c_minimal")], "  - id: c-minimal\n    modes: {default: silent}\n")
        truth = ws.phantom(seed=3, slices=10, size=64, sub="good")[0]
        with open(os.path.join(ws.input, "notes.txt"), "w") as f:
            f.write("not a DICOM file\n")
        # A truncated copy of a real slice.
        good_dir = os.path.join(ws.input, "good")
        slice_path = next(os.path.join(dp, fn) for dp, _, fs in os.walk(good_dir) for fn in fs
                          if not fn.endswith(".json"))
        with open(slice_path, "rb") as f:
            data = f.read()
        with open(os.path.join(ws.input, "truncated.dcm"), "wb") as f:
            f.write(data[: len(data) // 2])
        r = ws.analyze()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("skipped file " + os.path.join(ws.input, "notes.txt"), r.stdout)
        self.assertIn("truncated.dcm", r.stdout)
        self.assertIn(truth["study_instance_uid"] + " c-minimal 1.0.0: Mean intensity check indeterminate", r.stdout)

    def test_plugin_error_fails_the_job_with_its_reason(self):
        ws = self.ws = Workspace([plugin("faulty")],
                                 "  - id: faulty\n    modes: {default: silent}\n    config: {fault: error}\n")
        ws.phantom(seed=4, slices=10, size=64)
        r = ws.analyze()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("model output had the wrong shape", r.stdout)
        # Retried (INTERNAL is transient) up to job_max_attempts, then dead.
        self.assertEqual(ws.jobs()[0][:3], ("faulty", "dead", 2))
        self.assertIn("job.dead", ws.audit_actions())

    def test_invalid_plugin_output_is_final(self):
        ws = self.ws = Workspace([plugin("faulty")],
                                 "  - id: faulty\n    modes: {default: silent}\n    config: {fault: nan_confidence}\n")
        ws.phantom(seed=4, slices=10, size=64)
        r = ws.analyze()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("plugin wrote an invalid result", r.stdout)
        self.assertEqual(ws.jobs()[0][:3], ("faulty", "failed", 1))
        self.assertFalse(os.path.exists(ws.output) and os.listdir(ws.output))

    def test_not_applicable_is_reported_and_not_a_failure(self):
        ws = self.ws = Workspace([plugin("faulty")],
                                 "  - id: faulty\n    modes: {default: silent}\n    config: {fault: not_applicable}\n")
        ws.phantom(seed=4, slices=10, size=64)
        r = ws.analyze()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("not applicable", r.stdout)

    def test_sigkill_mid_job_resumes_on_restart(self):
        ws = self.ws = Workspace([plugin("fixed_work_v1")],
                                 "  - id: fixed-work\n    modes: {default: silent}\n    config: {work_ms: 4000}\n")
        truth = ws.phantom(seed=5, slices=10, size=64)[0]
        proc = subprocess.Popen([AIHUBD, "analyze", "--config", ws.config, "--input", ws.input, "--output",
                                 ws.output], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            running = False
            while time.time() < deadline and not running:
                time.sleep(0.1)
                if os.path.exists(ws.db):
                    try:
                        running = any(j[1] == "running" for j in ws.jobs())
                    except sqlite3.Error:
                        pass
            self.assertTrue(running, "the job never started")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(ws.jobs(), [("fixed-work", "running", 1, "")])  # the kill left it mid-flight
        r = ws.analyze()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(ws.jobs(), [("fixed-work", "succeeded", 2, "")])
        self.assertIn("job.recovered", ws.audit_actions())
        self.assertTrue(os.path.exists(os.path.join(ws.output, truth["study_instance_uid"], "fixed-work.sr.dcm")))
        v = run([AIHUBD, "verify-audit", "--config", ws.config])
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_verify_audit_detects_an_edited_entry(self):
        ws = self.ws = Workspace([plugin("c_minimal")], "  - id: c-minimal\n    modes: {default: silent}\n")
        ws.phantom(seed=6, slices=10, size=64)
        self.assertEqual(ws.analyze().returncode, 0)
        con = sqlite3.connect(ws.db)
        with self.assertRaises(sqlite3.DatabaseError):  # append-only: refused through SQL
            con.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
            con.commit()
        con.execute("DROP TRIGGER audit_no_update")
        con.execute("UPDATE audit SET detail_json = '{}' WHERE seq = 2")
        con.commit()
        con.close()
        v = run([AIHUBD, "verify-audit", "--config", ws.config])
        self.assertEqual(v.returncode, 1, v.stdout + v.stderr)
        self.assertIn("TAMPERED", v.stdout)
        self.assertIn("2", v.stdout)

    def test_mode_off_and_unmatched_studies_create_no_job(self):
        ws = self.ws = Workspace([plugin("c_minimal")],
                                 "  - id: c-minimal\n    modes: {emergency: 'off', default: silent}\n")
        ws.phantom(seed=8, slices=10, size=64)  # the phantom's department is EMERGENCY
        r = ws.analyze()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("no plugin applies (department emergency)", r.stdout)
        self.assertEqual(ws.jobs(), [])

    def test_bad_config_names_file_line_and_column(self):
        ws = self.ws = Workspace([], "  - id: c-minimal\n    modse: {default: silent}\n")
        r = ws.analyze()
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"site\.yaml:\d+:\d+: .*modse")


if __name__ == "__main__":
    unittest.main(verbosity=2)
