"""The pilot on a remote workstation, deployed over SSH as a non-root operator who uses sudo.

Deploy with ``pyinfra inventories/pilot-sudo.py deploy.py`` from the operator's machine.
The operator (``ops`` here) logs in to the workstation with its key; every command of the
deploy runs there through ``sudo -n``, so the workstation needs a sudo rule that asks no
password, e.g. ``/etc/sudoers.d/zeroui-deploy`` (mode 0440, checked with ``visudo -cf``):

    ops ALL=(root) NOPASSWD: ALL

See README, "A remote workstation (SSH)".
"""

_WORKSTATION = "10.20.0.1"

_SITE = {
    "site": "pilot",
    "cluster": {
        "version": "distro",
        "name": "main",
        "port": 5432,
        # 127.0.0.1 carries the deploy's own admin connection (through the SSH session).
        "listen_addresses": ["127.0.0.1", _WORKSTATION],
        "connect_host": _WORKSTATION,  # what the env files' URLs dial
    },
    "clients": {
        "ide_laptops": {"networks": []},
        # The services run on the workstation and dial its address, so they come from it.
        "tenant_services": {"networks": [f"{_WORKSTATION}/32"]},
        "product_services": {"networks": [f"{_WORKSTATION}/32"]},
        "shared_services": {"networks": [f"{_WORKSTATION}/32"]},
        "admin_hosts": {"networks": ["127.0.0.1/32"]},
    },
    "env_files": {"dir": "/etc/zeroui/env", "mode": "0600"},
}

workstation = ([_WORKSTATION], {
    "zeroui": _SITE,
    "ssh_user": "ops",
    "ssh_key": "~/.ssh/id_ed25519",
    "_sudo": True,  # never "_sudo_password": pyinfra would pass it on the host's command line
})

tenant_services = [_WORKSTATION]
product_services = [_WORKSTATION]
shared_services = [_WORKSTATION]
