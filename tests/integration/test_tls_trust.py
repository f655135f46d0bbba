"""Clients of the pilot authenticate the server, so an impostor on its address learns no password.

The impostor (impostor.py) runs in a namespace of its own that holds only ``lo``, with the
addresses the real clients use (the env files' host, and 127.0.0.1 where the deploy's admin
connection goes) on it, and a self-signed certificate with the real server's names: only
the CA differs. A client that checks the server (``sslmode=verify-full`` against the site's
CA, ``channel_binding=require``) must refuse it before sending a password; a control client
with ``sslmode=require`` shows that the impostor does catch passwords otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest

import impostor
from hosts import service_host, sql_from_host, superuser_rows

from zeroui_db import contract

pytestmark = pytest.mark.integration

SERVICE_PLANES = [g.plane for g in contract.SERVICE_GROUPS]
TLS_VERSIONS = {"TLSv1.2", "TLSv1.3"}
LOOPBACK = "127.0.0.1"

# Runs inside the impostor's namespace: one connection attempt with the URL read from stdin
# (it holds the password), reporting whether it connected.
_CONNECT = r"""
import json, sys, psycopg
try:
    psycopg.connect(json.load(sys.stdin)["url"], connect_timeout=5).close()
    print(json.dumps({"ok": True, "error": ""}))
except psycopg.Error as e:
    print(json.dumps({"ok": False, "error": str(e).strip()}))
"""


def env_url(site, plane: contract.Plane) -> str:
    """The plane's URL exactly as its env file holds it."""
    path = site.env_dir / f"{plane.key}.env"
    settings = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(settings) == 1, path
    name, _, url = settings[0].partition("=")
    assert name == plane.env_var, path
    return url


def server_certificate(site) -> Path:
    [[cert, data_dir]] = superuser_rows(site.port, contract.MAINTENANCE_DB,
                                        "SELECT current_setting('ssl_cert_file'), current_setting('data_directory')")
    return Path(data_dir, cert)  # a relative ssl_cert_file is relative to the data directory


def passwords(events: list[dict]) -> list[str]:
    """Who handed the impostor a password (the user names; the digests stay out of messages)."""
    return [f"{e['user']} (tls={e['tls']})" for e in events if e["event"] == "password"]


def seen(events: list[dict]) -> list[str]:
    """What the impostor saw, for failure messages: event kinds and users, never digests."""
    return [" ".join(f"{k}={v}" for k, v in e.items() if k != "sha256") for e in events]


def reached(events: list[dict], address: str) -> bool:
    return any(e["event"] == "accepted" and e["local"].rsplit(":", 1)[0] == address for e in events)


@pytest.fixture(scope="module")
def client_home():
    """An empty HOME: no ~/.postgresql/root.crt may quietly turn sslmode=require into a CA check."""
    with tempfile.TemporaryDirectory(prefix="zt-client-home-") as home:
        yield home


@pytest.fixture(scope="module")
def fake_server(lab, local_site):
    """The impostor on the env files' endpoint and on loopback, at the cluster's port."""
    urls = [urlsplit(env_url(local_site, p)) for p in SERVICE_PLANES]
    endpoints = {(u.hostname, u.port) for u in urls}
    assert len(endpoints) == 1, endpoints
    [(host, port)] = endpoints
    names = impostor.certificate_names(server_certificate(local_site))
    # The namespace carries the lab's prefix: a crashed run's leftover goes with the lab's stale ones.
    with impostor.in_netns(lab.netns("impostor"), sorted({host, LOOPBACK}), port, names) as fake:
        yield fake


def connect_in(fake, url: str, home: str) -> dict:
    """One connection attempt from inside the impostor's namespace, with a clean libpq environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home}  # no PG* variables
    proc = subprocess.run([*fake.exec_prefix, sys.executable, "-c", _CONNECT], input=json.dumps({"url": url}),
                          env=env, text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


# -- 1. services: their env file's URL, exactly as written ------------------------------------


@pytest.mark.parametrize("plane", SERVICE_PLANES, ids=lambda p: p.key)
def test_env_url_gives_impostor_no_password(local_site, fake_server, client_home, plane):
    """A service using its env file's URL, facing an impostor on the endpoint, fails and sends no password."""
    url = env_url(local_site, plane)
    mark = fake_server.mark()
    result = connect_in(fake_server, url, client_home)
    events = fake_server.settle()[mark:]
    assert reached(events, urlsplit(url).hostname), f"the client never reached the impostor: {result}"
    assert not result["ok"]
    assert passwords(events) == [], seen(events)


@pytest.mark.parametrize("plane", SERVICE_PLANES, ids=lambda p: p.key)
def test_control_impostor_catches_password_under_sslmode_require(local_site, fake_server, client_home, plane):
    """Control: the same URL with only ``sslmode=require`` hands the impostor the app role's password,
    so "no password received" above is a real result, not a broken impostor."""
    parts = urlsplit(env_url(local_site, plane))
    mark = fake_server.mark()
    result = connect_in(fake_server, urlunsplit(parts._replace(query="sslmode=require")), client_home)
    events = fake_server.settle()[mark:]
    assert not result["ok"]
    caught = [e for e in events if e["event"] == "password" and e["user"] == plane.app_role and e["tls"]]
    assert caught and caught[-1]["sha256"] == impostor.password_digest(local_site.password(plane.app_role))


# -- 2. the deploy's own admin connection ------------------------------------------------------


def test_deploy_gives_impostor_no_admin_password(local_site, fake_server):
    """The deploy, run where 127.0.0.1:<port> is the impostor, fails and sends it no admin password;
    a normal redeploy afterwards still works (the other tests' fixture stays usable)."""
    mark = fake_server.mark()
    try:
        run = local_site.deploy(check=False, argv_prefix=fake_server.exec_prefix)
        events = fake_server.settle()[mark:]
    finally:
        redeploy = local_site.deploy(check=False)
    assert reached(events, LOOPBACK), f"the deploy never reached the impostor:\n{run.stderr[-3000:]}"
    assert run.returncode != 0
    assert passwords(events) == [], seen(events)
    assert redeploy.returncode == 0, redeploy.stderr[-4000:]


# -- 3. what the env files say, and that it works for real ----------------------------------


def is_ca_certificate(path: str) -> bool:
    proc = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-ext", "basicConstraints"],
                          text=True, capture_output=True)
    assert proc.returncode == 0, f"{path} is not a readable X.509 certificate: {proc.stderr.strip()}"
    return "CA:TRUE" in proc.stdout


@pytest.mark.parametrize("plane", SERVICE_PLANES, ids=lambda p: p.key)
def test_env_url_demands_a_verified_server(local_site, plane):
    """verify-full against a CA certificate that exists, and SCRAM bound to the TLS channel."""
    query = parse_qs(urlsplit(env_url(local_site, plane)).query)
    assert query.get("sslmode") == ["verify-full"]
    assert query.get("channel_binding") == ["require"]
    [root] = query.get("sslrootcert", [None])
    assert root and Path(root).is_file(), root
    assert is_ca_certificate(root), f"{root} is not a CA certificate (basicConstraints CA:TRUE)"


@pytest.mark.parametrize("plane", SERVICE_PLANES, ids=lambda p: p.key)
def test_env_url_connects_over_tls_from_service_host(lab, local_site, plane):
    """The env URL, used as is on the plane's service host, gets in over TLS 1.2 or 1.3."""
    query = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    [result] = sql_from_host(lab, service_host(plane), [query], url=env_url(local_site, plane))
    [[ssl, version]] = result["rows"]
    assert ssl is True and version in TLS_VERSIONS, (ssl, version)
