"""The SSH admin tunnel's local end closes another user's connection (the client runs as
``nobody``). Other processes of the same user: tests/unit/test_admin_tunnel.py."""

from __future__ import annotations

import socket
import subprocess

import pytest

from zeroui_db.admin_link import _Forwarder

pytestmark = pytest.mark.integration

CLIENT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"ping")
try:
    print(repr(s.recv(4)))
except (ConnectionResetError, socket.timeout) as e:
    print(type(e).__name__)
"""


class RecordingTransport:
    """Stands in for paramiko's transport: records the channels it is asked for."""

    def __init__(self):
        self.channels = []

    def open_channel(self, kind, dest, src):
        self.channels.append((kind, dest, src))
        near, far = socket.socketpair()
        far.close()
        return near


def test_another_users_connection_is_closed():
    transport = RecordingTransport()
    with _Forwarder(transport, "127.0.0.1", 5432) as port:
        # The system's python: the test's virtualenv need not be readable by nobody.
        proc = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", CLIENT, str(port)],
                              capture_output=True, text=True, timeout=30, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("b''", "ConnectionResetError")
    assert transport.channels == []
