#!/usr/bin/env python3
"""Deploy benchmark: the pilot on @local, over SSH as root and as a sudo operator, and the cloud site (run as root).

    .venv/bin/python bench/deploy_bench.py [--runs 5]

For each target it measures, with pyinfra's CLI run as a user runs it (``pyinfra -y``):

* the first deploy's wall time (PostgreSQL packages present, no cluster yet);
* the no-op redeploy's wall time (median of ``--runs``);
* the SQL round trips of a no-op, counted in the deploy from a ``--debug`` run: every
  ``psql`` a fact runs (one query each, as pyinfra logs the commands it runs) plus the
  statements sent over the admin connection (zeroui_db/admin_link.py logs them per
  operation). As a cross-check, the server's own counters (``pg_stat_database``:
  transactions and sessions) are read before and after each no-op run; the deploy's
  configuration is not touched for that.

The cloud site is three managed-service stand-ins (PostgreSQL >= 16 in namespaces, see
tests/integration/standins.py) deployed from @local: no workstation, database level only.

Everything runs on throwaway clusters ("zt..." names, free ports) and a network-namespace
lab of its own (a "workstation" namespace running sshd, see tests/integration/lab.py).
All of it is removed at the end, also after a failure or Ctrl-C. The lab takes the
machine-wide lab lock, so the benchmark waits while integration tests run (both use the
lab subnet and "zt" cluster names) and they wait for it.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
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

from clusters import drop_cluster, free_port, unique_cluster_name  # noqa: E402
from deployment import CloudDeployment, Deployment, DeployRun, run_deploy  # noqa: E402
from lab import Lab  # noqa: E402
from standins import StandIn, remove_stale_standins  # noqa: E402
from testca import TestCA  # noqa: E402

from zeroui_db import contract  # noqa: E402

from zeroui_db.config import ADMIN_LOOPBACK  # noqa: E402

TARGET_SECONDS = 1.5  # no-op redeploy of the pilot on @local, median
CLOUD_TARGET_SECONDS = 1.0  # no-op redeploy of the cloud site (three endpoints), median
LAB_PREFIX = "ztb"  # its own namespaces and links, apart from the tests' "zt" lab
SUBNET = "198.51.100.0/24"
WORKSTATION = "workstation"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STATS_QUERY = ("SELECT coalesce(sum(xact_commit + xact_rollback), 0), coalesce(sum(sessions), 0) "
               "FROM pg_stat_database")


@dataclass
class RoundTrips:
    psql_by_fact: dict[str, int] = field(default_factory=dict)  # psql runs (one query each) per fact
    admin_by_op: dict[str, tuple[int, int]] = field(default_factory=dict)  # op -> (connections, statements)
    commands: int = 0  # every shell command the no-op ran on the host

    @property
    def psql(self) -> int:
        return sum(self.psql_by_fact.values())

    @property
    def admin_connections(self) -> int:
        return sum(c for c, _ in self.admin_by_op.values())

    @property
    def admin_statements(self) -> int:
        return sum(s for _, s in self.admin_by_op.values())

    @property
    def total(self) -> int:
        return self.psql + self.admin_statements

    @property
    def sessions(self) -> int:
        return self.psql + self.admin_connections


@dataclass
class Result:
    label: str
    first: float = 0.0
    noop: list[float] = field(default_factory=list)
    trips: RoundTrips | None = None
    server: list[tuple[int, int]] = field(default_factory=list)  # (transactions, sessions) per no-op
    calibration: tuple[int, int] = (0, 0)  # what one counter read adds: (transactions, sessions)
    notes: list[str] = field(default_factory=list)


def pilot_networks() -> dict[str, list[str]]:
    """The client networks of inventories/pilot.py: the pilot's services run on the workstation."""
    site = runpy.run_path(str(REPO / "inventories" / "pilot.py"))["_SITE"]
    return {group: access["networks"] for group, access in site["clients"].items()}


def count_round_trips(stderr: str) -> RoundTrips:
    """From --debug output: each psql a fact runs, and what the admin link reports per operation.

    zeroui_db/admin_link.py logs "admin link: N connection(s), M statement(s)" whenever an
    operation is done with the admin connection; pyinfra logs every shell command it runs.
    """
    trips, fact, op = RoundTrips(), None, "(before any operation)"
    for line in ANSI.sub("", stderr).splitlines():
        if m := re.search(r"Getting fact: (\S+)", line):
            fact = m.group(1).rsplit(".", 1)[-1]
        elif m := re.search(r"Starting operation \{'(.*)'\}", line):
            op, fact = m.group(1), None
        elif "Running command on" in line:
            trips.commands += 1
            if re.search(r"\bpsql\b", line):
                key = fact or f"operation {op}"
                trips.psql_by_fact[key] = trips.psql_by_fact.get(key, 0) + 1
        elif m := re.search(r"admin link: (\d+) connection\(s\), (\d+) statement\(s\)", line):
            conns, stmts = trips.admin_by_op.get(op, (0, 0))
            trips.admin_by_op[op] = (conns + int(m.group(1)), stmts + int(m.group(2)))
    return trips


