"""Fixtures for integration tests: run as root, on real PostgreSQL and network namespaces.

Everything made here (clusters, namespaces, sshd, files) is removed afterwards, also
when a test fails; leftovers of a crashed earlier run are removed first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from clusters import drop_cluster, drop_stale_test_clusters, free_port, unique_cluster_name
from deployment import CloudDeployment, Deployment
from lab import Lab
from standins import StandIn, remove_stale_standins
from testca import TestCA

from zeroui_db import contract

# The lower half of the test range: test_lab.py checks the lab itself on the upper half.
SUBNET = "198.51.100.0/25"
# Client hosts of the lab: one per client group, plus an intruder that is in no group.
CLIENT_HOSTS = {
    contract.IDE_LAPTOPS.key: "198.51.100.11",
    contract.TENANT_SERVICES.key: "198.51.100.12",
    contract.PRODUCT_SERVICES.key: "198.51.100.13",
    contract.SHARED_SERVICES.key: "198.51.100.14",
    "intruder": "198.51.100.66",
}
WORKSTATION_NS_ADDRESS = "198.51.100.2"  # the SSH-deployed workstation
# Stand-ins for managed services (PostgreSQL >= 16, TLS), one per PostgreSQL plane.
CLOUD_ADDRESSES = dict(zip((p.key for p in contract.POSTGRES_PLANES),
                           ("198.51.100.21", "198.51.100.22", "198.51.100.23"), strict=True))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (clusters, network namespaces)")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def version() -> int:
    """The PostgreSQL major installed here (the deploy installs it if missing)."""
    from subprocess import run
    out = run(["/usr/share/postgresql-common/supported-versions"], capture_output=True, text=True)
    return int(out.stdout.split()[-1])


@pytest.fixture(scope="session")
def lab():
    with Lab(prefix="zt", subnet=SUBNET) as lab:
        drop_stale_test_clusters()  # under the lab's lock: no other run is using them
        for name, address in CLIENT_HOSTS.items():
            lab.add_host(name, address)
        lab.add_host("workstation", WORKSTATION_NS_ADDRESS)
        yield lab


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="zt-work-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def client_networks(admin: list[str]) -> dict[str, list[str]]:
    nets = {group: [f"{address}/32"] for group, address in CLIENT_HOSTS.items() if group != "intruder"}
    return {**nets, contract.ADMIN_HOSTS.key: admin}


def new_deployment(workdir: Path, version: int, server_address: str, tag: str) -> Deployment:
    base = workdir / tag
    base.mkdir()
    return Deployment(
        workdir=base, site=f"zt-{tag}", version=version, cluster=unique_cluster_name(), port=free_port(),
        server_address=server_address, env_dir=base / "env", secrets_dir=base / "secrets",
    )


@pytest.fixture(scope="session")
def local_site(lab, workdir, version):
    """The pilot deployed on @local: the server listens on loopback and the lab bridge."""
    d = new_deployment(workdir, version, lab.bridge_address, "local")
    d.write_inventory(client_networks(["127.0.0.1/32"]), listen=["127.0.0.1", lab.bridge_address])
    try:
        d.first_run = d.deploy()
        yield d
    finally:
        drop_cluster(d.version, d.cluster)


@pytest.fixture(scope="session")
def cloud_standins(lab, workdir) -> dict[str, StandIn]:
    """Plane key -> a running managed-service stand-in (lab host "cloud-<plane>"), master "master_<plane>"."""
    remove_stale_standins(lab)  # under the lab's lock: no other run is using them
    ca = TestCA(workdir / "cloud-ca")
    with contextlib.ExitStack() as stack:  # stops every stand-in started so far, also on failure
        yield {plane: stack.enter_context(StandIn(lab, f"cloud-{plane}", address, ca, master=f"master_{plane}",
                                                  master_password=secrets.token_urlsafe(24)))
               for plane, address in CLOUD_ADDRESSES.items()}


# The cloud site's plane whose database the master makes beforehand, as a provider's console would.
ADOPTED = contract.SHARED


@pytest.fixture(scope="session")
def cloud(lab, workdir, cloud_standins) -> CloudDeployment:
    """The cloud site on the stand-ins, deployed once from @local (``first_run``)."""
    base = workdir / "cloud"
    base.mkdir()
    networks = {**{g: [f"{a}/32"] for g, a in CLIENT_HOSTS.items() if g != "intruder"},
                # The deploy runs in the root namespace: it reaches the stand-ins from the bridge address.
                contract.ADMIN_HOSTS.key: [f"{lab.bridge_address}/32"]}
    c = CloudDeployment(base, "zt-cloud", cloud_standins, networks)
    s = cloud_standins[ADOPTED.key]
    s.superuser_sql(f"SET ROLE {s.master}; CREATE DATABASE {ADOPTED.store};")
    c.first_run = c.deploy(check=False)
    return c
