"""What a plane's env file says: its canonical variable, holding the app role's URL, and
where the CA certificate that vouches for the plane's server lies beside it."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from .config import Endpoint, Site
from .contract import Plane
from .templates import render_template


def path(site: Site, plane: Plane) -> str:
    return f"{site.env_files.dir}/{plane.key}.env"


def ca_path(site: Site, plane: Plane) -> str:
    """The CA certificate clients of ``plane`` verify its server with (``sslrootcert``)."""
    return f"{site.env_files.dir}/{plane.key}-ca.crt"


def database_url(site: Site, endpoint: Endpoint, password: str) -> str:
    """A libpq URI for the plane's app role that verifies the server: its certificate must
    chain to the endpoint's CA and name the host (``verify-full``), and SCRAM is bound to
    the TLS channel, so an impostor on the address gets no password."""
    host = endpoint.host
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    user, secret = quote(endpoint.plane.app_role, safe=""), quote(password, safe="")
    query = urlencode({"sslmode": "verify-full", "sslrootcert": ca_path(site, endpoint.plane),
                       "channel_binding": endpoint.channel_binding}, safe="/", quote_via=quote)
    return f"postgresql://{user}:{secret}@{host}:{endpoint.port}/{quote(endpoint.database, safe='')}?{query}"


def sqlite_url(path: str) -> str:
    """The IDE plane's URL: ``sqlite:///`` followed by the absolute path."""
    return f"sqlite:///{path}"


def render(site: Site, endpoint: Endpoint, password: str) -> str:
    return render_template(
        "plane.env.j2", site=site, plane=endpoint.plane, url=database_url(site, endpoint, password),
    )
