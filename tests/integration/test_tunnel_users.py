"""The SSH admin tunnel's local end closes another user's connection (the client runs as
``nobody``). Other processes of the same user: tests/unit/test_admin_tunnel.py."""

from __future__ import annotations

import socket

import pytest

from tests.tunnel_client import NOT_SERVED, client_in_another_process
from zeroui_db.admin_link import _Forwarder

pytestmark = pytest.mark.integration

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
        seen = client_in_another_process(port, ["runuser", "-u", "nobody", "--"], "/usr/bin/python3")
    assert seen in NOT_SERVED
    assert transport.channels == []
