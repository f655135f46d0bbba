"""Isolation as the client hosts see it: the contract's connection matrix, tried from each
host of the inventory's client groups (``zeroui-db verify``).

From every host of ``tenant_services``, ``product_services``, ``shared_services``,
``ide_laptops`` and ``admin_hosts``, each plane endpoint is dialled at the address its
clients use, as every plane's app and read-only role, as the endpoint's admin and as the
superuser, each with TLS (verify-full) and without. What the contract allows:

* TLS only;
* a plane's database, with that plane's login roles, from the hosts of a group that may
  reach that plane (``config.reaches``: the group's own plane by default, never one a hard
  rule forbids);
* the admin from admin hosts;
* nothing else, the superuser never.

A host belongs to its inventory groups and to every group whose networks hold the address
it connects from (the server can only tell groups apart by address: on the pilot the
workstation's loopback is the admin network).

Least privilege: a host receives only the passwords of the attempts the contract lets it
make (its own plane's roles; the admin's on admin hosts). Every other attempt goes without
one: where the server answers it by asking for a password, the server's rules let it
through, and that is the finding. The probe (``probe.py``) never answers a cleartext or
MD5 request. On a managed endpoint the provider's network rules cannot tell roles apart, so
from a host they admit, a password request is the expected answer to a role it holds no
password for; elsewhere an attempt the contract refuses must be refused before any
authentication.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api import StringCommand

from . import contract, envfiles, probe
from .config import Endpoint, Site, reaches
from .contract import ClientGroup, Plane

_SOURCE = Path(probe.__file__).read_bytes()
# Reads exactly the probe's source from stdin and runs it; the rest of stdin is the request.
_BOOTSTRAP = f"import sys; exec(compile(sys.stdin.buffer.read({len(_SOURCE)}), 'zeroui-probe', 'exec'))"
TIMEOUT = 5  # seconds for one TCP connect or one server answer

# What an attempt's outcome (probe.py) means for the matrix.
OBSERVED = {
    "connected": "allowed",
    "rejected": "refused",  # before any authentication: pg_hba, or the provider's rules
    "unreachable": "refused",  # no route, a firewall, nothing listening
    "no-tls": "refused",
    "auth-requested": "auth",  # the server's rules let it through to authentication
    "auth-failed": "auth",
    "denied": "denied",  # authenticated, then refused by the database (no CONNECT)
    "tls-failed": "error",
    "error": "error",
}


class CannotVerify(Exception):
    """Verification could not be done; the message is the one line shown to the user."""


@dataclass(frozen=True)
class Attempt:
    endpoint: Endpoint
    role: str
    kind: str  # "app", "ro", "admin" or "superuser"
    tls: bool

    @property
    def role_plane(self) -> Plane | None:
        return next((p for p in contract.POSTGRES_PLANES if self.role in p.login_roles), None)


def attempts(site: Site) -> list[Attempt]:
    """Every attempt a host makes: per endpoint, every login role, the admin and the superuser,
    with TLS and without."""
    out = []
    for plane in contract.POSTGRES_PLANES:
        endpoint = site.endpoint(plane)
        roles = {role: kind for p in contract.POSTGRES_PLANES for role, kind in zip(p.login_roles, ("app", "ro"))}
        roles.setdefault(endpoint.admin_user, "admin")
        roles.setdefault(contract.SUPERUSER, "superuser")  # a provider's admin may bear the name
        for tls in (True, False):
            out += [Attempt(endpoint, role, kind, tls) for role, kind in roles.items()]
    return out


@dataclass(frozen=True)
class Vantage:
    """A host of the inventory's client groups, as verify sees it."""

    name: str
    groups: tuple[ClientGroup, ...]  # its inventory groups

    @property
    def env_planes(self) -> tuple[Plane, ...]:
        """Planes whose env file, and the CA beside it, the deploy wrote on this host."""
        return tuple(g.plane for g in self.groups if g in contract.SERVICE_GROUPS)


def memberships(site: Site, vantage: Vantage, source: str | None) -> tuple[ClientGroup, ...]:
    """The host's inventory groups, and every group whose networks hold ``source``."""
    address = ipaddress.ip_address(source) if source else None
    return tuple(g for g in contract.CLIENT_GROUPS if g in vantage.groups or address is not None and any(
        address.version == n.version and address in n for n in site.access(g).networks))


@dataclass(frozen=True)
class Expectation:
    allowed: bool
    because: str


def expect(site: Site, groups: Sequence[ClientGroup], attempt: Attempt) -> Expectation:
    """What the contract says of ``attempt`` from a host of ``groups``."""
    plane = attempt.endpoint.plane
    if not attempt.tls:
        return Expectation(False, "TLS only")
    if attempt.kind == "superuser":
        return Expectation(False, "the superuser never over TCP")
    for rule in contract.HARD_RULES:
        # By credential (tenant roles, from anywhere), or by host (laptops hold no credentials).
        holder = attempt.role in rule.group.credential_roles
        if plane in rule.forbidden and (holder or not rule.group.credential_roles and rule.group in groups):
            return Expectation(False, f"hard rule {rule.number}")
    if attempt.kind == "admin":
        if contract.ADMIN_HOSTS in groups:
            return Expectation(True, contract.ADMIN_HOSTS.key)
        return Expectation(False, "the admin only from admin hosts")
    if attempt.role_plane != plane:
        return Expectation(False, f"{attempt.role} is a {attempt.role_plane.key} role")
    reaching = [g.key for g in groups if g is not contract.ADMIN_HOSTS and reaches(site.access(g), plane)]
    if reaching:
        return Expectation(True, ", ".join(reaching))
    return Expectation(False, f"no group of this host reaches {plane.key}")


