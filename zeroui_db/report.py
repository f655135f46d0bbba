"""The audit report for people: a terminal text and a self-contained HTML page."""

from __future__ import annotations

from collections import defaultdict

import click

from .audit import CRITICAL, FAIL, HIGH, LOW, MEDIUM, NOT_VISIBLE, PASS, Cell, Report
from . import contract
from .templates import render_template

SEVERITY_ORDER = {CRITICAL: 0, HIGH: 1, MEDIUM: 2, LOW: 3}
MARK = {"allowed": "✓", "denied": "·", "drift": "✗", "unknown": "?"}
COLOR = {"allowed": "green", "drift": "red", "unknown": "yellow", PASS: "green", FAIL: "red", NOT_VISIBLE: "yellow",
         CRITICAL: "red", HIGH: "red", MEDIUM: "yellow", LOW: "cyan"}


def _rows(cells: list[Cell]) -> tuple[list[str], dict[tuple[str, str], dict[str, Cell]], int]:
    """Databases (columns), (group, role) -> database -> cell for the rows worth showing, and how many
    rows are left out because they are denied everywhere, as wanted."""
    databases = list(dict.fromkeys(c.database for c in cells))
    rows: dict[tuple[str, str], dict[str, Cell]] = defaultdict(dict)
    for c in cells:
        rows[(c.group, c.role)][c.database] = c
    shown = {k: v for k, v in rows.items() if any(c.state != "denied" for c in v.values())}
    return databases, shown, len(rows) - len(shown)


def text(report: Report, color: bool | None = None) -> str:
    out = []

    def line(s: str = "", fg: str | None = None, bold: bool = False) -> None:
        out.append(click.style(s, fg=fg, bold=bold) if color is not False else s)

    line(f"ZeroUI DB audit of site {report.site} ({report.generated})", bold=True)
    for s in report.servers:
        cert = s.get("certificate")
        extra = f"; certificate for {', '.join(cert['names'])}, valid until {cert['not_after'][:10]}" if cert else ""
        line(f"  {s['server']} at {s['address']}: rules enforced by {s['managed_by']}{extra}")
    by_server: dict[str, list[Cell]] = defaultdict(list)
    for c in report.matrix:
        by_server[c.server].append(c)
    for server, cells in by_server.items():
        databases, rows, hidden = _rows(cells)
        line()
        line(f"Who may connect to {server} over TLS (✓ allowed, · denied, ✗ drift, ? not visible)", bold=True)
        width = max((len(f"{g} / {r}") for g, r in rows), default=10)
        line("  " + " " * width + "  " + "  ".join(f"{d:<18}" for d in databases))
        for (group, role), row in sorted(rows.items()):
            marks = []
            for d in databases:
                c = row.get(d)
                mark = MARK[c.state] if c else " "
                marks.append(click.style(f"{mark:<18}", fg=COLOR.get(c.state)) if c and color is not False else
                             f"{mark:<18}")
            out.append(f"  {group + ' / ' + role:<{width}}  " + "  ".join(marks))
        if hidden:
            line(f"  ({hidden} more group/role pairs: denied everywhere, as the contract wants)")
    line()
    findings = sorted(report.findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.server, f.area, f.message))
    line(f"Findings: {len(findings)}", bold=True)
    for f in findings:
        line(f"  [{f.severity}] {f.server} {f.area}: {f.message}", fg=COLOR[f.severity])
        if f.evidence:
            line(f"      {f.evidence}")
    line()
    line("CIS PostgreSQL checks (pgdsat numbering)", bold=True)
    for c in report.checks:
        line(f"  {c.id:<8} {c.status:<11} {c.server}: {c.title} ({c.evidence})", fg=COLOR.get(c.status))
    line()
    verdict = {0: "clean", 1: "drift or failed checks", 2: "could not audit every endpoint"}[report.exit_code]
    line(f"Result: {verdict}", fg="green" if report.exit_code == 0 else "red", bold=True)
    return "\n".join(out)


def _own_roles(group_key: str, server_admin: set[str]) -> set[str]:
    """The roles a group's hosts are meant to use: its plane's login roles, or the admin's."""
    group = contract.CLIENT_GROUPS_BY_KEY[group_key]
    return set(group.credential_roles) | (server_admin if group is contract.ADMIN_HOSTS else set())


def picture(report: Report) -> dict:
    """Client groups (left) and plane databases (right) with one edge per (group, database)
    where the group's own roles get in (green), and wherever any cell drifts (red)."""
    groups = list(dict.fromkeys(c.group for c in report.matrix))
    databases = list(dict.fromkeys((c.server, c.database) for c in report.matrix))
    plane_roles = {r for p in contract.POSTGRES_PLANES for r in p.login_roles}
    # The admin and audit logins (a provider's master user on a managed service).
    admins = {c.role for c in report.matrix if c.group == contract.ADMIN_HOSTS.key and c.want} - plane_roles
    edges = {}
    for c in report.matrix:
        if c.state != "drift" and c.role not in _own_roles(c.group, admins):
            continue  # shared addresses let others in too; the picture shows what each group is for
        key = (c.group, (c.server, c.database))
        rank = {"drift": 3, "allowed": 2, "unknown": 1, "denied": 0}[c.state]
        if rank and rank > edges.get(key, ("", 0))[1]:
            edges[key] = (c.state, rank)
    row = 70
    height = max(len(groups), len(databases), 1) * row + 40
    left = {g: 40 + i * row for i, g in enumerate(groups)}
    right = {d: 40 + i * row for i, d in enumerate(databases)}
    return {"width": 900, "height": height, "groups": [(g, y) for g, y in left.items()],
            "databases": [(f"{d} ({s})", y) for (s, d), y in right.items()],
            "edges": [(left[g], right[d], state) for (g, d), (state, _) in edges.items()]}


def html(report: Report) -> str:
    findings = sorted(report.findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.server, f.area, f.message))
    by_server: dict[str, list[Cell]] = defaultdict(list)
    for c in report.matrix:
        by_server[c.server].append(c)
    tables = [(server, *_rows(cells)) for server, cells in by_server.items()]
    return render_template("audit.html.j2", report=report, findings=findings, tables=tables, mark=MARK,
                           picture=picture(report))
