#!/usr/bin/python3
"""The one-machine demo (Quick start, command 1, after the build): a PACS, the hub, and a study coming back with
a finding.

    tools/demo.py BUILD_DIR

Starts, all on 127.0.0.1:
  - Orthanc with its DICOMweb plugin as the demo PACS (HTTP 8042, DICOM 4242),
  - tools/mllp_peer.py as the RIS that receives HL7 (port 2576),
  - aihub-adapter and aihubd serve, both with their embedded default config (configs/default.yaml),
then sends the bundled synthetic head CT (aihub-phantom, seed 7: a left intraparenchymal hemorrhage) to the
adapter with DCMTK storescu as modality CT_ER1, waits for the results and shows them: the finding, the SR now in
Orthanc (QIDO-RS), the HL7 messages the RIS received, and the audit chain check. Everything it started is stopped
at the end; the demo PACS keeps its data in BUILD_DIR/demo/orthanc.

When a default port is taken (e.g. a system Orthanc on 8042), the demo moves everything to free ports and writes
the changed config to BUILD_DIR/demo/site.yaml, saying so. To point the same setup at a real PACS, see README
"Running against your PACS".
"""
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "support"))
from peers import Orthanc, free_port, get_json  # noqa: E402

DEMO = os.path.join(BUILD, "demo")
ENV = dict(os.environ, TCP_NODELAY="1")
DEFAULT_PORTS = {"orthanc_http": 8042, "orthanc_dicom": 4242, "grpc": 50052, "dicom": 11112, "hl7_in": 2575,
                 "hl7_out": 2576}


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def say(text):
    print(text, flush=True)


def wait_until(what, predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit("demo: timed out after %d s waiting for %s (logs in %s)" % (timeout, what, DEMO))


def site_config(ports):
    """The embedded default config with other ports (only written when a default port is taken)."""
    with open(os.path.join(SOURCE, "configs", "default.yaml")) as f:
        text = f.read()
    for key, default in DEFAULT_PORTS.items():
        if ports[key] != default:
            text = text.replace(":%d" % default, ":%d" % ports[key]).replace("port: %d" % default,
                                                                             "port: %d" % ports[key])
    # Paths in the embedded config are relative to the build folder; this file lives in build/demo.
    text = text.replace("state_dir: ./var", "state_dir: ../var").replace("plugin_dir: ./plugins",
                                                                           "plugin_dir: ../plugins")
    path = os.path.join(DEMO, "site.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def main():
    shutil.rmtree(DEMO, ignore_errors=True)
    shutil.rmtree(os.path.join(BUILD, "var"), ignore_errors=True)
    os.makedirs(DEMO)
    ports = {k: (v if port_free(v) else free_port()) for k, v in DEFAULT_PORTS.items()}
    config_args = []
    if ports != DEFAULT_PORTS:
        config_args = ["--config", site_config(ports)]
        say("== default ports taken; using %s (written to %s)" % (ports, config_args[1]))

    say("== bundled synthetic study: head CT, seed 7, left intraparenchymal hemorrhage (aihub-phantom)")
    r = subprocess.run([os.path.join(BUILD, "bin", "aihub-phantom"), "head-ct", "--out", os.path.join(DEMO, "study"),
                        "--seed", "7", "--hemorrhage", "intraparenchymal", "--side", "left"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    [folder] = glob.glob(os.path.join(DEMO, "study", "*"))
    with open(os.path.join(folder, "truth.json")) as f:
        study_uid = json.load(f)["study_instance_uid"]
    files = sorted(glob.glob(os.path.join(folder, "**", "*.dcm"), recursive=True))

    procs = []
    pacs = Orthanc(os.path.join(DEMO, "orthanc"), http_port=ports["orthanc_http"], dicom_port=ports["orthanc_dicom"])
    try:
        say("== demo PACS: Orthanc + DICOMweb on %s" % pacs.http_url)
        pacs.start()
        ris_log = os.path.join(DEMO, "ris-received.hl7")

        def start(name, args):
            with open(os.path.join(DEMO, name + ".log"), "w") as log:
                procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=DEMO))

        start("ris", ["/usr/bin/python3", os.path.join(SOURCE, "tools", "mllp_peer.py"), "--port",
                      str(ports["hl7_out"]), "--out", ris_log])
        start("aihub-adapter", [os.path.join(BUILD, "bin", "aihub-adapter")] + config_args)
        start("aihubd", [os.path.join(BUILD, "bin", "aihubd"), "serve"] + config_args)
        say("== aihub-adapter (DICOM AIHUB@127.0.0.1:%d) and aihubd serve started (logs in %s)"
            % (ports["dicom"], DEMO))
        wait_until("the adapter's DICOM port", lambda: not port_free(ports["dicom"]), 60)

        say("== storescu: %d CT images from modality CT_ER1 to AIHUB" % len(files))
        t0 = time.time()
        r = subprocess.run(["storescu", "-aet", "CT_ER1", "-aec", "AIHUB", "127.0.0.1", str(ports["dicom"])] + files,
                           capture_output=True, text=True, env=ENV)
        if r.returncode != 0:
            raise SystemExit("storescu failed:\n" + r.stdout + r.stderr)

        def received():
            path = ris_log + ".jsonl"
            return [json.loads(l) for l in open(path)] if os.path.exists(path) else []

        wait_until("the results at the RIS", lambda: sum(m["type"].startswith("ORU") for m in received()) >= 2, 300)
        say("== results %.1f s after the last image (includes %s s of quiet time before the study counts as "
            "complete)" % (time.time() - t0, "2"))
        with open(os.path.join(DEMO, "aihubd.log")) as f:
            for line in f:
                if study_uid in line and (" PRESENT " in line or " absent " in line or "job(s)" in line):
                    say("   " + line.rstrip())
        srs = get_json("%s/studies/%s/instances?Modality=SR" % (pacs.dicomweb_url, study_uid))
        say("== SR stored in the PACS (QIDO-RS %s/studies/%s/instances?Modality=SR): %d instance(s)"
            % (pacs.dicomweb_url, study_uid, len(srs)))
        for sr in srs:
            say("   SOPInstanceUID " + sr["00080018"]["Value"][0])
        say("== HL7 received by the RIS (%s):" % ris_log)
        for m in received():
            say("   %-18s control id %s" % (m["type"], m["control_id"]))
        oru = next(m for m in received() if m["type"].startswith("ORU"))
        say("== first ORU^R01:")
        for segment in oru["message"].split("\r"):
            if segment:
                say("   " + segment[:160])
        v = subprocess.run([os.path.join(BUILD, "bin", "aihubd"), "verify-audit"] + config_args, capture_output=True,
                           text=True)
        say("== audit: " + (v.stdout + v.stderr).strip())
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        pacs.stop()
    say("== done. Reference models for integration only, not for clinical use.")


if __name__ == "__main__":
    main()
