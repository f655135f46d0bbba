"""Inventory validation: each bad value stops the run with one line naming key and fix."""

import re

import pytest

from zeroui_db import contract
from zeroui_db.config import ConfigError, parse_site


def error(data) -> str:
    with pytest.raises(ConfigError) as e:
        parse_site(data)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_valid_site_is_typed(site):
    assert site.cluster.port == 5432
    assert [str(a) for a in site.cluster.listen_addresses] == ["127.0.0.1", "10.20.0.1"]
    assert site.access(contract.TENANT_SERVICES).planes == (contract.TENANT,)
    assert site.access(contract.IDE_LAPTOPS).planes == ()
    assert site.cluster.connect_host == "127.0.0.1"


def test_defaults_fill_an_almost_empty_site():
    site = parse_site({"site": "x"})
    assert (site.cluster.version, site.cluster.name, site.cluster.port) == (None, "main", 5432)
    assert [str(n) for n in site.access(contract.ADMIN_HOSTS).networks] == ["127.0.0.1/32"]
    assert site.env_files.dir == "/etc/zeroui/env" and site.env_files.mode == "0600"


def test_missing_zeroui_data():
    with pytest.raises(ConfigError) as e:
        parse_site(None, "pilot")
    assert str(e.value) == (
        "inventory pilot: zeroui: missing; give the workstation group a 'zeroui' dict "
        "(see README, 'Inventory format')"
    )


def test_invalid_cidr(data):
    data["clients"]["tenant_services"]["networks"][0] = "10.0.0.300/24"
    assert error(data) == (
        "inventory pilot: clients.tenant_services.networks[0]: '10.0.0.300/24' is not a valid CIDR network; "
        "write the network address with its prefix, e.g. 10.20.0.0/16 or 10.20.0.5/32"
    )


def test_host_bits_set(data):
    data["clients"]["product_services"]["networks"][0] = "10.20.2.7/24"
    assert error(data) == (
        "inventory pilot: clients.product_services.networks[0]: '10.20.2.7/24' has host bits set; write 10.20.2.0/24"
    )


def test_unknown_group(data):
    data["clients"]["tenant_servics"] = {"networks": []}
    assert error(data) == (
        "inventory pilot: clients.tenant_servics: unknown key; "
        "use one of: ide_laptops, tenant_services, product_services, shared_services, admin_hosts"
    )


def test_unknown_plane(data):
    data["clients"]["tenant_services"]["planes"] = ["billing"]
    assert error(data) == (
        "inventory pilot: clients.tenant_services.planes[0]: unknown plane 'billing'; use one of: tenant, product, shared"
    )


def test_ide_plane_is_not_a_server_database(data):
    data["clients"]["tenant_services"]["planes"] = ["ide"]
    assert "is not a server database" in error(data)


@pytest.mark.parametrize("group,plane,rule", [
    ("ide_laptops", "product", 1), ("ide_laptops", "shared", 1),
    ("tenant_services", "product", 2), ("tenant_services", "shared", 2),
])
def test_hard_rules_refuse_grants(data, group, plane, rule):
    data["clients"][group]["planes"] = [plane]
    g, p = contract.CLIENT_GROUPS_BY_KEY[group], contract.PLANES_BY_KEY[plane]
    text = next(r.text for r in contract.HARD_RULES if r.number == rule)
    assert error(data) == (
        f"inventory pilot: clients.{group}.planes[0]: {g.title} may not reach {p.store}: hard rule {rule} ({text}); "
        "remove it; the contract does not allow this grant"
    )


def test_overlap_that_makes_a_rule_ambiguous(data):
    data["clients"]["ide_laptops"]["networks"] = ["10.20.0.0/16"]  # covers product's 10.20.2.0/24
    assert error(data) == (
        "inventory pilot: clients.ide_laptops.networks[0]: 10.20.0.0/16 overlaps 10.20.2.0/24 of "
        "clients.product_services, so hard rule 1 cannot tell them apart; give IDE laptops a network of their own"
    )