def admitted_by_provider(site: Site, groups: Sequence[ClientGroup], endpoint: Endpoint) -> bool:
    """Whether a managed endpoint's network rules let this host in at all (network-rules)."""
    return not endpoint.workstation and any(reaches(site.access(g), endpoint.plane) for g in groups)


def judge(expected: Expectation, observed: str, attempt: Attempt, admitted: bool) -> str:
    """"match", "mismatch" or "unverified" (the attempt could not tell)."""
    if expected.allowed:
        return "match" if observed == "allowed" else "mismatch"
    if observed == "refused":
        return "match"
    if observed == "error":
        return "unverified"
    if observed in ("auth", "denied") and attempt.tls and admitted:
        return "match"  # a managed service: its rules admit the host; the credentials keep it out
    return "mismatch"


@dataclass(frozen=True)
class Cell:
    """One attempt from one host: what the contract expects, what happened, and whether they agree."""

    host: str
    groups: tuple[str, ...]  # its inventory groups and those its address adds
    source: str | None  # the address it connects to the endpoint from
    attempt: Attempt
    expected: Expectation
    observed: str
    result: dict  # the probe's: outcome, sqlstate, message, method
    verdict: str

    def as_json(self) -> dict:
        a = self.attempt
        return {
            "host": self.host, "groups": list(self.groups), "source": self.source, "plane": a.endpoint.plane.key,
            "database": a.endpoint.database, "endpoint": f"{a.endpoint.host}:{a.endpoint.port}", "role": a.role,
            "kind": a.kind, "tls": a.tls, "expected": "allowed" if self.expected.allowed else "refused",
            "because": self.expected.because, "observed": self.observed, "outcome": self.result["outcome"],
            "sqlstate": self.result["sqlstate"], "message": self.result["message"], "method": self.result["method"],
            "trust": self.result.get("trust"), "verdict": self.verdict,
        }


def run_probe(host, request: dict) -> dict:
    """Run probe.py on ``host`` (a connected pyinfra host) with ``request`` on its stdin."""
    command = StringCommand("python3", "-c", f'"{_BOOTSTRAP}"')
    ok, output = host.run_shell_command(command, _stdin=_SOURCE.decode() + json.dumps(request), _timeout=120)
    if not ok:
        last = output.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CannotVerify(f"host {host.name}: the probe did not run (python3 needed there): {last[0]}")
    try:
        return json.loads(output.stdout)
    except ValueError:
        raise CannotVerify(f"host {host.name}: the probe printed no result") from None


@dataclass(frozen=True)
class Trust:
    """How a host checks an endpoint: the CA file beside its env file, or the CA shipped along."""

    ca_pems: dict[str, str]  # plane key -> the endpoint's CA certificate (PEM), from the control machine

    def fields(self, site: Site, vantage: Vantage, endpoint: Endpoint, cas: list[str]) -> dict:
        pem = self.ca_pems[endpoint.plane.key]
        if pem not in cas:
            cas.append(pem)
        # The CA sent along also serves a login that may not read the env files (their group's).
        out = {"ca": cas.index(pem)}
        if endpoint.plane in vantage.env_planes:
            out["cafile"] = envfiles.ca_path(site, endpoint.plane)
        return out


def verify_host(site: Site, host, vantage: Vantage, trust: Trust,
                password: Callable[[Attempt], str]) -> list[Cell]:
    """Every attempt from ``host``: where it connects from, then the attempts themselves."""
    plan = attempts(site)
    targets = list(dict.fromkeys((e.host, e.port) for e in site.endpoints.values()))
    route = run_probe(host, {"action": "route", "targets": [list(t) for t in targets]})
    sources = dict(zip(targets, route["sources"]))
    cas: list[str] = []
    requests, expectations = [], []
    for a in plan:
        source = sources[(a.endpoint.host, a.endpoint.port)]
        groups = memberships(site, vantage, source)
        expected = expect(site, groups, a)
        expectations.append((groups, expected))
        requests.append({
            "host": a.endpoint.host, "port": a.endpoint.port, "dbname": a.endpoint.database, "user": a.role,
            "tls": a.tls, **trust.fields(site, vantage, a.endpoint, cas),
            # Least privilege: a password only where the contract lets this host in.
            "password": password(a) if expected.allowed else None,
        })
    results = run_probe(host, {"action": "attempt", "timeout": TIMEOUT, "cas": cas, "attempts": requests})["results"]
    cells = []
    for a, (groups, expected), result in zip(plan, expectations, results, strict=True):
        observed = OBSERVED.get(result["outcome"], "error")
        admitted = admitted_by_provider(site, groups, a.endpoint)
        source = sources[(a.endpoint.host, a.endpoint.port)]
        cells.append(Cell(vantage.name, tuple(g.key for g in groups), source, a, expected, observed,
                          result, judge(expected, observed, a, admitted)))
    return cells
