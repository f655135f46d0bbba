"""Operations for the PostgreSQL server host: packages, the cluster, its TLS certificate
and its run state. All read the host through named facts and yield nothing when the
host already matches."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, StringCommand, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from ..facts import ClusterServerState, FilesState
from ..layout import ClusterLayout


@operation()
def packages(version: int):
    """
    Install the PostgreSQL server and client of ``version``, openssl, pgBackRest and cron (which
    runs the backups), if missing.

    **Example:**

    .. code:: python

        cluster.packages(name="Install PostgreSQL", version=15)
    """
    wanted = [f"postgresql-{version}", f"postgresql-client-{version}", "openssl", "pgbackrest", "cron"]
    installed = host.get_fact(DebPackages)
    missing = [p for p in wanted if p not in installed]
    if missing:
        # Refresh the index only when something is to be installed: a no-op run stays one.
        yield from apt.update._inner()
        yield from apt.packages._inner(packages=missing)


@operation()
def present(cluster: ClusterLayout):
    """
    Create the cluster if absent; an existing one of that name is adopted.

    **Example:**

    .. code:: python

        cluster.present(name="Create the cluster", cluster=layout)
    """
    have = host.get_fact(FilesState, paths=(cluster.postgresql_conf,))
    # postgresql-common knows a cluster by its postgresql.conf, as pg_lsclusters does.
    if cluster.postgresql_conf in have:
        host.noop(f"cluster {cluster.version}/{cluster.name} exists")
        return
    yield StringCommand(
        "pg_createcluster", "--port", str(cluster.port), "--locale", "C.UTF-8", "--encoding", "UTF8",
        str(cluster.version), cluster.name, "--", "--auth-local=peer", "--auth-host=scram-sha-256",
    )


@operation()
def running(cluster: ClusterLayout):
    """
    Start the cluster, or make it load changed configuration: reload when only
    reloadable settings or pg_hba changed, restart when a setting needs it.

    A bad pg_hba.conf is refused before any reload: PostgreSQL would keep its old rules
    silently, so the operation fails and names the lines instead.

    **Example:**

    .. code:: python

        cluster.running(name="Run the cluster", cluster=layout)
    """
    ctl = ("pg_ctlcluster", str(cluster.version), cluster.name)
    state = host.get_fact(
        ClusterServerState, version=cluster.version, cluster=cluster.name, port=cluster.port,
        files=cluster.config_files, _su_user="postgres",
    )
    if state is None:
        yield StringCommand(*ctl, "start")
        return
    if not state.reachable:  # online but not on the configured port: the port changed
        yield StringCommand(*ctl, "restart")
        return
    stale = [path for path, mtime in state.file_mtimes.items() if mtime > state.conf_load_time]
    if not stale and not state.pending_restart:
        return
    if state.hba_errors:
        raise OperationError(
            f"{cluster.pg_hba_conf} has errors ({'; '.join(state.hba_errors)}); "
            "the server keeps its previous rules and was not reloaded",
        )
    # pg_ctlcluster reload only signals the server; wait until it has re-read its files,
    # then restart only if a setting reports that it needs one.
    v, n, port = cluster.version, cluster.name, cluster.port
    query = (
        f"SELECT extract(epoch FROM pg_conf_load_time()) > {state.conf_load_time},"
        " (SELECT count(*) FROM pg_settings WHERE pending_restart)"
    )
    yield (
        f"pg_ctlcluster {v} {n} reload && for i in $(seq 100); do "
        f"case $(runuser -u postgres -- psql -XAtq -p {port} -d postgres -c '{query}') in "
        f"'t|0') exit 0;; t*) exec pg_ctlcluster {v} {n} restart;; esac; sleep 0.1; done; "
        f"echo 'cluster {v}/{n} did not reload within 10 s' >&2; exit 1"
    )
