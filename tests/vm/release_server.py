#!/usr/bin/env python3
"""The simulated cloud's "release" server (tests/vm): serves a directory (the installer
tarball, probe files) on the host's loopback and logs one `METHOD PATH STATUS` line per
request, so a scenario can assert that nothing was downloaded. Not a metadata service:
that is tests/fakecloud/server.py."""
import argparse
import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


class Handler(SimpleHTTPRequestHandler):
    log_path = ""

    def log_request(self, code="-", size="-"):
        with LOCK, open(self.log_path, "a") as log:
            log.write(f"{self.command} {self.path} {code}\n")

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    Handler.log_path = args.log
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=args.dir))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
