"""``zeroui-db verify`` against the namespace lab: five client hosts over SSH, one per client group.

A site of its own is deployed on @local (a cluster listening on loopback and the lab bridge)
with the lab's admin host in its admin network. A second inventory for the same site lists
the client hosts as pyinfra reaches them: the ide, tenant, product and shared hosts of the
lab and an admin host, each running an sshd of its own (the intruder is in no group). Then:
verify reports the full matrix and exits 0, changes nothing, and puts no password in any
command line; an allow line planted in pg_hba turns it red (exit 1, the cell named), and a
redeploy brings exit 0 back.

The expectations here are written from the contract document, not taken from verify.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client_inventory import write_client_inventory
from clusters import drop_cluster
from conftest import CLIENT_HOSTS, client_networks, new_deployment
from deployment import REPO
from hosts import superuser_rows
from test_secret_leaks import CmdlineSampler

from zeroui_db import contract
from zeroui_db.config import ADMIN_LOOPBACK

pytestmark = pytest.mark.integration

ADMIN_HOST, ADMIN_ADDRESS = "admin", "198.51.100.15"
SSH_PORT = 2207  # other modules run an sshd on port 22 in the same namespaces
# Lab host -> its client group (lab hosts are named after the group they stand for).
GROUP_OF = {**{g: g for g in CLIENT_HOSTS if g != "intruder"}, ADMIN_HOST: contract.ADMIN_HOSTS.key}
TENANT_HOST = CLIENT_HOSTS[contract.TENANT_SERVICES.key]


@pytest.fixture(scope="module")
def verify_site(lab, workdir, version):
    """The deployed site and the inventory verify reads: client hosts over SSH."""
    lab.add_host(ADMIN_HOST, ADMIN_ADDRESS)
    targets = {name: lab.start_sshd(name, port=SSH_PORT) for name in GROUP_OF}
    d = new_deployment(workdir, version, lab.bridge_address, "verify")
    d.write_inventory(client_networks([f"{ADMIN_LOOPBACK}/32", f"{ADMIN_ADDRESS}/32"]),
                      listen=[ADMIN_LOOPBACK, lab.bridge_address])
    try:
        d.deploy()
        d.verify_inventory = write_client_inventory(
            d, d.workdir / "verify-lab.py", {GROUP_OF[name]: [t] for name, t in targets.items()})
        yield d
    finally:
        drop_cluster(d.version, d.cluster)


def run_verify(d, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zeroui_db.cli", "verify", str(d.verify_inventory), *args],
                          cwd=REPO, env=d.env, text=True, capture_output=True, timeout=300)


def snapshot(d) -> dict:
    """What verify must not change: roles, databases and their ACLs, the cluster's files, the
    files beside the env files and the secrets."""
    conf = Path(f"/etc/postgresql/{d.version}/{d.cluster}")
    files = {}
    for base in (conf, d.env_dir, d.secrets_dir):
        for path in sorted(base.rglob("*")):
            if path.is_file():
                files[str(path)] = (path.stat().st_mtime_ns, path.read_bytes())
    return {
        "roles": superuser_rows(d.port, "postgres", "SELECT rolname, rolsuper, rolcanlogin, rolpassword, "
                                "rolconnlimit FROM pg_authid ORDER BY 1"),
        "databases": superuser_rows(d.port, "postgres", "SELECT datname, datacl FROM pg_database ORDER BY 1"),
        "members": superuser_rows(d.port, "postgres", "SELECT roleid, member, admin_option FROM pg_auth_members "
                                  "ORDER BY 1, 2"),
        "files": files,
    }


@pytest.fixture(scope="module")
def first_run(verify_site):
    before = snapshot(verify_site)
    with CmdlineSampler() as sampler:
        run = run_verify(verify_site, "--json")
    return run, before, snapshot(verify_site), sampler


def expected_allowed(cell: dict) -> bool:
    """The contract's table for the lab: a service host reaches its own plane's database with
    that plane's app and read-only roles, the admin host every plane as the admin; TLS only."""
    if not cell["tls"]:
        return False
    group = GROUP_OF[next(name for name in GROUP_OF if _address(name) == cell["host"])]
    own = {"tenant_services": "tenant", "product_services": "product", "shared_services": "shared"}.get(group)
    if cell["role"] == contract.ADMIN_ROLE:
        return group == "admin_hosts"
    return own == cell["plane"] and cell["role"] in (f"zeroui_{own}_app", f"zeroui_{own}_ro")


