"""Convergence after a crash anywhere: the deploy's process group is SIGKILLed at random points
of a first deploy and of a migration run. Each rerun converges, the run after it changes
nothing, and the data is intact (a hash-chained run of sentinel receipts).

The kill points are drawn from a seeded RNG, one per equal slice of the measured duration of
an uninterrupted run, and printed: ``ZEROUI_CRASH_SEED`` and ``ZEROUI_CRASH_POINTS`` replay or
widen a run (``pytest -s`` shows the points as they go). To keep the suite lean, the points
are shared out between two sites deployed side by side (a deploy keeps about half a core
busy), each with a cluster of its own.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from clusters import drop_cluster, free_port, unique_cluster_name
from deployment import PYINFRA, REPO, Deployment
from hosts import superuser_psql, superuser_rows

from zeroui_db import contract, schemas

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("ZEROUI_CRASH_SEED", "20261128"))
POINTS = int(os.environ.get("ZEROUI_CRASH_POINTS", "20"))
SENTINELS = 40
ROWS_PER_MIGRATION = 100_000
TRACKS = 2  # sites worked on side by side (measured on 2 cores: 3 is no faster)


# -- killing a deploy -----------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue
        tree[int(rest.rsplit(") ", 1)[1].split()[1])].append(int(pid))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def deploy_killed_after(inventory: Path, env: dict, seconds: float) -> bool:
    """Run the deploy and SIGKILL it ``seconds`` in; True when it finished before that.

    The deploy runs in a session of its own; killing its process group is killing the
    deploy. ``su`` (pyinfra's ``_su_user``) puts its command in a session of its own, so the
    group is stopped first and those descendants are killed too. PostgreSQL itself is left
    running, as a real crash of the deploy leaves it.
    """
    proc = subprocess.Popen([PYINFRA, "-y", str(inventory), "deploy.py"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        pass
    os.killpg(proc.pid, signal.SIGSTOP)  # nothing forks while the tree is read
    strays = [p for p in _descendants(proc.pid) if _comm(p) != "postgres"]
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    return False


def kill_points(rng: random.Random, start: float, end: float, count: int) -> list[float]:
    """One random point in each of ``count`` equal slices of [start, end)."""
    step = (end - start) / count
    return [round(start + (i + rng.random()) * step, 3) for i in range(count)]


# -- the site ---------------------------------------------------------------------------------------


class CrashSite(Deployment):
    """A pilot on @local reachable on loopback only, with a schema folder of its own."""

    schema_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "ZEROUI_SCHEMA_DIR": str(self.schema_dir)}

    def reset(self) -> None:
        """Back to a host that never saw this site: no cluster, no env files, no secrets."""
        drop_cluster(self.version, self.cluster)
        shutil.rmtree(self.env_dir, ignore_errors=True)
        shutil.rmtree(self.secrets_dir, ignore_errors=True)

    def converges(self, label: str) -> None:
        """The rerun succeeds and the run after it changes nothing."""
        start = time.monotonic()
        rerun = self.deploy(check=False)
        assert rerun.returncode == 0, f"{label}: the rerun failed:\n{rerun.stderr[-3000:]}"
        again = self.deploy()
        assert again.changed == [], f"{label}: the run after the rerun changed {again.changed}"
        print(f"  {label}: converged, then no change ({time.monotonic() - start:.1f} s)")


@pytest.fixture(scope="module")
def crash_sites(lab, workdir, version):
    sites = []
    try:
        for k in range(TRACKS):
            base = workdir / f"crash{k}"
            base.mkdir()
            site = CrashSite(workdir=base, site=f"zt-crash{k}", version=version, cluster=unique_cluster_name(),
                             port=free_port(), server_address="127.0.0.1", env_dir=base / "env",
                             secrets_dir=base / "secrets")
            sites.append(site)  # before anything is created: the finally below drops what was
            site.schema_dir = base / "schemas"
            shutil.copytree(schemas.SCHEMA_DIR, site.schema_dir)
            networks = {g.key: ["127.0.0.1/32"] for g in (*contract.SERVICE_GROUPS, contract.ADMIN_HOSTS)}
            site.write_inventory({**networks, contract.IDE_LAPTOPS.key: []}, listen=["127.0.0.1"])
        yield sites
    finally:
        for site in sites:
            drop_cluster(site.version, site.cluster)


def side_by_side(sites: list[CrashSite], work, items: list) -> None:
    """``work(site, item)`` for every item, the items shared out between the sites, each site
    in a thread of its own; the first failure is raised once all have stopped."""
    failures: list[BaseException] = []

    def track(site: CrashSite, mine: list) -> None:
        try:
            for item in mine:
                work(site, item)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread below
            failures.append(e)

    threads = [threading.Thread(target=track, args=(site, items[k::len(sites)])) for k, site in enumerate(sites)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


def timed(sites: list[CrashSite], work) -> float:
    """The longest of ``work(site)`` run on every site at once: the duration kills are spread over."""
    took: list[float] = []

    def one(site: CrashSite, _) -> None:
        start = time.monotonic()
        work(site)
        took.append(time.monotonic() - start)

    side_by_side(sites, one, list(range(len(sites))))
    return max(took)


def plane_logins(site: CrashSite) -> None:
    """Each plane's services get in with their env file, as they would."""
    for plane in contract.POSTGRES_PLANES:
        line = (site.env_dir / f"{plane.key}.env").read_text().strip()
        url = line.split("=", 1)[1]
        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (plane.app_role, plane.store)


def ledger(site: CrashSite, plane: contract.Plane) -> list[str]:
    return [r[0] for r in superuser_rows(site.port, plane.store, "SELECT filename FROM zeroui_schema_migrations "
                                                                 "ORDER BY filename")]


def expected_files(site: CrashSite, plane: contract.Plane) -> list[str]:
    return sorted(p.name for p in (site.schema_dir / plane.key).glob("*.sql"))


# -- 1. a first deploy --------------------------------------------------------------------------------


def marker(site: CrashSite) -> Path:
    return Path(f"/etc/postgresql/{site.version}/{site.cluster}/zeroui-unfinished")


def test_first_deploy_killed_anywhere_converges(crash_sites):
    rng = random.Random(SEED)
    full = timed(crash_sites, lambda site: (site.reset(), site.deploy()))
    points = kill_points(rng, 0.3, full, POINTS)
    print(f"\nfirst deploy: {full:.1f} s uninterrupted; seed {SEED}; kill points (s): {points}")

    def trial(site: CrashSite, point: tuple[int, float]) -> None:
        i, seconds = point
        site.reset()
        label = f"first deploy killed at {seconds} s (point {i}, seed {SEED})"
        finished = deploy_killed_after(site.inventory, site.env, seconds)
        left = "finished first" if finished else ("the creation marker" if marker(site).exists() else "killed")
        print(f"  {label}: {left}")
        site.converges(label)
        assert not marker(site).exists(), label
        for plane in contract.POSTGRES_PLANES:
            assert ledger(site, plane) == expected_files(site, plane), label
        plane_logins(site)

    side_by_side(crash_sites, trial, list(enumerate(points)))


# -- 2. a migration run -------------------------------------------------------------------------------

# Two files per run, so that a kill can fall inside either one or between them; each takes a
# moment (rows, then a pause), so that kills land inside their transactions too.
MIGRATION = """-- zeroui-class: tenant/tenant_history: crash test rows ({n})
CREATE TABLE zt_crash_{n} (id bigint PRIMARY KEY, note text NOT NULL);
INSERT INTO zt_crash_{n} SELECT g, md5(g::text) FROM generate_series(1, {rows}) g;
SELECT pg_sleep(0.3);
"""


def add_migrations(site: CrashSite, first: int) -> list[int]:
    numbers = [first, first + 1]
    for n in numbers:
        (site.schema_dir / contract.TENANT.key / f"{n:04d}_zt_crash_{n}.sql").write_text(
            MIGRATION.format(n=n, rows=ROWS_PER_MIGRATION))
    return numbers


def sentinels(site: CrashSite) -> list[list[str]]:
    return superuser_rows(site.port, contract.TENANT.store,
                          "SELECT count(*), (SELECT encode(content_hash, 'hex') FROM receipts ORDER BY seq DESC"
                          " LIMIT 1), verify_receipt_chain() IS NULL FROM receipts")


def converged_with_sentinels(site: CrashSite) -> None:
    if not (site.env_dir / "tenant.env").exists():  # run alone: start from a converged site
        site.reset()
        site.deploy()
    superuser_psql(site.port, contract.TENANT.store,
                   "INSERT INTO receipts (kind, source, occurred_at, payload) SELECT 'zt.crash', 'zt', now(), "
                   f"jsonb_build_object('n', n) FROM generate_series(1, {SENTINELS}) n")
    site.sentinels = sentinels(site)
    assert site.sentinels[0][2] == "t"


def test_migration_run_killed_anywhere_converges(crash_sites):
    rng = random.Random(SEED + 1)
    side_by_side(crash_sites, lambda site, _: converged_with_sentinels(site), list(range(len(crash_sites))))
    full = timed(crash_sites, lambda site: (add_migrations(site, 1000), site.deploy()))
    points = kill_points(rng, 0.3, full, POINTS)
    print(f"\nmigration run: {full:.1f} s uninterrupted; seed {SEED + 1}; kill points (s): {points}")

    def trial(site: CrashSite, point: tuple[int, float]) -> None:
        i, seconds = point
        numbers = add_migrations(site, 1002 + 2 * i)
        label = f"migration run killed at {seconds} s (point {i}, seed {SEED + 1})"
        finished = deploy_killed_after(site.inventory, site.env, seconds)
        applied = [n for n in numbers if f"{n:04d}_zt_crash_{n}.sql" in ledger(site, contract.TENANT)]
        print(f"  {label}: {'finished first' if finished else f'killed with {len(applied)} of 2 files applied'}")
        site.converges(label)
        assert ledger(site, contract.TENANT) == expected_files(site, contract.TENANT), label
        for n in numbers:  # each file applied exactly once, whole
            assert superuser_rows(site.port, contract.TENANT.store, f"SELECT count(*) FROM zt_crash_{n}") == [
                [str(ROWS_PER_MIGRATION)]], label
        assert sentinels(site) == site.sentinels, label

    side_by_side(crash_sites, trial, list(enumerate(points)))
    for site in crash_sites:
        plane_logins(site)


# -- 3. a marker never removes a cluster that holds data -------------------------------------------------


def test_a_cluster_with_data_is_never_made_again(crash_sites):
    """The marker says "unfinished", but the cluster runs or holds a database: the deploy
    refuses in one line and removes nothing; once the marker is gone it adopts the cluster."""
    site = crash_sites[0]
    if not (site.env_dir / "tenant.env").exists():
        site.reset()
        site.deploy()
    before = sentinels(site)
    marker(site).touch()
    try:
        running = site.deploy(check=False)
        assert running.returncode != 0 and "is running" in running.stderr
        subprocess.run(["pg_ctlcluster", str(site.version), site.cluster, "stop"], check=True)
        stopped = site.deploy(check=False)
        assert stopped.returncode != 0 and "holds databases" in stopped.stderr
        assert "nothing was removed" in stopped.stderr
        assert Path(f"/var/lib/postgresql/{site.version}/{site.cluster}/PG_VERSION").exists()
    finally:
        marker(site).unlink(missing_ok=True)
    site.converges("marker removed by hand")
    assert sentinels(site) == before
    for plane in contract.POSTGRES_PLANES:
        assert ledger(site, plane) == expected_files(site, plane)
