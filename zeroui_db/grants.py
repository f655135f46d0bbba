"""Roles, databases and privileges each plane must have, and the steps that get there.

:func:`plan` is pure: it compares the desired state (derived from the contract) with
an observed :class:`Catalog` and returns the SQL steps, composed with psycopg's ``sql``
module, that close the gap. Nothing is ever dropped; a converged cluster yields no step.
The same desired state is what the audit will check live rules and grants against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from psycopg import sql

from . import contract
from .contract import Plane

# Attributes every plane role has; the admin role is the only one with CREATEDB/CREATEROLE.
PLANE_ROLE_ATTRS = {
    "super": False, "createdb": False, "createrole": False, "replication": False, "bypassrls": False, "inherit": True,
}
ADMIN_ATTRS = {
    "super": False, "createdb": True, "createrole": True, "replication": False, "bypassrls": False, "canlogin": True,
}
_ATTR_SQL = {
    "super": "SUPERUSER", "createdb": "CREATEDB", "createrole": "CREATEROLE", "replication": "REPLICATION",
    "bypassrls": "BYPASSRLS", "inherit": "INHERIT", "canlogin": "LOGIN",
}
# A login that expires would lock services out while the deploy saw nothing to do.
NO_EXPIRY = (None, "infinity")

PUBLIC = "PUBLIC"
# Privileges by object kind, as aclexplode() names them.
DATABASE_OWNER_PRIVILEGES = frozenset({"CREATE", "TEMPORARY", "CONNECT"})
LOGIN_DATABASE_PRIVILEGES = frozenset({"CONNECT"})
SCHEMA = "public"
LOGIN_SCHEMA_PRIVILEGES = frozenset({"USAGE"})
# Default privileges on what the owner creates: pg_default_acl object types r (tables)
# and S (sequences). The app role gets DML, never TRUNCATE, REFERENCES or TRIGGER.
DEFAULT_PRIVILEGES = {
    "app": {"r": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}), "S": frozenset({"USAGE", "SELECT"})},
    "ro": {"r": frozenset({"SELECT"}), "S": frozenset({"SELECT"})},
}
_OBJTYPE_SQL = {"r": "TABLES", "S": "SEQUENCES"}


def role_attributes(plane: Plane, role: str) -> dict[str, bool]:
    return {**PLANE_ROLE_ATTRS, "canlogin": role in plane.login_roles}


def default_privileges(plane: Plane) -> dict[str, dict[str, frozenset[str]]]:
    """grantee role -> objtype -> privileges, for objects ``plane.owner_role`` creates."""
    return {plane.app_role: DEFAULT_PRIVILEGES["app"], plane.readonly_role: DEFAULT_PRIVILEGES["ro"]}


Grants = dict[str, frozenset[str]]  # grantee (or PUBLIC) -> privileges


@dataclass
class DatabaseState:
    owner: str
    acl: Grants
    schema_acl: Grants | None = None  # None: not read (the database did not exist)
    default_acl: dict[str, dict[str, frozenset[str]]] | None = None  # grantee -> objtype -> privs


@dataclass
class Catalog:
    """What the cluster has now, as far as the contract cares."""

    roles: dict[str, dict] = field(default_factory=dict)  # attributes, and "validuntil"
    memberships: frozenset[tuple[str, str]] = frozenset()  # (role, member) touching contract roles
    databases: dict[str, DatabaseState] = field(default_factory=dict)

    @property
    def admin_member_of(self) -> frozenset[str]:
        return frozenset(role for role, member in self.memberships if member == contract.ADMIN_ROLE)


@dataclass(frozen=True)
class Step:
    database: str  # run in this database
    statement: sql.Composable
    summary: str  # what it does, for people; never holds a secret
    after: Callable[[], None] | None = None  # e.g. record the verifier that was applied

    def __repr__(self) -> str:  # keeps verifiers out of pyinfra's --debug dumps
        return f"Step({self.database}: {self.summary})"


def _attrs_sql(attrs: dict[str, bool]) -> sql.SQL:
    return sql.SQL(" ".join(("" if on else "NO") + _ATTR_SQL[k] for k, on in attrs.items()))


def role_steps(
    role: str, want: dict[str, bool], have: dict[str, bool] | None, verifier: Callable[[], str] | None,
    record: Callable[[str], None] | None,
) -> list[Step]:
    """Create ``role`` or bring its attributes (and password, when ``verifier``) in line."""
    db = contract.MAINTENANCE_DB
    ident = sql.Identifier(role)
    if have is None:
        stmt = sql.SQL("CREATE ROLE {} {}").format(ident, _attrs_sql(want))
        if verifier is None:
            return [Step(db, stmt, f"create role {role}")]
        v = verifier()
        return [Step(db, stmt + sql.SQL(" PASSWORD {}").format(sql.Literal(v)), f"create role {role}",
                     after=lambda: record(v))]
    steps = []
    drift = {k: on for k, on in want.items() if have.get(k) != on}
    if drift:
        steps.append(Step(db, sql.SQL("ALTER ROLE {} {}").format(ident, _attrs_sql(drift)),
                          f"set {_attrs_sql(drift).as_string()} on role {role}"))
    if have.get("validuntil") not in NO_EXPIRY:
        steps.append(Step(db, sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(ident),
                          f"remove the expiry of role {role}"))
    if verifier is not None:
        v = verifier()
        steps.append(Step(db, sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(v)),
                          f"set the password of role {role}", after=lambda: record(v)))
    return steps


def _acl_steps(on: sql.Composable, db: str, have: Grants, want: Grants, keep: set[str], what: str) -> list[Step]:
    """REVOKE what nobody should hold, GRANT what is missing; ``keep`` grantees are left alone."""
    steps = []
    for grantee in sorted(set(have) - set(want) - keep):
        who = sql.SQL(PUBLIC) if grantee == PUBLIC else sql.Identifier(grantee)
        steps.append(Step(db, sql.SQL("REVOKE ALL ON {} FROM {}").format(on, who), f"revoke {what} from {grantee}"))
    for grantee, privs in sorted(want.items()):
        if have.get(grantee, frozenset()) == privs:
            continue
        if have.get(grantee, frozenset()) - privs:
            steps.append(Step(db, sql.SQL("REVOKE ALL ON {} FROM {}").format(on, sql.Identifier(grantee)),
                              f"revoke {what} from {grantee}"))
        steps.append(Step(db, sql.SQL("GRANT {} ON {} TO {}").format(
            sql.SQL(", ").join(sql.SQL(p) for p in sorted(privs)), on, sql.Identifier(grantee)),
            f"grant {', '.join(sorted(privs))} on {what} to {grantee}"))
    return steps


def plane_steps(plane: Plane, catalog: Catalog) -> list[Step]:
    """Database, ownership and privileges of one plane (its roles already exist)."""
    db, owner = plane.store, plane.owner_role
    maint = contract.MAINTENANCE_DB
    steps = []
    if owner not in catalog.admin_member_of:
        # The admin works inside the plane as its owner, the way a managed service's
        # master user does; membership is what lets it create a database owned by it.
        steps.append(Step(maint, sql.SQL("GRANT {} TO {}").format(
            sql.Identifier(owner), sql.Identifier(contract.ADMIN_ROLE)), f"let {contract.ADMIN_ROLE} act as {owner}"))
    state = catalog.databases.get(db)
    if state is None:
        steps.append(Step(maint, sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(db), sql.Identifier(owner)), f"create database {db}"))
        # A new database has the default ACL: the owner's, plus CONNECT/TEMP for PUBLIC.
        state = DatabaseState(owner, {owner: DATABASE_OWNER_PRIVILEGES, PUBLIC: frozenset({"CONNECT", "TEMPORARY"})})
    elif state.owner != owner:
        steps.append(Step(maint, sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(db), sql.Identifier(owner)), f"make {owner} the owner of {db}"))

    want_db = {owner: DATABASE_OWNER_PRIVILEGES, **{r: LOGIN_DATABASE_PRIVILEGES for r in plane.login_roles}}
    steps += _acl_steps(sql.SQL("DATABASE {}").format(sql.Identifier(db)), maint, state.acl, want_db,
                        keep=set(), what=f"database {db}")

    # Inside the database. A database not read yet has PG15's defaults: public schema
    # owned by pg_database_owner with USAGE for PUBLIC, no default privileges.
    schema_acl = state.schema_acl if state.schema_acl is not None else {
        "pg_database_owner": frozenset({"USAGE", "CREATE"}), PUBLIC: frozenset({"USAGE"})}
    want_schema = {r: LOGIN_SCHEMA_PRIVILEGES for r in plane.login_roles}
    steps += _acl_steps(sql.SQL("SCHEMA {}").format(sql.Identifier(SCHEMA)), db, schema_acl, want_schema,
                        keep={"pg_database_owner", owner}, what=f"schema {SCHEMA} in {db}")

    have_default = state.default_acl or {}
    want_default = default_privileges(plane)
    for grantee in sorted(set(have_default) | set(want_default)):
        if grantee == owner:  # the owner's own entry is implicit in every default ACL
            continue
        for objtype in sorted(set(have_default.get(grantee, {})) | set(want_default.get(grantee, {}))):
            have = have_default.get(grantee, {}).get(objtype, frozenset())
            want = want_default.get(grantee, {}).get(objtype, frozenset())
            if have == want:
                continue
            kind = sql.SQL(_OBJTYPE_SQL.get(objtype, "TABLES"))
            what = f"{_OBJTYPE_SQL.get(objtype, objtype).lower()} of {owner} for {grantee}"
            if have - want:
                steps.append(Step(db, sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE ALL ON {} FROM {}").format(
                    sql.Identifier(owner), kind, sql.Identifier(grantee)), f"revoke default privileges on {what}"))
            if want:
                steps.append(Step(db, sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT {} ON {} TO {}").format(
                    sql.Identifier(owner), sql.SQL(", ").join(sql.SQL(p) for p in sorted(want)), kind,
                    sql.Identifier(grantee)), f"default {', '.join(sorted(want))} on {what}"))
    return steps


class Passwords(Protocol):
    """Where login roles' passwords come from (the secrets store)."""

    def applied_verifier(self, role: str) -> str | None: ...
    def fresh_verifier(self, role: str) -> str: ...
    def record_applied(self, role: str, verifier: str) -> None: ...


def plan(catalog: Catalog, passwords: Passwords) -> list[Step]:
    """Every step that brings the cluster to the contract."""
    steps = []
    for plane in contract.POSTGRES_PLANES:
        for role in plane.roles:
            verifier = None
            if role in plane.login_roles:
                applied = passwords.applied_verifier(role)
                if applied is None:
                    verifier = lambda role=role: passwords.fresh_verifier(role)
                elif role not in catalog.roles:  # e.g. the cluster was re-created
                    verifier = lambda applied=applied: applied
            steps += role_steps(role, role_attributes(plane, role), catalog.roles.get(role), verifier,
                                lambda v, role=role: passwords.record_applied(role, v))
    wanted = {(p.owner_role, contract.ADMIN_ROLE) for p in contract.POSTGRES_PLANES}
    for role, member in sorted(catalog.memberships - wanted):
        # Any other membership would let one plane's role act with another's rights.
        steps.append(Step(contract.MAINTENANCE_DB, sql.SQL("REVOKE {} FROM {}").format(
            sql.Identifier(role), sql.Identifier(member)), f"revoke membership of {member} in {role}"))
    for plane in contract.POSTGRES_PLANES:
        steps += plane_steps(plane, catalog)
    return steps
