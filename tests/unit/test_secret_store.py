"""The control machine's secrets store: private, stable, overridable, rotatable."""

import io
import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from pyinfra.api.exceptions import PyinfraError

from zeroui_db import contract, scram
from zeroui_db.secret_store import SecretStore, SecretStoreError, ServerChecked, env_override_name, main

ROLE = contract.TENANT.app_role
OTHER = contract.SHARED.readonly_role


def main_with_dir(directory, argv) -> int:
    """The command line with ZEROUI_SECRETS_DIR set to ``directory``."""
    old = os.environ.get("ZEROUI_SECRETS_DIR")
    os.environ["ZEROUI_SECRETS_DIR"] = str(directory)
    try:
        return main(argv)
    finally:
        if old is None:
            del os.environ["ZEROUI_SECRETS_DIR"]
        else:
            os.environ["ZEROUI_SECRETS_DIR"] = old


def test_generated_once_and_private(tmp_path):
    store = SecretStore("pilot", tmp_path / "secrets")
    store.ensure([ROLE])
    first = store.password(ROLE)
    assert len(first) >= 40
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    again = SecretStore("pilot", tmp_path / "secrets")
    again.ensure([ROLE])
    assert again.password(ROLE) == first


def test_applied_verifier_follows_the_password(tmp_path):
    store = SecretStore("pilot", tmp_path)
    store.ensure([ROLE])
    assert store.applied_verifier(ROLE) is None
    v = store.fresh_verifier(ROLE)
    store.record_applied(ROLE, v)
    assert SecretStore("pilot", tmp_path).applied_verifier(ROLE) == v
    store.rotate(ROLE)
    store.ensure([ROLE])
    assert store.applied_verifier(ROLE) is None  # new password: must be applied again


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(env_override_name(ROLE), "from-vault")
    store = SecretStore("pilot", tmp_path)
    store.ensure([ROLE])
    assert store.password(ROLE) == "from-vault"
    assert "from-vault" not in store.path.read_text()
    assert scram.matches("from-vault", store.fresh_verifier(ROLE))


def test_rotate_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZEROUI_SECRETS_DIR", str(tmp_path))
    store = SecretStore("pilot")
    store.ensure([ROLE])
    old = store.password(ROLE)
    assert main(["rotate", "pilot", ROLE]) == 0
    fresh = SecretStore("pilot")
    fresh.ensure([ROLE])
    assert fresh.password(ROLE) != old
    assert main(["path", "pilot"]) == 0
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "pilot.json"))


# The provider admin's password of a managed endpoint, per plane (README, "Secrets").
TENANT_ADMIN_ENV = "ZEROUI_DB_ADMIN_PASSWORD_TENANT"


@pytest.fixture
def no_admin_env(monkeypatch):
    for plane in ("TENANT", "PRODUCT", "SHARED"):
        monkeypatch.delenv(f"ZEROUI_DB_ADMIN_PASSWORD_{plane}", raising=False)


def test_endpoint_admin_env_name():
    assert SecretStore.endpoint_admin_env("tenant") == TENANT_ADMIN_ENV
    assert SecretStore.endpoint_admin_env("shared") == "ZEROUI_DB_ADMIN_PASSWORD_SHARED"


def test_endpoint_admin_password_is_kept_privately(tmp_path, no_admin_env):
    store = SecretStore("cloud", tmp_path / "secrets")
    store.set_endpoint_admin_password("tenant", "provider-pw")
    assert SecretStore("cloud", tmp_path / "secrets").endpoint_admin_password("tenant") == "provider-pw"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert SecretStore("cloud", tmp_path / "secrets").endpoint_admin_password("product", required=False) is None


def test_endpoint_admin_password_from_env_wins(tmp_path, monkeypatch, no_admin_env):
    store = SecretStore("cloud", tmp_path)
    store.set_endpoint_admin_password("tenant", "stored-pw")
    monkeypatch.setenv(TENANT_ADMIN_ENV, "from-vault")
    assert store.endpoint_admin_password("tenant") == "from-vault"
    assert "from-vault" not in store.path.read_text()
    monkeypatch.setenv("ZEROUI_DB_ADMIN_PASSWORD_PRODUCT", "product-from-vault")  # nothing stored for it
    assert store.endpoint_admin_password("product") == "product-from-vault"


def test_missing_endpoint_admin_password(tmp_path, no_admin_env):
    store = SecretStore("cloud", tmp_path)
    assert store.endpoint_admin_password("tenant", required=False) is None
    with pytest.raises(KeyError) as e:
        store.endpoint_admin_password("tenant")
    assert TENANT_ADMIN_ENV in str(e.value)


