"""Each plane database's schema, brought up to date through its own migration ledger."""

from __future__ import annotations

import psycopg
from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.command import FunctionCommand
from pyinfra.api.state import StateStage

from .. import ledger, schemas
from ..admin_link import admin_connect
from ..config import Endpoint, Server
from .report import fail, progress, refusal


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
                    ledger.apply(conn, e.plane, migration, lambda message: progress(message, host))
    except ledger.MigrationError as e:
        # One line, no traceback: which file, which statement, and that nothing half-applied.
        return fail(host, str(e))
    return True
