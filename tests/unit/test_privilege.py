"""Privileged commands on every way to root an inventory can give: root itself, sudo, su, doas.

A process's command line is readable by every local user (``/proc/<pid>/cmdline``), so a
secret must travel on stdin. The commands are wrapped here by pyinfra's own
``make_unix_command``, which its connectors apply before running them.
"""

from __future__ import annotations

import grp
import io
import os
import pwd
import runpy
import stat
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State, StringCommand
from pyinfra.api.arguments import pop_global_arguments
from pyinfra.connectors.util import make_unix_command, write_stdin

from conftest import BASE
from zeroui_db import privilege
from zeroui_db.config import ConfigError, parse_site
from zeroui_db.facts import FilesState
from zeroui_db.operations import private_file
from zeroui_db.operations.roles import superuser_psql
from zeroui_db.site import check_privilege

SECRET = "pw-7Qz-not-for-argv"
# The host data of each way to root, as an inventory gives it.
PATHS = {
    "root": {},
    "sudo": {"_sudo": True},
    "su": {"_su_user": "root"},
    "doas": {"_doas": True},
}


def _commands() -> dict[str, StringCommand]:
    return {
        "env file": private_file.put("/etc/zeroui/env/tenant.env", f"URL=postgresql://a:{SECRET}@h/d\n".encode(),
                                     "root", "root", "600"),
        "role SQL": superuser_psql(5432, f"ALTER ROLE a PASSWORD '{SECRET}';"),
    }


def _wrapped(command: StringCommand, path_args: dict) -> str:
    # What the connector runs: the operation's arguments are the host's, plus the command's own.
    arguments = {k: v for k, v in {**path_args, **command.connector_arguments}.items() if k != "_stdin"}
    return make_unix_command(command, **arguments).get_raw_value()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("what", ["env file", "role SQL"])
def test_secrets_travel_on_stdin_not_argv(path, what):
    command = _commands()[what]
    assert SECRET not in _wrapped(command, PATHS[path])
    assert SECRET in command.connector_arguments["_stdin"]


@pytest.mark.parametrize("path", PATHS)
def test_the_server_user_is_reached_from_root_on_every_path(path):
    line = _wrapped(superuser_psql(5432, "SELECT 1;"), PATHS[path])
    escalation = {"root": "sh -c", "sudo": "sudo -H -n sh -c", "su": "su root -c", "doas": "doas -n sh -c"}[path]
    assert line.startswith(escalation)
    # runuser inside the escalation: it only works as root, and needs no password there.
    assert line.index("runuser -u postgres -- env PGOPTIONS=-csearch_path=pg_catalog,pg_temp psql") > len(escalation)


def test_pyinfra_puts_a_sudo_or_su_password_on_the_command_line():
    """Why check_privilege refuses them (pyinfra 3.10's connectors/util.py)."""
    sudo = make_unix_command(StringCommand("true"), _sudo=True, _sudo_password=SECRET, _sudo_askpass_path="/tmp/a")
    su = make_unix_command(StringCommand("true"), _su_user="root", _su_password=SECRET, _su_askpass_path="/tmp/a")
    assert SECRET in sudo.get_raw_value()
    assert SECRET in su.get_raw_value()


def _inventory(host_data: dict, config: Config | None = None) -> Inventory:
    inventory = Inventory((["@local"], {}), workstation=(["@local"], {"zeroui": BASE, **host_data}))
    state = State(inventory, config or Config())
    for host in inventory:
        state.activate_host(host)
    return inventory


@pytest.mark.parametrize("key", ["_sudo_password", "_su_password"])
def test_a_sudo_or_su_password_is_refused(key):
    with pytest.raises(ConfigError) as e:
        check_privilege("pilot", _inventory({"_sudo": True, key: "x"}))
    assert str(e.value) == (
        f"inventory pilot: {key}: pyinfra would pass it on @local's command line, readable by every local user; "
        'give the deploying user a sudo rule with NOPASSWD instead (README: "A remote workstation (SSH)")')


def test_a_sudo_password_from_the_command_line_is_refused():
    with pytest.raises(ConfigError, match="_sudo_password"):
        check_privilege("pilot", _inventory({"_sudo": True}, Config(SUDO_PASSWORD="x")))


