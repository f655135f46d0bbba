"""Dangerous input, through the real CLI: refused with one line and a non-zero exit before
any host changes (the deployed @local site's footprint, the env directory, /tmp and /etc
stay as they were). The cases are the ones measured on the issue, then a few drawn by
hypothesis. Each refused run costs about a second: validation stops it before any
operation runs, and host checks need only their facts.
"""

from __future__ import annotations

import copy
import os
import pprint
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployment import run_deploy
from test_local_deploy import footprint, inventory_globals

from zeroui_db import contract
from zeroui_db.site import SERVER_GROUP

pytestmark = pytest.mark.integration

ENV_OP = f"Env files: {', '.join(g.plane.env_var for g in contract.SERVICE_GROUPS)}"
SHARED_DIRS = ("/tmp", "/etc", "/")  # what the issue saw chowned and chmodded


def write_inventory(site, directory: Path, mutate=None, extra_groups: dict | None = None) -> Path:
    """``site``'s inventory with ``mutate`` applied to its ``zeroui`` dict, plus extra groups."""
    groups = copy.deepcopy(inventory_globals(site))
    if mutate:
        mutate(groups[SERVER_GROUP][1]["zeroui"])
    groups.update(extra_groups or {})
    path = directory / site.inventory.name  # same file name: pyinfra's group of the file stays the site's
    path.write_text("".join(f"{name} = {pprint.pformat(value)}\n" for name, value in groups.items()))
    return path


def modes(paths) -> dict:
    return {p: (st.st_mode, st.st_uid, st.st_gid) for p in paths for st in [os.stat(p)]}


def assert_refused(site, inventory: Path, message: str, *args: str, watch: tuple[str, ...] = ()) -> str:
    """Run the deploy; it must exit non-zero with ``message`` on exactly one line, changing nothing."""
    before, dirs = footprint(site), modes((*SHARED_DIRS, *watch))
    run = run_deploy(inventory, *args, env=site.env, check=False, json_output=False)
    assert run.returncode != 0, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if f"inventory {site.site}: " in line]
    assert len(lines) == 1 and message in lines[0], run.stderr[-3000:]
    assert "; " in lines[0].split(f"inventory {site.site}: ", 1)[1]  # "<problem>; <fix>"
    assert footprint(site) == before
    assert modes((*SHARED_DIRS, *watch)) == dirs
    return lines[0]


def _set(path: str, value):
    """A mutation setting the dotted ``path`` of the zeroui dict (list items as ``key.0``)."""
    def mutate(data):
        *parents, last = path.split(".")
        target = data
        for p in parents:
            target = target[int(p)] if p.isdigit() else target.setdefault(p, {})
        target[int(last) if last.isdigit() else last] = value
    return mutate


def _own_certificate(cert: str, key: str, ca: str):
    def mutate(data):
        data["cluster"].update(ssl_cert_file=cert, ssl_key_file=key, ssl_ca_file=ca)
    return mutate


TENANT_NETS = f"clients.{contract.TENANT_SERVICES.key}.networks"

CONFIG_CASES = [
    *(pytest.param(_set("env_files.dir", d), f"env_files.dir: {d} is a system or shared directory", id=f"env-dir-{d}")
      for d in SHARED_DIRS),
    pytest.param(_set("env_files.dir", "/etc/zeroui/../ssl"), "env_files.dir: '/etc/zeroui/../ssl' has '.', '..'",
                 id="env-dir-dotdot"),
    pytest.param(_own_certificate("/etc/zeroui/x.crt'\nlisten_addresses = '*", "/etc/zeroui/x.key", "/etc/hostname"),
                 "cluster.ssl_cert_file: ", id="cert-path-adds-a-setting"),
    pytest.param(_set("cluster.connect_host", "198.51.100.1\nZEROUI_SHARED_DB_URL=postgresql://evil"),
                 "cluster.connect_host: ", id="connect-host-adds-a-variable"),
    pytest.param(lambda d: d["env_files"].update(mode="0640", group="root;touch /tmp/zt-pwned"),
                 "env_files.group: 'root;touch /tmp/zt-pwned' is not a valid group name", id="group-reaches-a-shell"),
    pytest.param(_set(f"{TENANT_NETS}.0", "0.0.0.0/0"), f"{TENANT_NETS}[0]: 0.0.0.0/0 admits every address",
                 id="network-v4-everyone"),
    pytest.param(_set(f"{TENANT_NETS}.0", "::/0"), f"{TENANT_NETS}[0]: ::/0 admits every address",
                 id="network-v6-everyone"),
    pytest.param(lambda d: d["cluster"]["listen_addresses"].append("0.0.0.0"), "0.0.0.0 is a wildcard",
                 id="listen-wildcard"),
    pytest.param(_set(f"{TENANT_NETS}.0", 3325256704), f"{TENANT_NETS}[0]: expected a string, got 3325256704",
                 id="network-as-a-number"),
]


