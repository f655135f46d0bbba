"""Planning roles, databases and privileges per server: all of it on an empty server, none
on a converged one, only what a managed service's admin may do on a managed one.

Expectations are spelled out here, never taken from grants.py: the privileges follow the
contract's roles (an owner that owns the database and never logs in, an app role with DML
and no DDL, a read-only role with SELECT, an admin that only connects and acts as an owner
by SET ROLE), the names come from the contract module (the contract as data), and the
servers come from parsing inventories, as a deploy gets them.
"""

import copy
import re

import pytest

from zeroui_db import contract, grants, scram
from zeroui_db.config import parse_site
from zeroui_db.grants import Catalog, DatabaseState, Membership

from conftest import BASE, CLOUD

TENANT, PRODUCT, SHARED = contract.TENANT, contract.PRODUCT, contract.SHARED
ADMIN = contract.ADMIN_ROLE  # the pilot's own admin role
AUDIT = contract.AUDIT_ROLE  # the audit's read-only login, on every server
MASTER = "zeroui_master"  # the provider's admin user, as CLOUD names it
SUPERUSER = "postgres"  # grantor of what the pilot's superuser granted
PROVIDER = "rdsadmin"  # the provider's bootstrap superuser, grantor of its implicit grants
PG15, PG16 = 150000, 160000


# What the inventory's default limits make of a plane's login roles (README, "Locks and limits").
APP_LIMITS = {"connlimit": 20, "config": ["statement_timeout=30s", "lock_timeout=5s",
                                          "idle_in_transaction_session_timeout=60s"]}
RO_LIMITS = {"connlimit": 5, "config": ["statement_timeout=5min", "lock_timeout=5s",
                                        "idle_in_transaction_session_timeout=60s"]}
AUDIT_LIMITS = {"connlimit": 5, "config": ["statement_timeout=1min", "lock_timeout=5s",
                                           "idle_in_transaction_session_timeout=60s"]}
NO_LIMITS = {"connlimit": -1, "config": None}


def plane_role(login: bool, limits: dict = NO_LIMITS) -> dict:
    """What pg_roles shows for a plane role that has nothing but (for login roles) LOGIN."""
    return {"super": False, "createdb": False, "createrole": False, "replication": False, "bypassrls": False,
            "inherit": True, "canlogin": login, "validuntil": None, **copy.deepcopy(limits)}


# Managed-service clauses a non-superuser may not issue at all, not even as NO...
SUPERUSER_CLAUSE = re.compile(r"\b(NO)?(SUPERUSER|REPLICATION|BYPASSRLS)\b")


class FakePasswords:
    """Verifiers are opaque to the plan; these say whose they are and where they came from."""

    def __init__(self, applied=True):
        self.applied, self.recorded = applied, {}

    def applied_verifier(self, role):
        return f"SCRAM-SHA-256$applied-{role}" if self.applied else None

    def fresh_verifier(self, role):
        return f"SCRAM-SHA-256$fresh-{role}"

    def record_applied(self, role, verifier):
        self.recorded[role] = verifier


def pilot_server():
    """The pilot's one workstation server, holding all three planes."""
    (server,) = parse_site(copy.deepcopy(BASE)).servers
    assert server.workstation and server.admin_user == ADMIN
    return server


def cloud_server(plane):
    """The managed server that holds ``plane`` in the cloud site (one plane per server)."""
    servers = parse_site(copy.deepcopy(CLOUD)).servers
    (server,) = [s for s in servers if s.planes == (plane,)]
    assert not server.workstation and server.admin_user == MASTER
    return server


def converged_database(plane, admin) -> DatabaseState:
    """A plane database as the catalog reads it once the contract holds."""
    owner, app, ro = plane.owner_role, plane.app_role, plane.readonly_role
    return DatabaseState(
        owner=owner,
        acl={owner: frozenset({"CREATE", "TEMPORARY", "CONNECT"}),
             app: frozenset({"CONNECT"}), ro: frozenset({"CONNECT"}), admin: frozenset({"CONNECT"}),
             AUDIT: frozenset({"CONNECT"})},
        schema_acl={"pg_database_owner": frozenset({"USAGE", "CREATE"}),
                    app: frozenset({"USAGE"}), ro: frozenset({"USAGE"}),
                    # The tenant's evidence keeper owns the receipts ledger there; the audit reads its status.
                    **({plane.keeper_role: frozenset({"USAGE", "CREATE"}), AUDIT: frozenset({"USAGE"})}
                       if plane is TENANT else {})},
        default_acl={
            # The owner's own entry shows up in every pg_default_acl row it has.
            owner: {"r": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}),
                    "S": frozenset({"USAGE", "SELECT", "UPDATE"})},
            app: {"r": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}), "S": frozenset({"USAGE", "SELECT"})},
            ro: {"r": frozenset({"SELECT"}), "S": frozenset({"SELECT"})},
        },
    )


