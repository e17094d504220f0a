#!/usr/bin/python3
"""Adapter benchmarks: C-STORE ingest throughput against DCMTK storescp and Orthanc, and time to notification.

    /usr/bin/python3 tools/bench_adapter.py [ingest|notify|both] [--build DIR] [--repeat N] [--studies N]
                                             [--slices N] [--size N] [--stable-seconds S] [--work-dir DIR] [--keep]

ingest  One synthetic head CT (aihub-phantom head-ct, --slices x --size^2, 16-bit, uncompressed) is generated once.
        DCMTK's storescu sends its *.dcm files over ONE association, and over 4 concurrent associations (the files
        split into 4 folders, 4 storescu processes at once), to each receiver:
          adapter        aihub-adapter, spool in a fresh temp dir on the same disk. It fsyncs every instance (file,
                         folder, SQLite WAL commit with synchronous=FULL) before the C-STORE success response.
          storescp       DCMTK storescp -od DIR PORT with its defaults (single process: associations are served one
                         after another; explicit VR local-endian preferred; files named by SOP Instance UID). It
                         never fsyncs: DCMTK 3.6.7 storescp has no fsync option (its --exec-sync only makes an
                         --exec-on-reception command run in the foreground, and that command runs after the
                         response is sent, so it cannot stand in for fsync-before-response).
          storescp-fork  the same with --fork (one child per association); 4-association runs only.
          orthanc        Orthanc 1.10 through tests/support/peers.py, C-STORE to its DICOM port (AET ORTHANC), with
                         Orthanc's own defaults restored for ingest: SyncStorageArea true (fsync of every stored
                         file; the test peers turn it off) and DicomThreadsCount 4 (the test peers use 2).
        Each (receiver, associations) pair runs --repeat times; every round runs all pairs in a rotated order, each
        run against a freshly started receiver with empty storage, and `sync` runs (untimed) between runs so one
        receiver's write-back does not land in the next one's timing. Reported: median wall seconds of the
        storescu processes, MB/s (10^6 bytes of the *.dcm files) and instances/s, and throughput ratios.
notify  aihub-adapter + aihubd (hyperdensity plugin only, mode integrated for every department) + Orthanc as the
        PACS (DICOMweb) + tools/mllp_peer.py as the HL7 destination. --studies head CTs (different seeds, so
        different UIDs; odd seeds carry an intraparenchymal hemorrhage, even seeds none) are sent one after another;
        each waits for its ORU^R01 at the MLLP peer (bounded by --study-timeout). Per study, from timestamps:
          t0         storescu returned (the last C-STORE response came back)
          complete   adapter "[tracker] study <uid> complete"                 (ISO log time, ms)
          routed     aihubd "<uid>: N job(s) from ..." (no timestamp in that line: stamped when this script read it
                     from aihubd's stdout pipe; aihubd flushes each line)
          job done   aihubd "[jobs] <uid>/hyperdensity/.../g1 succeeded in X s" (ISO log time; X = plugin execute)
          SR stored  adapter "[deliver] StoreDicom adapter.sr:<sr>: STOW-RS stored"  (ISO log time)
          ORU acked  adapter "[deliver] SendHl7 adapter.hl7:<sr>: ACK AA"           (ISO log time)
          ORU recv   the MLLP peer's .jsonl "received" (Unix time, written before it ACKs)
        Stage p50/p95 are printed, and hub overhead = (ORU acked - t0) - stable_seconds - plugin execute time.

All processes listen on (or are reached through) 127.0.0.1 and get TCP_NODELAY=1 in their environment (DCMTK
leaves Nagle's algorithm on without it). storescp and Orthanc cannot bind one address, so they listen on all
interfaces; only 127.0.0.1 is used. Every process started here is stopped by pid at the end (SIGTERM, then
SIGKILL after 15 s). Standard library only, plus tests/support/peers.py. Needs the build targets aihub-adapter,
aihubd, aihub-phantom and reference_plugins in --build (default: build-bench beside this tools/ folder, else build).
Defaults took about 4 minutes on a 2-core VM (ingest ~1.5 min, notify ~2 min); nothing else is built or fetched.
"""

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
from peers import Orthanc, free_port, get_json, log_tail  # noqa: E402

