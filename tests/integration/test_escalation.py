"""No login role the deploy leaves behind can escalate to superuser or to the server's OS user.

On PostgreSQL up to 15 a CREATEROLE role can grant itself pg_execute_server_program, then
``COPY … FROM PROGRAM`` runs commands as the postgres OS user (field notes). Each case logs
in as one role the deploy made, from where pg_hba lets it in (the admin over TLS on
loopback, a plane's roles from that plane's service host), and tries one step; the step
must fail with insufficient_privilege. Independently, the catalog read by the superuser
must show no such role with a path up.

Whatever a case managed to do is undone after it (as the superuser), so one success can
neither mask nor cause another, and the shared site stays as deployed.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from hosts import service_host, sql_from_host, superuser_psql, superuser_rows

from zeroui_db import contract

pytestmark = pytest.mark.integration

# Predefined roles that reach outside the database (programs, files, signals) or past
# every table's privileges.
PREDEFINED = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files",
              "pg_signal_backend", "pg_read_all_data", "pg_write_all_data")
INSUFFICIENT_PRIVILEGE = "42501"
PROBE_ROLE = "zt_escalation_probe"  # what CREATE ROLE … SUPERUSER would create
LOGIN_ROLES = (contract.ADMIN_ROLE, *(r for p in contract.POSTGRES_PLANES for r in p.login_roles))
FIRST_POSTGRES_WITH_SAFE_CREATEROLE = 160000  # 16 limits CREATEROLE to roles its holder administers


@dataclass(frozen=True)
class Session:
    role: str
    dbname: str
    host: str | None  # the lab host it logs in from; None: this machine, over loopback

    def __str__(self) -> str:
        return f"{self.role}@{self.dbname}"


SESSIONS = (
    *(Session(contract.ADMIN_ROLE, db, None)
      for db in (contract.MAINTENANCE_DB, *(p.store for p in contract.POSTGRES_PLANES))),
    *(Session(role, p.store, service_host(p)) for p in contract.POSTGRES_PLANES for role in p.login_roles),
)


def run_as(lab, site, session: Session, statements: list[str | sql.Composable]) -> list[dict]:
    """Each statement's outcome ({ok, sqlstate, rows}), in one autocommit session as ``session``."""
    statements = [s.as_string() if isinstance(s, sql.Composable) else s for s in statements]
    connect = {"port": site.port, "dbname": session.dbname, "user": session.role,
               "password": site.password(session.role)}
    if session.host is not None:
        return sql_from_host(lab, session.host, statements, host=site.server_address, **connect)
    out = []
    with psycopg.connect(host="127.0.0.1", **connect, sslmode="require", connect_timeout=10,
                         autocommit=True) as conn:
        for stmt in statements:
            try:
                cur = conn.execute(stmt)
                out.append({"ok": True, "sqlstate": None, "rows": cur.fetchall() if cur.description else None})
            except psycopg.Error as e:
                out.append({"ok": False, "sqlstate": e.sqlstate, "rows": None})
    return out


def refused(outcome: dict) -> bool:
    return outcome["sqlstate"] == INSUFFICIENT_PRIVILEGE


# -- undo -------------------------------------------------------------------------------------

_STATE = """
SELECT 'member', pg_get_userbyid(roleid), pg_get_userbyid(member) FROM pg_auth_members
UNION ALL SELECT 'super', rolname, '' FROM pg_roles WHERE rolsuper
UNION ALL SELECT 'role', rolname, '' FROM pg_roles
"""


def _catalog_state(site) -> set[tuple[str, ...]]:
    return {tuple(row) for row in superuser_rows(site.port, contract.MAINTENANCE_DB, _STATE)}


@pytest.fixture(autouse=True)
def undo_escalations(local_site):
    """Revoke memberships, superuser flags and roles a case managed to add, and check they are gone."""
    before = _catalog_state(local_site)
    yield
    added = _catalog_state(local_site) - before
    if not added:
        return
    new_roles = {name for kind, name, _ in added if kind == "role"}
    steps = [sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(role), sql.Identifier(member))
             for kind, role, member in added if kind == "member" and member not in new_roles]
    steps += [sql.SQL("ALTER ROLE {} NOSUPERUSER").format(sql.Identifier(name))
              for kind, name, _ in added if kind == "super" and name not in new_roles]
    steps += [sql.SQL("DROP ROLE {}").format(sql.Identifier(name)) for name in sorted(new_roles)]
    superuser_psql(local_site.port, contract.MAINTENANCE_DB, sql.SQL(";\n").join(steps) + sql.SQL(";\n"))
    assert _catalog_state(local_site) == before, "could not undo what the case did"


# -- 1. attempts, as each role the deploy made ----------------------------------------------------

session_ids = pytest.mark.parametrize("session", SESSIONS, ids=str)
predefined_ids = pytest.mark.parametrize("predefined", PREDEFINED)


@session_ids
@predefined_ids
def test_cannot_grant_predefined_role_to_itself(lab, local_site, session, predefined):
    [outcome] = run_as(lab, local_site, session,
                       [sql.SQL("GRANT {} TO current_user").format(sql.Identifier(predefined))])
    assert refused(outcome), f"{session} granted itself {predefined}: {outcome}"


