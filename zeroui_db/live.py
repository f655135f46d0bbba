"""Observed state for the audit: what a server shows its least-privileged audit role.

Read-only by construction: the audit role holds no write privilege anywhere, and these are
plain SELECTs. What it may not see comes back as ``None`` ("not visible"), never as a
pass. Besides the catalog (``catalog.read``, shared with the deploy's plan): settings, the
pg_hba file as the server parses it (``pg_hba_file_rules``), when the server last loaded
its configuration, and the certificate it presents.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass, field

import psycopg
from pyinfra.api import QuoteString, StringCommand

from . import catalog, contract, evidence
from .admin_link import admin_connect
from .config import Server
from .grants import Catalog

# The settings the audit judges (pgdsat/CIS 3.1.20, 3.1.21, 5.2, 5.12, 6.8) and hba_file.
SETTINGS = ("ssl", "ssl_min_protocol_version", "password_encryption", "listen_addresses", "log_connections",
            "log_disconnections", "hba_file")

# The evidence ledger's status, through the keeper's function (the audit role reads no receipt).
_LEDGER_QUERY = ("SELECT head_seq, head_hash, checkpoints, last_checkpoint_at, checkpoint_broken "
                 "FROM public.receipt_chain_status()")
LEDGER_FIELDS = ("head_seq", "head_hash", "checkpoints", "last_checkpoint_at", "checkpoint_broken")

_HBA_QUERY = """SELECT line_number, type, database, user_name, address, netmask, auth_method, options, error
FROM pg_catalog.pg_hba_file_rules ORDER BY line_number"""


@dataclass(frozen=True)
class HbaLine:
    """A pg_hba.conf line as PostgreSQL parsed it from the file on disk."""

    number: int
    type: str
    databases: tuple[str, ...]
    users: tuple[str, ...]
    address: str | None
    netmask: str | None
    method: str | None
    options: tuple[str, ...]
    error: str | None

    @property
    def text(self) -> str:
        """The line as a person would read it in the file."""
        where = self.address or ""
        if self.netmask:
            where += f" {self.netmask}"
        parts = [self.type, ",".join(self.databases), ",".join(self.users), where, self.method or "", *self.options]
        return f"line {self.number}: " + " ".join(p for p in parts if p)


@dataclass
class Observation:
    """One server as the audit saw it. ``None`` fields were not visible to the audit role."""

    server: Server
    error: str | None = None  # why it could not be read at all (one line)
    tls_refused: bool = False  # the server answered the TLS request with "no"
    catalog: Catalog | None = None
    settings: dict[str, str | None] = field(default_factory=dict)
    hba: tuple[HbaLine, ...] | None = None
    hba_changed_after_load: bool | None = None  # the file is newer than the server's last load
    certificate: bytes | None = None  # PEM of what the server presents
    certificate_error: str | None = None
    ledgers: dict[str, dict | None] = field(default_factory=dict)  # database -> its evidence ledger's status
    guards: dict[str, tuple[str | None, int] | None] = field(default_factory=dict)  # database -> evidence guard


def observe(host, server: Server, password: str, ca_file: str) -> Observation:
    """Read ``server`` as the audit role, through ``host`` (the workstation or the admin host)."""
    seen = Observation(server)
    seen.certificate, seen.certificate_error, seen.tls_refused = _certificate(host, server, ca_file)
    if seen.tls_refused:
        seen.error = "the server refuses TLS"
        return seen
    try:
        with admin_connect(host, server, password, ca_file, user=contract.AUDIT_ROLE) as connect:
            seen.catalog = catalog.read(connect, server)
            conn = connect(contract.MAINTENANCE_DB)
            rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(SETTINGS)])
            seen.settings = {name: None for name in SETTINGS} | dict(rows.fetchall())
            load_time = conn.execute("SELECT extract(epoch FROM pg_conf_load_time())").fetchone()[0]
            for endpoint in server.endpoints:
                if endpoint.plane.keeps_evidence:
                    seen.ledgers[endpoint.database] = _ledger(connect(endpoint.database))
                    if server.workstation:  # (marker, enabled triggers); None: no guard
                        seen.guards[endpoint.database] = connect(endpoint.database).execute(
                            evidence.GUARD_STATE).fetchone()
            if server.workstation:
                seen.hba = _hba(conn)
                seen.hba_changed_after_load = _changed_after(host, seen.settings.get("hba_file"), float(load_time))
    except psycopg.OperationalError as e:
        seen.error = str(e).strip().splitlines()[-1] if str(e).strip() else e.__class__.__name__
    return seen


def _ledger(conn: psycopg.Connection) -> dict | None:
    """The ledger's head and checkpoints; None when the audit role cannot read them (a ledger
    from before the keeper, or a schema it may not use)."""
    try:
        with conn.transaction():
            row = conn.execute(_LEDGER_QUERY).fetchone()
    except (psycopg.errors.UndefinedFunction, psycopg.errors.InsufficientPrivilege):
        return None
    return dict(zip(LEDGER_FIELDS, row))


def _hba(conn: psycopg.Connection) -> tuple[HbaLine, ...] | None:
    try:
        with conn.transaction():
            rows = conn.execute(_HBA_QUERY).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return tuple(HbaLine(n, t, tuple(d or ()), tuple(u or ()), a, m, method, tuple(o or ()), e)
                 for n, t, d, u, a, m, method, o, e in rows)


def _changed_after(host, hba_file: str | None, load_time: float) -> bool | None:
    """Whether the pg_hba file on the workstation is newer than the server's last load."""
    if not hba_file:
        return None
    ok, output = host.run_shell_command(StringCommand("stat", "-c", "%.9Y", QuoteString(hba_file)))
    if not ok or not output.stdout.strip():
        return None
    return float(output.stdout.strip()) > load_time


def _certificate(host, server: Server, ca_file: str) -> tuple[bytes | None, str | None, bool]:
    """(certificate PEM, why it does not verify, TLS refused): one TLS handshake, PostgreSQL-style.

    Written by hand because libpq does not hand the peer certificate to psycopg: an
    SSLRequest, then a TLS handshake on the same socket (stdlib ssl), verified like libpq's
    verify-full, and the certificate kept even when it does not verify (the audit says why).
    """
    from .admin_link import _reach  # the same path the admin connection takes (tunnel or direct)

    with _reach(host, server) as (hostaddr, port):
        try:
            sock = socket.create_connection((hostaddr or server.admin_host, port), timeout=10)
        except OSError as e:
            return None, f"cannot connect: {e}", False
        with sock:
            sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
            if sock.recv(1) != b"S":
                return None, None, True
            context = ssl.create_default_context(cafile=ca_file)
            try:
                with context.wrap_socket(sock, server_hostname=server.admin_host) as tls:
                    return ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode(), None, False
            except ssl.SSLCertVerificationError as e:
                error = e.verify_message or str(e)
        # Does not verify: fetch it unverified to show what it is.
        with socket.create_connection((hostaddr or server.admin_host, port), timeout=10) as sock:
            sock.sendall(struct.pack("!ii", 8, 80877103))
            sock.recv(1)
            loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE
            with loose.wrap_socket(sock) as tls:
                return ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode(), error, False
