"""``zeroui-db restore-drill INVENTORY [--target TIME]``: restore the pilot's backups into a
scratch cluster of the drill's own, check it, and remove it (also when anything fails).

Without ``--target`` the latest backup is restored to its anchor's restore point, the moment
the backup script recorded the receipts chain's head; the restored head must equal it. With
``--target`` the cluster is restored to that moment (point-in-time recovery from the newest
backup before it and the archived WAL). Either way the drill checks:

* ``pg_amcheck --all --heapallindexed``: tables and indexes of every database are sound;
* each plane database's migration ledger: every applied file is one of the bundle's, with
  its checksum;
* the receipts chain: intact (``verify_receipt_chain()``), every checkpoint in the restored
  database holds, every backup anchor recorded before the target holds, and no receipt is
  younger than the target.

The scratch cluster is a directory ``zeroui-drill-<random>`` under ``--scratch`` on the
workstation, run by the postgres OS user with pg_ctl. It listens on no TCP port, only on a
unix socket in its own directory, and archives nothing: it cannot meet the cluster it was
restored from, its clients or its WAL archive.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import click
from psycopg import sql

from .. import backups, evidence, ledger, schemas
from ..backups import Backup
from ..config import UNSAFE_PATH_CHAR_RE
from ..privilege import SUPERUSER_ENV
from .workstation import Workstation, workstation

DRILL_PREFIX = "zeroui-drill-"
RECOVERY_TIMEOUT = 3600  # seconds pg_ctl and the promotion may take


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, good: str, bad: str) -> None:
        (self.checked if ok else self.failed).append(good if ok else bad)
        click.echo(f"  {'checked' if ok else 'FAILED'}: {good if ok else bad}")


def _utc(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time, e.g. 2026-11-28T10:15:00+00:00") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no time zone: add one, e.g. +00:00 or Z")
    return moment


def _plain_path(value: str) -> str:
    """--scratch goes into the scratch cluster's postgresql.conf and its shell commands: an
    absolute path without quotes, whitespace or shell characters, as the inventory's paths."""
    if not value.startswith("/") or UNSAFE_PATH_CHAR_RE.search(value):
        raise click.BadParameter(f"{value!r} is not a plain absolute path: write one without quotes, spaces or "
                                 "shell characters")
    return value


class ScratchCluster:
    """A cluster restored from the repository into a directory of its own, on the workstation."""

    def __init__(self, ws: Workstation, parent: str, name: str | None = None):
        self.ws = ws
        self.dir = f"{parent.rstrip('/')}/{name or DRILL_PREFIX + secrets.token_hex(4)}"
        self.data = f"{self.dir}/data"
        self.port = ws.cluster.port  # only names the socket file, which lies in self.dir
        self.pg_ctl = f"{ws.cluster.bin_dir}/pg_ctl"

    def restore(self, restore_args: list[str]) -> None:
        self.ws.run("mkdir", "-m", "700", self.dir, what=f"making {self.dir}")
        self.ws.run(*backups.pgbackrest(self.ws.cluster, "restore", f"--pg1-path={self.data}", *restore_args,
                                        "--target-action=promote", "--archive-mode=off", "--log-level-console=warn"),
                    what="pgbackrest restore")
        # Debian keeps postgresql.conf and pg_hba.conf outside the data directory: the drill's own.
        conf = (f"listen_addresses = ''\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                f"hba_file = '{self.dir}/pg_hba.conf'\nident_file = '{self.dir}/pg_ident.conf'\n"
                "archive_mode = off\nhot_standby = off\nmax_connections = 20\nshared_buffers = 64MB\n"
                "ssl = off\nlc_messages = 'C'\n")
        files = ((f"{self.data}/postgresql.conf", conf), (f"{self.dir}/pg_hba.conf", "local all postgres peer\n"),
                 (f"{self.dir}/pg_ident.conf", ""))
        for path, text in files:
            self.ws.run("sh", "-c", 'cat > "$1"', "sh", path, stdin=text, what=f"writing {path}")

    def start(self) -> None:
        """Start it and wait until recovery has reached its target and the cluster is promoted."""
        ok, _, _ = self.ws.run(self.pg_ctl, "-D", self.data, "-l", f"{self.dir}/server.log", "-w",
                               "-t", str(RECOVERY_TIMEOUT), "start", check=False)
        wait = ('for i in $(seq $((5 * $4))); do '
                'r=$(psql -XAtq -h "$1" -p "$2" -d postgres -c "SELECT pg_is_in_recovery()" 2>/dev/null) '
                '&& [ "$r" = f ] && exit 0; '
                '"$5" -D "$3" status >/dev/null || exit 1; sleep 0.2; done; exit 1')
        if ok:
            ok, _, _ = self.ws.run("sh", "-c", wait, "sh", self.dir, str(self.port), self.data, str(RECOVERY_TIMEOUT),
                                   self.pg_ctl, check=False)
        if not ok:
            _, log, _ = self.ws.run("tail", "-n", "15", f"{self.dir}/server.log", check=False)
            raise click.ClickException(f"the restored cluster did not come up:\n{log.strip()}")

    def query(self, dbname: str, query: str | sql.Composable):
        """One JSON value from a query as the superuser of the scratch cluster."""
        text = query.as_string() if isinstance(query, sql.Composable) else query
        _, out, _ = self.ws.run("env", SUPERUSER_ENV, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-p", str(self.port),
                                "-d", dbname, "-c", text, what=f"a query in {dbname}")
        return json.loads(out) if out.strip() else None

    def remove(self) -> None:
        """Stop it (no need to be gentle with a copy) and remove its directory."""
        self.ws.run(self.pg_ctl, "-D", self.data, "stop", "-m", "immediate", check=False)
        self.ws.run("rm", "-rf", "--one-file-system", self.dir, check=False)
        ok, _, _ = self.ws.run("test", "!", "-e", self.dir, check=False)
        if not ok:
            raise click.ClickException(f"could not remove the scratch cluster {self.dir}")


