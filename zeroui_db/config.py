"""An inventory's ``zeroui`` data, parsed into typed, validated site config.

Nothing touches a host before this succeeds. Every problem is reported as one line
naming the inventory, the key, what is wrong and how to fix it. The parser is written
by hand rather than with a schema library because those produce multi-line,
library-shaped messages, and the checks that matter most (hard boundary rules,
ambiguous networks) are contract logic that no schema library expresses.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from . import contract
from .contract import ClientGroup, Plane
from .networks import IPNetwork, NetworkRanges

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
# A DNS host name (RFC 1123 labels). Anything else in a host (a quote, a newline, a space,
# '@' or '/') would change the meaning of a URL, an env file or a configuration line.
HOST_NAME_RE = re.compile(r"^(?=.{1,253}\.?\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")
# A PostgreSQL role or database name the bundle will quote itself; kept to plain names.
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}\Z")
# Databases that are the server's own, never a plane's.
SYSTEM_DATABASES = (contract.MAINTENANCE_DB, "template0", "template1")
ADMIN_LOOPBACK = "127.0.0.1"  # where the deploy's admin connection arrives, also over SSH
LOOPBACK_NETWORKS = (f"{ADMIN_LOOPBACK}/32",)
ENV_FILE_MODES = ("0600", "0640")
DEFAULT_ENV_DIR = "/etc/zeroui/env"
CHANNEL_BINDING = ("require", "prefer")
# A system group name as Debian's adduser and shadow's groupadd accept it by default
# (NAME_REGEX, 32 characters); a leading digit would make chown read it as a GID.
GROUP_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
# The explicit override for a client group whose networks include 0.0.0.0/0 or ::/0.
ANY_ADDRESS_KEY = "allow_any_address"
# Directories that belong to the system or to everyone: the env files need a directory of
# their own, whose owner and mode the bundle sets. The FHS's top level and well-known
# directories below it; everything under the kernel's virtual trees; and home directories.
SHARED_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/lost+found", "/media",
    "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr", "/var",
    "/etc/alternatives", "/etc/apt", "/etc/cron.d", "/etc/cron.daily", "/etc/default", "/etc/init.d", "/etc/ldap",
    "/etc/logrotate.d", "/etc/network", "/etc/opt", "/etc/pam.d", "/etc/postgresql", "/etc/postgresql-common",
    "/etc/profile.d", "/etc/security", "/etc/skel", "/etc/ssh", "/etc/ssl", "/etc/ssl/certs", "/etc/ssl/private",
    "/etc/sudoers.d", "/etc/sysctl.d", "/etc/systemd", "/etc/systemd/system", "/etc/tmpfiles.d",
    "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/local",
    "/usr/local/bin", "/usr/local/etc", "/usr/local/lib", "/usr/local/sbin", "/usr/local/share", "/usr/sbin",
    "/usr/share", "/usr/src",
    "/var/backups", "/var/cache", "/var/lib", "/var/lib/apt", "/var/lib/dpkg", "/var/lib/postgresql", "/var/local",
    "/var/lock", "/var/log", "/var/log/postgresql", "/var/mail", "/var/opt", "/var/run", "/var/spool", "/var/tmp",
    "/var/www",
    "/run/lock", "/run/postgresql", "/run/systemd", "/run/user",
})
VIRTUAL_TREES = ("/proc/", "/sys/", "/dev/")
HOME_PARENTS = ("/home", "/run/user")  # /home/alice, /run/user/1000
# A PostgreSQL duration as role settings take it: a positive whole number and a unit.
# What a path that reaches configuration files and shells may not hold: quotes, whitespace,
# shell characters, control characters.
UNSAFE_PATH_CHAR_RE = re.compile(r"[\s'\"\\`$;&|<>*?#\x00-\x1f\x7f]")
DURATION_RE = re.compile(r"^[1-9][0-9]{0,8}(ms|s|min|h|d)\Z")
# A cron time field: digits, '*', ',', '-' and '/' only (the cron file is written from it).
CRON_FIELD_RE = re.compile(r"^[0-9*][0-9*,/-]*\Z")


class ConfigError(PyinfraError):
    """A bad inventory value; the message is the single line shown to the user."""

    def __init__(self, inventory: str, key: str, problem: str, fix: str):
        self.inventory, self.key = inventory, key
        super().__init__(f"inventory {inventory}: {key}: {problem}; {fix}")


@dataclass(frozen=True)
class ClusterConfig:
    version: int | None  # None: the distribution's PostgreSQL major, read from the host
    name: str
    port: int
    listen_addresses: tuple[IPAddress, ...]
    connect_host: str  # the address service hosts dial
    ssl_cert_file: str | None  # None: the site CA issues one for the server's own key
    ssl_key_file: str | None
    ssl_ca_file: str | None  # on the control machine: the CA of a certificate of one's own


@dataclass(frozen=True)
class Endpoint:
    """Where one plane's PostgreSQL database is, and what the bundle may do there.

    A *workstation* endpoint is a database on the site's own cluster (the pilot): the
    bundle manages the host too (packages, cluster, postgresql.conf, pg_hba). A *managed*
    endpoint is a provider's service: the bundle works at the database level only, as the
    provider's admin ("master") user, which is no superuser.
    """

    plane: Plane
    host: str  # what clients dial: a DNS name or an IP literal
    port: int
    database: str
    ca_file: str | None  # control machine path of the CA to trust; None: the site's own CA
    admin_user: str
    channel_binding: str  # "require" (SCRAM-PLUS, the default) or "prefer"
    workstation: bool

    @property
    def manages(self) -> tuple[str, ...]:
        """What this endpoint lets the bundle manage."""
        if self.workstation:
            return ("host", "packages", "cluster", "postgresql.conf", "pg_hba", "database")
        return ("database",)


@dataclass(frozen=True)
class Server:
    """One PostgreSQL server and the plane endpoints it holds: the pilot's cluster holds
    all three, a managed service one. Roles are per server, databases per endpoint."""

    endpoints: tuple[Endpoint, ...]
    limits: Limits | None = field(default=None, compare=False)

    @property
    def first(self) -> Endpoint:
        return self.endpoints[0]

    @property
    def key(self) -> str:
        """A short name for messages: the planes it holds."""
        return "+".join(e.plane.key for e in self.endpoints)

    @property
    def workstation(self) -> bool:
        return self.first.workstation

    @property
    def admin_user(self) -> str:
        return self.first.admin_user

    @property
    def admin_host(self) -> str:
        """Where the deploy's admin connection goes: the workstation's loopback (through the
        SSH session when remote), or the managed service's own address."""
        return ADMIN_LOOPBACK if self.workstation else self.first.host

    @property
    def port(self) -> int:
        return self.first.port

    @property
    def planes(self) -> tuple[Plane, ...]:
        return tuple(e.plane for e in self.endpoints)


