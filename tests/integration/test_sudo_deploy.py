"""The pilot deployed as most companies allow it: SSH as a non-root operator who uses sudo.

The operator is a user of this machine made for the test (``Lab.add_operator``: NOPASSWD
sudo, removed afterwards); an sshd of its own in the "workstation" namespace lets it in. The
inventory says ``"ssh_user": <operator>, "_sudo": True``. While the deploy and a password
rotation run, a watcher reads every file written in the temporary directories, the
operator's home and the deploy's directories, and every process's command line: no password
or verifier may be readable, at any moment, by anyone but root and the operator. A control
proves the watcher catches what the issue found: pyinfra's own ``files.put`` under sudo
uploading a secret through a file in /tmp that every user can read.
"""

from __future__ import annotations

import os
import pprint
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clusters import drop_cluster
from conftest import CLIENT_HOSTS, WORKSTATION_NS_ADDRESS, client_networks, new_deployment
from deployment import REPO, run_deploy
from hosts import probe, service_host
from matrix import mismatches, run_matrix
from watch import CmdlineSampler, FileWatcher, argv_leaks, file_leaks, store_secrets

from zeroui_db import contract, envfiles, schemas
from zeroui_db.config import ADMIN_LOOPBACK

pytestmark = pytest.mark.integration

WORKSTATION = "workstation"  # the lab host conftest creates at WORKSTATION_NS_ADDRESS
SSH_PORT = 2222  # test_ssh_deploy's root sshd may hold 22 in the same namespace
TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
PLANE = contract.POSTGRES_PLANES[0]  # its app password is rotated
ROLE = PLANE.app_role


@pytest.fixture(scope="module")
def operator(lab) -> pwd.struct_passwd:
    return pwd.getpwnam(lab.add_operator())


@pytest.fixture(scope="module")
def target(lab, operator):
    return lab.start_sshd(WORKSTATION, port=SSH_PORT, user=operator.pw_name)


def _ssh_data(target) -> dict:
    return {"ssh_user": target.user, "ssh_key": target.key_path, "ssh_known_hosts_file": target.known_hosts_path,
            "ssh_port": target.port, "ssh_strict_host_key_checking": "yes", "_sudo": True}


