"""The pilot's evidence guard: event triggers, installed by the local superuser, that keep the
plane's owner (and so the admin) from dropping the evidence keeper's objects (see
zeroui_db/evidence.py and sql/server/evidence_guard.sql)."""

from __future__ import annotations

import psycopg
from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.state import StateStage

from .. import evidence
from ..admin_link import admin_connect
from ..config import Server
from .report import progress
from .roles import superuser_psql


@operation()
def guarded(server: Server, password: str, ca_file: str):
    """
    Install or update the evidence guard in each plane database of the workstation's cluster
    that holds an evidence ledger. A current guard costs one query and yields nothing.

    **Example:**

    .. code:: python

        evidence.guarded(name="Evidence guard", server=server, password=pw, ca_file="/path/ca.crt")
    """
    endpoints = [e for e in server.endpoints if e.plane.keeps_evidence]
    todo = []
    try:
        with admin_connect(host, server, password, ca_file) as connect:
            for e in endpoints:
                state = connect(e.database).execute(evidence.GUARD_STATE).fetchone()
                if not evidence.guard_current(state, evidence.guard_script(e.plane)):
                    todo.append(e)
    except psycopg.OperationalError:
        if host.state.current_stage == StateStage.Execute:
            raise
        todo = endpoints  # preparing (or --dry) before the databases exist
    if host.state.current_stage != StateStage.Execute:
        for e in todo:
            progress(f"would install the evidence guard in {e.database}")
    if not todo:
        host.noop(f"{server.key}: the evidence guard is in place")
        return
    for e in todo:
        yield superuser_psql(server.port, evidence.guard_script(e.plane).sql, dbname=e.database)
