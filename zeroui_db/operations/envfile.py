"""Env files holding a plane's database URL (a secret) on the hosts that run its services,
and the CA certificate that URL trusts.

Contents travel on the privileged command's stdin (``private_file``), never through a
temporary file another user could read, and are compared by hash, never logged.

The directory's owner and mode are set only when the bundle made it (see
:mod:`zeroui_db.envdir`); the deploy refuses an unsafe directory before anything runs.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from .. import envdir, envfiles
from ..config import Endpoint, Site
from ..facts import FilesState
from ..secret_store import SecretStore
from . import private_file

DIR_MODE = envdir.DIR_MODE
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
    owner, group, mode = envdir.OWNER, cfg.group or "root", cfg.mode.lstrip("0")
    wanted = {}
    for e in endpoints:
        wanted[envfiles.path(site, e.plane)] = (envfiles.render(site, e, store.password(e.plane.app_role)).encode(),
                                                mode)
        wanted[envfiles.ca_path(site, e.plane)] = (ca_pems[e.plane.key], CA_MODE)
    have = host.get_fact(FilesState, paths=(*envdir.paths_to_read(cfg.dir), *wanted))
    try:
        here = envdir.inspect(cfg, have)
    except envdir.UnsafeDirectory as e:  # the deploy checked before anything ran; this is now
        raise OperationError(f"{e.problem}; {e.fix}") from None

    current = have.get(cfg.dir)
    if not here.exists:
        # mkdir without -p for the directory itself: it fails rather than adopt one that
        # appeared meanwhile. The marker, owned by root, says the bundle made it.
        yield StringCommand(
            "mkdir", "-p", QuoteString(posixpath.dirname(cfg.dir)), "&&", "mkdir", "-m", DIR_MODE, QuoteString(cfg.dir),
            "&&", "chown", QuoteString(f"{owner}:{group}"), QuoteString(cfg.dir),
            "&&", "echo", QuoteString(envdir.MARKER_TEXT), ">", QuoteString(here.marker),
        )
    elif here.own and (current.mode, current.user, current.group) != (DIR_MODE, owner, group):
        yield StringCommand("chown", QuoteString(f"{owner}:{group}"), QuoteString(cfg.dir), "&&",
                            "chmod", DIR_MODE, QuoteString(cfg.dir))
    changed = False
    for path, (content, file_mode) in wanted.items():
        if private_file.differs(have.get(path), content, owner, group, file_mode):
            changed = True
            yield private_file.put(path, content, owner, group, file_mode)
    if not changed:
        host.noop(f"env files and CA certificates in {cfg.dir} are current")
