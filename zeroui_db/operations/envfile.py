"""Env files holding a plane's database URL (a secret) on the hosts that run its services.

Written by hand rather than with ``files.put``/``files.template``: those print file
contents under ``--diff`` and create a new file before restricting its mode. Here the
file is created empty with its final mode first, contents are compared by hash, and
nothing of them is ever logged.
"""

from __future__ import annotations

import hashlib
from io import BytesIO

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.api.command import FileUploadCommand
from pyinfra.facts.files import File, Sha1File
from pyinfra.operations import files

from .. import envfiles
from ..config import Site
from ..contract import Plane
from ..secret_store import SecretStore


@operation()
def plane_url(site: Site, plane: Plane, store: SecretStore):
    """
    Write ``<env dir>/<plane>.env`` with the plane's canonical variable only.

    **Example:**

    .. code:: python

        envfile.plane_url(name="Tenant env file", site=site, plane=TENANT, store=store)
    """
    cfg = site.env_files
    owner, group = "root", cfg.group or "root"
    path = envfiles.path(site, plane)
    content = envfiles.render(site, plane, store.password(plane.app_role)).encode()

    yield from files.directory._inner(path=cfg.dir, user=owner, group=group, mode="0750")

    current = host.get_fact(File, path=path)
    if not current:
        yield StringCommand(
            "install", "-m", cfg.mode, "-o", owner, "-g", group, "/dev/null", QuoteString(path),
        )
    elif current["mode"] != int(cfg.mode) or current["user"] != owner or current["group"] != group:
        yield StringCommand("chown", f"{owner}:{group}", QuoteString(path))
        yield StringCommand("chmod", cfg.mode, QuoteString(path))
    if not current or host.get_fact(Sha1File, path=path) != hashlib.sha1(content).hexdigest():
        # The upload rewrites the existing file in place, keeping its mode.
        yield FileUploadCommand(BytesIO(content), path, remote_temp_filename=host.get_temp_filename(path))
