#!/usr/bin/env python3
"""Load benchmark: a connection storm from a host no client group lists, while the tenant
service's own traffic runs (run as root).

    .venv/bin/python bench/load_bench.py [--attempts 200] [--clients 4] [--seconds 12]

It deploys the pilot on a throwaway cluster ("zt..." name, free port) in a network-namespace
lab of its own (prefix "ztl"), with a tenant service host and an intruder host, and then:

* the tenant service appends receipts and reads them back with ``pgbench`` (``--clients``
  sessions, persistent, for ``--seconds``) over the URL of its own env file
  (``tenant.env``: verify-full TLS, SCRAM with channel binding), handed to libpq as
  ``PGDATABASE`` in its environment, never on a command line;
* a few seconds in, the intruder opens ``--attempts`` connections at once to the tenant
  database, with the tenant app role's real password (stolen credentials): pg_hba must
  refuse every one, by address;
* with ``--reconnect`` a second run does the same while pgbench opens a new connection for
  every transaction (a service without a pool), where a storm competes for connection slots.

It prints the intruder's outcomes (accepted, refused by pg_hba, other errors, how long the
storm took) and the tenant's transactions, failures (error rate) and throughput before,
during and after the storm. Everything is removed at the end, also after a failure or
Ctrl-C. The lab takes the machine-wide lab lock: it waits while integration tests run.
The integration suite runs ``run_load`` against its own pilot (tests/integration/test_load.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO))

import harness  # noqa: E402 (beside this script)

from zeroui_db import contract  # noqa: E402

LAB_PREFIX = "ztl"
SUBNET = "198.51.100.0/24"
TENANT_HOST, INTRUDER = "tenant_services", "intruder"
PROGRESS = re.compile(r"^progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+) ms stddev [\d.na]+(?:, (\d+) failed)?")

# What a tenant service does: append a receipt, read the newest back.
WORKLOAD = r"""\set n random(1, 1000000000)
INSERT INTO receipts (kind, source, occurred_at, payload)
VALUES ('bench.load', 'bench:load', now(), jsonb_build_object('n', :n));
SELECT seq, encode(content_hash, 'hex') FROM receipts ORDER BY seq DESC LIMIT 1;
"""

# Runs in the intruder's namespace: all attempts start together (a barrier), each on its own
# thread; the password arrives on stdin.
_STORM = r"""
import json, sys, threading, time, psycopg
a = json.load(sys.stdin)
n = a["attempts"]
barrier, results = threading.Barrier(n), [None] * n
def attempt(i):
    barrier.wait()
    start = time.monotonic()
    try:
        with psycopg.connect(**a["connect"], sslmode="require", connect_timeout=60):
            kind = "accepted"
    except psycopg.OperationalError as e:
        text = str(e)
        kind = "pg_hba" if "pg_hba.conf" in text else (text.strip().splitlines() or ["?"])[-1][:120]
    results[i] = (kind, time.monotonic() - start)
threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
start = time.monotonic()
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"wall": time.monotonic() - start, "results": results}))
"""


@dataclass
class Storm:
    attempts: int
    outcomes: dict[str, int]  # "accepted", "pg_hba" (refused by the rules), or another error's text
    wall: float  # seconds from the first attempt to the last answer
    slowest: float
    started: float = 0.0  # seconds after pgbench started
    ended: float = 0.0

    @property
    def accepted(self) -> int:
        return self.outcomes.get("accepted", 0)

    @property
    def refused_by_hba(self) -> int:
        return self.outcomes.get("pg_hba", 0)

    @property
    def other(self) -> dict[str, int]:
        return {k: v for k, v in self.outcomes.items() if k not in ("accepted", "pg_hba")}


@dataclass
class Tenant:
    clients: int
    seconds: int
    reconnect: bool
    transactions: int = 0
    failed: int = 0
    aborted_clients: int = 0
    tps: float = 0.0
    latency_ms: float = 0.0
    progress: list[tuple[float, float]] = field(default_factory=list)  # (second, tps)
    returncode: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        done = self.transactions + self.failed
        return self.failed / done if done else 1.0

    def tps_between(self, start: float, end: float) -> float | None:
        window = [tps for second, tps in self.progress if start < second <= end + 1]
        return statistics.mean(window) if window else None


@dataclass
class Load:
    storm: Storm
    tenant: Tenant


def _pgbench_env(env_file: Path) -> dict[str, str]:
    """The tenant service's environment: its env file's URL as libpq's database name."""
    url = next(line.split("=", 1)[1] for line in env_file.read_text().splitlines()
               if line.startswith(f"{contract.TENANT.env_var}="))
    return {**os.environ, "PGDATABASE": url, "PGAPPNAME": "bench-load"}


