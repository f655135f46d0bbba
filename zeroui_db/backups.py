"""The pilot's backups as pgBackRest keeps them: the command line for a cluster's stanza, and
its backups with their anchors, read from ``pgbackrest info --output=json``.

An anchor is what ``zeroui-backup`` (templates/zeroui-backup.sh.j2) records in a backup's
annotation once the backup is done: a restore point, and the receipts chain's head at that
very moment (seq and content hash). It lies in the repository, outside the database, so a
ledger cut or rewritten after the backup still shows against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from .layout import ClusterLayout

# Annotation keys written by the backup script.
RESTORE_POINT, ANCHORED_AT = "zeroui-restore-point", "zeroui-anchored-at"
RECEIPTS_SEQ, RECEIPTS_HASH = "zeroui-receipts-seq", "zeroui-receipts-hash"


def pgbackrest(cluster: ClusterLayout, *args: str) -> tuple[str, ...]:
    """argv of pgBackRest for the cluster's stanza (run as postgres)."""
    return ("pgbackrest", f"--config={cluster.pgbackrest_conf}", f"--stanza={cluster.stanza}", *args)


@dataclass(frozen=True)
class Anchor:
    restore_point: str
    at: datetime
    receipts_seq: int | None  # None: no receipts ledger on the cluster
    receipts_hash: str | None  # hex; None also for an empty chain (seq 0)


@dataclass(frozen=True)
class Backup:
    label: str
    type: str  # full, diff, incr
    started: datetime
    stopped: datetime
    size: int  # bytes of the cluster
    repo_size: int  # bytes this backup adds to the repository
    anchor: Anchor | None  # None: the backup script did not finish (or pgBackRest was run by hand)


@dataclass(frozen=True)
class Repository:
    backups: tuple[Backup, ...]  # oldest first
    archive_min: str | None  # oldest and newest WAL segment in the archive
    archive_max: str | None

    @property
    def latest(self) -> Backup | None:
        return self.backups[-1] if self.backups else None

    def count(self, kind: str) -> int:
        return sum(b.type == kind for b in self.backups)


def _time(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _anchor(annotation: dict) -> Anchor | None:
    if RESTORE_POINT not in annotation or ANCHORED_AT not in annotation:
        return None
    seq = annotation.get(RECEIPTS_SEQ)
    return Anchor(annotation[RESTORE_POINT], datetime.fromisoformat(annotation[ANCHORED_AT].replace("Z", "+00:00")),
                  int(seq) if seq not in (None, "") else None, annotation.get(RECEIPTS_HASH) or None)


def parse_info(text: str) -> Repository:
    """The stanza's backups from ``pgbackrest info --output=json`` (a list with one stanza)."""
    stanzas = json.loads(text)
    if not stanzas:
        return Repository((), None, None)
    stanza = stanzas[0]
    backups = tuple(
        Backup(b["label"], b["type"], _time(b["timestamp"]["start"]), _time(b["timestamp"]["stop"]),
               b["info"]["size"], b["info"]["repository"]["delta"], _anchor(b.get("annotation") or {}))
        for b in stanza.get("backup", []))
    archives = stanza.get("archive") or [{}]
    return Repository(backups, archives[-1].get("min"), archives[-1].get("max"))


def size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