def plane_roles(*planes) -> dict:
    """The planes' roles and the audit's, as pg_roles shows them."""
    roles = {AUDIT: plane_role(True, AUDIT_LIMITS)}
    for p in planes:
        roles[p.owner_role] = plane_role(False)
        if p is TENANT:
            roles[p.keeper_role] = plane_role(False)
        roles[p.app_role], roles[p.readonly_role] = plane_role(True, APP_LIMITS), plane_role(True, RO_LIMITS)
    return roles


def converged_workstation(version=PG15) -> Catalog:
    """The pilot's cluster with every plane in place; the admin may SET ROLE to each owner."""
    planes = (TENANT, PRODUCT, SHARED)
    return Catalog(
        server_version=version,
        roles=plane_roles(*planes),
        memberships=(*(Membership(p.owner_role, ADMIN, SUPERUSER, admin=False, inherit=False, set=True)
                       for p in planes),
                     # The audit reads every setting (the superuser granted it on the pilot).
                     Membership("pg_read_all_settings", AUDIT, SUPERUSER, admin=False, inherit=True, set=True)),
        databases={p.store: converged_database(p, ADMIN) for p in planes},
        audit_reads_hba=True,
    )


def converged_managed(plane, version=PG16) -> Catalog:
    """A managed server with one plane in place. Its admin is in the provider's own role, and
    (16+) holds the ADMIN-only row CREATE ROLE gave it plus the SET row the deploy granted."""
    memberships = [Membership("rds_superuser", MASTER, PROVIDER, admin=False, inherit=True, set=True)]
    if version >= PG16:
        memberships.append(Membership(plane.owner_role, MASTER, PROVIDER, admin=True, inherit=False, set=False))
        memberships.append(Membership(plane.owner_role, MASTER, MASTER, admin=False, inherit=False, set=True))
    else:
        memberships.append(Membership(plane.owner_role, MASTER, MASTER, admin=False, inherit=True, set=True))
    return Catalog(server_version=version, roles=plane_roles(plane), memberships=tuple(memberships),
                   databases={plane.store: converged_database(plane, MASTER)})


def sql(steps) -> list[str]:
    return [s.statement.as_string() for s in steps]


def where(steps) -> list[tuple]:
    """Each step as (scope, database it runs in, role it runs as, SQL)."""
    return [(s.scope, s.database, s.as_role, s.statement.as_string() if s.statement else None) for s in steps]


def limits(role, connections, statement_timeout):
    """The default limits of a login role, as steps."""
    return [
        ("role", "postgres", None, f'ALTER ROLE "{role}" CONNECTION LIMIT {connections}'),
        ("role", "postgres", None, f'ALTER ROLE "{role}" SET "statement_timeout" = \'{statement_timeout}\''),
        ("role", "postgres", None, f'ALTER ROLE "{role}" SET "lock_timeout" = \'5s\''),
        ("role", "postgres", None, f'ALTER ROLE "{role}" SET "idle_in_transaction_session_timeout" = \'60s\''),
    ]


def new_audit_role(clauses="NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"):
    return [("role", "postgres", None,
             f"CREATE ROLE \"{AUDIT}\" {clauses} LOGIN PASSWORD 'SCRAM-SHA-256$fresh-{AUDIT}'"),
            *limits(AUDIT, 5, "1min")]


def audit_reads_the_rules():
    """On the pilot the local superuser lets the audit read settings and pg_hba."""
    return [
        ("role", "postgres", None, f'GRANT "pg_read_all_settings" TO "{AUDIT}"'),
        ("role", "postgres", None, f'GRANT SELECT ON pg_catalog.pg_hba_file_rules TO "{AUDIT}"'),
        ("role", "postgres", None, f'GRANT EXECUTE ON FUNCTION pg_catalog.pg_hba_file_rules() TO "{AUDIT}"'),
    ]