def _remove_leftovers(ws: Workstation, parent: str) -> None:
    """Stop and remove the clusters of drills that were killed before they could (kill -9, a lost
    SSH link): each is a running copy of the pilot's data. One drill at a time per workstation."""
    _, out, _ = ws.run("sh", "-c", 'for d in "$1"/' + DRILL_PREFIX + '*; do [ -d "$d" ] && echo "${d##*/}"; done; true',
                       "sh", parent.rstrip("/"), what=f"listing {parent}")
    for name in out.split():
        cluster = ScratchCluster(ws, parent, name)
        cluster.remove()
        click.echo(f"  removed {cluster.dir}, left by an interrupted drill")


def _plan(repo: backups.Repository, target: datetime | None) -> tuple[list[str], Backup | None, str]:
    """pgBackRest restore arguments, the backup whose anchor the head must equal, and what is drilled."""
    if target is None:
        # A backup whose script was stopped before the anchor has none: the drill takes the newest
        # that has one (and says so), since only an anchor tells what the head must be.
        anchored = [b for b in repo.backups if b.anchor is not None]
        if not anchored:
            raise click.ClickException(
                f"no backup has an anchor yet (the latest, {repo.latest.label}, was stopped before its script "
                "finished): run zeroui-db backup, then the drill")
        latest = anchored[-1]
        skipped = "" if latest is repo.latest else f"; the newer {repo.latest.label} has no anchor (its script was stopped)"
        return ([f"--set={latest.label}", "--type=name", f"--target={latest.anchor.restore_point}"], latest,
                f"backup {latest.label} ({latest.type}) to its restore point {latest.anchor.restore_point}{skipped}")
    if target < repo.backups[0].stopped:
        raise click.ClickException(f"{target.isoformat()} is before the oldest backup's end "
                                   f"({repo.backups[0].stopped.isoformat()}): nothing to restore it from")
    if target > datetime.now(timezone.utc):
        raise click.ClickException(f"{target.isoformat()} is still to come: give a moment that has passed")
    return ["--type=time", f"--target={_utc(target)}"], None, f"the moment {target.isoformat()}"


def _reach(ws: Workstation) -> None:
    """Make a past moment reachable by point-in-time recovery. Recovery to a time stops at the
    first commit after it, and fails if the archive holds none (a quiet cluster, or a moment in
    the segment not yet archived). So commit an empty transaction on the live cluster (it writes
    a commit record, timestamped now, and changes no data) and let pgBackRest's check switch
    the WAL segment and wait until it is archived."""
    ws.run("env", SUPERUSER_ENV, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(ws.cluster.port), "-d", "postgres",
           "-c", "SELECT pg_current_xact_id()", what="a commit after the target on the live cluster")
    ws.run(*backups.pgbackrest(ws.cluster, "check", "--log-level-console=error"), what="pgbackrest check")


def _check(scratch: ScratchCluster, ws: Workstation, repo: backups.Repository, anchored: Backup | None,
           target: datetime | None, report: Report) -> None:
    amcheck = f"{ws.cluster.bin_dir}/pg_amcheck"
    ok, out, err = ws.run(amcheck, "-h", scratch.dir, "-p", str(scratch.port), "--all", "--install-missing",
                          "--heapallindexed", check=False)
    databases = scratch.query("postgres", "SELECT json_agg(datname ORDER BY datname) FROM pg_database "
                                          "WHERE datallowconn AND datname <> 'template1'")
    report.check(ok, f"pg_amcheck --all --heapallindexed: no corruption in {len(databases)} databases",
                 f"pg_amcheck found problems: {(out + err).strip()[-1500:]}")

    for endpoint in ws.site.endpoints.values():
        if not endpoint.workstation:
            continue
        db, plane = endpoint.database, endpoint.plane
        if db not in databases:
            report.check(False, "", f"{db} is missing from the restored cluster")
            continue
        rows = scratch.query(db, sql.SQL("SELECT coalesce(json_agg(json_build_array(filename, checksum)), '[]') "
                                         "FROM {}").format(sql.Identifier("public", ledger.TABLE))) or []
        files = {m.name: m.checksum for m in schemas.migrations(plane)}
        unknown = [name for name, checksum in rows if files.get(name) != checksum]
        report.check(not unknown and rows, f"{db}: migration ledger of {len(rows)} files, each one of the bundle's "
                     f"with its checksum ({len(files)} in the bundle)",
                     f"{db}: migration ledger {'is empty' if not rows else 'holds unknown or changed files: '}"
                     f"{', '.join(unknown)}")
        if plane.keeps_evidence:
            _check_chain(scratch, db, repo, anchored, target, report)


