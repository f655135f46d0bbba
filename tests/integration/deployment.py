"""Running the real deploy (pyinfra's CLI, as a user would) against test inventories."""

from __future__ import annotations

import json
import os
import pprint
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


@dataclass
class Deployment:
    """One test site: its inventory, cluster and the places it writes to."""

    workdir: Path
    site: str
    version: int
    cluster: str
    port: int
    server_address: str  # where client hosts connect
    env_dir: Path
    secrets_dir: Path
    inventory: Path = field(init=False)

    def __post_init__(self):
        self.inventory = self.workdir / f"{self.site}.py"

    def write_inventory(self, networks: dict[str, list[str]], listen: list[str], host: str = "@local",
                        host_data: dict | None = None) -> Path:
        site = {
            "site": self.site,
            "cluster": {"version": self.version, "name": self.cluster, "port": self.port,
                        "listen_addresses": listen, "connect_host": self.server_address},
            "clients": {group: {"networks": nets} for group, nets in networks.items()},
            "env_files": {"dir": str(self.env_dir)},
        }
        data = {"zeroui": site, **(host_data or {})}
        self.inventory.write_text(
            f"workstation = ([{host!r}], {pprint.pformat(data)})\n"
            f"tenant_services = [{host!r}]\nproduct_services = [{host!r}]\nshared_services = [{host!r}]\n"
        )
        return self.inventory

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "ZEROUI_SECRETS_DIR": str(self.secrets_dir)}

    def secrets(self) -> dict:
        return json.loads((self.secrets_dir / f"{self.site}.json").read_text())

    @property
    def ca_file(self) -> str:
        """The site CA's certificate on the control machine (beside the secrets store)."""
        return str(self.secrets_dir / f"{self.site}-ca.crt")

    def password(self, role: str) -> str:
        return self.secrets()["roles"][role]["password"]

    def deploy(self, *args: str, check: bool = True, argv_prefix: Sequence[str] = ()) -> DeployRun:
        return run_deploy(self.inventory, *args, env=self.env, check=check, argv_prefix=argv_prefix)

    def zeroui_db(self, verb: str, *args: str) -> subprocess.CompletedProcess:
        """``zeroui-db VERB INVENTORY ARGS`` as a user runs it, on this site."""
        return subprocess.run([sys.executable, "-m", "zeroui_db.cli", verb, str(self.inventory), *args],
                              cwd=REPO, env=self.env, text=True, capture_output=True, timeout=600)


@dataclass
class CloudDeployment:
    """A site whose planes are managed-service stand-ins (standins.StandIn), deployed from @local."""

    workdir: Path
    site: str
    standins: dict  # plane key -> StandIn
    networks: dict[str, list[str]]  # client group -> networks
    inventory: Path = field(init=False)

    def __post_init__(self):
        self.inventory = self.workdir / f"{self.site}.py"
        self.env_dir, self.secrets_dir = self.workdir / "env", self.workdir / "secrets"
        site = {
            "site": self.site,
            "endpoints": {key: {"host": s.address, "port": s.port, "ca_file": str(s.ca_file), "admin_user": s.master}
                          for key, s in self.standins.items()},
            "clients": {group: {"networks": nets} for group, nets in self.networks.items()},
            "env_files": {"dir": str(self.env_dir)},
        }
        self.inventory.write_text(
            f"admin_hosts = (['@local'], {pprint.pformat({'zeroui': site})})\n"
            "tenant_services = ['@local']\nproduct_services = ['@local']\nshared_services = ['@local']\n")

    @property
    def env(self) -> dict[str, str]:
        # The providers' admin passwords come from the environment, as from a secret manager.
        return {**os.environ, "ZEROUI_SECRETS_DIR": str(self.secrets_dir),
                **{f"ZEROUI_DB_ADMIN_PASSWORD_{k.upper()}": s.master_password for k, s in self.standins.items()}}

    def password(self, role: str) -> str:
        return json.loads((self.secrets_dir / f"{self.site}.json").read_text())["roles"][role]["password"]

    def deploy(self, *args: str, check: bool = True) -> DeployRun:
        return run_deploy(self.inventory, *args, env=self.env, check=check)


@dataclass
class DeployRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def results(self) -> dict:
        return json.loads(self.stdout)["results"]

    @property
    def changed(self) -> list[str]:
        """Names of the operations that changed something (pyinfra's own result data)."""
        return [op["name"] for op in self.results["operations"] if op["success"]]

    @property
    def errors(self) -> list[str]:
        return [op["name"] for op in self.results["operations"] if op["error"]]


def run_deploy(inventory: Path, *args: str, env: dict | None = None, check: bool = True,
               json_output: bool = True, argv_prefix: Sequence[str] = (), cwd: Path = REPO) -> DeployRun:
    """Run the deploy; ``argv_prefix`` wraps pyinfra, e.g. ``["ip", "netns", "exec", ns]``; ``cwd``
    holds the deploy.py and zeroui_db to run (pyinfra puts it first on sys.path)."""
    # --dry with -y would skip change detection altogether: a dry run must not say "yes".
    yes = [] if "--dry" in args else ["-y"]
    argv = [*argv_prefix, PYINFRA, *(["--json"] if json_output else []), *yes, *args, str(inventory), "deploy.py"]
    proc = subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=True, timeout=600)
    run = DeployRun(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"deploy failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return run
