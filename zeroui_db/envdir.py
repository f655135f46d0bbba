"""The env files' directory on a service host: whether the bundle made it, and whether a
directory it did not make is safe to hold secrets.

The bundle knows a directory as its own by a marker file it writes right after making
the directory, owned by root, so no other user can forge it. Only such a directory gets
its owner and mode set by the deploy. One without the marker (made by hand, by another
tool, or a system directory) is used as it is if no other user can enter it or replace
what is in it, and refused otherwise: the bundle never changes a directory it did not
make. Every directory above it is checked as well, as OpenSSH's StrictModes checks a key
file's path: whoever may rename a parent may swap the whole directory.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .config import EnvFiles
from .facts import FileState

MARKER = ".zeroui-db"
MARKER_TEXT = "Made by the ZeroUI DB deploy bundle, which sets this directory's owner and mode."
DIR_MODE = "750"
OWNER = "root"
STICKY = 0o1000


class UnsafeDirectory(Exception):
    """Why the env directory cannot be used, and what to do: ``(problem, fix)``."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem, fix)
        self.problem, self.fix = problem, fix


@dataclass(frozen=True)
class EnvDir:
    path: str
    exists: bool
    own: bool  # made by the bundle: its owner and mode are the bundle's to set

    @property
    def marker(self) -> str:
        return marker_path(self.path)


def marker_path(directory: str) -> str:
    return f"{directory}/{MARKER}"


def parents(directory: str) -> tuple[str, ...]:
    """Every directory above ``directory``, from the root down: /etc/zeroui/env -> /, /etc, /etc/zeroui."""
    out = []
    while directory != "/":
        directory = posixpath.dirname(directory)
        out.append(directory)
    return tuple(reversed(out))


def paths_to_read(directory: str) -> tuple[str, ...]:
    """What :func:`inspect` needs to know about, in one ``FilesState`` round trip."""
    return (*parents(directory), directory, marker_path(directory))


def inspect(cfg: EnvFiles, have: dict[str, FileState]) -> EnvDir:
    """Decide on ``cfg.dir`` from ``have`` (``FilesState`` of :func:`paths_to_read`); raise
    :class:`UnsafeDirectory` when secrets must not go there."""
    directory = cfg.dir
    for parent in parents(directory):
        state = have.get(parent)
        if state is None:
            break  # it and everything below it will be made by the bundle, as root
        if state.user != OWNER:
            raise UnsafeDirectory(f"{parent} belongs to {state.user}, who could replace {directory}",
                                  "use a directory whose parents all belong to root")
        if state.kind == "l":
            continue  # a root-owned link (/var/run -> /run); its own mode means nothing
        if state.kind != "d":
            raise UnsafeDirectory(f"{parent} is not a directory", "correct the path")
        mode = int(state.mode, 8)
        if mode & 0o022 and not mode & STICKY:
            raise UnsafeDirectory(f"{parent} is writable by other users (mode {mode:04o}), who could replace "
                                  f"{directory}", "use a directory whose parents only root may write")
    state = have.get(directory)
    if state is None:
        return EnvDir(directory, exists=False, own=False)
    if state.kind != "d":
        what = "a symbolic link" if state.kind == "l" else "not a directory"
        raise UnsafeDirectory(f"{directory} is {what}", "name a real directory, or a new one for the bundle to make")
    marker = have.get(marker_path(directory))
    if state.user == OWNER and marker is not None and marker.kind == "f" and marker.user == OWNER:
        return EnvDir(directory, exists=True, own=True)
    # Someone else's directory: used as it is, never changed, so it must already be safe.
    keep = "the bundle changes only directories it made: use a new directory, or run"
    mode = int(state.mode, 8)
    if state.user != OWNER:
        raise UnsafeDirectory(f"{directory} belongs to {state.user}", f"{keep} chown root {directory} yourself")
    if mode & 0o007:
        raise UnsafeDirectory(f"{directory} lets other users in (mode {mode:04o})",
                              f"{keep} chmod o-rwx {directory} yourself")
    if mode & 0o020:
        raise UnsafeDirectory(f"{directory} is writable by group {state.group} (mode {mode:04o})",
                              f"{keep} chmod g-w {directory} yourself")
    if cfg.group and cfg.mode == "0640" and (state.group != cfg.group or not mode & 0o010):
        raise UnsafeDirectory(f"{directory} does not let group {cfg.group} through (group {state.group}, "
                              f"mode {mode:04o})", f"{keep} chgrp {cfg.group} {directory} && chmod g+x "
                              f"{directory} yourself")
    return EnvDir(directory, exists=True, own=False)
