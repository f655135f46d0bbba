"""The audit: live rules and grants held against the contract. Pure: observations in,
a report out (no I/O, no secrets).

One desired state serves the deploy and the audit:
* database level: the deploy's own plan (``grants.plan``) against what the audit role read;
  every step the deploy would take is a finding;
* pg_hba: the deploy's rule model (``hba.rules``) and the live file, both evaluated with
  PostgreSQL's first-match semantics into the matrix client group × role × database;
* settings and the CIS PostgreSQL checks (pgdsat's numbering).
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from . import contract, evidence, grants, hba, schemas, tls
from .config import Server, Site, reaches
from .ledger import TABLE as LEDGER_TABLE
from .live import HbaLine, Observation

CRITICAL, HIGH, MEDIUM, LOW = "critical", "high", "medium", "low"
PASS, FAIL, NOT_VISIBLE, NOT_APPLICABLE = "pass", "fail", "not visible", "n/a"
SUPERUSER = contract.SUPERUSER
WIDEST_NETWORK = 65_536  # CIS 5.9: an allowed range wider than this is too large
CERTIFICATE_WARN_DAYS = tls.REISSUE_BEFORE_DAYS
# The pilot records a checkpoint of the receipts chain with every backup (a full one weekly,
# incrementals daily): none for longer than this means the backups stopped.
CHECKPOINT_STALE_DAYS = 8


@dataclass(frozen=True)
class Finding:
    severity: str
    server: str  # the server's planes, e.g. "tenant+product+shared"
    area: str  # pg_hba, database, settings, tls, classification
    message: str
    evidence: str  # the line, the statement that repairs it, or the value seen


@dataclass(frozen=True)
class Check:
    id: str  # CIS PostgreSQL / pgdsat number
    title: str
    server: str
    status: str  # pass, fail, not visible, n/a
    evidence: str


@dataclass(frozen=True)
class Cell:
    """Whether ``group`` may reach ``database`` as ``role`` over TLS: wanted, and seen live."""

    server: str
    group: str
    role: str
    database: str
    want: bool
    have: bool | None  # None: the rules are not visible (or managed by the provider)
    line: str | None  # the live line that decides it

    @property
    def state(self) -> str:
        if self.have is None:
            return "unknown"
        if self.have != self.want:
            return "drift"
        return "allowed" if self.have else "denied"


@dataclass
class Report:
    site: str
    generated: str
    servers: list[dict] = field(default_factory=list)  # per server: planes, where, reached, notes
    matrix: list[Cell] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # servers that could not be audited: why

    @property
    def exit_code(self) -> int:
        """0 clean, 1 drift or a failed check, 2 could not audit."""
        if self.unreachable:
            return 2
        if self.findings or any(c.status == FAIL for c in self.checks):
            return 1
        return 0

    def as_dict(self) -> dict:
        return {"schema": "zeroui-db-audit/1", "site": self.site, "generated": self.generated,
                "exit_code": self.exit_code, "servers": self.servers,
                "matrix": [{**asdict(c), "state": c.state} for c in self.matrix],
                "findings": [asdict(f) for f in self.findings], "checks": [asdict(c) for c in self.checks],
                "unreachable": self.unreachable}


class _KnownPasswords:
    """The audit judges no password: every applied verifier counts as current."""

    def applied_verifier(self, role: str) -> str:
        return "<verifier>"

    def fresh_verifier(self, role: str) -> str:
        return "<verifier>"

    def record_applied(self, role: str, verifier: str) -> None:
        pass


def audit(site: Site, observations: list[Observation], now: datetime | None = None) -> Report:
    now = now or datetime.now(timezone.utc)
    report = Report(site.name, now.isoformat(timespec="seconds"))
    for seen in observations:
        s = seen.server
        report.servers.append({"server": s.key, "planes": [p.key for p in s.planes], "address": f"{s.first.host}:{s.port}",
                               "managed_by": "pg_hba (the workstation)" if s.workstation else "the provider",
                               "reached": seen.error is None})
        _tls(report, seen, now)
        if seen.tls_refused:
            report.findings.append(Finding(CRITICAL, s.key, "settings", "the server refuses TLS (ssl = off)",
                                           "SSLRequest answered 'N'"))
            report.checks.append(Check("6.8", "TLS is enabled and configured correctly", s.key, FAIL, "ssl = off"))
            report.matrix += _matrix(site, s, None)
            continue
        if seen.error is not None or seen.catalog is None:
            report.unreachable.append(f"{s.key} ({s.first.host}:{s.port}): {seen.error}")
            continue
        _database(report, seen)
        _classification(report, seen)
        _ledger(report, seen, now)
        _settings(report, seen)
        _roles_checks(report, seen)
        if s.workstation:
            _hba(report, site, seen)
        else:
            report.matrix += _matrix(site, s, None)
            report.checks.append(Check("5.3/5.4", "login rules (pg_hba)", s.key, NOT_APPLICABLE,
                                       "managed by the provider: check its network rules (zeroui-db network-rules)"))
    return report


# -- database level: the deploy's own plan --------------------------------------------------------

def _severity(step: grants.Step) -> str:
    text = step.statement.as_string() if step.statement is not None else ""
    if step.blocked or text.startswith(("REVOKE", "ALTER ROLE")) or "OWNER TO" in text:
        return HIGH
    return MEDIUM


def _database(report: Report, seen: Observation) -> None:
    for step in grants.plan(seen.server, seen.catalog, _KnownPasswords()):
        evidence = step.blocked or (step.statement.as_string() if step.statement is not None else "")
        report.findings.append(Finding(_severity(step), seen.server.key, "database",
                                       f"the deploy would {step.summary}", evidence))
    for endpoint in seen.server.endpoints:
        state = seen.catalog.databases.get(endpoint.database)
        public = state.acl.get(grants.PUBLIC, frozenset()) if state else frozenset()
        report.checks.append(Check("CONNECT", "CONNECT is not granted to PUBLIC", seen.server.key,
                                   FAIL if "CONNECT" in public else PASS, f"{endpoint.database}: PUBLIC holds "
                                   f"{', '.join(sorted(public)) or 'nothing'}"))
        schema = state.schema_acl if state else None
        if schema is None:
            report.checks.append(Check("4.10", "the public schema is protected", seen.server.key, NOT_VISIBLE,
                                       f"{endpoint.database}: not readable by the audit role"))
        else:
            public = schema.get(grants.PUBLIC, frozenset())
            report.checks.append(Check("4.10", "the public schema is protected", seen.server.key,
                                       FAIL if public else PASS, f"{endpoint.database}: PUBLIC holds "
                                       f"{', '.join(sorted(public)) or 'nothing'} on schema public"))


def _classification(report: Report, seen: Observation) -> None:
    """Every table of a plane is a classified table of its migrations, owned by its owner; the
    tables of its evidence ledger (if it keeps one) by its evidence keeper."""
    for endpoint in seen.server.endpoints:
        state = seen.catalog.databases.get(endpoint.database)
        if state is None or state.schema_acl is None:
            continue
        plane = endpoint.plane
        known = schemas.table_names(plane.key) | {LEDGER_TABLE}
        ledger = schemas.tables_of_class(plane.key, contract.EVIDENCE_LEDGER)
        for obj in state.objects:
            schema, table = (part.strip('"') for part in obj.name.split(".", 1))
            if seen.server.workstation and schema == evidence.GUARD_SCHEMA and obj.owner == SUPERUSER:
                continue  # the pilot's evidence guard (see _ledger)
            if obj.kind == "table" and table in ledger:
                if obj.owner != plane.keeper_role:
                    report.findings.append(Finding(HIGH, seen.server.key, "classification",
                                                   f"the evidence ledger's table {obj.name} in {endpoint.database} is "
                                                   f"owned by {obj.owner}, not {plane.keeper_role}: whoever may act as "
                                                   f"{obj.owner} may rewrite it", f"owner {obj.owner}"))
            elif obj.owner != plane.owner_role and not (plane.keeps_evidence and obj.owner == plane.keeper_role):
                report.findings.append(Finding(HIGH, seen.server.key, "classification",
                                               f"{obj.kind} {obj.name} in {endpoint.database} is owned by {obj.owner}, "
                                               f"not {plane.owner_role}", f"owner {obj.owner}"))
            if obj.kind == "table" and obj.name.split(".", 1)[1].strip('"') not in known:
                report.findings.append(Finding(HIGH, seen.server.key, "classification",
                                               f"table {obj.name} in {endpoint.database} is not a classified table of "
                                               f"sql/schemas/{endpoint.plane.key} (made by hand?)",
                                               "classify it in a migration, or drop it"))


def _ledger(report: Report, seen: Observation, now: datetime) -> None:
    """The receipts chain still holds every checkpoint of its head (a cut or rewritten tail shows
    there); on the pilot the backups keep recording checkpoints, and the evidence guard is there."""
    s = seen.server
    for endpoint in s.endpoints:
        if not endpoint.plane.keeps_evidence:
            continue
        db, status = endpoint.database, seen.ledgers.get(endpoint.database)
        if s.workstation:
            guard = seen.guards.get(db)
            guarded = evidence.guard_current(guard, evidence.guard_script(endpoint.plane))
            shown = f"{db}: " + (f"{guard[1]} enabled event triggers, {guard[0] or 'no marker'}" if guard else "none")
            report.checks.append(Check("guard", "the evidence guard is installed and enabled (the pilot)", s.key,
                                       PASS if guarded else FAIL, shown))
            if not guarded:
                report.findings.append(Finding(HIGH, s.key, "ledger", f"the evidence guard in {db} is missing, "
                                               "disabled or not the bundle's: the owner could drop the ledger; a "
                                               "redeploy installs it", shown))
        title = "the receipts chain holds every checkpoint of its head"
        if status is None:
            report.checks.append(Check("ledger", title, s.key, NOT_VISIBLE,
                                       f"{db}: receipt_chain_status() is not readable by the audit role"))
            continue
        last = status["last_checkpoint_at"]
        said = (f"{db}: head seq {status['head_seq']}, {status['checkpoints']} checkpoints"
                + (f", the last {last:%Y-%m-%d %H:%M} UTC" if last else ""))
        broken = status["checkpoint_broken"]
        report.checks.append(Check("ledger", title, s.key, FAIL if broken else PASS, said))
        if broken:
            report.findings.append(Finding(CRITICAL, s.key, "ledger", f"checkpoint {broken} of the receipts chain in "
                                           f"{db} no longer holds: receipts were cut or rewritten", said))
        if s.workstation and (last is None or (now - last).days >= CHECKPOINT_STALE_DAYS):
            report.findings.append(Finding(MEDIUM, s.key, "ledger", f"no checkpoint of the receipts chain in {db} for "
                                           f"{CHECKPOINT_STALE_DAYS} days or more: are the backups running?", said))


# -- settings and roles --------------------------------------------------------------------------

def _setting_check(report: Report, seen: Observation, cis: str, title: str, name: str, ok) -> None:
    value = seen.settings.get(name)
    if value is None:
        report.checks.append(Check(cis, title, seen.server.key, NOT_VISIBLE, f"{name}: not visible to the audit role"))
        return
    passed = ok(value)
    report.checks.append(Check(cis, title, seen.server.key, PASS if passed else FAIL, f"{name} = {value}"))
    if not passed:
        report.findings.append(Finding(HIGH, seen.server.key, "settings", f"{title}: {name} is {value!r}",
                                       f"{name} = {value}"))


def _settings(report: Report, seen: Observation) -> None:
    wildcard = {"*", "0.0.0.0", "::"}
    _setting_check(report, seen, "5.2", "PostgreSQL is bound to specific IP addresses", "listen_addresses",
                   lambda v: not wildcard & {a.strip() for a in v.split(",")})
    _setting_check(report, seen, "5.12", "password_encryption is scram-sha-256", "password_encryption",
                   lambda v: v == "scram-sha-256")
    _setting_check(report, seen, "3.1.20", "log_connections is enabled", "log_connections", lambda v: v == "on")
    _setting_check(report, seen, "3.1.21", "log_disconnections is enabled", "log_disconnections", lambda v: v == "on")
    _setting_check(report, seen, "6.8", "TLS is enabled (ssl = on)", "ssl", lambda v: v == "on")
    _setting_check(report, seen, "6.8", "TLS 1.2 or newer only", "ssl_min_protocol_version",
                   lambda v: v in ("TLSv1.2", "TLSv1.3"))


def _roles_checks(report: Report, seen: Observation) -> None:
    """CIS 4.3: no role of ours holds an administrative attribute it should not."""
    risky = ("super", "createrole", "replication", "bypassrls")
    holders = sorted(f"{name} ({', '.join(k for k in risky if attrs.get(k))})"
                     for name, attrs in seen.catalog.roles.items() if any(attrs.get(k) for k in risky))
    report.checks.append(Check("4.3", "excessive administrative privileges are revoked", seen.server.key,
                               FAIL if holders else PASS, "; ".join(holders) or "no plane or audit role holds "
                               "SUPERUSER, CREATEROLE, REPLICATION or BYPASSRLS"))


def _tls(report: Report, seen: Observation, now: datetime) -> None:
    s = seen.server
    if seen.certificate_error:
        report.findings.append(Finding(CRITICAL, s.key, "tls", "the server's certificate does not verify",
                                       seen.certificate_error))
    if seen.certificate is None:
        return
    names, expiry = tls.names_of(seen.certificate), tls.not_after(seen.certificate)
    days = (expiry - now).days
    evidence = f"names {', '.join(names)}; expires {expiry:%Y-%m-%d} ({days} days)"
    report.servers[-1]["certificate"] = {"names": names, "not_after": expiry.isoformat()}
    if days <= CERTIFICATE_WARN_DAYS:
        report.findings.append(Finding(HIGH if days > 0 else CRITICAL, s.key, "tls",
                                       "the server's certificate expires soon" if days > 0 else
                                       "the server's certificate has expired", evidence))
    missing = list(dict.fromkeys(e.host for e in s.endpoints if e.host not in names))
    if missing:
        report.findings.append(Finding(HIGH, s.key, "tls", f"the certificate does not name {', '.join(missing)}",
                                       evidence))


# -- pg_hba: the effective matrix -------------------------------------------------------------------

ALL_V4, ALL_V6 = ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")


def _network(line: HbaLine):
    """The line's address as a network; pg_hba_file_rules gives IPv6 masks as addresses too (``::``)."""
    if line.address == "all":
        return None
    if not line.netmask:
        return ipaddress.ip_network(line.address, strict=False)
    prefix = bin(int(ipaddress.ip_address(line.netmask))).count("1")
    return ipaddress.ip_network(f"{line.address}/{prefix}", strict=False)


