"""What the simulated cloud's host-side HTTP servers share (tests/vm/release_server.py and
tests/vm/webhook_receiver.py): a handler that keeps its own request log instead of the standard
library's stderr lines, and a loopback server on a free port (HTTPS with a certificate when
given) that announces its port through the port file the harness waits for (wait_port_file in
tests/vm/lib.sh). Standard library only."""
import os
import ssl
import threading
from http.server import ThreadingHTTPServer

# Handler threads append whole lines to one log file.
_LOG_LOCK = threading.Lock()


class LoggingHandlerMixin:
    """Mixed into a BaseHTTPRequestHandler: `append_log` writes one line to `log_path`, and the
    base class's own access log on stderr stays quiet."""

    log_path = ""

    def append_log(self, line: str) -> None:
        with _LOG_LOCK, open(self.log_path, "a") as log:
            log.write(line + "\n")

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def serve(handler, port_file: str, cert: str = "", key: str = "") -> None:
    """Serves HANDLER on 127.0.0.1 (a free port; TLS when CERT and KEY are given), writes the port
    to PORT_FILE atomically once listening, and serves until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, port_file)
    server.serve_forever()
