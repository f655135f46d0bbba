"""No secret leaves the secrets store except into the env files, even at full verbosity.

A fresh site is deployed on @local with ``-vvv --debug --diff`` while a background thread
samples every process's command line. No generated password and no SCRAM verifier may
appear in pyinfra's output, in any sampled command line, or in the server log. Then one
password is rotated and the site redeployed the same way: the new password must not leak
either, must be in the env file, and must be the one the server accepts.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from clusters import drop_cluster
from conftest import client_networks, new_deployment
from deployment import REPO
from watch import CmdlineSampler, store_secrets

from zeroui_db import contract, envfiles
from zeroui_db.config import ADMIN_LOOPBACK, parse_site

pytestmark = pytest.mark.integration

LOUD = ("-vvv", "--debug", "--diff")
VERIFIER_RE = re.compile(r"SCRAM-SHA-256\$\d+:")
# The plane whose app password gets rotated, and the service group holding its env file.
PLANE = contract.POSTGRES_PLANES[0]
GROUP = next(g for g in contract.SERVICE_GROUPS if g.plane is PLANE)
ROLE = PLANE.app_role


def _leaks(sources: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """Where secrets appear, named by label only (the secret itself is never printed)."""
    found = []
    for where, text in sources.items():
        found += [f"{label} in {where}" for label, secret in secrets.items() if secret in text]
        if VERIFIER_RE.search(text):
            found.append(f"a SCRAM verifier in {where}")
    return found


def _server_log(d) -> str:
    return Path(f"/var/log/postgresql/postgresql-{d.version}-{d.cluster}.log").read_text(errors="replace")


def _site(d):
    return parse_site(runpy.run_path(str(d.inventory))["workstation"][1]["zeroui"])


def _connect(d, password: str) -> None:
    with psycopg.connect(host=ADMIN_LOOPBACK, port=d.port, dbname=PLANE.store, user=ROLE, password=password,
                         sslmode="require", connect_timeout=10) as conn:
        conn.execute("SELECT 1")


def _loud_deploy(d):
    """Deploy with every verbosity flag while sampling command lines."""
    with CmdlineSampler() as sampler:
        run = d.deploy(*LOUD, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.errors == []
    assert sampler.rounds > 10
    # The sampler works: it saw the pyinfra CLI that ran the deploy.
    assert any(b"pyinfra" in c and str(d.inventory).encode() in c for c in sampler.seen)
    return run, sampler


@pytest.fixture(scope="module")
def leak_site(lab, workdir, version):
    d = new_deployment(workdir, version, lab.bridge_address, "leak")
    networks = client_networks([f"{ADMIN_LOOPBACK}/32"])
    # The rotated role's services also run on this machine, so the test can log in as them.
    networks[GROUP.key] = [*networks[GROUP.key], f"{ADMIN_LOOPBACK}/32"]
    d.write_inventory(networks, listen=[ADMIN_LOOPBACK, lab.bridge_address])
    try:
        yield d
    finally:
        drop_cluster(d.version, d.cluster)


@pytest.fixture(scope="module")
def first(leak_site):
    run, sampler = _loud_deploy(leak_site)
    return run, sampler, leak_site.secrets()


def test_loud_flags_combine_with_json(first):
    run, _, _ = first
    # --json keeps stdout pure JSON; the -vvv/--debug/--diff output goes to stderr.
    assert run.results["failed_hosts"] == []
    assert "DEBUG" in run.stderr or "[pyinfra" in run.stderr, "--debug printed nothing"


def test_first_deploy_leaks_nothing(first, leak_site):
    run, sampler, store = first
    secrets = store_secrets(store)
    # Every managed role has a password and (once applied) a verifier to look for.
    assert sum(label.startswith("password of") for label in secrets) == len(store["roles"]) > 0
    assert any(label.startswith("verifier of") for label in secrets)
    sources = {
        "pyinfra stdout": run.stdout, "pyinfra stderr": run.stderr,
        "a process command line": sampler.text, "the server log": _server_log(leak_site),
    }
    assert _leaks(sources, secrets) == []


@pytest.fixture(scope="module")
def rotated(first, leak_site):
    d = leak_site
    _, _, before = first
    old = before["roles"][ROLE]["password"]
    _connect(d, old)  # the positive control: the old password works until rotated
    proc = subprocess.run([sys.executable, "-m", "zeroui_db.secret_store", "rotate", d.site, ROLE],
                          cwd=REPO, env=d.env, text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert ROLE not in d.secrets()["roles"]
    run, sampler = _loud_deploy(d)
    after = d.secrets()
    return run, sampler, before, after


def test_rotation_sets_a_new_password(rotated):
    run, _, before, after = rotated
    assert after["roles"][ROLE]["password"] != before["roles"][ROLE]["password"]
    assert run.changed, "the redeploy after a rotation must change something"


def test_rotated_deploy_leaks_nothing(rotated, leak_site):
    run, sampler, before, after = rotated
    secrets = {**{f"old {k}": v for k, v in store_secrets(before).items()}, **store_secrets(after)}
    sources = {
        "pyinfra stdout": run.stdout, "pyinfra stderr": run.stderr,
        "a process command line": sampler.text, "the server log": _server_log(leak_site),
    }
    assert _leaks(sources, secrets) == []


def test_env_file_holds_the_new_password(rotated, leak_site):
    _, _, before, after = rotated
    site = _site(leak_site)
    lines = Path(envfiles.path(site, PLANE)).read_text().splitlines()
    values = [line.split("=", 1)[1] for line in lines if line.startswith(f"{PLANE.env_var}=")]
    assert values == [envfiles.database_url(site, site.endpoint(PLANE), after["roles"][ROLE]["password"])]
    assert before["roles"][ROLE]["password"] not in "\n".join(lines)


def test_server_accepts_only_the_new_password(rotated, leak_site):
    _, _, before, after = rotated
    _connect(leak_site, after["roles"][ROLE]["password"])
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(leak_site, before["roles"][ROLE]["password"])


def test_other_passwords_unchanged(rotated):
    _, _, before, after = rotated
    for role, entry in before["roles"].items():
        if role != ROLE:
            assert after["roles"][role]["password"] == entry["password"], role