@session_ids
@predefined_ids
def test_cannot_grant_predefined_role_to_another_login_role(lab, local_site, session, predefined):
    others = [r for r in LOGIN_ROLES if r != session.role]
    outcomes = run_as(lab, local_site, session, [
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(predefined), sql.Identifier(other)) for other in others])
    granted = [f"{other}: {o['sqlstate'] or 'granted'}" for other, o in zip(others, outcomes) if not refused(o)]
    assert granted == [], f"{session} granted {predefined} to another login role"


# Plane roles may not create temporary tables in their database, so zt_copy may not exist.
# COPY checks the right to run programs before it looks the table up: a role that may run
# them gets undefined_table (42P01) there, one that may not gets insufficient_privilege.
_COPY_TARGET = "CREATE TEMP TABLE zt_copy (line text)"
_COPY_FROM_PROGRAM = "COPY zt_copy FROM PROGRAM 'id'"


@session_ids
def test_cannot_copy_from_program(lab, local_site, session):
    _, copy, got = run_as(lab, local_site, session, [_COPY_TARGET, _COPY_FROM_PROGRAM, "SELECT line FROM zt_copy"])
    assert refused(copy), f"{session} ran a program on the server: {copy} {got['rows']}"


@session_ids
def test_cannot_copy_from_program_after_granting_itself_the_right(lab, local_site, session):
    """The measured exploit, whole: self-grant, then COPY with the inherited right or after SET ROLE."""
    outcomes = run_as(lab, local_site, session, [
        _COPY_TARGET,
        "GRANT pg_execute_server_program TO current_user",
        _COPY_FROM_PROGRAM,  # a role that INHERITs has the right at once
        "SET ROLE pg_execute_server_program",  # a NOINHERIT one takes it this way
        # No table here: after SET ROLE even a denied table would say 42501 and hide the result.
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "RESET ROLE",
        "SELECT line FROM zt_copy",
    ])
    inherited, set_role, got = outcomes[2], outcomes[4], outcomes[6]
    assert refused(inherited), f"{session} ran a program after a self-grant: {inherited} {got['rows']}"
    assert refused(set_role), f"{session} ran a program after a self-grant and SET ROLE: {set_role}"


@session_ids
def test_cannot_make_itself_superuser(lab, local_site, session):
    [outcome] = run_as(lab, local_site, session, ["ALTER ROLE current_user SUPERUSER"])
    assert refused(outcome), f"{session}: {outcome}"


@session_ids
def test_cannot_create_a_superuser(lab, local_site, session):
    [outcome] = run_as(lab, local_site, session,
                       [sql.SQL("CREATE ROLE {} SUPERUSER").format(sql.Identifier(PROBE_ROLE))])
    assert refused(outcome), f"{session}: {outcome}"


# -- 2. the catalog, read by the superuser ------------------------------------------------------


def _escalation_paths(site, role: str) -> list[str]:
    predefined = sql.SQL("ARRAY[{}]::name[]").format(sql.SQL(", ").join(map(sql.Literal, PREDEFINED)))
    query = sql.SQL("""
        SELECT r.rolcanlogin, r.rolsuper, r.rolcreaterole, current_setting('server_version_num')::int,
          array_to_string(ARRAY(SELECT p FROM unnest({predefined}) p
                                WHERE pg_has_role(r.oid, p, 'MEMBER') ORDER BY 1), ' '),
          array_to_string(ARRAY(SELECT o.rolname FROM pg_roles o
                                WHERE o.oid <> r.oid AND pg_has_role(r.oid, o.oid, 'MEMBER')
                                  AND o.rolsuper ORDER BY 1), ' '),
          array_to_string(ARRAY(SELECT o.rolname FROM pg_roles o
                                WHERE o.oid <> r.oid AND pg_has_role(r.oid, o.oid, 'MEMBER')
                                  AND o.rolcreaterole ORDER BY 1), ' ')
        FROM pg_roles r WHERE r.rolname = {role}""").format(predefined=predefined, role=sql.Literal(role))
    rows = superuser_rows(site.port, contract.MAINTENANCE_DB, query)
    assert len(rows) == 1, f"role {role} missing"
    [[login, superuser, createrole, version, members_of, in_superusers, in_createroles]] = rows
    old_createrole = int(version) < FIRST_POSTGRES_WITH_SAFE_CREATEROLE
    paths = ["is SUPERUSER"] if superuser == "t" else []
    # Membership counts directly or through other roles (pg_has_role … 'MEMBER').
    paths += [f"is a member of {p}" for p in members_of.split()]
    if login == "t" and createrole == "t" and old_createrole:
        paths.append("has CREATEROLE and LOGIN (on PostgreSQL <= 15: grants itself any predefined role)")
    # A member may SET ROLE to the roles it is in, and act as them.
    paths += [f"is a member of superuser {o}" for o in in_superusers.split()]
    if old_createrole:
        paths += [f"is a member of {o}, which has CREATEROLE" for o in in_createroles.split()]
    return paths


@pytest.mark.parametrize("role", LOGIN_ROLES)
def test_catalog_shows_no_way_up(local_site, role):
    """No deploy-made login role is superuser, in one of the predefined roles, or CREATEROLE on <= 15."""
    assert _escalation_paths(local_site, role) == []
