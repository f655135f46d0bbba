"""``zeroui-db network-rules INVENTORY``: the firewall rules each endpoint needs, from the
contract and the inventory. On a managed service they are what stands in for pg_hba
(security groups, authorized networks, firewall rules); on the pilot's cluster pg_hba
already enforces them, and the table says so."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import click

from .. import contract
from ..config import Endpoint, Site, reaches
from .inventory import load_site

# How each provider enforces TLS: the setting to check beside the network rules.
TLS_SETTINGS = "RDS: rds.force_ssl = 1; Cloud SQL: ssl_mode ENCRYPTED_ONLY; Azure: require_secure_transport = ON"


@dataclass(frozen=True)
class Allow:
    group: str
    networks: list[str]
    roles: list[str]


@dataclass(frozen=True)
class EndpointRules:
    plane: str
    host: str
    port: int
    database: str
    enforced_by: str  # "pg_hba" (the pilot's cluster) or "provider" (a managed service)
    tls: str
    allow: list[Allow]


def rules(site: Site) -> list[EndpointRules]:
    """Per endpoint: who may open a TCP connection to it, from where, as which roles."""
    out = []
    for plane in contract.POSTGRES_PLANES:
        e: Endpoint = site.endpoint(plane)
        allow = []
        for access in site.clients.values():
            if not access.networks or not reaches(access, plane):
                continue
            roles = [e.admin_user] if access.group is contract.ADMIN_HOSTS else list(plane.login_roles)
            allow.append(Allow(access.group.key, sorted(str(n) for n in access.networks), roles))
        out.append(EndpointRules(
            plane.key, e.host, e.port, e.database, "pg_hba" if e.workstation else "provider",
            "required (TLS 1.2+, verify-full, SCRAM)", allow,
        ))
    return out


@click.command("network-rules")
@click.argument("inventory", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of endpoints, see the README).")
def network_rules(inventory: str, as_json: bool) -> None:
    """Print the network rules each plane endpoint of INVENTORY needs at its provider."""
    site = load_site(inventory)
    found = rules(site)
    if as_json:
        click.echo(json.dumps({"site": site.name, "endpoints": [asdict(r) for r in found]}, indent=2))
        return
    for r in found:
        where = "pg_hba.conf on the workstation (written by the deploy)" if r.enforced_by == "pg_hba" else \
            "the provider's network rules (security group / authorized networks / firewall)"
        click.secho(f"{r.plane}: {r.host}:{r.port} database {r.database}", bold=True)
        click.echo(f"  enforced by {where}")
        width = max((len(n) for a in r.allow for n in a.networks), default=0)
        for a in r.allow:
            for net in a.networks:
                click.echo(f"  allow  tcp/{r.port}  from {net:<{width}}  {a.group} ({', '.join(a.roles)})")
        click.echo(f"  deny   everything else")
        click.echo(f"  TLS    {r.tls}" + ("" if r.enforced_by == "pg_hba" else f"; {TLS_SETTINGS}"))
        click.echo()
