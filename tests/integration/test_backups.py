"""Backups of the pilot (session fixture ``local_site``): the deploy's pgBackRest set-up and first
full backup, ``zeroui-db backup``, and ``zeroui-db restore-drill`` to the latest backup and to a
moment in time, with sentinel receipts; a cut tail refuses the next backup; the drill removes
its scratch cluster also when a check fails.

The commands run as a user runs them (``python -m zeroui_db.cli``). Expectations come from
the sentinel rows the tests write and from pgBackRest's own view of the repository
(``pgbackrest info``), not from the command's output alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deployment import REPO
from hosts import superuser_psql, superuser_rows

from zeroui_db import contract

pytestmark = pytest.mark.integration

TENANT = contract.TENANT


def stanza(site) -> str:
    return f"{site.version}-{site.cluster}"


def pgbackrest_info(site) -> dict:
    proc = subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest",
                           f"--config=/etc/postgresql/{site.version}/{site.cluster}/pgbackrest.conf",
                           f"--stanza={stanza(site)}", "info", "--output=json"],
                          text=True, capture_output=True, check=True, cwd="/")
    return json.loads(proc.stdout)[0]


def sentinels(site, tag: str, n: int) -> list[list[str]]:
    """Append n receipts (as the superuser: the append trigger runs all the same); their (seq, hash)."""
    return superuser_rows(site.port, TENANT.store, f"""
        INSERT INTO receipts (kind, source, occurred_at, payload)
        SELECT 'zt.sentinel', '{tag}', now(), jsonb_build_object('n', n) FROM generate_series(1, {n}) n
        RETURNING seq, encode(content_hash, 'hex');""")


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting for its parent does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def scratch():
    """A parent directory for the drill's cluster, postgres's, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="zt-drill-", dir="/var/tmp"))
    shutil.chown(path, "postgres", "postgres")
    yield path
    leftovers = list(path.iterdir())
    shutil.rmtree(path, ignore_errors=True)
    assert leftovers == [], "the drill left its scratch cluster behind"


def test_the_deploy_archives_wal_and_made_a_first_full_backup(local_site):
    settings = dict(superuser_rows(local_site.port, contract.MAINTENANCE_DB, """
        SELECT name, setting FROM pg_settings
        WHERE name IN ('archive_mode', 'archive_command', 'max_connections', 'superuser_reserved_connections')"""))
    assert settings["archive_mode"] == "on" and f"--stanza={stanza(local_site)} archive-push %p" in \
        settings["archive_command"]
    # 3 planes x (20 app + 5 read-only) + 5 audit + 10 admin + 5 reserved: the inventory's defaults.
    assert (settings["max_connections"], settings["superuser_reserved_connections"]) == ("95", "5")
    [audit] = superuser_rows(local_site.port, contract.MAINTENANCE_DB, f"""
        SELECT rolconnlimit, array_to_string(rolconfig, ' ') FROM pg_roles WHERE rolname = '{contract.AUDIT_ROLE}'""")
    assert audit[0] == "5" and set(audit[1].split()) == {
        "statement_timeout=1min", "lock_timeout=5s", "idle_in_transaction_session_timeout=60s"}
    [archiver] = superuser_rows(local_site.port, contract.MAINTENANCE_DB, """
        SELECT archived_count > 0, failed_count = 0 OR last_archived_time > last_failed_time FROM pg_stat_archiver""")
    assert archiver == ["t", "t"]
    info = pgbackrest_info(local_site)
    full = [b for b in info["backup"] if b["type"] == "full"]
    assert full and {"zeroui-restore-point", "zeroui-receipts-seq"} <= set(full[0]["annotation"])
    cron = Path(f"/etc/cron.d/zeroui-backup-{local_site.version}-{local_site.cluster}").read_text()
    script = f"/etc/postgresql/{local_site.version}/{local_site.cluster}/zeroui-backup"
    assert f"\n30 1 * * 0 postgres {script} full\n" in cron and f"\n30 1 * * 1-6 postgres {script} incr\n" in cron


