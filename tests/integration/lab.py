"""A lab of client hosts built from network namespaces (root only).

Shape (see /work/shared/notes/field-notes.md): a bridge in the root namespace holds the
first address of the subnet (where a server under test listens); every client host is a
namespace joined to the bridge by a veth pair.

    with Lab(prefix="zt", subnet="198.51.100.0/24") as lab:
        lab.add_host("c1", "198.51.100.11")
        lab.run("c1", ["psql", "-h", lab.bridge_address, ...], env={"PGPASSWORD": pw})
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # absolute path: sshd refuses to re-exec itself otherwise
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Marks the machine-wide users a lab creates (users are not per namespace), so that only
# they are ever removed, also when a crashed run left them behind.
OPERATOR_MARK = "zeroui-test-lab operator"
SUDOERS_DIR = "/etc/sudoers.d"


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    key_path: str
    known_hosts_path: str

    def ssh_argv(self, *command: str) -> list[str]:
        """`ssh` argv that trusts only this target's key and host key (no agent, no prompts)."""
        return ["ssh", "-F", "/dev/null", "-i", self.key_path, "-p", str(self.port),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts_path}",
                f"{self.user}@{self.host}", *command]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], text=True, capture_output=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def _ip_json(*args: str) -> list:
    # `ip -j netns list` prints nothing at all when there are no namespaces.
    out = _ip("-j", *args).stdout.strip()
    return json.loads(out) if out else []


def _kill_netns_pids(netns: str) -> None:
    """SIGTERM every process in the namespace, SIGKILL what is left after a few seconds.

    Servers started over SSH re-parent to PID 1 but stay in the namespace, so this catches them.
    """
    def pids() -> list[int]:
        proc = _ip("netns", "pids", netns, check=False)
        return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []

    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for pid in pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids() and time.monotonic() < deadline:
            time.sleep(0.1)


class _MachineLock:
    """An flock shared by every lab of this machine, re-entrant within one process (labs
    of different prefixes may be open together in one test session)."""

    PATH = "/run/zeroui-test-lab.lock"

    def __init__(self):
        self.depth, self.file = 0, None

    def acquire(self) -> None:
        if self.depth == 0:
            self.file = open(self.PATH, "w")
            fcntl.flock(self.file, fcntl.LOCK_EX)
        self.depth += 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.file.close()  # releases the flock
            self.file = None


_machine_lock = _MachineLock()


