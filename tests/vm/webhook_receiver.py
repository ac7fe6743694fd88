#!/usr/bin/env python3
"""The simulated cloud's fake progress-webhook receiver (tests/vm): an HTTPS server on the
host's loopback, with a certificate from the harness's test CA, that stage 1 (in the stock VM)
and stage 2 (in the installer) both reach through QEMU's guestfwd; both trust the test CA. It
logs one JSON line per request (method, path, the Authorization header and the JSON body) and
answers 204, so a scenario can check the events, their order and the bearer token. Standard
library only."""
import argparse
import json
from http.server import BaseHTTPRequestHandler

from httpd_common import LoggingHandlerMixin, serve


class Handler(LoggingHandlerMixin, BaseHTTPRequestHandler):
    # Keep-alive: one TLS handshake per install, not one per event (slow under TCG).
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - the base class's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        entry = {
            "method": self.command,
            "path": self.path,
            "authorization": self.headers.get("Authorization"),
            "content_type": self.headers.get("Content-Type"),
            "body": body,
        }
        self.append_log(json.dumps(entry))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    Handler.log_path = args.log
    open(args.log, "w").close()
    serve(Handler, args.port_file, cert=args.cert, key=args.key)


if __name__ == "__main__":
    main()
