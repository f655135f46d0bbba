"""A pilot deployed by the previous release upgrades in place: its self-signed certificate is
replaced by one from the site CA, the env files get verify-full URLs and the CA, the admin
loses CREATEROLE, and no data is lost. The previous release is taken from this repository's
own history (``git archive``), so the test runs the code that users really have deployed.
"""

from __future__ import annotations

import subprocess
import tarfile
import io
from pathlib import Path

import pytest

from clusters import drop_cluster
from conftest import client_networks, new_deployment
from deployment import REPO, run_deploy
from hosts import superuser_rows

from zeroui_db import contract, tls

pytestmark = pytest.mark.integration

# The release before plane endpoints: sslmode=require, a self-signed certificate, a
# CREATEROLE admin.
PREVIOUS_RELEASE = "b44b81704e7e0eb55f2ea64f5549659582cec859"


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


@pytest.fixture(scope="module")
def upgraded(lab, workdir, version, previous_release):
    d = new_deployment(workdir, version, lab.bridge_address, "upgrade")
    d.write_inventory(client_networks(["127.0.0.1/32"]), listen=["127.0.0.1", lab.bridge_address])
    try:
        # pyinfra puts its working directory first on sys.path: the old tree's zeroui_db wins.
        old = run_deploy(d.inventory, env=d.env, cwd=previous_release)
        assert "sslmode=require" in (d.env_dir / "tenant.env").read_text()
        superuser_rows(d.port, contract.TENANT.store,
                       "INSERT INTO receipts (kind, source, occurred_at, payload) "
                       "SELECT 'zt.upgrade', 'zt', now(), jsonb_build_object('n', n) FROM generate_series(1, 50) n")
        d.before = superuser_rows(d.port, contract.TENANT.store,
                                  "SELECT count(*), (SELECT encode(content_hash, 'hex') FROM receipts ORDER BY seq DESC LIMIT 1) FROM receipts")
        d.old_run, d.new_run = old, d.deploy()
        d.second_run = d.deploy()
        yield d
    finally:
        drop_cluster(d.version, d.cluster)


def test_upgrade_converges_and_then_changes_nothing(upgraded):
    assert upgraded.new_run.changed
    assert upgraded.second_run.changed == []


def test_certificate_is_reissued_by_the_site_ca(upgraded):
    cert = Path(f"/etc/postgresql/{upgraded.version}/{upgraded.cluster}/server.crt").read_bytes()
    ca = Path(upgraded.ca_file).read_bytes()
    proc = subprocess.run(["openssl", "verify", "-CAfile", upgraded.ca_file, "-verify_ip", "127.0.0.1", "/dev/stdin"],
                          input=cert, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert "127.0.0.1" in tls.names_of(cert) and ca != cert


def test_env_files_are_rewritten_with_verify_full(upgraded):
    for plane in contract.POSTGRES_PLANES:
        text = (upgraded.env_dir / f"{plane.key}.env").read_text()
        assert "sslmode=verify-full" in text and "channel_binding=require" in text
        assert (upgraded.env_dir / f"{plane.key}-ca.crt").read_bytes() == Path(upgraded.ca_file).read_bytes()


def test_admin_lost_createrole_and_data_is_intact(upgraded):
    rows = superuser_rows(upgraded.port, contract.MAINTENANCE_DB,
                          f"SELECT rolcreaterole, rolinherit FROM pg_roles WHERE rolname = '{contract.ADMIN_ROLE}'")
    assert rows == [["f", "f"]]
    after = superuser_rows(upgraded.port, contract.TENANT.store,
                           "SELECT count(*), (SELECT encode(content_hash, 'hex') FROM receipts ORDER BY seq DESC LIMIT 1) FROM receipts")
    assert after == upgraded.before and after[0][0] == "50"
    assert superuser_rows(upgraded.port, contract.TENANT.store, "SELECT verify_receipt_chain() IS NULL") == [["t"]]

