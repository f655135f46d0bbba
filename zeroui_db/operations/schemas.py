"""Each plane database's schema, brought up to date through its own migration ledger."""

from __future__ import annotations

import psycopg
from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.command import FunctionCommand
from pyinfra.api.state import StateStage

from .. import contract, ledger, schemas
from ..admin_link import admin_connect
from ..secret_store import SecretStore
from .report import fail, progress, refusal


@operation()
def migrated(port: int, store: SecretStore):
    """
    Apply each PostgreSQL plane's pending files from ``sql/schemas/<plane>/``, as the
    plane's owner role. An applied file that changed since stops the deploy. A database
    with nothing to apply costs one query.

    **Example:**

    .. code:: python

        schemas.migrated(name="Plane schemas", port=5432, store=store)
    """
    todo: dict[contract.Plane, list[schemas.Migration]] = {}
    try:
        with admin_connect(host, port, store.password(contract.ADMIN_ROLE)) as connect:
            for plane in contract.POSTGRES_PLANES:
                todo[plane] = ledger.pending(plane, schemas.migrations(plane), ledger.applied(connect(plane.store)))
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
        todo = {plane: schemas.migrations(plane) for plane in contract.POSTGRES_PLANES}
    todo = {plane: files for plane, files in todo.items() if files}
    if host.state.current_stage != StateStage.Execute:
        for plane, files in todo.items():
            for m in files:
                progress(f"would apply {plane.key}/{m.name}")
    if todo:
        yield FunctionCommand(_apply, (port, store, tuple(todo)), {})


def _apply(state, host, port: int, store: SecretStore, planes: tuple[contract.Plane, ...]) -> bool:
    # Re-read under the lock: a concurrent deploy may have applied some files meanwhile.
    try:
        with admin_connect(host, port, store.password(contract.ADMIN_ROLE)) as connect:
            for plane in planes:
                conn = connect(plane.store)
                for migration in ledger.pending(plane, schemas.migrations(plane), ledger.applied(conn)):
                    ledger.apply(conn, plane, migration, lambda message: progress(message, host))
    except ledger.MigrationError as e:
        # One line, no traceback: which file, which statement, and that nothing half-applied.
        return fail(host, str(e))
    return True
