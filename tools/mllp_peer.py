#!/usr/bin/python3
"""A small HL7 v2 receiver over MLLP: the RIS / interface engine stand-in for the demo and integration tests.

    tools/mllp_peer.py --port 2576 --out received.hl7 [--ack AA|AE|AR] [--host 127.0.0.1]

Every complete frame is appended to --out (messages separated by a blank line, segments by CR shown as LF) and,
in the same order, as one JSON line to --out + ".jsonl" ({"type": "ORU^R01", "control_id": ..., "message": ...}),
then ACKed with MSA-1 = --ack and MSA-2 = the message's MSH-10. Writes are flushed before the ACK, so a test that
got the ACK can read the file. SIGTERM stops it. Standard library only.
"""

import argparse
import json
import signal
import socket
import sys
import threading
import time

START, END = b"\x0b", b"\x1c\x0d"


def field(segment, index, sep):
    parts = segment.split(sep)
    # MSH-1 is the separator itself, so MSH-n is parts[n-1].
    offset = -1 if segment.startswith("MSH") else 0
    i = index + offset
    return parts[i] if 0 <= i < len(parts) else ""


def ack_for(message, code):
    segments = [s for s in message.replace("\n", "\r").split("\r") if s]
    msh = segments[0] if segments and segments[0].startswith("MSH") else "MSH|^~\\&"
    sep = msh[3] if len(msh) > 3 else "|"
    control = field(msh, 10, sep)
    trigger = field(msh, 9, sep).split("^")[1] if "^" in field(msh, 9, sep) else ""
    now = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    out = [
        sep.join(["MSH", "^~\\&", field(msh, 5, sep) or "RIS", field(msh, 6, sep), field(msh, 3, sep),
                  field(msh, 4, sep), now, "", "ACK^%s^ACK" % trigger, "ACK" + control[:17], "P",
                  field(msh, 12, sep) or "2.5.1"]),
        sep.join(["MSA", code, control]),
    ]
    if code != "AA":
        out.append(sep.join(["ERR", "", "", "207^Application internal error^HL70357", "E", "", "", "",
                             "peer configured to answer %s" % code]))
    return "\r".join(out) + "\r"


def serve(conn, args, lock):
    buffer = b""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while True:
                start = buffer.find(START)
                end = buffer.find(END, start + 1)
                if start < 0 or end < 0:
                    break
                message = buffer[start + 1:end].decode("utf-8", "replace")
                buffer = buffer[end + 2:]
                segments = [s for s in message.split("\r") if s]
                msh = segments[0] if segments else ""
                sep = msh[3] if len(msh) > 3 else "|"
                with lock:
                    with open(args.out, "a", encoding="utf-8") as f:
                        f.write(message.replace("\r", "\n") + "\n")
                        f.flush()
                    with open(args.out + ".jsonl", "a", encoding="utf-8") as f:
                        f.write(json.dumps({"type": field(msh, 9, sep), "control_id": field(msh, 10, sep),
                                            "received": time.time(), "message": message}) + "\n")
                        f.flush()
                conn.sendall(START + ack_for(message, args.ack).encode("utf-8") + END)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ack", default="AA", choices=["AA", "AE", "AR"])
    args = parser.parse_args()
    open(args.out, "a").close()
    open(args.out + ".jsonl", "a").close()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.host, args.port))
    server.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lock = threading.Lock()
    print("mllp_peer listening on %s:%d, writing %s" % (args.host, args.port, args.out), flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn, args, lock), daemon=True).start()


if __name__ == "__main__":
    main()
