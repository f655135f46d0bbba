"""The ZeroUI DB plane contract, as data.

This module is the one place where plane, database, role, env-var and client-group
names are spelled. pg_hba rules, grants, env files, test expectations and the README
table are all derived from it (see ``../shared/contract/db-plane-contract.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Engine(str, Enum):
    SQLITE = "SQLite"
    POSTGRES = "Postgres"


@dataclass(frozen=True)
class DataClass:
    """A kind of data the contract lets a plane store ("What lives where")."""

    key: str
    description: str


@dataclass(frozen=True)
class Plane:
    key: str
    title: str
    location: str
    engine: Engine
    store: str  # database name, or file name for SQLite
    env_var: str
    data_classes: tuple[DataClass, ...] = ()

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
    def keeper_role(self) -> str:
        """Owns the plane's evidence ledger (tenant receipts); never logs in and has no member,
        so no login role can act as it, save inside a migration that needs it."""
        return f"zeroui_{self.key}_keeper"

    @property
    def keeps_evidence(self) -> bool:
        """Whether the plane holds an evidence ledger, and so a keeper role."""
        return any(c.key == EVIDENCE_LEDGER for c in self.data_classes)

    @property
    def login_roles(self) -> tuple[str, str]:
        return (self.app_role, self.readonly_role)

    @property
    def roles(self) -> tuple[str, ...]:
        keeper = (self.keeper_role,) if self.keeps_evidence else ()
        return (self.owner_role, *keeper, *self.login_roles)


# The data class whose tables no role may rewrite (see Plane.keeper_role).
EVIDENCE_LEDGER = "evidence_ledger"

IDE = Plane(
    "ide", "IDE Plane (Laptop)", "Developer laptop", Engine.SQLITE,
    "zeroui_local.db", "ZEROUI_IDE_SQLITE_URL",
    (
        DataClass("receipt_cache", "local receipt cache/buffer (last-N)"),
        DataClass("policy_cache", "local policy cache (current snapshot + verification metadata)"),
        DataClass("outbox", "local outbox/queue for sending events upward"),
        DataClass("ide_status", "lightweight status state for IDE surfaces"),
    ),
)
TENANT = Plane(
    "tenant", "Tenant Plane", "On-prem workstation (pilot)", Engine.POSTGRES,
    "zeroui_tenant_pg", "ZEROUI_TENANT_DB_URL",
    (
        DataClass(EVIDENCE_LEDGER, "durable receipts/evidence ledger for the tenant"),
        DataClass("tenant_history", "tenant history used for deterministic decisions"),
        DataClass("integration_state", "tenant integration state (provider cursors, watermarks, webhook ingestion)"),
        DataClass("context_export", "tenant context exports/snapshots/indexes (redacted; no secrets)"),
    ),
)
PRODUCT = Plane(
    "product", "Product Plane", "On-prem workstation (pilot)", Engine.POSTGRES,
    "zeroui_product_pg", "ZEROUI_PRODUCT_DB_URL",
    (
        DataClass("policy_lifecycle", "policy bundle/snapshot/release spine (policy lifecycle)"),
        DataClass("orchestration_state", "orchestration state"),
        DataClass("governance_workflow", "governance workflow state"),
        DataClass("tenant_reporting", "product-side aggregates and reporting per tenant"),
    ),
)
SHARED = Plane(
    "shared", "Shared Plane", "On-prem workstation (pilot)", Engine.POSTGRES,
    "zeroui_shared_pg", "ZEROUI_SHARED_DB_URL",
    (
        DataClass("provider_registry", "provider registry metadata, allowlists, adapter versions"),
        DataClass("evaluation_harness", "evaluation harness fixtures/runs/results metadata"),
        DataClass("supply_chain", "SBOM / provenance / supply chain verification metadata"),
        DataClass("observability_metadata", "global observability metadata (no tenant payload bodies)"),
    ),
)

PLANES: tuple[Plane, ...] = (IDE, TENANT, PRODUCT, SHARED)
POSTGRES_PLANES: tuple[Plane, ...] = tuple(p for p in PLANES if p.is_postgres)
PLANES_BY_KEY = {p.key: p for p in PLANES}
DATA_CLASS_PLANE = {c.key: p for p in PLANES for c in p.data_classes}

# Hard rule 3: the shared database stores metadata, never tenant payload bodies. A column
# named for a payload or a body (``payload``, ``request_body``) is one; ``payload_sha256``
# (metadata about a payload) is not.
PAYLOAD_BODY_COLUMN = re.compile(r"(^|_)(payload|payloads|body|bodies)$")
PAYLOAD_FREE_PLANES = (SHARED,)

# The non-superuser role that does all database-level work (CREATEDB, CREATEROLE),
# as the master user of a managed service would. The superuser only bootstraps it.
ADMIN_ROLE = "zeroui_admin"
# The read-only role the audit logs in as: it may read the rules and grants, never write.
AUDIT_ROLE = "zeroui_audit"
# The database the admin role connects to for cluster-wide work.
MAINTENANCE_DB = "postgres"
# The cluster's bootstrap superuser: the local socket only, never over TCP.
SUPERUSER = "postgres"


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
