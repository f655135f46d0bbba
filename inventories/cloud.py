"""ZeroUI going live: each plane database on a managed PostgreSQL service of its own.

The same planes, roles, schemas and env files as ``inventories/pilot.py``: only where the
databases are (the ``endpoints``) and the hosts change. No workstation, no superuser, no
pg_hba: the provider's network rules take pg_hba's place (print them with
``zeroui-db network-rules inventories/cloud.py``).

Deploy from the operator's machine with ``pyinfra inventories/cloud.py deploy.py``. Before
the first deploy, per endpoint, give the provider admin's password once, on stdin:
``python -m zeroui_db.secret_store set-admin cloud tenant`` (or set
``ZEROUI_DB_ADMIN_PASSWORD_TENANT`` from a secret manager). See README, "Going live".
"""

# The provider's CA bundle, downloaded to the operator's machine (RDS: global-bundle.pem;
# Cloud SQL: server-ca.pem; Azure: the DigiCert/Microsoft roots). The deploy verifies every
# endpoint with it and ships it beside the env files.
_CA = "/etc/zeroui/ca/provider-root.pem"

_SITE = {
    # Names the secrets store (~/.config/zeroui-db/secrets/cloud.json) and messages.
    "site": "cloud",
    "endpoints": {
        # host, port, database (the contract's by default), CA file, and the provider's admin
        # ("master") user: CREATEDB CREATEROLE, never a superuser (RDS rds_superuser, Cloud SQL
        # cloudsqlsuperuser, Azure azure_pg_admin), PostgreSQL 16 or newer.
        "tenant": {"host": "tenant-db.zeroui.example", "port": 5432, "ca_file": _CA, "admin_user": "zeroui_master"},
        "product": {"host": "product-db.zeroui.example", "port": 5432, "ca_file": _CA, "admin_user": "zeroui_master"},
        "shared": {"host": "shared-db.zeroui.example", "port": 5432, "ca_file": _CA, "admin_user": "zeroui_master"},
    },
    # Which networks each client group connects from: the provider's network rules allow
    # exactly these (see README, "Inventory format").
    "clients": {
        "ide_laptops": {"networks": []},  # laptops use SQLite; they never reach Postgres
        "tenant_services": {"networks": ["10.20.1.0/24"]},
        "product_services": {"networks": ["10.20.2.0/24"]},
        "shared_services": {"networks": ["10.20.3.0/24"]},
        "admin_hosts": {"networks": ["10.20.0.10/32"]},  # the operator's machine
    },
    "env_files": {"dir": "/etc/zeroui/env", "mode": "0600"},
}

# The operator's machine: the deploy works on the three databases from here.
admin_hosts = (["@local"], {"zeroui": _SITE})

# Hosts that run each plane's services receive that plane's env file and CA certificate.
tenant_services = (["10.20.1.10"], {"ssh_user": "root"})
product_services = (["10.20.2.10"], {"ssh_user": "root"})
shared_services = (["10.20.3.10"], {"ssh_user": "root"})
