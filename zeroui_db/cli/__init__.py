"""The ``zeroui-db`` command: verbs around the deploy (``pyinfra INVENTORY deploy.py`` does
the deploying itself). Each verb lives in a module of its own in this package."""

from __future__ import annotations

import click

from .audit import audit
from .backup import backup
from .cutover import cutover
from .network_rules import network_rules
from .restore_drill import restore_drill
from .verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """ZeroUI DB planes: what the contract asks of a site, and whether it holds."""


main.add_command(audit)
main.add_command(backup)
main.add_command(cutover)
main.add_command(network_rules)
main.add_command(restore_drill)
main.add_command(verify)
