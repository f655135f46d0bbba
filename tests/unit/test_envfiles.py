"""Env files: one canonical variable per plane, a URL for the plane's app role that makes
libpq verify the server (its certificate must chain to the plane's CA and name the host)
and bind SCRAM to the TLS channel.

Each URL is read back twice, independently of envfiles.py: with urllib.parse, and with
libpq's own parser (psycopg.conninfo.conninfo_to_dict), which is what services will use.
"""

from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from psycopg.conninfo import conninfo_to_dict

from zeroui_db import contract, envfiles
from zeroui_db.config import ConfigError, parse_site

PLANES = (contract.TENANT, contract.PRODUCT, contract.SHARED)


def libpq(url: str) -> dict:
    return conninfo_to_dict(url)


@pytest.mark.parametrize("plane", PLANES, ids=lambda p: p.key)
def test_env_file_holds_only_its_plane_variable(site, plane):
    text = envfiles.render(site, site.endpoint(plane), "s3cret")
    assignments = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(assignments) == 1
    name, url = assignments[0].split("=", 1)
    assert name == plane.env_var
    assert url == (f"postgresql://zeroui_{plane.key}_app:s3cret@127.0.0.1:5432/zeroui_{plane.key}_pg"
                   f"?sslmode=verify-full&sslrootcert=/etc/zeroui/env/{plane.key}-ca.crt&channel_binding=require")
    assert "s3cret" not in text.replace(url, "")  # the password only inside the URL
    assert envfiles.path(site, plane) == f"/etc/zeroui/env/{plane.key}.env"
    assert envfiles.ca_path(site, plane) == f"/etc/zeroui/env/{plane.key}-ca.crt"


@pytest.mark.parametrize("plane", PLANES, ids=lambda p: p.key)
def test_pilot_url_as_libpq_reads_it(site, plane):
    url = envfiles.database_url(site, site.endpoint(plane), "s3cret")
    assert libpq(url) == {
        "user": plane.app_role, "password": "s3cret", "host": "127.0.0.1", "port": "5432", "dbname": plane.store,
        "sslmode": "verify-full", "sslrootcert": f"/etc/zeroui/env/{plane.key}-ca.crt", "channel_binding": "require",
    }


def test_pilot_url_follows_connect_host_and_env_dir(data):
    data["cluster"].update(port=5433, connect_host="db.pilot.internal")
    data["env_files"]["dir"] = "/srv/zeroui/env"
    site = parse_site(data)
    url = envfiles.database_url(site, site.endpoint(contract.TENANT), "x")
    parts = libpq(url)
    assert (parts["host"], parts["port"], parts["sslrootcert"]) == (
        "db.pilot.internal", "5433", "/srv/zeroui/env/tenant-ca.crt")


@pytest.mark.parametrize("plane,host,port,binding", [
    (contract.TENANT, "tenant-db.example.com", 5432, "require"),
    (contract.PRODUCT, "product-db.example.com", 6432, "prefer"),
    (contract.SHARED, "fd00::5", 5432, "require"),
], ids=["dns", "dns-other-port", "ipv6"])
def test_cloud_urls(cloud_site, plane, host, port, binding):
    url = envfiles.database_url(cloud_site, cloud_site.endpoint(plane), "s3cret")
    parts = urlsplit(url)
    assert (parts.scheme, parts.username, parts.password, parts.hostname, parts.port, parts.path) == (
        "postgresql", plane.app_role, "s3cret", host, port, f"/{plane.store}")
    assert parse_qs(parts.query, strict_parsing=True) == {
        "sslmode": ["verify-full"], "sslrootcert": [f"/etc/zeroui/env/{plane.key}-ca.crt"],
        "channel_binding": [binding]}
    assert libpq(url) == {
        "user": plane.app_role, "password": "s3cret", "host": host, "port": str(port), "dbname": plane.store,
        "sslmode": "verify-full", "sslrootcert": f"/etc/zeroui/env/{plane.key}-ca.crt", "channel_binding": binding,
    }


def test_ipv6_host_is_bracketed(cloud_site):
    url = envfiles.database_url(cloud_site, cloud_site.endpoint(contract.SHARED), "x")
    assert url.startswith("postgresql://zeroui_shared_app:x@[fd00::5]:5432/zeroui_shared_pg?")


def test_ipv6_connect_host(data):
    data["cluster"]["listen_addresses"].append("fd00::5")
    data["cluster"]["connect_host"] = "fd00::5"
    site = parse_site(data)
    url = envfiles.database_url(site, site.endpoint(contract.SHARED), "x")
    assert "@[fd00::5]:5432/" in url
    assert (urlsplit(url).hostname, libpq(url)["host"]) == ("fd00::5", "fd00::5")


def test_managed_database_name(cloud_data):
    cloud_data["endpoints"]["tenant"]["database"] = "tenant_main"
    site = parse_site(cloud_data)
    url = envfiles.database_url(site, site.endpoint(contract.TENANT), "x")
    assert libpq(url)["dbname"] == "tenant_main"


@pytest.mark.parametrize("password", ["p@ss:w/rd?&%", "a#b c+d=e%20f", "@:/?#%", "ünï/cødé"])
def test_password_is_url_encoded(cloud_site, password):
    url = envfiles.database_url(cloud_site, cloud_site.endpoint(contract.SHARED), password)
    parts = urlsplit(url)
    assert unquote(parts.password) == password
    assert (parts.hostname, parts.port) == ("fd00::5", 5432)  # the password did not eat into the host
    assert libpq(url)["password"] == password
    assert libpq(url)["sslmode"] == "verify-full"


def test_env_dir_with_a_space_is_refused_or_reaches_libpq_intact(data):
    data["env_files"]["dir"] = "/srv/zero ui/env"
    try:
        site = parse_site(data)
    except ConfigError:
        return  # refused: fine
    url = envfiles.database_url(site, site.endpoint(contract.TENANT), "x")
    assert libpq(url)["sslrootcert"] == "/srv/zero ui/env/tenant-ca.crt"
