"""Plane passwords as the server holds them, on the pilot (session fixture ``local_site``):

- a plane role's password changed behind the deploy's back is noticed (the local superuser
  reads ``pg_authid``) and set again;
- a password with non-ASCII characters, from ``ZEROUI_DB_PASSWORD_*``, gets a verifier that
  libpq's login matches (SASLprep), used through the env file as a service would.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import quote

import pytest
from psycopg import sql

from deployment import run_deploy
from hosts import service_host, superuser_psql

from zeroui_db import contract
from zeroui_db.secret_store import env_override_name

pytestmark = pytest.mark.integration

PLANE = contract.TENANT
ROLE = PLANE.app_role
# Decomposed umlauts, a soft hyphen, ROMAN NUMERAL NINE, a ligature and a no-break space:
# SASLprep changes each, so a verifier of the plain UTF-8 bytes would never match.
NON_ASCII = "I\u00adX-pa\u0308sswo\u0308rd-\u2168-\ufb01\u00a0ok"

# Runs on the service host: logs in with the URL read from stdin; prints "ok" or the error.
_LOGIN = r"""
import sys, psycopg
try:
    with psycopg.connect(sys.stdin.read().strip(), connect_timeout=5) as conn:
        print("ok" if conn.execute("SELECT current_user").fetchone()[0] else "?")
except psycopg.Error as e:
    print(str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
"""


def env_url(site) -> str:
    return (site.env_dir / f"{PLANE.key}.env").read_text().split(f"{PLANE.env_var}=", 1)[1].strip()


def login(lab, site) -> str:
    """The plane's service logs in with its env file's URL, from its own host."""
    proc = lab.run(service_host(PLANE), [sys.executable, "-c", _LOGIN], input=env_url(site), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def planes_op_changed(run) -> bool:
    return any(name.startswith("Plane databases, roles and privileges") for name in run.changed)


def test_a_password_changed_by_hand_is_set_again(lab, local_site):
    assert login(lab, local_site) == "ok"
    superuser_psql(local_site.port, contract.MAINTENANCE_DB, sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        sql.Identifier(ROLE), sql.Literal("changed-by-hand")))
    try:
        assert "password authentication failed" in login(lab, local_site)
        run = local_site.deploy()
        assert planes_op_changed(run)
        assert login(lab, local_site) == "ok"
        assert local_site.deploy().changed == []
    except BaseException:
        local_site.deploy()  # leave the site at the contract for the other tests
        raise


def test_a_cleared_password_is_set_again(lab, local_site):
    superuser_psql(local_site.port, contract.MAINTENANCE_DB,
                   sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(ROLE)))
    try:
        assert login(lab, local_site) != "ok"
        assert planes_op_changed(local_site.deploy())
        assert login(lab, local_site) == "ok"
    except BaseException:
        local_site.deploy()
        raise


def test_a_non_ascii_password_from_the_environment_logs_in(lab, local_site):
    env = {**local_site.env, env_override_name(ROLE): NON_ASCII}
    try:
        first = run_deploy(local_site.inventory, env=env)
        assert planes_op_changed(first)
        assert f":{quote(NON_ASCII, safe='')}@" in env_url(local_site)  # the password as given, not prepared
        assert login(lab, local_site) == "ok"
        assert run_deploy(local_site.inventory, env=env).changed == []
    finally:
        local_site.deploy()  # back to the store's password
    assert login(lab, local_site) == "ok"
    assert NON_ASCII not in json.dumps(local_site.secrets(), ensure_ascii=False)  # never stored
