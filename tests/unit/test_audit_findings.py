"""The audit's pure part: observations in, findings and checks out.

The independent expectations: PostgreSQL's first-match semantics as hba.first_match spells
them for single addresses, the contract's words for who may reach what, and CIS numbers.
"""

import copy
import ipaddress
import random
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import BASE, CLOUD
from zeroui_db import audit, contract, evidence, grants, hba
from zeroui_db.config import parse_site
from zeroui_db.live import HbaLine, Observation

NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)
TENANT, PRODUCT = contract.TENANT, contract.PRODUCT


# -- first match, at scale, against the plain one ---------------------------------------------

def test_first_match_index_agrees_with_plain_first_match():
    """For random rule lists and single addresses, the indexed evaluation is PostgreSQL's first match."""
    rng = random.Random(7)
    for _ in range(200):
        rules = []
        for _ in range(rng.randint(1, 12)):
            prefix = rng.choice([8, 16, 24, 28, 32])
            net = ipaddress.ip_network(f"10.{rng.randint(0, 3)}.{rng.randint(0, 3)}.{rng.randint(0, 255)}/{prefix}",
                                       strict=False)
            rules.append(hba.HbaRule(rng.choice(["hostssl", "host"]), (rng.choice(["db1", "all"]),),
                                     (rng.choice(["u1", "all"]),), net, rng.choice(["scram-sha-256", "reject"]), ""))
        address = f"10.{rng.randint(0, 3)}.{rng.randint(0, 3)}.{rng.randint(0, 255)}"
        plain = hba.first_match(rules, ssl=True, database="db1", user="u1", address=address)
        want = plain is not None and plain.method != "reject"
        have, _ = audit._FirstMatch([(r, r) for r in rules], True, "db1", "u1").decide(ipaddress.ip_network(address))
        assert have == want, (address, rules)


def test_an_allow_covering_part_of_a_network_counts_as_allowing():
    rules = [hba.HbaRule("hostssl", ("db",), ("u",), ipaddress.ip_network("10.0.0.5/32"), "scram-sha-256", ""),
             hba.HbaRule("host", ("all",), ("all",), ipaddress.ip_network("0.0.0.0/0"), "reject", "")]
    match = audit._FirstMatch([(r, r) for r in rules], True, "db", "u")
    assert match.decide(ipaddress.ip_network("10.0.0.0/24"))[0] is True
    assert match.decide(ipaddress.ip_network("10.0.1.0/24"))[0] is False


