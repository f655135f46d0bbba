#!/usr/bin/env python3
"""Verify benchmark: ``zeroui-db verify`` over five client hosts reached by SSH (run as root).

    .venv/bin/python bench/verify_bench.py [--runs 5]

It builds a network-namespace lab of its own (prefix "ztv"): one client host per client
group (IDE laptop, tenant, product and shared services, admin host), each running an sshd,
and deploys a site on @local whose cluster listens on the lab bridge. Then it times
``python -m zeroui_db.cli verify INVENTORY`` as a user runs it (a new process each time:
imports, SSH connections, the probe's attempts from every host) and prints the median of
``--runs``. Everything is removed at the end, also after a failure or Ctrl-C; the lab takes
the machine-wide lab lock, so the benchmark waits while integration tests run.
"""

from __future__ import annotations

import argparse
import json
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

from client_inventory import write_client_inventory  # noqa: E402
from clusters import drop_cluster, free_port, unique_cluster_name  # noqa: E402
from deployment import Deployment  # noqa: E402
from lab import Lab  # noqa: E402

from zeroui_db import contract  # noqa: E402
from zeroui_db.config import ADMIN_LOOPBACK  # noqa: E402

LAB_PREFIX = "ztv"  # its own namespaces and links, apart from the tests' "zt" lab
SUBNET = "198.51.100.0/24"
# One client host per client group, named after it.
CLIENTS = dict(zip((g.key for g in contract.CLIENT_GROUPS),
                   ("198.51.100.11", "198.51.100.12", "198.51.100.13", "198.51.100.14", "198.51.100.15"), strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="verify runs to time (default 5)")
    args = parser.parse_args()
    version = harness.start("a cluster and network namespaces")
    if version is None:
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="ztv-bench-"))
    times, report, d = [], None, None
    try:
        with Lab(prefix=LAB_PREFIX, subnet=SUBNET) as lab:
            try:
                targets = {}
                for group, address in CLIENTS.items():
                    lab.add_host(group, address)
                    targets[group] = [lab.start_sshd(group)]
                d = Deployment(workdir=workdir, site="zt-bench-verify", version=version,
                               cluster=unique_cluster_name(), port=free_port(), server_address=lab.bridge_address,
                               env_dir=workdir / "env", secrets_dir=workdir / "secrets")
                networks = {g: [f"{a}/32"] for g, a in CLIENTS.items()}
                networks[contract.ADMIN_HOSTS.key].insert(0, f"{ADMIN_LOOPBACK}/32")
                d.write_inventory(networks, listen=[ADMIN_LOOPBACK, lab.bridge_address])
                print("deploying the site ...", flush=True)
                d.deploy()
                inventory = write_client_inventory(d, workdir / "clients.py", targets)
                argv = [sys.executable, "-m", "zeroui_db.cli", "verify", str(inventory), "--json"]
                for i in range(args.runs):
                    print(f"verify {i + 1}/{args.runs} ...", flush=True)
                    start = time.perf_counter()
                    run = subprocess.run(argv, cwd=REPO, env=d.env, text=True, capture_output=True, timeout=300)
                    times.append(time.perf_counter() - start)
                    if run.returncode != 0:
                        raise RuntimeError(f"verify exited {run.returncode}:\n{run.stderr[-2000:]}")
                    report = json.loads(run.stdout)
            finally:
                if d is not None:
                    drop_cluster(d.version, d.cluster)
    except KeyboardInterrupt:
        print("interrupted: cleaned up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"ZeroUI DB verify benchmark: PostgreSQL {version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"  {len(report['hosts'])} client hosts over SSH, {report['attempts']} attempts, verdict {report['verdict']}")
    print(f"  verify wall time, median of {args.runs} (min-max): {statistics.median(times):.2f} s "
          f"({min(times):.2f}-{max(times):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
