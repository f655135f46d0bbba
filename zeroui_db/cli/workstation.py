"""Reaching the pilot's workstation from the command line, as the deploy reaches it: through
pyinfra's own connector for the inventory's workstation host (``@local``, SSH, with sudo or
su as its data says), running commands as the ``postgres`` OS user."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click
from pyinfra.api import QuoteString
from pyinfra.api.exceptions import PyinfraError

from .. import privilege
from ..config import Site
from ..layout import ClusterLayout
from ..site import SERVER_GROUP, server_plan
from .inventory import CannotRun, connect, load_inventory, load_site


class CommandFailed(click.ClickException):
    """A command on the workstation failed; the message says which and shows its error output."""


@dataclass
class Workstation:
    site: Site
    host: object  # the connected pyinfra Host
    cluster: ClusterLayout

    def run(self, *argv: str, stdin: str | None = None, check: bool = True, what: str = "") -> tuple[bool, str, str]:
        """Run ``argv`` as postgres on the workstation: (ok, stdout, stderr). Each argument is
        quoted; no secret is ever needed here (peer authentication)."""
        command = privilege.as_server_user(*(QuoteString(a) for a in argv),
                                           **({"_stdin": stdin} if stdin is not None else {}))
        ok, output = privilege.run(self.host, command)
        if check and not ok:
            tail = "\n".join(output.stderr_lines[-20:] or output.stdout_lines[-20:])
            raise CommandFailed(f"{what or argv[0]} failed on {self.host.name}:\n{tail}")
        return ok, output.stdout, output.stderr


@contextmanager
def workstation(path: str) -> Iterator[Workstation]:
    """The inventory's workstation, connected; exits 2 with one line when the inventory is bad,
    has no workstation cluster, or the host cannot be reached."""
    from pyinfra.context import ctx_host, ctx_state

    inventory = load_inventory(path)
    site = load_site(path, inventory)
    hosts = inventory.get_group(SERVER_GROUP, [])
    if site.cluster is None or not hosts:
        raise CannotRun(f"inventory {path}: no workstation cluster: every plane is a managed service, which its "
                        "provider backs up (see README, 'Backups')")
    host = hosts[0]
    state = connect(inventory, [host])
    with ctx_state.use(state), ctx_host.use(host):
        try:
            try:
                cluster = server_plan(site, host)
            except PyinfraError as e:  # e.g. the port is another cluster's: one line
                raise CannotRun(str(e)) from None
            yield Workstation(site, host, cluster)
        finally:
            host.disconnect()
