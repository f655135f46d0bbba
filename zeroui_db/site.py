"""Everything a deploy needs to know about one host, checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

from . import contract
from .config import ConfigError, Site, parse_site
from .facts import PostgresHost, XdgDirs
from .layout import ClusterLayout, layout
from .secret_store import SecretStore

# The inventory group whose hosts run the PostgreSQL cluster.
SERVER_GROUP = "workstation"
# Every password the deploy manages: the admin role's and each plane's login roles.
MANAGED_ROLES = (contract.ADMIN_ROLE, *(r for p in contract.POSTGRES_PLANES for r in p.login_roles))


def site_data(inventory) -> dict:
    """The inventory's one ``zeroui`` dict, whichever group carries it."""
    found = [h.data.get("zeroui") for h in inventory if h.data.get("zeroui") is not None]
    if found and any(d is not found[0] and d != found[0] for d in found):
        raise ConfigError("?", "zeroui", "differs between hosts", "define it once, on the workstation group")
    return found[0] if found else None


def load_site(inventory) -> tuple[Site, SecretStore]:
    site = parse_site(site_data(inventory))
    store = SecretStore(site.name)
    # Only a site with a cluster or service hosts has passwords; a laptop never does.
    if any(inventory.get_group(g, []) for g in (SERVER_GROUP, *(s.key for s in contract.SERVICE_GROUPS))):
        store.ensure(MANAGED_ROLES)
    return site, store


def server_plan(site: Site, host) -> ClusterLayout:
    """Resolve the cluster on ``host`` (an existing one of that name is adopted) and refuse
    a port held by another cluster."""
    pg = host.get_fact(PostgresHost)
    version = site.cluster.version or pg.distro_major
    if version is None:
        raise ConfigError(
            site.name, "cluster.version", f"the distribution's PostgreSQL major is unknown on {host.name}",
            "set cluster.version, or run apt-get update on that host",
        )
    mine = next((c for c in pg.clusters if (c.version, c.name) == (version, site.cluster.name)), None)
    for other in pg.clusters:
        if other is not mine and other.port == site.cluster.port:
            raise ConfigError(
                site.name, "cluster.port",
                f"{site.cluster.port} is held by cluster {other.version}/{other.name} on {host.name}",
                f"choose a free port, or adopt that cluster with cluster.name '{other.name}'",
            )
    return layout(site.cluster, version, mine.data_directory if mine else None)


@dataclass(frozen=True)
class IdePaths:
    database: str
    env_file: str


def ide_paths(site: Site, host) -> IdePaths:
    """Where the IDE plane lives on a laptop: the user's XDG directories unless configured."""
    xdg = host.get_fact(XdgDirs) if not (site.ide.data_dir and site.ide.config_dir) else {}
    data = site.ide.data_dir or f"{xdg['data']}/zeroui"
    config = site.ide.config_dir or f"{xdg['config']}/zeroui"
    return IdePaths(f"{data}/{contract.IDE.store}", f"{config}/{contract.IDE.key}.env")