def _check_chain(scratch: ScratchCluster, db: str, repo: backups.Repository, anchored: Backup | None,
                 target: datetime | None, report: Report) -> None:
    # Every anchor recorded before what was restored must hold in the restored chain.
    anchors = [b for b in repo.backups if b.anchor and b.anchor.receipts_seq is not None
               and (b.anchor.at <= target if target else b.anchor.at <= anchored.anchor.at)]
    chain = evidence.chain_state(scratch.query(db, evidence.chain_state_query(
        sorted({b.anchor.receipts_seq for b in anchors}))))
    head = f"seq {chain.head_seq} {chain.head_hash or '(empty)'}"
    report.check(chain.broken_at is None, f"receipts chain intact: {chain.receipts} receipts, head {head}",
                 f"receipts chain broken at seq {chain.broken_at}")
    report.check(chain.checkpoint_broken is None, f"all {chain.checkpoints} checkpoints in the database hold",
                 f"checkpoint {chain.checkpoint_broken} in the database does not hold")
    lost = [b.label for b in anchors if not chain.holds(b.anchor.receipts_seq, b.anchor.receipts_hash)]
    report.check(not lost, f"all {len(anchors)} backup anchors up to then hold",
                 f"anchors of backups {', '.join(lost)} do not hold (receipts missing or changed)")
    if anchored is not None:
        want = anchored.anchor
        same = (chain.head_seq, chain.head_hash) == (want.receipts_seq, want.receipts_hash)
        report.check(same, f"head equals the head anchored at backup time (seq {want.receipts_seq})",
                     f"head {head} differs from the head anchored at backup time "
                     f"(seq {want.receipts_seq} {want.receipts_hash or '(empty)'})")
    if target is not None:
        last = datetime.fromisoformat(chain.last_recorded_at.replace("Z", "+00:00")) if chain.last_recorded_at else None
        report.check(last is None or last <= target,
                     f"no receipt younger than the target (last recorded {chain.last_recorded_at or '-'})",
                     f"receipt recorded at {chain.last_recorded_at}, after the target")


@click.command("restore-drill")
@click.argument("inventory", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", help="Restore to this moment (ISO 8601 with a time zone) instead of the latest backup.")
@click.option("--scratch", default="/var/lib/postgresql", show_default=True, callback=lambda _c, _p, v: _plain_path(v),
              help="Directory on the workstation, writable by postgres, for the drill's own cluster.")
def restore_drill(inventory: str, target: str | None, scratch: str) -> None:
    """Restore the pilot's latest backup (or a moment, --target) into a scratch cluster, check it,
    remove it, and print what was checked and how long it took."""
    moment = _moment(target) if target else None
    start = time.monotonic()
    report = Report()
    with workstation(inventory) as ws:
        _, info, _ = ws.run(*backups.pgbackrest(ws.cluster, "info", "--output=json"), what="pgbackrest info")
        repo = backups.parse_info(info)
        if not repo.backups:
            raise click.ClickException(f"stanza {ws.cluster.stanza} holds no backup yet: run zeroui-db backup")
        restore_args, anchored, what = _plan(repo, moment)
        if moment is not None:
            _reach(ws)
        click.echo(f"restore drill of cluster {ws.cluster.version}/{ws.cluster.name} (stanza {ws.cluster.stanza}): "
                   f"{what}")
        _remove_leftovers(ws, scratch)
        cluster = ScratchCluster(ws, scratch)
        timings = {}
        # SIGTERM (a timeout, a service manager) ends the drill through its cleanup, as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            t = time.monotonic()
            cluster.restore(restore_args)
            timings["restore"] = time.monotonic() - t
            click.echo(f"  restored into {cluster.dir} (no TCP port) in {timings['restore']:.1f} s")
            t = time.monotonic()
            cluster.start()
            timings["recovery"] = time.monotonic() - t
            click.echo(f"  recovered and promoted in {timings['recovery']:.1f} s")
            t = time.monotonic()
            _check(cluster, ws, repo, anchored, moment, report)
            timings["checks"] = time.monotonic() - t
        finally:
            cluster.remove()
            click.echo(f"  removed {cluster.dir}")
    summary = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    click.echo(f"took {time.monotonic() - start:.1f} s ({summary})")
    if report.failed:
        raise click.ClickException(f"restore drill failed: {len(report.failed)} of "
                                   f"{len(report.failed) + len(report.checked)} checks")
