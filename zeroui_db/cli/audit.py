"""``zeroui-db audit INVENTORY``: the live connection rules and grants of every endpoint,
read through the least-privileged audit role and held against the contract.

Exit 0 clean, 1 drift or a failed check, 2 could not audit (one line why).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import audit as auditing
from .. import contract, live
from ..report import html, text
from ..secret_store import SecretStore
from ..site import ADMIN_GROUP, SERVER_GROUP
from .inventory import CannotRun, connect, load_inventory, load_site


@click.command("audit")
@click.argument("inventory_file", metavar="INVENTORY", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schema zeroui-db-audit/1, see README).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write a self-contained HTML page with the matrix drawn as a picture.")
def audit(inventory_file: str, as_json: bool, html_file: str | None) -> None:
    """Audit the connection rules, grants and settings of INVENTORY's endpoints."""
    inventory = load_inventory(inventory_file)
    site = load_site(inventory_file, inventory)
    store = SecretStore(site.name)
    try:
        password = store.password(contract.AUDIT_ROLE)
    except KeyError:
        raise CannotRun(f"no password for {contract.AUDIT_ROLE} in {store.path}: deploy the site first") from None

    # Each server is read from where the deploy works on it: the workstation, or the admin host.
    where = {}
    for server in site.servers:
        group = SERVER_GROUP if server.workstation else ADMIN_GROUP
        hosts = inventory.get_group(group, [])
        if not hosts:
            raise CannotRun(f"inventory {inventory_file}: no {group} host to audit {server.key} from")
        where[server] = hosts[0]
    connect(inventory, set(where.values()))

    observations = []
    for server, host in where.items():
        ca = server.first.ca_file or str(store.path.parent / f"{site.name}-ca.crt")
        if not Path(ca).is_file():
            raise CannotRun(f"{server.key}: CA certificate {ca} is missing on this machine")
        observations.append(live.observe(host, server, password, ca))

    report = auditing.audit(site, observations)
    if html_file:
        Path(html_file).write_text(html(report))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(text(report, color=None))
    for reason in report.unreachable:
        click.echo(f"could not audit {reason}", err=True)
    raise SystemExit(report.exit_code)
