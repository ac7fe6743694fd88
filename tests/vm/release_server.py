#!/usr/bin/env python3
"""The simulated cloud's "release" server (tests/vm): serves a directory (the installer
tarball, probe files) on the host's loopback and logs one `METHOD PATH STATUS` line per
request, so a scenario can assert that nothing was downloaded. Not a metadata service:
that is tests/fakecloud/server.py."""
import argparse
from functools import partial
from http.server import SimpleHTTPRequestHandler

from httpd_common import LoggingHandlerMixin, serve


class Handler(LoggingHandlerMixin, SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        self.append_log(f"{self.command} {self.path} {code}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    Handler.log_path = args.log
    serve(partial(Handler, directory=args.dir), args.port_file)


if __name__ == "__main__":
    main()
