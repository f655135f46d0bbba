"""Watching a deploy for secrets that another local user could read.

* ``CmdlineSampler``: every process's command line (``/proc/*/cmdline`` is readable by every
  user), sampled about every 10 ms.
* ``FileWatcher``: every file created or written in the watched directories (and in
  directories created under them meanwhile), read by inotify the moment it is written or its
  owner or mode change, with who could read it at that moment.

The passwords do not exist before a first deploy makes them, so both keep what they saw and
are asked afterwards (``file_leaks``, ``argv_leaks``), naming secrets by label only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from inotify_simple import INotify, flags

VERIFIER_RE = re.compile(rb"SCRAM-SHA-256\$\d+:")
READ_LIMIT = 1 << 20  # the files of interest are small; a big one is read only this far


def store_secrets(store: dict) -> dict[str, str]:
    """label -> secret: every password and applied verifier of a secrets store, and the keys inside each verifier."""
    out = {}
    for role, entry in store["roles"].items():
        if "password" in entry:
            out[f"password of {role}"] = entry["password"]
        if "applied_verifier" in entry:
            verifier = entry["applied_verifier"]
            out[f"verifier of {role}"] = verifier
            stored_key, server_key = verifier.rsplit("$", 1)[1].split(":")
            out[f"StoredKey of {role}"] = stored_key
            out[f"ServerKey of {role}"] = server_key
    return out


class CmdlineSampler:
    """Collects every distinct /proc/*/cmdline seen, sampling about every 10 ms."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.seen: set[bytes] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CmdlineSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:  # gone meanwhile
                    continue
                if cmdline:
                    self.seen.add(cmdline)
            self.rounds += 1
            self._stop.wait(self.interval)

    @property
    def text(self) -> str:
        return "\n".join(c.replace(b"\0", b" ").decode(errors="replace") for c in sorted(self.seen))


def argv_leaks(sampler: CmdlineSampler, secrets: dict[str, str]) -> list[str]:
    text = sampler.text
    found = [f"{label} in a process command line" for label, secret in secrets.items() if secret in text]
    if VERIFIER_RE.search(text.encode()):
        found.append("a SCRAM verifier in a process command line")
    return found


@dataclass(frozen=True)
class Seen:
    """A regular file as it was at one moment: its content and who could read it."""

    path: str
    uid: int
    gid: int
    mode: int
    acl: bool  # carries a POSIX ACL (other users may be named in it)
    parents: tuple[tuple[int, int], ...]  # (gid, mode) of each directory above it
    content: bytes

    def readers(self, trusted_uids: set[int], trusted_gids: set[int]) -> list[str]:
        """Why someone other than the trusted users could read it; empty if nobody could."""
        why = []
        if self.uid not in trusted_uids:
            why.append(f"owned by uid {self.uid}")
        if self.mode & stat.S_IROTH and all(m & stat.S_IXOTH for _, m in self.parents):
            why.append("readable by every user")
        if self.mode & stat.S_IRGRP and self.gid not in trusted_gids and all(
                m & stat.S_IXOTH or (g == self.gid and m & stat.S_IXGRP) for g, m in self.parents):
            why.append(f"readable by group {self.gid}")
        if self.acl:
            why.append("has an ACL")
        return why


class FileWatcher:
    """Reads every file written in ``dirs`` (and in directories made under them) while active."""

    MASK = (flags.CREATE | flags.MODIFY | flags.CLOSE_WRITE | flags.MOVED_TO | flags.ATTRIB
            | flags.DONT_FOLLOW)

    def __init__(self, dirs: list[str]):
        self.seen: list[Seen] = []
        self.overflowed = False
        self._keys: set[tuple] = set()
        self._inotify = INotify()
        self._dirs: dict[int, str] = {}
        for d in dirs:
            self._watch(d)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FileWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._inotify.close()

    def _watch(self, directory: str) -> None:
        with contextlib.suppress(OSError):  # gone meanwhile
            self._dirs[self._inotify.add_watch(directory, self.MASK)] = directory

    def _run(self) -> None:
        while not self._stop.is_set():
            for event in self._inotify.read(timeout=20):
                if event.mask & flags.Q_OVERFLOW:
                    self.overflowed = True
                    continue
                directory = self._dirs.get(event.wd)
                if directory is None or not event.name:
                    continue
                path = os.path.join(directory, event.name)
                if event.mask & flags.ISDIR:
                    if event.mask & (flags.CREATE | flags.MOVED_TO):
                        self._watch(path)
                else:
                    self._look(path)

    def _look(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # gone already, or a link
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            content = os.read(fd, READ_LIMIT)
            try:
                acl = bool(os.getxattr(fd, "system.posix_acl_access"))
            except OSError:
                acl = False
        finally:
            os.close(fd)
        parents = []
        for parent in Path(path).parents:
            with contextlib.suppress(OSError):
                pst = os.stat(parent)
                parents.append((pst.st_gid, pst.st_mode))
        key = (path, st.st_uid, st.st_gid, st.st_mode, acl, hashlib.sha1(content).digest())
        if key not in self._keys:
            self._keys.add(key)
            self.seen.append(Seen(path, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), acl, tuple(parents), content))


def file_leaks(watcher: FileWatcher, secrets: dict[str, str], trusted_uids: set[int],
               trusted_gids: set[int]) -> list[str]:
    """Files that held a secret at a moment when an untrusted user could read them."""
    found = []
    for s in watcher.seen:
        labels = [label for label, secret in secrets.items() if secret.encode() in s.content]
        if VERIFIER_RE.search(s.content):
            labels.append("a SCRAM verifier")
        why = s.readers(trusted_uids, trusted_gids) if labels else []
        if why:
            found.append(f"{', '.join(labels)} in {s.path} (mode {s.mode:04o}, uid {s.uid}): {'; '.join(why)}")
    return found
