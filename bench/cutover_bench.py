#!/usr/bin/env python3
"""Cutover benchmark: the tenant plane holding about 1 GB of receipts, moved from a pilot
(PostgreSQL 15, on @local) to a managed-service stand-in (PostgreSQL 16, TLS, in a network
namespace) by ``zeroui-db cutover --plane tenant``, against a bare ``pg_dump -Fc | pg_restore``
of the same database measured in the same run (run as root).

    .venv/bin/python bench/cutover_bench.py [--size-mb 1024]

Both paths go over verified TLS, as the admin acting as the plane's owner on each side:

* bare: ``pg_dump -Fc --role=<owner>`` of the pilot's tenant database piped into
  ``pg_restore --no-owner --no-privileges --role=<owner>`` into an empty database on the
  stand-in. It creates the tables, loads them without indexes or triggers, then builds
  them: the least a move can do. Run before and after the cutover (the source is frozen
  then, but its admin still reads), so a warm or cold cache favours neither side.
* cutover: the whole command, as an operator runs it: pre-flight, freeze, copy (in COPY's
  binary format; indexes made again and the whole chain verified before each table's
  COMMIT), verification of every table on both sides and of the chain's head, the
  target's audit, the env files.

Target: cutover <= 1.5 x bare. Figures for a size below 1 GB are also scaled linearly to
1 GB, and say so. Everything (cluster, stand-ins, namespaces, files) is removed at the end,
also after a failure or Ctrl-C; the lab takes the machine-wide lab lock, so the benchmark
waits while integration tests run.
"""

from __future__ import annotations

import argparse
import os
import re
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
from deployment import CloudDeployment, Deployment  # noqa: E402
from hosts import superuser_psql, superuser_rows  # noqa: E402
from lab import Lab  # noqa: E402
from standins import StandIn, remove_stale_standins  # noqa: E402
from testca import TestCA  # noqa: E402

from zeroui_db import contract  # noqa: E402
from zeroui_db.config import ADMIN_LOOPBACK  # noqa: E402

TARGET_RATIO = 1.5
LAB_PREFIX = "ztc"  # its own namespaces and links
SUBNET = "198.51.100.0/24"
TENANT = contract.TENANT
RESTORED = "zt_bench_restore"  # the bare restore's database on the stand-in
BATCH = 50_000  # receipts per INSERT while filling the pilot
# The stand-ins keep 32 MB of shared buffers for the tests; a managed service of the size that
# holds this plane has far more (RDS: a quarter of the instance's memory), and index upkeep
# during a copy into indexed tables depends on it. Both paths run against the same setting.
SERVICE_MEMORY = {"shared_buffers": "1GB", "maintenance_work_mem": "256MB"}

# About 1 kB per receipt, as a decision's evidence might be: below the TOAST threshold, so the
# table's size is its rows' size.
_FILL = """
INSERT INTO receipts (idempotency_key, kind, source, actor, subject_ref, policy_digest, occurred_at, payload)
SELECT 'bench-' || g, 'policy.decision', 'tenant:engine', 'user-' || (g % 997), 'repo/zeroui/pr/' || g,
       'sha256:' || encode(sha256(g::text::bytea), 'hex'), timestamptz '2026-01-01+00' + g * interval '1 s',
       jsonb_build_object('n', g, 'rule', 'rule-' || (g % 50), 'outcome', 'allow',
                          'evidence', repeat(md5(g::text), 24))
FROM generate_series({first}, {last}) g
"""


def fill(pilot: Deployment, size_mb: int) -> tuple[int, int]:
    """Append receipts to the pilot's tenant ledger until it holds ``size_mb``; (rows, bytes)."""
    rows, size = 0, 0
    started = time.monotonic()
    while size < size_mb * 2**20:
        superuser_psql(pilot.port, TENANT.store, _FILL.format(first=rows + 1, last=rows + BATCH))
        rows += BATCH
        size = int(superuser_rows(pilot.port, TENANT.store, "SELECT pg_total_relation_size('receipts')")[0][0])
        print(f"  filling: {rows:,} receipts, {size / 2**20:,.0f} MB ({time.monotonic() - started:.0f} s)",
              file=sys.stderr)
    superuser_psql(pilot.port, TENANT.store, "VACUUM ANALYZE receipts")
    return rows, size


def passfile(workdir: Path, entries: list[tuple[str, int, str, str]]) -> Path:
    """A libpq password file (0600): passwords never on a command line."""
    path = workdir / "pgpass"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        for host, port, user, password in entries:
            f.write(f"{host}:{port}:*:{user}:{password.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}\n")
    return path


def bare(pilot: Deployment, target: StandIn, env: dict) -> float:
    """pg_dump -Fc | pg_restore of the tenant database into a fresh one on the stand-in; seconds."""
    owner = TENANT.owner_role
    target.superuser_sql(f"DROP DATABASE IF EXISTS {RESTORED}")
    target.superuser_sql(f"SET ROLE {target.master}; CREATE DATABASE {RESTORED} OWNER {owner}")
    dump = ["pg_dump", "-Fc", f"--role={owner}", "-h", ADMIN_LOOPBACK, "-p", str(pilot.port),
            "-U", contract.ADMIN_ROLE, "-d", TENANT.store]
    # Schema public only: the pilot's evidence guard (event triggers, schema zeroui_guard) needs a
    # superuser and is the pilot's own, not data (a managed service gets none).
    restore = ["pg_restore", "--no-owner", "--no-privileges", f"--role={owner}", "--exit-on-error", "--schema=public",
               "-h", target.address, "-p", str(target.port), "-U", target.master, "-d", RESTORED]
    started = time.monotonic()
    with subprocess.Popen(dump, stdout=subprocess.PIPE, env={**env, "PGSSLROOTCERT": pilot.ca_file}) as producer:
        consumer = subprocess.run(restore, stdin=producer.stdout, env={**env, "PGSSLROOTCERT": str(target.ca_file)},
                                  capture_output=True, text=True)
    seconds = time.monotonic() - started
    if producer.returncode or consumer.returncode:
        raise RuntimeError(f"pg_dump | pg_restore failed: {consumer.stderr.strip()[-1000:]}")
    return seconds


