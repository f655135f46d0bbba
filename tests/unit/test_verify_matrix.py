"""verify's expectations, judgements and output, against literal expectations written from the
contract document (not from the code's own tables)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from zeroui_db import contract, verify
from zeroui_db.cli.verify import finding, report, table
from zeroui_db.config import parse_site
from zeroui_db.verify import Attempt, Cell, Expectation, Vantage

REPO = Path(__file__).resolve().parents[2]
G = contract.CLIENT_GROUPS_BY_KEY
T, P, S = "zeroui_tenant_pg", "zeroui_product_pg", "zeroui_shared_pg"
OWN = {("zeroui_tenant_app", T), ("zeroui_tenant_ro", T), ("zeroui_product_app", P), ("zeroui_product_ro", P),
       ("zeroui_shared_app", S), ("zeroui_shared_ro", S)}
ADMIN = {("zeroui_admin", T), ("zeroui_admin", P), ("zeroui_admin", S)}


def allowed(site, groups, source):
    """(role, database) pairs verify expects to get in, from a host of ``groups`` at ``source``."""
    vantage = Vantage("h", tuple(G[g] for g in groups))
    member = verify.memberships(site, vantage, source)
    return {(a.role, a.endpoint.database) for a in verify.attempts(site) if verify.expect(site, member, a).allowed}


# The contract's table ("who may connect to what"), written out for the conftest site:
# tenant 10.20.1.0/24, product 10.20.2.0/24, shared 10.20.3.0/24, laptops 10.30.0.0/16, and
# 127.0.0.1 in every service group and the admin hosts.
@pytest.mark.parametrize("groups, source, expected", [
    (["ide_laptops"], "10.30.0.5", set()),
    (["tenant_services"], "10.20.1.10", {("zeroui_tenant_app", T), ("zeroui_tenant_ro", T)}),
    (["product_services"], "10.20.2.10", {("zeroui_product_app", P), ("zeroui_product_ro", P)}),
    (["shared_services"], "10.20.3.10", {("zeroui_shared_app", S), ("zeroui_shared_ro", S)}),
    (["admin_hosts"], "10.9.9.9", ADMIN),
    # A host's address counts: loopback is in every service network and the admin network.
    (["tenant_services"], "127.0.0.1", OWN | ADMIN),
    # An unknown address leaves the inventory's groups.
    (["tenant_services"], None, {("zeroui_tenant_app", T), ("zeroui_tenant_ro", T)}),
    ([], "10.99.0.1", set()),
])
def test_expected_matrix(site, groups, source, expected):
    assert allowed(site, groups, source) == expected


def test_a_group_granted_another_plane(data):
    data["clients"]["product_services"]["planes"] = ["product", "tenant"]
    site = parse_site(data)
    assert allowed(site, ["product_services"], "10.20.2.10") == {
        ("zeroui_product_app", P), ("zeroui_product_ro", P), ("zeroui_tenant_app", T), ("zeroui_tenant_ro", T)}


def _expectation(site, groups, role, database, tls=True):
    member = tuple(G[g] for g in groups)
    a = next(a for a in verify.attempts(site) if (a.role, a.endpoint.database, a.tls) == (role, database, tls))
    return verify.expect(site, member, a)


@pytest.mark.parametrize("groups, role, database, tls, because", [
    (["tenant_services"], "zeroui_tenant_app", P, True, "hard rule 2"),
    (["product_services"], "zeroui_tenant_ro", S, True, "hard rule 2"),  # by credential, from anywhere
    (["ide_laptops"], "zeroui_product_app", P, True, "hard rule 1"),
    (["ide_laptops", "admin_hosts"], "zeroui_admin", S, True, "hard rule 1"),  # the hard rule first
    (["ide_laptops"], "zeroui_tenant_app", T, True, "no group of this host reaches tenant"),
    (["admin_hosts"], "postgres", T, True, "the superuser never over TCP"),
    (["tenant_services"], "zeroui_tenant_app", T, False, "TLS only"),
    (["tenant_services"], "zeroui_admin", T, True, "the admin only from admin hosts"),
])
def test_refusals_say_why(site, groups, role, database, tls, because):
    e = _expectation(site, groups, role, database, tls)
    assert not e.allowed and e.because == because


def test_attempts_cover_every_role_with_and_without_tls(site, cloud_data):
    plan = verify.attempts(site)
    assert len(plan) == 3 * 8 * 2
    assert {a.role for a in plan} == {r for r, _ in OWN} | {"zeroui_admin", "postgres"}
    assert sum(not a.tls for a in plan) == 24
    cloud_data["endpoints"]["tenant"]["admin_user"] = "postgres"  # Cloud SQL's admin bears that name
    cloud = parse_site(cloud_data)
    tenant = [a for a in verify.attempts(cloud) if a.endpoint.plane is contract.TENANT and a.tls]
    assert [(a.role, a.kind) for a in tenant if a.role == "postgres"] == [("postgres", "admin")]


@pytest.mark.parametrize("expected, observed, tls, admitted, verdict", [
    (True, "allowed", True, False, "match"),
    (True, "refused", True, False, "mismatch"),
    (True, "error", True, False, "mismatch"),
    (False, "refused", True, False, "match"),
    (False, "refused", False, False, "match"),
    (False, "allowed", True, False, "mismatch"),
    (False, "auth", True, False, "mismatch"),  # pg_hba let it through to authentication
    (False, "denied", True, False, "mismatch"),
    (False, "error", True, False, "unverified"),
    # A managed service admits the host by address; the credentials keep it out.
    (False, "auth", True, True, "match"),
    (False, "denied", True, True, "match"),
    (False, "auth", False, True, "mismatch"),  # but never without TLS
    (False, "allowed", True, True, "mismatch"),
])
def test_judge(site, expected, observed, tls, admitted, verdict):
    a = Attempt(site.endpoint(contract.TENANT), "zeroui_tenant_app", "app", tls)
    assert verify.judge(Expectation(expected, "x"), observed, a, admitted) == verdict


def test_only_managed_endpoints_admit_by_address(site, cloud_site):
    tenant = (G["tenant_services"],)
    assert not verify.admitted_by_provider(site, tenant, site.endpoint(contract.TENANT))
    assert verify.admitted_by_provider(cloud_site, tenant, cloud_site.endpoint(contract.TENANT))
    assert not verify.admitted_by_provider(cloud_site, tenant, cloud_site.endpoint(contract.PRODUCT))


class FakeHost:
    """Answers the probe's requests from the control machine's side: records them, refuses all
    but the attempts that carry a password."""

    name = "10.20.1.10"

    def __init__(self, source):
        self.source, self.requests = source, []

    def run_shell_command(self, command, _stdin, _timeout):
        request = json.loads(_stdin[len(verify._SOURCE.decode()):])
        self.requests.append(request)
        if request["action"] == "route":
            body = {"python": "3.11", "sources": [self.source] * len(request["targets"])}
        else:
            body = {"results": [
                {"outcome": "connected" if a["password"] else "rejected", "sqlstate": None if a["password"] else
                 "28000", "message": "", "source": self.source, "method": None} for a in request["attempts"]]}
        return True, type("Output", (), {"stdout": json.dumps(body), "stderr": ""})


def test_a_host_gets_only_the_passwords_its_groups_hold(site):
    host = FakeHost("10.20.1.10")
    vantage = Vantage(host.name, (G["tenant_services"],))
    trust = verify.Trust({"tenant": "TENANT CA", "product": "PRODUCT CA", "shared": "SHARED CA"})
    cells = verify.verify_host(site, host, vantage, trust, lambda a: f"pw-{a.role}")
    sent = host.requests[1]["attempts"]
    given = {(a["user"], a["dbname"]) for a in sent if a["password"]}
    assert given == {("zeroui_tenant_app", T), ("zeroui_tenant_ro", T)}
    assert all(a["password"] in (None, f"pw-{a['user']}") for a in sent)
    assert not any(a["password"] for a in sent if not a["tls"])
    # The tenant env file's CA for the tenant endpoint; every endpoint's CA sent along, once.
    assert {a.get("cafile") for a in sent if a["dbname"] == T} == {"/etc/zeroui/env/tenant-ca.crt"}
    assert {a.get("cafile") for a in sent if a["dbname"] != T} == {None}
    cas = host.requests[1]["cas"]
    assert sorted(cas) == ["PRODUCT CA", "SHARED CA", "TENANT CA"]
    assert {(a["dbname"], cas[a["ca"]]) for a in sent} == {(T, "TENANT CA"), (P, "PRODUCT CA"), (S, "SHARED CA")}
    assert all(c.verdict == "match" for c in cells) and len(cells) == 48


def _cell(site, host, role, database, observed, verdict, expected=False, tls=True):
    a = next(a for a in verify.attempts(site) if (a.role, a.endpoint.database, a.tls) == (role, database, tls))
    result = {"outcome": "auth-requested", "sqlstate": None, "message": "the server asked for SCRAM-SHA-256",
              "method": "SCRAM-SHA-256"}
    return Cell(host, ("tenant_services",), "10.20.1.10", a, Expectation(expected, "hard rule 2"), observed,
                result, verdict)


def test_table_marks_the_mismatched_cell(site):
    cells = [_cell(site, "t1", "zeroui_tenant_app", T, "allowed", "match", expected=True),
             _cell(site, "t1", "zeroui_tenant_app", P, "auth", "mismatch"),
             _cell(site, "t1", "zeroui_tenant_app", S, "refused", "match"),
             _cell(site, "t1", "zeroui_tenant_app", T, "refused", "match", tls=False)]
    text = click.unstyle(table(cells))  # echo drops the colours where no terminal reads them
    row = next(line for line in text.splitlines() if line.strip().startswith("zeroui_tenant_app"))
    assert row.split()[1:] == ["allowed", "!auth", "refused"]
    assert "without TLS" in text
    line = finding(cells[1])
    assert "t1 (tenant_services) as zeroui_tenant_app to zeroui_product_pg" in line
    assert "expected refused (hard rule 2), got auth" in line
    data = report(site, "inv.py", cells)
    assert (data["verdict"], data["mismatches"], data["attempts"]) == ("mismatch", 1, 4)
    assert set(data["cells"][1]) >= {"host", "groups", "role", "database", "tls", "expected", "observed", "verdict"}


def _inventory(tmp_path, groups: str) -> str:
    path = tmp_path / "inv.py"
    path.write_text(
        "_SITE = {'site': 'zt-v', 'cluster': {'version': 15, 'listen_addresses': ['127.0.0.1']},\n"
        "         'clients': {'tenant_services': {'networks': ['127.0.0.1/32']}}}\n"
        "workstation = (['@local'], {'zeroui': _SITE})\n" + groups)
    return str(path)


def zeroui_db(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # A process of its own, as users run it: pyinfra's CLI module patches the process (gevent).
    return subprocess.run([sys.executable, "-m", "zeroui_db.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("groups, words", [
    ("", "no host in the client groups"),
    ("tenant_services = ['@local']\n", "zt-v-ca.crt: the CA of the tenant endpoint is missing"),
])
def test_could_not_verify_is_exit_2_with_one_line(tmp_path, groups, words):
    result = zeroui_db("verify", _inventory(tmp_path, groups), env={"ZEROUI_SECRETS_DIR": str(tmp_path / "secrets")})
    assert result.returncode == 2, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zeroui-db verify: could not verify: ") and words in lines[0]
    assert not (tmp_path / "secrets").exists()  # verify creates nothing, not even the store


def test_a_bad_inventory_is_exit_2(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("workstation = (['@local'], {'zeroui': {'site': 'x', 'clients': {'nobody': {}}}})\n")
    result = zeroui_db("verify", str(path))
    assert result.returncode == 2 and "clients.nobody: unknown key" in result.stderr
