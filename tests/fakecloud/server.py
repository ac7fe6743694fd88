#!/usr/bin/env python3
"""fakecloud: one fake cloud metadata service for nixos-lift's tests and the simulated cloud VM.

It is a test double of the metadata services of the 13 clouds (plus NoCloud's `seedfrom` URL):
it serves documents shaped like each provider's real ones from tests/fixtures/metadata/<provider>/,
speaks each protocol's auth dance (IMDSv2 and Linode tokens, Metadata-Flavor, Metadata: true,
Bearer Oracle) and can inject scripted faults. Python 3 standard library only.

Usage:
    server.py --provider NAME [options]

    --provider NAME     aws gcp azure hetzner digitalocean vultr akamai oracle scaleway openstack
                        exoscale upcloud alibaba nocloud, or `none` (every path answers 404)
    --fixtures DIR      the provider's document tree [default: tests/fixtures/metadata/<provider>]
    --bind ADDR         address to listen on [default: 127.0.0.1]
    --port N            port; 0 picks a free one [default: 0]
    --port-file FILE    write the chosen port there once listening (atomically)
    --user-data FILE    serve this file as the instance's user-data, wherever the provider puts it
                        (`/latest/user-data`, `/hetzner/v1/userdata`, DigitalOcean's `user_data`
                        key, Azure's base64 `compute.userData`, ...). Without it: no user-data
                        (404, or 204 on Hetzner, or the key left out).
    --subst FROM=TO     replace text in every served document, and TO by FROM in request paths
                        (repeatable), e.g. to make the fixture MACs match a VM's NICs:
                        --subst 96:00:01:aa:bb:01=52:54:00:12:34:56
    --fault SPEC        inject a fault (repeatable): KIND[:COUNT][@PATH_SUBSTRING]
                        COUNT = how many matching requests get it (default: all of them);
                        @PATH_SUBSTRING limits it to requests whose path contains that text.
                        KINDs:
                          timeout             accept, read the request, never answer (--hang seconds)
                          reset               close the connection with a TCP reset
                          500, 502, 503, 504, 408, 403, 404, 410  answer with that status
                          429                 429 with `Retry-After: 1`
                          malformed           a truncated, garbled body
                          empty               200 with an empty body
                          big                 a 2 MiB body with Content-Length
                          big-stream          a 2 MiB body without Content-Length (ends at close)
                          missing-field       the provider's instance id is left out
                          wrong-content-type  the body is served as text/html
                          token-refused       the token PUT answers 403 (aws: IMDS disabled)
                          imdsv1-only         aws: no token endpoint (404), GETs need no token
                          token-expired       aws: a GET answers 401 and every token issued so far
                                              is forgotten (as if expired), so only a new PUT helps
    --hang SECONDS      how long `timeout` holds a request [default: 30]
    --log FILE          append one JSON line per request: method, path, query, headers, status, fault,
                        and `value` for a GCE guest attribute the guest PUT

On start it prints `fakecloud <provider> listening on http://ADDR:PORT` on stdout.

GCE guest attributes: `PUT /computeMetadata/v1/instance/guest-attributes/<namespace>/<key>` with
`Metadata-Flavor: Google` stores the body as the value (403 without the header, as every GCE
request), and a GET of the same path reads it back; the log records each value written.

Paths: EC2 and Alibaba documents are served under any dated API version too (`/2021-03-23/...`
reads `/latest/...`), as cloud-init asks for them; a request is matched against the fixture tree by its path with the query removed; if
nothing matches, leading path segments are dropped one at a time, so any prefix works (`nixos-lift
--metadata-base http://127.0.0.1:PORT/run1` and `seedfrom` URLs with a path both reach the same
documents). The fixture tree mirrors the provider's URL paths: a file is a document, a directory
answers with an EC2-style listing of its entries (`name/` for subdirectories) unless it holds an
`_index` file, and `_body` stands for a directory's own document. A `PROVENANCE` file in each
tree says where the document shapes come from; it is never served.
"""

