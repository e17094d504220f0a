#!/usr/bin/python3
"""A FHIR R4 stand-in for integration tests (Debian ships no FHIR server): transactions with conditional create.

    fhir_peer.py --port PORT [--fail-first N]

POST /fhir with a Bundle of type "transaction": every entry whose request is POST <type> with ifNoneExist
"identifier=<system>|<value>" is created once per (type, condition); a repeat matches the stored resource
(response "200 OK") instead of creating another ("201 Created"), as FHIR conditional create does. Entries without
ifNoneExist are refused (400), as are bodies that are not a transaction Bundle. --fail-first N answers the first N
transactions with 503 (a server that is down for a while). GET /fhir/_resources lists what was created:
[{"resourceType": ..., "id": ..., "ifNoneExist": ...}]. Standard library only; 127.0.0.1 only.
"""
import argparse
import http.server
import json
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    resources = []   # created resources, in order
    by_condition = {}
    lock = threading.Lock()
    failures_left = 0

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/") != "/fhir/_resources":
            return self.reply(404, {"resourceType": "OperationOutcome"})
        with self.lock:
            self.reply(200, [{"resourceType": r["resourceType"], "id": r["id"], "ifNoneExist": c}
                             for r, c in self.resources])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            if Handler.failures_left > 0:
                Handler.failures_left -= 1
                return self.reply(503, {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "down"}]})
        try:
            bundle = json.loads(body)
        except ValueError:
            return self.reply(400, {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "not JSON"}]})
        if self.path.rstrip("/") != "/fhir" or bundle.get("resourceType") != "Bundle" \
                or bundle.get("type") != "transaction":
            return self.reply(400, {"resourceType": "OperationOutcome",
                                    "issue": [{"diagnostics": "expected a transaction Bundle at /fhir"}]})
        out = []
        with self.lock:
            for entry in bundle.get("entry", []):
                request, resource = entry.get("request", {}), entry.get("resource", {})
                condition = request.get("ifNoneExist", "")
                if request.get("method") != "POST" or not condition.startswith("identifier="):
                    return self.reply(400, {"resourceType": "OperationOutcome",
                                            "issue": [{"diagnostics": "entry without conditional create"}]})
                key = (resource.get("resourceType"), condition)
                if key in self.by_condition:
                    rid, status = self.by_condition[key], "200 OK"
                else:
                    rid, status = str(len(self.resources) + 1), "201 Created"
                    self.by_condition[key] = rid
                    self.resources.append((dict(resource, id=rid), condition))
                out.append({"response": {"status": status,
                                         "location": "%s/%s/_history/1" % (resource.get("resourceType"), rid)}})
        self.reply(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": out})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    Handler.failures_left = args.fail_first
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