def test_backup_then_restore_drill_to_its_anchor(local_site, scratch):
    """Sentinels before the backup are in the restored cluster, up to the head the backup anchored; those
    after it are not."""
    before = sentinels(local_site, "zt:before-backup", 5)
    backup = local_site.zeroui_db("backup")
    assert backup.returncode == 0, backup.stderr + backup.stdout
    after = sentinels(local_site, "zt:after-backup", 3)
    label = pgbackrest_info(local_site)["backup"][-1]
    assert label["type"] == "incr" and label["annotation"]["zeroui-receipts-seq"] == before[-1][0]
    assert label["annotation"]["zeroui-receipts-hash"] == before[-1][1]
    assert f"backup: {label['label']}" in backup.stdout and "checked: receipts chain intact" in backup.stdout

    drill = local_site.zeroui_db("restore-drill", "--scratch", str(scratch))
    assert drill.returncode == 0, drill.stderr + drill.stdout
    out = drill.stdout
    assert f"backup {label['label']} (incr) to its restore point zeroui-{label['label']}" in out
    assert "checked: pg_amcheck --all --heapallindexed: no corruption" in out
    assert f"head seq {before[-1][0]} {before[-1][1]}" in out and f"seq {after[-1][0]}" not in out
    assert f"checked: head equals the head anchored at backup time (seq {before[-1][0]})" in out
    for plane in contract.POSTGRES_PLANES:
        assert f"checked: {plane.store}: migration ledger of" in out
    assert "FAILED" not in out and re.search(r"took \d+\.\d s", out)


def test_point_in_time_restore_drill(local_site, scratch):
    """Restored to a moment between two sets of sentinels: the first set is there, the second is not."""
    early = sentinels(local_site, "zt:pitr-early", 4)
    [[moment]] = superuser_rows(local_site.port, contract.MAINTENANCE_DB, "SELECT to_char(clock_timestamp() "
                                "AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US+00:00')")
    time.sleep(0.2)
    late = sentinels(local_site, "zt:pitr-late", 4)
    backup = local_site.zeroui_db("backup")  # archives the WAL up to now (and past the moment)
    assert backup.returncode == 0, backup.stderr + backup.stdout

    drill = local_site.zeroui_db("restore-drill", "--target", moment, "--scratch", str(scratch))
    assert drill.returncode == 0, drill.stderr + drill.stdout
    out = drill.stdout
    assert f"the moment {moment}" in out
    assert f"receipts chain intact: {early[-1][0]} receipts, head seq {early[-1][0]} {early[-1][1]}" in out
    assert int(late[0][0]) == int(early[-1][0]) + 1
    assert "checked: no receipt younger than the target" in out and "FAILED" not in out


def test_point_in_time_restore_drill_to_just_now(local_site, scratch):
    """A moment after the last write, with no backup or WAL switch since (as an operator asks for
    "now"): recovery needs a commit after it in the archive, which the drill provides; every
    sentinel written before the moment is restored."""
    written = sentinels(local_site, "zt:pitr-now", 3)
    [[moment]] = superuser_rows(local_site.port, contract.MAINTENANCE_DB, "SELECT to_char(clock_timestamp() "
                                "AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US+00:00')")
    drill = local_site.zeroui_db("restore-drill", "--target", moment, "--scratch", str(scratch))
    assert drill.returncode == 0, drill.stderr + drill.stdout
    assert f"head seq {written[-1][0]} {written[-1][1]}" in drill.stdout and "FAILED" not in drill.stdout


def test_a_restore_drill_to_a_moment_still_to_come_is_refused(local_site, scratch):
    drill = local_site.zeroui_db("restore-drill", "--target", "2999-01-01T00:00:00Z", "--scratch", str(scratch))
    assert drill.returncode == 1 and "still to come" in drill.stderr and drill.stdout == ""


