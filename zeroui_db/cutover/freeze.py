"""Stopping writes to a source plane, and letting them resume.

The plane's app role (the only role its services write with) loses LOGIN, then its open
sessions are ended, so an uncommitted write is rolled back rather than half-copied. Both
run as the pilot's local superuser over the unix socket, where the deploy runs every role
statement (a CREATEROLE role is a superuser in disguise on PostgreSQL 15; see README, "The
admin's powers"). The read-only role keeps reading: reads change nothing.
"""

from __future__ import annotations

from psycopg import sql

from ..catalog import Connect
from ..contract import MAINTENANCE_DB, Plane
from ..operations.roles import superuser_psql

# How long to wait for each ended session to go (pg_terminate_backend's timeout, in ms).
TERMINATE_WAIT_MS = 10_000


class FreezeFailed(Exception):
    """The freeze or its lifting did not take (one line)."""


def _run(host, port: int, script: sql.Composable) -> str:
    """Run ``script`` as the local superuser; its output, rows unaligned without headers."""
    command = superuser_psql(port, "\\pset format unaligned\n\\pset tuples_only on\n" + script.as_string())
    ok, output = host.run_shell_command(command, **command.connector_arguments)
    if not ok:
        raise FreezeFailed(f"the superuser's psql on {host.name} failed: {output.stderr.strip()[-300:]}")
    return output.stdout


def freeze(host, port: int, plane: Plane, connect: Connect) -> int:
    """Stop ``plane``'s writes on the cluster at ``port`` of ``host``; returns how many
    sessions were ended. ``connect`` (the admin's) checks that it took."""
    app = plane.app_role
    # NOLOGIN first, so that an ended session cannot come back.
    ended = _run(host, port, sql.SQL(
        "ALTER ROLE {role} NOLOGIN;\n"
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, {wait})) FROM pg_stat_activity"
        " WHERE usename = {name};\n"
    ).format(role=sql.Identifier(app), name=sql.Literal(app), wait=sql.Literal(TERMINATE_WAIT_MS)))
    can_login, sessions = _login_and_sessions(connect, app)
    if can_login or sessions:
        raise FreezeFailed(f"{plane.key}: {app} still {'logs in' if can_login else f'has {sessions} session(s)'} "
                           "after the freeze")
    return int(ended.split()[-1]) if ended.split() else 0


def lift(host, port: int, plane: Plane, connect: Connect) -> None:
    """Let ``plane``'s app role log in again."""
    _run(host, port, sql.SQL("ALTER ROLE {} LOGIN;\n").format(sql.Identifier(plane.app_role)))
    if not _login_and_sessions(connect, plane.app_role)[0]:
        raise FreezeFailed(f"{plane.key}: {plane.app_role} still cannot log in")


def is_frozen(connect: Connect, plane: Plane) -> bool:
    return not _login_and_sessions(connect, plane.app_role)[0]


def _login_and_sessions(connect: Connect, role: str) -> tuple[bool, int]:
    return connect(MAINTENANCE_DB).execute(
        "SELECT (SELECT rolcanlogin FROM pg_roles WHERE rolname = %(r)s),"
        " (SELECT count(*) FROM pg_stat_activity WHERE usename = %(r)s)", {"r": role}).fetchone()