def new_roles(plane, admin_clauses="NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"):
    owner, app, ro = plane.owner_role, plane.app_role, plane.readonly_role
    keeper = [("role", "postgres", None, f'CREATE ROLE "{plane.keeper_role}" {admin_clauses} NOLOGIN')]
    return [
        ("role", "postgres", None, f'CREATE ROLE "{owner}" {admin_clauses} NOLOGIN'),
        *(keeper if plane is TENANT else []),
        ("role", "postgres", None, f"CREATE ROLE \"{app}\" {admin_clauses} LOGIN PASSWORD 'SCRAM-SHA-256$fresh-{app}'"),
        *limits(app, 20, "30s"),
        ("role", "postgres", None, f"CREATE ROLE \"{ro}\" {admin_clauses} LOGIN PASSWORD 'SCRAM-SHA-256$fresh-{ro}'"),
        *limits(ro, 5, "5min"),
    ]


def new_database(plane, admin):
    """A plane database from nothing: created by the admin, every privilege set by its owner."""
    db, owner, app, ro = plane.store, plane.owner_role, plane.app_role, plane.readonly_role
    return [
        ("database", "postgres", None,
         f"CREATE DATABASE \"{db}\" OWNER \"{owner}\" ENCODING 'UTF8' TEMPLATE template0"),
        ("database", "postgres", owner, f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC'),
        *sorted([("database", "postgres", owner, f'GRANT CONNECT ON DATABASE "{db}" TO "{r}"')
                 for r in (admin, AUDIT, app, ro)], key=lambda step: step[3]),
        ("database", db, owner, 'REVOKE ALL ON SCHEMA "public" FROM PUBLIC'),
        *([("database", db, owner, f'GRANT USAGE ON SCHEMA "public" TO "{AUDIT}"')] if plane is TENANT else []),
        ("database", db, owner, f'GRANT USAGE ON SCHEMA "public" TO "{app}"'),
        *([("database", db, owner, f'GRANT CREATE, USAGE ON SCHEMA "public" TO "{plane.keeper_role}"')]
          if plane is TENANT else []),
        ("database", db, owner, f'GRANT USAGE ON SCHEMA "public" TO "{ro}"'),
        ("database", db, owner,
         f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" GRANT SELECT, USAGE ON SEQUENCES TO "{app}"'),
        ("database", db, owner,
         f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" GRANT DELETE, INSERT, SELECT, UPDATE ON TABLES TO "{app}"'),
        ("database", db, owner, f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" GRANT SELECT ON SEQUENCES TO "{ro}"'),
        ("database", db, owner, f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" GRANT SELECT ON TABLES TO "{ro}"'),
    ]


# --- The pilot's workstation server ---------------------------------------------------------

def test_converged_workstation_needs_nothing():
    assert grants.plan(pilot_server(), converged_workstation(), FakePasswords()) == []
    assert grants.plan(pilot_server(), converged_workstation(PG16), FakePasswords()) == []


def test_empty_workstation_gets_everything_roles_first():
    passwords = FakePasswords(applied=False)
    steps = grants.plan(pilot_server(), Catalog(server_version=PG15), passwords)
    assert where(steps) == [
        *new_audit_role(), *new_roles(TENANT), *new_roles(PRODUCT), *new_roles(SHARED),
        # The admin may act as each owner (SET ROLE); on 15 it is NOINHERIT, so no more than that.
        ("role", "postgres", None, f'GRANT "{PRODUCT.owner_role}" TO "{ADMIN}"'),
        ("role", "postgres", None, f'GRANT "{SHARED.owner_role}" TO "{ADMIN}"'),
        ("role", "postgres", None, f'GRANT "{TENANT.owner_role}" TO "{ADMIN}"'),
        *audit_reads_the_rules(),
        *new_database(TENANT, ADMIN), *new_database(PRODUCT, ADMIN), *new_database(SHARED, ADMIN),
    ]
    assert not any(s.blocked for s in steps)
    # Verifiers are recorded only when their step runs.
    assert passwords.recorded == {}
    for step in steps:
        if step.after:
            step.after()
    assert passwords.recorded == {r: f"SCRAM-SHA-256$fresh-{r}"
                                  for r in (AUDIT, *(r for p in (TENANT, PRODUCT, SHARED) for r in p.login_roles))}


def test_recreated_cluster_reuses_the_applied_verifier():
    text = sql(grants.plan(pilot_server(), Catalog(), FakePasswords(applied=True)))
    app = TENANT.app_role
    assert (f"CREATE ROLE \"{app}\" NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT LOGIN "
            f"PASSWORD 'SCRAM-SHA-256$applied-{app}'") in text
    assert not any("$fresh-" in t for t in text)


def test_rotated_password_is_altered_only_for_that_role():
    class OneRotated(FakePasswords):
        def applied_verifier(self, role):
            return None if role == TENANT.app_role else super().applied_verifier(role)
    passwords = OneRotated()
    steps = grants.plan(pilot_server(), converged_workstation(), passwords)
    assert where(steps) == [("role", "postgres", None,
                             f"ALTER ROLE \"{TENANT.app_role}\" PASSWORD 'SCRAM-SHA-256$fresh-{TENANT.app_role}'")]
    steps[0].after()
    assert passwords.recorded == {TENANT.app_role: f"SCRAM-SHA-256$fresh-{TENANT.app_role}"}


def test_drift_is_repaired():
    catalog = converged_workstation()
    catalog.roles[TENANT.app_role]["createdb"] = True
    product = catalog.databases[PRODUCT.store]
    product.acl = {**product.acl, "PUBLIC": frozenset({"CONNECT"}), "mallory": frozenset({"CONNECT"})}
    shared = catalog.databases[SHARED.store]
    shared.acl = {**shared.acl, SHARED.app_role: frozenset({"CONNECT", "TEMPORARY"})}
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("role", "postgres", None, f'ALTER ROLE "{TENANT.app_role}" NOCREATEDB'),
        ("database", "postgres", PRODUCT.owner_role, f'REVOKE ALL ON DATABASE "{PRODUCT.store}" FROM PUBLIC'),
        ("database", "postgres", PRODUCT.owner_role, f'REVOKE ALL ON DATABASE "{PRODUCT.store}" FROM "mallory"'),
        # More than CONNECT: take it all away, then give back exactly CONNECT.
        ("database", "postgres", SHARED.owner_role,
         f'REVOKE ALL ON DATABASE "{SHARED.store}" FROM "{SHARED.app_role}"'),
        ("database", "postgres", SHARED.owner_role,
         f'GRANT CONNECT ON DATABASE "{SHARED.store}" TO "{SHARED.app_role}"'),
    ]


def test_more_drift_is_repaired():
    """Bypassing RLS (the pilot's superuser may repair it), an expiry, extra default privileges."""
    catalog = converged_workstation()
    catalog.roles[SHARED.readonly_role]["bypassrls"] = True
    catalog.roles[TENANT.app_role]["validuntil"] = "2026-12-01 00:00:00+00"
    tenant = catalog.databases[TENANT.store]
    db, owner, ro = TENANT.store, TENANT.owner_role, TENANT.readonly_role
    tenant.default_acl = {**tenant.default_acl,
                          ro: {"r": frozenset({"SELECT", "INSERT"}), "S": frozenset({"SELECT"})},
                          "mallory": {"r": frozenset({"SELECT"})}}
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("role", "postgres", None, f"ALTER ROLE \"{TENANT.app_role}\" VALID UNTIL 'infinity'"),
        ("role", "postgres", None, f'ALTER ROLE "{SHARED.readonly_role}" NOBYPASSRLS'),
        ("database", db, owner, f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" REVOKE ALL ON TABLES FROM "mallory"'),
        ("database", db, owner, f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" REVOKE ALL ON TABLES FROM "{ro}"'),
        ("database", db, owner, f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" GRANT SELECT ON TABLES TO "{ro}"'),
    ]


def test_extra_default_privileges_are_revoked_for_their_own_object_type():
    catalog = converged_workstation()
    tenant = catalog.databases[TENANT.store]
    tenant.default_acl = {**tenant.default_acl,
                          "mallory": {"f": frozenset({"EXECUTE"})},
                          "PUBLIC": {"T": frozenset({"USAGE"})}}
    db, owner = TENANT.store, TENANT.owner_role
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("database", db, owner, f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" REVOKE ALL ON TYPES FROM PUBLIC'),
        ("database", db, owner, f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" REVOKE ALL ON FUNCTIONS FROM "mallory"'),
    ]


@pytest.mark.parametrize("version,granted_by", [(PG15, ""), (PG16, f' GRANTED BY "{SUPERUSER}"')])
def test_app_role_in_another_planes_owner_is_revoked(version, granted_by):
    """A tenant service acting as the product owner would break hard rule 2."""
    catalog = converged_workstation(version)
    catalog.memberships += (Membership(PRODUCT.owner_role, TENANT.app_role, SUPERUSER),)
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("role", "postgres", None, f'REVOKE "{PRODUCT.owner_role}" FROM "{TENANT.app_role}"{granted_by}'),
    ]


@pytest.mark.parametrize("version,granted_by", [(PG15, ""), (PG16, f' GRANTED BY "{SUPERUSER}"')])
def test_workstation_admin_keeps_only_its_owner_memberships(version, granted_by):
    """pg_execute_server_program would give the admin a shell as the server's OS user."""
    catalog = converged_workstation(version)
    catalog.memberships += (Membership("pg_execute_server_program", ADMIN, SUPERUSER),)
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("role", "postgres", None, f'REVOKE "pg_execute_server_program" FROM "{ADMIN}"{granted_by}'),
    ]


def test_workstation_admin_inheriting_an_owner_on_16_is_drift():
    catalog = converged_workstation(PG16)
    catalog.memberships = tuple(
        Membership(m.role, m.member, m.grantor, m.admin, inherit=True, set=True) if m.role == TENANT.owner_role else m
        for m in catalog.memberships)
    text = sql(grants.plan(pilot_server(), catalog, FakePasswords()))
    assert any(TENANT.owner_role in t and ADMIN in t and ("REVOKE" in t or "INHERIT FALSE" in t) for t in text)


def test_limits_drift_is_repaired_and_other_settings_are_left_alone():
    """A connection limit or a timeout changed behind the deploy's back is set again; a setting the
    deploy does not manage (search_path) is not its business."""
    catalog = converged_workstation()
    catalog.roles[TENANT.app_role].update(
        connlimit=-1, config=["statement_timeout=0", "lock_timeout=5s", "search_path=public",
                              "idle_in_transaction_session_timeout=60s"])
    del catalog.roles[PRODUCT.readonly_role]["config"][1]  # lock_timeout gone
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("role", "postgres", None, f'ALTER ROLE "{TENANT.app_role}" CONNECTION LIMIT 20'),
        ("role", "postgres", None, f'ALTER ROLE "{TENANT.app_role}" SET "statement_timeout" = \'30s\''),
        ("role", "postgres", None, f'ALTER ROLE "{PRODUCT.readonly_role}" SET "lock_timeout" = \'5s\''),
    ]


def test_limits_follow_the_inventory():
    data = copy.deepcopy(BASE)
    data["limits"] = {"readonly": {"connections": 2, "statement_timeout": "90s"}}
    (server,) = parse_site(data).servers
    text = sql(grants.plan(server, converged_workstation(), FakePasswords()))
    assert text == [stmt for ro in (TENANT.readonly_role, PRODUCT.readonly_role, SHARED.readonly_role) for stmt in (
        f'ALTER ROLE "{ro}" CONNECTION LIMIT 2', f'ALTER ROLE "{ro}" SET "statement_timeout" = \'90s\'')]


@pytest.mark.parametrize("member", [TENANT.owner_role, ADMIN, TENANT.app_role])
def test_a_member_of_the_keeper_is_revoked_on_the_workstation(member):
    """Nobody may act as the evidence keeper outside a migration: a membership left by a crashed
    migration (the owner's), or made by hand, goes."""
    catalog = converged_workstation()
    catalog.memberships += (Membership(TENANT.keeper_role, member, SUPERUSER),)
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("role", "postgres", None, f'REVOKE "{TENANT.keeper_role}" FROM "{member}"')]


def test_managed_admin_keeps_its_admin_row_on_the_keeper_and_gets_no_set():
    """On 16+ the master administers the keeper (it created it), which lets a migration grant the owner the
    keeper inside its own transaction; the plan never gives the master SET on the keeper."""
    catalog = converged_managed(TENANT)
    catalog.memberships += (Membership(TENANT.keeper_role, MASTER, PROVIDER, admin=True, inherit=False, set=False),)
    assert grants.plan(cloud_server(TENANT), catalog, FakePasswords()) == []
    catalog.memberships += (Membership(TENANT.keeper_role, TENANT.owner_role, MASTER),)
    assert sql(grants.plan(cloud_server(TENANT), catalog, FakePasswords())) == [
        f'REVOKE "{TENANT.keeper_role}" FROM "{TENANT.owner_role}" GRANTED BY "{MASTER}"']


def test_admin_role_logs_in_and_creates_databases_nothing_more():
    """The pilot's admin: LOGIN CREATEDB, no CREATEROLE (before 16 it could grant itself
    pg_execute_server_program), NOINHERIT (it acts as an owner only by SET ROLE)."""
    steps = grants.role_steps(ADMIN, grants.ADMIN_ATTRS, None, lambda: "SCRAM-SHA-256$fresh-admin", lambda v: None)
    assert sql(steps) == [f"CREATE ROLE \"{ADMIN}\" NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                          "NOINHERIT LOGIN PASSWORD 'SCRAM-SHA-256$fresh-admin'"]
    # An admin made by an older bundle (CREATEROLE, INHERIT) is brought down to that.
    older = {"super": False, "createdb": True, "createrole": True, "replication": False, "bypassrls": False,
             "inherit": True, "canlogin": True, "validuntil": None}
    assert sql(grants.role_steps(ADMIN, grants.ADMIN_ATTRS, older, None, None)) == [
        f'ALTER ROLE "{ADMIN}" NOCREATEROLE NOINHERIT']


# --- Managed servers (one plane each, the provider's admin, no superuser) -------------------

def test_cloud_site_has_one_managed_server_per_plane():
    servers = parse_site(copy.deepcopy(CLOUD)).servers
    assert [(s.planes, s.workstation, s.admin_user) for s in servers] == [
        ((TENANT,), False, MASTER), ((PRODUCT,), False, MASTER), ((SHARED,), False, MASTER)]


@pytest.mark.parametrize("plane", [TENANT, PRODUCT, SHARED], ids=lambda p: p.key)
def test_converged_managed_server_needs_nothing(plane):
    """Neither the admin's membership in the provider's role nor its ADMIN-only row is touched."""
    assert grants.plan(cloud_server(plane), converged_managed(plane), FakePasswords()) == []
    assert grants.plan(cloud_server(plane), converged_managed(plane, PG15), FakePasswords()) == []


@pytest.mark.parametrize("version,set_option", [(PG15, ""), (PG16, " WITH INHERIT FALSE, SET TRUE")])
def test_empty_managed_server_gets_its_plane_only(version, set_option):
    steps = grants.plan(cloud_server(PRODUCT), Catalog(server_version=version), FakePasswords(applied=False))
    assert where(steps) == [
        *new_audit_role("NOCREATEDB NOCREATEROLE INHERIT"),
        *new_roles(PRODUCT, admin_clauses="NOCREATEDB NOCREATEROLE INHERIT"),
        ("role", "postgres", None, f'GRANT "{PRODUCT.owner_role}" TO "{MASTER}"{set_option}'),
        *new_database(PRODUCT, MASTER),
    ]
    text = " ".join(sql(steps))
    assert not SUPERUSER_CLAUSE.search(text)
    for other in (TENANT, SHARED):
        assert f"zeroui_{other.key}_" not in text


def test_managed_endpoint_database_name_is_the_inventorys():
    data = copy.deepcopy(CLOUD)
    data["endpoints"]["tenant"]["database"] = "tenant_main"
    (server,) = [s for s in parse_site(data).servers if s.planes == (TENANT,)]
    steps = grants.plan(server, Catalog(server_version=PG16), FakePasswords())
    assert next(t for t in sql(steps) if t.startswith("CREATE DATABASE")) == (
        f"CREATE DATABASE \"tenant_main\" OWNER \"{TENANT.owner_role}\" ENCODING 'UTF8' TEMPLATE template0")
    assert {s.database for s in steps} == {"postgres", "tenant_main"}
    assert not any(TENANT.store in t for t in sql(steps))


def test_managed_admin_with_only_its_admin_row_gets_set_on_16():
    """CREATE ROLE by a CREATEROLE user on 16+ leaves an ADMIN-only row: no SET, no INHERIT."""
    catalog = converged_managed(TENANT)
    catalog.memberships = tuple(m for m in catalog.memberships if not (m.role == TENANT.owner_role and m.set))
    assert Membership(TENANT.owner_role, MASTER, PROVIDER, admin=True, inherit=False, set=False) in catalog.memberships
    assert where(grants.plan(cloud_server(TENANT), catalog, FakePasswords())) == [
        ("role", "postgres", None, f'GRANT "{TENANT.owner_role}" TO "{MASTER}" WITH INHERIT FALSE, SET TRUE'),
    ]


def test_managed_admin_memberships_are_never_revoked():
    catalog = converged_managed(SHARED)
    catalog.memberships += (Membership("pg_execute_server_program", MASTER, PROVIDER),
                            Membership("rds_replication", MASTER, PROVIDER))
    assert grants.plan(cloud_server(SHARED), catalog, FakePasswords()) == []


def test_managed_plane_role_memberships_are_still_revoked():
    catalog = converged_managed(SHARED)
    catalog.memberships += (Membership("rds_superuser", SHARED.app_role, MASTER),)
    assert sql(grants.plan(cloud_server(SHARED), catalog, FakePasswords())) == [
        f'REVOKE "rds_superuser" FROM "{SHARED.app_role}" GRANTED BY "{MASTER}"']


@pytest.mark.parametrize("attribute,clause", [("bypassrls", "NOBYPASSRLS"), ("super", "NOSUPERUSER"),
                                              ("replication", "NOREPLICATION")])
def test_managed_superuser_only_drift_is_blocked_not_issued(attribute, clause):
    catalog = converged_managed(TENANT)
    catalog.roles[TENANT.readonly_role][attribute] = True
    catalog.roles[TENANT.readonly_role]["createdb"] = True  # this much the provider's admin may repair
    steps = grants.plan(cloud_server(TENANT), catalog, FakePasswords())
    assert [(s.scope, s.statement.as_string() if s.statement else None, s.summary) for s in steps] == [
        ("role", f'ALTER ROLE "{TENANT.readonly_role}" NOCREATEDB', f"set NOCREATEDB on role {TENANT.readonly_role}"),
        ("role", None, f"set {clause} on role {TENANT.readonly_role}"),
    ]
    assert steps[0].blocked is None and steps[1].blocked  # says why a superuser is needed
    assert not SUPERUSER_CLAUSE.search(" ".join(sql(steps[:1])))


def test_workstation_repairs_what_a_managed_server_blocks():
    catalog = converged_workstation()
    catalog.roles[TENANT.readonly_role]["bypassrls"] = True
    steps = grants.plan(pilot_server(), catalog, FakePasswords())
    assert sql(steps) == [f'ALTER ROLE "{TENANT.readonly_role}" NOBYPASSRLS'] and not steps[0].blocked


def test_adopted_database_owned_by_the_master_is_given_to_the_owner():
    """The provider's console made the database: it belongs to the master, PUBLIC may connect."""
    catalog = converged_managed(TENANT)
    catalog.databases[TENANT.store] = DatabaseState(
        owner=MASTER, acl={MASTER: frozenset({"CREATE", "TEMPORARY", "CONNECT"}),
                           "PUBLIC": frozenset({"CONNECT", "TEMPORARY"})})
    db, owner = TENANT.store, TENANT.owner_role
    steps = where(grants.plan(cloud_server(TENANT), catalog, FakePasswords()))
    assert steps[:6] == [
        ("database", "postgres", None, f'ALTER DATABASE "{db}" OWNER TO "{owner}"'),
        ("database", "postgres", owner, f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC'),
        ("database", "postgres", owner, f'GRANT CONNECT ON DATABASE "{db}" TO "{AUDIT}"'),
        ("database", "postgres", owner, f'GRANT CONNECT ON DATABASE "{db}" TO "{MASTER}"'),
        ("database", "postgres", owner, f'GRANT CONNECT ON DATABASE "{db}" TO "{TENANT.app_role}"'),
        ("database", "postgres", owner, f'GRANT CONNECT ON DATABASE "{db}" TO "{TENANT.readonly_role}"'),
    ]
    assert all(s[0] == "database" and (s[2] == owner or s[3].startswith("ALTER DATABASE")) for s in steps)
    assert not any(s[3].startswith("CREATE DATABASE") for s in steps)


# --- Always -----------------------------------------------------------------------------------

def drifted_plans():
    """Plans for empty and badly drifted servers of both kinds."""
    workstation = converged_workstation(PG16)
    workstation.roles["mallory"] = plane_role(True)
    workstation.memberships += (Membership(TENANT.owner_role, PRODUCT.app_role, SUPERUSER),
                                Membership("pg_read_server_files", ADMIN, SUPERUSER))
    for state in workstation.databases.values():
        state.acl = {**state.acl, "mallory": frozenset({"CREATE", "CONNECT"})}
        state.schema_acl = {**state.schema_acl, "mallory": frozenset({"CREATE"})}
        state.default_acl = {**state.default_acl, "mallory": {"r": frozenset({"TRUNCATE"})}}
    managed = converged_managed(TENANT)
    managed.databases[TENANT.store].owner = MASTER
    return [grants.plan(pilot_server(), Catalog(), FakePasswords(applied=False)),
            grants.plan(pilot_server(), workstation, FakePasswords()),
            grants.plan(cloud_server(TENANT), Catalog(server_version=PG16), FakePasswords(applied=False)),
            grants.plan(cloud_server(TENANT), managed, FakePasswords())]


def test_nothing_is_ever_dropped():
    for steps in drifted_plans():
        assert steps
        text = " ".join(sql(s for s in steps if s.statement))
        assert not re.search(r"\b(DROP|TRUNCATE\s|DELETE FROM|REASSIGN)\b", text)


def test_step_repr_hides_verifiers():
    class RealPasswords(FakePasswords):
        def fresh_verifier(self, role):
            return scram.verifier("correct horse battery staple")
    steps = grants.plan(pilot_server(), Catalog(), RealPasswords(applied=False))
    assert any("SCRAM-SHA-256$" in t for t in sql(steps))  # the statements carry them...
    for shown in (repr(steps), str(steps), " ".join(s.summary for s in steps)):
        assert "SCRAM" not in shown and "correct horse" not in shown  # ...what is shown never


# --- Objects inside a plane: what a role holds beyond its ceiling is revoked ------------------

def with_objects(catalog, plane, *objects):
    catalog.databases[plane.store].objects = tuple(objects)
    return catalog


def test_object_privileges_beyond_the_ceiling_are_revoked_by_the_owner():
    """The read-only role may only read; PUBLIC gets nothing on tables; the app gets DML, never TRUNCATE."""
    owner, app, ro = TENANT.owner_role, TENANT.app_role, TENANT.readonly_role
    everything = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})
    catalog = with_objects(converged_workstation(), TENANT,
                           grants.DbObject("table", "public.receipts", owner, {
                               owner: everything, app: frozenset({"SELECT", "INSERT", "TRUNCATE"}),
                               ro: frozenset({"SELECT", "UPDATE"}), "PUBLIC": frozenset({"SELECT"})}),
                           grants.DbObject("sequence", "public.s", owner, {owner: frozenset({"USAGE", "SELECT", "UPDATE"}),
                                                                           ro: frozenset({"SELECT", "UPDATE"})}),
                           grants.DbObject("function", "public.f(integer)", owner, {
                               owner: frozenset({"EXECUTE"}), "PUBLIC": frozenset({"EXECUTE"})}))
    db = TENANT.store
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("database", db, owner, 'REVOKE SELECT ON TABLE public.receipts FROM PUBLIC'),
        ("database", db, owner, f'REVOKE TRUNCATE ON TABLE public.receipts FROM "{app}"'),
        ("database", db, owner, f'REVOKE UPDATE ON TABLE public.receipts FROM "{ro}"'),
        ("database", db, owner, f'REVOKE UPDATE ON SEQUENCE public.s FROM "{ro}"'),
    ]


def test_object_privileges_beyond_the_ceiling_on_the_keepers_ledger_are_revoked_as_the_keeper():
    """The evidence ledger is the keeper's: it may let the owner read it and record checkpoints, nothing
    more; drift there is revoked by a keeper step (the pilot's superuser, or the managed admin for one
    transaction), never as the owner, which may not."""
    owner, keeper, app, ro = TENANT.owner_role, TENANT.keeper_role, TENANT.app_role, TENANT.readonly_role
    catalog = with_objects(converged_workstation(), TENANT,
                           grants.DbObject("table", "public.receipts", keeper, {
                               keeper: frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"}),
                               owner: frozenset({"SELECT", "INSERT"}), app: frozenset({"SELECT", "INSERT"}),
                               ro: frozenset({"SELECT", "UPDATE"})}),
                           grants.DbObject("function", "public.record_receipt_checkpoint(text)", keeper, {
                               keeper: frozenset({"EXECUTE"}), owner: frozenset({"EXECUTE"})}))
    db = TENANT.store
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("keeper", db, keeper, f'REVOKE INSERT ON TABLE public.receipts FROM "{owner}"'),
        ("keeper", db, keeper, f'REVOKE UPDATE ON TABLE public.receipts FROM "{ro}"'),
    ]


def test_objects_of_another_owner_are_left_to_the_audit():
    catalog = with_objects(converged_workstation(), TENANT,
                           grants.DbObject("table", "public.t", "mallory", {"mallory": frozenset({"SELECT"}),
                                                                            "PUBLIC": frozenset({"SELECT"})}))
    assert grants.plan(pilot_server(), catalog, FakePasswords()) == []


def test_audit_role_holds_only_what_lets_it_read():
    catalog = converged_workstation()
    catalog.memberships += (Membership("pg_write_all_data", AUDIT, SUPERUSER),)
    catalog.audit_reads_hba = False
    assert where(grants.plan(pilot_server(), catalog, FakePasswords())) == [
        ("role", "postgres", None, f'REVOKE "pg_write_all_data" FROM "{AUDIT}"'),
        ("role", "postgres", None, f'GRANT SELECT ON pg_catalog.pg_hba_file_rules TO "{AUDIT}"'),
        ("role", "postgres", None, f'GRANT EXECUTE ON FUNCTION pg_catalog.pg_hba_file_rules() TO "{AUDIT}"'),
    ]
