#!/usr/bin/env python3
"""The simulated cloud's "release" server (tests/vm): serves a directory (the installer
tarball, probe files, the fleet scenarios' binary caches) on the host's loopback and logs one
`METHOD PATH STATUS` line per request, so a scenario can assert that nothing was downloaded.
With --private-prefix and --token-file, paths under the prefix are a private binary cache:
401 unless the request carries the token as HTTP basic auth's password (what Nix's curl sends
from a netrc-file entry), as private caches such as Attic or Cachix accept it. The log never
holds the token, only whether it was right. Not a metadata service: that is
tests/fakecloud/server.py."""
import argparse
import base64
from functools import partial
from http.server import SimpleHTTPRequestHandler

from httpd_common import LoggingHandlerMixin, serve


class Handler(LoggingHandlerMixin, SimpleHTTPRequestHandler):
    private_prefix = ""
    token = ""

    def log_request(self, code="-", size="-"):
        self.append_log(f"{self.command} {self.path} {code}")

    def authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            _, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False
        return password == self.token

    def send_head(self):
        if self.private_prefix and self.path.startswith(self.private_prefix) and not self.authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="simcloud private cache"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().send_head()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--private-prefix", default="")
    ap.add_argument("--token-file", default="")
    args = ap.parse_args()
    Handler.log_path = args.log
    Handler.private_prefix = args.private_prefix
    if args.token_file:
        with open(args.token_file) as f:
            Handler.token = f.read().strip()
    serve(partial(Handler, directory=args.dir), args.port_file)


if __name__ == "__main__":
    main()