import argparse
import base64
import io
import json
import os
import re
import secrets
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, parse_qs

REPO = Path(__file__).resolve().parent.parent.parent

# Where each provider publishes user-data as its own document (leaf paths).
USER_DATA_LEAVES = {
    "aws": ["/latest/user-data"],
    "alibaba": ["/latest/user-data"],
    "gcp": ["/computeMetadata/v1/instance/attributes/user-data"],
    "hetzner": ["/hetzner/v1/userdata"],
    "digitalocean": ["/metadata/v1/user-data"],
    "akamai": ["/v1/user-data"],
    "scaleway": ["/user_data/cloud-init"],
    "openstack": ["/openstack/latest/user_data"],
    "exoscale": ["/1.0/user-data"],
    "nocloud": ["/user-data"],
    "vultr": ["/v1/user-data"],
}
BASE64_LEAVES = {"akamai"}

# Providers whose documents are also served under a dated API version instead of `latest`.
DATED_API_VERSIONS = {p: re.compile(r"^/\d{4}-\d{2}-\d{2}/") for p in ("aws", "alibaba")}

# Where a provider embeds user-data inside a JSON document: (document path, key path, base64?).
USER_DATA_EMBEDDED = {
    "azure": ("/metadata/instance", ["compute", "userData"], True),
    "oracle": ("/opc/v2/instance", ["metadata", "user_data"], True),
    "digitalocean": ("/metadata/v1.json", ["user_data"], False),
    "upcloud": ("/metadata/v1.json", ["user_data"], False),
    "vultr": ("/v1.json", ["user-data"], False),
}

# What `missing-field` removes: ("json", document, key path) | ("leaf", path) | ("line", document, key).
MISSING_FIELD = {
    "aws": ("leaf", "/latest/meta-data/instance-id"),
    "alibaba": ("leaf", "/latest/meta-data/instance-id"),
    "exoscale": ("leaf", "/1.0/meta-data/instance-id"),
    "gcp": ("leaf", "/computeMetadata/v1/instance/id"),
    "azure": ("json", "/metadata/instance", ["compute", "vmId"]),
    "oracle": ("json", "/opc/v2/instance", ["id"]),
    "digitalocean": ("json", "/metadata/v1.json", ["droplet_id"]),
    "upcloud": ("json", "/metadata/v1.json", ["instance_id"]),
    "vultr": ("json", "/v1.json", ["instance-v2-id"]),
    "akamai": ("json", "/v1/instance", ["id"]),
    "scaleway": ("json", "/conf", ["id"]),
    "openstack": ("json", "/openstack/latest/meta_data.json", ["uuid"]),
    "hetzner": ("line", "/hetzner/v1/metadata", "instance-id"),
    "nocloud": ("line", "/meta-data", "instance-id"),
}

BIG = 2 * 1024 * 1024

# GCE guest attributes, written by the guest: instance/guest-attributes/<namespace>/<key>.
GUEST_ATTRIBUTES = re.compile(r"/computeMetadata/v1/instance/guest-attributes/([^/]+/[^/]+)$")


class Fault:
    def __init__(self, spec):
        kind, _, path = spec.partition("@")
        kind, _, count = kind.partition(":")
        self.kind = kind
        self.path = path or None
        self.remaining = int(count) if count else None
        self.lock = threading.Lock()

    def take(self, path):
        """True when this fault applies to this request (and uses one of its count)."""
        if self.path is not None and self.path not in path:
            return False
        with self.lock:
            if self.remaining is None:
                return True
            if self.remaining > 0:
                self.remaining -= 1
                return True
            return False


class State:
    def __init__(self, args):
        self.provider = args.provider
        self.tree = Path(args.fixtures) if args.fixtures else REPO / "tests/fixtures/metadata" / args.provider
        self.user_data = Path(args.user_data).read_bytes() if args.user_data else None
        self.substs = [s.split("=", 1) for s in args.subst]
        self.faults = [Fault(s) for s in args.fault]
        self.hang = args.hang
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.log_lock = threading.Lock()
        self.tokens = set()
        self.guest_attributes = {}  # "namespace/key" -> value (gcp)

    def has_fault(self, kind):
        return any(f.kind == kind for f in self.faults)

    def fault_for(self, path, kinds):
        for f in self.faults:
            if f.kind in kinds and f.take(path):
                return f.kind
        return None


