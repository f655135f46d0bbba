"""pg_hba rules: derived from the contract, rejects first, SCRAM only, PostgreSQL's matching."""

import ipaddress

import pytest

from zeroui_db import contract, hba
from zeroui_db.templates import render_template

# A host in each group's network of the unit-test site (tests/unit/conftest.py).
HOSTS = {
    contract.IDE_LAPTOPS: "10.30.4.5",
    contract.TENANT_SERVICES: "10.20.1.5",
    contract.PRODUCT_SERVICES: "10.20.2.5",
    contract.SHARED_SERVICES: "10.20.3.5",
}
LOGIN_ROLES = [r for p in contract.POSTGRES_PLANES for r in p.login_roles]
DATABASES = [p.store for p in contract.POSTGRES_PLANES]


def allowed(rules, **attempt) -> bool:
    rule = hba.first_match(rules, **attempt)
    return rule is not None and rule.method != "reject"


def test_no_weak_method_on_any_tcp_line(site):
    for rule in hba.rules(site):
        if rule.type != "local":
            assert rule.method in hba.ALLOWED_TCP_METHODS, rule


def test_every_allow_is_hostssl(site):
    assert all(r.type == "hostssl" for r in hba.rules(site) if r.method != "reject" and r.type != "local")


def test_hard_rule_rejects_stand_ahead_of_every_allow(site):
    rules = hba.rules(site)
    first_allow = next(i for i, r in enumerate(rules) if r.type != "local" and r.method != "reject")
    rule_rejects = [i for i, r in enumerate(rules) if r.comment.startswith("hard rule")]
    assert rule_rejects and max(rule_rejects) < first_allow
    # Rule 1 by the laptops' address, rule 2 by the tenant roles' credentials.
    assert any(r.address == ipaddress.ip_network("10.30.0.0/16") for r in rules if "hard rule 1" in r.comment)
    assert any(set(r.users) == set(contract.TENANT.login_roles) for r in rules if "hard rule 2" in r.comment)


def test_last_lines_refuse_everything(site):
    last = hba.rules(site)[-2:]
    assert [(r.databases, r.users, r.method) for r in last] == [(("all",), ("all",), "reject")] * 2
    assert {r.address for r in last} == {hba.ALL_V4, hba.ALL_V6}


@pytest.mark.parametrize("group", list(HOSTS))
@pytest.mark.parametrize("user", LOGIN_ROLES)
@pytest.mark.parametrize("database", DATABASES)
def test_matrix_follows_the_contract(site, group, user, database):
    """Each service group reaches only its own plane's database with that plane's roles."""
    expected = any(database == p.store and user in p.login_roles for p in group.default_planes)
    assert allowed(hba.rules(site), ssl=True, database=database, user=user, address=HOSTS[group]) == expected


def test_shared_workstation_still_enforces_rule_2(site):
    """On 127.0.0.1 all services share one host; tenant credentials are still refused at product/shared."""
    rules = hba.rules(site)
    for plane in (contract.PRODUCT, contract.SHARED):
        rule = hba.first_match(rules, ssl=True, database=plane.store, user=contract.TENANT.app_role,
                               address="127.0.0.1")
        assert rule.method == "reject" and "hard rule 2" in rule.comment
        assert allowed(rules, ssl=True, database=plane.store, user=plane.app_role, address="127.0.0.1")


def test_no_tls_no_superuser_no_stranger(site):
    rules = hba.rules(site)
    tenant = contract.TENANT
    assert not allowed(rules, ssl=False, database=tenant.store, user=tenant.app_role, address="10.20.1.5")
    assert not allowed(rules, ssl=True, database=tenant.store, user="postgres", address="127.0.0.1")
    assert not allowed(rules, ssl=True, database=tenant.store, user=tenant.app_role, address="192.168.9.9")
    assert not allowed(rules, ssl=True, database=tenant.store, user=tenant.app_role, address="::1")
    assert allowed(rules, ssl=False, database="postgres", user="postgres", address=None)  # local peer
    assert not allowed(rules, ssl=False, database=tenant.store, user=tenant.app_role, address=None)


def test_admin_only_from_admin_hosts(site):
    rules = hba.rules(site)
    for db in (contract.MAINTENANCE_DB, *DATABASES):
        assert allowed(rules, ssl=True, database=db, user=contract.ADMIN_ROLE, address="127.0.0.1")
        assert not allowed(rules, ssl=True, database=db, user=contract.ADMIN_ROLE, address="10.20.1.5")


def test_granted_extra_plane_is_allowed(data):
    """Planes granted beyond the default (allowed by the contract) get their own allow lines."""
    from zeroui_db.config import parse_site
    data["clients"]["product_services"]["planes"] = ["product", "shared"]
    rules = hba.rules(parse_site(data))
    assert allowed(rules, ssl=True, database=contract.SHARED.store, user=contract.SHARED.readonly_role,
                   address="10.20.2.5")


def test_template_lays_out_every_rule(site):
    text = render_template("pg_hba.conf.j2", **hba.template_context(site))
    lines = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [[c for c in r.columns if c] for r in hba.rules(site)]
    for word in ("trust", "password", "md5"):
        assert not any(word in line for line in lines if line[0] != "local")