def test_set_admin_command_reads_stdin(tmp_path, monkeypatch, capsys, no_admin_env):
    monkeypatch.setenv("ZEROUI_SECRETS_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("pr0vider pw #1\n"))
    assert main(["set-admin", "cloud", "tenant"]) == 0
    assert SecretStore("cloud").endpoint_admin_password("tenant") == "pr0vider pw #1"
    out = capsys.readouterr()
    assert "pr0vider" not in out.out + out.err
    assert stat.S_IMODE(os.stat(tmp_path / "cloud.json").st_mode) == 0o600


def test_set_admin_command_refuses_an_empty_password(tmp_path, monkeypatch, capsys, no_admin_env):
    monkeypatch.setenv("ZEROUI_SECRETS_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["set-admin", "cloud", "tenant"]) == 2
    assert "no password" in capsys.readouterr().err
    assert SecretStore("cloud").endpoint_admin_password("tenant", required=False) is None


def test_set_admin_password_never_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZEROUI_SECRETS_DIR", str(tmp_path))
    assert main(["set-admin", "cloud", "tenant", "pw-in-argv"]) == 2
    assert "usage" in capsys.readouterr().err
    assert not (tmp_path / "cloud.json").exists()


# -- hardening (issue 9) ------------------------------------------------------------------------------


def test_rotate_during_a_deploy_is_not_undone(tmp_path):
    """The deploy read the store, a rotate happens, the deploy records what it applied."""
    deploy = SecretStore("pilot", tmp_path)
    deploy.ensure([ROLE, OTHER])
    old = deploy.password(ROLE)
    applied = deploy.fresh_verifier(ROLE)
    assert main_with_dir(tmp_path, ["rotate", "pilot", ROLE]) == 0
    deploy.record_applied(ROLE, applied)  # the deploy carries on with the password it began with
    deploy.record_applied(OTHER, deploy.fresh_verifier(OTHER))
    assert deploy.password(ROLE) == old
    on_disk = json.loads((tmp_path / "pilot.json").read_text())["roles"]
    assert ROLE not in on_disk or "password" not in on_disk[ROLE]
    assert "applied_verifier" in on_disk[OTHER]
    after = SecretStore("pilot", tmp_path)
    after.ensure([ROLE])
    assert after.password(ROLE) != old and after.applied_verifier(ROLE) is None  # applied on the next deploy


def _set_admin_many(directory: str, plane: str, count: int) -> None:
    store = SecretStore("cloud", Path(directory))
    for i in range(count):
        store.set_endpoint_admin_password(plane, f"{plane}-{i}")


def test_concurrent_changes_are_all_kept(tmp_path, no_admin_env):
    """Writers in other processes each change their own entry: none is lost."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_set_admin_many, args=(str(tmp_path), p, 15)) for p in ("tenant", "product", "shared")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    admins = json.loads((tmp_path / "cloud.json").read_text())["admins"]
    assert admins == {"tenant": "tenant-14", "product": "product-14", "shared": "shared-14"}


def test_writes_are_synced_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_IFMT(os.fstat(fd).st_mode)), real_fsync(fd)))
    SecretStore("pilot", tmp_path).ensure([ROLE])
    assert stat.S_IFREG in synced and stat.S_IFDIR in synced
    assert synced.index(stat.S_IFREG) < synced.index(stat.S_IFDIR)  # the file before its rename is made durable


def test_leftovers_of_a_killed_writer_are_removed(tmp_path):
    SecretStore("pilot", tmp_path).ensure([ROLE])
    stale = tmp_path / ".pilot.json.k1ll3d"
    stale.write_text('{"roles": {"half')
    SecretStore("pilot", tmp_path).rotate(ROLE)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["pilot.json"]


@pytest.mark.parametrize("role", ["zeroui_nobody", contract.TENANT.owner_role, ""])
def test_rotate_refuses_unknown_roles(tmp_path, capsys, role):
    SecretStore("pilot", tmp_path).ensure([ROLE])
    before = (tmp_path / "pilot.json").read_bytes()
    assert main_with_dir(tmp_path, ["rotate", "pilot", role]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown role" in err and ROLE in err
    assert (tmp_path / "pilot.json").read_bytes() == before


def test_set_admin_refuses_unknown_planes(tmp_path, monkeypatch, capsys, no_admin_env):
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert main_with_dir(tmp_path, ["set-admin", "cloud", "ide"]) == 2
    assert "unknown plane" in capsys.readouterr().err
    assert not (tmp_path / "cloud.json").exists()


@pytest.mark.parametrize("site", ["../escape", "/etc/passwd", "a/b", "..", ".hidden", "", "Pilot", "x" * 64])
@pytest.mark.parametrize("verb", [["path"], ["rotate", None, ROLE], ["set-admin", None, "tenant"]])
def test_invalid_site_names_are_refused(tmp_path, monkeypatch, capsys, site, verb):
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    inner = tmp_path / "store"
    argv = [verb[0], site, *verb[2:]]
    assert main_with_dir(inner, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a site name" in err
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing written, in the store or beside it


@pytest.mark.parametrize("mode", [0o1777, 0o755, 0o770])
def test_a_directory_others_can_use_is_refused_and_left_alone(tmp_path, monkeypatch, capsys, mode):
    """ZEROUI_SECRETS_DIR=/tmp, in a copy of /tmp (1777) made here: a failing run of this test
    must not chmod the machine's own /tmp."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, mode)
    with pytest.raises(SecretStoreError) as e:
        SecretStore("pilot", shared).ensure([ROLE])
    assert f"open to other users (mode {mode:04o})" in str(e.value) and "\n" not in str(e.value)
    assert main_with_dir(shared, ["rotate", "pilot", ROLE]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert stat.S_IMODE(os.stat(shared).st_mode) == mode
    assert list(shared.iterdir()) == []


def test_a_directory_of_another_user_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(tmp_path).st_uid + 1)
    with pytest.raises(SecretStoreError) as e:
        SecretStore("pilot", tmp_path).ensure([ROLE])
    assert "belongs to uid" in str(e.value)


def test_an_existing_readable_store_is_tightened(tmp_path):
    SecretStore("pilot", tmp_path).ensure([ROLE])
    os.chmod(tmp_path / "pilot.json", 0o644)
    assert SecretStore("pilot", tmp_path).password(ROLE)
    assert stat.S_IMODE(os.stat(tmp_path / "pilot.json").st_mode) == 0o600


@pytest.mark.parametrize("content", [b'{"roles": {"zeroui_tenant_app": {"passw', b"", b"\xff\xfe", b"[]",
                                     b'{"roles": []}', b'{"roles": {}, "admins": {"tenant": 1}}'])
def test_a_damaged_store_is_one_clear_line(tmp_path, capsys, content):
    (tmp_path / "pilot.json").write_bytes(content)
    with pytest.raises(SecretStoreError) as e:
        SecretStore("pilot", tmp_path).ensure([ROLE])
    message = str(e.value)
    assert "\n" not in message and str(tmp_path / "pilot.json") in message and "damaged" in message
    assert main_with_dir(tmp_path, ["rotate", "pilot", ROLE]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert (tmp_path / "pilot.json").read_bytes() == content  # never overwritten


def test_a_damaged_store_stops_the_deploy_in_one_line(tmp_path):
    """pyinfra shows a PyinfraError as one line without a traceback."""
    assert issubclass(SecretStoreError, PyinfraError)


class FakeServer:
    """pg_authid as the pilot's superuser reads it: role -> scram.digest of its verifier."""

    def __init__(self, **verifiers):
        self.live = {role: (scram.digest(v) if v else None) for role, v in verifiers.items()}


def test_server_checked_passwords_see_a_password_changed_by_hand(tmp_path):
    store = SecretStore("pilot", tmp_path)
    store.ensure([ROLE, OTHER])
    for role in (ROLE, OTHER):
        store.record_applied(role, store.fresh_verifier(role))
    converged = ServerChecked(store, FakeServer(**{ROLE: store.applied_verifier(ROLE),
                                                   OTHER: store.applied_verifier(OTHER)}).live)
    assert converged.applied_verifier(ROLE) == store.applied_verifier(ROLE)
    by_hand = ServerChecked(store, FakeServer(**{ROLE: scram.verifier("changed by hand"),
                                                 OTHER: store.applied_verifier(OTHER)}).live)
    assert by_hand.applied_verifier(ROLE) is None  # the plan sets it again
    assert by_hand.applied_verifier(OTHER) is not None
    cleared = ServerChecked(store, {ROLE: None})  # ALTER ROLE … PASSWORD NULL
    assert cleared.applied_verifier(ROLE) is None
    unknown = ServerChecked(store, {})  # not readable (cluster not up yet): the store's record
    assert unknown.applied_verifier(ROLE) == store.applied_verifier(ROLE)
