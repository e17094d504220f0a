#!/usr/bin/python3
"""Runs the peer-tagged doctest cases of dicomweb_test against real peers.

usage: run_with_peers.py <dicomweb_test binary> [doctest arguments]

Starts a real Orthanc with the DICOMweb plugin (tests/support/peers.py) and, in this process, a fault peer for what
a real Orthanc cannot show: HTTP errors on demand, a server that hangs, malformed bodies, partial STOW answers, and a
minimal stand-in for a FHIR server (conditional create, transaction). Then runs the test suites "orthanc" and
"fault_peer" (skipped in plain runs) with AIHUB_TEST_DICOMWEB_URL and AIHUB_TEST_FAULT_URL set.
"""

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
import peers  # noqa: E402

BOUNDARY = "fault-boundary"


def dicom_json_uids(tag, uids):
    return {tag: {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [u]}} for u in uids]}}


class FaultHandler(http.server.BaseHTTPRequestHandler):
    """Routes by the first path segment; see the test cases in tests/adapter/dicomweb/ for what each one checks."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    fhir_store = {}  # (resource type, If-None-Exist) -> id
    fhir_lock = threading.Lock()
    stop = threading.Event()
    released = threading.Event()

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", content_type="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def reply_in_pieces(self, content_type, length, pieces):
        """200 with a body written piece by piece, each piece flushed on its own."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        for piece in pieces:
            self.wfile.write(piece)
            self.wfile.flush()

    def do_GET(self):
        self.route(b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Expect") is not None:
            return self.reply(400, "unexpected Expect header")
        self.route(body)

    def route(self, body):
        parts = self.path.split("?")[0].strip("/").split("/")
        kind = parts[0]
        if kind == "status":  # /status/<code>/...: that status, with a body longer than 200 bytes
            return self.reply(int(parts[1]), "fault peer status %s " % parts[1] + "x" * 300)
        if kind == "hang":  # reads the request and never answers; closes when the peer stops
            self.stop.wait(60)
            self.close_connection = True
            return
        if kind == "garbage":  # a 200 whose body is not JSON
            return self.reply(200, "{not json", "application/json")
        if kind == "nouid":  # a QIDO match without its UID
            return self.reply(200, json.dumps([{"00080050": {"vr": "SH", "Value": ["A1"]}}]),
                              "application/dicom+json")
        if kind == "auth":  # 200 [] only with "Bearer s3cret" or basic alice:wonder
            if self.headers.get("Authorization") in ("Bearer s3cret", "Basic YWxpY2U6d29uZGVy"):
                return self.reply(200, "[]", "application/dicom+json")
            return self.reply(401, "who are you", headers=[("WWW-Authenticate", 'Basic realm="fault"')])
        if kind == "whoami":  # a QIDO match whose AccessionNumber is the client's port: shows connection reuse
            match = {"0020000D": {"vr": "UI", "Value": ["1.2"]},
                     "00080050": {"vr": "SH", "Value": [str(self.client_address[1])]}}
            return self.reply(200, json.dumps([match]), "application/dicom+json")
        if kind == "release":  # lets /multipart/stream go on
            self.released.set()
            return self.reply(200, "[]", "application/dicom+json")
        if kind == "multipart":
            return self.multipart(parts[1])
        if kind == "stow":  # /stow/<202|409>/studies: a partial or total STOW failure
            if parts[1] == "202":
                answer = dict(dicom_json_uids("00081199", ["1.2.3.1"]))
                answer.update(self.failed_sequence("1.2.3.2"))
                return self.reply(202, json.dumps(answer), "application/dicom+json")
            return self.reply(409, json.dumps(self.failed_sequence("1.2.3.1")), "application/dicom+json")
        if kind == "fhir":
            return self.fhir(parts[1:], body)
        self.reply(404, "no route " + self.path)

    @staticmethod
    def failed_sequence(uid):
        item = {"00081155": {"vr": "UI", "Value": [uid]}, "00081197": {"vr": "US", "Value": [0xC000]}}
        return {"00081198": {"vr": "SQ", "Value": [item]}}

    def multipart(self, case):
        part = lambda content_type, data: (  # noqa: E731
            b"--" + BOUNDARY.encode() + b"\r\nContent-Type: " + content_type + b"\r\n\r\n" + data + b"\r\n")
        ctype = 'multipart/related; type="application/dicom"; boundary=' + BOUNDARY
        close = b"--" + BOUNDARY.encode() + b"--\r\n"
        if case == "two":  # two parts, sent in 7-byte pieces so boundaries straddle TCP writes
            body = part(b"application/dicom", b"first\r\n--fault") + part(b"application/dicom", b"second" * 1000)
            body += close
            return self.reply_in_pieces(ctype, len(body), (body[i:i + 7] for i in range(0, len(body), 7)))
        if case == "stream":  # the second part says whether /release came while the first one was all we had sent
            self.released.clear()
            first = part(b"application/dicom", b"first") + b"--" + BOUNDARY.encode()
            rest = b"\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" + close

            def pieces():
                yield first
                yield rest % (b"released" if self.released.wait(10) else b"timeout!")
            return self.reply_in_pieces(ctype, len(first) + len(rest % b"released"), pieces())
        if case == "truncated":
            return self.reply(200, part(b"application/dicom", b"complete") + b"--" + BOUNDARY.encode() +
                              b"\r\nContent-Type: application/dicom\r\n\r\nhalf an instan", ctype)
        if case == "noboundary":
            return self.reply(200, part(b"application/dicom", b"x") + close,
                              'multipart/related; type="application/dicom"')
        if case == "wrongtype":
            return self.reply(200, part(b"application/dicom+json", b"{}") + close, ctype)
        self.reply(404, "no multipart case " + case)

    def fhir(self, path, body):
        """Minimal FHIR stand-in: conditional create by If-None-Exist, and transaction."""
        if self.headers.get("Content-Type") != "application/fhir+json":
            return self.reply(415, "want application/fhir+json")
        try:
            resource = json.loads(body)
        except ValueError:
            return self.reply(400, "body is not JSON")
        if not path:  # transaction
            entries = [{"response": {"status": "201 Created"}} for _ in resource.get("entry", [])]
            return self.reply(200, json.dumps({"resourceType": "Bundle", "type": "transaction-response",
                                               "entry": entries}), "application/fhir+json")
        resource_type = path[0]
        condition = self.headers.get("If-None-Exist")
        if not condition:
            return self.reply(400, "conditional create needs If-None-Exist")
        if condition.endswith("|ambiguous"):
            return self.reply(412, "several resources match " + condition)
        with self.fhir_lock:
            key = (resource_type, condition)
            created = key not in self.fhir_store
            if created:
                self.fhir_store[key] = str(len(self.fhir_store) + 1)
            rid = self.fhir_store[key]
        resource["id"] = rid
        location = "http://127.0.0.1:%d/fhir/%s/%s/_history/1" % (self.server.server_port, resource_type, rid)
        self.reply(201 if created else 200, json.dumps(resource), "application/fhir+json", [("Location", location)])


def main():
    binary, extra = sys.argv[1], sys.argv[2:]
    fault = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FaultHandler)
    fault.daemon_threads = True
    threading.Thread(target=fault.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="aihub-dicomweb-") as tmp:
            with peers.Orthanc(os.path.join(tmp, "orthanc")) as orthanc:
                env = dict(os.environ, AIHUB_TEST_DICOMWEB_URL=orthanc.dicomweb_url,
                           AIHUB_TEST_FAULT_URL="http://127.0.0.1:%d" % fault.server_port)
                rc = subprocess.call([binary, "--no-skip", "--test-suite=orthanc,fault_peer"] + extra, env=env,
                                     timeout=100)
                if rc != 0:
                    print("--- Orthanc log tail (%s) ---\n%s" % (orthanc.log_path, peers.log_tail(orthanc.log_path)))
    finally:
        FaultHandler.stop.set()
        fault.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
