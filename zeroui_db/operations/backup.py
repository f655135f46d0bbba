"""Backups of the pilot's cluster with pgBackRest: its configuration, the backup script and
its schedule, the stanza, and a first full backup (see README, "Backups")."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, deploy, operation
from pyinfra.operations import files

from ..config import Site
from ..facts import BackupRepository
from ..layout import ClusterLayout
from ..templates import template_path
from .report import progress


@deploy("pgBackRest configuration")
def configured(cluster: ClusterLayout, site: Site, ledger_database: str | None):
    """The repository directory, pgbackrest.conf, the backup script and its cron schedule.
    Written before the cluster (re)starts: its archive_command uses them."""
    backup = site.backup
    files.directory(
        name=f"Backup repository {backup.repository}", path=backup.repository,
        user="postgres", group="postgres", mode="750", present=True,
    )
    files.template(
        name="pgbackrest.conf", src=template_path("pgbackrest.conf.j2"), dest=cluster.pgbackrest_conf,
        user="postgres", group="postgres", mode="640", create_remote_dir=False,
        site=site, cluster=cluster, backup=backup,
    )
    # root's, runnable by postgres: the scheduled job runs as postgres and may not change it.
    files.template(
        name="Backup script", src=template_path("zeroui-backup.sh.j2"), dest=cluster.backup_script,
        user="root", group="postgres", mode="750", create_remote_dir=False,
        site=site, cluster=cluster, ledger_database=ledger_database,
    )
    files.template(
        name="Backup schedule", src=template_path("backup.cron.j2"), dest=cluster.cron_file,
        user="root", group="root", mode="644", create_remote_dir=True,
        site=site, cluster=cluster, backup=backup,
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
    have = host.get_fact(BackupRepository, repository=repository, stanza=cluster.stanza, _su_user="postgres")
    if have.stanza:
        host.noop(f"stanza {cluster.stanza} exists")
        return
    yield StringCommand("pgbackrest", f"--config={cluster.pgbackrest_conf}", f"--stanza={cluster.stanza}",
                        "--log-level-console=warn", "stanza-create", _su_user="postgres")


@operation()
def first_full(cluster: ClusterLayout, repository: str):
    """
    Make the first full backup (with its anchor) if the stanza holds none: from the first
    deploy on, the cluster can be restored.

    **Example:**

    .. code:: python

        backup.first_full(name="First full backup", cluster=layout, repository="/var/lib/pgbackrest")
    """
    have = host.get_fact(BackupRepository, repository=repository, stanza=cluster.stanza, _su_user="postgres")
    if have.backups:
        host.noop(f"stanza {cluster.stanza} holds {have.backups} full backup(s)")
        return
    progress(f"make the first full backup of {cluster.version}/{cluster.name}")
    yield StringCommand(cluster.backup_script, "full", _su_user="postgres")
