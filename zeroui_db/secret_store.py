"""The per-site secrets store on the control machine.

One JSON file per site, mode 0600 in a 0700 directory, outside git:
``$ZEROUI_SECRETS_DIR/<site>.json``, by default ``~/.config/zeroui-db/secrets/``
(``$XDG_CONFIG_HOME`` is honoured). For each login role it keeps the password and the
SCRAM verifier last applied to the server, so a re-run knows, without reading
``pg_authid`` (a managed service will not let it), that nothing needs to change.

A secret manager or CI can supply a password instead: ``ZEROUI_DB_PASSWORD_<ROLE>``
(e.g. ``ZEROUI_DB_PASSWORD_ZEROUI_TENANT_APP``) wins over the file.

The admin ("master") user of a managed endpoint is the provider's, not generated here:
its password comes from ``ZEROUI_DB_ADMIN_PASSWORD_<PLANE>`` or is stored once with
``set-admin`` (read from stdin, never from argv).

Every change takes an exclusive lock, re-reads the file under it and replaces the file
atomically (fsync of the file, rename, fsync of the directory), so a ``rotate`` during a
deploy is never undone by the deploy, and a crash leaves the old file or the new one.
A deploy keeps working with the passwords it started with: what it applied and wrote
into env files stays consistent, and the next deploy picks up the rotation.

    python -m zeroui_db.secret_store path pilot
    python -m zeroui_db.secret_store rotate pilot zeroui_tenant_app   # new password on next deploy
    python -m zeroui_db.secret_store set-admin cloud tenant < password-file
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pyinfra.api.exceptions import PyinfraError

from . import contract, scram
from .config import NAME_RE

ENV_DIR = "ZEROUI_SECRETS_DIR"
ENV_PASSWORD_PREFIX = "ZEROUI_DB_PASSWORD_"
ENV_ADMIN_PASSWORD_PREFIX = "ZEROUI_DB_ADMIN_PASSWORD_"
PASSWORD_BYTES = 32
# The plane roles that log in, and every role whose password the store may hold.
# The login roles whose passwords the store generates: the planes' and the audit's.
LOGIN_ROLES = (*(r for p in contract.POSTGRES_PLANES for r in p.login_roles), contract.AUDIT_ROLE)
PASSWORD_ROLES = (contract.ADMIN_ROLE, *LOGIN_ROLES)
ENDPOINT_PLANES = tuple(p.key for p in contract.POSTGRES_PLANES)


class SecretStoreError(PyinfraError):
    """A store that cannot be used safely; the message is the one line shown."""


def default_dir() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "zeroui-db" / "secrets"


def env_override_name(role: str) -> str:
    return ENV_PASSWORD_PREFIX + role.upper()


def check_site_name(site: str) -> str:
    # The name becomes a file name: the site rule of the inventory keeps it inside the folder.
    if not isinstance(site, str) or not NAME_RE.match(site):
        raise SecretStoreError(f"{site!r} is not a site name: use lowercase letters, digits, '-' and '_'")
    return site


def _private_dir(directory: Path) -> None:
    """Make the store's directory (0700), or check that an existing one is private.

    An existing directory is never chmod'ed: it may not be ours (``ZEROUI_SECRETS_DIR=/tmp``)
    and others may rely on its mode. One that others can read or write is refused instead.
    """
    try:
        directory.mkdir(mode=0o700, parents=True)  # a umask can only narrow 0700
        return
    except FileExistsError:
        pass
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise SecretStoreError(f"secrets directory {directory} is not a directory; set {ENV_DIR} to a directory")
    if st.st_uid != os.geteuid():
        raise SecretStoreError(f"secrets directory {directory} belongs to uid {st.st_uid}, not to you; "
                               f"set {ENV_DIR} to a directory of your own")
    if st.st_mode & 0o077:
        raise SecretStoreError(
            f"secrets directory {directory} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"keep the store in a directory of its own, mode 0700 (set {ENV_DIR})")


def _checked(data, path: Path) -> dict:
    """The file's content if it has the store's shape; a damaged file is one clear line."""
    roles = data.get("roles") if isinstance(data, dict) else None
    admins = data.get("admins", {}) if isinstance(data, dict) else None
    if (not isinstance(roles, dict) or not all(isinstance(e, dict) for e in roles.values())
            or not isinstance(admins, dict) or not all(isinstance(p, str) for p in admins.values())):
        raise SecretStoreError(f"{path} is damaged (not a secrets store); restore it from a backup, or move it "
                               "away to start afresh (every password is then new)")
    return data


class SecretStore:
    def __init__(self, site: str, directory: Path | None = None):
        self.site = check_site_name(site)
        self.path = (directory or default_dir()) / f"{site}.json"
        self._view: dict | None = None  # what this process works with, read on first use

    # -- the file ------------------------------------------------------------------------------

    def _read(self) -> dict:
        _private_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {"roles": {}}
        except OSError as e:
            raise SecretStoreError(f"{self.path}: cannot be read ({e.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if mode & 0o077:  # a store left readable by an older tool or a copy: tighten it
                try:
                    os.fchmod(fd, 0o600)
                except OSError as e:
                    raise SecretStoreError(f"{self.path} is readable by others (mode {mode:04o}) and cannot be "
                                           f"made 0600 ({e.strerror}); chmod 600 it") from None
            raw = f.read()
        try:
            return _checked(json.loads(raw.decode()), self.path)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            where = f" at byte {e.pos}" if isinstance(e, json.JSONDecodeError) else ""
            raise SecretStoreError(
                f"{self.path} is damaged (unreadable JSON{where}, {len(raw)} bytes); restore it from a backup, or "
                "move it away to start afresh (every password is then new)") from None

    def _write(self, data: dict) -> None:
        # A file of its own beside the store (mkstemp: O_EXCL, mode 0600), synced, renamed
        # over the store, and the directory synced: a crash leaves the old store or the new.
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextmanager
    def _changing(self) -> Iterator[dict]:
        """The store as it is on disk now, under an exclusive lock; written back on leaving.

        The lock is a file of its own (flock, released when the process dies), so readers
        never wait: they only ever see a whole file.
        """
        _private_dir(self.path.parent)
        lock_path = self.path.parent / f".{self.path.name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            for stale in self.path.parent.glob(f".{self.path.name}.*"):  # left by a killed writer
                if stale != lock_path:
                    with suppress(FileNotFoundError):
                        stale.unlink()
            data = self._read()
            yield data
            self._write(data)
        finally:
            os.close(fd)

    @property
    def _data(self) -> dict:
        if self._view is None:
            self._view = self._read()
        return self._view

    # -- passwords -----------------------------------------------------------------------------

    def ensure(self, roles) -> None:
        """Generate a password for every role that has none yet (first deploy)."""
        wanted = [r for r in roles if not os.environ.get(env_override_name(r))]
        if self.path.exists() and all("password" in self._data["roles"].get(r, {}) for r in wanted):
            return
        with self._changing() as data:
            for role in wanted:
                entry = data["roles"].setdefault(role, {})
                if "password" not in entry:
                    entry["password"] = secrets.token_urlsafe(PASSWORD_BYTES)
        self._view = copy.deepcopy(data)

    def password(self, role: str) -> str:
        override = os.environ.get(env_override_name(role))
        if override:
            return override
        try:
            return self._data["roles"][role]["password"]
        except KeyError:
            raise KeyError(f"no password for {role} in {self.path}; run the deploy to generate it") from None

    def applied_verifier(self, role: str) -> str | None:
        """The verifier last applied for ``role``, if it still fits the current password."""
        stored = self._data["roles"].get(role, {}).get("applied_verifier")
        if stored and scram.matches(self.password(role), stored):
            return stored
        return None

    def fresh_verifier(self, role: str) -> str:
        return scram.verifier(self.password(role))

    def record_applied(self, role: str, verifier: str) -> None:
        """Remember that ``verifier`` is on the server. Not when the password changed on disk
        since this process read it (a rotate meanwhile): the next deploy applies the new one."""
        self._data["roles"].setdefault(role, {})["applied_verifier"] = verifier
        with self._changing() as data:
            current = os.environ.get(env_override_name(role)) or data["roles"].get(role, {}).get("password")
            if current is not None and scram.matches(current, verifier):
                data["roles"].setdefault(role, {})["applied_verifier"] = verifier

    def rotate(self, role: str) -> None:
        """Forget the password: the next deploy generates a new one and applies it."""
        with self._changing() as data:
            data["roles"].pop(role, None)
        self._view = copy.deepcopy(data)

    # -- managed endpoints' admin passwords ----------------------------------------------------------

    @staticmethod
    def endpoint_admin_env(plane_key: str) -> str:
        return ENV_ADMIN_PASSWORD_PREFIX + plane_key.upper()

    def endpoint_admin_password(self, plane_key: str, required: bool = True) -> str | None:
        """The provider admin's password for the managed endpoint of ``plane_key``."""
        found = os.environ.get(self.endpoint_admin_env(plane_key)) or self._data.get("admins", {}).get(plane_key)
        if found is None and required:
            raise KeyError(f"no admin password for endpoint {plane_key}: set {self.endpoint_admin_env(plane_key)}")
        return found

    def set_endpoint_admin_password(self, plane_key: str, password: str) -> None:
        with self._changing() as data:
            data.setdefault("admins", {})[plane_key] = password
        self._view = copy.deepcopy(data)


