"""Roles, databases and privileges each plane must have, and the steps that get there.

:func:`plan` is pure: it compares the desired state (derived from the contract and one
:class:`~zeroui_db.config.Server`) with an observed :class:`Catalog` and returns the SQL
steps, composed with psycopg's ``sql`` module, that close the gap. It does no I/O and
holds no secret: passwords arrive as verifier callables. Nothing is ever dropped; a
converged server yields no step.

Two kinds of step, because PostgreSQL up to 15 lets any CREATEROLE role grant itself
``pg_execute_server_program`` and the like (a shell as the server's OS user):

* **role** steps (CREATE/ALTER ROLE, connection limits and settings, memberships). On the
  pilot's cluster they run as the local superuser over the unix socket, so the admin role
  that logs in over TCP needs no CREATEROLE. On a managed service (PostgreSQL 16+, where
  CREATEROLE only reaches roles its holder administers) they run as the provider's admin.
* **database** steps (CREATE DATABASE, ACLs, default privileges), always as the admin
  role over TLS; inside a plane they run as its owner (``SET ROLE``), so the admin's
  membership in the owner needs SET only, never INHERIT.
* **keeper** steps: ACL repairs on the evidence ledger, which belongs to the plane's keeper,
  a role no login role may act as. On the pilot the local superuser runs them as the keeper;
  on a managed service the admin (which administers the keeper) grants itself the keeper
  inside the step's own transaction and revokes it before commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from psycopg import sql

from . import contract
from .config import Endpoint, Limits, RoleLimits, Server
from .contract import Plane

ROLE, DATABASE, KEEPER = "role", "database", "keeper"

# Attributes every plane role has. Only the owner, app and read-only roles exist here.
PLANE_ROLE_ATTRS = {
    "super": False, "createdb": False, "createrole": False, "replication": False, "bypassrls": False, "inherit": True,
}
# The pilot's admin role: creates databases, nothing more. NOINHERIT: it acts as a plane's
# owner only by SET ROLE, inside the statements that need it.
ADMIN_ATTRS = {
    "super": False, "createdb": True, "createrole": False, "replication": False, "bypassrls": False,
    "inherit": False, "canlogin": True,
}
_ATTR_SQL = {
    "super": "SUPERUSER", "createdb": "CREATEDB", "createrole": "CREATEROLE", "replication": "REPLICATION",
    "bypassrls": "BYPASSRLS", "inherit": "INHERIT", "canlogin": "LOGIN",
}
# Clauses a managed service's admin may not issue at all, not even to say NO...: they are
# left out, and a role that has one of them is reported, not repaired.
SUPERUSER_ONLY_ATTRS = ("super", "replication", "bypassrls")
# A login that expires would lock services out while the deploy saw nothing to do.
NO_EXPIRY = (None, "infinity")

PUBLIC = "PUBLIC"
# Privileges by object kind, as aclexplode() names them.
DATABASE_OWNER_PRIVILEGES = frozenset({"CREATE", "TEMPORARY", "CONNECT"})
LOGIN_DATABASE_PRIVILEGES = frozenset({"CONNECT"})
SCHEMA = "public"
LOGIN_SCHEMA_PRIVILEGES = frozenset({"USAGE"})
# The evidence keeper owns the ledger's objects in the schema: it must be able to create there.
KEEPER_SCHEMA_PRIVILEGES = frozenset({"USAGE", "CREATE"})
# Default privileges on what the owner creates: pg_default_acl object types r (tables)
# and S (sequences). The app role gets DML, never TRUNCATE, REFERENCES or TRIGGER.
DEFAULT_PRIVILEGES = {
    "app": {"r": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}), "S": frozenset({"USAGE", "SELECT"})},
    "ro": {"r": frozenset({"SELECT"}), "S": frozenset({"SELECT"})},
}
# pg_default_acl.defaclobjtype -> the words ALTER DEFAULT PRIVILEGES uses for it.
OBJTYPE_SQL = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}
# The most any role but the owner may hold on a plane's objects. Migrations may grant less
# (the ledger's app role has no UPDATE); anything beyond is drift, revoked by the deploy.
OBJECT_CEILING = {
    "table": {"app": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}), "ro": frozenset({"SELECT"})},
    "sequence": {"app": frozenset({"USAGE", "SELECT"}), "ro": frozenset({"SELECT"})},
    # PostgreSQL lets PUBLIC execute new functions; what they may do is the function's business.
    "function": {"app": frozenset({"EXECUTE"}), "ro": frozenset({"EXECUTE"}), PUBLIC: frozenset({"EXECUTE"})},
}
_OBJECT_SQL = {"table": "TABLE", "sequence": "SEQUENCE", "function": "FUNCTION"}
# On the evidence keeper's objects the plane's owner may also read the ledger (an audit as the
# owner, the cutover's copy) and record a checkpoint of its head; nothing more.
KEEPER_GRANTS_OWNER = {"table": frozenset({"SELECT"}), "sequence": frozenset({"SELECT"}),
                       "function": frozenset({"EXECUTE"})}

# The audit role logs in and reads. On the pilot it may also read pg_hba and every setting;
# on a managed service the provider's admin may grant it pg_read_all_settings or pg_monitor.
AUDIT_ATTRS = {**PLANE_ROLE_ATTRS, "canlogin": True}
AUDIT_WORKSTATION_ROLES = frozenset({"pg_read_all_settings"})
AUDIT_MAY_HOLD = frozenset({"pg_read_all_settings", "pg_monitor"})
HBA_RULES_VIEW = "pg_catalog.pg_hba_file_rules"


def role_attributes(plane: Plane, role: str) -> dict[str, bool]:
    return {**PLANE_ROLE_ATTRS, "canlogin": role in plane.login_roles}


def default_privileges(plane: Plane) -> dict[str, dict[str, frozenset[str]]]:
    """grantee role -> objtype -> privileges, for objects ``plane.owner_role`` creates."""
    return {plane.app_role: DEFAULT_PRIVILEGES["app"], plane.readonly_role: DEFAULT_PRIVILEGES["ro"]}


def schema_privileges(plane: Plane) -> dict[str, frozenset[str]]:
    """Who may do what in the plane's schema besides its owner: the login roles use it; where
    the plane keeps evidence, its keeper also creates in it, and the audit role reaches the
    ledger's status function there (it may read no table)."""
    evidence = {plane.keeper_role: KEEPER_SCHEMA_PRIVILEGES,
                contract.AUDIT_ROLE: LOGIN_SCHEMA_PRIVILEGES} if plane.keeps_evidence else {}
    return {**{r: LOGIN_SCHEMA_PRIVILEGES for r in plane.login_roles}, **evidence}