def test_sudo_without_a_password_passes():
    check_privilege("pilot", _inventory({"_sudo": True, "ssh_user": "ops"}))


def test_the_sudo_example_inventory_is_valid():
    groups = runpy.run_path(str(Path(__file__).resolve().parents[2] / "inventories" / "pilot-sudo.py"))
    hosts, data = groups["workstation"]
    assert data["_sudo"] is True and data["ssh_user"] != "root"
    parse_site(data["zeroui"])
    inventory = Inventory((hosts, {}), workstation=(hosts, data))
    State(inventory, Config())
    for host in inventory.get_group("workstation"):
        inventory.state.activate_host(host)
    check_privilege("pilot", inventory)


def test_run_adds_the_hosts_escalation(monkeypatch):
    """A callback's command gets the host's _sudo, as the commands pyinfra runs itself do."""
    host = next(iter(_inventory({"_sudo": True})))
    seen = {}
    monkeypatch.setattr(host, "run_shell_command", lambda command, **kwargs: seen.update(kwargs) or (True, None))
    privilege.run(host, StringCommand("true", _stdin="x"))
    assert seen["_sudo"] is True and seen["_stdin"] == "x"


def test_the_ide_plane_stays_with_the_connecting_user():
    host = next(iter(_inventory({"_sudo": True, "_su_user": "root"})))
    arguments, _ = pop_global_arguments(host.state, host, dict(privilege.AS_CONNECTING_USER))
    assert _wrapped(StringCommand("true"), {k: arguments[k] for k in PATHS["sudo"] | PATHS["su"]}) == "sh -c true"


# The put command itself, run with sh as pyinfra's connectors run it (stdin written the same way).

class _Sent(io.BytesIO):
    """Keeps what pyinfra's write_stdin wrote (it closes the buffer when done)."""

    def close(self):
        self.sent = self.getvalue()
        super().close()


def _put(path, content: bytes, owner: str, group: str, mode: str = "640") -> subprocess.CompletedProcess:
    command = private_file.put(str(path), content, owner, group, mode)
    stdin = _Sent()
    write_stdin(command.connector_arguments["_stdin"], stdin)
    # communicate(): a command that fails before reading its stdin must not break the pipe here.
    return subprocess.run(["sh", "-c", command.get_raw_value()], input=stdin.sent, capture_output=True, timeout=10)


def _me() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def test_put_writes_content_owner_and_mode(tmp_path):
    target = tmp_path / "f.conf"
    target.write_text("old\n")
    user, group = _me()
    assert _put(target, b"new\ncontent\n", user, group).returncode == 0
    assert target.read_bytes() == b"new\ncontent\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.conf"]


def test_put_leaves_nothing_behind_when_a_step_fails(tmp_path):
    target = tmp_path / "f.conf"
    target.write_text("old\n")
    _, group = _me()
    assert _put(target, b"new\n", "zt-no-such-user", group).returncode != 0
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.conf"]


def test_put_never_writes_through_a_link_found_at_its_temporary_name(tmp_path):
    target, victim = tmp_path / "f.conf", tmp_path / "victim"
    victim.write_text("untouched\n")
    (tmp_path / "f.conf.new").symlink_to(victim)
    user, group = _me()
    assert _put(target, b"new\n", user, group).returncode == 0
    assert victim.read_text() == "untouched\n"
    assert target.read_text() == "new\n" and not target.is_symlink()


def test_unchanged_content_is_detected_as_sent(tmp_path):
    """pyinfra ends stdin with a newline: a file put without one must still compare equal."""
    target = tmp_path / "f"
    user, group = _me()
    assert _put(target, b"no newline", user, group, "600").returncode == 0
    command = FilesState().command(paths=(str(target),)).get_raw_value()
    have = FilesState().process(subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.splitlines())
    assert not private_file.differs(have[str(target)], b"no newline", user, group, "600")
    assert private_file.differs(have[str(target)], b"other", user, group, "600")
    assert private_file.differs(have[str(target)], b"no newline", user, group, "640")