def test_a_drill_killed_midway_leaves_a_cluster_the_next_drill_removes(local_site, scratch):
    """kill -9 once the scratch cluster is up (no cleanup can run): the next drill stops and removes it
    before its own, and no server of it is left running."""
    argv = [sys.executable, "-m", "zeroui_db.cli", "restore-drill", str(local_site.inventory), "--scratch", str(scratch)]
    first = subprocess.Popen(argv, cwd=REPO, env=local_site.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not list(scratch.glob("zeroui-drill-*/data/postmaster.pid")):
            assert first.poll() is None and time.monotonic() < deadline, "the drill ended before its cluster was up"
            time.sleep(0.05)
    finally:
        first.kill()
        first.wait()
    [left] = list(scratch.iterdir())
    pid = int((left / "data" / "postmaster.pid").read_text().split()[0])
    assert running(pid)  # the killed drill's server goes on

    drill = local_site.zeroui_db("restore-drill", "--scratch", str(scratch))
    assert drill.returncode == 0, drill.stderr + drill.stdout
    assert f"removed {left}, left by an interrupted drill" in drill.stdout
    assert not running(pid)


def test_a_cut_tail_refuses_the_next_backup_until_the_rows_are_back(local_site):
    """Cut the last receipts (as the superuser, triggers off): the chain still verifies, but the next backup
    refuses, naming what it checked against. Put back byte for byte (the restore path a data move would
    use), the backup goes through again."""
    rows = sentinels(local_site, "zt:cut", 3)
    assert local_site.zeroui_db("backup").returncode == 0  # anchors the head: rows[-1]
    cut = f"seq >= {rows[1][0]}"
    saved = superuser_rows(local_site.port, TENANT.store, f"""
        COPY (SELECT * FROM receipts WHERE {cut} ORDER BY seq) TO STDOUT""")
    superuser_psql(local_site.port, TENANT.store, f"""
        BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM receipts WHERE {cut}; COMMIT;""")
    try:
        [[chain]] = superuser_rows(local_site.port, TENANT.store, "SELECT verify_receipt_chain() IS NULL")
        assert chain == "t"  # the chain alone cannot tell
        refused = local_site.zeroui_db("backup")
        assert refused.returncode != 0
        assert re.search(rf"refused: (checkpoint \d+ no longer holds \(receipt {rows[-1][0]} is gone or changed\)"
                         rf"|receipt {rows[-1][0]}, the head anchored by backup \S+, is gone)", refused.stdout), \
            refused.stdout + refused.stderr
        assert "no backup taken" in refused.stderr
    finally:
        copy = "\n".join("\t".join(r) for r in saved)
        superuser_psql(local_site.port, TENANT.store,
                       f"BEGIN;\nSET LOCAL session_replication_role = replica;\n"
                       f"COPY receipts FROM STDIN;\n{copy}\n\\.\nCOMMIT;\n")
    [[chain, checkpoints]] = superuser_rows(
        local_site.port, TENANT.store, "SELECT verify_receipt_chain() IS NULL, verify_receipt_checkpoints() IS NULL")
    assert (chain, checkpoints) == ("t", "t")
    assert local_site.zeroui_db("backup").returncode == 0


def test_a_failed_check_fails_the_drill_and_still_removes_its_cluster(local_site, scratch):
    """A backup whose anchor names another head: the drill restores, finds the difference, exits 1, and the
    scratch cluster is gone (the fixture checks its directory is empty)."""
    [[_, right]] = sentinels(local_site, "zt:wrong-anchor", 1)
    assert local_site.zeroui_db("backup").returncode == 0
    label = pgbackrest_info(local_site)["backup"][-1]["label"]

    def annotate(content_hash: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest",
                        f"--config=/etc/postgresql/{local_site.version}/{local_site.cluster}/pgbackrest.conf",
                        f"--stanza={stanza(local_site)}", "annotate", f"--set={label}",
                        f"--annotation=zeroui-receipts-hash={content_hash}"], check=True, capture_output=True, cwd="/")

    annotate("0" * 64)
    try:
        drill = local_site.zeroui_db("restore-drill", "--scratch", str(scratch))
        assert drill.returncode == 1, drill.stdout + drill.stderr
        assert "FAILED: head seq" in drill.stdout and "differs from the head anchored at backup time" in drill.stdout
        assert re.search(r"restore drill failed: \d+ of \d+ checks", drill.stderr), drill.stderr
        assert not any(p.name.startswith("zeroui-drill-") for p in scratch.iterdir())
    finally:
        annotate(right)


def test_commands_refuse_a_site_without_a_workstation(tmp_path):
    inventory = tmp_path / "cloud.py"
    shutil.copy(REPO / "inventories" / "cloud.py", inventory)
    for verb in ("backup", "restore-drill"):
        proc = subprocess.run([sys.executable, "-m", "zeroui_db.cli", verb, str(inventory)], cwd=REPO,
                              env={**os.environ}, text=True, capture_output=True, timeout=60)
        assert proc.returncode == 2 and "no workstation cluster" in proc.stderr, proc.stderr
