"""Going live: the three planes deployed onto managed-service stand-ins (PostgreSQL >= 16,
each its own server in its own namespace, TLS from a CA the test made, a master user with
CREATEDB CREATEROLE and no superuser, see standins.py), from @local, through the same
database-level path as the pilot. The pilot (``local_site``) is the reference: schemas and
env files must match it but for connection data.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from psycopg import sql

from conftest import ADOPTED  # its database was made beforehand by the master
from hosts import service_host, sql_from_host
from standins import pg_dump16

from zeroui_db import contract

pytestmark = [pytest.mark.integration, pytest.mark.cloud]



def test_first_deploy_converges_then_nothing_changes(cloud):
    first = cloud.first_run
    assert first.returncode == 0, first.stderr[-4000:]
    assert first.changed, "the first deploy should have done the work"
    again = cloud.deploy()
    assert again.errors == [] and again.changed == []


def test_no_workstation_work_on_a_managed_site(cloud):
    """Only database-level operations and env files: no packages, cluster, pg_hba or postgresql.conf."""
    names = [op["name"] for op in cloud.first_run.results["operations"]]
    assert names and all(n.startswith(("Plane databases", "Plane schemas", "Env files")) for n in names), names


def test_adopted_database_belongs_to_its_owner(cloud, cloud_standins):
    s = cloud_standins[ADOPTED.key]
    owner = s.superuser_sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{ADOPTED.store}'")
    assert owner.strip() == ADOPTED.owner_role


def test_master_acts_as_owner_by_set_only(cloud, cloud_standins):
    """PostgreSQL 16+: the master was granted each owner WITH SET TRUE, INHERIT FALSE, and kept its own memberships."""
    for key, s in cloud_standins.items():
        plane = contract.PLANES_BY_KEY[key]
        rows = s.superuser_sql(
            "SELECT pg_get_userbyid(roleid), set_option, inherit_option FROM pg_auth_members"
            f" WHERE member = '{s.master}'::regrole ORDER BY 1, 2").split()
        assert f"{plane.owner_role}|t|f" in rows, rows
        assert any(r.startswith("provider_admins|") for r in rows), "the provider's own grant was revoked"
        if plane.keeps_evidence:
            # It administers the keeper (CREATE ROLE gave it ADMIN) but may not act as it: the migration
            # that needed the keeper granted the owner membership and revoked it in its own transaction.
            assert f"{plane.keeper_role}|f|f" in rows, rows
            members = s.superuser_sql(f"SELECT count(*) FROM pg_auth_members WHERE roleid = '{plane.keeper_role}'"
                                      f"::regrole AND member <> '{s.master}'::regrole")
            assert members.strip() == "0"


def _dump(argv_prefix: list[str], database: str, args: list[str]) -> str:
    proc = subprocess.run([*argv_prefix, pg_dump16(), "--schema-only", *args, database],
                          text=True, capture_output=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _normalised(dump: str) -> str:
    """Only what differs between servers of different majors or builds, never objects or grants."""
    keep = [line for line in dump.splitlines()
            if not re.match(r"-- Dumped (from|by) ", line) and not line.startswith("SET transaction_timeout")]
    return "\n".join(keep)


# The pilot's evidence guard: a schema and event triggers of the superuser's, which a managed
# service's admin may not create (README, "The evidence ledger"). Nothing else may differ.
_GUARD_SCHEMA = "zeroui_guard"
_EVENT_TRIGGER = re.compile(r"\n--\n-- Name: [^\n]*; Type: EVENT TRIGGER;[^\n]*\n--\n.*?(?=\n--\n)", re.S)


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES, ids=lambda p: p.key)
def test_schema_is_the_pilots(cloud, cloud_standins, local_site, plane):
    """pg_dump --schema-only of the pilot and of the stand-in agree: tables, triggers, functions,
    owners and ACLs (the same pg_dump 16 reads both), all but the pilot's evidence guard."""
    pilot = _dump(["runuser", "-u", "postgres", "--"], plane.store,
                  ["-h", "/var/run/postgresql", "-p", str(local_site.port), f"--exclude-schema={_GUARD_SCHEMA}"])
    cloud_dump = cloud_standins[plane.key].pg_dump(plane.store, "--schema-only")
    assert "CREATE TABLE" in pilot and "GRANT" in pilot and "OWNER TO" in pilot
    guards = len(_EVENT_TRIGGER.findall(pilot))
    assert guards == (3 if plane.keeps_evidence else 0)
    assert _normalised(cloud_dump) == _normalised(_EVENT_TRIGGER.sub("", pilot))
    if plane.keeps_evidence:  # the keeper owns the ledger there too
        assert f"OWNER TO {plane.keeper_role}" in cloud_dump


