"""pyinfra facts about the PostgreSQL host. Each tolerates absence (no packages, no
cluster yet) so that ``--dry`` works on a fresh host."""

from __future__ import annotations

import json
from dataclasses import dataclass

from psycopg import sql
from pyinfra.api import FactBase, QuoteString, StringCommand

from .catalog import ROLE_ATTRIBUTES
from .contract import MAINTENANCE_DB
from .privilege import as_server_user


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
    What a running cluster has loaded, asked as the superuser over the local socket (needs
    root); None when the cluster is not online.
    """

    default = lambda self: None  # noqa: E731

    def command(self, version: int, cluster: str, port: int, files: tuple[str, ...]) -> StringCommand:
        query = (
            "SELECT extract(epoch FROM pg_conf_load_time()),"
            " (SELECT count(*) FROM pg_settings WHERE pending_restart),"
            " (SELECT string_agg('line ' || line_number || ': ' || error, '; ')"
            "  FROM pg_hba_file_rules WHERE error IS NOT NULL)"
        )
        # The pid file tells "running" without pg_lsclusters (a perl start-up per call).
        return StringCommand(
            "test", "-s", QuoteString(f"/var/run/postgresql/{version}-{cluster}.pid"), "||", "exit 0;",
            "echo", "server=$(", as_server_user("psql", "-XAtq", "-F", "'|'", "-p", QuoteString(str(port)),
                                                 "-d", MAINTENANCE_DB, "-c", QuoteString(query)), "2>/dev/null);",
            "stat", "-c", "'mtime=%.9Y %n'", *(QuoteString(f) for f in files), "2>/dev/null;", "true",
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
    local socket (needs root); None when the role is absent or the
    cluster does not answer yet.

    .. code:: python

        {"super": False, "createdb": True, "createrole": True, "replication": False, "canlogin": True}
    """

    default = lambda self: None  # noqa: E731

    def command(self, role: str, port: int) -> StringCommand:
        query = sql.SQL("SELECT {} FROM pg_roles WHERE rolname = {}").format(ROLE_ATTRIBUTES, sql.Literal(role))
        return StringCommand(
            as_server_user("psql", "-XAtq", "-p", str(port), "-d", MAINTENANCE_DB, "-c", QuoteString(query.as_string())),
            "2>/dev/null", "||", "true",
        )

    def process(self, output):
        text = "".join(output).strip()
        return json.loads(text) if text else None


class RoleVerifiers(FactBase):
    """
    Each existing role's password as ``pg_authid`` holds it, reduced to a digest
    (``scram.digest``: iterations, salt and the SHA-256 of the keys, never the keys; "" for
    a password that is not SCRAM), asked as the superuser over the local socket (run with
    ``_su_user="postgres"``). A role without a password maps to None, an absent role is
    missing, and a cluster that does not answer yet gives {}. Only a superuser may read
    ``pg_authid``: the pilot's cluster, never a managed service.

    .. code:: python

        {"zeroui_tenant_app": "4096:c2FsdA==:9f86d0…", "zeroui_tenant_ro": None}
    """

    default = dict

    def command(self, roles: tuple[str, ...], port: int) -> StringCommand:
        query = sql.SQL(
            "SELECT json_object_agg(rolname, CASE WHEN starts_with(rolpassword, 'SCRAM-SHA-256$')"
            " THEN split_part(rolpassword, '$', 2) || ':'"
            " || encode(sha256(convert_to(split_part(rolpassword, '$', 3), 'UTF8')), 'hex')"
            " WHEN rolpassword IS NOT NULL THEN '' END)"
            " FROM pg_authid WHERE rolname = ANY({})"
        ).format(sql.Literal(list(roles)))
        return StringCommand(
            "psql", "-XAtq", "-p", str(port), "-d", MAINTENANCE_DB, "-c", QuoteString(query.as_string()),
            "2>/dev/null", "||", "true",
        )

    def process(self, output):
        text = "".join(output).strip()
        return json.loads(text) if text else {}


@dataclass(frozen=True)
class FileState:
    mode: str  # octal, e.g. "600" ("1777" with the sticky bit); a symbolic link's own
    user: str
    group: str
    sha1: str | None = None  # regular files only
    kind: str = "f"  # "f" regular file, "d" directory, "l" symbolic link, "o" anything else


class FilesState(FactBase):
    """
    Owner, mode, kind and (for regular files) content hash of several paths in one round
    trip, without reading any contents back; a symbolic link is described, not followed;
    absent paths are missing from the result:

    .. code:: python

        {"/etc/zeroui/env": FileState("750", "root", "root", None, "d"),
         "/etc/zeroui/env/tenant.env": FileState("600", "root", "root", "ab12…", "f")}
    """

    default = dict

    def command(self, paths: tuple[str, ...]) -> StringCommand:
        return StringCommand(
            "for p in", *(QuoteString(p) for p in paths), "; do",
            "s=$(stat -c '%a %U %G' \"$p\" 2>/dev/null) || continue;",
            "if [ -L \"$p\" ]; then echo \"l $s - $p\";",
            "elif [ -f \"$p\" ]; then echo \"f $s $(sha1sum < \"$p\" | cut -d' ' -f1) $p\";",
            "elif [ -d \"$p\" ]; then echo \"d $s - $p\";",
            "else echo \"o $s - $p\"; fi; done",
        )

    def process(self, output):
        found = {}
        for line in output:
            kind, mode, user, group, sha1, path = line.split(" ", 5)
            found[path] = FileState(mode, user, group, None if sha1 == "-" else sha1, kind)
        return found


class RegularFiles(FactBase):
    """
    Which of ``paths`` are regular files, following symbolic links (a certificate is often a
    link, e.g. into /etc/letsencrypt/archive). Nothing about their contents is read:

    .. code:: python

        {"/etc/ssl/db.crt"}
    """

    default = set

    def command(self, paths: tuple[str, ...]) -> StringCommand:
        return StringCommand("for p in", *(QuoteString(p) for p in paths), '; do [ -f "$p" ] && echo "$p"; done; true')

    def process(self, output):
        return set(output)


class GroupExists(FactBase):
    """
    Whether the system knows group ``group_name`` (through NSS, as ``chgrp`` does: LDAP groups too).
    """

    default = bool

    def command(self, group_name: str) -> StringCommand:
        return StringCommand("getent", "group", QuoteString(group_name), ">/dev/null", "&&", "echo", "yes",
                             "||", "true")

    def process(self, output):
        return "yes" in output


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
    stanza's backup.info (as root: the repository is postgres's) without starting pgBackRest:

    .. code:: python

        BackupRepositoryInfo(stanza=True, backups=1)
    """

    default = lambda self: BackupRepositoryInfo(False, 0)  # noqa: E731

    def command(self, repository: str, stanza: str) -> StringCommand:
        info = QuoteString(f"{repository}/backup/{stanza}/backup.info")
        # Backups are listed under [backup:current] as LABEL={...}; a full one's label ends in F.
        return StringCommand(
            "test", "-f", info, "||", "exit", "0", ";", "echo", "stanza", ";",
            "sed", "-n", QuoteString("/^\\[backup:current\\]/,/^\\[/p"), info, "|",
            "grep", "-c", QuoteString("^[0-9]\\{8\\}-[0-9]\\{6\\}F="), "||", "true",
        )

    def process(self, output):
        lines = list(output)
        if not lines or lines[0] != "stanza":
            return BackupRepositoryInfo(False, 0)
        return BackupRepositoryInfo(True, int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0)