@dataclass(frozen=True)
class GroupAccess:
    group: ClientGroup
    networks: tuple[IPNetwork, ...]
    planes: tuple[Plane, ...]

    @cached_property  # built once per site: validation and pg_hba ask the same questions
    def ranges(self) -> NetworkRanges:
        return NetworkRanges(self.networks)


@dataclass(frozen=True)
class EnvFiles:
    dir: str
    mode: str
    group: str | None


@dataclass(frozen=True)
class RoleLimits:
    """What one login role may hold: connections (CONNECTION LIMIT) and session settings
    (ALTER ROLE … SET), e.g. ``(("lock_timeout", "5s"),)``."""

    connections: int
    settings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Limits:
    """Per-role limits, the same for every plane, and the connection budget they add up to."""

    app: RoleLimits
    readonly: RoleLimits
    audit: RoleLimits  # the audit role, one per server
    admin_connections: int  # the pilot's admin role (a provider's admin is the provider's)
    reserved_connections: int  # for the superuser alone (superuser_reserved_connections)

    def max_connections(self, planes: int) -> int:
        """max_connections of a cluster holding ``planes`` plane databases: every role's limit
        fits at once, with the superuser's reserve on top."""
        return planes * (self.app.connections + self.readonly.connections) + self.audit.connections \
            + self.admin_connections + self.reserved_connections


