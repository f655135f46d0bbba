"""pg_hba rules derived from the contract and a site's client groups.

The rule model is kept apart from file I/O (as community.postgresql's
``postgresql_pg_hba`` does): :func:`rules` returns ordered :class:`HbaRule` values,
the template only lays them out, and :func:`first_match` evaluates them the way
PostgreSQL does, so tests can prove who gets in without a server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from . import contract
from .config import Site, overlaps
from .networks import IPNetwork, collapse

ALL_V4 = ipaddress.ip_network("0.0.0.0/0")
ALL_V6 = ipaddress.ip_network("::/0")
# Only SCRAM on TCP: "trust", "password" and "md5" never appear on a host line.
ALLOWED_TCP_METHODS = frozenset({"scram-sha-256", "reject"})


@dataclass(frozen=True)
class HbaRule:
    type: str  # local | host | hostssl | hostnossl
    databases: tuple[str, ...]  # ("all",) or names
    users: tuple[str, ...]  # ("all",) or role names
    address: IPNetwork | None  # None for local
    method: str
    comment: str

    def matches(self, *, ssl: bool, database: str, user: str, address: IPNetwork | None) -> bool:
        if self.type == "local":
            if address is not None:
                return False
        else:
            if address is None or address.version != self.address.version:
                return False
            if not address.subnet_of(self.address):
                return False
            if self.type == "hostssl" and not ssl or self.type == "hostnossl" and ssl:
                return False
        return ("all" in self.databases or database in self.databases) and (
            "all" in self.users or user in self.users
        )

    @property
    def columns(self) -> tuple[str, ...]:
        address = "" if self.address is None else self.address.with_prefixlen
        return (self.type, ",".join(self.databases), ",".join(self.users), address, self.method)


def _both_families(type_: str, databases, users, method: str, comment: str) -> list[HbaRule]:
    return [HbaRule(type_, tuple(databases), tuple(users), net, method, comment) for net in (ALL_V4, ALL_V6)]


def rules(site: Site, superuser: str = contract.SUPERUSER) -> list[HbaRule]:
    """The whole pg_hba, in order: rejects for the hard rules ahead of every allow.

    Within one block of lines that differ only in their address, the order does not
    matter to first-match, only the union of the addresses: so each block lists its
    networks collapsed (adjacent and contained ones merged), which keeps pg_hba short
    for sites with thousands of client networks.
    """
    out: list[HbaRule] = [
        HbaRule("local", ("all",), (superuser,), None, "peer", "superuser: local socket, OS user only"),
        HbaRule("local", ("all",), ("all",), None, "reject", "nobody else uses the socket"),
    ]
    out += _both_families("host", ["all"], [superuser], "reject", "superuser never over TCP")
    out += _both_families("hostnossl", ["all"], ["all"], "reject", "TCP without TLS is refused")

    for rule in contract.HARD_RULES:
        dbs = tuple(p.store for p in rule.forbidden)
        label = f"hard rule {rule.number}: {rule.text}"
        # By credential: this group's roles are refused at forbidden databases from anywhere.
        if rule.group.credential_roles:
            out += _both_families("host", dbs, rule.group.credential_roles, "reject", label)
        # By address: the group's own networks, where no allowed group shares them
        # (the config refuses such overlaps for groups without credentials).
        shared = {i for i, *_ in overlaps(site, rule)}
        own = [net for i, net in enumerate(site.access(rule.group).networks) if i not in shared]
        out += [HbaRule("host", dbs, ("all",), net, "reject", label) for net in collapse(own)]

    admin_dbs = (contract.MAINTENANCE_DB, *(p.store for p in contract.POSTGRES_PLANES))
    out += [HbaRule("hostssl", admin_dbs, (contract.ADMIN_ROLE, contract.AUDIT_ROLE), net, "scram-sha-256",
                    "admin hosts: the deploy's admin and the audit")
            for net in collapse(site.access(contract.ADMIN_HOSTS).networks)]

    for plane in contract.POSTGRES_PLANES:
        databases, users = (plane.store,), plane.login_roles
        for access in site.clients.values():
            if access.group is contract.ADMIN_HOSTS or plane not in access.planes:
                continue
            label = f"{plane.title}: {access.group.title}"
            out += [HbaRule("hostssl", databases, users, net, "scram-sha-256", label)
                    for net in collapse(access.networks)]

    out += _both_families("host", ["all"], ["all"], "reject", "everything else")
    return out


def first_match(rules_: list[HbaRule], *, ssl: bool, database: str, user: str, address: str | None) -> HbaRule | None:
    """The rule PostgreSQL would apply to this connection attempt (first match wins)."""
    net = None if address is None else ipaddress.ip_network(address)
    for rule in rules_:
        if rule.matches(ssl=ssl, database=database, user=user, address=net):
            return rule
    return None


def template_context(site: Site) -> dict:
    """What ``templates/pg_hba.conf.j2`` renders: the rules and a column layout fitting them."""
    out = rules(site)
    # Widths from the database and user lists alone: the address column is left-aligned anyway.
    db_width = max(len(",".join(r.databases)) for r in out)
    user_width = max(len(",".join(r.users)) for r in out)
    return {"site": site, "rules": out, "fmt": f"%-9s %-{db_width}s %-{user_width}s %-18s %s"}
