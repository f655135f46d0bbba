"""The IDE plane's SQLite runner: atomic migrations, a ledger, WAL, 0600, one apply under concurrency."""

import json
import os
import sqlite3
import stat
import subprocess

import pytest

from zeroui_db import contract, sqlite_ledger
from zeroui_db.operations.ide import runner
from zeroui_db.schemas import Migration


def req(*migrations):
    return [{"name": m.name, "sql": m.sql, "checksum": m.checksum} for m in migrations]


ONE = Migration("0001_t.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);\n"
                              "CREATE TABLE ide_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
                              "INSERT INTO ide_settings VALUES ('receipt_cache_limit', '500');\n")
TWO = Migration("0002_u.sql", "CREATE TABLE u (id INTEGER PRIMARY KEY);\n")
BAD = Migration("0002_bad.sql", "CREATE TABLE w (id INTEGER);\nINSERT INTO nowhere VALUES (1);\n")


def test_apply_creates_a_private_wal_database_with_a_ledger(tmp_path):
    path = str(tmp_path / "sub" / contract.IDE.store)
    assert sqlite_ledger.apply(path, req(ONE, TWO), {"receipt_cache_limit": "7"}) == {"applied": [ONE.name, TWO.name]}
    state = sqlite_ledger.state(path)
    assert state["ledger"] == {ONE.name: ONE.checksum, TWO.name: TWO.checksum}
    assert state["settings"] == {"receipt_cache_limit": "7"}
    assert state["journal_mode"] == "wal" and state["mode"] == "0o600"
    assert stat.S_IMODE(os.stat(tmp_path / "sub").st_mode) == 0o700
    assert sqlite_ledger.apply(path, req(ONE, TWO), {}) == {"applied": []}


def test_failing_migration_rolls_back_and_stops(tmp_path):
    path = str(tmp_path / "x.db")
    with pytest.raises(RuntimeError) as e:
        sqlite_ledger.apply(path, req(ONE, BAD, TWO), {})
    assert str(e.value).startswith("ide/0002_bad.sql: statement 2 failed (no such table: nowhere): "
                                   "INSERT INTO nowhere VALUES (1);")
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "w" not in tables and "u" not in tables  # rolled back; later ones never ran
    assert sqlite_ledger.state(path)["ledger"] == {ONE.name: ONE.checksum}


def test_changed_applied_migration_is_refused(tmp_path):
    path = str(tmp_path / "x.db")
    sqlite_ledger.apply(path, req(ONE), {})
    edited = Migration(ONE.name, ONE.sql + "-- edited\n")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        sqlite_ledger.apply(path, req(edited), {})


def test_concurrent_deploys_apply_each_migration_once(tmp_path):
    path = str(tmp_path / "x.db")
    command, stdin = runner({"action": "apply", "path": path, "settings": {}, "migrations": req(ONE, TWO)})
    procs = [subprocess.Popen(command.get_raw_value(), shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    for p in procs:
        p.stdin.write(stdin)
        p.stdin.close()
    results = [json.loads(p.stdout.read()) for p in procs]
    assert all(p.wait() == 0 for p in procs)
    applied = sorted(name for r in results for name in r["applied"])
    assert applied == [ONE.name, TWO.name]
    assert sqlite3.connect(path).execute("SELECT count(*) FROM zeroui_schema_migrations").fetchone() == (2,)


def test_runner_reads_state_on_the_host(tmp_path):
    path = str(tmp_path / "x.db")
    command, stdin = runner({"action": "state", "path": path})
    out = subprocess.run(command.get_raw_value(), shell=True, input=stdin, capture_output=True, text=True,
                         executable="/bin/sh")
    assert json.loads(out.stdout) == {"exists": False}