def set_key(doc, keys, value):
    for k in keys[:-1]:
        doc = doc.setdefault(k, {})
    if value is None:
        doc.pop(keys[-1], None)
    else:
        doc[keys[-1]] = value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakecloud/1"
    state = None  # set in main

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def do_GET(self):
        self.handle_request("GET")

    def do_PUT(self):
        self.handle_request("PUT")

    def do_PATCH(self):
        self.handle_request("PATCH")

    # -- plumbing ---------------------------------------------------------------------------

    def record(self, status, fault, value=None):
        st = self.state
        if not st.log:
            return
        url = urlsplit(self.path)
        entry = {
            "time": time.time(),
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "status": status,
            "fault": fault,
        }
        if value is not None:
            entry["value"] = value
        line = json.dumps(entry)
        with st.log_lock:
            st.log.write(line + "\n")

    def send(self, status, body=b"", ctype=None, headers=(), fault=None, length=True, value=None):
        self.record(status, fault, value)
        self.send_response(status)
        if ctype is None:
            stripped = body.lstrip()
            ctype = "application/json" if stripped[:1] in (b"{", b"[") else "text/plain"
        if self.state.provider == "gcp":
            self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def reset(self, fault):
        self.record(None, fault)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
        self.wfile = io.BytesIO()  # the handler's final flush must not touch the closed socket

    # -- routing ----------------------------------------------------------------------------

    def handle_request(self, method):
        st = self.state
        url = urlsplit(self.path)
        path = url.path
        # Substituted text may be part of a path (an EC2 MAC directory): map it back.
        for a, b in st.substs:
            path = path.replace(b, a)
        # EC2-style services answer every dated API version with the same tree; cloud-init asks
        # for its newest known version (`/2021-03-23/meta-data/...`). Tokens stay `/latest/` only.
        if method == "GET" and st.provider in DATED_API_VERSIONS:
            path = DATED_API_VERSIONS[st.provider].sub("/latest/", path, count=1)
        query = parse_qs(url.query)
        # Read a request body, if any (token PUTs have none; guest attributes and PATCH may).
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(min(length, 1 << 20)) if length else b""

        transport = st.fault_for(path, {"timeout", "reset"})
        if transport == "timeout":
            self.record(None, "timeout")
            time.sleep(st.hang)
            self.close_connection = True
            return
        if transport == "reset":
            return self.reset("reset")

        if st.provider == "none":
            return self.send(404, b"not found\n")

        if st.provider == "gcp" and GUEST_ATTRIBUTES.search(path):
            return self.guest_attribute(method, path, query, body_in)

        # Token endpoints.
        if method == "PUT":
            return self.token(path)

        denied = self.check_auth(path, query)
        if denied:
            return self.send(*denied)

        status_fault = st.fault_for(path, {"500", "502", "503", "504", "408", "403", "404", "410", "429"})
        if status_fault == "429":
            return self.send(429, b"slow down\n", headers=[("Retry-After", "1")], fault="429")
        if status_fault:
            return self.send(int(status_fault), b"fault\n", fault=status_fault)

        body = self.document(path)
        if body is None:
            if self.user_data_leaf(path) and st.provider == "hetzner":
                return self.send(204, b"")
            return self.send(404, b"not found\n")

        for a, b in st.substs:
            body = body.replace(a.encode(), b.encode())
        fault = st.fault_for(path, {"malformed", "empty", "big", "big-stream", "wrong-content-type"})
        if fault == "malformed":
            return self.send(200, body[: len(body) // 2] + b'\xff{[: "\n', fault=fault)
        if fault == "empty":
            return self.send(200, b"", ctype="application/json", fault=fault)
        if fault == "big":
            return self.send(200, b"a" * BIG, ctype="text/plain", fault=fault)
        if fault == "big-stream":
            return self.send(200, b"a" * BIG, ctype="text/plain", fault=fault, length=False)
        if fault == "wrong-content-type":
            return self.send(200, body, ctype="text/html", fault=fault)
        self.send(200, body)

    def guest_attribute(self, method, path, query, body):
        """GCE guest attributes: PUT stores the value (logged as `value`), GET reads it back."""
        st = self.state
        denied = self.check_auth(path, query)
        if denied:
            return self.send(*denied)
        key = GUEST_ATTRIBUTES.search(path).group(1)
        fault = st.fault_for(path, {"500", "503", "429", "403", "404"})
        if fault == "429":
            return self.send(429, b"", headers=[("Retry-After", "1")], fault=fault)
        if fault:
            return self.send(int(fault), b"", fault=fault)
        if method == "PUT":
            value = body.decode("utf-8", "replace")
            with st.log_lock:
                st.guest_attributes[key] = value
            return self.send(200, b"", ctype="text/plain", value=value)
        if method != "GET":
            return self.send(405, b"method not allowed\n")
        with st.log_lock:
            value = st.guest_attributes.get(key)
        if value is None:
            return self.send(404, b"not found\n")
        self.send(200, value.encode(), ctype="text/plain")

    def token(self, path):
        st = self.state
        p = st.provider
        token_paths = {"aws": "/latest/api/token", "alibaba": "/latest/api/token", "akamai": "/v1/token"}
        ttl_headers = {
            "aws": "X-aws-ec2-metadata-token-ttl-seconds",
            "alibaba": "X-aliyun-ecs-metadata-token-ttl-seconds",
            "akamai": "Metadata-Token-Expiry-Seconds",
        }
        if p not in token_paths or not path.endswith(token_paths[p]):
            return self.send(405, b"method not allowed\n")
        if p == "aws" and st.has_fault("imdsv1-only"):
            return self.send(404, b"not found\n", fault="imdsv1-only")
        if st.fault_for(path, {"token-refused"}):
            return self.send(403, b"forbidden\n", fault="token-refused")
        fault = st.fault_for(path, {"500", "503", "429"})
        if fault == "429":
            return self.send(429, b"", headers=[("Retry-After", "1")], fault=fault)
        if fault:
            return self.send(int(fault), b"", fault=fault)
        if not self.headers.get(ttl_headers[p]):
            return self.send(400, b"missing TTL header\n")
        token = "fake-" + secrets.token_hex(16)
        st.tokens.add(token)
        self.send(200, token.encode(), ctype="text/plain")

    def check_auth(self, path, query):
        """(status, body) when the request lacks what the real service demands, else None."""
        st = self.state
        p = st.provider
        h = self.headers
        if p == "aws" and "/api/token" not in path and st.fault_for(path, {"token-expired"}):
            st.tokens.clear()
            return (401, b"unauthorized\n", None, (), "token-expired")
        if p == "aws" and not st.has_fault("imdsv1-only") and "/api/token" not in path:
            if h.get("X-aws-ec2-metadata-token") not in st.tokens:
                return (401, b"unauthorized\n")
        if p == "alibaba" and h.get("X-aliyun-ecs-metadata-token") is not None:
            if h.get("X-aliyun-ecs-metadata-token") not in st.tokens:
                return (401, b"unauthorized\n")
        if p == "akamai" and h.get("Metadata-Token") not in st.tokens:
            return (401, b'{"errors":[{"reason":"Unauthorized"}]}')
        if p == "gcp":
            if h.get("Metadata-Flavor") != "Google" or h.get("X-Forwarded-For"):
                return (403, b"missing Metadata-Flavor header\n")
        if p == "azure":
            if h.get("Metadata") != "true":
                return (400, b'{"error":"Bad request. Required metadata header not specified"}')
            if "api-version" not in query:
                return (400, b'{"error":"Bad request. api-version was not specified in the request"}')
        if p == "oracle" and "/opc/v2/" in path + "/":
            if h.get("Authorization") != "Bearer Oracle":
                return (401, b'{"code":"NotAuthenticated"}')
        return None

    # -- documents --------------------------------------------------------------------------

    def user_data_leaf(self, path):
        return any(path.endswith(leaf) for leaf in USER_DATA_LEAVES.get(self.state.provider, []))

    def document(self, path):
        """The body for `path`, or None (404). Tries ever shorter suffixes of the path."""
        segments = [s for s in path.split("/") if s]
        trailing = path.endswith("/")
        for start in range(len(segments) + 1):
            sub = "/" + "/".join(segments[start:])
            if trailing and sub != "/":
                sub += "/"
            body = self.lookup(sub)
            if body is not None:
                return body
        return None

    def lookup(self, sub):
        st = self.state
        p = st.provider
        if sub == "/":
            return None
        if sub in USER_DATA_LEAVES.get(p, []):
            if st.user_data is None:
                return None
            return base64.b64encode(st.user_data) if p in BASE64_LEAVES else st.user_data
        missing = MISSING_FIELD.get(p)
        if missing and missing[0] == "leaf" and sub == missing[1] and st.fault_for(sub, {"missing-field"}):
            return None
        fs = st.tree / sub.strip("/")
        if fs.name.startswith("_") or fs.name == "PROVENANCE":
            return None
        try:
            fs.resolve().relative_to(st.tree.resolve())
        except ValueError:
            return None  # no escaping the fixture tree with `..`
        if fs.is_dir():
            if (fs / "_index").exists():
                return (fs / "_index").read_bytes()
            if not (fs / "_body").exists():
                names = sorted(n for n in os.listdir(fs) if not n.startswith("_") and n != "PROVENANCE")
                return "\n".join(n + "/" if (fs / n).is_dir() else n for n in names).encode()
            fs = fs / "_body"
        if not fs.is_file():
            return None
        return self.patch_document(sub, fs.read_bytes())

    def patch_document(self, sub, body):
        """Embeds user-data and applies `missing-field` to the document at `sub`."""
        st = self.state
        sub = sub.rstrip("/")
        p = st.provider
        emb = USER_DATA_EMBEDDED.get(p)
        missing = MISSING_FIELD.get(p)
        want_missing = missing and missing[0] != "leaf" and sub == missing[1] and st.has_fault("missing-field")
        if not (emb and sub == emb[0]) and not want_missing:
            return body
        if missing and missing[0] == "line":
            if st.fault_for(sub, {"missing-field"}):
                lines = body.decode().splitlines(keepends=True)
                body = "".join(l for l in lines if not l.startswith(missing[2] + ":")).encode()
            return body
        doc = json.loads(body)
        if emb and sub == emb[0] and st.user_data is not None:
            value = base64.b64encode(st.user_data).decode() if emb[2] else st.user_data.decode()
            set_key(doc, emb[1], value)
        if want_missing and st.fault_for(sub, {"missing-field"}):
            set_key(doc, missing[2], None)
        return json.dumps(doc, indent=2).encode()


def main():
    ap = argparse.ArgumentParser(description="fake cloud metadata service (see the header comment)")
    ap.add_argument("--provider", required=True)
    ap.add_argument("--fixtures")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--user-data")
    ap.add_argument("--subst", action="append", default=[])
    ap.add_argument("--fault", action="append", default=[])
    ap.add_argument("--hang", type=float, default=30.0)
    ap.add_argument("--log")
    args = ap.parse_args()

    Handler.state = State(args)
    if args.provider != "none" and not Handler.state.tree.is_dir():
        sys.exit(f"fakecloud: no fixture tree at {Handler.state.tree}")
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request, client_address):
            # Clients that give up (timeouts, resets we caused) are expected here.
            if not isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
                super().handle_error(request, client_address)

    server = Server((args.bind, args.port), Handler)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    host = f"[{args.bind}]" if family == socket.AF_INET6 else args.bind
    print(f"fakecloud {args.provider} listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
