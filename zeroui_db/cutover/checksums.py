"""One digest of a table, computed the same way on both sides: its rows in primary-key order
as COPY writes them (in the table's ``copy_format``: binary wherever it can), counted by COPY
itself and hashed (SHA-256) on the control machine.

Every session pins the settings that change how a value is written (dates, time zones,
intervals, floats, bytea, money, encoding: the text format and the names of differences
depend on them, the binary format on the encoding alone), so one value reads the same on
PostgreSQL 15 and 16, and text keys are ordered byte-wise (``COLLATE "C"``) so both sides
list rows in one order whatever their collation. Hashing on the control machine rather than
in an SQL aggregate: the source gets no function of ours (it stays untouched but for the
freeze), and no side has to build a table-sized string. The copy hashes the very stream it
sends.

When digests differ, :func:`differences` reads both sides again, as text, and names the rows
by key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import zip_longest

import psycopg
from psycopg import sql

from .tables import Table

# Settings that change how a value is written as text; the same on every session of a cutover.
SETTINGS = (
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("client_encoding", "UTF8"),
)
_FLUSH = 1 << 20  # hash in 1 MiB pieces: hashlib then releases the GIL and the per-call cost vanishes


def pin(conn: psycopg.Connection) -> None:
    """Pin the value-text settings for the rest of the session (one round trip)."""
    calls = sql.SQL(", ").join(sql.SQL("set_config({}, {}, false)").format(sql.Literal(k), sql.Literal(v))
                               for k, v in SETTINGS)
    conn.execute(sql.SQL("SELECT {}").format(calls))


def ordered_select(table: Table) -> sql.Composed:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    order = sql.SQL(", ").join(sql.SQL('{} COLLATE "C"').format(sql.Identifier(k)) if collatable
                               else sql.Identifier(k) for k, collatable in table.key)
    return sql.SQL("SELECT {} FROM {} ORDER BY {}").format(columns, table.ident, order)


def copy_out(table: Table, as_text: bool = False) -> sql.Composed:
    """COPY of the table's rows in key order, in its ``copy_format`` (``as_text``: in text)."""
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT {})").format(
        ordered_select(table), sql.SQL("text" if as_text else table.copy_format))


@dataclass(frozen=True)
class Digest:
    rows: int
    bytes: int
    sha256: str

    def as_dict(self) -> dict:
        return asdict(self)


class Digester:
    """Hashes and measures a COPY stream fed in pieces of any size; its rows are COPY's count."""

    def __init__(self):
        self._hash, self._pending = hashlib.sha256(), bytearray()
        self.bytes = 0

    def feed(self, chunk) -> None:
        self._pending += chunk
        if len(self._pending) >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        self.bytes += len(self._pending)
        self._hash.update(self._pending)
        self._pending.clear()

    def digest(self, rows: int) -> Digest:
        """The digest of what was fed, of ``rows`` rows (as the COPY that sent them counted:
        a row's bytes hold no mark of where it ends in the binary format)."""
        self._flush()
        return Digest(rows, self.bytes, self._hash.hexdigest())


def digest(conn: psycopg.Connection, table: Table) -> Digest:
    """The digest of ``table`` on the database of ``conn`` (a pinned session)."""
    digester = Digester()
    with conn.cursor() as cur:
        with cur.copy(copy_out(table)) as copy:
            for chunk in copy:
                digester.feed(chunk)
        return digester.digest(copied_rows(cur))


def copied_rows(cur: psycopg.Cursor) -> int:
    """The rows the COPY just ended on ``cur`` wrote or read, by its command tag."""
    if cur.rowcount < 0:
        raise psycopg.InterfaceError("COPY ended without a row count")
    return cur.rowcount


@dataclass(frozen=True)
class Difference:
    key: str  # e.g. "seq=42" or "connection_id=1, stream=pulls"
    what: str  # "changed: payload", "missing on the target", "only on the target"

    def __str__(self) -> str:
        return f"{self.key}: {self.what}"


def lines(conn: psycopg.Connection, table: Table) -> Iterator[bytes]:
    """The table's rows in digest order, one COPY text line each (without its newline)."""
    with conn.cursor() as cur, cur.copy(copy_out(table, as_text=True)) as copy:
        rest = b""
        for chunk in copy:
            rest += bytes(chunk)
            *complete, rest = rest.split(b"\n")
            yield from complete


def compare(table: Table, source: Iterator[bytes], target: Iterator[bytes],
            limit: int = 10) -> tuple[int, list[Difference]]:
    """(how many rows differ, the first ``limit`` of them by key) between two row streams.

    The streams are walked side by side; a row whose key has not shown up on the other side
    yet waits in a dict until it does, so memory holds only rows out of step (a missing or
    extra row shifts the rest by one), and no Python ordering of PostgreSQL values is needed.
    """
    positions = [table.columns.index(k) for k, _ in table.key]
    waiting: tuple[dict, dict] = ({}, {})
    found: list[Difference] = []
    count = 0

    def key_of(fields: list[bytes]) -> tuple[bytes, ...]:
        return tuple(fields[i] for i in positions)

    def note(difference: Difference) -> None:
        nonlocal count
        count += 1
        if len(found) < limit:
            found.append(difference)

    for pair in zip_longest(source, target):
        for side, line in enumerate(pair):
            if line is None:
                continue
            fields = line.split(b"\t")
            key = key_of(fields)
            other = waiting[1 - side].pop(key, None)
            if other is None:
                waiting[side][key] = fields
                continue
            mine, theirs = (fields, other) if side == 0 else (other, fields)
            if mine != theirs:
                changed = [c for c, a, b in zip(table.columns, mine, theirs) if a != b]
                note(Difference(_key_text(table, key), f"changed: {', '.join(changed)}"))
    for key in waiting[0]:
        note(Difference(_key_text(table, key), "missing on the target"))
    for key in waiting[1]:
        note(Difference(_key_text(table, key), "only on the target"))
    return count, found


def _key_text(table: Table, key: tuple[bytes, ...]) -> str:
    values = ["NULL" if v == rb"\N" else v.decode("utf-8", "replace") for v in key]
    return ", ".join(f"{k}={v}" for (k, _), v in zip(table.key, values))


def differences(source: psycopg.Connection, target: psycopg.Connection, table: Table,
                limit: int = 10) -> tuple[int, list[Difference]]:
    """Read ``table`` on both sides again and name the rows that differ."""
    return compare(table, lines(source, table), lines(target, table), limit)
