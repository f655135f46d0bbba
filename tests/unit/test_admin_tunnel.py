"""The local end of the SSH admin tunnel serves this process's own connections only.

The forwarder listens on 127.0.0.1 of the operator's machine; anything it accepts is piped
through the SSH session to the server's loopback. A stand-in for paramiko's transport
records each channel it is asked to open and echoes what it is sent.
"""

from __future__ import annotations

import socket
import threading

from tests.tunnel_client import NOT_SERVED, client_in_another_process
from zeroui_db.admin_link import _Forwarder



def _echo(sock: socket.socket) -> None:
    with sock:
        while data := sock.recv(65536):
            sock.sendall(data)


class EchoTransport:
    def __init__(self):
        self.channels: list[tuple] = []

    def open_channel(self, kind, dest, src):
        near, far = socket.socketpair()
        self.channels.append((kind, dest, src))
        threading.Thread(target=_echo, args=(far,), daemon=True).start()
        return near


def test_this_process_is_served():
    transport = EchoTransport()
    with _Forwarder(transport, "127.0.0.1", 5432) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
    assert [(kind, dest) for kind, dest, _ in transport.channels] == [("direct-tcpip", ("127.0.0.1", 5432))]


def test_another_process_of_the_same_user_is_not_served():
    transport = EchoTransport()
    with _Forwarder(transport, "127.0.0.1", 5432) as port:
        assert client_in_another_process(port) in NOT_SERVED
        # and the forwarder still serves its own process afterwards
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
    assert len(transport.channels) == 1  # no channel was ever opened for the other process