ENV = dict(os.environ, TCP_NODELAY="1")
STARTED = []          # every Popen this script started, stopped by pid in stop_all()
ORTHANCS = []         # every Orthanc object started here


# ----------------------------------------------------------------------------------------------------------------
# processes

def start(args, log_path=None, **kwargs):
    """Popen with TCP_NODELAY=1, output to log_path (or as given in kwargs), registered for stop_all()."""
    if log_path is not None:
        log = open(log_path, "ab")
        kwargs.setdefault("stdout", log)
        kwargs.setdefault("stderr", subprocess.STDOUT)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    process = subprocess.Popen(args, env=ENV, **kwargs)
    if log_path is not None:
        log.close()  # the child holds its own descriptor
    STARTED.append(process)
    return process


def stop(process, timeout=15.0):
    """SIGTERM by pid, wait, then SIGKILL; only for a process this script started."""
    if process is None or process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def stop_all():
    for process in reversed(STARTED):
        stop(process)
    for orthanc in ORTHANCS:
        orthanc.stop()


def start_orthanc(orthanc):
    ORTHANCS.append(orthanc)
    return orthanc.start()


def wait_for(condition, timeout, what, process=None, log_path=None, step=0.02):
    """Polls condition() until true; RuntimeError (with the log tail) on timeout or when process exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise RuntimeError("%s: process exited with %s; log tail:\n%s"
                               % (what, process.returncode, log_tail(log_path) if log_path else ""))
        if time.monotonic() > deadline:
            raise RuntimeError("%s: not within %.0f s%s" % (what, timeout,
                               ("; log tail:\n" + log_tail(log_path)) if log_path else ""))
        time.sleep(step)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def file_has(path, text):
    try:
        with open(path, "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def storescu_args(aet, port, folder):
    return ["storescu", "-aet", "BENCH", "-aec", aet, "+sd", "+r", "+sp", "*.dcm", "127.0.0.1", str(port), folder]


def phantom(build, out, seed, slices, size, hemorrhage):
    """Generates one head CT; returns (folder, truth dict)."""
    cmd = [os.path.join(build, "bin", "aihub-phantom"), "head-ct", "--out", out, "--seed", str(seed),
           "--slices", str(slices), "--size", str(size)]
    if hemorrhage:
        cmd += ["--hemorrhage", "intraparenchymal", "--side", "left"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=ENV)
    truths = glob.glob(os.path.join(out, "*", "truth.json"))
    if len(truths) != 1:
        raise RuntimeError("phantom wrote %d truth.json files under %s" % (len(truths), out))
    with open(truths[0]) as f:
        return os.path.dirname(truths[0]), json.load(f)


def median(values):
    return statistics.median(values) if values else float("nan")


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def iso_time(text):
    """'2026-11-28T04:36:25.191Z' -> Unix seconds."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def adapter_config(path, state_dir, grpc_port, dicom_port, stable_seconds, dicomweb_url="", hl7_send_to="",
                   host_block=""):
    with open(path, "w") as f:
        f.write("state_dir: %s\n%s"
                "adapter:\n"
                "  grpc_listen: 127.0.0.1:%d\n"
                "  dicom: {ae_title: AIHUB, port: %d, stable_seconds: %s}\n"
                "  dicomweb: {url: \"%s\"}\n"
                "  hl7: {listen: \"\", send_to: \"%s\"}\n"
                "  fhir: {url: \"\"}\n"
                % (state_dir, host_block, grpc_port, dicom_port, stable_seconds, dicomweb_url, hl7_send_to))


# ----------------------------------------------------------------------------------------------------------------
# ingest

class IngestOrthanc(Orthanc):
    """peers.Orthanc with Orthanc's shipped defaults for what decides ingest speed (see the module doc)."""

    def config(self):
        config = super().config()
        config["SyncStorageArea"] = True
        config["DicomThreadsCount"] = 4
        return config


def count_files(folder, suffix=""):
    n = 0
    for _, _, files in os.walk(folder):
        n += sum(1 for name in files if name.endswith(suffix))
    return n


