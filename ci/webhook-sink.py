#!/usr/bin/env python3
"""A revocation webhook receiver for the demo and the benches: records every POST, answers 200.

    webhook-sink.py PORT FILE

Each request becomes one JSON line in FILE, written (and flushed) before the answer:
    {"received_ms": <unix ms>, "received_us": <unix µs>, "path": "/revocation",
     "body": <the JSON body, or its text>}
Listens on 127.0.0.1 only. Runs until killed.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        received_ns = time.time_ns()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413, f"body over {MAX_BODY} bytes")
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        line = json.dumps(
            {
                "received_ms": received_ns // 1_000_000,
                "received_us": received_ns // 1_000,
                "path": self.path,
                "body": body,
            }
        )
        with open(self.server.out, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("webhook-sink: " + (fmt % args) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: webhook-sink.py PORT FILE")
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
    server.out = sys.argv[2]
    server.serve_forever()


if __name__ == "__main__":
    main()
