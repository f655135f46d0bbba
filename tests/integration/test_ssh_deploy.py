"""The pilot deploy over SSH: the workstation is a lab namespace running its own sshd.

Commands sent over pyinfra's SSH session run inside the "workstation" namespace, so the
cluster listens there (on the namespace's loopback and its lab address). The deploy's
admin connection is carried through that same SSH session to the namespace's loopback
(zeroui_db/admin_link.py): the admin role is never reachable from the operator's network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusters import drop_cluster, existing_clusters
from conftest import CLIENT_HOSTS, WORKSTATION_NS_ADDRESS, client_networks, new_deployment
from matrix import PROBE, mismatches, run_matrix

from zeroui_db import contract
from zeroui_db.config import ADMIN_LOOPBACK

pytestmark = pytest.mark.integration

WORKSTATION = "workstation"  # the lab host conftest creates at WORKSTATION_NS_ADDRESS
ADMIN_DATABASES = [contract.MAINTENANCE_DB, *(p.store for p in contract.POSTGRES_PLANES)]


@pytest.fixture(scope="module")
def ssh_site(lab, workdir, version):
    """The pilot deployed over SSH to the workstation namespace; the cluster is dropped afterwards."""
    target = lab.start_sshd(WORKSTATION)
    d = new_deployment(workdir, version, WORKSTATION_NS_ADDRESS, "ssh")
    d.write_inventory(
        client_networks([f"{ADMIN_LOOPBACK}/32"]),
        listen=[ADMIN_LOOPBACK, WORKSTATION_NS_ADDRESS],
        host=target.host,
        host_data={
            "ssh_user": target.user,
            "ssh_key": target.key_path,
            "ssh_known_hosts_file": target.known_hosts_path,
            "ssh_port": target.port,
            # Only the pinned host key is trusted (pyinfra's default would accept a new one).
            "ssh_strict_host_key_checking": "yes",
        },
    )
    try:
        # A dry run first, while the workstation has no cluster: nothing listens behind the tunnel yet.
        start = time.perf_counter()
        d.dry_run = d.deploy("--dry", check=False)
        d.dry_seconds = time.perf_counter() - start
        d.cluster_after_dry_run = any(n == d.cluster for _, n, _, _ in existing_clusters())
        d.first_run = d.deploy(check=False)
        yield d
    finally:
        # Before the lab goes: the server lives in the namespace, and drop works from here.
        drop_cluster(d.version, d.cluster)


@pytest.fixture(scope="module")
def deployed(ssh_site):
    run = ssh_site.first_run
    if run.returncode != 0:
        pytest.fail(f"the first deploy over SSH failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return ssh_site


def _passwords(d) -> dict[str, str]:
    return {role: entry["password"] for role, entry in d.secrets()["roles"].items() if "password" in entry}


def _probe(argv_prefix: list[str], attempts: list[dict]) -> list[dict]:
    proc = subprocess.run([*argv_prefix, sys.executable, PROBE], input=json.dumps(attempts),
                          text=True, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _admin_attempts(d, host: str) -> list[dict]:
    password = d.password(contract.ADMIN_ROLE)
    return [{"host": host, "port": d.port, "dbname": db, "user": contract.ADMIN_ROLE, "password": password,
             "sslmode": "require"} for db in ADMIN_DATABASES]


def _postmaster_pid(d) -> int:
    data_dir = Path(f"/var/lib/postgresql/{d.version}/{d.cluster}")
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def test_dry_run_on_a_fresh_workstation(ssh_site):
    run = ssh_site.dry_run
    assert run.returncode == 0, run.stderr[-4000:]
    assert not ssh_site.cluster_after_dry_run, "--dry created the cluster"
    assert json.loads(run.stdout)["results"] is None
    # The tunnel to a port nobody listens on fails at once: no thread traceback, and no
    # wait for the admin connection's connect_timeout (10 s) per admin operation.
    assert "Traceback" not in run.stderr
    assert ssh_site.dry_seconds < 10, f"--dry took {ssh_site.dry_seconds:.1f} s"


def test_first_deploy_succeeds(ssh_site):
    run = ssh_site.first_run
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.errors == []
    assert run.results["failed_hosts"] == []
    assert run.changed, "a first deploy must change something"


def test_cluster_runs_inside_the_workstation_namespace(deployed, lab):
    # Proves the commands ran over SSH (in the namespace), not on the control machine.
    pid = _postmaster_pid(deployed)
    ns = subprocess.run(["ip", "netns", "identify", str(pid)], text=True, capture_output=True, check=True)
    assert ns.stdout.strip() == lab.netns(WORKSTATION)


def test_connection_matrix(deployed, lab):
    results = run_matrix(lab, WORKSTATION_NS_ADDRESS, deployed.port, _passwords(deployed), list(CLIENT_HOSTS))
    assert len(results) > 0
    assert mismatches(results) == []
    # Sanity: the matrix is not vacuous — some attempts connect, and some are refused.
    assert any(ok for _, ok, _ in results) and not all(ok for _, ok, _ in results)


def test_second_deploy_changes_nothing(deployed):
    run = deployed.deploy()
    assert run.errors == []
    assert run.changed == []
    assert run.results["totals"]["success"] == 0


def test_admin_works_on_the_workstation_loopback(deployed, lab):
    # The positive control for the refusals below: right password, right address.
    results = _probe(["ip", "netns", "exec", lab.netns(WORKSTATION)], _admin_attempts(deployed, ADMIN_LOOPBACK))
    assert [r["error"] for r in results if not r["ok"]] == []


@pytest.mark.parametrize("client", list(CLIENT_HOSTS))
def test_admin_refused_from_client_hosts(deployed, lab, client):
    results = _probe(["ip", "netns", "exec", lab.netns(client)], _admin_attempts(deployed, WORKSTATION_NS_ADDRESS))
    assert not any(r["ok"] for r in results), results
    # Refused by pg_hba (the server was reached), not by a network error or a wrong password.
    assert all("pg_hba.conf" in r["error"] for r in results), results


def test_admin_refused_from_operator_network(deployed, lab):
    # Run from the root namespace: the control machine reaches the workstation from the
    # lab bridge's address (198.51.100.1), i.e. from the operator's network.
    results = _probe([], _admin_attempts(deployed, WORKSTATION_NS_ADDRESS))
    assert not any(r["ok"] for r in results), results
    assert all("pg_hba.conf" in r["error"] and f'host "{lab.bridge_address}"' in r["error"] for r in results), results


def test_deploy_admin_sessions_came_over_the_tunnel(deployed):
    # Every admin session the deploys opened arrived on the namespace's loopback (log_connections).
    log = Path(f"/var/log/postgresql/postgresql-{deployed.version}-{deployed.cluster}.log").read_text()
    admin_lines = [line for line in log.splitlines()
                   if "connection authorized" in line and f"user={contract.ADMIN_ROLE} " in line]
    assert admin_lines, "no admin session was logged"
    bad = [line for line in admin_lines if f" from {ADMIN_LOOPBACK} " not in line]
    assert bad == []
