"""Copying one table from the source to the target, as the plane's owner on the target (as
its evidence keeper for the ledger's tables).

COPY through psycopg, source to target, one table per transaction: a table is either all
there or not there at all (a kill rolls its transaction back), and the stream that goes
out is hashed on the way (``checksums.Digester``). The rows travel in COPY's binary format
(``Table.copy_format``), so the target parses no escapes, hex or dates (measured on a 1 GB
ledger: the stream alone, into a bare table, 4.4 s instead of 10.5 s in text). Owners and
privileges are not copied: the rows land in tables the deploy made, under its grants.

Rows arrive verbatim, so the INSERT triggers that would rewrite or refuse them (a policy
snapshot that is not a draft, an audit row written a second time) are paused inside the
table's own transaction: ``ALTER TABLE … DISABLE TRIGGER`` takes an ACCESS EXCLUSIVE lock
that is held to COMMIT, and DDL is transactional, so no other session ever sees the table
without them. The receipt chain's append trigger is paused the same way: it would check
each receipt against the head as it arrives (sql/schemas/tenant/0010, 0011), at some 30 µs
a receipt. Instead the copy takes the chain's append lock, as any appender does, and before
COMMIT verifies the whole chain in one query (``verify_receipt_chain()``, every link and
hash): a chain that does not verify is rolled back, so a broken ledger is never committed.
Other sessions never see the trigger paused, and appends by every other role go through it
as before.

The ledger's tables belong to the evidence keeper, which no login role may act as. The
target's admin (a managed service's, which administers the keeper) grants itself the keeper
inside the table's transaction and revokes it before COMMIT, so no other session ever sees
that membership; the session goes back to acting as the owner.

The rows go into an empty table (the pre-flight or the resume checks it) that holds its
table lock to COMMIT, so its secondary indexes and unique constraints are dropped first and
made again from their exact definitions before COMMIT: one sorted build each instead of one
insertion per row and index, as pg_restore does. No other session ever sees the table
without them, and a kill leaves nothing. The primary key stays (the chain is checked along
it), and so does whatever something else depends on (a foreign key's index).
Every copied table goes this way, the small ones too: a few statements of DDL each, and one
path for all, which the tests prove on every table of every plane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from gevent.threadpool import ThreadPoolExecutor
from psycopg import sql
from psycopg.copy import LibpqWriter

from ..grants import SCHEMA
from .checksums import Digest, Digester, copied_rows, copy_out
from .tables import CHAIN_CHECK, CHAIN_LOCK, Table, chain_break

BATCH = 128 * 1024  # bytes per write: psycopg's largest single buffer
_ENABLE = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER"}
# Sort memory for rebuilding the indexes in the copy's transaction (SET LOCAL, and only ever
# raised): a 1 GB ledger's largest index sorts in memory with it.
INDEX_BUILD_MEMORY_KB = 256 * 1024

# The table's indexes that can be dropped and made again from their definitions alone, as
# the session's role, which must own the table: not the primary key; nothing depending on
# them (a foreign key on the unique key), nothing attached to them that the definition does
# not carry (a comment, CLUSTER, REPLICA IDENTITY, a statistics target, a tablespace). Each
# with its constraint (UNIQUE, EXCLUDE), if it backs one, and the definition to make it again.
_REBUILDABLE = sql.SQL("""
SELECT ic.relname, con.conname,
       CASE WHEN con.oid IS NULL THEN pg_get_indexdef(i.indexrelid) ELSE pg_get_constraintdef(con.oid) END
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('u', 'x')
WHERE i.indrelid = {table}::regclass
  AND t.relowner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user)
  AND NOT i.indisprimary AND i.indisvalid AND i.indisready AND NOT i.indisclustered AND NOT i.indisreplident
  AND ic.relkind = 'i' AND ic.reltablespace = 0
  AND (con.oid IS NULL OR con.conname = ic.relname)
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE (d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid)
                                             OR (d.refclassid = 'pg_constraint'::regclass AND d.refobjid = con.oid
                                                 AND d.objid <> i.indexrelid))
  AND NOT EXISTS (SELECT FROM pg_description d WHERE (d.classoid = 'pg_class'::regclass AND d.objoid = i.indexrelid)
                                                  OR (d.classoid = 'pg_constraint'::regclass AND d.objoid = con.oid))
  AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget > 0)
ORDER BY i.indexrelid
""")


class ChainBroken(Exception):
    """The receipts copied do not verify as a chain: the table's copy was rolled back."""


