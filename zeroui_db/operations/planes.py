"""The plane databases, their roles and privileges, converged through psycopg as the
admin role: the same path a managed cloud database takes."""

from __future__ import annotations

import psycopg
from pyinfra import host, logger
from pyinfra.api import operation
from pyinfra.api.command import FunctionCommand
from pyinfra.api.state import StateStage

from .. import catalog, grants
from ..admin_link import admin_connect
from ..contract import ADMIN_ROLE
from ..secret_store import SecretStore
from .report import fail, progress

@operation()
def converged(port: int, store: SecretStore):
    """
    Create each plane's owner, app and read-only roles and its database, and set the
    privileges the contract asks for. Nothing is dropped; a converged cluster costs one
    catalog query per database and yields nothing.

    **Example:**

    .. code:: python

        planes.converged(name="Plane databases and roles", port=5432, store=store)
    """
    password = store.password(ADMIN_ROLE)
    try:
        with admin_connect(host, port, password) as connect:
            steps = grants.plan(catalog.read(connect), store)
    except psycopg.OperationalError as e:
        if host.state.current_stage == StateStage.Execute:
            raise
        # Preparing (or --dry) before the cluster or the admin role exists: all of it is to do.
        logger.debug(f"planes.converged: cluster not reachable yet ({e.__class__.__name__})")
        yield FunctionCommand(_converge, (port, store), {})
        return
    if host.state.current_stage != StateStage.Execute:
        for step in steps:  # what --dry shows
            progress(f"would {step.summary}")
    if steps:
        yield FunctionCommand(_apply, (port, store, steps), {})


def _converge(state, host, port: int, store: SecretStore) -> bool:
    return _apply(state, host, port, store, None)


def _apply(state, host, port: int, store: SecretStore, steps: list[grants.Step] | None) -> bool:
    """Run the planned steps (or plan now, when the cluster was not up to plan earlier)."""
    try:
        with admin_connect(host, port, store.password(ADMIN_ROLE)) as connect:
            todo = steps if steps is not None else grants.plan(catalog.read(connect), store)
            catalog.apply(connect, todo, lambda summary: progress(summary, host))
    except catalog.StepFailed as e:
        # e.g. drift only the superuser may repair (BYPASSRLS): say so in one line.
        return fail(host, f"{e}; repair it as the superuser, then deploy again")
    return True
