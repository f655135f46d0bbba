"""What a plane's env file says: its canonical variable, holding the app role's URL."""

from __future__ import annotations

from urllib.parse import quote

from .config import Site
from .contract import Plane
from .templates import render_template


def path(site: Site, plane: Plane) -> str:
    return f"{site.env_files.dir}/{plane.key}.env"


def database_url(site: Site, plane: Plane, password: str) -> str:
    """A libpq URI for the plane's app role; TCP always with ``sslmode=require``."""
    host = site.cluster.connect_host
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    user, secret = quote(plane.app_role, safe=""), quote(password, safe="")
    return f"postgresql://{user}:{secret}@{host}:{site.cluster.port}/{plane.store}?sslmode=require"


def sqlite_url(path: str) -> str:
    """The IDE plane's URL: ``sqlite:///`` followed by the absolute path."""
    return f"sqlite:///{path}"


def render(site: Site, plane: Plane, password: str) -> str:
    return render_template(
        "plane.env.j2", site=site, plane=plane, url=database_url(site, plane, password),
    )