@pytest.fixture(scope="module")
def base():
    """A directory every user may pass through (unlike the session's workdir), so that whether
    another user could read the env files depends on the deploy's own modes alone."""
    path = Path(tempfile.mkdtemp(prefix="zt-sudo-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Watch:
    """A FileWatcher and a CmdlineSampler over one step, judged once the secrets are known."""

    def __init__(self, dirs: list[str]):
        self.files, self.argv = FileWatcher(dirs), CmdlineSampler()

    def __enter__(self) -> Watch:
        self.files.__enter__()
        self.argv.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.argv.__exit__(*exc)
        self.files.__exit__(*exc)

    def leaks(self, secrets: dict[str, str], operator) -> list[str]:
        trusted_uids, trusted_gids = {0, operator.pw_uid}, {0, operator.pw_gid}
        return file_leaks(self.files, secrets, trusted_uids, trusted_gids) + argv_leaks(self.argv, secrets)


def _watched_dirs(d, operator) -> list[str]:
    """Where a deploy could write; those absent yet are watched from their parents once made."""
    conf = f"/etc/postgresql/{d.version}"
    return [*TEMP_DIRS, operator.pw_dir, str(d.workdir), str(d.secrets_dir), str(d.env_dir), conf,
            f"{conf}/{d.cluster}"]


@pytest.fixture(scope="module")
def sudo_site(lab, base, version, operator, target):
    """The pilot deployed over SSH as the operator with sudo, watched; the cluster is dropped afterwards."""
    d = new_deployment(base, version, WORKSTATION_NS_ADDRESS, "sudo")
    d.write_inventory(client_networks([f"{ADMIN_LOOPBACK}/32"]), listen=[ADMIN_LOOPBACK, WORKSTATION_NS_ADDRESS],
                      host=target.host, host_data=_ssh_data(target))
    d.secrets_dir.mkdir(mode=0o700)  # made now, so the watcher sees inside it from the start
    try:
        with Watch(_watched_dirs(d, operator)) as d.first_watch:
            d.first_run = d.deploy(check=False)
        yield d
    finally:
        drop_cluster(d.version, d.cluster)


@pytest.fixture(scope="module")
def deployed(sudo_site):
    run = sudo_site.first_run
    if run.returncode != 0:
        pytest.fail(f"the first deploy as a sudo operator failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return sudo_site


def test_first_deploy_succeeds(sudo_site):
    run = sudo_site.first_run
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.errors == [] and run.results["failed_hosts"] == []
    assert run.changed


def test_the_operator_logged_in_and_used_sudo(deployed, operator):
    seen = deployed.first_watch.argv.seen
    # The SSH session's processes were the operator's, and its commands went through sudo.
    assert any(c.startswith(b"sudo\0-H\0-n\0sh\0-c\0") for c in seen)
    assert any(c.startswith(b"runuser\0-u\0postgres\0--\0psql\0") for c in seen)


def test_first_deploy_leaves_no_secret_readable(deployed, operator):
    watch, secrets = deployed.first_watch, store_secrets(deployed.secrets())
    assert not watch.files.overflowed
    assert watch.argv.rounds > 10
    # The watcher did see the env files being written (else "no leak" would prove nothing).
    password = deployed.password(ROLE)
    assert any(password.encode() in s.content and s.path.startswith(str(deployed.env_dir)) for s in watch.files.seen)
    assert watch.leaks(secrets, operator) == []


def test_nothing_passes_through_a_temporary_directory(deployed, operator):
    """Not even the non-secret configuration files: pyinfra's sudo upload goes through /tmp."""
    mine = [s.path for s in deployed.first_watch.files.seen
            if s.uid == operator.pw_uid and s.path.startswith(tuple(f"{d}/" for d in TEMP_DIRS))]
    assert mine == []


def test_files_have_their_owners_and_modes(deployed):
    conf = Path(f"/etc/postgresql/{deployed.version}/{deployed.cluster}")
    expected = {conf / "postgresql.conf": ("postgres", 0o644), conf / "pg_hba.conf": ("postgres", 0o640),
                conf / "server.key": ("postgres", 0o600), conf / "server.crt": ("postgres", 0o644),
                deployed.env_dir: ("root", 0o750)}
    for plane in contract.POSTGRES_PLANES:
        expected[deployed.env_dir / f"{plane.key}.env"] = ("root", 0o600)
    found = {p: (pwd.getpwuid(p.stat().st_uid).pw_name, stat.S_IMODE(p.stat().st_mode)) for p in expected}
    assert found == expected
    assert [p.name for p in conf.iterdir() if p.name.endswith(".new")] == []


def test_second_deploy_changes_nothing(deployed):
    run = deployed.deploy()
    assert run.errors == [] and run.changed == []


def test_connection_matrix(deployed, lab):
    passwords = {role: entry["password"] for role, entry in deployed.secrets()["roles"].items() if "password" in entry}
    results = run_matrix(lab, WORKSTATION_NS_ADDRESS, deployed.port, passwords, list(CLIENT_HOSTS))
    assert mismatches(results) == []
    assert any(ok for _, ok, _ in results) and not all(ok for _, ok, _ in results)


@pytest.fixture(scope="module")
def rotated(deployed, operator):
    d = deployed
    before = d.secrets()
    with Watch(_watched_dirs(d, operator)) as watch:
        proc = subprocess.run([sys.executable, "-m", "zeroui_db.secret_store", "rotate", d.site, ROLE],
                              cwd=REPO, env=d.env, text=True, capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        run = d.deploy(check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    return run, watch, before, d.secrets()


def test_rotation_leaves_no_secret_readable(rotated, operator):
    run, watch, before, after = rotated
    assert run.changed
    assert after["roles"][ROLE]["password"] != before["roles"][ROLE]["password"]
    secrets = {**{f"old {k}": v for k, v in store_secrets(before).items()}, **store_secrets(after)}
    assert not watch.files.overflowed
    assert any(after["roles"][ROLE]["password"].encode() in s.content for s in watch.files.seen)
    assert watch.leaks(secrets, operator) == []


def test_rotated_password_is_the_one_the_server_and_env_file_hold(rotated, deployed, lab):
    _, _, before, after = rotated
    new, old = after["roles"][ROLE]["password"], before["roles"][ROLE]["password"]
    host = service_host(PLANE)
    assert probe(lab, host, deployed, ROLE, PLANE.store, new) == (True, "")
    ok, error = probe(lab, host, deployed, ROLE, PLANE.store, old)
    assert not ok and "password authentication failed" in error
    assert new in (deployed.env_dir / f"{PLANE.key}.env").read_text()


def test_ide_plane_is_the_operators_own(target, operator, base):
    """A laptop whose data says _sudo: the IDE plane still goes to the operator's own XDG dirs."""
    inventory = base / "laptop.py"
    data = {"zeroui": {"site": "zt-laptop-sudo"}, **_ssh_data(target)}
    inventory.write_text(f"{contract.IDE_LAPTOPS.key} = ([{target.host!r}], {pprint.pformat(data)})\n")
    env = {**os.environ, "ZEROUI_SECRETS_DIR": str(base / "laptop-secrets")}
    assert run_deploy(inventory, env=env).errors == []
    database = Path(operator.pw_dir) / ".local" / "share" / "zeroui" / contract.IDE.store
    env_file = Path(operator.pw_dir) / ".config" / "zeroui" / f"{contract.IDE.key}.env"
    for path in (database, env_file):
        assert (path.stat().st_uid, stat.S_IMODE(path.stat().st_mode)) == (operator.pw_uid, 0o600), path
    assert f"{contract.IDE.env_var}={envfiles.sqlite_url(str(database))}" in env_file.read_text()
    assert len(schemas.migrations(contract.IDE)) > 0
    assert run_deploy(inventory, env=env).changed == []


# The control: the watcher catches the leak the issue found (pyinfra's files.put under sudo).
_CONTROL_DEPLOY = '''
from io import StringIO
from pyinfra import host
from pyinfra.operations import files
files.put(name="a secret through pyinfra's own upload", src=StringIO(host.data.control_secret + "\\n"),
          dest=host.data.control_dest, mode="600")
'''


def test_the_watcher_catches_pyinfras_own_upload_under_sudo(target, operator, base):
    control = base / "control"
    control.mkdir()
    (control / "deploy.py").write_text(_CONTROL_DEPLOY)
    secret, dest = secrets.token_urlsafe(24), base / "control-dest"
    data = {**_ssh_data(target), "control_secret": secret, "control_dest": str(dest)}
    inventory = control / "inventory.py"
    inventory.write_text(f"hosts = ([{target.host!r}], {pprint.pformat(data)})\n")
    with Watch([*TEMP_DIRS]) as watch:
        run = run_deploy(inventory, cwd=control)
    assert run.errors == [] and dest.read_text() == f"{secret}\n"
    leaks = watch.leaks({"the control secret": secret}, operator)
    assert any(leak.startswith("the control secret in /tmp/pyinfra-") and "readable by every user" in leak
               for leak in leaks), leaks
