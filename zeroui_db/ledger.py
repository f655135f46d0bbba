"""The migration ledger of each plane database: which files were applied, with what
checksum, when and by whom, and the runner that applies the rest.

Why not a migration library: yoyo-migrations (psycopg 3 and SQLite) records applied
migrations by id only, so an applied file that was edited later goes unnoticed, which is
the one thing the contract's "schemas never change" needs caught; alembic and others are
tied to an ORM or a CLI of their own. The ledger below is one table and a few queries.

PostgreSQL: each migration runs in one transaction as the plane's owner role (``SET LOCAL
ROLE``), under a transaction-scoped advisory lock, so objects belong to the owner, reach
the app and read-only roles through default privileges, and two deploys at once apply
each file exactly once. A no-op check is one query per database.

A file that names the evidence keeper (``:"keeper_role"``) works on the evidence ledger,
which the owner cannot touch: for that migration alone the owner is made a member of the
keeper. Where the deploy's admin may grant that itself (a managed service's admin holds
ADMIN on the roles it created) the grant and its revocation are part of the migration's
own transaction, so no other session ever sees them; on the pilot the local superuser
grants it around the migration (see ``operations/schemas.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import psycopg
from psycopg import sql
from pyinfra.api.exceptions import OperationError

from . import sqlite_ledger
from .contract import Plane
from .schemas import Migration

# One ledger table name for both engines; sqlite_ledger holds it because that module
# travels to laptops alone and can import nothing of ours.
TABLE = sqlite_ledger.TABLE
# One advisory lock key for all ZeroUI migrations, derived rather than picked by hand.
LOCK_KEY = int.from_bytes(hashlib.sha256(TABLE.encode()).digest()[:8], "big", signed=True)
# Role names in schema files are written as psql variables and filled in per plane, so
# the files never spell a role name (those come from the contract module).
VARIABLES = {':"app_role"': "app_role", ':"readonly_role"': "readonly_role", ':"owner_role"': "owner_role",
             ':"keeper_role"': "keeper_role"}
KEEPER = ':"keeper_role"'

_CREATE_LEDGER = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    filename   text PRIMARY KEY,
    checksum   text NOT NULL CHECK (checksum ~ '^[0-9a-f]{{64}}$'),
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT session_user,  -- who ran the deploy (the admin role)
    applied_as text NOT NULL DEFAULT current_user   -- the role that owns what it created
)""").format(table=sql.Identifier(TABLE))
_APPLIED = sql.SQL("SELECT filename, checksum FROM {}").format(sql.Identifier(TABLE))


class MigrationError(OperationError):
    """A migration that cannot or must not be applied; the message is one line (pyinfra
    shows it as an operation error, without a traceback)."""


def pending(plane: Plane, files: list[Migration], applied: dict[str, str]) -> list[Migration]:
    """Files still to apply, after refusing any history that does not match the files."""
    by_name = {m.name: m for m in files}
    for name, checksum in sorted(applied.items()):
        if name not in by_name:
            raise MigrationError(
                f"{plane.key}/{name} is applied in {plane.store} but its file is gone; restore it "
                "(applied migrations are never removed)"
            )
        if by_name[name].checksum != checksum:
            raise MigrationError(
                f"{plane.key}/{name} changed after it was applied to {plane.store}: applied checksum {checksum}, "
                f"file checksum {by_name[name].checksum}; restore the file and put the change in a new migration"
            )
    todo = [m for m in files if m.name not in applied]
    if todo and applied and todo[0].name < max(applied):
        raise MigrationError(
            f"{plane.key}/{todo[0].name} is new but sorts before the applied {max(applied)}; "
            "give it a number after the last applied migration"
        )
    return todo


def needs_keeper(migration: Migration) -> bool:
    """Whether the migration works on the evidence ledger (it names the keeper role)."""
    return KEEPER in migration.sql


def with_variables(plane: Plane, text: str) -> str:
    for token, attribute in VARIABLES.items():
        text = text.replace(token, sql.Identifier(getattr(plane, attribute)).as_string())
    return text


def applied(conn: psycopg.Connection, plane: Plane) -> dict[str, str]:
    """The ledger of the database ``conn`` is connected to (empty before the first migration).

    Read as the plane's owner: the admin holds no privilege of its own inside a plane. Both
    statements travel in one round trip and one implicit transaction, so the role lasts
    for the read alone, also when it fails."""
    query = sql.SQL("SET LOCAL ROLE {}; ").format(sql.Identifier(plane.owner_role)) + _APPLIED
    try:
        cur = conn.execute(query)
    except psycopg.errors.UndefinedTable:
        return {}
    while cur.description is None and cur.nextset():
        pass
    return dict(cur.fetchall())


def apply(conn: psycopg.Connection, plane: Plane, migration: Migration, log: Callable[[str], None],
          grant_keeper: bool = False) -> bool:
    """Apply one migration atomically; False when a concurrent deploy already did.

    ``grant_keeper``: the connected admin may make the owner a member of the keeper role
    itself, which it then does inside the transaction for a migration that needs it."""
    owner, keeper = sql.Identifier(plane.owner_role), None
    if grant_keeper and needs_keeper(migration):
        keeper = sql.Identifier(plane.keeper_role)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        conn.execute(_CREATE_LEDGER)
        # The ledger is the deploy's record: services may read it, never write it.
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}, {}").format(
            sql.Identifier(TABLE), sql.Identifier(plane.app_role), sql.Identifier(plane.readonly_role)))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.Identifier(TABLE), sql.Identifier(plane.readonly_role)))
        row = conn.execute(sql.SQL("SELECT checksum FROM {} WHERE filename = %s").format(sql.Identifier(TABLE)),
                           [migration.name]).fetchone()
        if row is not None:  # applied meanwhile by a concurrent deploy
            pending(plane, [migration], {migration.name: row[0]})
            return False
        log(f"apply {plane.key}/{migration.name}")
        if keeper:  # as the admin, which administers the keeper; under the lock, so once
            conn.execute("RESET ROLE")
            conn.execute(sql.SQL("GRANT {} TO {}").format(keeper, owner))
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
        for number, statement in enumerate(migration.statements(), 1):
            try:
                conn.execute(with_variables(plane, statement))
            except psycopg.Error as e:
                first = " ".join(statement.split())[:160]
                raise MigrationError(
                    f"{plane.key}/{migration.name}: statement {number} failed ({e.diag.message_primary or e}): "
                    f"{first}; rolled back, the ledger is unchanged and later migrations did not run"
                ) from None
        # A file may have switched roles (to the keeper): the ledger is the owner's.
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
        conn.execute(sql.SQL("INSERT INTO {} (filename, checksum) VALUES (%s, %s)").format(sql.Identifier(TABLE)),
                     [migration.name, migration.checksum])
        if keeper:
            conn.execute("RESET ROLE")  # the grantor revokes
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(keeper, owner))
    return True
