"""The admin connection from the control machine to a server, always verified TLS.

Each connection checks the server's certificate against the endpoint's CA and its name
(``sslmode=verify-full``) and binds SCRAM to the TLS channel (``channel_binding``), so an
impostor on the address learns nothing. Where it goes:

* the pilot's cluster: its loopback address. When pyinfra deploys over SSH, the connection
  is carried through pyinfra's own SSH session (a ``direct-tcpip`` channel), so the admin
  role never needs to be reachable from the operator's network;
* a managed service: its address, directly from ``@local``, or through the SSH session of
  the admin host when that host is remote (a bastion).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from paramiko import SSHException
from pyinfra import logger
from pyinfra.api.state import StateStage

from . import contract
from .catalog import ROLE_ATTRIBUTES, Connect
from .config import Server

_LOCAL = "127.0.0.1"  # where the SSH forwarder listens on the control machine


def connect_kwargs(server: Server, password: str, dbname: str, ca_file: str, port: int | None = None,
                   hostaddr: str | None = None, user: str | None = None) -> dict:
    # The password is handed to libpq in-process: never on a command line. ``host`` is the
    # name the certificate must carry; ``hostaddr`` is where a tunnel really is.
    kwargs = {
        "host": server.admin_host, "port": port or server.port, "dbname": dbname, "user": user or server.admin_user,
        "password": password, "sslmode": "verify-full", "sslrootcert": ca_file,
        "channel_binding": server.first.channel_binding, "connect_timeout": 10,
        "application_name": "zeroui-deploy", "autocommit": True,
    }
    if hostaddr:
        kwargs["hostaddr"] = hostaddr
    return kwargs


class AdminLink:
    """Admin connections to one server, one per database, opened on first use."""

    def __init__(self, host, server: Server, password: str, ca_file: str, user: str | None = None):
        self.server, self.password, self.ca_file, self.user = server, password, ca_file, user
        self._reach = _reach(host, server)
        self.hostaddr, self.local_port = self._reach.__enter__()
        self.conns: dict[str, psycopg.Connection] = {}
        self.counts = {"connections": 0, "statements": 0}
        counts = self.counts

        class CountingCursor(psycopg.Cursor):  # for the benchmark's round-trip count
            def execute(self, *args, **kwargs):
                counts["statements"] += 1
                return super().execute(*args, **kwargs)

        self._cursor = CountingCursor

    def connect(self, dbname: str) -> psycopg.Connection:
        conn = self.conns.get(dbname)
        if conn is None or conn.closed or conn.broken:
            self.counts["connections"] += 1
            conn = self.conns[dbname] = psycopg.connect(
                **connect_kwargs(self.server, self.password, dbname, self.ca_file, self.local_port, self.hostaddr,
                                 self.user),
                cursor_factory=self._cursor,
            )
        return conn

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
        self._reach.__exit__(None, None, None)


# Links kept for the rest of a run, so the operations after the cluster is up share their
# connections (one TLS handshake and SCRAM exchange per database, not per operation).
_SHARED: dict[tuple, AdminLink] = {}


@atexit.register
def _close_shared() -> None:
    for link in _SHARED.values():
        try:
            link.close()
        except Exception:  # the SSH session may already be gone at exit; nothing to save
            pass
    _SHARED.clear()


@contextmanager
def admin_connect(host, server: Server, password: str, ca_file: str, user: str | None = None) -> Iterator[Connect]:
    """Yield a function returning the admin connection to a database of ``server``.

    While executing, connections are kept and shared by later operations; while preparing
    (change detection, ``--dry``) they are closed on leaving, since the cluster may be
    started or restarted before execution. Callers never close them.
    How many connections and statements an operation used is logged at debug level
    (bench/deploy_bench.py counts a no-op's SQL round trips from it).
    """
    shared = host.state.current_stage == StateStage.Execute
    key = (host.name, server.admin_host, server.port, user or server.admin_user, password, ca_file)
    link = _SHARED.get(key) if shared else None
    if link is None:
        link = AdminLink(host, server, password, ca_file, user)
        if shared:
            _SHARED[key] = link
    before = dict(link.counts)
    try:
        yield link.connect
    finally:
        used = {k: link.counts[k] - before[k] for k in before}
        logger.debug(f"admin link: {used['connections']} connection(s), {used['statements']} statement(s)")
        if not shared:
            link.close()


def own_attributes(host, server: Server, password: str, ca_file: str) -> dict | None:
    """The admin role's attributes as it sees them after logging in with ``password``, or
    None when it cannot log in (no cluster yet, no role yet, or another password)."""
    try:
        with admin_connect(host, server, password, ca_file) as connect:
            return connect(contract.MAINTENANCE_DB).execute(_OWN_ATTRIBUTES).fetchone()[0]
    except psycopg.OperationalError:
        return None


_OWN_ATTRIBUTES = psycopg.sql.SQL("SELECT {} FROM pg_roles WHERE rolname = current_user").format(ROLE_ATTRIBUTES)


@contextmanager
def _reach(host, server: Server) -> Iterator[tuple[str | None, int]]:
    """(hostaddr, port) to give libpq: direct from @local, else a local end of the SSH tunnel."""
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if client is not None else None
    if transport is None:  # @local
        yield None, server.port
        return
    with _Forwarder(transport, server.admin_host, server.port) as local_port:
        yield _LOCAL, local_port


class _QuietRefusedChannels(logging.Filter):
    """paramiko logs every refused channel at error level; for the admin tunnel a refusal
    only means the cluster is not up yet (a fresh host, ``--dry``), which the operations
    report themselves. Other paramiko messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open FAILED" not in record.getMessage()


logging.getLogger("paramiko.transport").addFilter(_QuietRefusedChannels())


class _Forwarder:
    """A local listening socket whose connections are piped into SSH channels.

    Written by hand because paramiko offers channels but no local port forwarder, and
    reusing pyinfra's authenticated session avoids a second SSH login; the ``sshtunnel``
    package would open its own.
    """

    def __init__(self, transport, remote_host: str, remote_port: int):
        self.transport, self.remote = transport, (remote_host, remote_port)
        self.server = socket.create_server((_LOCAL, 0))

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
            if not own_connection(sock):
                logger.warning(f"admin link: refused a connection to the tunnel from {peer[0]}:{peer[1]}: "
                               "it is not this deploy's")
                sock.close()
                continue
            try:
                channel = self.transport.open_channel("direct-tcpip", self.remote, peer)
            except (SSHException, OSError) as e:
                # Nothing listens there (yet): close at once, so the client fails now with
                # "server closed the connection" rather than after its connect_timeout.
                logger.debug(f"admin link: no channel to {self.remote[0]}:{self.remote[1]} from the host ({e})")
                sock.close()
                continue
            threading.Thread(target=_pipe, args=(sock, channel), daemon=True).start()
            threading.Thread(target=_pipe, args=(channel, sock), daemon=True).start()


def own_connection(sock: socket.socket) -> bool:
    """Whether the client end of ``sock``, accepted on loopback, is a socket of this process.

    Why: the forwarder listens on 127.0.0.1 of the operator's machine, where any local user
    may connect, and what it pipes reaches the server's loopback through the SSH session.
    The only connections it is there for are libpq's, made from this very process (psycopg
    runs libpq in-process). Linux lists every TCP socket with its inode in /proc/net/tcp,
    and each socket a process holds open as ``socket:[inode]`` in /proc/self/fd, so the
    client's end can be looked up and must be one of ours. A check of the peer's uid alone
    would admit every process of the same user, and SO_PEERCRED exists only for unix
    sockets, which libpq never uses for TLS. Without /proc, nothing is served.
    """
    try:
        client, listener = sock.getpeername()[:2], sock.getsockname()[:2]
        with open("/proc/net/tcp") as f:
            next(f)  # the header
            inodes = [fields[9] for fields in map(str.split, f)
                      if _address(fields[1]) == client and _address(fields[2]) == listener]
        if not inodes:
            return False
        ours = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                ours.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:  # closed meanwhile
                continue
    except OSError:
        return False
    return f"socket:[{inodes[0]}]" in ours


def _address(field: str) -> tuple[str, int]:
    """An IPv4 "address:port" of /proc/net/tcp: the address in host byte order, in hex."""
    address, port = field.split(":")
    return socket.inet_ntoa(struct.pack("=I", int(address, 16))), int(port, 16)


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