def cutover(pilot: Deployment, cloud: CloudDeployment) -> tuple[float, str]:
    argv = [sys.executable, "-m", "zeroui_db.cli", "cutover", "--from", str(pilot.inventory),
            "--to", str(cloud.inventory), "--plane", TENANT.key]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=cloud.env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"the cutover failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return seconds, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="receipts to move, in MB on disk (default 1024)")
    args = parser.parse_args()
    version = harness.start("a cluster, stand-ins and network namespaces")
    if version is None:
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="ztc-bench-"))
    os.chmod(workdir, 0o755)  # the stand-ins' postgres user reads the CA below it
    pilot = Deployment(workdir=workdir / "pilot", site="zt-bench-pilot", version=version,
                       cluster=unique_cluster_name(), port=free_port(), server_address=ADMIN_LOOPBACK,
                       env_dir=workdir / "pilot" / "env", secrets_dir=workdir / "secrets")
    standins: dict[str, StandIn] = {}
    try:
        with Lab(prefix=LAB_PREFIX, subnet=SUBNET) as lab:
            try:
                (workdir / "pilot").mkdir()
                loopback = [f"{ADMIN_LOOPBACK}/32"]
                pilot.write_inventory({**{g.key: loopback for g in contract.SERVICE_GROUPS},
                                       contract.ADMIN_HOSTS.key: loopback}, listen=[ADMIN_LOOPBACK])
                pilot.deploy()
                print(f"filling the pilot's ledger to {args.size_mb:,} MB …", file=sys.stderr)
                rows, size = fill(pilot, args.size_mb)

                remove_stale_standins(lab)
                ca = TestCA(workdir / "cloud-ca")
                addresses = list(lab.subnet.hosts())[40:43]
                for plane, address in zip(contract.POSTGRES_PLANES, addresses):
                    standins[plane.key] = StandIn(lab, f"bench-{plane.key}", str(address), ca,
                                                  master=f"master_{plane.key}", master_password=os.urandom(16).hex(),
                                                  settings=SERVICE_MEMORY).start()
                (workdir / "cloud").mkdir()
                cloud = CloudDeployment(workdir / "cloud", "zt-bench-cloud", standins,
                                        {**{g.key: [f"{lab.bridge_address}/32"] for g in contract.SERVICE_GROUPS},
                                         contract.ADMIN_HOSTS.key: [f"{lab.bridge_address}/32"]})
                cloud.secrets_dir = pilot.secrets_dir
                cloud.deploy()

                target = standins[TENANT.key]
                pgpass = passfile(workdir, [
                    (ADMIN_LOOPBACK, pilot.port, contract.ADMIN_ROLE, pilot.password(contract.ADMIN_ROLE)),
                    (target.address, target.port, target.master, target.master_password)])
                env = {**os.environ, "PGPASSFILE": str(pgpass), "PGSSLMODE": "verify-full"}
                print("bare pg_dump | pg_restore …", file=sys.stderr)
                baseline = [bare(pilot, target, env)]
                print("zeroui-db cutover …", file=sys.stderr)
                seconds, output = cutover(pilot, cloud)
                print("bare pg_dump | pg_restore again …", file=sys.stderr)
                baseline.append(bare(pilot, target, env))
            finally:
                for s in standins.values():
                    s.stop()
                drop_cluster(pilot.version, pilot.cluster)
    except KeyboardInterrupt:
        print("interrupted: cleaned up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report(args.size_mb, rows, size, version, baseline, seconds, output)
    return 0


def report(size_mb: int, rows: int, size: int, version: int, baseline: list[float], seconds: float,
           output: str) -> None:
    steps = re.search(r"^\s+tenant\s+(.*?)\s+total", output, re.M)
    verify = re.search(r"^Verification of tenant: .*\(([\d.]+) s\)", output, re.M)
    switch = re.search(r"switch \(.*\): ([\d.]+) s", output)
    base = statistics.mean(baseline)
    scale = 2**30 / size
    print(f"Cutover benchmark: tenant plane, {size / 2**20:,.0f} MB of receipts ({rows:,} rows), "
          f"PostgreSQL {version} pilot -> PostgreSQL 16 stand-in, over verified TLS, {os.cpu_count()} cores")
    print(f"  bare pg_dump -Fc | pg_restore: {' s, '.join(f'{b:.1f}' for b in baseline)} s (mean {base:.1f} s)")
    print(f"  zeroui-db cutover --plane tenant: {seconds:.1f} s in all"
          + (f" ({steps.group(1)}" if steps else "") + (f"; switch {switch.group(1)} s)" if switch else ")"))
    if verify:
        print(f"    of which verification (both sides and the chain): {verify.group(1)} s")
    ratio = seconds / base
    print(f"  ratio: {ratio:.2f} x the bare copy (target <= {TARGET_RATIO} x): "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    if size_mb < 1024:
        print(f"  scaled linearly to 1 GB (from {size / 2**20:,.0f} MB, an estimate): bare {base * scale:.0f} s, "
              f"cutover {seconds * scale:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