def database_privileges(plane: Plane, admin: str) -> dict[str, frozenset[str]]:
    """Who may do what on the plane's database: its owner everything; its login roles, the
    admin (which reads and migrates it) and the audit CONNECT; nobody else anything."""
    return {plane.owner_role: DATABASE_OWNER_PRIVILEGES,
            **{r: LOGIN_DATABASE_PRIVILEGES for r in (*plane.login_roles, admin, contract.AUDIT_ROLE)}}


def object_ceiling(plane: Plane, kind: str) -> dict[str, frozenset[str]]:
    """grantee -> the most it may hold on an object of ``kind`` in the plane's database."""
    names = {"app": plane.app_role, "ro": plane.readonly_role, PUBLIC: PUBLIC}
    return {names[k]: privs for k, privs in OBJECT_CEILING[kind].items()}


Grants = dict[str, frozenset[str]]  # grantee (or PUBLIC) -> privileges


@dataclass(frozen=True)
class Membership:
    """A row of pg_auth_members. Before PostgreSQL 16 there is one row per pair, SET is
    implied and INHERIT is the member's attribute."""

    role: str
    member: str
    grantor: str
    admin: bool = False
    inherit: bool = True
    set: bool = True


@dataclass(frozen=True)
class DbObject:
    """A table, view, sequence or function of a plane database, with its ACL expanded."""

    kind: str  # "table" (tables, views, materialized views), "sequence" or "function"
    name: str  # schema-qualified and quoted, e.g. public.receipts or public.receipt_hash(bytea, jsonb)
    owner: str
    acl: Grants = field(hash=False)