@dataclass(frozen=True)
class BackupConfig:
    """pgBackRest on the workstation cluster (the pilot); managed services back up themselves."""

    repository: str  # repo1-path on the workstation
    retention_full: int  # full backups kept (with their incrementals and WAL)
    full_schedule: str  # cron time fields of the weekly full backup
    incremental_schedule: str  # cron time fields of the incremental backups
    archive_timeout: int  # seconds: at most this much committed work waits for WAL archiving


@dataclass(frozen=True)
class IdeConfig:
    data_dir: str | None  # None: $XDG_DATA_HOME/zeroui of the deploying user on the laptop
    config_dir: str | None  # None: $XDG_CONFIG_HOME/zeroui
    receipt_cache_limit: int


@dataclass(frozen=True)
class Site:
    name: str
    cluster: ClusterConfig | None  # None: no workstation cluster (every plane is a managed endpoint)
    endpoints: dict[str, Endpoint] = field(hash=False)  # plane key -> endpoint, PostgreSQL planes
    clients: dict[str, GroupAccess] = field(hash=False)
    env_files: EnvFiles
    ide: IdeConfig
    limits: Limits
    backup: BackupConfig | None  # None: no workstation cluster

    def access(self, group: ClientGroup) -> GroupAccess:
        return self.clients[group.key]

    def endpoint(self, plane: Plane) -> Endpoint:
        return self.endpoints[plane.key]

    @property
    def servers(self) -> tuple[Server, ...]:
        """Endpoints grouped by the server they live on, in contract order."""
        by_address: dict[tuple[bool, str, int], list[Endpoint]] = {}
        for plane in contract.POSTGRES_PLANES:
            e = self.endpoints[plane.key]
            by_address.setdefault((e.workstation, e.host, e.port), []).append(e)
        return tuple(Server(tuple(group), self.limits) for group in by_address.values())


_KIND_NAMES = {int: "a whole number", str: "a string", list: "a list", dict: "a dict", bool: "True or False"}


class _Reader:
    """Walks one dict, tracking the dotted key path for messages."""

    def __init__(self, inventory: str, data: Any, path: str):
        self.inventory, self.path = inventory, path
        if not isinstance(data, dict):
            self.fail(path, f"expected a dict, got {type(data).__name__}", "see the README's inventory format")
        self.data = data

    def fail(self, key: str, problem: str, fix: str):
        raise ConfigError(self.inventory, key, problem, fix)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def only(self, *allowed: str) -> None:
        for name in self.data:
            if name not in allowed:
                self.fail(self.key(str(name)), "unknown key", f"use one of: {', '.join(allowed)}")

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ..., hint: str = "") -> Any:
        if name not in self.data or self.data[name] is None and default is not ...:
            if default is ...:
                self.fail(self.key(name), "missing", hint or "set it in the inventory")
            return default
        value = self.data[name]
        # bool is an int in Python; a port of True is a typo, not a number.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            names = " or ".join(_KIND_NAMES[k] for k in kinds)
            self.fail(self.key(name), f"expected {names}, got {value!r}", hint or f"write {names}")
        return value

    def child(self, name: str, default: Any = ...) -> _Reader:
        return _Reader(self.inventory, self.get(name, dict, default), self.key(name))

    def strings(self, name: str, default: Any = ..., hint: str = "") -> list[str]:
        """A list of strings: a number there (which ``ipaddress`` would take for an
        address), None or a nested list is a mistake, never a value."""
        values = self.get(name, list, default, hint=hint)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                self.fail(f"{self.key(name)}[{i}]", f"expected a string, got {value!r}", "write a string")
        return values