def ingest_run(opts, receiver, folders, run_dir):
    """Starts `receiver` on fresh storage in run_dir, sends `folders` concurrently, returns wall seconds."""
    os.makedirs(run_dir)
    log_path = os.path.join(run_dir, "receiver.log")
    process, orthanc = None, None
    try:
        if receiver == "adapter":
            port = free_port()
            config = os.path.join(run_dir, "site.yaml")
            adapter_config(config, os.path.join(run_dir, "var"), free_port(), port, 3600)
            process = start([os.path.join(opts.build, "bin", "aihub-adapter"), "--config", config], log_path)
            wait_for(lambda: file_has(log_path, "listening on port"), 30, "aihub-adapter start", process, log_path)
            aet = "AIHUB"
        elif receiver.startswith("storescp"):
            port = free_port()
            store = os.path.join(run_dir, "store")
            os.makedirs(store)
            args = ["storescp"] + (["--fork"] if receiver == "storescp-fork" else []) + ["-od", store, str(port)]
            process = start(args, log_path)
            wait_for(lambda: port_open(port), 30, "storescp start", process, log_path)
            aet = "STORESCP"
        else:
            orthanc = IngestOrthanc(os.path.join(run_dir, "orthanc"))
            start_orthanc(orthanc)
            port, aet = orthanc.dicom_port, orthanc.aet
        time.sleep(0.2)  # let the receiver's start-up I/O settle (untimed)
        t0 = time.monotonic()
        senders = [start(storescu_args(aet, port, folder), os.path.join(run_dir, "storescu%d.log" % i))
                   for i, folder in enumerate(folders)]
        codes = [p.wait(timeout=600) for p in senders]
        seconds = time.monotonic() - t0
        if any(codes):
            raise RuntimeError("%s: storescu exit codes %s; log tail:\n%s"
                               % (receiver, codes, log_tail(os.path.join(run_dir, "storescu0.log"))))
        # Everything acknowledged must be there.
        if receiver == "adapter":
            stored = count_files(os.path.join(run_dir, "var", "adapter", "files"), ".dcm")
        elif receiver.startswith("storescp"):
            stored = count_files(os.path.join(run_dir, "store"))
        else:
            stored = get_json(orthanc.http_url + "/statistics")["CountInstances"]
        if stored != opts.instances:
            raise RuntimeError("%s stored %d of %d instances" % (receiver, stored, opts.instances))
        return seconds
    finally:
        stop(process)
        if orthanc is not None:
            orthanc.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        os.sync()


