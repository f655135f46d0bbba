"""The cutover's record on the control machine: which planes are frozen, how far the copy
got, and whether the switch happened.

One JSON file per source site beside its secrets store (``<site>-cutover.json``, mode 0600,
written whole and renamed into place so that a kill leaves the old record or the new one).
A rerun reads it to resume, ``--rollback`` to lift the freeze, and the deploy to refuse to
undo a freeze: a deploy of the source would give its app roles LOGIN again.

A plane is recorded *before* each step acts (``frozen`` before the freeze runs), so a kill
at any point leaves a record that errs toward "frozen", which a rollback can always lift.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = "zeroui-db-cutover/1"

# A plane's steps, in order. Every one but ROLLED_BACK means its source is (or may be) frozen.
FROZEN, COPIED, VERIFIED, SWITCHED, ROLLED_BACK = "frozen", "copied", "verified", "switched", "rolled_back"
HOLDS_FREEZE = (FROZEN, COPIED, VERIFIED, SWITCHED)
# A table's copy: started (its transaction may or may not have committed) or committed.
COPYING, DONE = "copying", "done"


def path_for(directory: Path, source_site: str) -> Path:
    return Path(directory) / f"{source_site}-cutover.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CutoverState:
    """The record of one cutover from ``source`` to ``target``; ``save()`` after each change."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    @classmethod
    def load(cls, directory: Path, source_site: str) -> CutoverState | None:
        path = path_for(directory, source_site)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{path}: not a cutover record of schema {SCHEMA}")
        return cls(path, data)

    @classmethod
    def new(cls, directory: Path, source_site: str, target_site: str, planes: list[str]) -> CutoverState:
        data = {"schema": SCHEMA, "source": source_site, "target": target_site, "started": now(), "order": planes,
                "planes": {p: {"status": None, "tables": {}} for p in planes}}
        return cls(path_for(directory, source_site), data)

    @property
    def source(self) -> str:
        return self.data["source"]

    @property
    def target(self) -> str:
        return self.data["target"]

    @property
    def planes(self) -> list[str]:
        """The planes of this cutover, in the order they move."""
        return list(self.data["order"])

    def plane(self, key: str) -> dict:
        return self.data["planes"][key]

    def status(self, key: str) -> str | None:
        return self.plane(key)["status"]

    def begin(self, key: str) -> None:
        """Freeze ``key`` for a copy from the start: what an earlier attempt, rolled back, recorded
        of its tables no longer holds (the target was emptied to be refilled)."""
        self.plane(key)["tables"] = {}
        self.set_status(key, FROZEN)

    def set_status(self, key: str, status: str) -> None:
        plane = self.plane(key)
        plane["status"] = status
        plane[f"{status}_at"] = now()
        self.save()

    @property
    def active(self) -> bool:
        """Whether a plane still holds (or may hold) its source frozen."""
        return any(self.status(p) in HOLDS_FREEZE for p in self.planes)

    @property
    def finished(self) -> bool:
        """Every plane switched or rolled back: a new cutover may start."""
        return all(self.status(p) in (SWITCHED, ROLLED_BACK) for p in self.planes)

    def table(self, plane: str, table: str) -> dict:
        return self.plane(plane)["tables"].setdefault(table, {"status": None})

    def record_table(self, plane: str, table: str, **values) -> None:
        """Record a table's copy as ``values``, replacing what was recorded of it: nothing an
        earlier copy noted (its digest, a chain it verified) outlives it."""
        self.plane(plane)["tables"][table] = dict(values)
        self.save()

    def save(self) -> None:
        # Write-then-rename in the same directory (0700, as the secrets store keeps it): a
        # kill leaves the old record or the new one, never half of one.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-cutover-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def deploy_refusal(directory: Path, site: str) -> tuple[str, str] | None:
    """(problem, fix) when a deploy of ``site`` must not run because a cutover holds its planes
    frozen: the deploy would give their app roles LOGIN again, and services could write to a
    copy that is no longer (or soon not) the one in use."""
    path = path_for(directory, site)
    try:
        record = CutoverState.load(directory, site)
    except (ValueError, json.JSONDecodeError):
        return (f"{path} is unreadable, and it may record a freeze",
                "restore it, or move it away after checking the planes")
    if record is None or not record.active:
        return None
    held = [p for p in record.planes if record.status(p) in HOLDS_FREEZE]
    if all(record.status(p) == SWITCHED for p in held):
        return (f"planes {', '.join(held)} were cut over to site {record.target} ({path}), so the source stays frozen",
                f"deploy the {record.target} inventory instead; to bring this site back, move {path.name} away first")
    return (f"planes {', '.join(held)} are frozen for the cutover to site {record.target} ({path})",
            "finish it (zeroui-db cutover) or lift the freeze (zeroui-db cutover --rollback), then deploy")
