"""Each plane database's schema, brought up to date through its own migration ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.command import FunctionCommand
from pyinfra.api.state import StateStage

from .. import contract, ledger, privilege, schemas
from ..admin_link import admin_connect
from ..config import Endpoint, Server
from .report import fail, progress, refusal
from .roles import superuser_psql


@operation()
def migrated(server: Server, password: str, ca_file: str):
    """
    Apply each plane's pending files from ``sql/schemas/<plane>/`` on ``server``, as the
    plane's owner role. An applied file that changed since stops the deploy. A database
    with nothing to apply costs one query.

    **Example:**

    .. code:: python

        schemas.migrated(name="Plane schemas", server=server, password=pw, ca_file="/path/ca.crt")
    """
    todo: dict[Endpoint, list[schemas.Migration]] = {}
    try:
        with admin_connect(host, server, password, ca_file) as connect:
            for e in server.endpoints:
                todo[e] = ledger.pending(e.plane, schemas.migrations(e.plane), ledger.applied(connect(e.database), e.plane))
    except ledger.MigrationError as e:
        if host.state.current_stage != StateStage.Execute:
            raise  # change detection or --dry: pyinfra reports it on one line before anything runs
        # With -y the operation is generated while executing, where a raised error escapes as a
        # greenlet traceback: fail the operation instead, with the same one-line message.
        yield refusal(str(e))
        return
    except psycopg.OperationalError:
        if host.state.current_stage == StateStage.Execute:
            raise
        # Preparing (or --dry) before the databases exist: every file is to apply.
        todo = {e: schemas.migrations(e.plane) for e in server.endpoints}
    todo = {e: files for e, files in todo.items() if files}
    if host.state.current_stage != StateStage.Execute:
        for e, files in todo.items():
            for m in files:
                progress(f"would apply {e.plane.key}/{m.name}")
    if not todo:
        host.noop(f"{server.key}: every migration is applied")
        return
    yield FunctionCommand(_apply, (server, password, ca_file, tuple(todo)), {})


def _apply(state, host, server: Server, password: str, ca_file: str, endpoints: tuple[Endpoint, ...]) -> bool:
    # ledger.apply takes the advisory lock and re-reads the ledger under it: a concurrent
    # deploy may have applied some files meanwhile.
    try:
        with admin_connect(host, server, password, ca_file) as connect:
            for e in endpoints:
                conn = connect(e.database)
                for migration in ledger.pending(e.plane, schemas.migrations(e.plane), ledger.applied(conn, e.plane)):
                    with keeper_window(host, server, e.plane, migration):
                        ledger.apply(conn, e.plane, migration, lambda message: progress(message, host),
                                     grant_keeper=not server.workstation)
    except (ledger.MigrationError, KeeperWindowError) as e:
        # One line, no traceback: which file, which statement, and that nothing half-applied.
        return fail(host, str(e))
    return True


class KeeperWindowError(ledger.MigrationError):
    pass


@contextmanager
def keeper_window(host, server: Server, plane: contract.Plane, migration: schemas.Migration) -> Iterator[None]:
    """On the pilot, let the plane's owner act as its evidence keeper while ``migration`` is
    applied, and no longer: the admin cannot grant that membership (it administers no role),
    so the local superuser grants and revokes it. A crash in between leaves the membership,
    which the next deploy's plan revokes. Elsewhere (a managed service) ledger.apply does it
    inside the migration's transaction."""
    if not (server.workstation and ledger.needs_keeper(migration)):
        yield
        return
    keeper, owner = sql.Identifier(plane.keeper_role), sql.Identifier(plane.owner_role)
    _superuser(host, server, sql.SQL("GRANT {} TO {}").format(keeper, owner), f"open the keeper window for {plane.key}")
    try:
        yield
    finally:
        _superuser(host, server, sql.SQL("REVOKE {} FROM {}").format(keeper, owner),
                   f"close the keeper window for {plane.key}")


def _superuser(host, server: Server, statement: sql.Composable, what: str) -> None:
    ok, output = privilege.run(host, superuser_psql(server.port, statement.as_string() + ";\n"))
    if not ok:
        raise KeeperWindowError(f"could not {what}: {output.stderr.strip()[-300:]}")
