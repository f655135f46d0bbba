"""Everything a deploy needs to know about a site and its hosts, checked before anything runs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import contract, envdir
from .config import ConfigError, Endpoint, Server, Site, parse_site
from .cutover.state import deploy_refusal
from .facts import FilesState, GroupExists, PostgresHost, RegularFiles, XdgDirs
from .layout import ClusterLayout, layout
from .privilege import AS_CONNECTING_USER
from .secret_store import LOGIN_ROLES, SecretStore
from .tls import SiteCA

# The inventory group whose one host runs the pilot's PostgreSQL cluster.
SERVER_GROUP = "workstation"
# Where the deploy works on managed endpoints from: the operator's machine (usually @local).
ADMIN_GROUP = contract.ADMIN_HOSTS.key
# The inventory groups the deploy gives something to; hosts of any other group would get nothing.
KNOWN_GROUPS = (SERVER_GROUP, *contract.CLIENT_GROUPS_BY_KEY)
# pyinfra 3.10 hands a sudo or su password to the host on a command line (``env
# PYINFRA_SUDO_PASSWORD=… sudo -A …``), where every local user can read it in /proc.
PASSWORD_ARGUMENTS = ("_sudo_password", "_su_password")


def site_data(inventory) -> dict:
    """The inventory's one ``zeroui`` dict, whichever group carries it."""
    found = [h.data.get("zeroui") for h in inventory if h.data.get("zeroui") is not None]
    if found and any(d is not found[0] and d != found[0] for d in found):
        raise ConfigError("?", "zeroui", "differs between hosts", "define it once, on the workstation group")
    return found[0] if found else None


@dataclass
class Deployment:
    """A site, its secrets and its trust anchors, as the control machine holds them."""

    site: Site
    store: SecretStore
    ca: SiteCA | None  # the site's own CA: it signs the workstation cluster's certificate

    def ca_file(self, endpoint: Endpoint) -> str:
        """The CA certificate (on the control machine) that vouches for ``endpoint``."""
        return endpoint.ca_file or str(self.ca.cert_path)

    def ca_pem(self, endpoint: Endpoint) -> bytes:
        return Path(self.ca_file(endpoint)).read_bytes()

    def admin_password(self, server: Server) -> str:
        if server.workstation:
            return self.store.password(contract.ADMIN_ROLE)
        return self.store.endpoint_admin_password(server.first.plane.key)

    @property
    def certificate_names(self) -> tuple[str, ...]:
        """What the workstation's certificate must name: where clients and the admin dial."""
        cluster = self.site.cluster
        return tuple(dict.fromkeys([cluster.connect_host, *(str(a) for a in cluster.listen_addresses)]))


def load(inventory) -> Deployment:
    """Parse and check the inventory's site; make the control machine's secrets and CA."""
    site = parse_site(site_data(inventory))
    check_privilege(site.name, inventory)
    store = SecretStore(site.name)
    _check_groups(site, inventory)
    refused = deploy_refusal(store.path.parent, site.name)  # a deploy would lift a cutover's freeze
    if refused:
        raise ConfigError(site.name, "cutover", *refused)
    # Only a site with servers or service hosts has passwords and a CA; a laptop never does.
    serves = any(inventory.get_group(g, []) for g in (SERVER_GROUP, ADMIN_GROUP, *(s.key for s in contract.SERVICE_GROUPS)))
    if serves:
        store.ensure((contract.ADMIN_ROLE, *LOGIN_ROLES) if site.cluster else LOGIN_ROLES)
    for server in site.servers if serves else ():
        if not server.workstation and store.endpoint_admin_password(server.first.plane.key, required=False) is None:
            plane = server.first.plane.key
            raise ConfigError(
                site.name, f"endpoints.{plane}.admin_user", f"no password for {server.admin_user}",
                f"set {store.endpoint_admin_env(plane)} or run: zeroui-db secrets set-admin {site.name} {plane}",
            )
        for endpoint in server.endpoints:
            if endpoint.ca_file and not Path(endpoint.ca_file).is_file():
                key = f"endpoints.{endpoint.plane.key}.ca_file" if not endpoint.workstation else "cluster.ssl_ca_file"
                raise ConfigError(site.name, key, f"{endpoint.ca_file} does not exist on this machine",
                                  "download the CA certificate there, or correct the path")
    own_ca = serves and site.cluster is not None and site.cluster.ssl_cert_file is None
    ca = SiteCA.load_or_create(store.path.parent, site.name) if own_ca else None
    return Deployment(site, store, ca)


