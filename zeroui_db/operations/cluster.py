"""Operations for the PostgreSQL server host: packages, the cluster, its TLS certificate
and its run state. All read the host through named facts and yield nothing when the
host already matches."""

from __future__ import annotations

import shlex
from pathlib import Path

from psycopg import sql
from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from ..contract import MAINTENANCE_DB
from ..facts import ClusterServerState, FilesState
from ..layout import ClusterLayout
from ..privilege import as_server_user
from .report import progress

SSL_DISABLED = "cannot match because SSL is disabled"


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
        # A run killed while dpkg was unpacking leaves it "interrupted", and apt refuses to
        # install anything until the half-done packages are configured.
        yield "dpkg --configure -a"
        yield from apt.update._inner()
        yield from apt.packages._inner(packages=missing)


# What initdb makes in base/: template1, template0 and postgres. More means someone created
# a database there.
INITDB_DATABASES = 3


def _script(cluster: ClusterLayout, *lines: str) -> StringCommand:
    """A shell script over the cluster's paths, each passed through pyinfra's quoting once,
    as the variables d (data), c (configuration), v (the version's configuration) and m
    (the creation marker)."""
    paths = {"d": cluster.data_directory, "c": cluster.conf_dir, "v": str(Path(cluster.conf_dir).parent),
             "m": cluster.creation_marker}
    bits = []
    for var, path in paths.items():
        bits += [f"{var}=", QuoteString(path), "; "]
    return StringCommand(*bits, "; ".join(lines), _separator="")


def _create_lines(cluster: ClusterLayout) -> tuple[str, ...]:
    create = StringCommand(
        "pg_createcluster", "--port", str(cluster.port), "--datadir", '"$d"', "--locale", "C.UTF-8",
        "--encoding", "UTF8", str(cluster.version), QuoteString(cluster.name),
        "--", "--auth-local=peer", "--auth-host=scram-sha-256",
    ).get_raw_value()
    return (
        # A data directory already there is not this deploy's: pg_createcluster configures it
        # as it is, and no marker is written, so nothing ever removes it.
        f'if [ -n "$(ls -A "$d" 2>/dev/null)" ]; then exec {create}; fi',
        # pg_createcluster makes the version's directory owned by postgres; so do we, first.
        f'{{ [ -d "$v" ] || install -d -o postgres -g postgres "$v"; }} && install -d "$c" && : > "$m" '
        f'&& {create} && rm -f "$m"',
    )


@operation()
def present(cluster: ClusterLayout):
    """
    Create the cluster if absent; an existing one of that name is adopted.

    A kill during ``pg_createcluster`` (initdb) leaves a data directory without the
    ``postgres`` database that would start, be adopted, and fail every later run. So the
    creation is bracketed by a marker file (``ClusterLayout.creation_marker``), removed only
    once the cluster is complete and before anything starts it; a cluster found with its
    marker is this deploy's unfinished work and is made again. One that runs or holds a
    database beyond initdb's own is never removed, marker or not: the operation fails.

    **Example:**

    .. code:: python

        cluster.present(name="Create the cluster", cluster=layout)
    """
    have = host.get_fact(FilesState, paths=(cluster.postgresql_conf, cluster.creation_marker))
    where = f"cluster {cluster.version}/{cluster.name}"
    if cluster.creation_marker in have:
        progress(f"{where} was begun by an earlier deploy that never finished: making it again")
        refuse = (f"{where}: {cluster.creation_marker} says its creation never finished, but it "
                  "{}; nothing was removed (delete the marker to adopt it as it is)")
        yield _script(
            cluster,
            # initdb's bootstrap backend leaves a postmaster.pid too: running means its process lives.
            'p=$(head -n 1 "$d/postmaster.pid" 2>/dev/null)',
            'if [ -n "$p" ] && kill -0 "$p" 2>/dev/null && ! grep -qs "^State:[[:space:]]*Z" "/proc/$p/status"; '
            f'then echo {shlex.quote(refuse.format("is running"))} >&2; exit 1; fi',
            f'if [ "$(ls "$d/base" 2>/dev/null | wc -l)" -gt {INITDB_DATABASES} ] '
            '|| [ -n "$(ls -A "$d/pg_tblspc" 2>/dev/null)" ]; '
            f'then echo {shlex.quote(refuse.format("holds databases"))} >&2; exit 1; fi',
            # What pg_createcluster wrote; it refuses to run while they exist. Files others put
            # in the configuration directory (conf.d fragments) stay.
            'rm -rf "$d" && rm -f "$c/postgresql.conf" "$c/pg_hba.conf" "$c/pg_ident.conf"',
            *_create_lines(cluster),
        )
        return
    # postgresql-common knows a cluster by its postgresql.conf, as pg_lsclusters does.
    if cluster.postgresql_conf in have:
        host.noop(f"{where} exists")
        return
    yield _script(cluster, *_create_lines(cluster))


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
    ctl = ("pg_ctlcluster", str(cluster.version), QuoteString(cluster.name))
    state = host.get_fact(
        ClusterServerState, version=cluster.version, cluster=cluster.name, port=cluster.port,
        files=cluster.config_files,
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
    # pg_hba_file_rules judges the file by the settings in force: with ssl turned off by hand,
    # every hostssl line "cannot match". The reload reads postgresql.conf (ssl = on) before
    # pg_hba.conf, so those lines are fine once it runs; any other error is real.
    errors = [e for e in state.hba_errors if SSL_DISABLED not in e]
    if errors:
        raise OperationError(
            f"{cluster.pg_hba_conf} has errors ({'; '.join(errors)}); "
            "the server keeps its previous rules and was not reloaded",
        )
    # pg_ctlcluster reload only signals the server; wait until it has re-read its files,
    # then restart only if a setting reports that it needs one.
    query = sql.SQL(
        "SELECT extract(epoch FROM pg_conf_load_time()) > {}, (SELECT count(*) FROM pg_settings WHERE pending_restart)"
    ).format(sql.Literal(state.conf_load_time)).as_string()
    yield StringCommand(
        *ctl, "reload", "&&", "for i in $(seq 100); do",
        "case", "$(", as_server_user("psql", "-XAtq", "-p", str(cluster.port), "-d", MAINTENANCE_DB,
                                     "-c", QuoteString(query)), ")", "in",
        "'t|0') exit 0;;", "t*) exec", *ctl, "restart;;", "esac;", "sleep 0.1;", "done;",
        "echo", QuoteString(f"cluster {cluster.version}/{cluster.name} did not reload within 10 s"), ">&2;", "exit 1",
    )