def _rules_of(lines: tuple[HbaLine, ...]) -> tuple[list[tuple[hba.HbaRule, HbaLine]], list[HbaLine]]:
    """Live lines as evaluable rules (with their source line), and lines that cannot be evaluated."""
    rules, opaque = [], []
    for line in lines:
        if line.error:
            continue
        if line.type == "local":
            rules.append((hba.HbaRule("local", line.databases, line.users, None, line.method or "", ""), line))
            continue
        try:
            net = _network(line)
            nets = [ALL_V4, ALL_V6] if net is None else [net]
        except (ValueError, TypeError):  # samehost, samenet, host names: not evaluated here
            opaque.append(line)
            continue
        rules += [(hba.HbaRule(line.type, line.databases, line.users, net, line.method or "", ""), line)
                  for net in nets]
    return rules, opaque


class _FirstMatch:
    """PostgreSQL's first-match evaluation of pg_hba rules for one (TLS, database, user), for
    many client networks: O(address bits) per network instead of a scan of every line (a
    site may list thousands of networks).

    A network as a whole takes the first rule whose address contains it; an allow that
    covers only part of it, ahead of that rule, counts as allowing (some addresses get in).
    """

    def __init__(self, rules, ssl: bool, database: str, user: str):
        # Only the lines that apply to this connection attempt, keyed by (version, first, prefix).
        self.first: dict[tuple[int, int, int], tuple[int, bool, object]] = {}
        self.allows: list[tuple[int, int, int, int, object]] = []  # version, first, last, index, source
        for i, (rule, source) in enumerate(rules):
            if rule.type == "local" or not rule.matches(ssl=ssl, database=database, user=user, address=rule.address):
                continue
            net = rule.address
            key = (net.version, int(net.network_address), net.prefixlen)
            self.first.setdefault(key, (i, rule.method != "reject", source))
            if rule.method != "reject":
                self.allows.append((net.version, int(net.network_address), int(net.broadcast_address), i, source))
        self.allows.sort()

    def decide(self, network) -> tuple[bool, object]:
        if not self.allows:
            return False, None  # nothing here allows anyone
        bits = network.max_prefixlen
        addr, version = int(network.network_address), network.version
        decisive = None
        for prefix in range(network.prefixlen, -1, -1):  # the supernets, narrowest first
            mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
            found = self.first.get((version, addr & mask, prefix))
            if found and (decisive is None or found[0] < decisive[0]):
                decisive = found
        last = int(network.broadcast_address)
        start = bisect.bisect_left(self.allows, (version, addr))
        for v, first, _, index, source in self.allows[start:]:
            if v != version or first > last:
                break
            if decisive is None or index < decisive[0]:  # an earlier allow inside the network
                return True, source
        return (decisive[1], decisive[2]) if decisive else (False, None)


