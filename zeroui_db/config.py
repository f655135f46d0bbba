"""An inventory's ``zeroui`` data, parsed into typed, validated site config.

Nothing touches a host before this succeeds. Every problem is reported as one line
naming the inventory, the key, what is wrong and how to fix it. The parser is written
by hand rather than with a schema library because those produce multi-line,
library-shaped messages, and the checks that matter most (hard boundary rules,
ambiguous networks) are contract logic that no schema library expresses.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from . import contract
from .contract import ClientGroup, Plane

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ADMIN_LOOPBACK = "127.0.0.1"  # where the deploy's admin connection arrives, also over SSH
LOOPBACK_NETWORKS = (f"{ADMIN_LOOPBACK}/32",)
ENV_FILE_MODES = ("0600", "0640")


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
    ssl_cert_file: str | None  # None: a self-signed certificate is generated
    ssl_key_file: str | None


@dataclass(frozen=True)
class GroupAccess:
    group: ClientGroup
    networks: tuple[IPNetwork, ...]
    planes: tuple[Plane, ...]


@dataclass(frozen=True)
class EnvFiles:
    dir: str
    mode: str
    group: str | None


@dataclass(frozen=True)
class IdeConfig:
    data_dir: str | None  # None: $XDG_DATA_HOME/zeroui of the deploying user on the laptop
    config_dir: str | None  # None: $XDG_CONFIG_HOME/zeroui
    receipt_cache_limit: int


@dataclass(frozen=True)
class Site:
    name: str
    cluster: ClusterConfig
    clients: dict[str, GroupAccess] = field(hash=False)
    env_files: EnvFiles
    ide: IdeConfig

    def access(self, group: ClientGroup) -> GroupAccess:
        return self.clients[group.key]


_KIND_NAMES = {int: "a whole number", str: "a string", list: "a list", dict: "a dict"}


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


def parse_site(data: Any, inventory: str = "?") -> Site:
    """Parse the ``zeroui`` dict of an inventory into a validated :class:`Site`."""
    if data is None:
        raise ConfigError(
            inventory, "zeroui", "missing",
            "give the workstation group a 'zeroui' dict (see README, 'Inventory format')",
        )
    top = _Reader(inventory, data, "")
    top.only("site", "cluster", "clients", "env_files", "ide")
    name = top.get("site", str, hint="name the site, e.g. 'pilot'")
    if not NAME_RE.match(name):
        top.fail("site", f"{name!r} is not a valid name", "use lowercase letters, digits, '-' and '_'")
    inventory = name if inventory == "?" else inventory
    top.inventory = inventory

    site = Site(
        name=name,
        cluster=_parse_cluster(top.child("cluster", {})),
        clients=_parse_clients(top.child("clients", {})),
        env_files=_parse_env_files(top.child("env_files", {})),
        ide=_parse_ide(top.child("ide", {})),
    )
    _check_boundaries(site, top)
    return site


def _parse_cluster(r: _Reader) -> ClusterConfig:
    r.only("version", "name", "port", "listen_addresses", "connect_host", "ssl_cert_file", "ssl_key_file")
    version = r.get("version", (int, str), "distro")
    if version == "distro":
        version = None
    elif not isinstance(version, int) or version < 13:
        r.fail(r.key("version"), f"{version!r} is not a supported PostgreSQL major", "use 13 or newer, or 'distro'")
    name = r.get("name", str, "main")
    if not NAME_RE.match(name):
        r.fail(r.key("name"), f"{name!r} is not a valid cluster name", "use lowercase letters, digits, '-' and '_'")
    port = r.get("port", int, 5432)
    if not 1024 <= port <= 65535:
        r.fail(r.key("port"), f"{port} is out of range", "use a port from 1024 to 65535")
    raw = r.get("listen_addresses", list, ["127.0.0.1"])
    if not raw:
        r.fail(r.key("listen_addresses"), "is empty", "list the addresses clients connect to, e.g. ['127.0.0.1']")
    listen = []
    for i, value in enumerate(raw):
        try:
            listen.append(ipaddress.ip_address(value))
        except ValueError:
            r.fail(
                f"{r.key('listen_addresses')}[{i}]", f"{value!r} is not an IP address",
                "list this host's own addresses (no '*', no host names)",
            )
    if ipaddress.ip_address(ADMIN_LOOPBACK) not in listen:
        r.fail(r.key("listen_addresses"), f"lacks {ADMIN_LOOPBACK}",
               f"add {ADMIN_LOOPBACK}: the deploy's admin connection arrives over loopback")
    connect_host = r.get("connect_host", str, str(listen[0]))
    cert = r.get("ssl_cert_file", str, None)
    key = r.get("ssl_key_file", str, None)
    if (cert is None) != (key is None):
        r.fail(r.key("ssl_cert_file"), "set without ssl_key_file (or the reverse)",
               "set both, or neither to generate one")
    return ClusterConfig(version, name, port, tuple(listen), connect_host, cert, key)


def _parse_clients(r: _Reader) -> dict[str, GroupAccess]:
    r.only(*contract.CLIENT_GROUPS_BY_KEY)
    clients = {}
    for group in contract.CLIENT_GROUPS:
        default_nets = list(LOOPBACK_NETWORKS) if group is contract.ADMIN_HOSTS else []
        g = r.child(group.key, {})
        g.only("networks", "planes") if group is not contract.ADMIN_HOSTS else g.only("networks")
        networks = []
        for i, value in enumerate(g.get("networks", list, default_nets)):
            key = f"{g.key('networks')}[{i}]"
            try:
                networks.append(ipaddress.ip_network(value))
            except ValueError as e:
                fix = "write the network address with its prefix, e.g. 10.20.0.0/16 or 10.20.0.5/32"
                if "host bits set" in str(e):
                    fix = f"write {ipaddress.ip_network(value, strict=False)}"
                    r.fail(key, f"{value!r} has host bits set", fix)
                r.fail(key, f"{value!r} is not a valid CIDR network", fix)
        planes = []
        for i, value in enumerate(g.get("planes", list, [p.key for p in group.default_planes])):
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
        if group is contract.ADMIN_HOSTS and not any(ipaddress.ip_address(ADMIN_LOOPBACK) in n for n in networks):
            r.fail(g.key("networks"), f"lacks {ADMIN_LOOPBACK}",
                   f"add {ADMIN_LOOPBACK}/32: the deploy's admin connection arrives over loopback")
        clients[group.key] = GroupAccess(group, tuple(networks), tuple(planes))
    return clients


def _parse_env_files(r: _Reader) -> EnvFiles:
    r.only("dir", "mode", "group")
    directory = r.get("dir", str, "/etc/zeroui/env")
    if not directory.startswith("/"):
        r.fail(r.key("dir"), f"{directory!r} is not an absolute path", "write an absolute path such as /etc/zeroui/env")
    mode = r.get("mode", str, "0600")
    if mode not in ENV_FILE_MODES:
        r.fail(r.key("mode"), f"{mode!r} is not allowed", f"use {' or '.join(ENV_FILE_MODES)}")
    group = r.get("group", str, None)
    if mode == "0640" and not group:
        r.fail(r.key("group"), "missing for mode 0640", "name the group whose members may read the env files")
    return EnvFiles(directory, mode, group)


def _parse_ide(r: _Reader) -> IdeConfig:
    r.only("data_dir", "config_dir", "receipt_cache_limit")
    dirs = {}
    for key in ("data_dir", "config_dir"):
        dirs[key] = r.get(key, str, None)
        if dirs[key] is not None and not dirs[key].startswith("/"):
            r.fail(r.key(key), f"{dirs[key]!r} is not an absolute path", "write an absolute path, or leave it out "
                   "for the user's XDG directory")
    limit = r.get("receipt_cache_limit", int, 500)
    if not 1 <= limit <= 1_000_000:
        r.fail(r.key("receipt_cache_limit"), f"{limit} is out of range", "keep between 1 and 1000000 receipts")
    return IdeConfig(dirs["data_dir"], dirs["config_dir"], limit)


def reaches(access: GroupAccess, plane: Plane) -> bool:
    """Admin hosts reach every plane database; other groups reach the planes granted to them."""
    return access.group is contract.ADMIN_HOSTS or plane in access.planes


def overlaps(site: Site, rule: contract.BoundaryRule):
    """Where the rule's group shares addresses with a group that may reach a forbidden plane:
    ``(index, network, other group's access, other network)`` for each overlapping pair."""
    mine = site.access(rule.group)
    for other in site.clients.values():
        if other is mine or not any(reaches(other, p) for p in rule.forbidden):
            continue
        for i, net in enumerate(mine.networks):
            for theirs in other.networks:
                if net.version == theirs.version and net.overlaps(theirs):
                    yield i, net, other, theirs


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
