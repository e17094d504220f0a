"""Real peers for tests: free ports, an Orthanc PACS with the DICOMweb plugin, small JSON helpers.

Standard library only; run with Debian's /usr/bin/python3. Everything listens on, or is reached through, 127.0.0.1.

    with Orthanc(tmp_dir, modalities={"aihub": ("AIHUB", "127.0.0.1", 11112)}) as pacs:
        get_json(pacs.http_url + "/system")
        instances_of_study(pacs, study_uid)
"""

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

ORTHANC_BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request_json(url, payload=None, auth=None, timeout=10):
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def get_json(url, auth=None, timeout=10):
    """GET url and decode its JSON body; auth = (user, password) for HTTP basic authentication."""
    return _request_json(url, auth=auth, timeout=timeout)


def log_tail(path, max_bytes=4000):
    """The last max_bytes of a log file, decoded leniently."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(no log: %s)" % e


class Orthanc:
    """An Orthanc process with its own storage, index and config in `work_dir`, on free ports.

    modalities: {name: (aet, host, port)}, the DICOM peers Orthanc may C-STORE to (e.g. the adapter).
    dicomweb_servers: {name: base URL}, the DICOMweb servers Orthanc's DICOMweb client may STOW to
    (POST /dicom-web/servers/<name>/stow).
    users: {name: password}; when given, HTTP basic authentication is on. http_port / dicom_port: fixed ports
    (default: free ones). Orthanc 1.10 cannot bind its servers to one
    address; RemoteAccessAllowed false makes it refuse every client but localhost.
    start() (or `with`) writes the config, starts Orthanc with TCP_NODELAY=1 and returns once GET /plugins lists
    dicom-web (RuntimeError with the log tail if it exits, lacks the plugin or is not up within start_timeout).
    Attributes, set at construction: http_port, http_url ("http://127.0.0.1:<port>"), dicomweb_url
    (http_url + "/dicom-web"), dicom_port, aet, log_path, process, auth ((user, password) of the first user, or None).
    """

    def __init__(self, work_dir, aet="ORTHANC", modalities=None, users=None, start_timeout=30.0, http_port=None,
                 dicom_port=None, dicomweb_servers=None):
        self.work_dir = os.path.abspath(work_dir)
        self.aet = aet
        self.modalities = modalities or {}
        self.dicomweb_servers = dicomweb_servers or {}
        self.users = users or {}
        self.auth = next(iter(self.users.items()), None)
        self.start_timeout = start_timeout
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        self.http_url = "http://127.0.0.1:%d" % self.http_port
        self.dicomweb_url = self.http_url + "/dicom-web"
        self.config_path = os.path.join(self.work_dir, "orthanc.json")
        self.log_path = os.path.join(self.work_dir, "orthanc.log")
        self.process = None

    def config(self):
        return {
            "Name": "aihub-test-" + self.aet,
            "StorageDirectory": os.path.join(self.work_dir, "storage"),
            "IndexDirectory": os.path.join(self.work_dir, "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "Servers": {name: [url] for name, url in self.dicomweb_servers.items()}},
            "DicomModalities": {name: list(peer) for name, peer in self.modalities.items()},
            "DicomAlwaysAllowStore": True,
            "DicomScuTimeout": 10,
            "ConcurrentJobs": 2,
            "HttpThreadsCount": 8,
            "DicomThreadsCount": 2,
            "SaveJobs": False,
            "StableAge": 2,
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "MetricsEnabled": False,
            "HttpCompressionEnabled": False,
            "SyncStorageArea": False,
        }

    def start(self):
        os.makedirs(self.work_dir, exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(self.config(), f, indent=2)
        # DCMTK (inside Orthanc) leaves Nagle's algorithm on unless TCP_NODELAY=1.
        env = dict(os.environ, TCP_NODELAY="1")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([ORTHANC_BINARY, self.config_path], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, cwd=self.work_dir)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("Orthanc exited with %s before answering; log tail:\n%s"
                                   % (self.process.returncode, log_tail(self.log_path)))
            try:
                plugins = get_json(self.http_url + "/plugins", auth=self.auth, timeout=2)
            except (OSError, ValueError):
                plugins = None
            if plugins is not None:
                if "dicom-web" in plugins:
                    return self
                self.stop()  # Orthanc starts without a plugin it cannot load
                raise RuntimeError("Orthanc runs without the DICOMweb plugin %s; log tail:\n%s"
                                   % (DICOMWEB_PLUGIN, log_tail(self.log_path)))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Orthanc did not answer GET /plugins within %.0f s; log tail:\n%s"
                                   % (self.start_timeout, log_tail(self.log_path)))
            time.sleep(0.1)

    def stop(self, timeout=15.0):
        """SIGTERM, wait up to `timeout`, then SIGKILL; by pid, only the process this object started."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def instances_of_study(orthanc, study_uid):
    """SOP Instance UIDs Orthanc holds for the study (sorted); [] when it has none."""
    found = _request_json(orthanc.http_url + "/tools/find",
                          {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
                          auth=orthanc.auth)
    return sorted(item["MainDicomTags"]["SOPInstanceUID"] for item in found)