def _address(name: str) -> str:
    return ADMIN_ADDRESS if name == ADMIN_HOST else CLIENT_HOSTS[name]


def test_the_lab_holds_the_contract(verify_site, first_run):
    run = first_run[0]
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    report = json.loads(run.stdout)
    assert report["verdict"] == "match" and report["mismatches"] == 0
    assert sorted(h["host"] for h in report["hosts"]) == sorted(_address(n) for n in GROUP_OF)
    # Every host saw the server from its own address (its own namespace), not the control machine's.
    assert all(h["sources"] == [h["host"]] for h in report["hosts"])
    cells = report["cells"]
    # 3 databases x (6 login roles + admin + superuser) x with and without TLS, from 5 hosts.
    assert len(cells) == 5 * 3 * 8 * 2
    wrong = [c for c in cells if (c["observed"] == "allowed") != expected_allowed(c)]
    assert wrong == []
    allowed = [c for c in cells if c["observed"] == "allowed"]
    assert len(allowed) == 3 * 2 + 3  # two roles on each service host, the admin on three planes
    # Real PostgreSQL accepted the probe's SCRAM, bound to the TLS channel.
    assert {c["method"] for c in allowed} == {"SCRAM-SHA-256-PLUS"}
    # Everything else was refused by pg_hba before any authentication.
    refused = [c for c in cells if c["observed"] != "allowed"]
    assert {(c["outcome"], c["sqlstate"]) for c in refused} == {("rejected", "28000")}
    assert all("pg_hba.conf" in c["message"] for c in refused)
    # A service host trusts its own plane's server with the CA beside its env file, as its services do.
    for c in cells:
        if c["tls"]:
            own = GROUP_OF[next(n for n in GROUP_OF if _address(n) == c["host"])] == f"{c['plane']}_services"
            assert c["trust"] == (f"{verify_site.env_dir}/{c['plane']}-ca.crt" if own else "the CA sent along"), c


def test_verify_changes_nothing(first_run):
    _, before, after, _ = first_run
    assert after == before


def test_no_password_in_any_command_line_or_output(verify_site, first_run):
    run, _, _, sampler = first_run
    assert sampler.rounds > 5
    secrets = verify_site.secrets()["roles"]
    passwords = [entry["password"] for entry in secrets.values() if "password" in entry]
    # The admin's, the audit's, and each plane's app and read-only roles'.
    assert len(passwords) == 2 + 2 * len(contract.POSTGRES_PLANES)
    assert "zeroui-probe" in sampler.text  # the probe was seen running, yet:
    for password in passwords:
        assert password not in sampler.text
        assert password not in run.stdout + run.stderr


def _reload(d) -> None:
    """Reload the cluster and wait until the server has read its files again."""
    def loaded():
        return superuser_rows(d.port, "postgres", "SELECT pg_conf_load_time()")[0][0]
    before = loaded()
    subprocess.run(["pg_ctlcluster", str(d.version), d.cluster, "reload"], check=True)
    for _ in range(100):
        if loaded() != before:
            return
        time.sleep(0.05)
    raise AssertionError("the server did not reload")


def test_a_planted_allow_line_turns_it_red(verify_site, first_run):
    d = verify_site
    hba = Path(f"/etc/postgresql/{d.version}/{d.cluster}/pg_hba.conf")
    original = hba.read_text()
    tenant = contract.TENANT_SERVICES.credential_roles[0]
    hba.write_text(f"hostssl {contract.PRODUCT.store} {tenant} {TENANT_HOST}/32 scram-sha-256\n" + original)
    try:
        _reload(d)
        run = run_verify(d)
        assert run.returncode == 1, run.stderr + run.stdout
        findings = [line for line in run.stdout.splitlines() if line.startswith("! ")]
        assert findings == [
            f"! {TENANT_HOST} (tenant_services) as {tenant} to {contract.PRODUCT.store} at "
            f"{d.server_address}:{d.port} with TLS: expected refused (hard rule 2), got auth: auth-requested: "
            "the server asked for SCRAM-SHA-256-PLUS, SCRAM-SHA-256; no password given"]
        row = next(line for line in run.stdout.splitlines() if line.strip().startswith(tenant)
                   and "!auth" in line)
        assert row.split()[1:] == ["allowed", "!auth", "refused"]
    finally:
        d.deploy()  # writes pg_hba.conf back and reloads
    assert hba.read_text() == original
    run = run_verify(d)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the contract holds" in run.stdout