@pytest.mark.parametrize("mutate, message", CONFIG_CASES)
def test_dangerous_inventory_value_refused(local_site, tmp_path, mutate, message):
    assert_refused(local_site, write_inventory(local_site, tmp_path, mutate), message)
    assert not os.path.exists("/tmp/zt-pwned")


def test_group_nobody_deploys_to_refused(local_site, tmp_path):
    """A typo ("tenant_service") would leave its hosts without env files, silently."""
    inventory = write_inventory(local_site, tmp_path, extra_groups={"tenant_service": ["@local"]})
    assert_refused(local_site, inventory, "tenant_service: is no group the deploy knows")


@pytest.mark.parametrize("dry", [False, True], ids=["deploy", "dry"])
def test_missing_certificate_files_refused_before_anything_changes(local_site, tmp_path, dry):
    mutate = _own_certificate(str(tmp_path / "db.crt"), str(tmp_path / "db.key"), local_site.ca_file)
    inventory = write_inventory(local_site, tmp_path, mutate)
    assert_refused(local_site, inventory, f"cluster.ssl_cert_file: {tmp_path / 'db.crt'} is no file on @local",
                   *(["--dry"] if dry else []))


def test_someone_elses_open_directory_refused_and_left_alone(local_site, tmp_path):
    """An existing 0755 directory the bundle did not make: refused, and its mode stays."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chmod(theirs, 0o755)
    inventory = write_inventory(local_site, tmp_path, _set("env_files.dir", str(theirs)))
    assert_refused(local_site, inventory, f"env_files.dir: {theirs} lets other users in (mode 0755) (on @local)",
                   watch=(str(theirs),))
    assert not list(theirs.iterdir())


def test_reading_group_unknown_to_the_host_refused(local_site, tmp_path):
    mutate = lambda d: d["env_files"].update(mode="0640", group="ztnosuchgroup")  # noqa: E731
    assert_refused(local_site, write_inventory(local_site, tmp_path, mutate),
                   "env_files.group: group ztnosuchgroup does not exist on @local")


def test_own_directory_is_repaired_and_someone_elses_never_changed(local_site, tmp_path):
    """The env directory the deploy made (marker inside) gets 0750 back after drift; a closed
    directory of someone else's receives the files and keeps its own mode, no marker added."""
    os.chmod(local_site.env_dir, 0o755)
    try:
        assert local_site.deploy().changed == [ENV_OP]
        assert stat.S_IMODE(os.stat(local_site.env_dir).st_mode) == 0o750
    finally:
        os.chmod(local_site.env_dir, 0o750)  # for the other tests, whatever happened

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chmod(theirs, 0o710)
    run = run_deploy(write_inventory(local_site, tmp_path, _set("env_files.dir", str(theirs))), env=local_site.env)
    assert run.changed == [ENV_OP]
    assert stat.S_IMODE(os.stat(theirs).st_mode) == 0o710
    assert sorted(p.name for p in theirs.iterdir()) == sorted(
        n for g in contract.SERVICE_GROUPS for n in (f"{g.plane.key}.env", f"{g.plane.key}-ca.crt"))


# A few more, drawn: a quote, whitespace or a control or shell character anywhere in a value.
KEYS = ["cluster.name", "cluster.connect_host", "env_files.dir", f"{TENANT_NETS}.0", "cluster.listen_addresses.0",
        "site"]
DANGEROUS = ["'", '"', "\n", " ", "$(id)", ";", "`", "\\", "#", "|", "\t"]


@settings(max_examples=5, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), bad=st.sampled_from(DANGEROUS), at=st.integers(0, 40))
def test_drawn_broken_inventories_refused(local_site, key, bad, at):
    original = inventory_globals(local_site)[SERVER_GROUP][1]["zeroui"]
    value = original
    for p in key.split("."):
        value = value[int(p)] if p.isdigit() else value[p]
    value = value[:at] + bad + value[at:]
    with tempfile.TemporaryDirectory(prefix="zt-refusal-") as directory:
        inventory = write_inventory(local_site, Path(directory), _set(key, value))
        if key == "site":  # an invalid site name cannot name the inventory in the message
            before = footprint(local_site)
            run = run_deploy(inventory, env=local_site.env, check=False, json_output=False)
            assert run.returncode != 0 and "inventory ?: site: " in run.stderr
            assert footprint(local_site) == before
            return
        name = key.rsplit(".", 1)[0] + f"[{key.rsplit('.', 1)[1]}]" if key[-1].isdigit() else key
        assert_refused(local_site, inventory, f"{name}: ")
