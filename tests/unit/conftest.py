import copy

import pytest

# A valid site as an inventory would write it; tests change one value at a time.
BASE = {
    "site": "pilot",
    "cluster": {"version": 15, "name": "main", "port": 5432, "listen_addresses": ["127.0.0.1", "10.20.0.1"]},
    "clients": {
        "ide_laptops": {"networks": ["10.30.0.0/16"]},
        "tenant_services": {"networks": ["10.20.1.0/24", "127.0.0.1/32"]},
        "product_services": {"networks": ["10.20.2.0/24", "127.0.0.1/32"]},
        "shared_services": {"networks": ["10.20.3.0/24", "127.0.0.1/32"]},
        "admin_hosts": {"networks": ["127.0.0.1/32"]},
    },
    "env_files": {"dir": "/etc/zeroui/env", "mode": "0600"},
}

# A site whose three planes are managed services (one server each), as a cloud inventory
# would write it: no cluster section, one endpoint per plane.
CLOUD = {
    "site": "cloud",
    "endpoints": {
        "tenant": {"host": "tenant-db.example.com", "ca_file": "/etc/zeroui/ca/tenant-provider.pem",
                   "admin_user": "zeroui_master"},
        "product": {"host": "product-db.example.com", "port": 6432, "ca_file": "/etc/zeroui/ca/product-provider.pem",
                    "admin_user": "zeroui_master", "channel_binding": "prefer"},
        "shared": {"host": "fd00::5", "ca_file": "/etc/zeroui/ca/shared-provider.pem",
                   "admin_user": "zeroui_master"},
    },
    "clients": copy.deepcopy(BASE["clients"]),
    "env_files": {"dir": "/etc/zeroui/env", "mode": "0600"},
}


@pytest.fixture
def data():
    return copy.deepcopy(BASE)


@pytest.fixture
def site(data):
    from zeroui_db.config import parse_site
    return parse_site(data)


@pytest.fixture
def cloud_data():
    return copy.deepcopy(CLOUD)


@pytest.fixture
def cloud_site(cloud_data):
    from zeroui_db.config import parse_site
    return parse_site(cloud_data)
