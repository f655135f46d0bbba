"""The control machine's secrets store: private, stable, overridable, rotatable."""

import os
import stat

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