def test_ide_overlapping_admin_hosts_is_ambiguous(data):
    """Admin hosts reach every plane database, so they may not share the laptops' network either."""
    for group in ("tenant_services", "product_services", "shared_services"):
        data["clients"][group]["networks"] = data["clients"][group]["networks"][:1]
    data["clients"]["ide_laptops"]["networks"] = ["127.0.0.0/8"]
    assert error(data) == (
        "inventory pilot: clients.ide_laptops.networks[0]: 127.0.0.0/8 overlaps 127.0.0.1/32 of "
        "clients.admin_hosts, so hard rule 1 cannot tell them apart; give IDE laptops a network of their own"
    )


def test_tenant_may_share_hosts_with_other_services(site):
    """Tenant services hold credentials, so rule 2 is enforced by role where hosts are shared."""
    assert site.access(contract.TENANT_SERVICES).networks[1] == site.access(contract.PRODUCT_SERVICES).networks[1]


def test_missing_site_name(data):
    del data["site"]
    assert error(data) == "inventory ?: site: missing; name the site, e.g. 'pilot'"


@pytest.mark.parametrize("key,value,message", [
    ("port", "5432", "inventory pilot: cluster.port: expected a whole number, got '5432'; write a whole number"),
    ("port", 80, "inventory pilot: cluster.port: 80 is out of range; use a port from 1024 to 65535"),
    ("version", 9, "inventory pilot: cluster.version: 9 is not a supported PostgreSQL major; use 15 or newer, or 'distro'"),
    ("name", "Main!", "inventory pilot: cluster.name: 'Main!' is not a valid cluster name; "
                      "use lowercase letters, digits, '-' and '_'"),
    ("listen_addresses", ["*"], "inventory pilot: cluster.listen_addresses[0]: '*' is not an IP address; "
                                "list this host's own addresses (no '*', no host names)"),
    ("listen_addresses", ["10.20.0.1"], "inventory pilot: cluster.listen_addresses: lacks 127.0.0.1; "
                                        "add 127.0.0.1: the deploy's admin connection arrives over loopback"),
    ("colour", "blue", "inventory pilot: cluster.colour: unknown key; use one of: version, name, port, "
                       "listen_addresses, connect_host, ssl_cert_file, ssl_key_file, ssl_ca_file"),
])
def test_cluster_values(data, key, value, message):
    data["cluster"][key] = value
    assert error(data) == message


def test_env_file_group_mode_needs_a_group(data):
    data["env_files"]["mode"] = "0640"
    assert error(data) == (
        "inventory pilot: env_files.group: missing for mode 0640; name the group whose members may read the env files"
    )


def test_env_file_mode_is_restricted(data):
    data["env_files"]["mode"] = "0644"
    assert error(data) == "inventory pilot: env_files.mode: '0644' is not allowed; use 0600 or 0640"


def test_admin_hosts_keep_loopback(data):
    data["clients"]["admin_hosts"]["networks"] = ["10.9.0.0/24"]
    assert error(data) == (
        "inventory pilot: clients.admin_hosts.networks: lacks 127.0.0.1; "
        "add 127.0.0.1/32: the deploy's admin connection arrives over loopback"
    )


# --- Plane endpoints: the pilot's cluster, or managed services ------------------------------

# Every refusal is one line: "inventory <site>: <key>: <problem>; <fix>".
ONE_LINE = re.compile(r"inventory [a-z0-9_-]+: [A-Za-z0-9_.\[\]]+: .+; .+")  # "." stops at a newline

HOST_FIX = "write a DNS name such as db.example.com, or an IP address such as 10.0.0.5 or fd00::5"


def refused(data) -> str:
    message = error(data)
    assert ONE_LINE.fullmatch(message), message
    return message


def test_pilot_has_one_server_with_three_workstation_endpoints(site):
    (server,) = site.servers
    assert server.workstation and server.admin_user == "zeroui_admin" and server.admin_host == "127.0.0.1"
    assert server.planes == (contract.TENANT, contract.PRODUCT, contract.SHARED)
    assert [(e.plane.key, e.host, e.port, e.database, e.admin_user, e.ca_file, e.channel_binding, e.workstation)
            for e in server.endpoints] == [
        ("tenant", "127.0.0.1", 5432, "zeroui_tenant_pg", "zeroui_admin", None, "require", True),
        ("product", "127.0.0.1", 5432, "zeroui_product_pg", "zeroui_admin", None, "require", True),
        ("shared", "127.0.0.1", 5432, "zeroui_shared_pg", "zeroui_admin", None, "require", True),
    ]
    assert site.endpoint(contract.PRODUCT) is server.endpoints[1]
    assert "pg_hba" in server.first.manages


