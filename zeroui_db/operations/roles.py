"""Bootstrap of the admin role: the one thing the superuser does, over the local socket.

pyinfra's ``postgres.role`` is not used: it puts passwords in argv and ALTERs a role
with a password on every run. Here the statement carries a SCRAM verifier and travels
on psql's stdin, and it is only sent when the role or its password is not current.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.api.command import FunctionCommand
from pyinfra.facts.postgres import PostgresRoles

from .. import contract, grants
from ..facts import PostgresClusters
from ..layout import ClusterLayout
from ..secret_store import SecretStore


@operation()
def admin(cluster: ClusterLayout, store: SecretStore):
    """
    Create the admin role (LOGIN CREATEDB CREATEROLE, never SUPERUSER), or bring its
    attributes and password in line.

    **Example:**

    .. code:: python

        roles.admin(name="Bootstrap the admin role", cluster=layout, store=store)
    """
    online = any(
        c.version == cluster.version and c.name == cluster.name and c.online
        for c in host.get_fact(PostgresClusters)
    )
    # Before the cluster runs (a fresh host, or --dry) there is nothing to ask: create it.
    have = None
    if online:
        have = host.get_fact(PostgresRoles, psql_port=cluster.port, _su_user="postgres").get(contract.ADMIN_ROLE)
    applied = store.applied_verifier(contract.ADMIN_ROLE)
    verifier = None
    if applied is None:
        verifier = lambda: store.fresh_verifier(contract.ADMIN_ROLE)  # noqa: E731
    elif have is None:
        verifier = lambda: applied  # noqa: E731
    steps = grants.role_steps(
        contract.ADMIN_ROLE, grants.ADMIN_ATTRS, have, verifier,
        lambda v: store.record_applied(contract.ADMIN_ROLE, v),
    )
    if not steps:
        return
    script = "".join(step.statement.as_string() + ";\n" for step in steps)
    yield StringCommand(
        "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", str(cluster.port), "-d", contract.MAINTENANCE_DB,
        "-f", "-", _su_user="postgres", _stdin=script,
    )
    for step in steps:
        if step.after:
            yield FunctionCommand(step.after, (), {})
