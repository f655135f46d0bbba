"""Backups of the pilot's cluster with pgBackRest: its configuration, the backup script and
its schedule, the stanza, and a first full backup (see README, "Backups")."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, deploy, operation
from pyinfra.operations import files

from ..backups import pgbackrest
from ..config import Site
from ..facts import BackupRepository
from ..layout import ClusterLayout
from ..privilege import SERVER_USER, as_server_user
from ..templates import render_template
from . import private_file
from .report import progress


@deploy("pgBackRest configuration")
def configured(cluster: ClusterLayout, site: Site, ledger_database: str | None):
    """The repository directory, pgbackrest.conf, the backup script and its cron schedule.
    Written before the cluster (re)starts: its archive_command uses them. The files go through
    stdin like the cluster's own configuration (see private_file.py)."""
    backup = site.backup
    files.directory(
        name=f"Backup repository {backup.repository}", path=backup.repository,
        user=SERVER_USER, group=SERVER_USER, mode="750", present=True,
    )
    private_file.present(
        name="pgbackrest.conf", dest=cluster.pgbackrest_conf, user=SERVER_USER, group=SERVER_USER, mode="640",
        content=render_template("pgbackrest.conf.j2", site=site, cluster=cluster, backup=backup).encode(),
    )
    # root's, runnable by postgres: the scheduled job runs as postgres and may not change it.
    private_file.present(
        name="Backup script", dest=cluster.backup_script, user="root", group=SERVER_USER, mode="750",
        content=render_template("zeroui-backup.sh.j2", site=site, cluster=cluster,
                                ledger_database=ledger_database).encode(),
    )
    private_file.present(
        name="Backup schedule", dest=cluster.cron_file, user="root", group="root", mode="644",
        content=render_template("backup.cron.j2", site=site, cluster=cluster, backup=backup).encode(),
    )


@operation()
def stanza(cluster: ClusterLayout, repository: str):
    """
    Create the cluster's stanza in the repository, as soon as the cluster runs with WAL
    archiving: until then pgBackRest refuses the WAL the server hands it.

    **Example:**

    .. code:: python

        backup.stanza(name="pgBackRest stanza", cluster=layout, repository="/var/lib/pgbackrest")
    """
    have = host.get_fact(BackupRepository, repository=repository, stanza=cluster.stanza)
    if have.stanza:
        host.noop(f"stanza {cluster.stanza} exists")
        return
    yield as_server_user(*(QuoteString(a) for a in pgbackrest(cluster, "--log-level-console=warn", "stanza-create")))


@operation()
def first_full(cluster: ClusterLayout, repository: str):
    """
    Make the first full backup (with its anchor) if the stanza holds none: from the first
    deploy on, the cluster can be restored.

    **Example:**

    .. code:: python

        backup.first_full(name="First full backup", cluster=layout, repository="/var/lib/pgbackrest")
    """
    have = host.get_fact(BackupRepository, repository=repository, stanza=cluster.stanza)
    if have.backups:
        host.noop(f"stanza {cluster.stanza} holds {have.backups} full backup(s)")
        return
    progress(f"make the first full backup of {cluster.version}/{cluster.name}")
    yield as_server_user(QuoteString(cluster.backup_script), "full")
