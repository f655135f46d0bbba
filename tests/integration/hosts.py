"""Reaching what the tests deployed: the cluster as its superuser, and a plane's database
from the lab host that runs that plane's services."""

from __future__ import annotations

import json
import subprocess
import sys

from psycopg import sql

import matrix
from zeroui_db import contract


def service_host(plane: contract.Plane) -> str:
    """The lab host that runs ``plane``'s services (lab hosts are named after client groups)."""
    return next(g.key for g in contract.SERVICE_GROUPS if g.plane is plane)


def superuser_psql(port: int, dbname: str, script: str | sql.Composable, check: bool = True) -> subprocess.CompletedProcess:
    """Run a script as the superuser over the local socket (peer auth); stops at the first error."""
    if isinstance(script, sql.Composable):
        script = script.as_string()
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t",
         "-p", str(port), "-d", dbname, "-f", "-"],
        input=script, text=True, capture_output=True, timeout=120, cwd="/",
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def superuser_rows(port: int, dbname: str, script: str | sql.Composable) -> list[list[str]]:
    """Rows of a superuser script, split on tabs."""
    return [line.split("\t") for line in superuser_psql(port, dbname, script).stdout.splitlines()]


def probe(lab, client: str, site, user: str, dbname: str, password: str) -> tuple[bool, str]:
    """One TLS connection attempt from a lab host (matrix's probe): (connected, error)."""
    attempt = {"host": site.server_address, "port": site.port, "dbname": dbname, "user": user,
               "password": password, "sslmode": "require"}
    proc = lab.run(client, [sys.executable, matrix.PROBE], input=json.dumps([attempt]), timeout=60)
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    return result["ok"], result["error"]


# Runs inside a lab host: connects with the parameters (or URL) read from stdin, runs each
# statement in autocommit and reports its outcome; secrets travel on stdin only.
_IN_NAMESPACE = r"""
import json, sys, psycopg
a = json.load(sys.stdin)
if "url" in a:  # exactly as a service would use it
    params = {"conninfo": a["url"]}
else:
    params = {**{k: a[k] for k in ("host", "port", "dbname", "user", "password")}, "sslmode": "require"}
out = []
with psycopg.connect(**params, connect_timeout=5, autocommit=True) as conn:
    for stmt in a["statements"]:
        try:
            cur = conn.execute(stmt)
            out.append({"ok": True, "sqlstate": None, "rows": cur.fetchall() if cur.description else None})
        except psycopg.Error as e:
            out.append({"ok": False, "sqlstate": e.sqlstate, "rows": None})
print(json.dumps(out, default=str))
"""


def sql_from_host(lab, client: str, statements: list[str], **connect) -> list[dict]:
    proc = lab.run(client, [sys.executable, "-c", _IN_NAMESPACE],
                   input=json.dumps({**connect, "statements": statements}), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


# Runs where it is started (a lab host, or here): one connection, one transaction; the setup
# statements first (e.g. SET ROLE), then each statement in its own savepoint, so that one
# refusal does not end the session and one success cannot affect the next; everything is
# rolled back at the end. Secrets arrive on stdin only.
_ROLLED_BACK = r"""
import json, sys, psycopg
a = json.load(sys.stdin)
out = []
with psycopg.connect(a["conninfo"], **a["connect"], connect_timeout=10) as conn:
    for stmt in a["setup"]:
        conn.execute(stmt)
    for stmt in a["statements"]:
        conn.execute("SAVEPOINT zt_step")
        try:
            cur = conn.execute(stmt)
            rows = cur.fetchall() if cur.description else None
            conn.execute("RELEASE SAVEPOINT zt_step")
            out.append({"ok": True, "sqlstate": None, "message": None, "rows": rows})
        except psycopg.Error as e:
            conn.execute("ROLLBACK TO SAVEPOINT zt_step")
            out.append({"ok": False, "sqlstate": e.sqlstate, "message": e.diag.message_primary, "rows": None})
    conn.rollback()
print(json.dumps(out, default=str))
"""


def sql_rolled_back(lab, client: str | None, statements: list[str], setup: list[str] = (), **connect) -> list[dict]:
    """Each statement's outcome ({ok, sqlstate, message, rows}) in one transaction that is rolled
    back, from lab host ``client`` (None: this machine)."""
    request = json.dumps({"conninfo": "", "connect": {"sslmode": "require", **connect}, "setup": list(setup),
                          "statements": list(statements)})
    argv = [sys.executable, "-c", _ROLLED_BACK]
    if client is None:
        proc = subprocess.run(argv, input=request, text=True, capture_output=True, timeout=120)
    else:
        proc = lab.run(client, argv, input=request, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert len(out) == len(statements)
    return out
