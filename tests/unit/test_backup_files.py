"""Backups, as far as they can be checked without a server: pgBackRest's info read into backups
and anchors, the files the deploy writes for them (rendered as hosts get them), the repository
fact, and the drill's refusals before it touches anything."""

import copy
import shutil
import subprocess
from datetime import datetime, timezone

import click
import pytest
from click.testing import CliRunner

from zeroui_db import backups
from zeroui_db.cli import main
from zeroui_db.config import parse_site
from zeroui_db.facts import BackupRepository, BackupRepositoryInfo
from zeroui_db.layout import layout
from zeroui_db.templates import render_template

from conftest import BASE

# `pgbackrest info --output=json` of a stanza with a full backup whose anchor names an empty chain
# and an incremental one anchoring receipt 100, as pgBackRest 2.45 wrote it (one field trimmed).
INFO = """[{"archive": [{"database": {"id": 1, "repo-key": 1}, "id": "15-1", "max": "000000010000000000000014",
 "min": "000000010000000000000001"}], "backup": [{"annotation": {"zeroui-anchored-at": "2026-11-28T16:56:56.179384Z",
 "zeroui-receipts-seq": "0", "zeroui-restore-point": "zeroui-20261128-165652F"}, "archive": {"start":
 "000000010000000000000003", "stop": "000000010000000000000003"}, "backrest": {"format": 5, "version": "2.45"},
 "database": {"id": 1, "repo-key": 1}, "error": false, "info": {"delta": 48525175, "repository": {"delta": 9290247,
 "size": 9290247}, "size": 48525175}, "label": "20261128-165652F", "lsn": {"start": "0/3000028", "stop": "0/3000100"},
 "prior": null, "reference": null, "timestamp": {"start": 1795885012, "stop": 1795885015}, "type": "full"},
 {"annotation": {"zeroui-anchored-at": "2026-11-28T16:58:36.518948Z", "zeroui-receipts-seq": "100",
 "zeroui-receipts-hash": "836a6640de9c8a2f9e2a817a4843c2a37978ba32087ef30d955e30a403f58fe8",
 "zeroui-restore-point": "zeroui-20261128-165652F_20261128-165834I"}, "archive": {"start": "000000010000000000000007",
 "stop": "000000010000000000000007"}, "backrest": {"format": 5, "version": "2.45"}, "database": {"id": 1,
 "repo-key": 1}, "error": false, "info": {"delta": 5882122, "repository": {"delta": 1301385, "size": 9353535},
 "size": 48738167}, "label": "20261128-165652F_20261128-165834I", "lsn": {"start": "0/7000028", "stop": "0/7000100"},
 "prior": "20261128-165652F", "reference": ["20261128-165652F"], "timestamp": {"start": 1795885105, "stop":
 1795885107}, "type": "incr"}, {"archive": {"start": "000000010000000000000009", "stop": "000000010000000000000009"},
 "backrest": {"format": 5, "version": "2.45"}, "database": {"id": 1, "repo-key": 1}, "error": false,
 "info": {"delta": 10, "repository": {"delta": 5, "size": 5}, "size": 10}, "label": "20261128-165652F_20261128-170000I",
 "lsn": {"start": "0/9000028", "stop": "0/9000100"}, "prior": "20261128-165652F_20261128-165834I", "reference": null,
 "timestamp": {"start": 1795885200, "stop": 1795885201}, "type": "incr"}], "cipher": "none", "name": "15-dev10",
 "status": {"code": 0, "message": "ok"}}]"""


def test_backups_and_their_anchors_are_read_from_pgbackrest_info():
    repo = backups.parse_info(INFO)
    assert [(b.label, b.type) for b in repo.backups] == [
        ("20261128-165652F", "full"), ("20261128-165652F_20261128-165834I", "incr"),
        ("20261128-165652F_20261128-170000I", "incr")]
    full, incr, unanchored = repo.backups
    assert full.anchor == backups.Anchor("zeroui-20261128-165652F",
                                         datetime(2026, 11, 28, 16, 56, 56, 179384, timezone.utc), 0, None)
    assert (incr.anchor.receipts_seq, incr.anchor.receipts_hash) == (
        100, "836a6640de9c8a2f9e2a817a4843c2a37978ba32087ef30d955e30a403f58fe8")
    assert unanchored.anchor is None  # pgBackRest run by hand, or a backup script that did not finish
    assert full.stopped == datetime.fromtimestamp(1795885015, timezone.utc) and full.size == 48525175
    assert (repo.count("full"), repo.count("incr"), repo.latest) == (1, 2, unanchored)
    assert (repo.archive_min, repo.archive_max) == ("000000010000000000000001", "000000010000000000000014")
    assert backups.parse_info("[]").backups == ()


def pilot_files(data=BASE, ledger_database="zeroui_tenant_pg"):
    site = parse_site(copy.deepcopy(data))
    cluster = layout(site.cluster, 15)
    context = dict(site=site, cluster=cluster, backup=site.backup)
    return cluster, {
        "postgresql.conf": render_template(
            "postgresql.conf.j2", **context, listen_addresses=["127.0.0.1"], ssl_cert_file="/c", ssl_key_file="/k",
            limits=site.limits, max_connections=site.limits.max_connections(3)),
        "pgbackrest.conf": render_template("pgbackrest.conf.j2", **context),
        "cron": render_template("backup.cron.j2", **context),
        "script": render_template("zeroui-backup.sh.j2", **context, ledger_database=ledger_database),
    }