class ServerChecked:
    """The store's passwords, checked against what the server really holds.

    Where the deploy can read ``pg_authid`` (the pilot's cluster, as its local superuser),
    ``live`` maps each existing role to the digest of its stored verifier
    (``facts.RoleVerifiers``). A role whose verifier no longer fits the store's password
    was changed behind the deploy's back: it reports no applied verifier, so the plan sets
    the password again. Roles not in ``live`` fall back to the store's record.
    """

    def __init__(self, store: SecretStore, live: dict[str, str | None]):
        self.store, self.live = store, live

    def applied_verifier(self, role: str) -> str | None:
        live = self.live.get(role, "")
        if role in self.live and (live is None or not scram.matches_digest(self.store.password(role), live)):
            return None  # changed (or cleared) behind the deploy's back: set it again
        return self.store.applied_verifier(role)

    def fresh_verifier(self, role: str) -> str:
        return self.store.fresh_verifier(role)

    def record_applied(self, role: str, verifier: str) -> None:
        self.store.record_applied(role, verifier)


# -- the command line -----------------------------------------------------------------------------


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\n")


def main(argv: list[str]) -> int:
    usage = "usage: python -m zeroui_db.secret_store path SITE | rotate SITE ROLE | set-admin SITE PLANE < password"
    verb, args = (argv[0], argv[1:]) if argv else (None, [])
    try:
        if verb == "path" and len(args) == 1:
            print(SecretStore(args[0]).path)
            return 0
        if verb == "rotate" and len(args) == 2:
            site, role = args
            if role not in PASSWORD_ROLES:
                print(f"unknown role {role!r}: rotate one of {', '.join(PASSWORD_ROLES)}", file=sys.stderr)
                return 2
            SecretStore(site).rotate(role)
            print(f"{role}: password forgotten; the next deploy sets a new one and rewrites the env files")
            return 0
        if verb == "set-admin" and len(args) == 2:
            site, plane = args
            if plane not in ENDPOINT_PLANES:
                print(f"unknown plane {plane!r}: one of {', '.join(ENDPOINT_PLANES)}", file=sys.stderr)
                return 2
            store = SecretStore(site)
            password = _read_password(f"admin password for the {plane} endpoint: ")
            if not password:
                print("no password given on stdin", file=sys.stderr)
                return 2
            store.set_endpoint_admin_password(plane, password)
            print(f"{plane}: admin password stored in {store.path}")
            return 0
    except SecretStoreError as e:
        print(e, file=sys.stderr)
        return 2
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