def test_pilot_endpoints_follow_connect_host_and_own_certificate(data):
    data["cluster"].update(port=5433, connect_host="10.20.0.1", ssl_cert_file="/etc/zeroui/tls/db.crt",
                           ssl_key_file="/etc/zeroui/tls/db.key", ssl_ca_file="/etc/zeroui/tls/ca.crt")
    site = parse_site(data)
    assert {(e.host, e.port, e.ca_file) for e in site.endpoints.values()} == {
        ("10.20.0.1", 5433, "/etc/zeroui/tls/ca.crt")}


def test_cloud_site_has_three_managed_endpoints_and_servers(cloud_site):
    assert cloud_site.cluster is None
    assert [(e.plane.key, e.host, e.port, e.database, e.admin_user, e.ca_file, e.channel_binding, e.workstation)
            for e in cloud_site.endpoints.values()] == [
        ("tenant", "tenant-db.example.com", 5432, "zeroui_tenant_pg", "zeroui_master",
         "/etc/zeroui/ca/tenant-provider.pem", "require", False),
        ("product", "product-db.example.com", 6432, "zeroui_product_pg", "zeroui_master",
         "/etc/zeroui/ca/product-provider.pem", "prefer", False),
        ("shared", "fd00::5", 5432, "zeroui_shared_pg", "zeroui_master",
         "/etc/zeroui/ca/shared-provider.pem", "require", False),
    ]
    assert [(s.planes, s.workstation, s.admin_host, s.port) for s in cloud_site.servers] == [
        ((contract.TENANT,), False, "tenant-db.example.com", 5432),
        ((contract.PRODUCT,), False, "product-db.example.com", 6432),
        ((contract.SHARED,), False, "fd00::5", 5432),
    ]
    assert cloud_site.endpoint(contract.TENANT).manages == ("database",)


def test_one_managed_plane_beside_the_cluster(data, cloud_data):
    data["endpoints"] = {"tenant": cloud_data["endpoints"]["tenant"]}
    site = parse_site(data)
    assert [(s.planes, s.workstation, s.admin_user) for s in site.servers] == [
        ((contract.TENANT,), False, "zeroui_master"),
        ((contract.PRODUCT, contract.SHARED), True, "zeroui_admin"),
    ]


def test_endpoints_on_one_server_share_it(cloud_data):
    cloud_data["endpoints"]["product"].update(host="tenant-db.example.com", port=5432,
                                              ca_file="/etc/zeroui/ca/tenant-provider.pem")
    site = parse_site(cloud_data)
    assert [s.planes for s in site.servers] == [(contract.TENANT, contract.PRODUCT), (contract.SHARED,)]


@pytest.mark.parametrize("host", ["fd00::7", "FD00:0:0::7", "10.40.0.7", "db", "tenant-db.eu-west-1.rds.example.com",
                                  "db.example.com."])
def test_endpoint_host_accepted(cloud_data, host):
    cloud_data["endpoints"]["tenant"]["host"] = host
    expected = "fd00::7" if host.lower().startswith("fd00") else host  # IPv6 in its canonical form
    assert parse_site(cloud_data).endpoint(contract.TENANT).host == expected


@pytest.mark.parametrize("host", ["tenant-db\n.example.com", "tenant-db.example.com\nX=1", "tenant'db.example.com",
                                  'tenant"db', "tenant db.example.com", "app@tenant-db.example.com",
                                  "tenant-db.example.com/x", "[fd00::5]", "tenant-db.example.com:5432", "",
                                  "-tenant.example.com", "db.example.com;reboot"])
def test_endpoint_host_refused(cloud_data, host):
    cloud_data["endpoints"]["tenant"]["host"] = host
    assert refused(cloud_data) == (
        f"inventory cloud: endpoints.tenant.host: {host!r} is not a host name or IP address; {HOST_FIX}")


