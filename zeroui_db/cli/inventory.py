"""Reading a pyinfra inventory file into the site config, as the deploy does, and reaching
its hosts with pyinfra's own connectors, with one-line errors for the command line."""

from __future__ import annotations

import click
from pyinfra.api import Config, State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state

from ..config import Site, parse_site
from ..site import site_data


class CannotRun(click.ClickException):
    """The verb could not do its work at all (exit 2), as opposed to finding a problem (exit 1)."""

    exit_code = 2


def load_inventory(path: str):
    """pyinfra's own reading of an inventory file (it executes inside a state context)."""
    from pyinfra_cli.inventory import make_inventory

    try:
        with ctx_state.use(State()):
            return make_inventory(path)
    except Exception as e:  # a broken inventory file: say which, in one line
        raise CannotRun(f"inventory {path}: cannot be read: {e}") from None


def load_site(path: str, inventory=None) -> Site:
    """The validated site of the inventory file at ``path``; exits 2 with one line if it is bad."""
    inventory = inventory or load_inventory(path)
    try:
        return parse_site(site_data(inventory), inventory=path)
    except PyinfraError as e:
        raise CannotRun(str(e)) from None


def connect(inventory, hosts) -> State:
    """Connect to ``hosts`` of ``inventory`` with their inventory data (SSH, @local, ...)."""
    from pyinfra.api.connect import connect_all

    state = State(inventory, Config())
    state.limit_hosts = list(hosts)  # only the hosts asked for are connected
    try:
        connect_all(state)
    except PyinfraError as e:
        raise CannotRun(f"cannot connect: {e}") from None
    missing = [h.name for h in hosts if h not in state.activated_hosts]
    if missing:
        raise CannotRun(f"cannot connect to {', '.join(missing)}")
    return state
