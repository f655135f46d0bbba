"""The connection matrix: every client host x every credential x every database.

Expectations come from the contract and the test inventory's grants, not from the
rendered pg_hba, so the deploy is checked against the contract rather than itself.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from zeroui_db import contract

PROBE = str(Path(__file__).with_name("probe.py"))
SUPERUSER = "postgres"


@dataclass(frozen=True)
class Attempt:
    client: str  # lab host name (a client group key, or "intruder")
    user: str
    dbname: str
    sslmode: str  # "require" or "disable"

    def expected(self) -> bool:
        """Only TLS, only a plane's own login roles, only to its database, only from its service hosts."""
        if self.sslmode != "require":
            return False
        group = contract.CLIENT_GROUPS_BY_KEY.get(self.client)
        if group is None:  # the intruder
            return False
        return any(
            self.dbname == plane.store and self.user in plane.login_roles for plane in group.default_planes
        )


def attempts(clients: list[str], ssl_variants=("require", "disable")) -> list[Attempt]:
    users = [r for p in contract.POSTGRES_PLANES for r in p.login_roles] + [contract.ADMIN_ROLE, SUPERUSER]
    dbs = [p.store for p in contract.POSTGRES_PLANES] + [contract.MAINTENANCE_DB]
    return [Attempt(c, u, d, s) for c in clients for u in users for d in dbs for s in ssl_variants]


def run_matrix(lab, server_address: str, port: int, passwords: dict[str, str],
               clients: list[str]) -> list[tuple[Attempt, bool, str]]:
    """Run every attempt from its client's own namespace; returns (attempt, connected, error)."""
    out = []
    for client in clients:
        mine = [a for a in attempts([client])]
        payload = [
            {"host": server_address, "port": port, "dbname": a.dbname, "user": a.user,
             # Right password for every role: only the address and the rules may refuse.
             "password": passwords.get(a.user, "not-the-password"), "sslmode": a.sslmode}
            for a in mine
        ]
        proc = lab.run(client, [sys.executable, PROBE], input=json.dumps(payload), timeout=300)
        assert proc.returncode == 0, proc.stderr
        for a, r in zip(mine, json.loads(proc.stdout)):
            out.append((a, r["ok"], r["error"]))
    return out


def mismatches(results) -> list[str]:
    return [
        f"{a.client} as {a.user} to {a.dbname} ({a.sslmode}): expected {'allow' if a.expected() else 'deny'},"
        f" got {'connected' if ok else error}"
        for a, ok, error in results if ok != a.expected()
    ]
