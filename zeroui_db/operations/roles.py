"""Bootstrap of the pilot's admin role: the local superuser's job, over the unix socket.

pyinfra's ``postgres.role`` is not used: it puts passwords in argv and ALTERs a role
with a password on every run. Here the statement carries a SCRAM verifier and travels
on psql's stdin, and it is only sent when the role or its password is not current.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.api.command import FunctionCommand

from .. import admin_link, contract, converge, grants
from ..config import RoleLimits, Server
from ..facts import RoleAttributes
from ..layout import ClusterLayout
from ..privilege import SUPERUSER_ENV, as_server_user
from ..secret_store import SecretStore


def superuser_psql(port: int, script: str, dbname: str = contract.MAINTENANCE_DB) -> StringCommand:
    """psql as the local superuser (peer authentication), the script on stdin: it may hold
    verifiers. One transaction: a run killed midway leaves all of it or none, never half."""
    return as_server_user(
        "env", SUPERUSER_ENV, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-p", str(port),
        "-d", dbname, "-f", "-", _stdin=script,
    )


@operation()
def admin(cluster: ClusterLayout, server: Server, store: SecretStore, ca_file: str):
    """
    Create the admin role (LOGIN CREATEDB NOINHERIT; never SUPERUSER, never CREATEROLE), or
    bring its attributes, connection limit and password in line.

    **Example:**

    .. code:: python

        roles.admin(name="Bootstrap the admin role", cluster=layout, server=server, store=store,
                    ca_file="/root/.config/zeroui-db/secrets/pilot-ca.crt")
    """
    password = store.password(contract.ADMIN_ROLE)
    limits = RoleLimits(server.limits.admin_connections)
    # Logging in with the current password proves it is applied; its own attributes
    # in line too means there is nothing for the superuser to do.
    own = admin_link.own_attributes(host, server, password, ca_file)
    if own is not None and not grants.role_steps(contract.ADMIN_ROLE, grants.ADMIN_ATTRS, own, None, None) \
            and not grants.limit_steps(contract.ADMIN_ROLE, limits, own):
        host.noop(f"{contract.ADMIN_ROLE} logs in with its password and has its attributes")
        return
    # Before the cluster runs (a fresh host, or --dry) the fact is None: create the role.
    have = host.get_fact(RoleAttributes, role=contract.ADMIN_ROLE, port=cluster.port)
    verifier = None
    if own is None:  # no role yet, or it does not take the current password: (re)apply it
        applied = store.applied_verifier(contract.ADMIN_ROLE)
        verifier = lambda: applied or store.fresh_verifier(contract.ADMIN_ROLE)  # noqa: E731
    steps = grants.role_steps(
        contract.ADMIN_ROLE, grants.ADMIN_ATTRS, have, verifier,
        lambda v: store.record_applied(contract.ADMIN_ROLE, v),
    ) + grants.limit_steps(contract.ADMIN_ROLE, limits, have)
    if not steps:
        return
    yield superuser_psql(cluster.port, converge.superuser_script(steps))
    for step in steps:
        if step.after:
            yield FunctionCommand(step.after, (), {})