def bench_ingest(opts, work):
    print("== ingest: %d-slice %dx%d CT, storescu, %d repeat(s) per configuration" % (opts.slices, opts.size,
                                                                                      opts.size, opts.repeat),
          flush=True)
    folder, _ = phantom(opts.build, os.path.join(work, "ct"), 1, opts.slices, opts.size, True)
    files = sorted(glob.glob(os.path.join(folder, "*.dcm")))
    opts.instances = len(files)
    total_bytes = sum(os.path.getsize(f) for f in files)
    parts = []
    for i in range(4):
        part = os.path.join(work, "part%d" % i)
        os.makedirs(part)
        for f in files[i * len(files) // 4:(i + 1) * len(files) // 4]:
            os.link(f, os.path.join(part, os.path.basename(f)))
        parts.append(part)
    # Warm the page cache for the sender's reads, as every receiver will see it.
    for f in files:
        with open(f, "rb") as handle:
            handle.read()
    configs = [(r, 1) for r in ("adapter", "storescp", "orthanc")] + \
              [(r, 4) for r in ("adapter", "storescp", "storescp-fork", "orthanc")]
    times = {c: [] for c in configs}
    for round_index in range(opts.repeat):
        shift = round_index % len(configs)
        for receiver, associations in configs[shift:] + configs[:shift]:
            run_dir = os.path.join(work, "run-%d-%s-%d" % (round_index, receiver, associations))
            seconds = ingest_run(opts, receiver, [folder] if associations == 1 else parts, run_dir)
            times[(receiver, associations)].append(seconds)
        print("  round %d/%d done" % (round_index + 1, opts.repeat), flush=True)

    mb = total_bytes / 1e6
    print()
    print("ingest: %d instances, %.1f MB per series; median of %d run(s); wall time of all storescu processes"
          % (opts.instances, mb, opts.repeat))
    print("%-14s %5s %9s %9s %9s %9s %9s" % ("receiver", "assoc", "median s", "min s", "max s", "MB/s", "inst/s"))
    rate = {}
    for receiver, associations in configs:
        t = times[(receiver, associations)]
        m = median(t)
        rate[(receiver, associations)] = mb / m
        print("%-14s %5d %9.3f %9.3f %9.3f %9.1f %9.1f" % (receiver, associations, m, min(t), max(t), mb / m,
                                                          opts.instances / m))
    print("throughput ratios (median MB/s, >1 = adapter faster):")
    for associations in (1, 4):
        line = "  %d assoc: adapter/storescp %.2f" % (associations, rate[("adapter", associations)] /
                                                       rate[("storescp", associations)])
        if associations == 4:
            line += ", adapter/storescp-fork %.2f" % (rate[("adapter", 4)] / rate[("storescp-fork", 4)])
        line += ", adapter/orthanc %.2f" % (rate[("adapter", associations)] / rate[("orthanc", associations)])
        print(line)
    print("  adapter fsyncs each instance (+ SQLite commit) before responding; orthanc fsyncs files (SyncStorageArea);"
          " storescp does not fsync (no such option in DCMTK %s)" % dcmtk_version())
    print(flush=True)


def dcmtk_version():
    try:
        out = subprocess.run(["storescp", "--version"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"v(\d+\.\d+\.\d+)", out)
        return found.group(1) if found else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# ----------------------------------------------------------------------------------------------------------------
# notify

class LineLog:
    """Reads a process's stdout pipe in a thread: each line kept with the time it arrived and copied to a file."""

    def __init__(self, pipe, path):
        self.lines = []
        self.lock = threading.Lock()
        self.path = path
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        with open(self.path, "a", encoding="utf-8") as out:
            for raw in iter(pipe.readline, b""):
                now = time.time()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self.lock:
                    self.lines.append((now, line))
                out.write(line + "\n")
                out.flush()

    def find(self, pattern):
        """(arrival time, match) of the first line matching the compiled regex, or None."""
        with self.lock:
            snapshot = list(self.lines)
        for now, line in snapshot:
            m = pattern.search(line)
            if m:
                return now, m
        return None


def log_find(path, pattern):
    """(ISO time of the line, match) for the first line of a log file matching the compiled regex, or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = pattern.search(line)
                if m:
                    ts = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z)", line)
                    return (iso_time(ts.group(1)) if ts else None), m
    except OSError:
        pass
    return None


def find_oru(jsonl_path, patient_id):
    """(received Unix time, SR UID from OBR-3, control id) of the first ORU^R01 for the patient, or None."""
    try:
        with open(jsonl_path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if not record.get("type", "").startswith("ORU^R01"):
            continue
        segments = {s.split("|")[0]: s.split("|") for s in record["message"].split("\r") if s}
        pid = segments.get("PID", [])
        obr = segments.get("OBR", [])
        if len(pid) > 3 and pid[3].split("^")[0] == patient_id and len(obr) > 3:
            return record["received"], obr[3].split("^")[0], record["control_id"]
    return None


def bench_notify(opts, work):
    print("== notify: %d studies of %d-slice %dx%d CT, stable_seconds %g, hyperdensity integrated"
          % (opts.studies, opts.slices, opts.size, opts.size, opts.stable_seconds), flush=True)
    plugin_dir = os.path.join(work, "plugins")
    os.makedirs(plugin_dir)
    shutil.copy2(os.path.join(opts.build, "plugins", "hyperdensity.so"), plugin_dir)
    adapter_grpc, dicom_port, hl7_out, host_grpc = free_port(), free_port(), free_port(), free_port()
    pacs = Orthanc(os.path.join(work, "orthanc"))
    start_orthanc(pacs)
    config = os.path.join(work, "site.yaml")
    host_block = ("plugin_dir: %s\n"
                  "host:\n"
                  "  grpc_listen: 127.0.0.1:%d\n"
                  "  http_listen: \"\"\n"
                  "  adapters: [127.0.0.1:%d]\n"
                  "  workers: 1\n"
                  "plugins:\n"
                  "  - id: hyperdensity\n"
                  "    modes: {default: integrated}\n" % (plugin_dir, host_grpc, adapter_grpc))
    adapter_config(config, os.path.join(work, "var"), adapter_grpc, dicom_port, opts.stable_seconds,
                   pacs.dicomweb_url, "127.0.0.1:%d" % hl7_out, host_block)
    oru_path = os.path.join(work, "oru.hl7")
    jsonl = oru_path + ".jsonl"
    adapter_log, hub_log, peer_log = (os.path.join(work, n) for n in ("adapter.log", "hub.log", "mllp_peer.log"))
    peer = start(["/usr/bin/python3", os.path.join(ROOT, "tools", "mllp_peer.py"), "--port", str(hl7_out),
                  "--out", oru_path], peer_log)
    wait_for(lambda: port_open(hl7_out), 30, "mllp_peer start", peer, peer_log)
    adapter = start([os.path.join(opts.build, "bin", "aihub-adapter"), "--config", config], adapter_log)
    wait_for(lambda: file_has(adapter_log, "listening on port"), 30, "aihub-adapter start", adapter, adapter_log)
    hub = start([os.path.join(opts.build, "bin", "aihubd"), "serve", "--config", config],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    hub_lines = LineLog(hub.stdout, hub_log)
    wait_for(lambda: file_has(adapter_log, "[grpc] subscriber"), 60, "aihubd subscribes", hub, hub_log)

    rows, failures = [], []
    for index in range(opts.studies):
        seed = 101 + index
        out = os.path.join(work, "study-%d" % seed)
        folder, truth = phantom(opts.build, out, seed, opts.slices, opts.size, hemorrhage=bool(seed % 2))
        study, patient = truth["study_instance_uid"], truth["patient_id"]
        os.sync()  # the phantom's write-back stays out of the timed part
        sent = time.time()
        sender = subprocess.run(storescu_args("AIHUB", dicom_port, folder), env=ENV, capture_output=True,
                                timeout=300)
        t0 = time.time()
        if sender.returncode != 0:
            raise RuntimeError("storescu failed (%d): %s" % (sender.returncode, sender.stderr.decode()[-2000:]))
        try:
            oru = wait_for(lambda: find_oru(jsonl, patient), opts.study_timeout, "ORU for " + study, hub, hub_log,
                           step=0.01)
            t_oru_recv, sr_uid, control = oru
            uid = re.escape(study)
            sr = re.escape(sr_uid)
            complete = wait_for(lambda: log_find(adapter_log, re.compile(r"\[tracker\] study %s complete" % uid)),
                                10, "tracker line", adapter, adapter_log)
            routed = wait_for(lambda: hub_lines.find(re.compile(r"^%s: (\d+) job\(s\) from .*fetched (\d+) "
                                                                r"instance\(s\) in (\d+) ms" % uid)),
                              10, "routing line", hub, hub_log)
            done = wait_for(lambda: log_find(hub_log, re.compile(r"\[jobs\] %s/hyperdensity/\S+ succeeded in "
                                                                 r"([0-9.]+) s" % uid)), 10, "job line", hub, hub_log)
            stored = wait_for(lambda: log_find(adapter_log, re.compile(r"\[deliver\] StoreDicom adapter\.sr:%s: "
                                                                       r"STOW-RS stored" % sr)),
                              10, "StoreDicom line", adapter, adapter_log)
            acked = wait_for(lambda: log_find(adapter_log, re.compile(r"\[deliver\] SendHl7 adapter\.hl7:%s: ACK"
                                                                      % sr)), 10, "SendHl7 line", adapter,
                             adapter_log)
        except RuntimeError as e:
            failures.append("%s: %s" % (study, str(e).splitlines()[0]))
            print("  study %d/%d: FAILED: %s" % (index + 1, opts.studies, failures[-1]), flush=True)
            shutil.rmtree(out, ignore_errors=True)
            continue
        execute = float(done[1].group(1))
        row = {
            "seed": seed, "positive": bool(seed % 2), "storescu": t0 - sent,
            "complete": complete[0] - t0, "routed": routed[0] - complete[0],
            "fetch_ms": int(routed[1].group(3)), "instances": int(routed[1].group(2)),
            "job": done[0] - routed[0], "execute": execute,
            "sr": stored[0] - done[0], "oru_ack": acked[0] - done[0], "oru_recv": t_oru_recv - t0,
            "total": acked[0] - t0,
        }
        row["overhead"] = row["total"] - opts.stable_seconds - execute
        rows.append(row)
        print("  study %d/%d (%s): storescu %.2f s, notified %.2f s after t0 (plugin %.2f s)"
              % (index + 1, opts.studies, "positive" if row["positive"] else "negative", row["storescu"],
                 row["total"], execute), flush=True)
        shutil.rmtree(out, ignore_errors=True)

    print()
    print("notify: %d of %d studies (%d instances each), stable_seconds = %g, times in seconds"
          % (len(rows), opts.studies, opts.instances_notify if rows else 0, opts.stable_seconds))
    if rows:
        stages = [
            ("storescu (send, before t0)", "storescu"),
            ("complete - t0", "complete"),
            ("  of which beyond stable_seconds", None),
            ("fetch + route (complete -> routed)", "routed"),
            ("  fetch alone (aihubd's own ms)", "fetch"),
            ("queue + inference (routed -> job done)", "job"),
            ("  plugin execute", "execute"),
            ("SR stored (job done -> STOW ok)", "sr"),
            ("ORU acked (job done -> ACK AA)", "oru_ack"),
            ("total t0 -> ORU acked", "total"),
            ("t0 -> ORU at peer (peer clock)", "oru_recv"),
            ("hub overhead = total - stable - execute", "overhead"),
        ]
        print("%-42s %8s %8s %8s" % ("stage", "p50", "p95", "max"))
        for label, key in stages:
            if key is None:
                values = [r["complete"] - opts.stable_seconds for r in rows]
            elif key == "fetch":
                values = [r["fetch_ms"] / 1000.0 for r in rows]
            else:
                values = [r[key] for r in rows]
            print("%-42s %8.3f %8.3f %8.3f" % (label, percentile(values, 50), percentile(values, 95), max(values)))
        positives = [r["total"] for r in rows if r["positive"]]
        negatives = [r["total"] for r in rows if not r["positive"]]
        if positives and negatives:
            print("total p50: positive (priority + alert sent first) %.3f, negative %.3f"
                  % (median(positives), median(negatives)))
    for f in failures:
        print("FAILED " + f)
    print(flush=True)
    return not failures


# ----------------------------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", default="both", choices=["ingest", "notify", "both"])
    default_build = os.path.join(ROOT, "build-bench")
    if not os.path.exists(os.path.join(default_build, "bin", "aihub-adapter")):
        default_build = os.path.join(ROOT, "build")
    parser.add_argument("--build", default=default_build, help="build folder (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="ingest runs per configuration (default 5)")
    parser.add_argument("--studies", type=int, default=20, help="notify studies (default 20)")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--stable-seconds", type=float, default=1.0, help="adapter.dicom.stable_seconds (notify)")
    parser.add_argument("--study-timeout", type=float, default=120.0, help="seconds to wait for each ORU")
    parser.add_argument("--work-dir", default=None, help="parent of the temp folder (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, configs)")
    opts = parser.parse_args()
    if opts.repeat < 1 or opts.studies < 1:
        parser.error("--repeat and --studies must be >= 1")
    opts.build = os.path.abspath(opts.build)
    opts.instances_notify = opts.slices
    for needed in ("bin/aihub-adapter", "bin/aihubd", "bin/aihub-phantom", "plugins/hyperdensity.so"):
        if not os.path.exists(os.path.join(opts.build, needed)):
            parser.error("%s is missing; build aihub-adapter aihubd aihub-phantom reference_plugins" % needed)

    work = tempfile.mkdtemp(prefix="aihub-bench-adapter-", dir=opts.work_dir)
    print("work folder %s, build %s, %d CPU(s), DCMTK %s, load average %.2f %.2f %.2f"
          % ((work, opts.build, os.cpu_count(), dcmtk_version()) + os.getloadavg()), flush=True)
    started = time.monotonic()
    ok = True
    try:
        if opts.bench in ("ingest", "both"):
            bench_ingest(opts, os.path.join(work, "ingest"))
        if opts.bench in ("notify", "both"):
            os.makedirs(os.path.join(work, "notify"))
            ok = bench_notify(opts, os.path.join(work, "notify"))
    finally:
        stop_all()
        if opts.keep:
            print("kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("finished in %.0f s, load average %.2f %.2f %.2f" % ((time.monotonic() - started,) + os.getloadavg()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