def parse_site(data: Any, inventory: str = "?") -> Site:
    """Parse the ``zeroui`` dict of an inventory into a validated :class:`Site`."""
    if data is None:
        raise ConfigError(
            inventory, "zeroui", "missing",
            "give the workstation group a 'zeroui' dict (see README, 'Inventory format')",
        )
    top = _Reader(inventory, data, "")
    top.only("site", "cluster", "endpoints", "clients", "env_files", "ide", "limits", "backup")
    name = top.get("site", str, hint="name the site, e.g. 'pilot'")
    if not NAME_RE.match(name):
        top.fail("site", f"{name!r} is not a valid name", "use lowercase letters, digits, '-' and '_'")
    inventory = name if inventory == "?" else inventory
    top.inventory = inventory

    managed = _parse_endpoints(top.child("endpoints", {}))
    # The pilot's shape: no endpoints given, so every plane lives on the workstation cluster.
    on_cluster = [p for p in contract.POSTGRES_PLANES if p.key not in managed]
    cluster = None
    if "cluster" in data or on_cluster:
        cluster = _parse_cluster(top.child("cluster", {}))
        if not on_cluster:
            top.fail("cluster", "no plane lives on it (every plane has an endpoint)",
                     "remove the cluster section, or an endpoint so that plane stays on the cluster")
    for key, e in managed.items():
        if cluster and e.port == cluster.port and e.host in (cluster.connect_host, *map(str, cluster.listen_addresses)):
            top.fail(f"endpoints.{key}.host", f"{e.host}:{e.port} is the workstation cluster",
                     f"leave the {key} plane on the cluster (remove its endpoint), or point it at another server")
    site = Site(
        name=name,
        cluster=cluster,
        endpoints={p.key: managed.get(p.key) or _cluster_endpoint(cluster, p) for p in contract.POSTGRES_PLANES},
        clients=_parse_clients(top.child("clients", {}), workstation=cluster is not None),
        env_files=_parse_env_files(top.child("env_files", {})),
        ide=_parse_ide(top.child("ide", {})),
        limits=_parse_limits(top.child("limits", {})),
        backup=_parse_backup(top.child("backup", {})) if cluster else None,
    )
    if cluster is None and "backup" in data:
        top.fail("backup", "set, but no plane lives on a workstation cluster",
                 "remove it: a managed service backs up itself (see README, 'Backups')")
    _check_boundaries(site, top)
    return site


def _parse_cluster(r: _Reader) -> ClusterConfig:
    r.only("version", "name", "port", "listen_addresses", "connect_host", "ssl_cert_file", "ssl_key_file",
           "ssl_ca_file")
    version = r.get("version", (int, str), "distro")
    if version == "distro":
        version = None
    elif not isinstance(version, int) or version < 15:
        # 15 made schema public private to its database's owner; the privileges rely on it.
        r.fail(r.key("version"), f"{version!r} is not a supported PostgreSQL major", "use 15 or newer, or 'distro'")
    name = r.get("name", str, "main")
    if not NAME_RE.match(name):
        r.fail(r.key("name"), f"{name!r} is not a valid cluster name", "use lowercase letters, digits, '-' and '_'")
    port = r.get("port", int, 5432)
    if not 1024 <= port <= 65535:
        r.fail(r.key("port"), f"{port} is out of range", "use a port from 1024 to 65535")
    raw = r.strings("listen_addresses", ["127.0.0.1"])
    if not raw:
        r.fail(r.key("listen_addresses"), "is empty", "list the addresses clients connect to, e.g. ['127.0.0.1']")
    listen = []
    for i, value in enumerate(raw):
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            r.fail(
                f"{r.key('listen_addresses')}[{i}]", f"{value!r} is not an IP address",
                "list this host's own addresses (no '*', no host names)",
            )
        if address.is_unspecified:
            r.fail(f"{r.key('listen_addresses')}[{i}]",
                   f"{value} is a wildcard: the server would listen on every address of the host",
                   "list this host's own addresses, those clients connect to")
        listen.append(address)
    if ipaddress.ip_address(ADMIN_LOOPBACK) not in listen:
        r.fail(r.key("listen_addresses"), f"lacks {ADMIN_LOOPBACK}",
               f"add {ADMIN_LOOPBACK}: the deploy's admin connection arrives over loopback")
    connect_host = _host(r, "connect_host", str(listen[0]))
    try:
        if ipaddress.ip_address(connect_host) not in listen:
            r.fail(r.key("connect_host"), f"{connect_host} is not one of listen_addresses",
                   "use an address the server listens on, or add it to listen_addresses")
    except ValueError:
        pass  # a DNS name: it must resolve to a listen address, which only the network can tell
    cert = r.get("ssl_cert_file", str, None)
    key = r.get("ssl_key_file", str, None)
    ca = r.get("ssl_ca_file", str, None)
    if (cert is None) != (key is None):
        r.fail(r.key("ssl_cert_file"), "set without ssl_key_file (or the reverse)",
               "set both, or neither for a certificate from the site's own CA")
    if cert is not None and ca is None:
        r.fail(r.key("ssl_ca_file"), "missing for a certificate of your own",
               "name the CA certificate that signed ssl_cert_file (a file on this machine): clients verify the server")
    for k in ("ssl_cert_file", "ssl_key_file", "ssl_ca_file"):
        _path(r, k)
    return ClusterConfig(version, name, port, tuple(listen), connect_host, cert, key, ca)


