"""Inventory validation: each bad value stops the run with one line naming key and fix."""

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
    ("version", 9, "inventory pilot: cluster.version: 9 is not a supported PostgreSQL major; use 13 or newer, or 'distro'"),
    ("name", "Main!", "inventory pilot: cluster.name: 'Main!' is not a valid cluster name; "
                      "use lowercase letters, digits, '-' and '_'"),
    ("listen_addresses", ["*"], "inventory pilot: cluster.listen_addresses[0]: '*' is not an IP address; "
                                "list this host's own addresses (no '*', no host names)"),
    ("listen_addresses", ["10.20.0.1"], "inventory pilot: cluster.listen_addresses: lacks 127.0.0.1; "
                                        "add 127.0.0.1: the deploy's admin connection arrives over loopback"),
    ("colour", "blue", "inventory pilot: cluster.colour: unknown key; use one of: version, name, port, "
                       "listen_addresses, connect_host, ssl_cert_file, ssl_key_file"),
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