def test_ten_thousand_networks_evaluate_quickly_enough_to_finish():
    """Not a timing test: it would take hours at O(networks x lines)."""
    nets = [ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24") for i in range(10_000)]
    rules = [(hba.HbaRule("hostssl", ("db",), ("u",), n, "scram-sha-256", ""), None) for n in nets]
    match = audit._FirstMatch(rules, True, "db", "u")
    assert all(match.decide(n)[0] for n in nets)


# -- observations of a pilot ------------------------------------------------------------------

def _certificate(names, days=300) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans = [x509.IPAddress(ipaddress.ip_address(n)) for n in names]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _hba_lines(site) -> tuple[HbaLine, ...]:
    """The live pg_hba as pg_hba_file_rules would show the deploy's own file."""
    out = []
    for i, r in enumerate(hba.rules(site), 1):
        address = netmask = None
        if r.address is not None:
            address, netmask = str(r.address.network_address), str(r.address.netmask)
        out.append(HbaLine(i, r.type, r.databases, r.users, address, netmask, r.method, (), None))
    return tuple(out)


def _converged(server) -> grants.Catalog:
    """What the catalog reads once the deploy converged (built by planning from nothing and
    taking the plan's word: the database-level part is covered by test_grants)."""
    from test_grants import converged_workstation
    return converged_workstation()


SETTINGS = {"ssl": "on", "ssl_min_protocol_version": "TLSv1.2", "password_encryption": "scram-sha-256",
            "listen_addresses": "127.0.0.1,10.20.0.1", "log_connections": "on", "log_disconnections": "on",
            "hba_file": "/etc/postgresql/15/main/pg_hba.conf"}


# The tenant ledger's status as receipt_chain_status() returns it: a backup checkpointed it yesterday.
LEDGER = {"head_seq": 120, "head_hash": "ab" * 32, "checkpoints": 4, "last_checkpoint_at": NOW - timedelta(days=1),
          "checkpoint_broken": None}


def pilot(**changes) -> tuple:
    site = parse_site(copy.deepcopy(BASE))
    (server,) = site.servers
    seen = Observation(server, catalog=_converged(server), settings=dict(SETTINGS), hba=_hba_lines(site),
                       hba_changed_after_load=False, certificate=_certificate(["127.0.0.1"]),
                       ledgers={TENANT.store: dict(LEDGER)},
                       guards={TENANT.store: (evidence.guard_script(TENANT).marker, evidence.GUARD_TRIGGERS)})
    for k, v in changes.items():
        setattr(seen, k, v)
    return site, seen


def test_a_converged_pilot_is_clean():
    site, seen = pilot()
    report = audit.audit(site, [seen], NOW)
    assert report.findings == [] and report.exit_code == 0
    assert {c.status for c in report.checks} == {"pass"}
    laptops = [c for c in report.matrix if c.group == contract.IDE_LAPTOPS.key]
    assert laptops and not any(c.have for c in laptops if c.database in (PRODUCT.store, contract.SHARED.store))


def test_an_allow_line_for_laptops_into_product_is_critical_and_quoted():
    site, seen = pilot()
    laptops = site.access(contract.IDE_LAPTOPS).networks[0]
    line = HbaLine(0, "hostssl", (PRODUCT.store,), (PRODUCT.app_role,), str(laptops.network_address),
                   str(laptops.netmask), "scram-sha-256", (), None)
    seen.hba = (line, *seen.hba)
    report = audit.audit(site, [seen], NOW)
    assert report.exit_code == 1
    [f] = [f for f in report.findings if f.severity == audit.CRITICAL and "ide_laptops may reach" in f.message]
    assert f.message == f"ide_laptops may reach {PRODUCT.store} as {PRODUCT.app_role}, which the contract does not allow"
    assert f.evidence.startswith("line 0: hostssl zeroui_product_pg zeroui_product_app 10.30.0.0 255.255.0.0")


@pytest.mark.parametrize("method,check", [("md5", "5.4"), ("trust", "5.4"), ("password", "5.4")])
def test_weak_methods_fail_cis_5_4(method, check):
    site, seen = pilot()
    seen.hba = (HbaLine(0, "hostssl", (TENANT.store,), (TENANT.app_role,), "10.20.1.0", "255.255.255.0", method, (),
                        None), *seen.hba)
    report = audit.audit(site, [seen], NOW)
    assert {c.id for c in report.checks if c.status == "fail"} == {check}


def test_host_line_without_tls_and_a_whole_internet_range():
    site, seen = pilot()
    seen.hba = (HbaLine(0, "host", (TENANT.store,), (TENANT.app_role,), "0.0.0.0", "0.0.0.0", "scram-sha-256", (),
                        None), *seen.hba)
    report = audit.audit(site, [seen], NOW)
    assert {"5.8", "5.9"} <= {c.id for c in report.checks if c.status == "fail"}
    assert any(f.message.endswith("may connect without TLS") for f in report.findings)


def test_what_the_audit_role_cannot_see_is_never_a_pass():
    site, seen = pilot(hba=None)
    seen.settings = {**SETTINGS, "ssl_min_protocol_version": None}
    report = audit.audit(site, [seen], NOW)
    statuses = {(c.id, c.title): c.status for c in report.checks}
    assert statuses[("5.3/5.4", "login rules (pg_hba)")] == "not visible"
    assert statuses[("6.8", "TLS 1.2 or newer only")] == "not visible"
    assert {c.have for c in report.matrix} == {None}


def test_pending_reload_and_parse_errors():
    site, seen = pilot(hba_changed_after_load=True)
    seen.hba = (*seen.hba, HbaLine(99, "hostssl", (), (), None, None, None, (), "invalid authentication method"))
    messages = [f.message for f in audit.audit(site, [seen], NOW).findings]
    assert any("pending reload" in m for m in messages)
    assert any("cannot parse" in m for m in messages)


def test_expiring_certificate_and_missing_name():
    site, seen = pilot(certificate=_certificate(["10.9.9.9"], days=10))
    messages = [f.message for f in audit.audit(site, [seen], NOW).findings]
    assert "the server's certificate expires soon" in messages
    assert "the certificate does not name 127.0.0.1" in messages


def test_ssl_off_fails_and_unreachable_cannot_audit():
    site, seen = pilot(tls_refused=True, catalog=None)
    report = audit.audit(site, [seen], NOW)
    assert report.exit_code == 1 and any(c.id == "6.8" and c.status == "fail" for c in report.checks)
    site, seen = pilot(error="connection refused", catalog=None)
    assert audit.audit(site, [seen], NOW).exit_code == 2


def test_a_managed_server_has_no_pg_hba_to_judge():
    site = parse_site(copy.deepcopy(CLOUD))
    server = site.servers[0]
    catalog = grants.Catalog(server_version=160000)
    report = audit.audit(site, [Observation(server, catalog=catalog, settings=dict(SETTINGS))], NOW)
    assert [c.status for c in report.checks if c.id == "5.3/5.4"] == ["n/a"]
    assert all(c.have is None for c in report.matrix)
    # An empty server: the findings are the deploy's plan, e.g. its database is missing.
    assert any(f.message == f"the deploy would create database {server.first.database}" for f in report.findings)


def test_a_checkpoint_the_chain_no_longer_holds_is_critical():
    """A cut or rewritten tail: the chain alone may verify, the checkpoint of its head does not hold."""
    site, seen = pilot(ledgers={TENANT.store: {**LEDGER, "head_seq": 117, "checkpoint_broken": 4}})
    report = audit.audit(site, [seen], NOW)
    assert report.exit_code == 1
    [check] = [c for c in report.checks if c.id == "ledger"]
    assert check.status == "fail" and check.evidence.startswith(f"{TENANT.store}: head seq 117, 4 checkpoints")
    assert [(f.severity, f.message) for f in report.findings] == [
        ("critical", f"checkpoint 4 of the receipts chain in {TENANT.store} no longer holds: receipts were cut or "
                     "rewritten")]


@pytest.mark.parametrize("last", [None, NOW - timedelta(days=9)])
def test_no_recent_checkpoint_on_the_pilot_means_the_backups_stopped(last):
    site, seen = pilot(ledgers={TENANT.store: {**LEDGER, "last_checkpoint_at": last}})
    report = audit.audit(site, [seen], NOW)
    assert [(f.severity, f.area) for f in report.findings] == [("medium", "ledger")]
    assert "are the backups running?" in report.findings[0].message


def test_a_ledger_the_audit_cannot_read_is_not_visible_not_a_pass():
    site, seen = pilot(ledgers={TENANT.store: None})
    [check] = [c for c in audit.audit(site, [seen], NOW).checks if c.id == "ledger"]
    assert check.status == "not visible"


def test_a_managed_server_is_not_asked_for_backup_checkpoints():
    site = parse_site(copy.deepcopy(CLOUD))
    server = next(s for s in site.servers if s.planes == (TENANT,))
    seen = Observation(server, catalog=grants.Catalog(server_version=160000), settings=dict(SETTINGS),
                       ledgers={TENANT.store: {**LEDGER, "checkpoints": 0, "last_checkpoint_at": None}})
    report = audit.audit(site, [seen], NOW)
    assert [c.status for c in report.checks if c.id == "ledger"] == ["pass"]
    assert [f for f in report.findings if f.area == "ledger"] == []


@pytest.mark.parametrize("guard", [None, (None, 3), ("zeroui evidence guard 00", 3), ("marker", 2)])
def test_a_missing_disabled_or_foreign_guard_on_the_pilot_is_found(guard):
    site, seen = pilot()
    if guard and guard[0] == "marker":
        guard = (evidence.guard_script(TENANT).marker, 2)  # one trigger disabled
    seen.guards = {TENANT.store: guard}
    report = audit.audit(site, [seen], NOW)
    assert [c.status for c in report.checks if c.id == "guard"] == ["fail"]
    assert [f.message for f in report.findings] == [
        f"the evidence guard in {TENANT.store} is missing, disabled or not the bundle's: the owner could drop the "
        "ledger; a redeploy installs it"]


def test_the_guards_own_objects_are_not_unclassified():
    site, seen = pilot()
    seen.catalog.databases[TENANT.store].objects = (
        grants.DbObject("function", "zeroui_guard.evidence_guard()", contract.SUPERUSER, {}),)
    assert audit.audit(site, [seen], NOW).findings == []


def test_a_ledger_table_not_owned_by_the_keeper_is_found():
    """The receipts ledger handed back to the owner (which the admin may act as) is the hole the keeper closes."""
    site, seen = pilot()
    state = seen.catalog.databases[TENANT.store]
    state.objects = (grants.DbObject("table", "public.receipts", TENANT.owner_role, {}),
                     grants.DbObject("table", "public.receipt_checkpoints", TENANT.keeper_role, {}),
                     grants.DbObject("function", "public.receipt_hash(bytea, receipts)", TENANT.keeper_role, {}),
                     grants.DbObject("table", "public.decisions", TENANT.owner_role, {}))
    findings = [f.message for f in audit.audit(site, [seen], NOW).findings if f.area == "classification"]
    assert findings == [f"the evidence ledger's table public.receipts in {TENANT.store} is owned by "
                        f"{TENANT.owner_role}, not {TENANT.keeper_role}: whoever may act as {TENANT.owner_role} "
                        "may rewrite it"]


def test_json_is_stable():
    site, seen = pilot()
    data = audit.audit(site, [seen], NOW).as_dict()
    assert set(data) == {"schema", "site", "generated", "exit_code", "servers", "matrix", "findings", "checks",
                         "unreachable"}
    assert set(data["matrix"][0]) == {"server", "group", "role", "database", "want", "have", "line", "state"}
