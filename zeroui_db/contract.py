"""The ZeroUI DB plane contract, as data.

This module is the one place where plane, database, role, env-var and client-group
names are spelled. pg_hba rules, grants, env files, test expectations and the README
table are all derived from it (see ``../shared/contract/db-plane-contract.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Engine(str, Enum):
    SQLITE = "SQLite"
    POSTGRES = "Postgres"


@dataclass(frozen=True)
class Plane:
    key: str
    title: str
    location: str
    engine: Engine
    store: str  # database name, or file name for SQLite
    env_var: str

    @property
    def is_postgres(self) -> bool:
        return self.engine is Engine.POSTGRES

    # Roles are derived from the plane key so that no role name is typed twice.
    @property
    def owner_role(self) -> str:
        """Owns the database and its objects; never logs in."""
        return f"zeroui_{self.key}_owner"

    @property
    def app_role(self) -> str:
        """The plane's services: read and write data (DML), no DDL."""
        return f"zeroui_{self.key}_app"

    @property
    def readonly_role(self) -> str:
        """Reporting and support: SELECT only."""
        return f"zeroui_{self.key}_ro"

    @property
    def login_roles(self) -> tuple[str, str]:
        return (self.app_role, self.readonly_role)

    @property
    def roles(self) -> tuple[str, str, str]:
        return (self.owner_role, *self.login_roles)


IDE = Plane(
    "ide", "IDE Plane (Laptop)", "Developer laptop", Engine.SQLITE,
    "zeroui_local.db", "ZEROUI_IDE_SQLITE_URL",
)
TENANT = Plane(
    "tenant", "Tenant Plane", "On-prem workstation (pilot)", Engine.POSTGRES,
    "zeroui_tenant_pg", "ZEROUI_TENANT_DB_URL",
)
PRODUCT = Plane(
    "product", "Product Plane", "On-prem workstation (pilot)", Engine.POSTGRES,
    "zeroui_product_pg", "ZEROUI_PRODUCT_DB_URL",
)
SHARED = Plane(
    "shared", "Shared Plane", "On-prem workstation (pilot)", Engine.POSTGRES,
    "zeroui_shared_pg", "ZEROUI_SHARED_DB_URL",
)

PLANES: tuple[Plane, ...] = (IDE, TENANT, PRODUCT, SHARED)
POSTGRES_PLANES: tuple[Plane, ...] = tuple(p for p in PLANES if p.is_postgres)
PLANES_BY_KEY = {p.key: p for p in PLANES}

# The non-superuser role that does all database-level work (CREATEDB, CREATEROLE),
# as the master user of a managed service would. The superuser only bootstraps it.
ADMIN_ROLE = "zeroui_admin"
# The database the admin role connects to for cluster-wide work.
MAINTENANCE_DB = "postgres"


@dataclass(frozen=True)
class ClientGroup:
    key: str
    title: str
    # The plane this group's components belong to (their credentials, if any).
    plane: Plane | None
    # Planes the group connects to unless the inventory says otherwise.
    default_planes: tuple[Plane, ...]

    @property
    def credential_roles(self) -> tuple[str, ...]:
        """Login roles this group's components hold (none for laptops and admin hosts)."""
        if self.plane is None or not self.plane.is_postgres:
            return ()
        return self.plane.login_roles


IDE_LAPTOPS = ClientGroup("ide_laptops", "IDE laptops", IDE, ())
TENANT_SERVICES = ClientGroup("tenant_services", "Tenant services", TENANT, (TENANT,))
PRODUCT_SERVICES = ClientGroup("product_services", "Product services", PRODUCT, (PRODUCT,))
SHARED_SERVICES = ClientGroup("shared_services", "Shared services", SHARED, (SHARED,))
ADMIN_HOSTS = ClientGroup("admin_hosts", "Admin hosts", None, ())

CLIENT_GROUPS: tuple[ClientGroup, ...] = (
    IDE_LAPTOPS, TENANT_SERVICES, PRODUCT_SERVICES, SHARED_SERVICES, ADMIN_HOSTS,
)
CLIENT_GROUPS_BY_KEY = {g.key: g for g in CLIENT_GROUPS}
# Groups whose hosts run a plane's services and so receive that plane's env file.
SERVICE_GROUPS: tuple[ClientGroup, ...] = tuple(
    g for g in CLIENT_GROUPS if g.plane is not None and g.plane.is_postgres
)


@dataclass(frozen=True)
class BoundaryRule:
    """A hard boundary rule: ``group`` must never connect to ``forbidden`` planes."""

    number: int
    text: str
    group: ClientGroup
    forbidden: tuple[Plane, ...]


HARD_RULES: tuple[BoundaryRule, ...] = (
    BoundaryRule(
        1, "IDE/Edge components MUST NOT connect directly to Product/Shared Postgres databases.",
        IDE_LAPTOPS, (PRODUCT, SHARED),
    ),
    BoundaryRule(
        2, "Tenant services MUST NOT write into Product/Shared Postgres databases via direct DB access.",
        TENANT_SERVICES, (PRODUCT, SHARED),
    ),
)


def forbidding_rule(group: ClientGroup, plane: Plane) -> BoundaryRule | None:
    """The hard rule that forbids ``group`` to reach ``plane``, if any."""
    for rule in HARD_RULES:
        if rule.group == group and plane in rule.forbidden:
            return rule
    return None


def plane_table_markdown() -> str:
    """The contract's Plane → Database table, for the README."""
    lines = [
        "| Plane | Runtime Location (Pilot) | Database Engine | Database Name | Canonical Env Var |",
        "|---|---|---|---|---|",
    ]
    for p in PLANES:
        name = f"{p.store} (file)" if p.engine is Engine.SQLITE else p.store
        lines.append(f"| {p.title} | {p.location} | {p.engine.value} | {name} | {p.env_var} |")
    return "\n".join(lines)
