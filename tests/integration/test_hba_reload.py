"""A pg_hba.conf with errors is caught before any reload, and the server keeps its rules.

PostgreSQL's own reload would accept the signal, log "pg_hba.conf was not reloaded" and
carry on with the old rules; the deploy must fail loudly instead. The rendered file is
valid by construction, so the bad line is planted by hand and only the run-state
operation is executed (through pyinfra's API, in a child process of its own).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from deployment import REPO
from hosts import probe, service_host, superuser_rows

from zeroui_db import contract

pytestmark = pytest.mark.integration

RUN_STATE_ONLY = textwrap.dedent("""
    import runpy, sys
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.operation import add_op
    from pyinfra.api.operations import run_ops
    from zeroui_db.config import parse_site
    from zeroui_db.layout import layout
    from zeroui_db.operations import cluster

    inventory_file, version = sys.argv[1], int(sys.argv[2])
    data = runpy.run_path(inventory_file)["workstation"][1]["zeroui"]
    site = parse_site(data)
    state = State(Inventory((["@local"], {})), Config())
    connect_all(state)
    add_op(state, cluster.running, cluster=layout(site.cluster, version))
    run_ops(state)
    sys.exit(1 if state.failed_hosts else 0)
""")


def test_bad_pg_hba_is_refused_and_old_rules_stay(lab, local_site):
    hba = f"/etc/postgresql/{local_site.version}/{local_site.cluster}/pg_hba.conf"
    original = open(hba).read()
    tenant = contract.TENANT
    try:
        with open(hba, "a") as f:
            f.write("hostssl all all 10.0.0.0/33 scram-sha-256\n")  # no /33 in IPv4
        run = subprocess.run(
            [sys.executable, "-c", RUN_STATE_ONLY, str(local_site.inventory), str(local_site.version)],
            cwd=REPO, text=True, capture_output=True, timeout=120,
        )
        assert run.returncode == 1, run.stdout + run.stderr
        assert "pg_hba.conf has errors (line" in run.stderr and "was not reloaded" in run.stderr, run.stderr
        # The file on disk is bad, but the running server still applies the rules it had.
        errors = superuser_rows(local_site.port, contract.MAINTENANCE_DB,
                               "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")
        assert errors == [["1"]]
        ok, error = probe(lab, service_host(tenant), local_site, tenant.app_role, tenant.store,
                          local_site.password(tenant.app_role))
        assert ok, error
    finally:
        with open(hba, "w") as f:
            f.write(original)
        local_site.deploy()
    assert local_site.deploy().changed == []
