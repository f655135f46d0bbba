"""Env files holding a plane's database URL (a secret) on the hosts that run its services.

Written by hand rather than with ``files.put``/``files.template``: those print file
contents under ``--diff`` and create a new file before restricting its mode. Here each
file is created empty with its final mode first, contents are compared by hash, and
nothing of them is ever logged.
"""

from __future__ import annotations

import hashlib
from io import BytesIO

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.api.command import FileUploadCommand

from .. import envfiles
from ..config import Site
from ..contract import Plane
from ..facts import FileState, FilesState
from ..secret_store import SecretStore

DIR_MODE = "750"


def _owned(path: str, have: FileState | None, mode: str, owner: str, group: str, *create: str):
    """Create ``path`` with ``create`` if absent, else correct its owner and mode."""
    if have is None:
        yield StringCommand(*create, QuoteString(path))
    elif (have.mode, have.user, have.group) != (mode, owner, group):
        yield StringCommand("chown", f"{owner}:{group}", QuoteString(path), "&&", "chmod", mode, QuoteString(path))


@operation()
def plane_urls(site: Site, planes: tuple[Plane, ...], store: SecretStore):
    """
    Write ``<env dir>/<plane>.env`` for each plane, holding that plane's canonical
    variable only.

    **Example:**

    .. code:: python

        envfile.plane_urls(name="Env files", site=site, planes=(TENANT,), store=store)
    """
    cfg = site.env_files
    owner, group, mode = "root", cfg.group or "root", cfg.mode.lstrip("0")
    paths = {plane: envfiles.path(site, plane) for plane in planes}
    have = host.get_fact(FilesState, paths=(cfg.dir, *paths.values()))

    yield from _owned(cfg.dir, have.get(cfg.dir), DIR_MODE, owner, group,
                      "install", "-d", "-m", DIR_MODE, "-o", owner, "-g", group)
    for plane, path in paths.items():
        content = envfiles.render(site, plane, store.password(plane.app_role)).encode()
        current = have.get(path)
        yield from _owned(path, current, mode, owner, group,
                          "install", "-m", cfg.mode, "-o", owner, "-g", group, "/dev/null")
        if current is None or current.sha1 != hashlib.sha1(content).hexdigest():
            # The upload rewrites the existing file in place, keeping its mode.
            yield FileUploadCommand(BytesIO(content), path, remote_temp_filename=host.get_temp_filename(path))