def _host(r: _Reader, key: str, default: Any = ..., hint: str = "") -> str:
    """A DNS host name or an IP literal (IPv6 without brackets), nothing else."""
    value = r.get(key, str, default, hint=hint)
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None:
        if not HOST_NAME_RE.match(value):
            r.fail(r.key(key), f"{value!r} is not a host name or IP address",
                   "write a DNS name such as db.example.com, or an IP address such as 10.0.0.5 or fd00::5")
        return value.lower()  # DNS names are case-insensitive: one server, one spelling
    if address.is_unspecified:
        r.fail(r.key(key), f"{value} is a wildcard address, no host to connect to",
               "write the server's own address or DNS name")
    return str(address)  # DNS names are case-insensitive: one server, one spelling


def _path(r: _Reader, key: str) -> str | None:
    """An absolute path with no quotes, whitespace or control characters (it reaches
    configuration files and shells)."""
    value = r.get(key, str, None)
    if value is not None and (not value.startswith("/") or UNSAFE_PATH_CHAR_RE.search(value)):
        r.fail(r.key(key), f"{value!r} is not a plain absolute path",
               "write an absolute path without quotes, spaces or shell characters")
    # "/etc/zeroui/../../tmp" or "/tmp/" would pass a check by name and mean another place.
    if value is not None and (value.startswith("//") or posixpath.normpath(value) != value):
        r.fail(r.key(key), f"{value!r} has '.', '..', doubled or trailing '/' in it",
               f"write it plainly, e.g. {posixpath.normpath('/' + value.lstrip('/'))}")
    return value


def _cluster_endpoint(cluster: ClusterConfig, plane: Plane) -> Endpoint:
    """A plane on the workstation cluster: the contract's database, the bundle's admin role."""
    return Endpoint(plane, cluster.connect_host, cluster.port, plane.store, cluster.ssl_ca_file,
                    contract.ADMIN_ROLE, "require", workstation=True)


