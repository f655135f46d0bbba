"""The plane databases, their roles and privileges on one server, converged from the
contract: the same plan for the pilot's cluster and a managed service."""

from __future__ import annotations

import psycopg
from pyinfra import host, logger
from pyinfra.api import OperationError, operation
from pyinfra.api.command import FunctionCommand
from pyinfra.api.state import StateStage

from .. import catalog, converge, grants, privilege
from ..admin_link import admin_connect
from ..config import Server
from ..facts import RoleVerifiers
from ..secret_store import ServerChecked
from .report import fail, progress
from .roles import superuser_psql


@operation()
def converged(server: Server, password: str, ca_file: str, store):
    """
    Create each plane's owner, app and read-only roles and its database on ``server`` (or
    adopt an empty one), and set the privileges the contract asks for. Nothing is dropped;
    a converged server costs one catalog query per database and yields nothing.

    **Example:**

    .. code:: python

        planes.converged(name="Plane databases and roles", server=server, password=pw,
                         ca_file="/path/ca.crt", store=store)
    """
    passwords = store
    if server.workstation:
        # The local superuser can read pg_authid: a password changed by hand is set again.
        # A managed service hides it; there the store's record of what it applied stands in.
        roles = tuple(r for p in server.planes for r in p.login_roles)
        passwords = ServerChecked(store, host.get_fact(RoleVerifiers, roles=roles, port=server.port,
                                                       _su_user="postgres"))
    try:
        with admin_connect(host, server, password, ca_file) as connect:
            steps = grants.plan(server, catalog.read(connect, server), passwords)
    except psycopg.OperationalError as e:
        if host.state.current_stage == StateStage.Execute:
            raise OperationError(f"cannot reach {server.key} as {server.admin_user}: {_first_line(e)}") from None
        # Preparing (or --dry) before the cluster, its certificate or the admin role exists:
        # plan again once they do.
        logger.debug(f"planes.converged: {server.key} not reachable yet ({_first_line(e)})")
        yield FunctionCommand(_execute, (server, password, ca_file, passwords, None), {})
        return
    if host.state.current_stage != StateStage.Execute:
        for step in steps:  # what --dry shows
            progress(f"would {step.summary}" + (f" (blocked: {step.blocked})" if step.blocked else ""))
    if not steps:
        host.noop(f"{server.key}: roles, databases and privileges match the contract")
        return
    yield FunctionCommand(_execute, (server, password, ca_file, passwords, steps), {})


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[-1] if str(e).strip() else e.__class__.__name__


def _execute(state, host, server: Server, password: str, ca_file: str, passwords: grants.Passwords,
             steps: list[grants.Step] | None) -> bool:
    """Run the planned steps (or plan now, when the server was not up to plan earlier):
    role steps first, by the local superuser on the pilot, then database steps as the admin."""
    try:
        with admin_connect(host, server, password, ca_file) as connect:
            todo = steps if steps is not None else grants.plan(server, catalog.read(connect, server), passwords)
            reason = converge.blocked(todo)
            if reason:
                return fail(host, f"{server.key}: {reason}; repair it as the superuser, then deploy again")
            roles = [s for s in todo if s.scope == grants.ROLE]
            if roles and server.workstation:
                for step in roles:
                    progress(step.summary, host)
                ok, output = privilege.run(host, superuser_psql(server.port, converge.superuser_script(roles)))
                if not ok:
                    return fail(host, f"{server.key}: role steps failed: {output.stderr.strip()[-500:]}")
                for step in roles:
                    if step.after:
                        step.after()
                roles = []
            keeper = [s for s in todo if s.scope == grants.KEEPER]
            if keeper and server.workstation:  # the keeper's objects: the local superuser acts as the keeper
                for database in dict.fromkeys(s.database for s in keeper):
                    mine = [s for s in keeper if s.database == database]
                    for step in mine:
                        progress(step.summary, host)
                    ok, output = privilege.run(host, superuser_psql(server.port, converge.keeper_script(mine),
                                                                    dbname=database))
                    if not ok:
                        return fail(host, f"{server.key}: keeper steps failed: {output.stderr.strip()[-500:]}")
                keeper = []
            converge.run(connect, [*roles, *(s for s in todo if s.scope == grants.DATABASE), *keeper],
                         lambda summary: progress(summary, host))
    except converge.StepFailed as e:
        # e.g. drift only the superuser may repair (BYPASSRLS): say so in one line.
        return fail(host, f"{server.key}: {e}; repair it as the superuser, then deploy again")
    except psycopg.OperationalError as e:
        return fail(host, f"cannot reach {server.key} as {server.admin_user}: {_first_line(e)}")
    return True
