"""Overlap index and collapsing, against the obvious quadratic and library answers."""

import ipaddress

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zeroui_db import contract, hba
from zeroui_db.config import ConfigError, GroupAccess, overlaps, parse_site
from zeroui_db.networks import NetworkRanges, collapse

# Small address spaces, so that random networks often overlap, touch or contain each other.
V4_BASE, V6_BASE = int(ipaddress.ip_address("10.0.0.0")), int(ipaddress.ip_address("fd00::"))


SPACE = 6  # bits: 64 addresses per family


@st.composite
def network(draw, families=(4, 6), base4=V4_BASE, widest=SPACE):
    """A network of 2**0 to 2**widest addresses in the small space."""
    family = draw(st.sampled_from(families))
    bits, base = (32, base4) if family == 4 else (128, V6_BASE)
    prefix = draw(st.integers(bits - widest, bits))
    offset = draw(st.integers(0, (1 << SPACE) - 1)) >> (bits - prefix) << (bits - prefix)
    return ipaddress.ip_network((base + offset, prefix))


networks = st.lists(network(), max_size=25)


@settings(deadline=None)  # timing varies on a loaded machine; the property does not
@given(networks, networks)
def test_overlap_index_agrees_with_pairwise_comparison(theirs, mine):
    ranges = NetworkRanges(theirs)
    for net in mine:
        naive = [t for t in theirs if t.version == net.version and t.overlaps(net)]
        found = ranges.overlapping(net)
        assert (found is None) == (not naive)
        if found is not None:
            assert theirs[found].overlaps(net)


@settings(deadline=None)  # timing varies on a loaded machine; the property does not
@given(st.one_of(networks, st.lists(network(widest=2), max_size=12)))  # the latter: small ones, gaps between
def test_collapse_is_what_ipaddress_collapses(nets):
    expected = [n for family in (4, 6) for n in ipaddress.collapse_addresses(n for n in nets if n.version == family)]
    assert collapse(nets) == expected


def naive_overlaps(site, rule):
    """The pairwise definition: every (network index, other group) that shares an address."""
    mine = site.access(rule.group)
    return {(i, other.group.key)
            for other in site.clients.values()
            if other is not mine and any(config_reaches(other, p) for p in rule.forbidden)
            for i, net in enumerate(mine.networks)
            for theirs in other.networks if net.version == theirs.version and net.overlaps(theirs)}


def config_reaches(access, plane):
    return access.group is contract.ADMIN_HOSTS or plane in access.planes


def site_with(groups: dict[str, list]) -> object:
    """The unit-test site with the given groups' networks, bypassing the overlap refusal (the
    point is to compare overlap computations, refused sites included)."""
    site = parse_site({"site": "t", "clients": {"admin_hosts": {"networks": ["127.0.0.1/32"]}}})
    for key, nets in groups.items():
        access = site.clients[key]
        site.clients[key] = GroupAccess(access.group, tuple(nets), access.planes)
    return site


@settings(deadline=None)  # timing varies on a loaded machine; the property does not
@given(st.fixed_dictionaries({g.key: networks for g in contract.CLIENT_GROUPS}))
def test_site_overlaps_agree_with_pairwise_comparison(groups):
    site = site_with(groups)
    for rule in contract.HARD_RULES:
        found = list(overlaps(site, rule))
        assert {(i, other.group.key) for i, _, other, _ in found} == naive_overlaps(site, rule)
        assert all(net.overlaps(theirs) for _, net, _, theirs in found)


def addresses_near(nets):
    """Each network's edges and the addresses just outside them, where a wrong merge shows."""
    for net in nets:
        first, last = int(net.network_address), int(net.broadcast_address)
        for value in (first - 1, first, last, last + 1):
            if 0 <= value < (1 << net.max_prefixlen):
                yield str(ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value))


@settings(max_examples=40, deadline=None)
@given(st.fixed_dictionaries({g.key: st.lists(network(), max_size=8) for g in contract.CLIENT_GROUPS}))
def test_collapsed_pg_hba_admits_exactly_whom_the_full_one_does(groups):
    """First-match over the collapsed rules equals first-match over one line per network."""
    site = site_with(groups)
    collapsed = hba.rules(site)
    original = hba.collapse
    hba.collapse = list  # one line per configured network, in configured order
    try:
        full = hba.rules(site)
    finally:
        hba.collapse = original
    # The rules treat a plane's app and read-only roles alike: one of each kind is enough.
    users = [contract.ADMIN_ROLE, contract.TENANT.app_role, contract.PRODUCT.readonly_role, contract.SHARED.app_role]
    databases = [contract.MAINTENANCE_DB, *(p.store for p in contract.POSTGRES_PLANES)]
    for address in set(addresses_near(n for nets in groups.values() for n in nets)):
        for user in users:
            for database in databases:
                a = hba.first_match(collapsed, ssl=True, database=database, user=user, address=address)
                b = hba.first_match(full, ssl=True, database=database, user=user, address=address)
                assert (a.method, a.comment) == (b.method, b.comment), (address, user, database)


def member(address: str, nets) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in net for net in nets)


# IDE laptops draw from a range of their own most of the time: a site where they share an
# address with a group that reaches product or shared is refused, so it tells nothing here.
IDE_V4_BASE = V4_BASE + (1 << 8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.fixed_dictionaries({
    **{g.key: st.lists(network(), max_size=6) for g in contract.SERVICE_GROUPS},
    contract.IDE_LAPTOPS.key: st.lists(network(base4=IDE_V4_BASE), max_size=6),
    contract.ADMIN_HOSTS.key: st.lists(network(), max_size=3),
}))
def test_pg_hba_admits_whom_the_contract_allows(groups):
    """Over a valid site, first-match of the collapsed pg_hba says yes exactly when the
    address is in a network of a group granted that plane (the admin: of the admin hosts)."""
    data = {"site": "t", "clients": {key: {"networks": [str(n) for n in nets]} for key, nets in groups.items()}}
    data["clients"]["admin_hosts"]["networks"].append("127.0.0.1/32")
    try:
        site = parse_site(data)
    except ConfigError:
        assume(False)
    rules = hba.rules(site)
    nets = [n for access in site.clients.values() for n in access.networks]
    for address in set(addresses_near(nets)):
        for plane in contract.POSTGRES_PLANES:
            granted = [n for a in site.clients.values() if a.group is not contract.ADMIN_HOSTS and plane in a.planes
                       for n in a.networks]
            for user in plane.login_roles:
                rule = hba.first_match(rules, ssl=True, database=plane.store, user=user, address=address)
                assert (rule.method != "reject") == member(address, granted), (address, user, rule)
            for other in contract.POSTGRES_PLANES:  # never another plane's roles
                if other is not plane:
                    rule = hba.first_match(rules, ssl=True, database=plane.store, user=other.app_role, address=address)
                    assert rule.method == "reject", (address, other.app_role, rule)
            rule = hba.first_match(rules, ssl=True, database=plane.store, user=contract.ADMIN_ROLE, address=address)
            assert (rule.method != "reject") == member(address, site.access(contract.ADMIN_HOSTS).networks)