def server_counters(d: Deployment) -> tuple[int, int]:
    """(transactions, sessions) over all databases, as the superuser on the local socket.

    The socket is a file, so this also reaches the cluster inside the lab namespace.
    """
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-F", " ", "-p", str(d.port), "-d", "postgres",
         "-c", STATS_QUERY], text=True, capture_output=True, check=True, timeout=30).stdout
    xacts, sessions = out.split()
    return int(xacts), int(sessions)


def changes_in_text_run(run: DeployRun) -> int:
    """The "Success" (= changed) column of pyinfra's closing Grand total row."""
    m = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", ANSI.sub("", run.stderr + run.stdout))
    if not m:
        raise RuntimeError("no Grand total row in pyinfra's output")
    return 0 if m.group(2) == "-" else int(m.group(2))


def timed(d: Deployment, *args: str) -> tuple[float, DeployRun]:
    start = time.perf_counter()
    # `pyinfra -y INVENTORY deploy.py` from the repository, as a user runs it (run_deploy adds -y).
    run = run_deploy(d.inventory, *args, env=d.env, check=False, json_output=False)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"deploy of {d.site} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return elapsed, run


def bench(d: Deployment | CloudDeployment, label: str, runs: int) -> Result:
    res = Result(label)
    counters = isinstance(d, Deployment)  # the pilot's cluster is local: its stats can be read
    print(f"[{label}] first deploy ...", flush=True)
    res.first, _ = timed(d)

    # Is the redeploy a no-op? pyinfra's own per-operation results say (JSON), and the --debug
    # output of the same run gives the round trips.
    check = run_deploy(d.inventory, "--debug", env=d.env, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"no-op check of {d.site} failed:\n{check.stderr[-3000:]}")
    if check.changed:
        res.notes.append(f"NOT a no-op: the redeploy changed {check.changed}")
    res.trips = count_round_trips(check.stderr)

    if not counters:
        for i in range(runs):
            print(f"[{label}] no-op redeploy {i + 1}/{runs} ...", flush=True)
            elapsed, run = timed(d)
            if changes_in_text_run(run):
                res.notes.append(f"no-op run {i + 1} changed {changes_in_text_run(run)} operation(s)")
            res.noop.append(elapsed)
        return res
    # Calibrate the counters: what one read of them adds by itself.
    a = server_counters(d)
    time.sleep(0.5)
    b = server_counters(d)
    own = res.calibration = (b[0] - a[0], b[1] - a[1])
    for i in range(runs):
        print(f"[{label}] no-op redeploy {i + 1}/{runs} ...", flush=True)
        time.sleep(0.5)  # let the previous counter read's backend exit and flush its stats
        before = server_counters(d)
        elapsed, run = timed(d)
        if changes_in_text_run(run):
            res.notes.append(f"no-op run {i + 1} changed {changes_in_text_run(run)} operation(s)")
        time.sleep(1.0)  # the deploy's backends flush their stats as they exit
        after = server_counters(d)
        res.noop.append(elapsed)
        res.server.append((after[0] - before[0] - own[0], after[1] - before[1] - own[1]))
    return res


