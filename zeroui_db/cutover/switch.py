"""The switch: the target's audit must be clean, then the env files of the cut-over planes are
written from the target inventory, as its deploy writes them (``operations/envfile.py``,
run through pyinfra's API on the target's service hosts). Only the URL changes: the same
file names, the same variable, the same app role."""

from __future__ import annotations

from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops

from .. import audit as auditing
from .. import contract, envfiles, live
from ..config import Server, Site
from ..contract import Plane
from ..operations import envfile


def audit(site: Site, observed: list[tuple[object, Server]], password: str, ca_file) -> auditing.Report:
    """The audit of ``site``'s servers, in-process as ``zeroui-db audit`` runs it: each server
    read through its host as the audit role. ``ca_file(server)`` names its CA."""
    return auditing.audit(site, [live.observe(host, server, password, ca_file(server)) for host, server in observed])


def only_the_url_changes(plane: Plane, before: str, after: str) -> str | None:
    """Why ``after`` (the target's env file) is not ``before`` (the source's) with another URL."""
    def split(text: str) -> tuple[list[str], dict[str, str]]:
        lines = text.splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        return [line for line in lines if "=" not in line or line.startswith("#")], values

    (rest_before, vars_before), (rest_after, vars_after) = split(before), split(after)
    if set(vars_before) != {plane.env_var} or set(vars_after) != {plane.env_var}:
        return f"{plane.key}: the env files should hold {plane.env_var} only (source: {sorted(vars_before)}, " \
               f"target: {sorted(vars_after)})"
    if rest_before != rest_after:
        return f"{plane.key}: the env files differ in more than the URL"
    return None


def render(site: Site, plane: Plane, password: str) -> str:
    return envfiles.render(site, site.endpoint(plane), password)


def write_env_files(state, inventory, deployment, planes: list[Plane]) -> list[str]:
    """Write the env files of ``planes`` on the target's service hosts (``state``: connected to
    them); the hosts whose operation failed."""
    site = deployment.site
    hosts = {}
    for group in contract.SERVICE_GROUPS:
        if group.plane in planes:
            for host in inventory.get_group(group.key, []):
                hosts.setdefault(host, []).append(site.endpoint(group.plane))
    for host, endpoints in hosts.items():
        add_op(state, envfile.plane_urls, host=host,
               name=f"Env files: {', '.join(e.plane.env_var for e in endpoints)}", site=site,
               endpoints=tuple(endpoints), store=deployment.store,
               ca_pems={e.plane.key: deployment.ca_pem(e) for e in endpoints})
    run_ops(state)
    return sorted(h.name for h in state.failed_hosts)


def service_hosts(inventory, planes: list[Plane]) -> set:
    return {h for g in contract.SERVICE_GROUPS if g.plane in planes for h in inventory.get_group(g.key, [])}
