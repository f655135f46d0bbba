"""Throwaway PostgreSQL clusters for tests (Debian postgresql-common tooling, root only).

Every cluster a test creates is named "zt..." (see unique_cluster_name); drop_cluster refuses
any other name, so a test can never remove a cluster it did not make (e.g. 15/main).
"""

from __future__ import annotations

import glob
import os
import random
import re
import secrets
import shutil
import socket
import subprocess

TEST_PREFIX = "zt"
BACKUP_REPOSITORY = "/var/lib/pgbackrest"  # the deploy's default pgBackRest repository
PORT_RANGE = range(15500, 16000)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def existing_clusters() -> list[tuple[int, str, int, str]]:
    """(version, name, port, status) for every cluster pg_lsclusters knows."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], text=True, capture_output=True, check=True).stdout
    clusters = []
    for line in out.splitlines():
        # Ver Cluster Port Status Owner Datadir Logfile; status may read e.g. "online,recovery".
        fields = line.split()
        if len(fields) >= 4 and fields[0].isdigit() and fields[2].isdigit():
            clusters.append((int(fields[0]), fields[1], int(fields[2]), fields[3]))
    return clusters


def free_port() -> int:
    """A port in PORT_RANGE that is free on 127.0.0.1 and not configured for any cluster.

    A stopped cluster holds no socket but would collide once started, hence both checks.
    """
    taken = {port for _, _, port, _ in existing_clusters()}
    candidates = [p for p in PORT_RANGE if p not in taken]
    random.shuffle(candidates)  # lowers the odds that parallel callers pick the same port
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def unique_cluster_name(prefix: str = TEST_PREFIX) -> str:
    _check_test_name(prefix)
    return f"{prefix}{secrets.token_hex(4)}"


def _check_test_name(name: str) -> None:
    # The name ends up in rm -rf paths: no slashes, no "..", and only names tests create.
    if not name.startswith(TEST_PREFIX) or not _NAME_RE.match(name):
        raise ValueError(f"refusing cluster name {name!r}: test clusters match {TEST_PREFIX}[a-z0-9_-]*")


def drop_cluster(version: int, name: str) -> None:
    """Stop and remove a test cluster, including the files pg_dropcluster leaves behind."""
    _check_test_name(name)
    version = int(version)
    if any(v == version and n == name for v, n, _, _ in existing_clusters()):
        drop = ["pg_dropcluster", "--stop", str(version), name]
        if subprocess.run(drop, capture_output=True).returncode != 0:
            # Usually a server that does not stop politely; a throwaway cluster can take immediate.
            subprocess.run(["pg_ctlcluster", str(version), name, "stop", "-m", "immediate"], capture_output=True)
            proc = subprocess.run(drop, text=True, capture_output=True)
            if proc.returncode != 0:
                # Do not pull the files out from under a server that is still running.
                raise RuntimeError(f"pg_dropcluster {version} {name} failed: {proc.stderr.strip()}")
    # pg_dropcluster leaves e.g. conf.d fragments; a re-created cluster would silently pick them up.
    shutil.rmtree(f"/etc/postgresql/{version}/{name}", ignore_errors=True)
    shutil.rmtree(f"/var/lib/postgresql/{version}/{name}", ignore_errors=True)
    # The deploy's backups: the cluster's pgBackRest stanza (named "<version>-<name>") in the
    # default repository, its logs and locks, and its cron schedule.
    stanza = f"{version}-{name}"
    for kind in ("archive", "backup"):
        shutil.rmtree(f"{BACKUP_REPOSITORY}/{kind}/{stanza}", ignore_errors=True)
    paths = [f"/var/log/postgresql/postgresql-{version}-{name}.log", f"/run/postgresql/{version}-{name}.pid",
             f"/etc/cron.d/zeroui-backup-{version}-{name}",
             *glob.glob(f"/var/log/pgbackrest/{stanza}-*.log"), *glob.glob(f"/tmp/pgbackrest/{stanza}*")]
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def drop_stale_test_clusters(prefix: str = TEST_PREFIX) -> None:
    """Drop leftovers of crashed runs: every cluster whose name starts with prefix."""
    _check_test_name(prefix)
    stale = {(v, n) for v, n, _, _ in existing_clusters() if n.startswith(prefix)}
    # Half-removed clusters are not listed by pg_lsclusters but still leave files to pick up.
    for base in ("/etc/postgresql", "/var/lib/postgresql"):
        for path in glob.glob(f"{base}/*/{prefix}*"):
            version, name = path.split("/")[-2:]
            if version.isdigit() and _NAME_RE.match(name):
                stale.add((int(version), name))
    for path in glob.glob(f"{BACKUP_REPOSITORY}/*/*-{prefix}*") + glob.glob(f"/etc/cron.d/zeroui-backup-*-{prefix}*"):
        version, _, name = path.rsplit("/", 1)[1].removeprefix("zeroui-backup-").partition("-")
        if version.isdigit() and _NAME_RE.match(name) and name.startswith(prefix):
            stale.add((int(version), name))
    for version, name in sorted(stale):
        drop_cluster(version, name)
