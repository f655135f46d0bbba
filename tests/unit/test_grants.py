"""Planning roles, databases and privileges: all of it on an empty cluster, none on a converged one."""

import re

from zeroui_db import contract, grants, scram
from zeroui_db.grants import Catalog, DatabaseState


class FakePasswords:
    def __init__(self, applied=True):
        self.applied, self.recorded = applied, {}

    def applied_verifier(self, role):
        return scram.verifier("pw", salt=b"0" * 16) if self.applied else None

    def fresh_verifier(self, role):
        return scram.verifier("new-pw")

    def record_applied(self, role, verifier):
        self.recorded[role] = verifier


def converged() -> Catalog:
    roles, databases = {}, {}
    for plane in contract.POSTGRES_PLANES:
        for role in plane.roles:
            roles[role] = grants.role_attributes(plane, role)
        databases[plane.store] = DatabaseState(
            owner=plane.owner_role,
            acl={plane.owner_role: grants.DATABASE_OWNER_PRIVILEGES,
                 **{r: grants.LOGIN_DATABASE_PRIVILEGES for r in plane.login_roles}},
            schema_acl={"pg_database_owner": frozenset({"USAGE", "CREATE"}),
                        **{r: grants.LOGIN_SCHEMA_PRIVILEGES for r in plane.login_roles}},
            default_acl=grants.default_privileges(plane),
        )
    members = frozenset((p.owner_role, contract.ADMIN_ROLE) for p in contract.POSTGRES_PLANES)
    return Catalog(roles=roles, memberships=members, databases=databases)


def sql(steps) -> list[str]:
    return [s.statement.as_string() for s in steps]


def test_converged_cluster_needs_nothing():
    assert grants.plan(converged(), FakePasswords()) == []


def test_empty_cluster_gets_everything():
    passwords = FakePasswords(applied=False)
    steps = grants.plan(Catalog(), passwords)
    text = sql(steps)
    for plane in contract.POSTGRES_PLANES:
        assert f'CREATE ROLE "{plane.owner_role}" NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT NOLOGIN' in text
        assert any(t.startswith(f'CREATE ROLE "{plane.app_role}"') and " LOGIN PASSWORD 'SCRAM-SHA-256$" in t
                   for t in text)
        assert f'CREATE DATABASE "{plane.store}" OWNER "{plane.owner_role}" ENCODING \'UTF8\' TEMPLATE template0' in text
        assert f'REVOKE ALL ON DATABASE "{plane.store}" FROM PUBLIC' in text
        assert f'GRANT CONNECT ON DATABASE "{plane.store}" TO "{plane.app_role}"' in text
        assert 'REVOKE ALL ON SCHEMA "public" FROM PUBLIC' in text
        assert (f'ALTER DEFAULT PRIVILEGES FOR ROLE "{plane.owner_role}" GRANT DELETE, INSERT, SELECT, UPDATE '
                f'ON TABLES TO "{plane.app_role}"') in text
        assert (f'ALTER DEFAULT PRIVILEGES FOR ROLE "{plane.owner_role}" GRANT SELECT ON TABLES '
                f'TO "{plane.readonly_role}"') in text
    # Roles come first, then membership lets the admin create each database owned by its owner.
    first_db = next(i for i, t in enumerate(text) if t.startswith("CREATE DATABASE"))
    assert all(t.startswith("CREATE ROLE") for t in text[:9]) and first_db > 9
    # Verifiers are recorded only when their step runs.
    assert passwords.recorded == {}
    for step in steps:
        if step.after:
            step.after()
    assert set(passwords.recorded) == {r for p in contract.POSTGRES_PLANES for r in p.login_roles}


def test_recreated_cluster_reuses_the_applied_verifier():
    steps = grants.plan(Catalog(), FakePasswords(applied=True))
    applied = FakePasswords().applied_verifier("x")
    assert any(applied in t for t in sql(steps))


def test_rotated_password_is_altered_only_for_that_role():
    class OneRotated(FakePasswords):
        def applied_verifier(self, role):
            return None if role == contract.TENANT.app_role else super().applied_verifier(role)
    steps = grants.plan(converged(), OneRotated())
    assert [s.summary for s in steps] == [f"set the password of role {contract.TENANT.app_role}"]


def test_drift_is_repaired():
    catalog = converged()
    catalog.roles[contract.TENANT.app_role]["createdb"] = True
    product = catalog.databases[contract.PRODUCT.store]
    product.acl = {**product.acl, grants.PUBLIC: frozenset({"CONNECT"}), "mallory": frozenset({"CONNECT"})}
    shared = catalog.databases[contract.SHARED.store]
    shared.acl = {**shared.acl, contract.SHARED.app_role: frozenset({"CONNECT", "TEMPORARY"})}
    text = sql(grants.plan(catalog, FakePasswords()))
    assert text == [
        f'ALTER ROLE "{contract.TENANT.app_role}" NOCREATEDB',
        f'REVOKE ALL ON DATABASE "{contract.PRODUCT.store}" FROM PUBLIC',
        f'REVOKE ALL ON DATABASE "{contract.PRODUCT.store}" FROM "mallory"',
        f'REVOKE ALL ON DATABASE "{contract.SHARED.store}" FROM "{contract.SHARED.app_role}"',
        f'GRANT CONNECT ON DATABASE "{contract.SHARED.store}" TO "{contract.SHARED.app_role}"',
    ]


def test_more_drift_is_repaired():
    """Bypassing RLS, an expiry, a cross-plane membership, extra default privileges."""
    catalog = converged()
    catalog.roles[contract.SHARED.readonly_role]["bypassrls"] = True
    catalog.roles[contract.TENANT.app_role]["validuntil"] = "2026-12-01 00:00:00+00"
    catalog.memberships |= {(contract.PRODUCT.owner_role, contract.TENANT.app_role)}
    tenant = catalog.databases[contract.TENANT.store]
    tenant.default_acl = {**tenant.default_acl,
                          contract.TENANT.readonly_role: {"r": frozenset({"SELECT", "INSERT"}), "S": frozenset({"SELECT"})},
                          "mallory": {"r": frozenset({"SELECT"})}}
    owner, ro = contract.TENANT.owner_role, contract.TENANT.readonly_role
    assert sql(grants.plan(catalog, FakePasswords())) == [
        f'ALTER ROLE "{contract.TENANT.app_role}" VALID UNTIL \'infinity\'',
        f'ALTER ROLE "{contract.SHARED.readonly_role}" NOBYPASSRLS',
        f'REVOKE "{contract.PRODUCT.owner_role}" FROM "{contract.TENANT.app_role}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" REVOKE ALL ON TABLES FROM "mallory"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" REVOKE ALL ON TABLES FROM "{ro}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" GRANT SELECT ON TABLES TO "{ro}"',
    ]


def test_nothing_is_ever_dropped():
    text = " ".join(sql(grants.plan(Catalog(), FakePasswords(applied=False))))
    assert not re.search(r"\b(DROP|TRUNCATE|DELETE FROM)\b", text)


def test_step_repr_hides_verifiers():
    steps = grants.plan(Catalog(), FakePasswords(applied=False))
    assert "SCRAM" not in repr(steps)
