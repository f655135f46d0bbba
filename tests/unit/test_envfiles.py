"""Env files: one canonical variable per plane, a TLS URL for the plane's app role."""

from urllib.parse import unquote, urlsplit

import pytest

from zeroui_db import contract, envfiles
from zeroui_db.config import parse_site


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES)
def test_env_file_holds_only_its_plane_variable(site, plane):
    text = envfiles.render(site, plane, "s3cret")
    assignments = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(assignments) == 1
    name, url = assignments[0].split("=", 1)
    assert name == plane.env_var
    parts = urlsplit(url)
    assert (parts.scheme, parts.username, parts.hostname, parts.port) == ("postgresql", plane.app_role, "127.0.0.1", 5432)
    assert parts.path == f"/{plane.store}" and parts.query == "sslmode=require"
    assert envfiles.path(site, plane) == f"/etc/zeroui/env/{plane.key}.env"


def test_password_is_url_encoded(site):
    url = envfiles.database_url(site, contract.TENANT, "p@ss:w/rd?&%")
    assert unquote(urlsplit(url).password) == "p@ss:w/rd?&%"


def test_ipv6_connect_host(data):
    data["cluster"]["listen_addresses"].append("fd00::5")
    data["cluster"]["connect_host"] = "fd00::5"
    url = envfiles.database_url(parse_site(data), contract.SHARED, "x")
    assert urlsplit(url).hostname == "fd00::5" and "@[fd00::5]:5432/" in url
