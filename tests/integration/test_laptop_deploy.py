"""The IDE plane deployed by the real CLI to a laptop (@local, temporary directories).

A laptop gets its SQLite database and one env file, never PostgreSQL credentials. The
receipt cache bound and the outbox queries are exercised as the schema files document
them (the outbox statements are read from the comments of the outbox migration).
"""

from __future__ import annotations

import os
import pprint
import re
import secrets
import sqlite3
import stat
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployment import DeployRun, run_deploy

from zeroui_db import contract, schemas, sqlite_ledger

pytestmark = pytest.mark.integration

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
IDE_OP_PREFIX = "IDE database "  # deploy.py names the operation after the database path


@dataclass
class Laptop:
    root: Path
    site: str
    data_dir: Path
    config_dir: Path
    secrets_dir: Path
    inventory: Path
    first_run: DeployRun | None = None

    @property
    def database(self) -> Path:
        return self.data_dir / contract.IDE.store

    @property
    def env_file(self) -> Path:
        return self.config_dir / f"{contract.IDE.key}.env"

    @property
    def env(self) -> dict[str, str]:
        # Nothing of the caller's ZeroUI environment leaks in (schema dir, password overrides).
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ZEROUI_")}
        return {**clean, "ZEROUI_SECRETS_DIR": str(self.secrets_dir)}

    def write_inventory(self, receipt_cache_limit: int) -> None:
        data = {"zeroui": {"site": self.site, "ide": {
            "data_dir": str(self.data_dir), "config_dir": str(self.config_dir),
            "receipt_cache_limit": receipt_cache_limit,
        }}}
        self.inventory.write_text(f"{contract.IDE_LAPTOPS.key} = (['@local'], {pprint.pformat(data)})\n")

    def deploy(self, check: bool = True, json_output: bool = True) -> DeployRun:
        return run_deploy(self.inventory, env=self.env, check=check, json_output=json_output)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.database, isolation_level=None, timeout=30)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn


@pytest.fixture
def laptop(tmp_path) -> Laptop:
    """A laptop site deployed once with a receipt cache of 5."""
    lt = Laptop(tmp_path, f"zt-laptop-{secrets.token_hex(3)}", tmp_path / "data", tmp_path / "config",
                tmp_path / "secrets", tmp_path / "laptop.py")
    lt.write_inventory(receipt_cache_limit=5)
    lt.first_run = lt.deploy()
    return lt


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the deploy --------------------------------------------------------------------------------


def test_first_deploy_creates_a_private_wal_database_with_its_ledger(laptop):
    assert any(name.startswith(IDE_OP_PREFIX) for name in laptop.first_run.changed), laptop.first_run.changed
    assert laptop.database.is_file()
    assert mode(laptop.database) == 0o600
    for suffix in ("-wal", "-shm"):  # present only while a connection is open, then 0600 too
        side = Path(f"{laptop.database}{suffix}")
        if side.exists():
            assert mode(side) == 0o600, side
    with closing(laptop.connect()) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        ledger = dict(conn.execute(f"SELECT filename, checksum FROM {sqlite_ledger.TABLE}"))
        limit = conn.execute(f"SELECT value FROM {sqlite_ledger.SETTINGS} WHERE key = 'receipt_cache_limit'")
        assert limit.fetchone() == ("5",)
    files = schemas.migrations(contract.IDE)
    assert files and ledger == {m.name: m.checksum for m in files}


def test_env_file_holds_only_the_sqlite_url(laptop):
    assert mode(laptop.env_file) == 0o600
    text = laptop.env_file.read_text()
    assignments = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert assignments == [f"{contract.IDE.env_var}=sqlite:///{laptop.database}"]
    assert not re.search(r"postgres(ql)?://", text, re.I)  # no PostgreSQL URL, only the comment that says so
    assert re.findall(r"ZEROUI_[A-Z0-9_]+", text) == [contract.IDE.env_var]
    for plane in contract.POSTGRES_PLANES:
        assert plane.env_var not in text and plane.store not in text
    assert sorted(p.name for p in laptop.config_dir.iterdir()) == [laptop.env_file.name]


def test_laptop_gets_no_postgres_credentials(laptop):
    """The secrets store holds nothing for a laptop-only site (not even an empty file)."""
    assert not (laptop.secrets_dir / f"{laptop.site}.json").exists()
    assert not laptop.secrets_dir.exists() or list(laptop.secrets_dir.iterdir()) == []


def test_second_deploy_changes_nothing(laptop):
    run = laptop.deploy()
    assert run.errors == [] and run.changed == []
    assert not (laptop.secrets_dir / f"{laptop.site}.json").exists()


def test_changed_applied_migration_stops_the_deploy(laptop):
    """A ledger checksum that no longer matches its file: the deploy refuses on one line naming the file and
    both checksums, and touches nothing; restored, the deploy is a no-op again."""
    migration = schemas.migrations(contract.IDE)[0]
    fake = "0" * 64
    update = f"UPDATE {sqlite_ledger.TABLE} SET checksum = ? WHERE filename = ?"
    with closing(laptop.connect()) as conn:
        assert conn.execute(update, (fake, migration.name)).rowcount == 1
    before = laptop.database.read_bytes()
    run = laptop.deploy(check=False, json_output=False)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if "changed after it was applied" in line]
    assert lines, run.stderr[-4000:]
    assert f"{contract.IDE.key}/{migration.name}" in lines[0] and fake in lines[0] and migration.checksum in lines[0]
    assert "Traceback" not in run.stderr, run.stderr[-4000:]
    assert laptop.database.read_bytes() == before
    with closing(laptop.connect()) as conn:
        conn.execute(update, (migration.checksum, migration.name))
    assert laptop.deploy().changed == []


