"""Observed state: reading a server's catalog into a :class:`~zeroui_db.grants.Catalog`.

Everything here runs as the admin role over an ordinary TLS connection and reads only
what a non-superuser may read (``pg_roles``, never ``pg_authid``), so the same queries
serve the pilot's cluster and a managed service: one query on the maintenance database
for roles, memberships and database ACLs, and one per readable plane database for its
schema and default privileges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

from . import contract
from .config import Server
from .grants import SCHEMA, Catalog, DatabaseState, DbObject, Grants, Membership

Connect = Callable[[str], psycopg.Connection]  # database name -> open admin connection

# A role's attributes as grants.role_steps and grants.limit_steps compare them (pg_roles
# columns without "rol").
ROLE_ATTRIBUTES = sql.SQL("""json_build_object('super', rolsuper, 'createdb', rolcreatedb,
    'createrole', rolcreaterole, 'replication', rolreplication, 'bypassrls', rolbypassrls,
    'inherit', rolinherit, 'canlogin', rolcanlogin, 'validuntil', rolvaliduntil::text,
    'connlimit', rolconnlimit, 'config', rolconfig)""")

# Membership options are columns from PostgreSQL 16 on; before, SET is implied and
# INHERIT is the member's attribute.
_MEMBERSHIP_OPTIONS = {
    True: sql.SQL("am.admin_option, am.inherit_option, am.set_option"),
    False: sql.SQL("am.admin_option, (SELECT rolinherit FROM pg_roles WHERE oid = am.member), true"),
}

_SERVER_QUERY = sql.SQL("""
SELECT
  (SELECT coalesce(json_object_agg(rolname, {attributes}), '{{}}')
   FROM pg_roles WHERE rolname = ANY(%(roles)s)),
  (SELECT coalesce(json_agg(json_build_array(pg_get_userbyid(am.roleid), pg_get_userbyid(am.member),
                                             pg_get_userbyid(am.grantor), {options})), '[]')
   FROM pg_auth_members am
   WHERE pg_get_userbyid(am.roleid) = ANY(%(roles)s) OR pg_get_userbyid(am.member) = ANY(%(roles)s)),
  (SELECT coalesce(json_object_agg(d.datname, json_build_object(
      'owner', pg_get_userbyid(d.datdba),
      'readable', has_database_privilege(d.oid, 'CONNECT'),
      'acl', (SELECT json_agg(json_build_array(
                CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type))
              FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a))), '{{}}')
   FROM pg_database d WHERE d.datname = ANY(%(databases)s)),
  CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = %(audit)s)
       THEN has_table_privilege(%(audit)s, 'pg_catalog.pg_hba_file_rules', 'SELECT')
            AND has_function_privilege(%(audit)s, 'pg_catalog.pg_hba_file_rules()', 'EXECUTE')
       ELSE false END
""")

_DATABASE_QUERY = """
SELECT
  (SELECT json_agg(json_build_array(
      CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type))
   FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
   WHERE n.nspname = %(schema)s),
  (SELECT coalesce(json_agg(json_build_array(
      CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, d.defaclobjtype,
      a.privilege_type)), '[]')
   FROM pg_default_acl d, aclexplode(d.defaclacl) a
   WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = %(owner)s) AND d.defaclnamespace = 0),
  (SELECT coalesce(json_agg(json_build_array(o.kind, o.name, pg_get_userbyid(o.owner),
      CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type)), '[]')
   FROM (SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END AS kind,
                format('%%I.%%I', n.nspname, c.relname) AS name, c.relowner AS owner, c.relacl AS acl,
                CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END AS objtype
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%%'
         UNION ALL
         SELECT 'function', format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                p.proowner, p.proacl, 'f'
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%') o,
        aclexplode(coalesce(o.acl, acldefault(o.objtype::"char", o.owner))) a)
"""


def _grants(pairs: Iterable[list[str]] | None) -> Grants:
    out: dict[str, set[str]] = defaultdict(set)
    for grantee, privilege in pairs or ():
        out[grantee].add(privilege)
    return {k: frozenset(v) for k, v in out.items()}


def _objects(rows: Iterable[list[str]]) -> tuple[DbObject, ...]:
    acls: dict[tuple[str, str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for kind, name, owner, grantee, privilege in rows:
        acls[(kind, name, owner)][grantee].add(privilege)
    return tuple(DbObject(kind, name, owner, {g: frozenset(p) for g, p in acl.items()})
                 for (kind, name, owner), acl in sorted(acls.items()))


def read(connect: Connect, server: Server) -> Catalog:
    """Observe ``server``: one query on the maintenance database, one per readable plane database."""
    conn = connect(contract.MAINTENANCE_DB)
    version = conn.info.server_version
    roles = [server.admin_user, contract.AUDIT_ROLE, *(r for p in server.planes for r in p.roles)]
    query = _SERVER_QUERY.format(attributes=ROLE_ATTRIBUTES, options=_MEMBERSHIP_OPTIONS[version >= 160000])
    role_attrs, members, databases, audit_reads_hba = conn.execute(query, {
        "roles": roles, "databases": [e.database for e in server.endpoints], "audit": contract.AUDIT_ROLE,
    }).fetchone()
    catalog = Catalog(
        server_version=version,
        roles={name: attrs for name, attrs in role_attrs.items() if name != server.admin_user},
        memberships=tuple(Membership(*m) for m in members),
        databases={name: DatabaseState(d["owner"], _grants(d["acl"])) for name, d in databases.items()},
        audit_reads_hba=audit_reads_hba,
    )
    for endpoint in server.endpoints:
        state = catalog.databases.get(endpoint.database)
        # Until the admin may connect, the database is treated as freshly created: the plan
        # grants CONNECT first, and the next run reads it.
        if state is None or not databases[endpoint.database]["readable"]:
            continue
        schema_acl, default_acl, objects = connect(endpoint.database).execute(
            _DATABASE_QUERY, {"schema": SCHEMA, "owner": endpoint.plane.owner_role}).fetchone()
        state.objects = _objects(objects)
        state.schema_acl = _grants(schema_acl)
        by_grantee: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for grantee, objtype, privilege in default_acl:
            by_grantee[grantee][objtype].add(privilege)
        state.default_acl = {g: {t: frozenset(p) for t, p in types.items()} for g, types in by_grantee.items()}
    return catalog
