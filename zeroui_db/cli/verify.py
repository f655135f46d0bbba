"""``zeroui-db verify INVENTORY``: the contract's connection matrix, tried from the client
hosts themselves (see ``zeroui_db/verify.py``). It changes nothing anywhere: no file, no
role; the probe runs from stdin.

Exit 0: every attempt went as the contract says. 1: at least one did not (the cells are
named). 2: it could not verify (one line why).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from .. import contract, tls
from ..config import Site
from ..secret_store import SecretStore
from ..verify import Attempt, CannotVerify, Cell, Trust, Vantage, verify_host
from .inventory import load_inventory, load_site

MARKS = {"match": "", "mismatch": "!", "unverified": "?"}
WORST = ("mismatch", "unverified", "match")


class _Exit2(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"zeroui-db verify: could not verify: {self.message}", err=True)


def _passwords(site: Site, store: SecretStore) -> Callable[[Attempt], str]:
    """The password for an attempt, from the site's secrets store (or its environment overrides)."""
    def password(a: Attempt) -> str:
        try:
            if a.kind != "admin":
                return store.password(a.role)
            if a.endpoint.workstation:
                return store.password(contract.ADMIN_ROLE)
            return store.endpoint_admin_password(a.endpoint.plane.key)
        except KeyError as e:
            raise CannotVerify(e.args[0]) from None
    return password


def _trust(site: Site, store: SecretStore) -> Trust:
    pems = {}
    for key, endpoint in site.endpoints.items():
        path = Path(endpoint.ca_file or tls.ca_cert_path(store.path.parent, site.name))
        try:
            pems[key] = path.read_text()
        except OSError:
            raise CannotVerify(f"{path}: the CA of the {key} endpoint is missing on this machine; "
                               "deploy the site first, or restore it") from None
    return Trust(pems)


def _vantages(inventory) -> list[tuple[object, Vantage]]:
    out = []
    for host in inventory:
        groups = tuple(g for g in contract.CLIENT_GROUPS if host in inventory.get_group(g.key, []))
        if groups:
            out.append((host, Vantage(host.name, groups)))
    return out


def run(inventory, site: Site, store: SecretStore) -> list[Cell]:
    """Connect to every client host as pyinfra does and run the attempts there, in parallel."""
    import gevent
    from pyinfra.api import Config, State
    from pyinfra.api.exceptions import ConnectError

    vantages = _vantages(inventory)
    if not vantages:
        raise CannotVerify("no host in the client groups (" + ", ".join(g.key for g in contract.CLIENT_GROUPS)
                           + "): nothing to verify from")
    trust, password = _trust(site, store), _passwords(site, store)
    state = State(inventory, Config())

    def one(host, vantage: Vantage) -> list[Cell]:
        try:
            host.connect(show_errors=False, raise_exceptions=True)
        except ConnectError as e:
            raise CannotVerify(f"host {host.name}: cannot connect: {e}") from None
        try:
            return verify_host(site, host, vantage, trust, password)
        finally:
            host.disconnect()

    jobs = [state.pool.spawn(one, host, vantage) for host, vantage in vantages]
    gevent.joinall(jobs)
    return [cell for job in jobs for cell in job.get()]  # get() raises a job's error


def inventory_groups(inventory) -> dict[str, tuple[str, ...]]:
    """Host name -> the client groups the inventory puts it in."""
    return {v.name: tuple(g.key for g in v.groups) for _, v in _vantages(inventory)}


def verdict(cells: list[Cell]) -> str:
    return next(v for v in WORST if any(c.verdict == v for c in cells) or v == "match")


# -- output ---------------------------------------------------------------------------------------

def _row_label(cells: list[Cell]) -> str:
    a = cells[0].attempt
    if not a.tls:
        return f"without TLS ({len({c.attempt.role for c in cells})} roles)"
    users = sorted({c.attempt.role for c in cells})
    if a.kind == "superuser":
        return f"{users[0]} (superuser)"
    if a.kind == "admin":
        return f"{users[0]} (admin)" if len(users) == 1 else "admin (" + ", ".join(users) + ")"
    return a.role


def _cell_text(cells: list[Cell]) -> str:
    observed = sorted({c.observed for c in cells})
    worst = next(v for v in WORST if any(c.verdict == v for c in cells) or v == "match")
    return MARKS[worst] + ("/".join(observed))