class Lab:
    def __init__(self, prefix: str = "zt", subnet: str = "198.51.100.0/24"):
        if not _NAME_RE.match(prefix) or len(prefix) > 10:
            raise ValueError(f"bad lab prefix {prefix!r} (link names must stay <= 15 chars)")
        self.prefix = prefix
        self.subnet = ipaddress.ip_network(subnet)
        self.bridge = f"{prefix}br0"
        self.bridge_address = str(next(self.subnet.hosts()))
        self._hosts: dict[str, str] = {}          # name -> address
        self._sshds: list[subprocess.Popen] = []
        self._operators: list[str] = []
        self._tmp: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Lab":
        # One test process per machine at a time: a second test run (or the benchmark)
        # waits here instead of tearing down the first one's hosts as "stale".
        _machine_lock.acquire()
        self._locked = True
        self._remove_stale()
        self._check_subnet_free()
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.bridge_address}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            self._tmp = tempfile.mkdtemp(prefix=f"{self.prefix}-lab-")
        except BaseException:
            self.cleanup()  # __exit__ is not called when __enter__ raises
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Tear everything down; safe to call repeatedly and after partial setup."""
        for proc in self._sshds:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._sshds.clear()
        for name in list(self._hosts):
            self._delete_netns(self.netns(name))
        for idx in range(len(self._hosts)):
            _ip("link", "del", self._veth(idx, "a"), check=False)  # normally gone with its netns
        self._hosts.clear()
        for user in self._operators:
            _remove_operator(user)
        self._operators.clear()
        _ip("link", "del", self.bridge, check=False)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if getattr(self, "_locked", False):
            self._locked = False
            _machine_lock.release()

    def _delete_netns(self, netns: str) -> None:
        _kill_netns_pids(netns)
        _ip("netns", "del", netns, check=False)

    def _remove_stale(self) -> None:
        """Remove what an earlier, crashed run with this prefix left behind."""
        for ns in _ip_json("netns", "list"):
            if ns["name"].startswith(f"{self.prefix}-"):
                self._delete_netns(ns["name"])
        # Only our own link names: other software also uses names like "zt..." (ZeroTier).
        ours = re.compile(rf"^{re.escape(self.prefix)}(br0|v\d+[ab])$")
        for link in _ip_json("link", "show"):
            if ours.match(link["ifname"]):
                _ip("link", "del", link["ifname"], check=False)
        for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{self.prefix}-lab-*")):
            shutil.rmtree(path, ignore_errors=True)
        for user in _marked_operators(self.prefix):
            _remove_operator(user)

    def _check_subnet_free(self) -> None:
        # Reusing a routed subnet (e.g. eth0's) would hijack real traffic, such as the gateway's.
        for route in _ip_json("-4", "route", "show", "table", "all"):
            dst = route.get("dst", "default")
            if dst == "default":
                continue
            if ipaddress.ip_network(dst, strict=False).overlaps(self.subnet):
                raise RuntimeError(
                    f"lab subnet {self.subnet} is already routed on this machine: "
                    f"route {dst} dev {route.get('dev', '?')} table {route.get('table', 'main')}")
        for link in _ip_json("-4", "addr", "show"):
            for info in link.get("addr_info", []):
                net = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network
                if net.overlaps(self.subnet):
                    raise RuntimeError(
                        f"lab subnet {self.subnet} overlaps address "
                        f"{info['local']}/{info['prefixlen']} on {link['ifname']}")

    # -- hosts -------------------------------------------------------------------------------

    def netns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _veth(self, idx: int, end: str) -> str:
        veth = f"{self.prefix}v{idx}{end}"
        assert len(veth) <= 15, veth  # IFNAMSIZ
        return veth

    def address(self, name: str) -> str:
        return self._hosts[name]

    def add_host(self, name: str, address: str) -> str:
        if not _NAME_RE.match(name) or name in self._hosts:
            raise ValueError(f"bad or duplicate host name {name!r}")
        addr = ipaddress.ip_address(address)
        if addr not in self.subnet or str(addr) == self.bridge_address or address in self._hosts.values():
            raise ValueError(f"address {address} is outside {self.subnet} or already taken")
        netns, idx = self.netns(name), len(self._hosts)
        outer, inner = self._veth(idx, "a"), self._veth(idx, "b")
        # Record first so cleanup() removes a half-built host too.
        self._hosts[name] = str(addr)
        _ip("netns", "add", netns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", netns)
        _ip("link", "set", outer, "master", self.bridge, "up")
        _ip("-n", netns, "addr", "add", f"{addr}/{self.subnet.prefixlen}", "dev", inner)
        _ip("-n", netns, "link", "set", inner, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "route", "add", "default", "via", self.bridge_address)
        return netns

    def run(self, name: str, argv: list[str], env: dict | None = None, input: str | None = None,
            timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        """Run argv inside host `name`. Secrets go in env (added to os.environ) or input, never argv."""
        full_env = {**os.environ, **env} if env else None
        return subprocess.run(["ip", "netns", "exec", self.netns(name), *argv], env=full_env,
                              input=input, text=True, capture_output=True, timeout=timeout, check=check)

    # -- sshd --------------------------------------------------------------------------------

    def add_operator(self) -> str:
        """A non-root user of this machine (unique name, no password, a home of its own)
        who may run anything as root with sudo and no password: the way most companies let
        an operator deploy. Removed with the lab, also after a crash (by its mark)."""
        if not shutil.which("sudo"):
            raise RuntimeError("sudo missing: apt-get install sudo (./bundle test installs it)")
        user = f"{self.prefix}op{secrets.token_hex(4)}"
        self._operators.append(user)  # first, so cleanup removes a half-made one
        # "*", not useradd's locked "!": sshd without PAM refuses locked accounts.
        subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", "--password", "*",
                        "--comment", OPERATOR_MARK, user], check=True, capture_output=True)
        rule = Path(SUDOERS_DIR) / _sudoers_name(user)
        # sudo reads a drop-in only when it is 0440 and parses; visudo checks it before it counts.
        tmp = rule.with_name(f".{rule.name}.new")  # names with a dot are ignored by sudo
        tmp.write_text(f"{user} ALL=(root) NOPASSWD: ALL\n")
        os.chmod(tmp, 0o440)
        subprocess.run(["visudo", "-c", "-q", "-f", str(tmp)], check=True, capture_output=True)
        os.replace(tmp, rule)
        return user

    def start_sshd(self, name: str, port: int = 22, user: str = "root") -> SshTarget:
        """Start an sshd inside host `name` that lets `user` in with a key of its own;
        sessions over it run in that namespace's network."""
        if not os.path.exists(SSHD):
            raise RuntimeError(f"{SSHD} missing: apt-get install openssh-server")
        address = self.address(name)
        tmp = Path(tempfile.mkdtemp(prefix=f"sshd-{name}-", dir=self._tmp))
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab-{key}",
                            "-f", str(tmp / key)], check=True, capture_output=True)
        shutil.copyfile(tmp / "client_key.pub", tmp / "authorized_keys")
        # sshd reads a user's authorized keys as that user: an operator's are in its own home.
        user_keys = ""
        if user != "root":
            home = Path(pwd.getpwnam(user).pw_dir)
            (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(tmp / "client_key.pub", home / ".ssh" / "authorized_keys")
            subprocess.run(["chown", "-R", f"{user}:", str(home / ".ssh")], check=True)
            user_keys = " .ssh/authorized_keys"
        config = tmp / "sshd_config"
        config.write_text(f"""\
ListenAddress {address}
Port {port}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile {tmp}/authorized_keys{user_keys}
PidFile {tmp}/sshd.pid
HostKey {tmp}/host_key
# pyinfra uploads files over SFTP
Subsystem sftp internal-sftp
""")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation dir
        log = open(tmp / "sshd.log", "wb")
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns(name), SSHD, "-D", "-e", "-f", str(config)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._sshds.append(proc)
        self._wait_for_ssh(proc, address, port, tmp / "sshd.log")

        # Pin the host key so clients use strict checking (ssh writes [host]:port for port != 22).
        key_type, key_b64 = (tmp / "host_key.pub").read_text().split()[:2]
        host = address if port == 22 else f"[{address}]:{port}"
        (tmp / "known_hosts").write_text(f"{host} {key_type} {key_b64}\n")
        return SshTarget(host=address, port=port, user=user, key_path=str(tmp / "client_key"),
                         known_hosts_path=str(tmp / "known_hosts"))

    @staticmethod
    def _wait_for_ssh(proc: subprocess.Popen, address: str, port: int, log: Path, wait: float = 10) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text(errors='replace')}")
            try:
                # From the root namespace, through the bridge: proves the route as well as the daemon.
                with socket.create_connection((address, port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"sshd on {address}:{port} not ready after {wait}s: {log.read_text(errors='replace')}")


def _sudoers_name(user: str) -> str:
    return f"zeroui-test-{user}"


def _marked_operators(prefix: str) -> list[str]:
    return [p.pw_name for p in pwd.getpwall()
            if p.pw_gecos == OPERATOR_MARK and p.pw_name.startswith(f"{prefix}op")]


def _remove_operator(user: str) -> None:
    """Remove an operator this lab made: its sudo rule, its processes, the user and its home."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        entry = None
    if entry is not None and entry.pw_gecos != OPERATOR_MARK:
        raise RuntimeError(f"refusing to remove user {user}: not made by a lab")
    with contextlib.suppress(FileNotFoundError):
        os.remove(Path(SUDOERS_DIR) / _sudoers_name(user))
    with contextlib.suppress(FileNotFoundError):
        os.remove(Path(SUDOERS_DIR) / f".{_sudoers_name(user)}.new")
    if entry is not None:
        for pid in _pids_of(entry.pw_uid):  # sessions left over; normally gone with their sshd
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["userdel", "--force", "--remove", user], capture_output=True)


def _pids_of(uid: int) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}").st_uid == uid:
                pids.append(int(pid))
    return pids
