"""A client of the SSH admin tunnel's local end in a process of its own, for the unit tests
(another process of the same user) and the integration tests (another user)."""

from __future__ import annotations

import subprocess
import sys

# What the client reads back after sending "ping" (the stdlib only: it may run as nobody).
CLIENT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"ping")
try:
    print(repr(s.recv(4)))
except (ConnectionResetError, socket.timeout) as e:
    print(type(e).__name__)
"""
NOT_SERVED = ("b''", "ConnectionResetError")


def client_in_another_process(port: int, argv_prefix: list[str] | None = None, python: str = sys.executable) -> str:
    proc = subprocess.run([*(argv_prefix or []), python, "-c", CLIENT, str(port)], capture_output=True, text=True,
                          timeout=30, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
