"""Env files holding a plane's database URL (a secret) on the hosts that run its services,
and the CA certificate that URL trusts.

Contents travel on the privileged command's stdin (``private_file``), never through a
temporary file another user could read, and are compared by hash, never logged.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from .. import envfiles
from ..config import Endpoint, Site
from ..facts import FilesState
from ..secret_store import SecretStore
from . import private_file

DIR_MODE = "750"
CA_MODE = "644"  # public; the directory still limits who reaches it


@operation()
def plane_urls(site: Site, endpoints: tuple[Endpoint, ...], store: SecretStore, ca_pems: dict[str, bytes]):
    """
    Write ``<env dir>/<plane>.env`` for each endpoint's plane, holding that plane's canonical
    variable only, and ``<env dir>/<plane>-ca.crt`` from ``ca_pems`` (plane key -> PEM).

    **Example:**

    .. code:: python

        envfile.plane_urls(name="Env files", site=site, endpoints=(site.endpoint(TENANT),), store=store,
                           ca_pems={"tenant": pem})
    """
    cfg = site.env_files
    owner, group, mode = "root", cfg.group or "root", cfg.mode.lstrip("0")
    wanted = {}
    for e in endpoints:
        wanted[envfiles.path(site, e.plane)] = (envfiles.render(site, e, store.password(e.plane.app_role)).encode(),
                                                mode)
        wanted[envfiles.ca_path(site, e.plane)] = (ca_pems[e.plane.key], CA_MODE)
    have = host.get_fact(FilesState, paths=(cfg.dir, *wanted))

    current = have.get(cfg.dir)
    if current is None:
        yield StringCommand("install", "-d", "-m", DIR_MODE, "-o", owner, "-g", QuoteString(group), QuoteString(cfg.dir))
    elif (current.mode, current.user, current.group) != (DIR_MODE, owner, group):
        yield StringCommand("chown", QuoteString(f"{owner}:{group}"), QuoteString(cfg.dir), "&&",
                            "chmod", DIR_MODE, QuoteString(cfg.dir))
    changed = False
    for path, (content, file_mode) in wanted.items():
        if private_file.differs(have.get(path), content, owner, group, file_mode):
            changed = True
            yield private_file.put(path, content, owner, group, file_mode)
    if not changed:
        host.noop(f"env files and CA certificates in {cfg.dir} are current")