def _parse_endpoints(r: _Reader) -> dict[str, Endpoint]:
    r.only(*(p.key for p in contract.POSTGRES_PLANES))
    out = {}
    for plane in contract.POSTGRES_PLANES:
        if plane.key not in r.data:
            continue
        e = r.child(plane.key)
        e.only("host", "port", "database", "ca_file", "admin_user", "channel_binding")
        host = _host(e, "host", hint="the service's host name, e.g. tenant-db.example.com")
        port = e.get("port", int, 5432)
        if not 1 <= port <= 65535:
            e.fail(e.key("port"), f"{port} is out of range", "use a port from 1 to 65535")
        database = e.get("database", str, plane.store)
        admin = e.get("admin_user", str, hint="the provider's admin (master) user, e.g. zeroui_master")
        for key, value in (("database", database), ("admin_user", admin)):
            if not IDENT_RE.match(value):
                e.fail(e.key(key), f"{value!r} is not a plain PostgreSQL name", "use letters, digits and '_'")
        ca = _path(e, "ca_file")
        if ca is None:
            e.fail(e.key("ca_file"), "missing", "name the provider's CA certificate file (e.g. RDS's global bundle): "
                   "clients verify the server with it")
        binding = e.get("channel_binding", str, "require")
        if binding not in CHANNEL_BINDING:
            e.fail(e.key("channel_binding"), f"{binding!r} is not allowed",
                   f"use {' or '.join(CHANNEL_BINDING)} (prefer only where the service offers no SCRAM-SHA-256-PLUS)")
        out[plane.key] = Endpoint(plane, host, port, database, ca, admin, binding, workstation=False)
    # Endpoints on one server share its roles: they must agree on how to reach it.
    by_address: dict[tuple[str, int], Endpoint] = {}
    databases: dict[tuple[str, int, str], Endpoint] = {}
    for key, endpoint in out.items():
        other = by_address.setdefault((endpoint.host, endpoint.port), endpoint)
        if (other.admin_user, other.ca_file) != (endpoint.admin_user, endpoint.ca_file):
            r.fail(r.key(key), f"shares {endpoint.host}:{endpoint.port} with {other.plane.key} but not its "
                   "admin_user and ca_file", "one server has one admin and one CA: make them equal")
        if endpoint.database in SYSTEM_DATABASES:
            r.fail(r.key(f"{key}.database"), f"{endpoint.database} is the server's own database",
                   "give the plane a database of its own (the contract's name by default)")
        same = databases.setdefault((endpoint.host, endpoint.port, endpoint.database), endpoint)
        if same is not endpoint:
            r.fail(r.key(f"{key}.database"), f"{endpoint.database} on {endpoint.host}:{endpoint.port} is also "
                   f"the {same.plane.key} plane's", "each plane keeps a separate database (the contract)")
    return out


def _parse_clients(r: _Reader, workstation: bool) -> dict[str, GroupAccess]:
    r.only(*contract.CLIENT_GROUPS_BY_KEY)
    clients = {}
    for group in contract.CLIENT_GROUPS:
        default_nets = list(LOOPBACK_NETWORKS) if group is contract.ADMIN_HOSTS and workstation else []
        g = r.child(group.key, {})
        g.only("networks", ANY_ADDRESS_KEY, *(("planes",) if group is not contract.ADMIN_HOSTS else ()))
        any_address = g.get(ANY_ADDRESS_KEY, bool, False)
        networks = []
        for i, value in enumerate(g.strings("networks", default_nets)):
            try:
                net = ipaddress.ip_network(value)
            except ValueError as e:
                key = f"{g.key('networks')}[{i}]"
                fix = "write the network address with its prefix, e.g. 10.20.0.0/16 or 10.20.0.5/32"
                if "host bits set" in str(e):
                    fix = f"write {ipaddress.ip_network(value, strict=False)}"
                    r.fail(key, f"{value!r} has host bits set", fix)
                r.fail(key, f"{value!r} is not a valid CIDR network", fix)
            if net.prefixlen == 0 and not any_address:
                # CIS PostgreSQL Benchmark 5.9: host lines name the clients' networks, not everyone.
                r.fail(f"{g.key('networks')}[{i}]", f"{value} admits every address",
                       f"list the clients' own networks, or set {g.key(ANY_ADDRESS_KEY)}: True if it is really meant")
            networks.append(net)
        planes = []
        for i, value in enumerate(g.strings("planes", [p.key for p in group.default_planes])):
            key = f"{g.key('planes')}[{i}]"
            plane = contract.PLANES_BY_KEY.get(value)
            if plane is None:
                r.fail(key, f"unknown plane {value!r}",
                       f"use one of: {', '.join(p.key for p in contract.POSTGRES_PLANES)}")
            if not plane.is_postgres:
                r.fail(key, f"plane {value!r} is not a server database ({plane.store} lives on the laptop)",
                       f"use one of: {', '.join(p.key for p in contract.POSTGRES_PLANES)}")
            rule = contract.forbidding_rule(group, plane)
            if rule:
                r.fail(key, f"{group.title} may not reach {plane.store}: hard rule {rule.number} ({rule.text})",
                       "remove it; the contract does not allow this grant")
            if plane not in planes:
                planes.append(plane)
        loopback = ipaddress.ip_address(ADMIN_LOOPBACK)
        if workstation and group is contract.ADMIN_HOSTS and not any(loopback in n for n in networks):
            r.fail(g.key("networks"), f"lacks {ADMIN_LOOPBACK}",
                   f"add {ADMIN_LOOPBACK}/32: the deploy's admin connection arrives over loopback")
        clients[group.key] = GroupAccess(group, tuple(networks), tuple(planes))
    return clients