@dataclass
class DatabaseState:
    owner: str
    acl: Grants
    schema_acl: Grants | None = None  # None: not read (the admin cannot connect yet)
    default_acl: dict[str, dict[str, frozenset[str]]] | None = None  # grantee -> objtype -> privs
    objects: tuple[DbObject, ...] = ()


@dataclass
class Catalog:
    """What a server has now, as far as the contract cares."""

    server_version: int = 150000  # server_version_num
    roles: dict[str, dict] = field(default_factory=dict)  # attributes, and "validuntil"
    memberships: tuple[Membership, ...] = ()  # rows touching the server's contract roles
    databases: dict[str, DatabaseState] = field(default_factory=dict)
    audit_reads_hba: bool = False  # the audit role may read pg_hba_file_rules (view and function)


@dataclass(frozen=True)
class Step:
    scope: str  # ROLE, DATABASE or KEEPER: who runs it (see the module docstring)
    database: str  # run in this database
    statement: sql.Composable | None  # None: drift the deploy may not repair (see ``blocked``)
    summary: str  # what it does, for people; never holds a secret
    as_role: str | None = None  # SET ROLE to this for the statement
    after: Callable[[], None] | None = None  # e.g. record the verifier that was applied
    blocked: str | None = None  # why this drift needs someone with more power

    def __repr__(self) -> str:  # keeps verifiers out of pyinfra's --debug dumps
        return f"Step({self.scope} in {self.database}: {self.summary})"


class Passwords(Protocol):
    """Where login roles' passwords come from (the secrets store)."""

    def applied_verifier(self, role: str) -> str | None: ...
    def fresh_verifier(self, role: str) -> str: ...
    def record_applied(self, role: str, verifier: str) -> None: ...


def _attrs_sql(attrs: dict[str, bool]) -> sql.SQL:
    return sql.SQL(" ".join(("" if on else "NO") + _ATTR_SQL[k] for k, on in attrs.items()))


def role_steps(
    role: str, want: dict[str, bool], have: dict[str, bool] | None, verifier: Callable[[], str] | None,
    record: Callable[[str], None] | None, superuser: bool = True,
) -> list[Step]:
    """Create ``role`` or bring its attributes (and password, when ``verifier``) in line.
    Without ``superuser``, superuser-only clauses are never issued: drift there is blocked."""
    db = contract.MAINTENANCE_DB
    ident = sql.Identifier(role)
    issuable = {k: on for k, on in want.items() if superuser or k not in SUPERUSER_ONLY_ATTRS}
    if have is None:
        stmt = sql.SQL("CREATE ROLE {} {}").format(ident, _attrs_sql(issuable))
        if verifier is None:
            return [Step(ROLE, db, stmt, f"create role {role}")]
        v = verifier()
        return [Step(ROLE, db, stmt + sql.SQL(" PASSWORD {}").format(sql.Literal(v)), f"create role {role}",
                     after=lambda: record(v))]
    steps = []
    drift = {k: on for k, on in issuable.items() if have.get(k) != on}
    if drift:
        steps.append(Step(ROLE, db, sql.SQL("ALTER ROLE {} {}").format(ident, _attrs_sql(drift)),
                          f"set {_attrs_sql(drift).as_string()} on role {role}"))
    for k in sorted(set(want) - set(issuable)):
        if have.get(k) != want[k]:
            steps.append(Step(ROLE, db, None, f"set {_attrs_sql({k: want[k]}).as_string()} on role {role}",
                              blocked="only a superuser may change this attribute"))
    if have.get("validuntil") not in NO_EXPIRY:
        steps.append(Step(ROLE, db, sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(ident),
                          f"remove the expiry of role {role}"))
    if verifier is not None:
        v = verifier()
        steps.append(Step(ROLE, db, sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(v)),
                          f"set the password of role {role}", after=lambda: record(v)))
    return steps


