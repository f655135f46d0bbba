"""What a plane database holds, as the cutover needs to know it: each table's columns,
primary key, the tables it references, its INSERT triggers, its sequences and size, and
the order to copy them in (parents before children).

Read in one catalog query per database, as the plane's owner (the admin holds nothing in
a plane database itself). The migration ledger is the deploy's, not data: it is compared
in the pre-flight and never copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from .. import ledger
from ..contract import Plane
from ..grants import SCHEMA

# The tenant ledger (sql/schemas/tenant/0001, 0010 and 0011): its append trigger takes the
# table owner's (the keeper's) verbatim rows only when they extend the chain, one row at a time;
# verify_receipt_chain() names the first broken receipt (NULL when the chain is intact), and
# receipts_lock_chain() takes the append lock, as every appender does.
CHAIN_TABLE = "receipts"
CHAIN_CHECK = "verify_receipt_chain"
CHAIN_LOCK = "receipts_lock_chain"

# Tables the services fill without INSERT of their own, through the owner's or the keeper's
# SECURITY DEFINER code (sql/schemas/product/0005, tenant/0011): data like the rest, copied.
WRITTEN_FOR_SERVICES = frozenset({"policy_snapshot_transitions", "receipt_checkpoints"})

# tgtype bit for INSERT (PostgreSQL's TRIGGER_TYPE_INSERT).
_INSERT = 4

# A type whose binary form is the same on every server: one of PostgreSQL's own (made by
# initdb: an OID below FirstGenbkiObjectId, 10000; an extension's type gets a later one, even
# in pg_catalog), but not an object identifier type (regclass, regrole, …), whose binary form
# is the OID of an object of that database where its text is the object's name.
_BUILTIN = "({t}.oid < 10000 AND {t}.typname NOT LIKE 'reg%')"

_QUERY = sql.SQL("""
SELECT c.relname,
  (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod),
                                    {builtin_type} AND (el.oid IS NULL OR {builtin_element})) ORDER BY a.attnum)
   FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid LEFT JOIN pg_type el ON el.oid = ty.typelem
   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
  (SELECT json_agg(json_build_array(a.attname, a.attcollation <> 0) ORDER BY k.n)
   FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, n), pg_attribute a
   WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid AND a.attnum = k.attnum),
  (SELECT coalesce(json_agg(DISTINCT p.relname), '[]') FROM pg_constraint f JOIN pg_class p ON p.oid = f.confrelid
   WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.confrelid <> c.oid),
  (SELECT coalesce(json_agg(json_build_array(t.tgname, t.tgenabled) ORDER BY t.tgname), '[]') FROM pg_trigger t
   WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgtype & {insert} <> 0),
  (SELECT coalesce(json_agg(s.relname ORDER BY s.relname), '[]') FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid
         AND s.relkind = 'S' AND d.deptype IN ('a', 'i')),
  has_table_privilege({app}, c.oid, 'INSERT'),
  CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END,
  pg_table_size(c.oid),
  pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = {schema} AND c.relkind = 'r' AND c.relname <> {ledger}
ORDER BY c.oid
""")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]  # in column order, generated columns left out (COPY cannot write them)
    key: tuple[tuple[str, bool], ...]  # primary key columns, each with whether it has a collation
    parents: tuple[str, ...]  # tables its foreign keys reference (itself excluded)
    insert_triggers: tuple[tuple[str, str], ...]  # user triggers that fire on INSERT: (name, tgenabled)
    sequences: tuple[str, ...]  # sequences its columns own (identity and serial)
    app_inserts: bool  # False: only migrations write it (reference data), so it is compared, never copied
    estimated_rows: int | None  # pg_class.reltuples; None before the first VACUUM or ANALYZE
    size: int  # bytes on disk (pg_table_size)
    owner: str = ""  # the plane's owner, or its evidence keeper (the ledger's tables)
    types: tuple[str, ...] = ()  # each column's type, as format_type() writes it
    binary: bool = True  # every column's type is one whose binary form is the same on every server

    @property
    def copy_format(self) -> str:
        """The COPY format the table's rows travel and are hashed in: binary where every type is
        one of PostgreSQL's own (and not an object identifier: ``_BUILTIN``), else text. Binary
        is cheaper to write and far cheaper to read (no escapes, no hex, no dates parsed); a type
        of the database's own travels as text: in binary, an array or record of it carries its
        OID, which differs between servers."""
        return "binary" if self.binary else "text"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.name)

    @property
    def copied(self) -> bool:
        return self.app_inserts or self.name in WRITTEN_FOR_SERVICES

    @property
    def triggers_to_pause(self) -> tuple[tuple[str, str], ...]:
        """INSERT triggers that would rewrite or refuse a verbatim row (a snapshot that is not a
        draft, an audit row written twice), and the chain's append trigger, which would check
        each receipt against the head one at a time: the copy checks the whole chain once,
        before COMMIT (``holds_chain``)."""
        return tuple((name, mode) for name, mode in self.insert_triggers if mode != "D")

    @property
    def holds_chain(self) -> bool:
        return self.name == CHAIN_TABLE

    def describe(self) -> tuple:
        """What must agree between source and target for the copy to mean the same thing."""
        return self.name, self.columns, self.types, self.key, self.parents, self.sequences


def chain_break(conn: psycopg.Connection) -> int | None:
    """The first broken receipt of the chain on ``conn``'s database (``CHAIN_CHECK``), None
    when it is intact."""
    return conn.execute(sql.SQL("SELECT {}()").format(sql.Identifier(SCHEMA, CHAIN_CHECK))).fetchone()[0]


class NotCopyable(Exception):
    """A schema the cutover cannot copy as it is (one line)."""


def read(conn: psycopg.Connection, plane: Plane) -> list[Table]:
    """The plane's tables, in copy order."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(plane.owner_role)))
        rows = conn.execute(_QUERY.format(insert=sql.Literal(_INSERT), app=sql.Literal(plane.app_role),
                                          schema=sql.Literal(SCHEMA), ledger=sql.Literal(ledger.TABLE),
                                          builtin_type=sql.SQL(_BUILTIN.format(t="ty")),
                                          builtin_element=sql.SQL(_BUILTIN.format(t="el")))).fetchall()
    tables = []
    for name, columns, key, parents, triggers, sequences, app_inserts, estimate, size, owner in rows:
        if not key:
            raise NotCopyable(f"{plane.key}: table {name} has no primary key, so its rows cannot be compared "
                              "one by one; give it one in a migration")
        columns = columns or []
        tables.append(Table(name, tuple(c for c, _, _ in columns), tuple((k, bool(c)) for k, c in key),
                            tuple(parents), tuple((n, m) for n, m in triggers), tuple(sequences), app_inserts,
                            estimate, size, owner, tuple(t for _, t, _ in columns),
                            all(builtin for _, _, builtin in columns)))
    return in_copy_order(tables)


def in_copy_order(tables: list[Table]) -> list[Table]:
    """Parents before the tables that reference them (foreign keys are checked as rows arrive),
    otherwise in the order the migrations created them."""
    by_name = {t.name: t for t in tables}
    done: list[Table] = []
    placed: set[str] = set()
    pending = list(tables)
    while pending:
        ready = [t for t in pending if all(p in placed or p not in by_name for p in t.parents)]
        if not ready:
            names = ", ".join(t.name for t in pending)
            raise NotCopyable(f"tables {names} reference each other in a cycle; the cutover copies a table after "
                              "the tables it references")
        first = ready[0]
        done.append(first)
        placed.add(first.name)
        pending.remove(first)
    return done