def settings(text: str) -> dict:
    return dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith("#"))


def test_postgresql_conf_archives_into_the_clusters_stanza_and_sizes_connections():
    cluster, files = pilot_files()
    conf = settings(files["postgresql.conf"])
    assert conf["archive_mode"] == "on" and conf["archive_timeout"] == "60"
    assert conf["archive_command"] == ("'pgbackrest --config=/etc/postgresql/15/main/pgbackrest.conf "
                                       "--stanza=15-main archive-push %p'")
    assert (conf["max_connections"], conf["superuser_reserved_connections"]) == ("95", "5")


def test_pgbackrest_conf_names_the_repository_retention_and_the_cluster():
    _, files = pilot_files()
    lines = files["pgbackrest.conf"].splitlines()
    assert {"repo1-path=/var/lib/pgbackrest", "repo1-retention-full=2", "[15-main]",
            "pg1-path=/var/lib/postgresql/15/main", "pg1-port=5432"} <= set(lines)


def test_the_schedule_runs_the_backup_script_as_postgres():
    data = copy.deepcopy(BASE)
    data["backup"] = {"full_schedule": "0 2 * * 6", "incremental_schedule": "0 */4 * * *"}
    cluster, files = pilot_files(data)
    jobs = [line for line in files["cron"].splitlines() if line and not line.startswith(("#", "SHELL", "PATH"))]
    assert jobs == ["0 2 * * 6 postgres /etc/postgresql/15/main/zeroui-backup full",
                    "0 */4 * * * postgres /etc/postgresql/15/main/zeroui-backup incr"]
    assert cluster.cron_file == "/etc/cron.d/zeroui-backup-15-main"


@pytest.mark.parametrize("ledger_database", ["zeroui_tenant_pg", None])
def test_the_backup_script_is_valid_shell(ledger_database):
    """sh -n parses it, with and without a receipts ledger on the cluster; only the ledger's cluster anchors
    the chain."""
    _, files = pilot_files(ledger_database=ledger_database)
    script = files["script"]
    proc = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert ("record_receipt_checkpoint" in script) == bool(ledger_database)
    assert "--stanza=15-main" in script and "pg_create_restore_point" in script


def test_the_repository_fact_reads_backup_info():
    fact = BackupRepository()
    assert fact.process([]) == BackupRepositoryInfo(False, 0)
    assert fact.process(["stanza", "0"]) == BackupRepositoryInfo(True, 0)
    assert fact.process(["stanza", "2"]) == BackupRepositoryInfo(True, 2)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_the_repository_fact_counts_full_backups_in_a_backup_info_file(tmp_path):
    info = tmp_path / "backup" / "15-main" / "backup.info"
    info.parent.mkdir(parents=True)
    info.write_text("[backrest]\nbackrest-format=5\n\n[backup:current]\n"
                    '20261128-165652F={"backup-type":"full"}\n'
                    '20261128-165652F_20261128-165834I={"backup-type":"incr"}\n'
                    '20261129-013000F={"backup-type":"full"}\n\n[db]\ndb-id=1\n')
    out = subprocess.run(["sh", "-c", BackupRepository().command(str(tmp_path), "15-main").get_raw_value()],
                         text=True, capture_output=True).stdout.splitlines()
    assert BackupRepository().process(out) == BackupRepositoryInfo(True, 2)


@pytest.mark.parametrize("target,message", [
    ("2026-11-28 10:00", "has no time zone"),
    ("yesterday", "is not an ISO 8601 time"),
])
def test_restore_drill_refuses_a_target_it_cannot_place_in_time(tmp_path, target, message):
    inventory = tmp_path / "pilot.py"
    inventory.write_text(f"workstation = (['@local'], {{'zeroui': {BASE!r}}})\n")
    result = CliRunner().invoke(main, ["restore-drill", str(inventory), "--target", target])
    assert result.exit_code == 2 and message in result.output


def test_the_drill_restores_the_newest_anchored_backup_when_the_latest_has_no_anchor():
    """A backup script stopped between the backup and its anchor leaves a backup without one: the
    drill takes the newest backup that has one, and says so."""
    from zeroui_db.backups import Anchor, Backup, Repository
    from zeroui_db.cli.restore_drill import _plan

    at = datetime(2026, 11, 28, 1, 30, tzinfo=timezone.utc)
    anchored = Backup("20261128-013000F", "full", at, at, 1, 1, Anchor("zeroui-20261128-013000F", at, 3, "ab" * 32))
    stopped = Backup("20261128-013000F_20261129-013000I", "incr", at, at, 1, 1, None)
    args, drilled, what = _plan(Repository((anchored, stopped), None, None), None)
    assert drilled is anchored and "--set=20261128-013000F" in args
    assert "--target=zeroui-20261128-013000F" in args and "20261129-013000I has no anchor" in what
    with pytest.raises(click.ClickException, match="no backup has an anchor"):
        _plan(Repository((stopped,), None, None), None)


@pytest.mark.parametrize("scratch", ["/var/tmp/it's", "/var/tmp/a b", "relative/dir", "/tmp/$(reboot)"])
def test_restore_drill_refuses_a_scratch_directory_that_is_not_a_plain_path(tmp_path, scratch):
    inventory = tmp_path / "pilot.py"
    inventory.write_text(f"workstation = (['@local'], {{'zeroui': {BASE!r}}})\n")
    result = CliRunner().invoke(main, ["restore-drill", str(inventory), "--scratch", scratch])
    assert result.exit_code == 2 and "is not a plain absolute path" in result.output
