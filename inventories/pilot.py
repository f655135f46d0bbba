"""The ZeroUI pilot: one on-prem workstation runs the PostgreSQL cluster, and the
tenant, product and shared services run on that workstation too.

Deploy with ``pyinfra inventories/pilot.py deploy.py`` (or ``./bundle deploy``).
To deploy a remote workstation over SSH, replace "@local" with its address and add
``"ssh_user": "root"``, or an operator's account with ``"_sudo": True`` (see
``inventories/pilot-sudo.py`` and README, "A remote workstation").
"""

_SITE = {
    # Names the secrets store (~/.config/zeroui-db/secrets/pilot.json) and messages.
    "site": "pilot",
    "cluster": {
        "version": "distro",  # the distribution's PostgreSQL major (15 on Debian 12)
        "name": "main",
        "port": 5432,
        "listen_addresses": ["127.0.0.1"],
    },
    # Which networks each client group connects from; see README, "Inventory format".
    "clients": {
        "ide_laptops": {"networks": []},  # laptops use SQLite; they never reach Postgres
        "tenant_services": {"networks": ["127.0.0.1/32"]},
        "product_services": {"networks": ["127.0.0.1/32"]},
        "shared_services": {"networks": ["127.0.0.1/32"]},
        "admin_hosts": {"networks": ["127.0.0.1/32"]},
    },
    "env_files": {"dir": "/etc/zeroui/env", "mode": "0600"},
}

# Runs the cluster; carries the site settings for every host of this inventory.
workstation = (["@local"], {"zeroui": _SITE})

# Hosts that run each plane's services receive that plane's env file.
tenant_services = ["@local"]
product_services = ["@local"]
shared_services = ["@local"]