def _parse_env_files(r: _Reader) -> EnvFiles:
    r.only("dir", "mode", "group")
    directory = _path(r, "dir") or DEFAULT_ENV_DIR
    if directory in SHARED_DIRS or directory.startswith(VIRTUAL_TREES) or posixpath.dirname(directory) in HOME_PARENTS:
        r.fail(r.key("dir"), f"{directory} is a system or shared directory",
               f"give the env files a directory of their own, such as {DEFAULT_ENV_DIR} "
               "(the bundle sets its owner and mode)")
    mode = r.get("mode", str, "0600")
    if mode not in ENV_FILE_MODES:
        r.fail(r.key("mode"), f"{mode!r} is not allowed", f"use {' or '.join(ENV_FILE_MODES)}")
    group = r.get("group", str, None)
    if group is not None and not GROUP_NAME_RE.match(group):
        r.fail(r.key("group"), f"{group!r} is not a valid group name",
               "name a system group: lowercase letters, digits, '_' and '-', starting with a letter or '_', "
               "at most 32 characters")
    if mode == "0640" and not group:
        r.fail(r.key("group"), "missing for mode 0640", "name the group whose members may read the env files")
    return EnvFiles(directory, mode, group)


def _parse_ide(r: _Reader) -> IdeConfig:
    r.only("data_dir", "config_dir", "receipt_cache_limit")
    dirs = {}
    for key in ("data_dir", "config_dir"):
        dirs[key] = _path(r, key)  # None: the user's XDG directory
    limit = r.get("receipt_cache_limit", int, 500)
    if not 1 <= limit <= 1_000_000:
        r.fail(r.key("receipt_cache_limit"), f"{limit} is out of range", "keep between 1 and 1000000 receipts")
    return IdeConfig(dirs["data_dir"], dirs["config_dir"], limit)


DEFAULT_BACKUP_REPOSITORY = "/var/lib/pgbackrest"  # Debian's pgBackRest package makes it
# Defaults: 3 planes x (20 + 5) + 5 (audit) + 10 (admin) + 5 (reserved) = 95 connections on
# the pilot's cluster.
_ROLE_LIMITS = {
    "app": {"connections": 20, "statement_timeout": "30s", "lock_timeout": "5s",
            "idle_in_transaction_session_timeout": "60s"},
    "readonly": {"connections": 5, "statement_timeout": "5min", "lock_timeout": "5s",
                 "idle_in_transaction_session_timeout": "60s"},
    "audit": {"connections": 5, "statement_timeout": "1min", "lock_timeout": "5s",
              "idle_in_transaction_session_timeout": "60s"},
}
# An audit holds one connection to the maintenance database and one to each plane database.
_AUDIT_MIN_CONNECTIONS = 4
_ROLE_SETTINGS = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


def _count(r: _Reader, key: str, default: int, low: int, high: int, what: str) -> int:
    value = r.get(key, int, default)
    if not low <= value <= high:
        r.fail(r.key(key), f"{value} is out of range", f"keep between {low} and {high} {what}")
    return value