def role_limits(plane: Plane, role: str, limits: Limits) -> RoleLimits | None:
    """The connection limit and settings a plane role must carry; None for NOLOGIN roles."""
    return {plane.app_role: limits.app, plane.readonly_role: limits.readonly}.get(role)


def limit_steps(role: str, want: RoleLimits, have: dict | None) -> list[Step]:
    """CONNECTION LIMIT and ALTER ROLE … SET for ``role`` where pg_roles (``connlimit``,
    ``config``) differs; ``have`` None: the role is created in this plan, so everything."""
    db, ident = contract.MAINTENANCE_DB, sql.Identifier(role)
    have = have or {}
    steps = []
    if have.get("connlimit") != want.connections:
        steps.append(Step(ROLE, db, sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
            ident, sql.Literal(want.connections)), f"limit role {role} to {want.connections} connections"))
    current = dict(item.split("=", 1) for item in have.get("config") or ())
    for name, value in want.settings:
        if current.get(name) != value:
            steps.append(Step(ROLE, db, sql.SQL("ALTER ROLE {} SET {} = {}").format(
                ident, sql.Identifier(name), sql.Literal(value)), f"set {name} = {value} for role {role}"))
    return steps


def _acl_steps(on: sql.Composable, db: str, have: Grants, want: Grants, keep: set[str], what: str,
               as_role: str) -> list[Step]:
    """REVOKE what nobody should hold, GRANT what is missing; ``keep`` grantees are left alone."""
    steps = []
    for grantee in sorted(set(have) - set(want) - keep):
        who = sql.SQL(PUBLIC) if grantee == PUBLIC else sql.Identifier(grantee)
        steps.append(Step(DATABASE, db, sql.SQL("REVOKE ALL ON {} FROM {}").format(on, who),
                          f"revoke {what} from {grantee}", as_role))
    for grantee, privs in sorted(want.items()):
        if grantee in keep or have.get(grantee, frozenset()) == privs:
            continue
        if have.get(grantee, frozenset()) - privs:
            steps.append(Step(DATABASE, db, sql.SQL("REVOKE ALL ON {} FROM {}").format(on, sql.Identifier(grantee)),
                              f"revoke {what} from {grantee}", as_role))
        steps.append(Step(DATABASE, db, sql.SQL("GRANT {} ON {} TO {}").format(
            sql.SQL(", ").join(sql.SQL(p) for p in sorted(privs)), on, sql.Identifier(grantee)),
            f"grant {', '.join(sorted(privs))} on {what} to {grantee}", as_role))
    return steps


def _default_acl_steps(plane: Plane, db: str, have_default: dict, owner: str) -> list[Step]:
    want_default = default_privileges(plane)
    steps = []
    for grantee in sorted(set(have_default) | set(want_default)):
        if grantee == owner:  # the owner's own entry is implicit in every default ACL
            continue
        for objtype in sorted(set(have_default.get(grantee, {})) | set(want_default.get(grantee, {}))):
            have = have_default.get(grantee, {}).get(objtype, frozenset())
            want = want_default.get(grantee, {}).get(objtype, frozenset())
            if have == want or objtype not in OBJTYPE_SQL:
                continue
            kind = sql.SQL(OBJTYPE_SQL[objtype])
            who = sql.SQL(PUBLIC) if grantee == PUBLIC else sql.Identifier(grantee)
            what = f"{OBJTYPE_SQL[objtype].lower()} of {owner} for {grantee}"
            if have - want:
                steps.append(Step(DATABASE, db, sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE ALL ON {} FROM {}").format(
                    sql.Identifier(owner), kind, who), f"revoke default privileges on {what}", owner))
            if want:
                steps.append(Step(DATABASE, db, sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT {} ON {} TO {}").format(
                    sql.Identifier(owner), sql.SQL(", ").join(sql.SQL(p) for p in sorted(want)), kind,
                    sql.Identifier(grantee)), f"default {', '.join(sorted(want))} on {what}", owner))
    return steps


