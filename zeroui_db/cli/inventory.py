"""Reading a pyinfra inventory file into the site config, as the deploy does, with one-line
errors for the command line."""

from __future__ import annotations

import click
from pyinfra.api.exceptions import PyinfraError

from ..config import Site, parse_site
from ..site import site_data


def load_inventory(path: str):
    """The pyinfra inventory at ``path`` and its validated site; exits 2 with one line if it is bad."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory  # pyinfra's own reading of inventory files

    try:
        with ctx_state.use(State()):  # pyinfra executes inventory files inside a state context
            inventory = make_inventory(path)
        return inventory, parse_site(site_data(inventory), inventory=path)
    except PyinfraError as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:  # a broken inventory file: say which, in one line
        raise click.ClickException(f"inventory {path}: cannot be read: {e}") from None


def load_site(path: str) -> Site:
    """The validated site of the inventory file at ``path``; exits 2 with one line if it is bad."""
    return load_inventory(path)[1]
