#!/usr/bin/env python3
"""One-connection relay for QEMU's `guestfwd=...-cmd:` (tests/vm): copies stdin to
127.0.0.1:PORT and the answer back to stdout, so a guest address like 169.254.169.254:80
reaches a server on the host's loopback. QEMU starts one relay per guest connection."""
import os
import socket
import sys
import threading


def main() -> None:
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
    sock.settimeout(None)

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)


if __name__ == "__main__":
    try:
        main()
    except OSError:
        pass