def plane_steps(endpoint: Endpoint, catalog: Catalog) -> list[Step]:
    """Database, ownership and privileges of one plane endpoint (its roles already exist)."""
    plane, db, owner = endpoint.plane, endpoint.database, endpoint.plane.owner_role
    maint = contract.MAINTENANCE_DB
    steps = []
    state = catalog.databases.get(db)
    if state is None:
        steps.append(Step(DATABASE, maint, sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(db), sql.Identifier(owner)), f"create database {db}"))
        # A new database has the default ACL: the owner's, plus CONNECT/TEMP for PUBLIC.
        state = DatabaseState(owner, {owner: DATABASE_OWNER_PRIVILEGES, PUBLIC: frozenset({"CONNECT", "TEMPORARY"})})
    elif state.owner != owner:
        # Adopted: e.g. the provider's console made the database, owned by its admin user.
        steps.append(Step(DATABASE, maint, sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(db), sql.Identifier(owner)), f"make {owner} the owner of {db}"))
        state = DatabaseState(owner, {(owner if k == state.owner else k): v for k, v in state.acl.items()},
                              state.schema_acl, state.default_acl)

    steps += _acl_steps(sql.SQL("DATABASE {}").format(sql.Identifier(db)), maint, state.acl,
                        database_privileges(plane, endpoint.admin_user), keep=set(), what=f"database {db}",
                        as_role=owner)

    # Inside the database. One not read yet has the defaults of PostgreSQL 15+: schema public
    # owned by pg_database_owner with USAGE for PUBLIC, no default privileges.
    schema_acl = state.schema_acl if state.schema_acl is not None else {
        "pg_database_owner": frozenset({"USAGE", "CREATE"}), PUBLIC: frozenset({"USAGE"})}
    want_schema = schema_privileges(plane)
    steps += _acl_steps(sql.SQL("SCHEMA {}").format(sql.Identifier(SCHEMA)), db, schema_acl, want_schema,
                        keep={"pg_database_owner", owner}, what=f"schema {SCHEMA} in {db}", as_role=owner)
    steps += _default_acl_steps(plane, db, state.default_acl or {}, owner)
    steps += _object_steps(plane, db, state.objects)
    return steps


def _object_steps(plane: Plane, db: str, objects: tuple[DbObject, ...]) -> list[Step]:
    """Revoke what a role holds beyond the ceiling on an object the plane's owner (or its
    evidence keeper) owns."""
    steps = []
    keeper = plane.keeper_role if plane.keeps_evidence else None
    for obj in objects:
        if obj.owner not in (plane.owner_role, keeper):
            continue  # not the plane's: the audit reports it; the deploy never takes objects over
        ceiling = object_ceiling(plane, obj.kind)
        if obj.owner == keeper:
            ceiling = {**ceiling, plane.owner_role: KEEPER_GRANTS_OWNER[obj.kind]}
        for grantee, privs in sorted(obj.acl.items()):
            excess = privs - ceiling.get(grantee, frozenset()) if grantee != obj.owner else frozenset()
            if not excess:
                continue
            who = sql.SQL(PUBLIC) if grantee == PUBLIC else sql.Identifier(grantee)
            steps.append(Step(DATABASE, db, sql.SQL("REVOKE {} ON {} {} FROM {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in sorted(excess)), sql.SQL(_OBJECT_SQL[obj.kind]),
                sql.SQL(obj.name), who),
                f"revoke {', '.join(sorted(excess))} on {obj.kind} {obj.name} in {db} from {grantee}", obj.owner))
            if obj.owner == keeper:
                steps[-1] = replace(steps[-1], scope=KEEPER)
    return steps


