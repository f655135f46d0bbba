"""Load (bench/load_bench.py's measurement, shortened): 200 connection attempts at once from the
lab's intruder host, which no client group lists, while the tenant service appends receipts with
pgbench over its env file's URL. Every attempt is refused by pg_hba, the tenant's transactions
go on without error. The figures are printed (pytest -s shows them; the benchmark prints the
full run)."""

from __future__ import annotations

import sys

import pytest

from deployment import REPO

from zeroui_db import contract

sys.path.insert(0, str(REPO / "bench"))
import load_bench  # noqa: E402

pytestmark = pytest.mark.integration


def test_an_intruders_storm_is_refused_while_the_tenant_keeps_working(lab, local_site):
    load = load_bench.run_load(lab, local_site.env_dir / "tenant.env", local_site.server_address, local_site.port,
                               local_site.password(contract.TENANT.app_role), attempts=200, clients=4, seconds=6,
                               storm_at=2.0)
    load_bench.report(load, "load on the test pilot")
    storm, tenant = load.storm, load.tenant
    assert storm.accepted == 0
    assert storm.refused_by_hba == 200, storm.outcomes
    assert tenant.returncode == 0 and tenant.errors == [], tenant.errors
    assert tenant.transactions > 0 and tenant.failed == 0 and tenant.aborted_clients == 0
    during = tenant.tps_between(storm.started, storm.ended)
    assert during is not None and during > 0, tenant.progress
