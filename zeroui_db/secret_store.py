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

    python -m zeroui_db.secret_store path pilot
    python -m zeroui_db.secret_store rotate pilot zeroui_tenant_app   # new password on next deploy
    python -m zeroui_db.secret_store set-admin cloud tenant < password-file
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

from . import scram

ENV_DIR = "ZEROUI_SECRETS_DIR"
ENV_PASSWORD_PREFIX = "ZEROUI_DB_PASSWORD_"
ENV_ADMIN_PASSWORD_PREFIX = "ZEROUI_DB_ADMIN_PASSWORD_"
PASSWORD_BYTES = 32


def default_dir() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "zeroui-db" / "secrets"


def env_override_name(role: str) -> str:
    return ENV_PASSWORD_PREFIX + role.upper()


class SecretStore:
    def __init__(self, site: str, directory: Path | None = None):
        self.path = (directory or default_dir()) / f"{site}.json"
        self._data = self._load()

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"roles": {}}

    def _save(self) -> None:
        # Write-then-rename so an interrupted run never leaves half a file; the
        # temporary file is created 0600 by mkstemp.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(self._data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def _entry(self, role: str) -> dict:
        return self._data["roles"].setdefault(role, {})

    def ensure(self, roles) -> None:
        """Generate a password for every role that has none yet (first deploy)."""
        missing = [r for r in roles if not os.environ.get(env_override_name(r)) and "password" not in self._entry(r)]
        for role in missing:
            self._entry(role)["password"] = secrets.token_urlsafe(PASSWORD_BYTES)
        if missing or not self.path.exists():
            self._save()

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
        self._entry(role)["applied_verifier"] = verifier
        self._save()

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
        self._data.setdefault("admins", {})[plane_key] = password
        self._save()

    def rotate(self, role: str) -> None:
        """Forget the password: the next deploy generates a new one and applies it."""
        self._data["roles"].pop(role, None)
        self._save()


def main(argv: list[str]) -> int:
    usage = "usage: python -m zeroui_db.secret_store path SITE | rotate SITE ROLE | set-admin SITE PLANE < password"
    if len(argv) == 2 and argv[0] == "path":
        print(SecretStore(argv[1]).path)
        return 0
    if len(argv) == 3 and argv[0] == "rotate":
        SecretStore(argv[1]).rotate(argv[2])
        print(f"{argv[2]}: password forgotten; the next deploy sets a new one and rewrites the env files")
        return 0
    if len(argv) == 3 and argv[0] == "set-admin":
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else __import__("getpass").getpass(
            f"admin password for the {argv[2]} endpoint: ")
        if not password:
            print("no password given on stdin", file=sys.stderr)
            return 2
        SecretStore(argv[1]).set_endpoint_admin_password(argv[2], password)
        print(f"{argv[2]}: admin password stored in {SecretStore(argv[1]).path}")
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
