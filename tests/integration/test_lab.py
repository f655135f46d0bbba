"""Quick checks that the namespace lab works on this machine (root only)."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from lab import Lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

# A prefix and subnet of their own, so these checks never disturb the session lab of the
# deploy tests (prefix "zt", 198.51.100.0/25) whatever order pytest runs modules in. Only
# 198.51.100.0/24 is free here: 192.0.2.0/24 is eth0's and the package registries answer in
# 203.0.113.0/24.
PREFIX, SUBNET = "zl", "198.51.100.128/25"
A, B = "198.51.100.139", "198.51.100.140"


def _netns_names() -> list[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], text=True, capture_output=True, check=True).stdout
    return [ns["name"] for ns in json.loads(out)] if out.strip() else []


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _tcp_probe(lab: Lab, host: str, address: str, port: int) -> subprocess.CompletedProcess:
    # Python from inside the namespace: no extra client tools needed.
    code = ("import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()")
    return lab.run(host, [sys.executable, "-c", code, address, str(port)], timeout=10)


@pytest.fixture
def lab():
    with Lab(prefix=PREFIX, subnet=SUBNET) as lab:
        lab.add_host("a", A)
        lab.add_host("b", B)
        yield lab


def test_hosts_reach_bridge_and_each_other(lab):
    assert lab.bridge_address == "198.51.100.129"
    assert lab.address("b") == B
    for host, peer in (("a", B), ("b", A)):
        for target in (lab.bridge_address, peer):
            if not shutil.which("ping"):  # iputils-ping is not in the image; TCP below still proves it
                break
            ping = lab.run(host, ["ping", "-c", "1", "-W", "2", target], timeout=10)
            assert ping.returncode == 0, (host, target, ping.stdout, ping.stderr)

    # TCP: a listener in "b" accepts a connection from "a"; the root namespace listens on the bridge address.
    listener = subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}-b", sys.executable, "-c",
         "import socket; s=socket.create_server(('0.0.0.0', 15432)); print('ready', flush=True); s.accept()"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        probe = _tcp_probe(lab, "a", B, 15432)
        assert probe.returncode == 0, probe.stderr
    finally:
        listener.kill()
        listener.wait()
    with socket.create_server((lab.bridge_address, 0)) as server:
        probe = _tcp_probe(lab, "a", lab.bridge_address, server.getsockname()[1])
        assert probe.returncode == 0, probe.stderr


def test_run_passes_env_and_input_not_argv(lab):
    res = lab.run("a", ["sh", "-c", 'printf "%s|" "$ZT_SECRET"; cat'], env={"ZT_SECRET": "s3cr3t"}, input="in")
    assert res.stdout == "s3cr3t|in"


def test_cleanup_leaves_nothing_even_after_error():
    with pytest.raises(ZeroDivisionError):
        with Lab(prefix=PREFIX, subnet=SUBNET) as lab:
            lab.add_host("a", A)
            # A stray process inside the namespace must not keep it alive.
            lab.run("a", ["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
            1 / 0
    assert not [ns for ns in _netns_names() if ns.startswith(f"{PREFIX}-")]
    assert not _link_exists(f"{PREFIX}br0")
    assert not _link_exists(f"{PREFIX}v0a")
    lab.cleanup()  # idempotent


def test_stale_leftovers_are_removed():
    # Simulate a crashed run: enter without exit, then start a new lab with the same prefix.
    crashed = Lab(prefix=PREFIX, subnet=SUBNET).__enter__()
    crashed.add_host("a", A)
    with Lab(prefix=PREFIX, subnet=SUBNET) as lab:
        assert lab.add_host("a", A) == f"{PREFIX}-a"
    assert not [ns for ns in _netns_names() if ns.startswith(f"{PREFIX}-")]
    crashed.cleanup()  # must not raise although everything is gone


def test_routed_subnet_is_refused():
    # A veth link (the kernel here has no dummy links) routes a slice of the test range for
    # the moment of the check.
    link, net = f"{PREFIX}route0", "198.51.100.224/27"
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", f"{PREFIX}route1"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "198.51.100.225/27", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        with pytest.raises(RuntimeError, match="already routed") as err:
            Lab(prefix=PREFIX, subnet=net).__enter__()
        assert net in str(err.value)
        assert not _link_exists(f"{PREFIX}br0")
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True)


@pytest.fixture(scope="module")
def openssh_server():
    # ./bundle test installs it (with policy-rc.d keeping the packaged sshd from starting).
    assert os.path.exists("/usr/sbin/sshd") and shutil.which("ssh"), "openssh-server missing: run ./bundle test"


def test_sshd_in_namespace(lab, openssh_server):
    target = lab.start_sshd("a")
    assert (target.host, target.port, target.user) == (A, 22, "root")
    res = subprocess.run(["ssh", "-i", target.key_path, "-o", f"UserKnownHostsFile={target.known_hosts_path}",
                          "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{A}", "true"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    # Commands over the session run inside the namespace's network.
    res = subprocess.run(target.ssh_argv("ip", "-4", "-o", "addr", "show"), capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    assert A in res.stdout and "192.0.2.2" not in res.stdout