def check_privilege(site_name: str, inventory) -> None:
    """Refuse a sudo or su password: the deploying user needs a rule that asks none."""
    config = inventory.state.config if inventory.state else None
    for h in inventory:
        for key in PASSWORD_ARGUMENTS:
            if h.data.get(key) or getattr(config, key.lstrip("_").upper(), None):
                raise ConfigError(
                    site_name, key, f"pyinfra would pass it on {h.name}'s command line, readable by every local user",
                    "give the deploying user a sudo rule with NOPASSWD instead (README: \"A remote workstation (SSH)\")",
                )


def _check_groups(site: Site, inventory) -> None:
    for name, hosts in inventory.groups.items():
        # "@local", "@docker", …: the groups pyinfra's connectors put their hosts in.
        known = name in KNOWN_GROUPS or name.startswith("@") or _is_file_group(name, hosts, inventory)
        if hosts and not known:
            raise ConfigError(site.name, name, "is no group the deploy knows, so its hosts would get nothing",
                              f"use one of: {', '.join(KNOWN_GROUPS)} (or start the name with '_': pyinfra "
                              "then takes it for no group)")
    workstations = inventory.get_group(SERVER_GROUP, [])
    if len(workstations) > 1:
        raise ConfigError(site.name, SERVER_GROUP, f"has {len(workstations)} hosts",
                          "the pilot's cluster runs on one workstation: keep one host in the group")
    if workstations and site.cluster is None:
        raise ConfigError(site.name, SERVER_GROUP, "every plane is a managed endpoint, so no cluster runs here",
                          "remove the workstation group, or add a cluster section")
    managed = [s for s in site.servers if not s.workstation]
    admins = inventory.get_group(ADMIN_GROUP, [])
    if managed and len(admins) != 1:
        raise ConfigError(
            site.name, ADMIN_GROUP, f"{'has ' + str(len(admins)) + ' hosts' if admins else 'is missing'}",
            f"managed endpoints ({', '.join(s.key for s in managed)}) are worked on from one admin host: "
            "add admin_hosts = ['@local'] (or your bastion) to the inventory",
        )


def _is_file_group(name: str, hosts, inventory) -> bool:
    """Whether ``name`` is the group pyinfra makes of all hosts of an inventory file, named
    after the file (``inventories/pilot.py``: ``pilot``). pyinfra keeps no record of the
    file, so its name is read from the command line that started the deploy."""
    files = {Path(arg).stem for arg in sys.argv[1:] if arg.endswith(".py")}
    return name in files and set(hosts) == set(inventory)


def check_env_dir(site: Site, host) -> None:
    """Refuse, before anything changes, an env directory that is not safe for secrets on
    ``host`` (see :mod:`zeroui_db.envdir`), or a reading group the host does not know."""
    cfg = site.env_files
    try:
        envdir.inspect(cfg, host.get_fact(FilesState, paths=envdir.paths_to_read(cfg.dir)))
    except envdir.UnsafeDirectory as e:
        raise ConfigError(site.name, "env_files.dir", f"{e.problem} (on {host.name})", e.fix) from None
    if cfg.group and not host.get_fact(GroupExists, group_name=cfg.group):
        raise ConfigError(site.name, "env_files.group", f"group {cfg.group} does not exist on {host.name}",
                          f"create it (groupadd {cfg.group}) or name an existing group")


def servers_worked_from(deployment: Deployment, host, inventory) -> tuple[Server, ...]:
    """The servers whose databases this host works on: the workstation its own cluster, the
    admin host the managed services."""
    out = []
    for server in deployment.site.servers:
        group = SERVER_GROUP if server.workstation else ADMIN_GROUP
        if host in inventory.get_group(group, []):
            out.append(server)
    return tuple(out)


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
    own = {k: getattr(site.cluster, k) for k in ("ssl_cert_file", "ssl_key_file") if getattr(site.cluster, k)}
    found = host.get_fact(RegularFiles, paths=tuple(own.values())) if own else set()
    for key, path in own.items():
        if path not in found:
            raise ConfigError(site.name, f"cluster.{key}", f"{path} is no file on {host.name}",
                              "put the certificate and its key there, or correct the path")
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
    xdg = host.get_fact(XdgDirs, **AS_CONNECTING_USER) if not (site.ide.data_dir and site.ide.config_dir) else {}
    data = site.ide.data_dir or f"{xdg['data']}/zeroui"
    config = site.ide.config_dir or f"{xdg['config']}/zeroui"
    return IdePaths(f"{data}/{contract.IDE.store}", f"{config}/{contract.IDE.key}.env")