def _roles_and_databases(server: Server) -> tuple[list[str], list[str]]:
    roles = [r for p in server.planes for r in p.login_roles] + [server.admin_user, contract.AUDIT_ROLE, SUPERUSER]
    return roles, [e.database for e in server.endpoints] + [contract.MAINTENANCE_DB]


def _wanted(site: Site, server: Server) -> dict:
    """(group, role, database) -> allowed, from the deploy's own pg_hba rule model (workstation) or
    the contract's reach (managed: what the provider's network rules plus the roles allow)."""
    roles, dbs = _roles_and_databases(server)
    out = {}
    desired = [(r, None) for r in hba.rules(site)] if server.workstation else None
    matches = {(db, role): _FirstMatch(desired, True, db, role) for db in dbs for role in roles} if desired else {}
    for access in site.clients.values():
        for role in roles:
            for db in dbs:
                if desired is not None:
                    # As for the live rules: the group reaches it when some of its addresses do.
                    allowed = any(matches[(db, role)].decide(net)[0] for net in access.networks)
                else:
                    admin = access.group is contract.ADMIN_HOSTS and role in (server.admin_user, contract.AUDIT_ROLE)
                    plane = next((e.plane for e in server.endpoints if e.database == db), None)
                    allowed = bool(access.networks) and (
                        admin or (plane is not None and reaches(access, plane) and role in plane.login_roles))
                out[(access.group.key, role, db)] = allowed
    return out