@pytest.mark.parametrize("where", ["endpoint", "connect_host"])
def test_host_with_a_trailing_newline_refused(data, cloud_data, where):
    if where == "endpoint":
        cloud_data["endpoints"]["tenant"]["host"] = "tenant-db.example.com\n"
        assert refused(cloud_data).startswith("inventory cloud: endpoints.tenant.host: ")
    else:
        data["cluster"]["connect_host"] = "db.pilot.internal\n"
        assert refused(data).startswith("inventory pilot: cluster.connect_host: ")


@pytest.mark.parametrize("port,message", [
    (0, "0 is out of range; use a port from 1 to 65535"),
    (65536, "65536 is out of range; use a port from 1 to 65535"),
    ("5432", "expected a whole number, got '5432'; write a whole number"),
    (True, "expected a whole number, got True; write a whole number"),
])
def test_endpoint_port_refused(cloud_data, port, message):
    cloud_data["endpoints"]["product"]["port"] = port
    assert refused(cloud_data) == f"inventory cloud: endpoints.product.port: {message}"


def test_endpoint_without_ca_file_refused(cloud_data):
    del cloud_data["endpoints"]["shared"]["ca_file"]
    assert refused(cloud_data) == (
        "inventory cloud: endpoints.shared.ca_file: missing; name the provider's CA certificate file "
        "(e.g. RDS's global bundle): clients verify the server with it")


def test_endpoint_without_admin_user_refused(cloud_data):
    del cloud_data["endpoints"]["tenant"]["admin_user"]
    assert refused(cloud_data) == (
        "inventory cloud: endpoints.tenant.admin_user: missing; the provider's admin (master) user, e.g. zeroui_master")


@pytest.mark.parametrize("key,value", [("admin_user", "zeroui master"), ("admin_user", 'x"y'),
                                       ("database", "tenant;db"), ("database", "1tenant")])
def test_endpoint_names_refused(cloud_data, key, value):
    cloud_data["endpoints"]["tenant"][key] = value
    assert refused(cloud_data) == (
        f"inventory cloud: endpoints.tenant.{key}: {value!r} is not a plain PostgreSQL name; "
        "use letters, digits and '_'")


def test_endpoint_channel_binding_refused(cloud_data):
    cloud_data["endpoints"]["tenant"]["channel_binding"] = "disable"
    assert refused(cloud_data) == (
        "inventory cloud: endpoints.tenant.channel_binding: 'disable' is not allowed; use require or prefer "
        "(prefer only where the service offers no SCRAM-SHA-256-PLUS)")


def test_unknown_endpoint_key_refused(cloud_data):
    cloud_data["endpoints"]["tenant"]["password"] = "hunter2"
    assert refused(cloud_data) == (
        "inventory cloud: endpoints.tenant.password: unknown key; "
        "use one of: host, port, database, ca_file, admin_user, channel_binding")


@pytest.mark.parametrize("plane", ["billing", "ide"])
def test_endpoint_for_an_unknown_plane_refused(cloud_data, plane):
    cloud_data["endpoints"][plane] = dict(cloud_data["endpoints"]["tenant"])
    assert refused(cloud_data) == (
        f"inventory cloud: endpoints.{plane}: unknown key; use one of: tenant, product, shared")


def test_cluster_with_every_plane_managed_refused(cloud_data):
    cloud_data["cluster"] = {"listen_addresses": ["127.0.0.1"]}
    assert refused(cloud_data) == (
        "inventory cloud: cluster: no plane lives on it (every plane has an endpoint); "
        "remove the cluster section, or an endpoint so that plane stays on the cluster")


def test_endpoints_sharing_an_address_with_different_admins_refused(cloud_data):
    cloud_data["endpoints"]["product"].update(host="tenant-db.example.com", port=5432,
                                              ca_file="/etc/zeroui/ca/tenant-provider.pem", admin_user="other_master")
    assert refused(cloud_data) == (
        "inventory cloud: endpoints.product: shares tenant-db.example.com:5432 with tenant but not its admin_user "
        "and ca_file; one server has one admin and one CA: make them equal")


def test_two_planes_in_one_database_refused(cloud_data):
    cloud_data["endpoints"]["product"].update(host="tenant-db.example.com", port=5432, database="zeroui_tenant_pg",
                                              ca_file="/etc/zeroui/ca/tenant-provider.pem")
    assert refused(cloud_data).startswith("inventory cloud: endpoints.product")