# -- the receipt cache bound -------------------------------------------------------------------


def _cache_receipt(conn: sqlite3.Connection, n: int) -> str:
    receipt_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO receipt_cache (receipt_id, kind, source, occurred_at, payload) "
        f"VALUES (?, 'ide.check', 'ide:test', {NOW}, ?)", (receipt_id, f'{{"n": {n}}}'))
    return receipt_id


def _cached(laptop: Laptop) -> list[str]:
    with closing(laptop.connect()) as conn:
        return [r[0] for r in conn.execute("SELECT receipt_id FROM receipt_cache ORDER BY id")]


def test_receipt_cache_keeps_the_newest_n_and_follows_the_inventory(laptop):
    with closing(laptop.connect()) as conn:
        inserted = [_cache_receipt(conn, n) for n in range(8)]
    assert _cached(laptop) == inserted[-5:]

    laptop.write_inventory(receipt_cache_limit=3)
    run = laptop.deploy()
    assert any(name.startswith(IDE_OP_PREFIX) for name in run.changed), run.changed
    assert _cached(laptop) == inserted[-3:]  # lowered limit trims at once
    with closing(laptop.connect()) as conn:
        assert conn.execute("SELECT value FROM ide_settings WHERE key = 'receipt_cache_limit'").fetchone() == ("3",)
        inserted.append(_cache_receipt(conn, 8))
    assert _cached(laptop) == inserted[-3:]
    assert mode(laptop.database) == 0o600
    assert laptop.deploy().changed == []


# -- the outbox, with the queries its migration documents ---------------------------------------


def documented_outbox_queries() -> dict[str, str]:
    """The statements in the outbox migration's header comment, by the first word of their heading."""
    path = schemas.plane_dir(contract.IDE) / "0003_outbox.sql"
    comment = []
    for line in path.read_text().splitlines():
        if not line.startswith("--"):
            break
        comment.append(line[2:])
    queries, heading, current = {}, None, []
    for line in comment:
        if not line.startswith("  ") and line.strip():  # a heading, e.g. " Claim the oldest due ..."
            heading, current = line.split()[0].rstrip(":"), []
            continue
        if heading and line.strip():
            current.append(line.strip())
            if line.rstrip().endswith(";") and heading not in queries:
                queries[heading] = "\n".join(current)
    return queries


QUERIES = documented_outbox_queries()


def test_outbox_queries_are_documented():
    assert {"Claim", "Delivered", "Failed"} <= set(QUERIES), QUERIES
    assert QUERIES["Claim"].startswith("UPDATE outbox") and "RETURNING" in QUERIES["Claim"]


def _claim(conn: sqlite3.Connection) -> tuple | None:
    claimed = conn.execute(QUERIES["Claim"]).fetchall()  # fetch all: the statement runs to its end
    assert len(claimed) <= 1
    return claimed[0] if claimed else None


def _row(conn: sqlite3.Connection, id_: int) -> dict:
    cur = conn.execute("SELECT * FROM outbox WHERE id = ?", (id_,))
    return dict(zip([d[0] for d in cur.description], cur.fetchone()))


def _now(conn: sqlite3.Connection) -> str:
    return conn.execute(f"SELECT {NOW}").fetchone()[0]


def _seconds_until(conn: sqlite3.Connection, when: str) -> float:
    return conn.execute("SELECT (julianday(?) - julianday('now')) * 86400", (when,)).fetchone()[0]


def test_outbox_claims_in_order_retries_with_backoff_and_gives_up(laptop):
    with closing(laptop.connect()) as conn:
        ids = []
        for n, max_attempts in ((1, 2), (2, 20), (3, 20)):
            cur = conn.execute(
                "INSERT INTO outbox (idempotency_key, event_type, payload, max_attempts) VALUES (?, ?, ?, ?)",
                (f"zt-{n}", "receipt.created", f'{{"n": {n}}}', max_attempts))
            ids.append(cur.lastrowid)
        first, second, third = ids

        claims = [_claim(conn) for _ in ids]
        assert [c[0] for c in claims] == ids  # id order
        assert [c[-1] for c in claims] == [1, 1, 1]  # attempts
        assert _claim(conn) is None  # all in flight
        assert {_row(conn, i)["state"] for i in ids} == {"in_flight"}

        conn.execute(QUERIES["Delivered"], {"id": second})
        assert _row(conn, second)["state"] == "sent" and _row(conn, second)["sent_at"]

        # First failure: back to pending, due 5 s later (5 s doubling), not claimable now.
        conn.execute(QUERIES["Failed"], {"id": first, "error": "HTTP 503"})
        row = _row(conn, first)
        assert (row["state"], row["attempts"], row["last_error"], row["claimed_at"]) == ("pending", 1, "HTTP 503", None)
        assert 3.5 < _seconds_until(conn, row["next_attempt_at"]) <= 5.01
        assert _claim(conn) is None

        # When due, it is claimed again and its attempts go up.
        time.sleep(max(0.0, _seconds_until(conn, row["next_attempt_at"])) + 0.2)
        again = _claim(conn)
        assert again is not None and again[0] == first and again[-1] == 2

        # Second failure reaches max_attempts: dead, and never claimed again, due or not.
        conn.execute(QUERIES["Failed"], {"id": first, "error": "HTTP 503"})
        assert (_row(conn, first)["state"], _row(conn, first)["attempts"]) == ("dead", 2)
        conn.execute("UPDATE outbox SET next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour') "
                     "WHERE id = ?", (first,))
        assert _claim(conn) is None
        assert _now(conn) > _row(conn, first)["next_attempt_at"]

        # The third item is still in flight with its single attempt; the queue order held throughout.
        assert (_row(conn, third)["state"], _row(conn, third)["attempts"]) == ("in_flight", 1)