def _matrix(site: Site, server: Server, rules) -> list[Cell]:
    roles, dbs = _roles_and_databases(server)
    wanted = _wanted(site, server)
    matches = {(db, role): _FirstMatch(rules, True, db, role) for db in dbs for role in roles} if rules else {}
    cells = []
    for access in site.clients.values():
        if not access.networks:
            continue
        for role in roles:
            for db in dbs:
                have, line = None, None
                if rules is not None:
                    decisions = [matches[(db, role)].decide(net) for net in access.networks]
                    have = any(ok for ok, _ in decisions)
                    line = next((src.text for ok, src in decisions if src is not None and ok == have), None)
                cells.append(Cell(server.key, access.group.key, role, db, wanted[(access.group.key, role, db)],
                                  have, line))
    return cells


def _hba(report: Report, site: Site, seen: Observation) -> None:
    s = seen.server
    if seen.hba is None:
        report.matrix += _matrix(site, s, None)
        report.checks.append(Check("5.3/5.4", "login rules (pg_hba)", s.key, NOT_VISIBLE,
                                   "pg_hba_file_rules is not readable by the audit role"))
        return
    for line in seen.hba:
        if line.error:
            report.findings.append(Finding(CRITICAL, s.key, "pg_hba",
                                           "pg_hba.conf has a line PostgreSQL cannot parse: a reload would be refused",
                                           f"line {line.number}: {line.error}"))
    if seen.hba_changed_after_load:
        report.findings.append(Finding(HIGH, s.key, "pg_hba", "pg_hba.conf changed on disk after the server loaded "
                                       "it: the rules in force are not the file's (pending reload)",
                                       seen.settings.get("hba_file") or "pg_hba.conf"))
    rules, opaque = _rules_of(seen.hba)
    for line in opaque:
        report.findings.append(Finding(MEDIUM, s.key, "pg_hba", "a line matches by host name or samehost/samenet, "
                                       "which the audit cannot evaluate", line.text))
    cells = _matrix(site, s, rules)
    report.matrix += cells
    for c in cells:
        if c.state != "drift":
            continue
        if c.have:
            report.findings.append(Finding(CRITICAL, s.key, "pg_hba", f"{c.group} may reach {c.database} as {c.role}, "
                                           "which the contract does not allow", c.line or ""))
        else:
            report.findings.append(Finding(HIGH, s.key, "pg_hba", f"{c.group} cannot reach {c.database} as {c.role}, "
                                           "which the contract allows", c.line or "no line allows it"))
    # Without TLS nobody gets in, from any group's network.
    _, dbs = _roles_and_databases(s)
    roles, _ = _roles_and_databases(s)
    plain = set()
    for db in dbs:
        for role in roles:
            match = _FirstMatch(rules, False, db, role)
            plain |= {(a.group.key, src.text) for a in site.clients.values() for net in a.networks
                      for ok, src in [match.decide(net)] if ok}
    plain = sorted(plain)
    for group, line in plain:
        report.findings.append(Finding(CRITICAL, s.key, "pg_hba", f"{group} may connect without TLS", line))
    _hba_checks(report, s, seen.hba)