def table(cells: list[Cell], inventory_groups: dict[str, tuple[str, ...]] | None = None) -> str:
    """The matrix per host: rows role, columns plane database; ``!`` marks a mismatch."""
    databases = list(dict.fromkeys(c.attempt.endpoint.database for c in cells))
    lines = []
    for host in dict.fromkeys(c.host for c in cells):
        mine = [c for c in cells if c.host == host]
        groups = list(dict.fromkeys(g for c in mine for g in c.groups))
        listed = (inventory_groups or {}).get(host, tuple(groups))
        by_address = [g for g in groups if g not in listed]
        sources = sorted({c.source for c in mine if c.source})
        lines.append(f"{host}  ({', '.join(listed) or 'no group'}"
                     f"{'; by address: ' + ', '.join(by_address) if by_address else ''})"
                     f"  from {', '.join(sources) or '?'}")
        rows: dict[tuple, dict[str, list[Cell]]] = {}
        for c in mine:
            a = c.attempt
            key = (a.tls, a.kind, a.role if a.kind in ("app", "ro") else a.kind) if a.tls else (False,)
            rows.setdefault(key, {}).setdefault(a.endpoint.database, []).append(c)
        labels = {key: _row_label([c for cs in row.values() for c in cs]) for key, row in rows.items()}
        width = max(len(label) for label in labels.values())
        widths = [max(len(db), 9) for db in databases]
        lines.append("  " + "  ".join([f"{'role':<{width}}", *(f"{d:<{w}}" for d, w in zip(databases, widths))]))
        for key, row in rows.items():
            texts = [_cell_text(row[db]) if db in row else "" for db in databases]
            styled = [click.style(f"{t:<{w}}", fg="red", bold=True) if t.startswith(("!", "?")) else f"{t:<{w}}"
                      for t, w in zip(texts, widths)]
            lines.append("  " + "  ".join([f"{labels[key]:<{width}}", *styled]).rstrip())
        lines.append("")
    return "\n".join(lines)


def finding(c: Cell) -> str:
    a, r = c.attempt, c.result
    got = r["outcome"] + (f": {r['sqlstate']} {r['message']}" if r["sqlstate"] else f": {r['message']}" if r[
        "message"] else "")
    expected = "allowed" if c.expected.allowed else "refused"
    return (f"{MARKS[c.verdict]} {c.host} ({', '.join(c.groups) or 'no group'}) as {a.role} to {a.endpoint.database}"
            f" at {a.endpoint.host}:{a.endpoint.port} {'with' if a.tls else 'without'} TLS: expected {expected}"
            f" ({c.expected.because}), got {c.observed}: {got}")


def report(site: Site, inventory_path: str, cells: list[Cell],
           inventory_groups: dict[str, tuple[str, ...]] | None = None) -> dict:
    hosts = {}
    for c in cells:
        entry = hosts.setdefault(c.host, {"host": c.host, "inventory_groups": list((inventory_groups or {}).get(
            c.host, ())), "groups": [], "sources": []})
        entry["groups"] = list(dict.fromkeys([*entry["groups"], *c.groups]))
        entry["sources"] = sorted({*entry["sources"], *([c.source] if c.source else [])})
    return {
        "site": site.name, "inventory": inventory_path, "verdict": verdict(cells),
        "attempts": len(cells), "mismatches": sum(c.verdict == "mismatch" for c in cells),
        "unverified": sum(c.verdict == "unverified" for c in cells),
        "hosts": list(hosts.values()), "cells": [c.as_json() for c in cells],
    }


@click.command("verify")
@click.argument("inventory", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the matrix as JSON (every attempt; see the README).")
def verify(inventory: str, as_json: bool) -> None:
    """Try the contract's connection matrix from every client host of INVENTORY.

    Exit 0 when every attempt goes as the contract says, 1 on any mismatch, 2 when it could
    not verify.
    """
    try:
        try:
            loaded = load_inventory(inventory)
            site = load_site(inventory, loaded)
        except click.ClickException as e:
            raise CannotVerify(e.message) from None
        cells = run(loaded, site, SecretStore(site.name))
    except CannotVerify as e:
        raise _Exit2(str(e)) from None
    result = verdict(cells)
    if as_json:
        click.echo(json.dumps(report(site, inventory, cells, inventory_groups(loaded)), indent=2))
    else:
        hosts = len({c.host for c in cells})
        click.echo(f"site {site.name}: {len(cells)} attempts from {hosts} host{'s' * (hosts != 1)}\n")
        click.echo(table(cells, inventory_groups(loaded)))
        for c in cells:
            if c.verdict != "match":
                click.secho(finding(c), fg="red")
        mismatches = sum(c.verdict == "mismatch" for c in cells)
        if result == "match":
            click.secho("the contract holds: every attempt went as it says", fg="green")
        elif result == "mismatch":
            click.secho(f"{mismatches} attempt{'s' * (mismatches != 1)} not as the contract says "
                        "(! in the matrix)", fg="red", bold=True)
    if result == "unverified":
        unverified = [c for c in cells if c.verdict == "unverified"]
        raise _Exit2(f"{len(unverified)} attempts could not tell; first: {finding(unverified[0])}")
    sys.exit(1 if result == "mismatch" else 0)
