"""The admin role's connection from the control machine to the cluster.

On ``@local`` it is a TLS connection to the server's loopback address. When pyinfra
deploys over SSH, the same connection is carried through pyinfra's own SSH session
(a ``direct-tcpip`` channel to the server's loopback), so the admin role never needs
to be reachable from the operator's network and pg_hba keeps it on loopback.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from paramiko import SSHException
from pyinfra import logger

from . import contract
from .catalog import Connect

LOOPBACK = "127.0.0.1"


def connect_kwargs(port: int, password: str, dbname: str, host: str = LOOPBACK) -> dict:
    # The password is handed to libpq in-process: never on a command line.
    return {
        "host": host, "port": port, "dbname": dbname, "user": contract.ADMIN_ROLE,
        "password": password, "sslmode": "require", "connect_timeout": 10,
        "application_name": "zeroui-deploy", "autocommit": True,
    }


@contextmanager
def admin_connect(host, port: int, password: str) -> Iterator[Connect]:
    """Yield a function opening admin connections to ``port`` on ``host``'s loopback.

    How many connections and statements went through is logged at debug level on exit
    (bench/deploy_bench.py counts a no-op's SQL round trips from it).
    """
    counts = {"connections": 0, "statements": 0}

    class CountingCursor(psycopg.Cursor):
        def execute(self, *args, **kwargs):
            counts["statements"] += 1
            return super().execute(*args, **kwargs)

    def connect(dbname: str) -> psycopg.Connection:
        counts["connections"] += 1
        return psycopg.connect(**connect_kwargs(local_port, password, dbname, address), cursor_factory=CountingCursor)

    with _reach(host, port) as (address, local_port):
        try:
            yield connect
        finally:
            logger.debug(f"admin link: {counts['connections']} connection(s), {counts['statements']} statement(s)")


@contextmanager
def _reach(host, port: int) -> Iterator[tuple[str, int]]:
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if client is not None else None
    if transport is None:  # @local
        yield LOOPBACK, port
        return
    with _Forwarder(transport, port) as local_port:
        yield LOOPBACK, local_port


class _Forwarder:
    """A local listening socket whose connections are piped into SSH channels.

    Written by hand because paramiko offers channels but no local port forwarder, and
    reusing pyinfra's authenticated session avoids a second SSH login; the ``sshtunnel``
    package would open its own.
    """

    def __init__(self, transport, remote_port: int):
        self.transport, self.remote_port = transport, remote_port
        self.server = socket.create_server((LOOPBACK, 0))

    def __enter__(self) -> int:
        threading.Thread(target=self._accept, daemon=True).start()
        return self.server.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.server.accept()
            except OSError:  # closed by __exit__
                return
            try:
                channel = self.transport.open_channel("direct-tcpip", (LOOPBACK, self.remote_port), peer)
            except (SSHException, OSError) as e:
                # Nothing listens there (yet): close at once, so the client fails now with
                # "server closed the connection" rather than after its connect_timeout.
                logger.debug(f"admin link: no channel to {LOOPBACK}:{self.remote_port} on the host ({e})")
                sock.close()
                continue
            threading.Thread(target=_pipe, args=(sock, channel), daemon=True).start()
            threading.Thread(target=_pipe, args=(channel, sock), daemon=True).start()


def _pipe(src, dst) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for end in (src, dst):
            try:
                end.close()
            except OSError:
                pass