def _membership_steps(server: Server, catalog: Catalog) -> list[Step]:
    admin, maint, audit = server.admin_user, contract.MAINTENANCE_DB, contract.AUDIT_ROLE
    ours = {r for p in server.planes for r in p.roles} | {audit}
    # On the pilot the admin role is the bundle's own; a provider's admin keeps what it has.
    checked_members = ours | ({admin} if server.workstation else set())
    owners = {p.owner_role for p in server.planes}
    steps = []
    for m in sorted(catalog.memberships, key=lambda m: (m.role, m.member, m.grantor)):
        if m.member not in checked_members or (m.member == admin and m.role in owners):
            continue
        if m.member == audit and m.role in AUDIT_MAY_HOLD:
            continue
        # Any other membership would let one plane's role act with another's rights.
        revoke = sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(m.role), sql.Identifier(m.member))
        if catalog.server_version >= 160000:  # one row per grantor: revoke that row
            revoke += sql.SQL(" GRANTED BY {}").format(sql.Identifier(m.grantor))
        steps.append(Step(ROLE, maint, revoke, f"revoke membership of {m.member} in {m.role}"))
    for owner in sorted(owners):
        rows = [m for m in catalog.memberships if m.role == owner and m.member == admin]
        if catalog.server_version >= 160000:
            for m in rows:
                if m.inherit:  # 16+: inheritance is the row's option, not the member's attribute
                    steps.append(Step(ROLE, maint, sql.SQL("GRANT {} TO {} WITH INHERIT FALSE GRANTED BY {}").format(
                        sql.Identifier(owner), sql.Identifier(admin), sql.Identifier(m.grantor)),
                        f"stop {admin} inheriting the rights of {owner} (granted by {m.grantor})"))
        if any(m.set for m in rows):
            continue
        grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(admin))
        if catalog.server_version >= 160000:
            # 16+: a CREATEROLE admin holds ADMIN on roles it made, but SET only when granted.
            grant += sql.SQL(" WITH INHERIT FALSE, SET TRUE")
        steps.append(Step(ROLE, maint, grant, f"let {admin} act as {owner} (SET ROLE)"))
    if server.workstation:  # the local superuser lets the audit read what it must judge
        for role in sorted(AUDIT_WORKSTATION_ROLES):
            if not any(m.role == role and m.member == audit for m in catalog.memberships):
                steps.append(Step(ROLE, maint, sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(role), sql.Identifier(audit)), f"let {audit} read settings ({role})"))
        if not catalog.audit_reads_hba:
            for what, grant in (("SELECT ON", "view"), ("EXECUTE ON FUNCTION", "function")):
                target = HBA_RULES_VIEW + ("()" if grant == "function" else "")
                steps.append(Step(ROLE, maint, sql.SQL("GRANT {} {} TO {}").format(
                    sql.SQL(what), sql.SQL(target), sql.Identifier(audit)), f"let {audit} read pg_hba ({grant})"))
    return steps


def plan(server: Server, catalog: Catalog, passwords: Passwords) -> list[Step]:
    """Every step that brings ``server`` to the contract: role steps first, then each plane."""
    steps = []
    audit = contract.AUDIT_ROLE
    applied = passwords.applied_verifier(audit)
    verifier = ((lambda: passwords.fresh_verifier(audit)) if applied is None else
                (lambda: applied) if audit not in catalog.roles else None)
    steps += role_steps(audit, AUDIT_ATTRS, catalog.roles.get(audit), verifier,
                        lambda v: passwords.record_applied(audit, v), superuser=server.workstation)
    if server.limits:
        steps += limit_steps(audit, server.limits.audit, catalog.roles.get(audit))
    for plane in server.planes:
        for role in plane.roles:
            verifier = None
            if role in plane.login_roles:
                applied = passwords.applied_verifier(role)
                if applied is None:
                    verifier = lambda role=role: passwords.fresh_verifier(role)
                elif role not in catalog.roles:  # e.g. the cluster was re-created
                    verifier = lambda applied=applied: applied
            steps += role_steps(role, role_attributes(plane, role), catalog.roles.get(role), verifier,
                                lambda v, role=role: passwords.record_applied(role, v), superuser=server.workstation)
            limits = role_limits(plane, role, server.limits) if server.limits else None
            if limits:
                steps += limit_steps(role, limits, catalog.roles.get(role))
    steps += _membership_steps(server, catalog)
    for endpoint in server.endpoints:
        steps += plane_steps(endpoint, catalog)
    return steps
