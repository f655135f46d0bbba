"""``zeroui-db audit`` against live servers: clean sites pass; each mutation of a deployed
pilot gives the right finding and exit 1, and a redeploy brings exit 0 back; the audit
itself changes nothing.

Expectations are the contract's words (which group, role and database; which CIS check),
checked in the JSON report, not the audit's own constants.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from psycopg import sql

from clusters import free_port
from conftest import CLIENT_HOSTS
from deployment import REPO
from hosts import superuser_psql
from test_local_deploy import footprint

from zeroui_db import contract

pytestmark = pytest.mark.integration


def run_audit(inventory: Path, env: dict, *args: str) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "zeroui_db.cli", "audit", str(inventory), "--json", *args],
                          cwd=REPO, env=env, text=True, capture_output=True, timeout=120)
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, report, proc.stderr


def findings(report: dict, area: str | None = None) -> list[str]:
    return [f"{f['severity']} {f['area']}: {f['message']} | {f['evidence']}" for f in report["findings"]
            if area is None or f["area"] == area]


def failed_checks(report: dict) -> set[str]:
    return {c["id"] for c in report["checks"] if c["status"] == "fail"}


def test_clean_pilot_passes(local_site):
    code, report, stderr = run_audit(local_site.inventory, local_site.env)
    assert code == 0, (findings(report), stderr)
    assert report["schema"] == "zeroui-db-audit/1"
    assert {c["status"] for c in report["checks"]} == {"pass"}
    # The matrix holds the contract: each plane's login roles reach its database from its service host.
    allowed = {(c["group"], c["role"], c["database"]) for c in report["matrix"] if c["state"] == "allowed"}
    for plane in contract.POSTGRES_PLANES:
        group = next(g.key for g in contract.SERVICE_GROUPS if g.plane is plane)
        assert {(group, r, plane.store) for r in plane.login_roles} <= allowed
    assert (contract.IDE_LAPTOPS.key, contract.PRODUCT.app_role, contract.PRODUCT.store) not in allowed


def test_clean_cloud_stand_ins_pass(cloud):
    assert cloud.first_run.returncode == 0
    code, report, stderr = run_audit(cloud.inventory, cloud.env)
    assert code == 0, (findings(report), stderr)
    assert [s["managed_by"] for s in report["servers"]] == ["the provider"] * 3
    assert {c["status"] for c in report["checks"] if c["id"] == "5.3/5.4"} == {"n/a"}


def test_audit_changes_nothing(local_site):
    before = footprint(local_site)
    run_audit(local_site.inventory, local_site.env)
    assert footprint(local_site) == before


def test_html_page_draws_the_matrix(local_site, tmp_path):
    page = tmp_path / "audit.html"
    code, _, _ = run_audit(local_site.inventory, local_site.env, "--html", str(page))
    text = page.read_text()
    assert code == 0 and text.startswith("<!doctype html>") and "<svg" in text
    assert all(p.store in text for p in contract.POSTGRES_PLANES)
    assert "http://" not in text.replace("http://www.w3.org", "") and "<script src" not in text  # self-contained


# -- mutations ------------------------------------------------------------------------------------

def _conf(site) -> Path:
    return Path(f"/etc/postgresql/{site.version}/{site.cluster}")


def _reload(site) -> None:
    superuser_psql(site.port, contract.MAINTENANCE_DB, "SELECT pg_reload_conf();")
    time.sleep(0.3)  # the postmaster re-reads asynchronously


def _hba_line(site, line: str) -> None:
    path = _conf(site) / "pg_hba.conf"
    path.write_text(line + "\n" + path.read_text())
    _reload(site)


def _setting(site, name: str, value: str) -> None:
    path = _conf(site) / "postgresql.conf"
    path.write_text(path.read_text() + f"\n{name} = {value}\n")
    _reload(site)


def _sql(site, database: str, statement: str) -> None:
    superuser_psql(site.port, database, statement)


TENANT, PRODUCT = contract.TENANT, contract.PRODUCT
LAPTOP_NET = f"{CLIENT_HOSTS[contract.IDE_LAPTOPS.key]}/32"
TENANT_NET = f"{CLIENT_HOSTS[contract.TENANT_SERVICES.key]}/32"

# name -> (mutation, what the report must say: a finding's text or a failed CIS check id)
MUTATIONS = {
    "laptops-allowed-into-product": (
        lambda s: _hba_line(s, f"hostssl {PRODUCT.store} {PRODUCT.app_role} {LAPTOP_NET} scram-sha-256"),
        f"critical pg_hba: {contract.IDE_LAPTOPS.key} may reach {PRODUCT.store} as {PRODUCT.app_role}"),
    "trust-line": (
        lambda s: _hba_line(s, f"hostssl {TENANT.store} {TENANT.app_role} {TENANT_NET} trust"), "5.4"),
    "md5-line": (
        lambda s: _hba_line(s, f"hostssl {TENANT.store} {TENANT.app_role} {TENANT_NET} md5"), "5.4"),
    "host-instead-of-hostssl": (
        lambda s: _hba_line(s, f"host {TENANT.store} {TENANT.app_role} {TENANT_NET} scram-sha-256"), "5.8"),
    "allow-from-everywhere": (
        lambda s: _hba_line(s, f"hostssl {TENANT.store} {TENANT.app_role} 0.0.0.0/0 scram-sha-256"), "5.9"),
    "connect-for-public": (
        lambda s: _sql(s, contract.MAINTENANCE_DB, f"GRANT CONNECT ON DATABASE {PRODUCT.store} TO PUBLIC"), "CONNECT"),
    "update-on-receipts-for-readonly": (
        lambda s: _sql(s, TENANT.store, f"GRANT UPDATE ON receipts TO {TENANT.readonly_role}"),
        f"high database: the deploy would revoke UPDATE on table public.receipts in {TENANT.store} "
        f"from {TENANT.readonly_role}"),
    "createrole-on-an-app-role": (
        lambda s: _sql(s, contract.MAINTENANCE_DB, f"ALTER ROLE {TENANT.app_role} CREATEROLE"), "4.3"),
    "app-role-in-another-planes-owner": (
        lambda s: _sql(s, contract.MAINTENANCE_DB, f"GRANT {PRODUCT.owner_role} TO {TENANT.app_role}"),
        f"high database: the deploy would revoke membership of {TENANT.app_role} in {PRODUCT.owner_role}"),
    "ssl-off": (lambda s: _setting(s, "ssl", "off"), "6.8"),
    "log-connections-off": (lambda s: _setting(s, "log_connections", "off"), "3.1.20"),
    "pg-hba-edited-not-reloaded": (
        lambda s: (_conf(s) / "pg_hba.conf").write_text((_conf(s) / "pg_hba.conf").read_text() + "# edited\n"),
        "high pg_hba: pg_hba.conf changed on disk after the server loaded it"),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_mutation_is_found_and_a_redeploy_repairs_it(local_site, name):
    mutate, expected = MUTATIONS[name]
    mutate(local_site)
    try:
        code, report, stderr = run_audit(local_site.inventory, local_site.env)
        said = findings(report) + sorted(failed_checks(report))
        assert code == 1, (code, said, stderr)
        assert any(s.startswith(expected) or s == expected for s in said), said
    finally:
        local_site.deploy()
    code, report, stderr = run_audit(local_site.inventory, local_site.env)
    assert code == 0, (findings(report), stderr)


def test_table_made_by_hand_is_unclassified(local_site):
    """The deploy never drops data, so this one is repaired by hand: the audit names the table."""
    table = sql.Identifier("zt_handmade")
    _sql(local_site, TENANT.store, sql.SQL("SET ROLE {}; CREATE TABLE {} (id int)").format(
        sql.Identifier(TENANT.owner_role), table).as_string())
    try:
        code, report, _ = run_audit(local_site.inventory, local_site.env)
        assert code == 1
        assert any("table public.zt_handmade in zeroui_tenant_pg is not a classified table" in f
                   for f in findings(report, "classification")), findings(report)
    finally:
        _sql(local_site, TENANT.store, sql.SQL("DROP TABLE {}").format(table).as_string())
    assert run_audit(local_site.inventory, local_site.env)[0] == 0


def test_unreachable_endpoint_exits_2(local_site, tmp_path):
    """No server at the address: one line why, exit 2."""
    inventory = tmp_path / "gone.py"
    inventory.write_text(local_site.inventory.read_text().replace(f"'port': {local_site.port}", f"'port': {free_port()}"))
    code, _, stderr = run_audit(inventory, local_site.env)
    assert code == 2 and "could not audit" in stderr, stderr