def _hba_checks(report: Report, server: Server, lines: tuple[HbaLine, ...]) -> None:
    allows = [ln for ln in lines if not ln.error and ln.method and ln.method != "reject"]
    tcp = [ln for ln in allows if ln.type != "local"]

    def check(cis: str, title: str, bad: list[HbaLine], severity: str = HIGH) -> None:
        report.checks.append(Check(cis, title, server.key, FAIL if bad else PASS,
                                   "; ".join(b.text for b in bad) or "every line complies"))
        for b in bad:
            report.findings.append(Finding(severity, server.key, "pg_hba", f"CIS {cis}: {title.lower()}", b.text))

    check("5.3", "local (unix socket) logins use peer, for the superuser only",
          [ln for ln in allows if ln.type == "local" and (ln.method != "peer" or set(ln.users) != {SUPERUSER})])
    check("5.4", "TCP logins use scram-sha-256", [ln for ln in tcp if ln.method != "scram-sha-256"], CRITICAL)
    check("5.8", "TCP logins require TLS (hostssl)", [ln for ln in tcp if ln.type != "hostssl"], CRITICAL)
    check("5.9", f"no allowed range is /0 or wider than {WIDEST_NETWORK} addresses",
          [ln for ln in tcp if ln.address == "all" or _too_wide(ln)], CRITICAL)
    check("5.10", "allow lines name specific databases and users",
          [ln for ln in tcp if "all" in ln.databases or "all" in ln.users])
    check("5.11", "superusers cannot connect over TCP", [ln for ln in tcp if {SUPERUSER, "all"} & set(ln.users)],
          CRITICAL)


def _too_wide(line: HbaLine) -> bool:
    try:
        net = _network(line)
    except (ValueError, TypeError):
        return False
    return net is None or net.num_addresses > WIDEST_NETWORK
