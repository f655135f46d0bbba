"""``zeroui-db backup INVENTORY``: a backup of the pilot's cluster now, as the schedule makes
them: the receipts chain checked against its checkpoints and earlier anchors, the pgBackRest
backup, and its anchor (see zeroui_db/backups.py and templates/zeroui-backup.sh.j2, which
does the work on the workstation)."""

from __future__ import annotations

import time

import click

from .. import backups
from .workstation import workstation


@click.command("backup")
@click.argument("inventory", type=click.Path(exists=True, dir_okay=False))
@click.option("--type", "kind", type=click.Choice(["incr", "diff", "full"]), default="incr", show_default=True,
              help="pgBackRest backup type (an incremental backup without a full one before it becomes full).")
def backup(inventory: str, kind: str) -> None:
    """Back up the pilot's cluster of INVENTORY now, and anchor the receipts chain's head."""
    start = time.monotonic()
    with workstation(inventory) as ws:
        click.echo(f"backup of cluster {ws.cluster.version}/{ws.cluster.name} on {ws.host.name}, "
                   f"pgBackRest stanza {ws.cluster.stanza} in {ws.site.backup.repository}")
        ok, out, err = ws.run(ws.cluster.backup_script, kind, check=False)
        for line in out.splitlines():
            click.echo(f"  {line}")
        if not ok:
            refused = [line for line in out.splitlines() if line.startswith("refused:")]
            raise click.ClickException(f"{refused[0]}; no backup taken" if refused else
                                       f"the backup failed:\n{err.strip()[-2000:]}")
        _, info, _ = ws.run(*backups.pgbackrest(ws.cluster, "info", "--output=json"), what="pgbackrest info")
    repo = backups.parse_info(info)
    first = repo.backups[0].started.strftime("%Y-%m-%d %H:%M:%S UTC") if repo.backups else "-"
    click.echo(f"  repository: {repo.count('full')} full, {repo.count('diff')} differential and "
               f"{repo.count('incr')} incremental backups; restorable from {first} on")
    click.echo(f"took {time.monotonic() - start:.1f} s")