def _settings(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES, ids=lambda p: p.key)
def test_env_files_differ_from_the_pilots_only_in_the_url(cloud, local_site, plane):
    env_dir = cloud.env_dir
    mine, pilots = env_dir / f"{plane.key}.env", local_site.env_dir / f"{plane.key}.env"
    strip = lambda text: [line for line in text.splitlines() if "=" not in line or line.startswith("#")]  # noqa: E731
    assert strip(mine.read_text()) == strip(pilots.read_text())
    assert _settings(mine).keys() == _settings(pilots).keys() == {plane.env_var}
    a, b = urlsplit(_settings(mine)[plane.env_var]), urlsplit(_settings(pilots)[plane.env_var])
    assert (a.scheme, a.username, a.path) == (b.scheme, b.username, b.path)
    assert a.query.replace(str(env_dir), "ENV") == b.query.replace(str(local_site.env_dir), "ENV")
    assert (env_dir / f"{plane.key}-ca.crt").is_file()


def test_roles_reach_only_their_own_plane(lab, cloud, cloud_standins):
    """From each service host: its plane's roles log in to their database on their stand-in, and to
    no other plane's database (those servers do not know them)."""
    for plane in contract.POSTGRES_PLANES:
        host = service_host(plane)
        for role in plane.login_roles:
            for other in contract.POSTGRES_PLANES:
                s = cloud_standins[other.key]
                attempt = {"host": s.address, "port": s.port, "dbname": other.store, "user": role,
                           "password": cloud.password(role), "sslmode": "verify-full", "sslrootcert": str(s.ca_file)}
                proc = lab.run(host, [sys.executable, "-c", _CONNECT], input=json.dumps(attempt))
                assert proc.returncode == 0, proc.stderr
                assert json.loads(proc.stdout)["ok"] == (other is plane), (role, other.key, proc.stdout)


_CONNECT = r"""
import json, sys, psycopg
a = json.load(sys.stdin)
try:
    with psycopg.connect(**a, connect_timeout=5) as c:
        c.execute("SELECT 1")
    print(json.dumps({"ok": True}))
except psycopg.Error as e:
    print(json.dumps({"ok": False, "error": str(e).strip().splitlines()[-1]}))
"""


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES, ids=lambda p: p.key)
def test_env_file_url_works_from_the_service_host(lab, cloud, plane):
    """The cloud env file's URL, as written (verify-full against the provider's CA, channel binding)."""
    url = _settings(cloud.env_dir / f"{plane.key}.env")[plane.env_var]
    [result] = sql_from_host(lab, service_host(plane), ["SELECT current_user, current_database()"], url=url)
    assert result["rows"] == [[plane.app_role, plane.store]]


def test_app_role_holds_no_privilege_on_other_schemas(cloud, cloud_standins):
    """The deploy issued no superuser-only clause and left no plane role with a special attribute."""
    for key, s in cloud_standins.items():
        plane = contract.PLANES_BY_KEY[key]
        rows = s.superuser_sql(sql.SQL(
            "SELECT rolname, rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls"
            " FROM pg_roles WHERE rolname = ANY({})").format(sql.Literal(list(plane.roles))).as_string()).split()
        assert sorted(rows) == sorted(f"{r}|f" for r in plane.roles)
