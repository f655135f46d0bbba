"""Reaching the pilot's workstation from the command line, as the deploy reaches it: through
pyinfra's own connector for the inventory's workstation host (``@local`` or SSH), running
commands as the ``postgres`` OS user."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click
from pyinfra.api import QuoteString, StringCommand

from ..config import Site
from ..layout import ClusterLayout
from ..site import SERVER_GROUP, server_plan
from .inventory import load_inventory


class CommandFailed(click.ClickException):
    """A command on the workstation failed; the message says which and shows its error output."""


@dataclass
class Workstation:
    site: Site
    host: object  # the connected pyinfra Host
    cluster: ClusterLayout

    def run(self, *argv: str, stdin: str | None = None, check: bool = True, what: str = "") -> tuple[bool, str, str]:
        """Run ``argv`` as postgres on the workstation: (ok, stdout, stderr). Arguments are
        quoted by pyinfra; secrets never go here (none are needed: peer authentication)."""
        command = StringCommand(*(QuoteString(a) for a in argv), _su_user="postgres",
                                **({"_stdin": stdin} if stdin is not None else {}))
        ok, output = self.host.run_shell_command(command, **command.connector_arguments)
        if check and not ok:
            tail = "\n".join(output.stderr_lines[-20:] or output.stdout_lines[-20:])
            raise CommandFailed(f"{what or argv[0]} failed on {self.host.name}:\n{tail}")
        return ok, output.stdout, output.stderr


@contextmanager
def workstation(path: str) -> Iterator[Workstation]:
    """The inventory's workstation, connected; exits with one line when the inventory is bad,
    has no workstation cluster, or the host cannot be reached."""
    from pyinfra.api import Config, State
    from pyinfra.api.exceptions import ConnectError
    from pyinfra.context import ctx_host, ctx_state

    inventory, site = load_inventory(path)
    hosts = inventory.get_group(SERVER_GROUP, [])
    if site.cluster is None or not hosts:
        raise click.ClickException(
            f"inventory {path}: no workstation cluster: every plane is a managed service, which its provider "
            "backs up (see README, 'Backups')")
    state, host = State(inventory, Config()), hosts[0]
    with ctx_state.use(state), ctx_host.use(host):
        try:
            host.connect(show_errors=False, raise_exceptions=True)
        except ConnectError as e:
            raise click.ClickException(f"cannot reach the workstation {host.name}: {e}") from None
        try:
            yield Workstation(site, host, server_plan(site, host))
        finally:
            host.disconnect()