def run_load(lab, env_file: Path, server_address: str, port: int, app_password: str, attempts: int = 200,
             clients: int = 4, seconds: int = 12, storm_at: float = 3.0, reconnect: bool = False) -> Load:
    """pgbench on the tenant host over ``env_file``'s URL, and a storm from the intruder ``storm_at``
    seconds into it."""
    work = Path(tempfile.mkdtemp(prefix="ztl-load-"))
    try:
        script = work / "workload.sql"
        script.write_text(WORKLOAD)
        work.chmod(0o755)
        argv = ["ip", "netns", "exec", lab.netns(TENANT_HOST), "pgbench", "-n", "-c", str(clients),
                "-j", str(min(clients, 2)), "-T", str(seconds), "-P", "1", "-f", str(script),
                *(["-C"] if reconnect else [])]
        pgbench = subprocess.Popen(argv, env=_pgbench_env(env_file), text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        started = time.monotonic()
        try:
            time.sleep(storm_at)
            request = {"attempts": attempts, "connect": {
                "host": server_address, "port": port, "dbname": contract.TENANT.store,
                "user": contract.TENANT.app_role, "password": app_password}}
            storm_start = time.monotonic() - started
            proc = lab.run(INTRUDER, [sys.executable, "-c", _STORM], input=json.dumps(request), timeout=300)
            storm_end = time.monotonic() - started
            out, err = pgbench.communicate(timeout=seconds + 120)
        finally:
            if pgbench.poll() is None:
                pgbench.kill()
                pgbench.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"the storm did not run: {proc.stderr[-2000:]}")
        storm_data = json.loads(proc.stdout)
        outcomes: dict[str, int] = {}
        for kind, _ in storm_data["results"]:
            outcomes[kind] = outcomes.get(kind, 0) + 1
        storm = Storm(attempts, outcomes, storm_data["wall"], max(t for _, t in storm_data["results"]),
                      storm_start, storm_end)
        return Load(storm, _tenant(out, err, pgbench.returncode, clients, seconds, reconnect))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tenant(out: str, err: str, returncode: int, clients: int, seconds: int, reconnect: bool) -> Tenant:
    t = Tenant(clients, seconds, reconnect, returncode=returncode)
    for line in (out + "\n" + err).splitlines():
        if m := PROGRESS.match(line):
            t.progress.append((float(m.group(1)), float(m.group(2))))
        elif m := re.match(r"number of transactions actually processed: (\d+)", line):
            t.transactions = int(m.group(1))
        elif m := re.match(r"number of failed transactions: (\d+)", line):
            t.failed = int(m.group(1))
        elif m := re.match(r"latency average = ([\d.]+) ms", line):
            t.latency_ms = float(m.group(1))
        elif m := re.match(r"tps = ([\d.]+)", line):
            t.tps = float(m.group(1))
        elif "aborted" in line or "error" in line.lower() or "FATAL" in line:
            t.errors.append(line.strip())
    t.aborted_clients = sum(bool(re.search(r"client \d+ aborted", e)) for e in t.errors)
    return t


def report(load: Load, title: str) -> None:
    s, t = load.storm, load.tenant

    def rate(value: float | None) -> str:
        return f"{value:.0f}" if value is not None else "-"

    print(title)
    print(f"  intruder ({INTRUDER}, in no client group): {s.attempts} connection attempts at once, as "
          f"{contract.TENANT.app_role} with its real password")
    others = ", ".join(f"{n}x {k}" for k, v in s.other.items() for n in [v]) or "none"
    print(f"    accepted {s.accepted}, refused by pg_hba {s.refused_by_hba}, other errors: {others}")
    print(f"    all answered within {s.wall:.2f} s (slowest attempt {s.slowest:.2f} s)")
    mode = "a new connection per transaction" if t.reconnect else "persistent connections"
    print(f"  tenant service: pgbench, {t.clients} clients, {t.seconds} s, {mode}, over tenant.env's URL")
    print(f"    transactions {t.transactions}, failed {t.failed} (error rate {100 * t.error_rate:.3f} %), "
          f"aborted clients {t.aborted_clients}, exit status {t.returncode}")
    print(f"    tps {t.tps:.0f} overall: {rate(t.tps_between(0, s.started))} before the storm, "
          f"{rate(t.tps_between(s.started, s.ended))} during it, {rate(t.tps_between(s.ended, t.seconds))} after; "
          f"latency average {t.latency_ms:.2f} ms")
    for line in t.errors[:5]:
        print(f"    pgbench: {line}")


def main() -> int:
    from clusters import drop_cluster, free_port, unique_cluster_name
    from deployment import Deployment
    from lab import Lab

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=200, help="the intruder's concurrent attempts (200)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients of the tenant service (4)")
    parser.add_argument("--seconds", type=int, default=12, help="how long pgbench runs (12)")
    parser.add_argument("--reconnect", action="store_true",
                        help="also run with a new connection per transaction (pgbench -C)")
    args = parser.parse_args()
    version = harness.start("a cluster and network namespaces")
    if version is None:
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="ztl-bench-"))
    d = None
    try:
        with Lab(prefix=LAB_PREFIX, subnet=SUBNET) as lab:
            hosts = list(lab.subnet.hosts())
            lab.add_host(TENANT_HOST, str(hosts[11]))
            lab.add_host(INTRUDER, str(hosts[65]))
            base = workdir / "pilot"
            base.mkdir()
            d = Deployment(workdir=base, site="zt-bench-load", version=version, cluster=unique_cluster_name(),
                           port=free_port(), server_address=lab.bridge_address, env_dir=base / "env",
                           secrets_dir=base / "secrets")
            try:
                networks = {g.key: [] for g in contract.CLIENT_GROUPS}
                networks.update({TENANT_HOST: [f"{hosts[11]}/32"], contract.ADMIN_HOSTS.key: ["127.0.0.1/32"]})
                d.write_inventory(networks, listen=["127.0.0.1", lab.bridge_address])
                print("deploying the pilot ...", flush=True)
                d.deploy()
                runs = [False, True] if args.reconnect else [False]
                loads = []
                for reconnect in runs:
                    print(f"load{' (reconnecting)' if reconnect else ''} ...", flush=True)
                    loads.append(run_load(lab, d.env_dir / "tenant.env", lab.bridge_address, d.port,
                                          d.password(contract.TENANT.app_role), args.attempts, args.clients,
                                          args.seconds, reconnect=reconnect))
            finally:
                drop_cluster(d.version, d.cluster)
    except KeyboardInterrupt:
        print("interrupted: cleaned up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"ZeroUI DB load benchmark: PostgreSQL {version}, {os.cpu_count()} CPUs")
    for load in loads:
        report(load, "persistent tenant connections" if not load.tenant.reconnect else "reconnecting tenant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
