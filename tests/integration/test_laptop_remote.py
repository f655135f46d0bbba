"""The laptop deploy where a developer would run it: over SSH to the lab's IDE laptop host,
and on @local with the user's own XDG directories (no paths in the inventory)."""

from __future__ import annotations

import os
import pprint
import stat

import pytest

from deployment import run_deploy

from zeroui_db import contract, schemas, sqlite_ledger

pytestmark = pytest.mark.integration


def ledger_of(path) -> dict[str, str]:
    state = sqlite_ledger.state(str(path))
    assert state["journal_mode"] == "wal" and state["mode"] == "0o600"
    return state["ledger"]


def test_laptop_over_ssh(lab, tmp_path):
    """The runner travels on stdin over pyinfra's SSH session and runs with the laptop's python3."""
    target = lab.start_sshd(contract.IDE_LAPTOPS.key)
    data_dir, config_dir = tmp_path / "data", tmp_path / "config"
    site = {"site": "zt-laptop-ssh", "ide": {"data_dir": str(data_dir), "config_dir": str(config_dir)}}
    host_data = {"zeroui": site, "ssh_user": target.user, "ssh_key": target.key_path,
                 "ssh_known_hosts_file": target.known_hosts_path, "ssh_port": target.port,
                 "ssh_strict_host_key_checking": "yes"}
    inventory = tmp_path / "laptop_ssh.py"
    inventory.write_text(f"{contract.IDE_LAPTOPS.key} = ([{target.host!r}], {pprint.pformat(host_data)})\n")
    env = {**os.environ, "ZEROUI_SECRETS_DIR": str(tmp_path / "secrets")}

    first = run_deploy(inventory, env=env)
    assert first.errors == [] and first.changed
    database = data_dir / contract.IDE.store
    assert ledger_of(database) == {m.name: m.checksum for m in schemas.migrations(contract.IDE)}
    env_file = config_dir / f"{contract.IDE.key}.env"
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    assert f"{contract.IDE.env_var}=sqlite:///{database}" in env_file.read_text()
    assert run_deploy(inventory, env=env).changed == []


def test_laptop_defaults_to_the_users_xdg_directories(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    inventory = tmp_path / "laptop.py"
    inventory.write_text(f"{contract.IDE_LAPTOPS.key} = (['@local'], {{'zeroui': {{'site': 'zt-laptop-xdg'}}}})\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), ZEROUI_SECRETS_DIR=str(tmp_path / "secrets"))

    assert run_deploy(inventory, env=env).errors == []
    database = home / ".local" / "share" / "zeroui" / contract.IDE.store
    env_file = home / ".config" / "zeroui" / f"{contract.IDE.key}.env"
    assert ledger_of(database)
    assert env_file.read_text().strip().endswith(f"{contract.IDE.env_var}=sqlite:///{database}")
    assert run_deploy(inventory, env=env).changed == []