def _parse_limits(r: _Reader) -> Limits:
    r.only("app", "readonly", "audit", "admin_connections", "reserved_connections")
    kinds = {}
    for kind, defaults in _ROLE_LIMITS.items():
        k = r.child(kind, {})
        k.only("connections", *_ROLE_SETTINGS)
        settings = []
        for name in _ROLE_SETTINGS:
            value = k.get(name, str, defaults[name])
            if not DURATION_RE.match(value):
                k.fail(k.key(name), f"{value!r} is not a duration",
                       "write a whole number and a unit (ms, s, min, h, d), e.g. '5s'; 0 (no limit) is not allowed")
            settings.append((name, value))
        low = _AUDIT_MIN_CONNECTIONS if kind == "audit" else 1
        kinds[kind] = RoleLimits(_count(k, "connections", defaults["connections"], low, 10_000, "connections"),
                                 tuple(settings))
    return Limits(kinds["app"], kinds["readonly"], kinds["audit"],
                  _count(r, "admin_connections", 10, 2, 1_000, "connections"),
                  _count(r, "reserved_connections", 5, 1, 100, "connections"))


def _parse_backup(r: _Reader) -> BackupConfig:
    r.only("repository", "retention_full", "full_schedule", "incremental_schedule", "archive_timeout")
    repository = _path(r, "repository") or DEFAULT_BACKUP_REPOSITORY
    if repository in SHARED_DIRS or repository.startswith(VIRTUAL_TREES) or \
            posixpath.dirname(repository) in HOME_PARENTS:
        r.fail(r.key("repository"), f"{repository} is a system or shared directory",
               f"give the backups a directory of their own, such as {DEFAULT_BACKUP_REPOSITORY} "
               "(the deploy makes it postgres's)")
    schedules = {}
    for key, default in (("full_schedule", "30 1 * * 0"), ("incremental_schedule", "30 1 * * 1-6")):
        value = r.get(key, str, default)
        fields = value.split()
        if len(fields) != 5 or not all(CRON_FIELD_RE.match(f) for f in fields):
            r.fail(r.key(key), f"{value!r} is not a cron schedule",
                   "write cron's five time fields with digits, '*', ',', '-' and '/', e.g. '30 1 * * 0'")
        schedules[key] = " ".join(fields)
    return BackupConfig(
        repository,
        _count(r, "retention_full", 2, 1, 100, "full backups"),
        schedules["full_schedule"], schedules["incremental_schedule"],
        _count(r, "archive_timeout", 60, 1, 3600, "seconds"),
    )


def reaches(access: GroupAccess, plane: Plane) -> bool:
    """Admin hosts reach every plane database; other groups reach the planes granted to them."""
    return access.group is contract.ADMIN_HOSTS or plane in access.planes


def overlaps(site: Site, rule: contract.BoundaryRule):
    """Where the rule's group shares addresses with a group that may reach a forbidden plane:
    ``(index, network, other group's access, other network)``, one for each of the rule
    group's networks and each such group it overlaps, in group and network order."""
    mine = site.access(rule.group)
    for other in site.clients.values():
        if other is mine or not any(reaches(other, p) for p in rule.forbidden):
            continue
        for i, net in enumerate(mine.networks):
            j = other.ranges.overlapping(net)
            if j is not None:
                yield i, net, other, other.networks[j]


def _check_boundaries(site: Site, r: _Reader) -> None:
    """Refuse networks that would make a hard rule unenforceable.

    A group that holds no credentials of its own (IDE laptops) can only be kept out by
    its address: if its network overlaps one that may reach a forbidden database, no
    pg_hba ordering can serve both. Groups with credentials (tenant services) are also
    refused by role, so they may share hosts with other services (the pilot does).
    """
    for rule in contract.HARD_RULES:
        if rule.group.credential_roles:
            continue
        for i, net, other, theirs in overlaps(site, rule):
            r.fail(
                f"clients.{rule.group.key}.networks[{i}]",
                f"{net} overlaps {theirs} of clients.{other.group.key}, so hard rule {rule.number} "
                "cannot tell them apart",
                f"give {rule.group.title} a network of their own",
            )
