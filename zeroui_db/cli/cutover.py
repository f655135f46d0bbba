"""``zeroui-db cutover --from INVENTORY --to INVENTORY``: move the planes' data from one site's
endpoints to another's (the pilot's cluster to the cloud's managed services), verified,
resumable, and reversible until the switch (see README, "Going live: the cutover").

Exit 0 done (or a clean ``--dry`` plan, or a rollback), 1 refused or not verified (one line
why, the source stays as it was or frozen), 2 could not run.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import contract
from ..cutover.runner import Cutover, Refused, Side, Unreachable
from ..cutover.switch import service_hosts
from ..secret_store import SecretStore
from .inventory import CannotRun, connect, load_inventory, load_site

_PLANES = [p.key for p in contract.POSTGRES_PLANES]


def _side(path: str) -> Side:
    inventory = load_inventory(path)
    site = load_site(path, inventory)
    return Side(path, inventory, site, SecretStore(site.name))


@click.command("cutover")
@click.option("--from", "source_file", required=True, metavar="INVENTORY", type=click.Path(exists=True, dir_okay=False),
              help="The site whose data moves (the pilot).")
@click.option("--to", "target_file", required=True, metavar="INVENTORY", type=click.Path(exists=True, dir_okay=False),
              help="The site it moves to, deployed and empty (the cloud).")
@click.option("--plane", "planes", multiple=True, type=click.Choice(_PLANES),
              help="Move only this plane (repeatable); all PostgreSQL planes by default.")
@click.option("--dry", is_flag=True, help="Pre-flight and plan only: change nothing anywhere.")
@click.option("--rollback", is_flag=True, help="Lift the freeze on the source (only before the switch).")
@click.option("--no-switch", is_flag=True,
              help="Stop after the verification: the source stays frozen, the env files unchanged.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, writable=True),
              help="Where to write the verification JSON (default: beside the secrets store).")
def cutover(source_file: str, target_file: str, planes: tuple[str, ...], dry: bool, rollback: bool,
            no_switch: bool, report_file: str | None) -> None:
    """Move the plane data of the site in --from to the site in --to: pre-flight, freeze the
    source's writes, copy, verify every table, then switch the env files."""
    if dry and rollback:
        raise click.UsageError("--dry and --rollback exclude each other")
    source, target = _side(source_file), _side(target_file)
    if source.site.name == target.site.name:
        raise CannotRun(f"--from and --to are the same site ({source.site.name})")
    chosen = [contract.PLANES_BY_KEY[k] for k in (planes or _PLANES)]
    job = Cutover(source, target, chosen, report_file=Path(report_file) if report_file else None)
    try:
        job.load_record(bool(planes), rollback=rollback)
        connect(source.inventory, {source.host(source.server(p)) for p in job.planes})
        if rollback:
            job.rollback()
            return
        needed = {target.host(target.server(p)) for p in job.planes} | service_hosts(target.inventory, job.planes)
        job.pyinfra_state = connect(target.inventory, needed)
        problems = job.preflight()
        if problems:
            for line in problems:
                click.echo(f"refused: {line}", err=True)
            raise SystemExit(1)
        if dry:
            click.echo("dry run: nothing was changed")
            return
        job.run(switch_too=not no_switch)
    except Refused as e:
        click.echo(f"refused: {e}", err=True)
        raise SystemExit(1) from None
    except Unreachable as e:
        raise CannotRun(str(e)) from None
    finally:
        if job.timings:
            click.echo("\n".join(job.times_text()))
