"""The control machine's secrets store: private, stable, overridable, rotatable."""

import io
import os
import stat

import pytest

from zeroui_db import contract, scram
from zeroui_db.secret_store import SecretStore, env_override_name, main

ROLE = contract.TENANT.app_role


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
