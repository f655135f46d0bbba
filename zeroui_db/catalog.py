"""Reading a cluster's catalog into a :class:`~zeroui_db.grants.Catalog`, and applying steps.

Everything here runs as the admin role over an ordinary TLS connection, as it would
against a managed database: one query on the maintenance database for roles,
memberships and database ACLs, and one per existing plane database for its schema and
default privileges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import psycopg

from . import contract
from .grants import Catalog, DatabaseState, Grants, Step

Connect = Callable[[str], psycopg.Connection]  # database name -> open admin connection

# A role's attributes as grants.role_steps compares them (pg_roles columns without "rol").
ROLE_ATTRIBUTES = """json_build_object('super', rolsuper, 'createdb', rolcreatedb, 'createrole', rolcreaterole,
    'replication', rolreplication, 'bypassrls', rolbypassrls, 'inherit', rolinherit,
    'canlogin', rolcanlogin, 'validuntil', rolvaliduntil::text)"""

_CLUSTER_QUERY = f"""
SELECT
  (SELECT coalesce(json_object_agg(rolname, {ROLE_ATTRIBUTES}), '{{}}')
   FROM pg_roles WHERE rolname = ANY(%(roles)s)),
  (SELECT coalesce(json_agg(json_build_array(pg_get_userbyid(am.roleid), pg_get_userbyid(am.member))), '[]')
   FROM pg_auth_members am
   WHERE pg_get_userbyid(am.roleid) = ANY(%(roles)s) OR pg_get_userbyid(am.member) = ANY(%(roles)s)),
  (SELECT coalesce(json_object_agg(d.datname, json_build_object(
      'owner', pg_get_userbyid(d.datdba),
      'acl', (SELECT json_agg(json_build_array(
                CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type))
              FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a))), '{{}}')
   FROM pg_database d WHERE d.datname = ANY(%(databases)s))
"""

_DATABASE_QUERY = """
SELECT
  (SELECT json_agg(json_build_array(
      CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type))
   FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
   WHERE n.nspname = %(schema)s),
  (SELECT coalesce(json_agg(json_build_array(pg_get_userbyid(a.grantee), d.defaclobjtype, a.privilege_type)), '[]')
   FROM pg_default_acl d, aclexplode(d.defaclacl) a
   WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = %(owner)s) AND d.defaclnamespace = 0)
"""


def _grants(pairs: Iterable[list[str]] | None) -> Grants:
    out: dict[str, set[str]] = defaultdict(set)
    for grantee, privilege in pairs or ():
        out[grantee].add(privilege)
    return {k: frozenset(v) for k, v in out.items()}


def read(connect: Connect) -> Catalog:
    """Observe the cluster: one query on the maintenance database, one per plane database."""
    planes = contract.POSTGRES_PLANES
    roles = [contract.ADMIN_ROLE, *(r for p in planes for r in p.roles)]
    row = connect(contract.MAINTENANCE_DB).execute(_CLUSTER_QUERY, {
        "roles": roles, "databases": [p.store for p in planes],
    }).fetchone()
    role_attrs, members, databases = row
    catalog = Catalog(
        roles=role_attrs,
        memberships=frozenset(tuple(m) for m in members),
        databases={name: DatabaseState(d["owner"], _grants(d["acl"])) for name, d in databases.items()},
    )
    for plane in planes:
        state = catalog.databases.get(plane.store)
        # The admin reads a plane database as a member of its owner; until it is one,
        # the database is treated as freshly created (the plan grants membership first).
        if state is None or plane.owner_role not in catalog.admin_member_of:
            continue
        schema_acl, default_acl = connect(plane.store).execute(
            _DATABASE_QUERY, {"schema": "public", "owner": plane.owner_role}).fetchone()
        state.schema_acl = _grants(schema_acl)
        by_grantee: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for grantee, objtype, privilege in default_acl:
            by_grantee[grantee][objtype].add(privilege)
        state.default_acl = {g: {t: frozenset(p) for t, p in types.items()} for g, types in by_grantee.items()}
    return catalog


class StepFailed(Exception):
    """A step the server refused; the message is one line naming the step."""


def apply(connect: Connect, steps: list[Step], log: Callable[[str], None] = lambda _: None) -> None:
    """Run steps in order, each statement on its own (CREATE DATABASE cannot run in a
    transaction; a re-run converges after a failure)."""
    for step in steps:
        log(step.summary)
        try:
            connect(step.database).execute(step.statement)
        except psycopg.Error as e:
            raise StepFailed(f"could not {step.summary}: {e.diag.message_primary or e}") from None
        if step.after:
            step.after()

