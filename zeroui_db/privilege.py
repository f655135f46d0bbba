"""How the operations get the privileges they need on a host, whatever the inventory's way
to them: root itself (``@local`` or SSH as root), or a user with ``_sudo`` (or ``_su_user``,
``_doas``) given in the host's data.

* Commands that need the ``postgres`` OS user (peer authentication to the cluster) switch to
  it with ``runuser`` inside the command, once the host's own escalation has made them root.
  pyinfra's ``_su_user="postgres"`` would replace a host's ``_su_user: "root"`` (su from the
  operator to postgres asks for a password), and ``_sudo_user`` is ignored where there is no
  sudo: ``runuser`` is the one form that works on every path.
* A Python callback (a ``FunctionCommand``) that runs a command with ``host.run_shell_command``
  gets none of the host's ``_sudo``/``_su_user`` arguments: pyinfra adds them only to the
  commands an operation yields. ``run`` adds them.
* The IDE plane belongs to the user the deploy connects as: its operations never escalate.
"""

from __future__ import annotations

from pyinfra.api import StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments

SERVER_USER = "postgres"  # the OS user the Debian cluster runs as; peer authentication maps it

# The environment of every superuser session (psql as postgres): names resolve in pg_catalog
# alone, pg_temp last. The plane's owner owns schema public in its database (the admin may act
# as it), and a function it put there can beat a built-in of pg_catalog when it matches the
# arguments better: whatever the superuser calls must never be that. The bundle's own objects
# are named in full (public.receipts) in the SQL a superuser runs.
SUPERUSER_ENV = "PGOPTIONS=-csearch_path=pg_catalog,pg_temp"

# Operation arguments that keep an operation to the connecting user, whatever the host's data says.
AS_CONNECTING_USER = {"_sudo": False, "_su_user": "", "_doas": False, "_dzdo": False}


def as_server_user(*argv: str | StringCommand, **connector_arguments) -> StringCommand:
    """``argv`` run as the cluster's OS user (from root)."""
    return StringCommand("runuser", "-u", SERVER_USER, "--", *argv, **connector_arguments)


def run(host, command: StringCommand):
    """Run ``command`` from a Python callback with the privileges the host's operations have."""
    arguments, _ = pop_global_arguments(host.state, host, dict(command.connector_arguments))
    return host.run_shell_command(command, **{k: v for k, v in arguments.items() if k in CONNECTOR_ARGUMENT_KEYS})