def report(results: list[Result], version: int, runs: int) -> None:
    import pyinfra.version  # noqa: PLC0415

    def row(what: str, value: str) -> None:
        print(f"  {what:<46} {value}")

    print()
    print(f"ZeroUI DB deploy benchmark: PostgreSQL {version}, pyinfra {pyinfra.version.__version__}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for r in results:
        t = r.trips
        print(r.label)
        row("first deploy (packages present, no cluster)", f"{r.first:.2f} s")
        row(f"no-op redeploy, median of {runs} (min-max)",
            f"{statistics.median(r.noop):.2f} s ({min(r.noop):.2f}-{max(r.noop):.2f})")
        facts = ", ".join(f"{name} {n}" for name, n in sorted(t.psql_by_fact.items())) or "none"
        ops = "; ".join(f"{op}: {c} conn/{s} stmt" for op, (c, s) in t.admin_by_op.items()) or "none"
        row("no-op SQL round trips (counted in the deploy)",
            f"{t.total} = {t.psql} psql ({facts}) + {t.admin_statements} admin statements "
            f"on {t.admin_connections} TLS connections ({ops})")
        # Every backend's start-up runs one transaction of its own, which pg_stat_database
        # counts; the calibration read (one `psql -c`) shows it: 2 transactions, 1 session.
        seen = sorted(set(r.server))
        checks = [] if seen else ["not read (the stand-ins' counters are not the pilot's)"]
        for xacts, sessions in seen:
            statements = xacts - sessions
            verdict = "matches" if (statements, sessions) == (t.total, t.sessions) else "DIFFERS"
            checks.append(f"{sessions} sessions, {xacts} transactions = {statements} statements"
                          f" + {sessions} start-ups ({verdict})")
        row("server-side cross-check (pg_stat_database)", " | ".join(checks))
        if seen:
            row("calibration: one `psql -c` adds", f"{r.calibration[0]} transactions, {r.calibration[1]} session")
        row("shell commands run on the host by a no-op", str(t.commands))
        for note in r.notes:
            row("NOTE", note)
    for prefix, target in (("@local", TARGET_SECONDS), ("cloud", CLOUD_TARGET_SECONDS)):
        found = next((r for r in results if r.label.startswith(prefix)), None)
        if found:
            med = statistics.median(found.noop)
            print(f"Target: no-op redeploy of {found.label} <= {target} s (median): "
                  f"{'MET' if med <= target else 'NOT MET'} ({med:.2f} s)")


def packages_present(version: int) -> list[str]:
    wanted = [f"postgresql-{version}", f"postgresql-client-{version}", "openssl", "pgbackrest", "cron"]
    missing = []
    for pkg in wanted:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", pkg], text=True, capture_output=True)
        if "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def bench_cloud(lab: Lab, workdir: Path, runs: int) -> Result:
    """Three stand-in managed services, deployed from @local: the database-level path alone."""
    remove_stale_standins(lab)
    ca = TestCA(workdir / "cloud-ca")
    hosts = list(lab.subnet.hosts())
    standins = {}
    try:
        for i, plane in enumerate(contract.POSTGRES_PLANES):
            standins[plane.key] = StandIn(lab, f"cloud-{plane.key}", str(hosts[20 + i]), ca,
                                          master=f"master_{plane.key}", master_password=os.urandom(16).hex()).start()
        networks = {g: [f"{lab.bridge_address}/32"] for g in ("tenant_services", "product_services",
                                                                 "shared_services", contract.ADMIN_HOSTS.key)}
        base = workdir / "cloud"
        base.mkdir()
        return bench(CloudDeployment(base, "zt-bench-cloud", standins, networks), "cloud (3 endpoints, @local)", runs)
    finally:
        for s in standins.values():
            s.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="no-op redeploys to time per target (default 5)")
    parser.add_argument("--only", choices=("local", "ssh", "sudo", "cloud"), action="append",
                        help="measure only these targets (repeatable; default all)")
    args = parser.parse_args()
    version = harness.start("clusters and network namespaces")
    if version is None:
        return 2
    if missing := packages_present(version):
        print(f"missing packages {missing}: the first deploy is measured with packages present", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="ztb-bench-"))
    deployments: list[Deployment] = []

    def new(tag: str, server_address: str) -> Deployment:
        base = workdir / tag
        base.mkdir()
        ports = {d.port for d in deployments}
        port = free_port()
        while port in ports:
            port = free_port()
        d = Deployment(workdir=base, site=f"zt-bench-{tag}", version=version, cluster=unique_cluster_name(),
                       port=port, server_address=server_address, env_dir=base / "env",
                       secrets_dir=base / "secrets")
        deployments.append(d)  # registered before anything exists, so cleanup covers it
        return d

    results = []
    try:
        with Lab(prefix=LAB_PREFIX, subnet=SUBNET) as lab:
            ns_address = str(list(lab.subnet.hosts())[1])
            lab.add_host(WORKSTATION, ns_address)
            only = set(args.only or ("local", "ssh", "sudo", "cloud"))
            try:
                if "local" in only:
                    local = new("local", ADMIN_LOOPBACK)
                    local.write_inventory(pilot_networks(), listen=[ADMIN_LOOPBACK])
                    results.append(bench(local, "@local", args.runs))
                if "cloud" in only:
                    results.append(bench_cloud(lab, workdir, args.runs))
                # SSH as root, and as an operator with sudo (its own sshd on another port).
                for kind, port in (("ssh", 22), ("sudo", 2222)):
                    if kind not in only:
                        continue
                    target = lab.start_sshd(WORKSTATION, port, user=lab.add_operator() if kind == "sudo" else "root")
                    remote = new(kind, ns_address)
                    remote.write_inventory(
                        pilot_networks(), listen=[ADMIN_LOOPBACK, ns_address], host=target.host,
                        host_data={"ssh_user": target.user, "ssh_key": target.key_path,
                                   "ssh_known_hosts_file": target.known_hosts_path, "ssh_port": target.port,
                                   "ssh_strict_host_key_checking": "yes", **({"_sudo": True} if kind == "sudo" else {})},
                    )
                    results.append(bench(remote, f"{kind} {ns_address} (netns)", args.runs))
            finally:
                # Before the lab goes: the SSH cluster's server runs in its namespace.
                for d in deployments:
                    drop_cluster(d.version, d.cluster)
    except KeyboardInterrupt:
        print("interrupted: cleaned up", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if "lab subnet" in str(e):  # e.g. the integration tests' lab is up
            print(f"cannot build the lab: {e}", file=sys.stderr)
            return 2
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, version, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
