"""Files written from the control machine through the privileged command's stdin.

Written by hand rather than with ``files.put``/``files.template``: when a host runs commands
with sudo or su, those upload as the SSH user to a predictable name in the host's ``/tmp``,
readable by every local user, copy that into place as root, and leave it behind when the copy
fails. Another user could read it (an env file holds a password), or put a file of their own
under that name first and change what root copies (pg_hba.conf decides who may connect;
postgresql.conf can name programs the server runs). They also print contents under ``--diff``.

Here the contents travel on stdin. ``install`` creates ``<path>.new`` afresh (it never writes
through a file or link found there) under umask 077, sets owner and mode, and the file is then
renamed over ``<path>``: no moment at which anyone else could read it or a reader could see
half of it, and nothing left behind when a step fails. Contents are compared by hash and never
logged.
"""

from __future__ import annotations

import hashlib

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from ..facts import FilesState


def _as_sent(content: bytes) -> bytes:
    # pyinfra ends what it writes to stdin with a newline: compare with what lands.
    return content if content.endswith(b"\n") else content + b"\n"


def put(path: str, content: bytes, owner: str, group: str, mode: str) -> StringCommand:
    """The command that puts ``content`` at ``path`` (owner, group and octal mode as given)."""
    new = QuoteString(f"{path}.new")
    return StringCommand(
        "umask 077 &&", "install", "-o", QuoteString(owner), "-g", QuoteString(group), "-m", mode,
        "/dev/stdin", new, "&&", "mv", "-f", new, QuoteString(path), "||", "{", "rm", "-f", new, ";", "exit 1", ";", "}",
        _stdin=_as_sent(content).decode(),
    )


def differs(have, content: bytes, owner: str, group: str, mode: str) -> bool:
    """Whether a ``FilesState`` entry (None: absent) is not ``content`` with that owner and mode."""
    return have is None or have.sha1 != hashlib.sha1(_as_sent(content)).hexdigest() or (have.mode, have.user, have.group) != (
        mode, owner, group)


@operation()
def present(dest: str, content: bytes, user: str, group: str, mode: str):
    """
    Make ``dest`` hold ``content``, owned by ``user``:``group`` with ``mode`` (octal, e.g. "640").

    **Example:**

    .. code:: python

        private_file.present(name="pg_hba.conf", dest="/etc/postgresql/15/main/pg_hba.conf",
                             content=rendered, user="postgres", group="postgres", mode="640")
    """
    have = host.get_fact(FilesState, paths=(dest,)).get(dest)
    if not differs(have, content, user, group, mode):
        host.noop(f"{dest} is current")
        return
    yield put(dest, content, user, group, mode)