def copy_table(source: psycopg.Connection, target: psycopg.Connection, table: Table,
               on_progress: Callable[[int, int], None] = lambda rows, size: None,
               keeper: str | None = None) -> Digest:
    """Copy ``table`` and its sequences; the digest of what was sent. ``target`` is a session
    acting as the plane's owner, ``source`` one that only reads; ``keeper``: the plane's evidence
    keeper, as which the tables it owns are written; ``on_progress(rows, bytes)``: after each
    batch sent."""
    digester = Digester()
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    with target.transaction(), _acting_as(target, keeper if keeper and table.owner == keeper else None):
        for name, _ in table.triggers_to_pause:
            target.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(table.ident, sql.Identifier(name)))
        rebuild = drop_indexes(target, table)
        if table.holds_chain:
            target.execute(sql.SQL("SELECT {}()").format(sql.Identifier(SCHEMA, CHAIN_LOCK)))
        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(table.ident, columns,
                                                                         sql.SQL(table.copy_format))
        with ThreadPoolExecutor(1) as sender, source.cursor() as out_cur, target.cursor() as in_cur:
            with out_cur.copy(copy_out(table)) as out_copy, \
                    in_cur.copy(copy_in, writer=_SentAside(in_cur, sender)) as in_copy:
                # COPY TO hands over one row at a time: rows are passed on in batches, each
                # sent on a thread of its own while this one reads and hashes the next. In
                # binary, the stream's header comes with the first row and its trailer is
                # one more message (with the header, when there is no row): one less row.
                batch, rows = bytearray(), -1 if table.binary else 0
                for row in out_copy:
                    batch += row
                    rows += 1
                    if len(batch) >= BATCH:
                        _send(bytes(batch), rows, in_copy, digester, on_progress)
                        batch.clear()
                        rows = 0
                if batch:
                    _send(bytes(batch), rows, in_copy, digester, on_progress)
            sent = digester.digest(copied_rows(out_cur))
        rebuild_indexes(target, rebuild)
        if table.holds_chain:
            broken = chain_break(target)
            if broken is not None:
                raise ChainBroken(f"the receipts sent do not form an intact chain: {CHAIN_CHECK}() breaks at "
                                  f"seq {broken}")
        for name, mode in table.triggers_to_pause:
            target.execute(sql.SQL("ALTER TABLE {} {} {}").format(table.ident, sql.SQL(_ENABLE[mode]),
                                                                   sql.Identifier(name)))
        carry_sequences(source, target, table)
    return sent


def drop_indexes(target: psycopg.Connection, table: Table) -> list[sql.Composable]:
    """Inside the copy's transaction, as the table's owner: drop the table's rebuildable indexes
    and unique constraints; the statements that make them again, as they were."""
    rebuild = []
    for index, constraint, definition in target.execute(_REBUILDABLE.format(table=sql.Literal(
            table.ident.as_string(target)))).fetchall():
        if constraint is None:
            target.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(SCHEMA, index)))
            rebuild.append(sql.SQL(definition))
        else:
            target.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table.ident,
                                                                                sql.Identifier(constraint)))
            rebuild.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(table.ident, sql.Identifier(constraint))
                           + sql.SQL(definition))
    return rebuild


def rebuild_indexes(target: psycopg.Connection, statements: list[sql.Composable]) -> None:
    """Make the dropped indexes and constraints again (before COMMIT), with more sort memory."""
    if not statements:
        return
    current = int(target.execute("SELECT setting FROM pg_settings WHERE name = 'maintenance_work_mem'").fetchone()[0])
    if current < INDEX_BUILD_MEMORY_KB:
        target.execute("SELECT set_config('maintenance_work_mem', %s, true)", [f"{INDEX_BUILD_MEMORY_KB}kB"])
    for statement in statements:
        target.execute(statement)


class _SentAside(LibpqWriter):
    """Writes each batch on a native thread (``sender``), one batch in flight: the source is
    read while the target is written. Native, not Python's threading: the ``zeroui-db``
    command has gevent's monkey-patching (pyinfra's command line does it as it loads an
    inventory), under which a thread is a greenlet, and psycopg blocking in libpq would stop
    the reader too (psycopg's QueuedLibpqWriter then sends in bursts, the reader idle)."""

    def __init__(self, cursor: psycopg.Cursor, sender: ThreadPoolExecutor):
        super().__init__(cursor)
        self._sender, self._in_flight = sender, None

    def write(self, data) -> None:
        self._wait()
        self._in_flight = self._sender.submit(super().write, data)

    def finish(self, exc: BaseException | None = None) -> None:
        try:
            self._wait()
        except BaseException as e:  # noqa: BLE001 - ended with this error instead
            exc = exc or e
            raise
        finally:
            super().finish(exc)

    def _wait(self) -> None:
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            pending.result()


@contextmanager
def _acting_as(target: psycopg.Connection, keeper: str | None) -> Iterator[None]:
    """Inside the open transaction: act as ``keeper`` (granted to the admin for this transaction
    only), then as the role the session acted as before."""
    if keeper is None:
        yield
        return
    role = sql.Identifier(keeper)
    before = sql.Identifier(target.execute("SELECT current_user").fetchone()[0])
    grant = sql.SQL("GRANT {} TO CURRENT_USER").format(role)
    if target.info.server_version >= 160000:
        grant += sql.SQL(" WITH INHERIT FALSE, SET TRUE")
    target.execute("RESET ROLE")  # as the admin, which administers the keeper
    target.execute(grant)
    target.execute(sql.SQL("SET LOCAL ROLE {}").format(role))
    yield
    target.execute("RESET ROLE")
    target.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(role))
    target.execute(sql.SQL("SET ROLE {}").format(before))


def _send(data: bytes, rows: int, copy, digester: Digester, on_progress) -> None:
    copy.write(data)
    digester.feed(data)
    on_progress(rows, len(data))


def sequence_states(conn: psycopg.Connection, table: Table) -> dict[str, tuple[int, bool]]:
    """Each sequence of ``table``: (last_value, is_called), as nextval() will continue from it."""
    out = {}
    for name in table.sequences:
        ident = sql.Identifier(SCHEMA, name)
        out[name] = tuple(conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone())
    return out


def carry_sequences(source: psycopg.Connection, target: psycopg.Connection, table: Table) -> None:
    """Identity and serial values continue on the target where they stopped on the source."""
    for name, (last_value, is_called) in sequence_states(source, table).items():
        ident = sql.Identifier(SCHEMA, name)
        target.execute("SELECT setval(%s::regclass, %s, %s)", [ident.as_string(), last_value, is_called])


def holds_rows(conn: psycopg.Connection, table: Table) -> bool:
    return conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(table.ident)).fetchone()[0]