@pytest.mark.parametrize("value", ["/etc/zeroui/ca/it's.pem", '/etc/zeroui/"ca".pem', "/etc/zeroui/ca bundle.pem",
                                   "/etc/zeroui/ca.pem\n", "/etc/zeroui/$(id).pem", "ca.pem"])
def test_endpoint_ca_file_must_be_a_plain_absolute_path(cloud_data, value):
    cloud_data["endpoints"]["tenant"]["ca_file"] = value
    assert refused(cloud_data) == (
        f"inventory cloud: endpoints.tenant.ca_file: {value!r} is not a plain absolute path; "
        "write an absolute path without quotes, spaces or shell characters")


def test_connect_host_ip_must_be_listened_on(data):
    data["cluster"]["connect_host"] = "10.20.0.9"
    assert refused(data) == (
        "inventory pilot: cluster.connect_host: 10.20.0.9 is not one of listen_addresses; "
        "use an address the server listens on, or add it to listen_addresses")


@pytest.mark.parametrize("value", ["10.20.0.1\nX=1", "db.pilot\n.internal", "10.20.0.1 ", "db'pilot"])
def test_connect_host_refused(data, value):
    data["cluster"]["connect_host"] = value
    assert refused(data) == (
        f"inventory pilot: cluster.connect_host: {value!r} is not a host name or IP address; {HOST_FIX}")


@pytest.mark.parametrize("value,expected", [("10.20.0.1", "10.20.0.1"), ("db.pilot.internal", "db.pilot.internal")])
def test_connect_host_accepted(data, value, expected):
    data["cluster"]["connect_host"] = value
    assert parse_site(data).cluster.connect_host == expected


def test_connect_host_ipv6_must_be_listened_on(data):
    data["cluster"]["connect_host"] = "fd00::5"
    assert refused(data).startswith("inventory pilot: cluster.connect_host: fd00::5 is not one of listen_addresses;")
    data["cluster"]["listen_addresses"].append("fd00:0::5")
    assert parse_site(data).endpoint(contract.SHARED).host == "fd00::5"


def test_own_certificate_needs_its_ca(data):
    data["cluster"].update(ssl_cert_file="/etc/zeroui/tls/db.crt", ssl_key_file="/etc/zeroui/tls/db.key")
    assert refused(data) == (
        "inventory pilot: cluster.ssl_ca_file: missing for a certificate of your own; name the CA certificate "
        "that signed ssl_cert_file (a file on this machine): clients verify the server")


@pytest.mark.parametrize("key", ["ssl_cert_file", "ssl_key_file", "ssl_ca_file"])
def test_cluster_paths_refuse_quotes(data, key):
    data["cluster"].update(ssl_cert_file="/etc/zeroui/tls/db.crt", ssl_key_file="/etc/zeroui/tls/db.key",
                           ssl_ca_file="/etc/zeroui/tls/ca.crt")
    data["cluster"][key] = "/etc/zeroui/tls/it's"
    assert refused(data) == (
        f"inventory pilot: cluster.{key}: \"/etc/zeroui/tls/it's\" is not a plain absolute path; "
        "write an absolute path without quotes, spaces or shell characters")


# --- Locks and limits; backups ------------------------------------------------------------------

def test_limits_default_to_a_budget_of_95_connections_on_the_pilot(site):
    limits = site.limits
    assert (limits.app.connections, limits.readonly.connections, limits.audit.connections,
            limits.admin_connections, limits.reserved_connections) == (20, 5, 5, 10, 5)
    assert dict(limits.audit.settings)["statement_timeout"] == "1min"
    assert dict(limits.app.settings) == {"statement_timeout": "30s", "lock_timeout": "5s",
                                         "idle_in_transaction_session_timeout": "60s"}
    assert dict(limits.readonly.settings)["statement_timeout"] == "5min"
    assert limits.max_connections(3) == 3 * (20 + 5) + 5 + 10 + 5
    assert all(server.limits == limits for server in site.servers)


