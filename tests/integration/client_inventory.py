"""A second inventory for a deployed test site: the same ``zeroui`` data, and the client
groups' hosts as pyinfra reaches them over SSH (lab hosts running an sshd each), for
``zeroui-db verify``."""

from __future__ import annotations

import pprint
import runpy
from pathlib import Path

from deployment import Deployment
from lab import SshTarget


def write_client_inventory(d: Deployment, path: Path, hosts: dict[str, list[SshTarget]]) -> Path:
    """``hosts``: client group -> the SSH targets in it. The workstation stays @local."""
    site = runpy.run_path(str(d.inventory))["workstation"][1]["zeroui"]
    lines = [f"_SITE = {pprint.pformat(site)}", "workstation = (['@local'], {'zeroui': _SITE})"]
    for group, targets in hosts.items():
        entries = [(t.host, {"ssh_user": t.user, "ssh_key": t.key_path, "ssh_port": t.port,
                             "ssh_known_hosts_file": t.known_hosts_path,
                             # Only the pinned host key is trusted (pyinfra's default would accept a new one).
                             "ssh_strict_host_key_checking": "yes"}) for t in targets]
        lines.append(f"{group} = {entries!r}")
    path.write_text("\n".join(lines) + "\n")
    return path
