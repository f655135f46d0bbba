"""pyinfra facts about the PostgreSQL host. Each tolerates absence (no packages, no
cluster yet) so that ``--dry`` works on a fresh host."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from psycopg import sql
from pyinfra.api import FactBase, QuoteString, StringCommand

from .catalog import ROLE_ATTRIBUTES
from .contract import MAINTENANCE_DB


@dataclass(frozen=True)
class ClusterInfo:
    version: int
    name: str
    port: int
    data_directory: str


@dataclass(frozen=True)
class PostgresHostInfo:
    distro_major: int | None  # the PostgreSQL major this distribution ships, if known
    clusters: tuple[ClusterInfo, ...]


class PostgresHost(FactBase):
    """
    The distribution's PostgreSQL major and the clusters postgresql-common knows (as
    ``pg_lsclusters`` lists them, read from their ``postgresql.conf`` in shell rather than
    by starting Perl):

    .. code:: python

        PostgresHostInfo(distro_major=15, clusters=(ClusterInfo(15, "main", 5432, "/var/lib/postgresql/15/main"),))
    """

    default = lambda self: PostgresHostInfo(None, ())  # noqa: E731

    def command(self) -> str:
        # postgresql-common knows the major once installed; before that, the package index.
        # The last "<name> = value" line of the file, quotes and comment stripped.
        conf_value = (
            "sed -n \"s/^[[:space:]]*{0}[[:space:]]*=[[:space:]]*'\\{{0,1\\}}\\([^'[:space:]#]*\\).*/\\1/p\""
            " \"$f\" | tail -n 1"
        )
        return (
            "if [ -x /usr/share/postgresql-common/supported-versions ]; then "
            "echo major $(/usr/share/postgresql-common/supported-versions | tail -n 1); "
            "else echo major $(apt-cache show --no-all-versions postgresql 2>/dev/null "
            "| sed -n 's/^Depends: postgresql-\\([0-9][0-9]*\\).*/\\1/p'); fi; "
            "for f in /etc/postgresql/*/*/postgresql.conf; do [ -f \"$f\" ] || continue; "
            "d=${f%/postgresql.conf}; n=${d##*/}; v=${d%/*}; v=${v##*/}; "
            f"p=$({conf_value.format('port')}); dd=$({conf_value.format('data_directory')}); "
            'echo cluster "$v" "$n" "${p:-5432}" "${dd:-/var/lib/postgresql/$v/$n}"; done'
        )

    def process(self, output):
        major, clusters = None, []
        for line in output:
            fields = line.split()
            if fields[:1] == ["major"] and len(fields) == 2 and fields[1].isdigit():
                major = int(fields[1])
            elif fields[:1] == ["cluster"] and len(fields) == 5 and fields[1].isdigit() and fields[3].isdigit():
                clusters.append(ClusterInfo(int(fields[1]), fields[2], int(fields[3]), fields[4]))
        return PostgresHostInfo(major, tuple(clusters))


@dataclass(frozen=True)
class ServerState:
    reachable: bool  # answered on its socket
    conf_load_time: float  # when it last read postgresql.conf / pg_hba.conf
    pending_restart: int  # settings changed on disk that only a restart applies
    hba_errors: tuple[str, ...]  # pg_hba_file_rules errors of the file on disk
    file_mtimes: dict[str, float]  # config files -> modification time


class ClusterServerState(FactBase):
    """
    What a running cluster has loaded, asked as the superuser over the local socket.
    Run it with ``_su_user="postgres"``; None when the cluster is not online.
    """

    default = lambda self: None  # noqa: E731

    def command(self, version: int, cluster: str, port: int, files: tuple[str, ...]) -> str:
        query = (
            "SELECT extract(epoch FROM pg_conf_load_time()),"
            " (SELECT count(*) FROM pg_settings WHERE pending_restart),"
            " (SELECT string_agg('line ' || line_number || ': ' || error, '; ')"
            "  FROM pg_hba_file_rules WHERE error IS NOT NULL)"
        )
        paths = " ".join(files)
        # The pid file tells "running" without pg_lsclusters (a perl start-up per call).
        return (
            f"test -s /var/run/postgresql/{version}-{cluster}.pid || exit 0; "
            f"echo server=$(psql -XAtq -F '|' -p {port} -d {MAINTENANCE_DB} -c \"{query}\" 2>/dev/null); "
            f"stat -c 'mtime=%.9Y %n' {paths} 2>/dev/null; true"
        )

    def process(self, output):
        server, mtimes = "", {}
        for line in output:
            if line.startswith("server="):
                server = line[len("server="):]
            elif line.startswith("mtime="):
                stamp, path = line[len("mtime="):].split(" ", 1)
                mtimes[path] = float(stamp)
        if not server and not mtimes:
            return None
        if not server:
            return ServerState(False, 0.0, 0, (), mtimes)
        load_time, pending, errors = server.split("|")
        return ServerState(True, float(load_time), int(pending), tuple(e for e in errors.split("; ") if e), mtimes)



class RoleAttributes(FactBase):
    """
    A role's attributes as ``pg_roles`` shows them, asked as the superuser over the
    local socket (run with ``_su_user="postgres"``); None when the role is absent or the
    cluster does not answer yet.

    .. code:: python

        {"super": False, "createdb": True, "createrole": True, "replication": False, "canlogin": True}
    """

    default = lambda self: None  # noqa: E731

    def command(self, role: str, port: int) -> StringCommand:
        query = sql.SQL("SELECT {} FROM pg_roles WHERE rolname = {}").format(ROLE_ATTRIBUTES, sql.Literal(role))
        return StringCommand(
            "psql", "-XAtq", "-p", str(port), "-d", MAINTENANCE_DB, "-c", QuoteString(query.as_string()),
            "2>/dev/null", "||", "true",
        )

    def process(self, output):
        text = "".join(output).strip()
        return json.loads(text) if text else None


@dataclass(frozen=True)
class FileState:
    mode: str  # octal, e.g. "600"
    user: str
    group: str
    sha1: str | None = None


class FilesState(FactBase):
    """
    Owner, mode and (for files) content hash of several paths in one round trip, without
    reading any contents back; absent paths are missing from the result:

    .. code:: python

        {"/etc/zeroui/env": FileState("750", "root", "root"),
         "/etc/zeroui/env/tenant.env": FileState("600", "root", "root", "ab12…")}
    """

    default = dict

    def command(self, paths: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f"for p in {quoted}; do "
            "if [ -f \"$p\" ]; then echo \"$(stat -c '%a %U %G' \"$p\") $(sha1sum < \"$p\" | cut -d' ' -f1) $p\"; "
            "elif [ -e \"$p\" ]; then echo \"$(stat -c '%a %U %G' \"$p\") - $p\"; fi; done"
        )

    def process(self, output):
        found = {}
        for line in output:
            mode, user, group, sha1, path = line.split(" ", 4)
            found[path] = FileState(mode, user, group, None if sha1 == "-" else sha1)
        return found


class XdgDirs(FactBase):
    """
    The deploying user's XDG data and config directories on the host.

    .. code:: python

        {"data": "/home/dev/.local/share", "config": "/home/dev/.config"}
    """

    def command(self) -> str:
        return 'echo "${XDG_DATA_HOME:-$HOME/.local/share}"; echo "${XDG_CONFIG_HOME:-$HOME/.config}"'

    def process(self, output):
        return {"data": output[0], "config": output[1]}


@dataclass(frozen=True)
class ServerKeyInfo:
    public_key: bytes | None  # PEM of the server key's public half; None: no key yet
    certificate: bytes | None  # PEM of the current certificate; None: none yet


class ServerKey(FactBase):
    """
    The public half of the server's TLS key and its current certificate, both public; the
    private key never leaves the host.

    .. code:: python

        ServerKeyInfo(public_key=b"-----BEGIN PUBLIC KEY-----...", certificate=b"-----BEGIN CERTIFICATE-----...")
    """

    default = lambda self: ServerKeyInfo(None, None)  # noqa: E731

    def requires_command(self, key_file: str, cert_file: str) -> str:
        return "openssl"

    def command(self, key_file: str, cert_file: str) -> StringCommand:
        return StringCommand(
            "(", "openssl", "pkey", "-pubout", "-in", QuoteString(key_file), "2>/dev/null", ";",
            "cat", QuoteString(cert_file), "2>/dev/null", ";", "true", ")",
        )

    def process(self, output):
        text = "\n".join(output) + "\n"
        def block(kind: str) -> bytes | None:
            begin, end = f"-----BEGIN {kind}-----", f"-----END {kind}-----"
            if begin not in text or end not in text:
                return None
            return text[text.index(begin): text.index(end) + len(end)].encode() + b"\n"
        return ServerKeyInfo(block("PUBLIC KEY"), block("CERTIFICATE"))


@dataclass(frozen=True)
class BackupRepositoryInfo:
    stanza: bool  # the stanza exists in the repository
    backups: int  # full backups it holds


class BackupRepository(FactBase):
    """
    Whether a pgBackRest repository holds a stanza and how many full backups, read from the
    stanza's backup.info without starting pgBackRest (run with ``_su_user="postgres"``: the
    repository is postgres's alone):

    .. code:: python

        BackupRepositoryInfo(stanza=True, backups=1)
    """

    default = lambda self: BackupRepositoryInfo(False, 0)  # noqa: E731

    def command(self, repository: str, stanza: str) -> str:
        info = shlex.quote(f"{repository}/backup/{stanza}/backup.info")
        # Backups are listed under [backup:current] as LABEL={...}; a full one's label ends in F.
        return (
            f"test -f {info} || exit 0; echo stanza; "
            f"sed -n '/^\\[backup:current\\]/,/^\\[/p' {info} | grep -c '^[0-9]\\{{8\\}}-[0-9]\\{{6\\}}F=' || true"
        )

    def process(self, output):
        lines = list(output)
        if not lines or lines[0] != "stanza":
            return BackupRepositoryInfo(False, 0)
        return BackupRepositoryInfo(True, int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0)