def test_limits_from_the_inventory(data):
    data["limits"] = {"app": {"connections": 50, "lock_timeout": "2s"}, "reserved_connections": 3}
    limits = parse_site(data).limits
    assert limits.app.connections == 50 and dict(limits.app.settings)["lock_timeout"] == "2s"
    assert limits.max_connections(3) == 3 * (50 + 5) + 5 + 10 + 3


@pytest.mark.parametrize("limits,message", [
    ({"app": {"lock_timeout": "0"}}, "inventory pilot: limits.app.lock_timeout: '0' is not a duration; write a whole "
                                     "number and a unit (ms, s, min, h, d), e.g. '5s'; 0 (no limit) is not allowed"),
    ({"readonly": {"statement_timeout": "5 min'; SET x = '1"}},
     "inventory pilot: limits.readonly.statement_timeout: \"5 min'; SET x = '1\" is not a duration; write a whole "
     "number and a unit (ms, s, min, h, d), e.g. '5s'; 0 (no limit) is not allowed"),
    ({"app": {"connections": 0}}, "inventory pilot: limits.app.connections: 0 is out of range; "
                                  "keep between 1 and 10000 connections"),
    ({"admin_connections": 1}, "inventory pilot: limits.admin_connections: 1 is out of range; "
                               "keep between 2 and 1000 connections"),
    ({"audit": {"connections": 3}}, "inventory pilot: limits.audit.connections: 3 is out of range; "
                                    "keep between 4 and 10000 connections"),
    ({"app": {"work_mem": "4MB"}}, "inventory pilot: limits.app.work_mem: unknown key; use one of: connections, "
                                   "statement_timeout, lock_timeout, idle_in_transaction_session_timeout"),
])
def test_limits_refused(data, limits, message):
    data["limits"] = limits
    assert refused(data) == message


def test_backup_defaults(site):
    b = site.backup
    assert (b.repository, b.retention_full, b.full_schedule, b.incremental_schedule, b.archive_timeout) == (
        "/var/lib/pgbackrest", 2, "30 1 * * 0", "30 1 * * 1-6", 60)


def test_backup_from_the_inventory(data):
    data["backup"] = {"repository": "/srv/backups/pg", "retention_full": 4, "full_schedule": "0  3 * * 6",
                      "incremental_schedule": "0 */6 * * *"}
    b = parse_site(data).backup
    assert (b.repository, b.retention_full, b.full_schedule, b.incremental_schedule) == (
        "/srv/backups/pg", 4, "0 3 * * 6", "0 */6 * * *")


@pytest.mark.parametrize("backup,message", [
    ({"repository": "/var/lib"}, "inventory pilot: backup.repository: /var/lib is a system or shared directory; "
                                 "give the backups a directory of their own, such as /var/lib/pgbackrest "
                                 "(the deploy makes it postgres's)"),
    ({"repository": "/home/alice"}, "inventory pilot: backup.repository: /home/alice is a system or shared "
                                    "directory; give the backups a directory of their own, such as "
                                    "/var/lib/pgbackrest (the deploy makes it postgres's)"),
    ({"repository": "backups"}, "inventory pilot: backup.repository: 'backups' is not a plain absolute path; "
                                "write an absolute path without quotes, spaces or shell characters"),
    ({"full_schedule": "@weekly"}, "inventory pilot: backup.full_schedule: '@weekly' is not a cron schedule; write "
                                   "cron's five time fields with digits, '*', ',', '-' and '/', e.g. '30 1 * * 0'"),
    ({"incremental_schedule": "30 1 * * 1 root rm -rf /"},
     "inventory pilot: backup.incremental_schedule: '30 1 * * 1 root rm -rf /' is not a cron schedule; write "
     "cron's five time fields with digits, '*', ',', '-' and '/', e.g. '30 1 * * 0'"),
    ({"retention_full": 0}, "inventory pilot: backup.retention_full: 0 is out of range; "
                            "keep between 1 and 100 full backups"),
])
def test_backup_refused(data, backup, message):
    data["backup"] = backup
    assert refused(data) == message


def test_backup_of_a_site_without_a_cluster_refused(cloud_data):
    cloud_data["backup"] = {"retention_full": 3}
    assert refused(cloud_data) == ("inventory cloud: backup: set, but no plane lives on a workstation cluster; "
                                   "remove it: a managed service backs up itself (see README, 'Backups')")
