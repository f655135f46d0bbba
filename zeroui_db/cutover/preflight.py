"""What must hold before a cutover changes anything, read from both sides, and the plan.

Reading is :func:`read_facts` (one plane database, as its owner); judging is pure
(:func:`problems`, :func:`warnings`), so every refusal is unit-tested without servers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql

from .. import ledger
from ..contract import Plane
from .tables import Table, read

_DATABASE = """
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       (SELECT coalesce(json_object_agg(extname, extversion), '{}') FROM pg_extension)
FROM pg_database d WHERE d.datname = current_database()
"""


@dataclass
class DatabaseFacts:
    address: str  # host:port/database, for messages
    version: str  # server_version, e.g. "15.10 (Debian 15.10-1)"
    version_num: int  # server_version_num, e.g. 150010
    encoding: str
    collate: str
    ctype: str
    extensions: dict[str, str]  # name -> version
    migrations: dict[str, str]  # the migration ledger: file -> checksum
    tables: list[Table]
    filled: list[str] = field(default_factory=list)  # copied tables that hold rows (read on the target)

    @property
    def major(self) -> int:
        return self.version_num // 10000

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def read_facts(conn: psycopg.Connection, plane: Plane, address: str, filled: bool = False) -> DatabaseFacts:
    """One plane database as its owner sees it; ``filled``: also which copied tables hold rows."""
    version, version_num, encoding, collate, ctype, extensions = conn.execute(_DATABASE).fetchone()
    tables = _counted(conn, plane, read(conn, plane))
    facts = DatabaseFacts(address, version, version_num, encoding, collate, ctype, extensions,
                          ledger.applied(conn, plane), tables)
    copied = [t for t in tables if t.copied]
    if filled and copied:
        probes = sql.SQL(", ").join(sql.SQL("EXISTS (SELECT FROM {})").format(t.ident) for t in copied)
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(plane.owner_role)))
            holds = conn.execute(sql.SQL("SELECT {}").format(probes)).fetchone()
        facts.filled = [t.name for t, full in zip(copied, holds) if full]
    return facts


def _counted(conn: psycopg.Connection, plane: Plane, tables: list[Table]) -> list[Table]:
    """Count the rows of tables PostgreSQL has no estimate for yet (never vacuumed or analyzed)."""
    unknown = [t for t in tables if t.estimated_rows is None]
    if not unknown:
        return tables
    counts = sql.SQL(", ").join(sql.SQL("(SELECT count(*) FROM {})").format(t.ident) for t in unknown)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(plane.owner_role)))
        found = dict(zip((t.name for t in unknown), conn.execute(sql.SQL("SELECT {}").format(counts)).fetchone()))
    return [replace(t, estimated_rows=found[t.name]) if t.name in found else t for t in tables]


def problems(plane: Plane, source: DatabaseFacts, target: DatabaseFacts, resuming: bool) -> list[str]:
    """Why ``plane`` cannot be copied from ``source`` to ``target``: one line each."""
    out = []
    p = plane.key
    if target.major < source.major:
        out.append(f"{p}: the target runs PostgreSQL {target.major}, older than the source's {source.major}; "
                   "a cutover moves to the same major or a newer one")
    if target.encoding != source.encoding:
        out.append(f"{p}: the target's encoding is {target.encoding}, the source's {source.encoding}; "
                   f"create {target.address} with encoding {source.encoding}")
    missing = sorted(set(source.extensions) - set(target.extensions))
    if missing:
        out.append(f"{p}: extensions {', '.join(missing)} are installed on the source but not on the target; "
                   "install them there first")
    only_source = sorted(set(source.migrations) - set(target.migrations))
    only_target = sorted(set(target.migrations) - set(source.migrations))
    changed = sorted(f for f in set(source.migrations) & set(target.migrations)
                     if source.migrations[f] != target.migrations[f])
    for files, where in ((only_source, "only on the source"), (only_target, "only on the target"),
                         (changed, "with other checksums on each side")):
        if files:
            out.append(f"{p}: migrations {', '.join(files)} are applied {where}; deploy both sites with the same "
                       "release, so the two ledgers are identical")
    if not (only_source or only_target or changed):
        mine = {t.name: t.describe() for t in source.tables}
        theirs = {t.name: t.describe() for t in target.tables}
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                where = "the source" if name not in theirs else "the target" if name not in mine else "both sides"
                out.append(f"{p}: table {name} differs between the two databases ({where}) although their ledgers "
                           "agree; a table was made or changed by hand")
    if target.filled and not resuming:
        out.append(f"{p}: the target already holds rows in {', '.join(target.filled)} ({target.address}); "
                   "a cutover copies into empty databases only (drop and deploy them again, or point --to elsewhere)")
    return out


def warnings(plane: Plane, source: DatabaseFacts, target: DatabaseFacts) -> list[str]:
    """What differs without stopping the cutover, for the operator to know."""
    out = []
    if (source.collate, source.ctype) != (target.collate, target.ctype):
        out.append(f"{plane.key}: text sorts by {source.collate} on the source and {target.collate} on the target: "
                   "the rows arrive unchanged, but ORDER BY on text may list them in another order")
    return out


def describe(plane: Plane, source: DatabaseFacts, target: DatabaseFacts) -> list[str]:
    """The plan of one plane, for people."""
    copied = [t for t in source.tables if t.copied]
    rows = sum(t.estimated_rows or 0 for t in copied)
    size = sum(t.size for t in copied)
    lines = [
        f"{plane.key}: {source.address} (PostgreSQL {source.major}, {source.encoding}, {source.collate})",
        f"  -> {target.address} (PostgreSQL {target.major}, {target.encoding}, {target.collate})",
        f"  {len(copied)} tables, about {rows:,} rows, {_size(size)}; "
        f"{len(source.migrations)} migrations on both sides",
    ]
    for t in copied:
        paused = ", ".join(n for n, _ in t.triggers_to_pause)
        triggers = f"; paused in its copy: {paused}" if paused else ""
        if t.holds_chain:
            triggers += ", the whole chain verified before COMMIT"
        lines.append(f"    {t.name}: about {t.estimated_rows:,} rows, {_size(t.size)}{triggers}")
    reference = [t.name for t in source.tables if not t.copied]
    if reference:
        lines.append(f"  written by migrations only (compared, not copied): {', '.join(reference)}")
    return lines


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"
