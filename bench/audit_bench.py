#!/usr/bin/env python3
"""Audit benchmark (run as root): ``zeroui-db audit`` of a pilot, as a user runs it and in-process.

    .venv/bin/python bench/audit_bench.py [--runs 5]

Deploys a throwaway pilot cluster ("zt..." name, free port) on @local twice: with the
pilot's own client networks, and with 1,000 networks per client group. For each it prints
the median wall time of the command (a new Python process: imports included) and of the
audit itself in-process (reading the server as the audit role, then evaluating). Targets:
the pilot <= 0.5 s, 1,000 networks per group <= 2 s. Everything is removed at the end,
also after a failure; the machine-wide lab lock keeps the integration tests' cleanup away.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO))

import harness  # noqa: E402 (beside this script)

from clusters import drop_cluster, free_port, unique_cluster_name  # noqa: E402
from deployment import Deployment  # noqa: E402
from lab import _machine_lock  # noqa: E402

from zeroui_db import contract, live  # noqa: E402
from zeroui_db import audit as auditing  # noqa: E402
from zeroui_db.cli.inventory import connect, load_inventory, load_site  # noqa: E402
from zeroui_db.secret_store import SecretStore  # noqa: E402

TARGETS = {"pilot networks": 0.5, "1,000 networks per group": 2.0}


def networks(per_group: int) -> dict[str, list[str]]:
    """Loopback for every group (so the audit's matrix is full), plus ``per_group`` /32s each,
    in a range of the group's own (laptops apart from the services, as hard rule 1 needs)."""
    out = {}
    for i, group in enumerate(contract.CLIENT_GROUPS):
        extra = [f"10.{100 + i}.{n // 250}.{n % 250 + 1}/32" for n in range(per_group)]
        loopback = [] if group is contract.IDE_LAPTOPS else ["127.0.0.1/32"]
        out[group.key] = loopback + extra
    return out


def in_process(d: Deployment) -> float:
    os.environ["ZEROUI_SECRETS_DIR"] = str(d.secrets_dir)
    start = time.perf_counter()
    inventory = load_inventory(str(d.inventory))
    site = load_site(str(d.inventory), inventory)
    host = inventory.get_host("@local")
    connect(inventory, {host})
    store = SecretStore(site.name)
    seen = [live.observe(host, s, store.password(contract.AUDIT_ROLE), str(store.path.parent / f"{site.name}-ca.crt"))
            for s in site.servers]
    report = auditing.audit(site, seen)
    elapsed = time.perf_counter() - start
    assert report.exit_code == 0, [f.message for f in report.findings]
    return elapsed


def command(d: Deployment) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zeroui_db.cli", "audit", str(d.inventory)], cwd=REPO, env=d.env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"audit exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    version = harness.start("a cluster", interruptible=False)
    if version is None:
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ztb-audit-"))
    results = {}
    _machine_lock.acquire()
    try:
        for label, per_group in (("pilot networks", 0), ("1,000 networks per group", 1000)):
            base = workdir / str(per_group)
            base.mkdir()
            d = Deployment(workdir=base, site="zt-bench-audit", version=version, cluster=unique_cluster_name(),
                           port=free_port(), server_address="127.0.0.1", env_dir=base / "env",
                           secrets_dir=base / "secrets")
            try:
                d.write_inventory(networks(per_group), listen=["127.0.0.1"])
                print(f"[{label}] deploy ...", flush=True)
                d.deploy()
                walls = [command(d) for _ in range(args.runs)]
                inside = [in_process(d) for _ in range(args.runs)]
                results[label] = (statistics.median(walls), min(walls), max(walls), statistics.median(inside))
            finally:
                drop_cluster(d.version, d.cluster)
    finally:
        _machine_lock.release()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nzeroui-db audit benchmark: PostgreSQL {version}, {os.cpu_count()} CPUs, median of {args.runs}")
    for label, (wall, lo, hi, inside) in results.items():
        target = TARGETS[label]
        print(f"  {label:<26} command {wall:.2f} s ({lo:.2f}-{hi:.2f}); in-process {inside:.2f} s; "
              f"target {target} s: command {'MET' if wall <= target else 'NOT MET'}, "
              f"in-process {'MET' if inside <= target else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
