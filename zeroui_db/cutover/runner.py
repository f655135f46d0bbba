"""The cutover's steps in order: the pre-flight of every plane before anything changes; then,
plane by plane, freeze the source, copy, verify; then the switch of all of them at once
(the target's audit, then the env files). The record on the control machine is written
before each step acts, so a rerun after a kill resumes where it stood and a rollback knows
what to lift.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
import psycopg
from psycopg import sql

from .. import catalog, contract, grants
from ..admin_link import AdminLink
from ..config import Server, Site
from ..contract import Plane
from ..secret_store import SecretStore
from ..site import ADMIN_GROUP, SERVER_GROUP, Deployment
from . import checksums, freeze, preflight, state, switch, transfer
from .checksums import Digest
from .state import COPIED, COPYING, DONE, FROZEN, ROLLED_BACK, SWITCHED, VERIFIED, CutoverState
from .tables import CHAIN_TABLE
from .verify import SCHEMA as REPORT_SCHEMA
from .verify import PlaneVerification, summary, verify


class Refused(Exception):
    """The cutover found a reason to stop (exit 1); the message says why and what to do."""


class Unreachable(Exception):
    """A side could not be reached or read (exit 2)."""


@dataclass
class Side:
    """One site of the cutover as the control machine reaches it: its inventory, site, secrets
    store, and the hosts the deploy works from (the workstation, the admin host)."""

    inventory_file: str
    inventory: object
    site: Site
    store: SecretStore

    def server(self, plane: Plane) -> Server:
        return next(s for s in self.site.servers if plane in s.planes)

    def host(self, server: Server):
        group = SERVER_GROUP if server.workstation else ADMIN_GROUP
        hosts = self.inventory.get_group(group, [])
        if not hosts:
            raise Unreachable(f"inventory {self.inventory_file}: no {group} host to reach {server.key} from")
        return hosts[0]

    def admin_password(self, server: Server) -> str:
        try:
            return Deployment(self.site, self.store, None).admin_password(server)
        except KeyError as e:
            raise Unreachable(f"site {self.site.name}: {e.args[0]}") from None

    def ca_file(self, server: Server) -> str:
        """The CA (on the control machine) that vouches for ``server``: the provider's, or the
        site CA's certificate beside the secrets store."""
        ca = server.first.ca_file or str(self.store.path.parent / f"{self.site.name}-ca.crt")
        if not Path(ca).is_file():
            raise Unreachable(f"{server.key}: CA certificate {ca} is missing on this machine")
        return ca

    def address(self, plane: Plane) -> str:
        e = self.site.endpoint(plane)
        return f"{e.host}:{e.port}/{e.database}"

    @contextmanager
    def admin(self, server: Server) -> Iterator[catalog.Connect]:
        """The admin's connections to ``server``, for this block only (never shared)."""
        try:
            link = AdminLink(self.host(server), server, self.admin_password(server), self.ca_file(server))
        except psycopg.OperationalError as e:
            raise Unreachable(f"cannot reach {server.key} of site {self.site.name}: {_line(e)}") from None
        try:
            yield link.connect
        finally:
            link.close()

    @contextmanager
    def session(self, plane: Plane, read_only: bool = False) -> Iterator[psycopg.Connection]:
        """A session on ``plane``'s database acting as its owner, value-text settings pinned;
        ``read_only``: it cannot write either (the source)."""
        with self.admin(self.server(plane)) as connect:
            try:
                conn = connect(self.site.endpoint(plane).database)
                checksums.pin(conn)
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(plane.owner_role)))
                conn.execute("SET statement_timeout = 0")
                if read_only:
                    conn.execute("SET default_transaction_read_only = on")
            except psycopg.OperationalError as e:
                raise Unreachable(f"cannot reach {self.address(plane)} of site {self.site.name}: {_line(e)}") from None
            yield conn


def _line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[-1] if text else e.__class__.__name__


@dataclass
class Cutover:
    source: Side
    target: Side
    planes: list[Plane]
    say: Callable[[str], None] = click.echo
    report_file: Path | None = None
    pyinfra_state: object = None  # the target inventory's pyinfra State, connected (for the env files)
    record: CutoverState | None = None
    verifications: list[PlaneVerification] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    sources: dict[str, preflight.DatabaseFacts] = field(default_factory=dict)  # plane key -> as the pre-flight read it
    switch_seconds: float | None = None

    # -- the record ------------------------------------------------------------------------------

    @property
    def secrets_dir(self) -> Path:
        return self.source.store.path.parent

    def load_record(self, planes_given: bool, rollback: bool = False) -> bool:
        """Read the record of an earlier run; whether this run resumes it. A rollback may name
        some of the record's planes only."""
        record = CutoverState.load(self.secrets_dir, self.source.site.name)
        if record is None or not record.active:
            self.record = None
            return False
        if record.target != self.target.site.name:
            raise Refused(f"a cutover of site {record.source} to site {record.target} is under way ({record.path}); "
                          "finish it or roll it back first")
        wanted = [p.key for p in self.planes]
        if rollback:
            self.planes = [p for p in self.planes if p.key in record.planes] if planes_given else \
                [contract.PLANES_BY_KEY[k] for k in record.planes]
            self.record = record
            return True
        if planes_given and sorted(wanted) != sorted(record.planes):
            raise Refused(f"the cutover under way moves planes {', '.join(record.planes)} ({record.path}); "
                          "rerun it with the same planes, or roll it back first")
        self.planes = [contract.PLANES_BY_KEY[k] for k in record.planes]
        self.record = record
        return True

    def status(self, plane: Plane) -> str | None:
        return self.record.status(plane.key) if self.record else None

    # -- pre-flight ------------------------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Check both sides of every plane and print the plan; the problems found (none: go)."""
        found, notes = [], []
        for plane in self.planes:
            if self.status(plane) == SWITCHED:
                continue
            if not self.source.server(plane).workstation:
                found.append(f"{plane.key}: its source {self.source.address(plane)} is a managed service; the cutover "
                             "freezes a pilot's cluster, through its local superuser")
                continue
            if self.source.address(plane) == self.target.address(plane):
                found.append(f"{plane.key}: the source and the target are the same database "
                             f"({self.source.address(plane)})")
                continue
            resuming = self.status(plane) in state.HOLDS_FREEZE
            with self.source.session(plane, read_only=True) as src, self.target.session(plane) as tgt:
                mine = preflight.read_facts(src, plane, self.source.address(plane))
                theirs = preflight.read_facts(tgt, plane, self.target.address(plane), filled=True)
            self.sources[plane.key] = mine
            found += preflight.problems(plane, mine, theirs, resuming)
            notes += preflight.warnings(plane, mine, theirs)
            self.say("\n".join(preflight.describe(plane, mine, theirs))
                     + (f"\n  resuming: {self.status(plane)} ({self.record.path})" if resuming else ""))
        found += self._target_converged()
        for note in notes:
            self.say(f"note: {note}")
        return found

    def _target_converged(self) -> list[str]:
        """The deploy's own plan for each target server must be empty: roles, databases,
        privileges (the copy relies on its grants, it carries none)."""
        out = []
        servers = {self.target.server(p) for p in self.planes if self.status(p) != SWITCHED}
        for server in sorted(servers, key=lambda s: s.key):
            with self.target.admin(server) as connect:
                steps = grants.plan(server, catalog.read(connect, server), self.target.store)
            if steps:
                todo = "; ".join(s.summary for s in steps[:3])
                todo += f"; … {len(steps) - 3} more" if len(steps) > 3 else ""
                out.append(f"{server.key}: the target is not converged (the deploy would {todo}); run the deploy of "
                           f"{self.target.inventory_file} first")
        return out

    # -- the steps -------------------------------------------------------------------------------

    def run(self, switch_too: bool = True) -> None:
        if self.record is None:
            self.record = CutoverState.new(self.secrets_dir, self.source.site.name, self.target.site.name,
                                           [p.key for p in self.planes])
        todo = [p for p in self.planes if self.status(p) != SWITCHED]
        if not todo:
            self.say(f"every plane is switched to {self.target.site.name} already; nothing to do")
            return
        for plane in todo:
            times = self.timings.setdefault(plane.key, {})
            self._freeze(plane, times)
            self._copy(plane, times)
            if not self._verify(plane, times):
                # Stop here: freezing further planes would only lengthen their outage.
                self._write_report()
                raise Refused(f"{plane.key}: the target does not match the source (see above and {self.report_path});"
                              " the source stays frozen: investigate, then rerun or roll back")
        self._write_report()
        if switch_too:
            self._switch()
        else:
            self.say("not switched (--no-switch): the source stays frozen; rerun without it to verify again and switch")

    def _timed(self, times: dict, step: str, started: float) -> None:
        times[step] = time.monotonic() - started

    def _freeze(self, plane: Plane, times: dict) -> None:
        started = time.monotonic()
        source = self.source.server(plane)
        if self.status(plane) not in state.HOLDS_FREEZE:
            self.record.begin(plane.key)  # before acting: a kill leaves a record to roll back
        with self.source.admin(source) as connect:
            # Applied again on a rerun: it is idempotent and holds the freeze whatever happened since.
            ended = freeze.freeze(self.source.host(source), source.port, plane, connect)
        self._timed(times, "freeze", started)
        self.say(f"{plane.key}: frozen on the source: {plane.app_role} cannot log in"
                 + (f"; {ended} session(s) ended" if ended else ""))

    def _copy(self, plane: Plane, times: dict) -> None:
        started = time.monotonic()
        with self.source.session(plane, read_only=True) as src, self.target.session(plane) as tgt:
            tables = [t for t in self.sources[plane.key].tables if t.copied]
            for table in tables:
                entry = self.record.table(plane.key, table.name)
                if entry["status"] == DONE:
                    continue
                if transfer.holds_rows(tgt, table):
                    self._adopt_committed(plane, table, src, tgt)
                    continue
                self.record.record_table(plane.key, table.name, status=COPYING)
                t0 = time.monotonic()
                with _progress(f"{plane.key}.{table.name}", table.estimated_rows) as on_progress:
                    try:
                        got = transfer.copy_table(src, tgt, table, on_progress,
                                                  keeper=plane.keeper_role if plane.keeps_evidence else None)
                    except psycopg.Error as e:
                        raise Refused(f"{plane.key}: copying {table.name} failed and was rolled back: "
                                      f"{e.diag.message_primary or _line(e)}") from None
                    except transfer.ChainBroken as e:
                        raise Refused(f"{plane.key}: copying {table.name} failed and was rolled back: {e}") from None
                # A copy of the chain's table commits only once the chain verifies (transfer).
                self.record.record_table(plane.key, table.name, status=DONE, format=table.copy_format,
                                         rows=got.rows, bytes=got.bytes, sha256=got.sha256,
                                         seconds=round(time.monotonic() - t0, 3),
                                         **({"chain_verified": got.sha256} if table.holds_chain else {}))
        if self.status(plane) == FROZEN:
            self.record.set_status(plane.key, COPIED)
        self._timed(times, "copy", started)

    def _adopt_committed(self, plane: Plane, table, src, tgt) -> None:
        """A table that holds rows on the target but is not recorded as copied: a kill between
        its COMMIT and the record. It counts as copied only if it is exactly the source's."""
        mine, theirs = checksums.digest(src, table), checksums.digest(tgt, table)
        if mine != theirs:
            raise Refused(f"{plane.key}: table {table.name} holds rows on the target that are not the source's "
                          f"({theirs.rows:,} rows there, {mine.rows:,} here); something else wrote to "
                          f"{self.target.address(plane)}: empty it before going on")
        self.record.record_table(plane.key, table.name, status=DONE, format=table.copy_format, rows=mine.rows,
                                 bytes=mine.bytes, sha256=mine.sha256, seconds=0.0)
        self.say(f"{plane.key}.{table.name}: already on the target, identical ({mine.rows:,} rows)")

    def _verify(self, plane: Plane, times: dict) -> bool:
        with ExitStack() as stack:
            src = stack.enter_context(self.source.session(plane, read_only=True))
            tgt = stack.enter_context(self.target.session(plane))
            chain = stack.enter_context(self.target.session(plane))
            tables = self.sources[plane.key].tables
            # A digest recorded in another format (by an older release) is not comparable: the
            # source is read again for that table.
            formats = {t.name: t.copy_format for t in tables}
            done = {name: e for name, e in self.record.plane(plane.key)["tables"].items()
                    if e["status"] == DONE and e.get("format") == formats.get(name)}
            sent = {name: Digest(e["rows"], e["bytes"], e["sha256"]) for name, e in done.items()}
            result = verify(plane, tables, src, tgt, chain, (self.source.address(plane), self.target.address(plane)),
                            sent, chain_verified=done.get(CHAIN_TABLE, {}).get("chain_verified"))
        times["verify"] = result.seconds
        self.verifications.append(result)
        self.say("\n".join(summary(result)))
        if result.ok and self.status(plane) == COPIED:
            self.record.set_status(plane.key, VERIFIED)
        elif not result.ok and self.status(plane) == VERIFIED:  # it held once; it does not now
            self.record.set_status(plane.key, COPIED)
        return result.ok

    @property
    def report_path(self) -> Path:
        return self.report_file or self.secrets_dir / f"{self.source.site.name}-cutover-verification.json"

    def _write_report(self) -> None:
        report = {"schema": REPORT_SCHEMA, "source": self.source.site.name,
                  "target": self.target.site.name, "generated": state.now(),
                  "ok": all(v.ok for v in self.verifications),
                  "planes": [v.as_dict() for v in self.verifications]}
        self.report_path.write_text(json.dumps(report, indent=2) + "\n")
        self.say(f"verification written to {self.report_path}")

    def _switch(self) -> None:
        started = time.monotonic()
        todo = [p for p in self.planes if self.status(p) == VERIFIED]
        if not todo:
            return
        servers = {self.target.server(p) for p in todo}
        try:
            audit_password = self.target.store.password(contract.AUDIT_ROLE)
        except KeyError:
            raise Unreachable(f"no password for {contract.AUDIT_ROLE} in {self.target.store.path}: deploy the target "
                              "first") from None
        observed = [(self.target.host(s), s) for s in sorted(servers, key=lambda s: s.key)]
        report = switch.audit(self.target.site, observed, audit_password, self.target.ca_file)
        if report.exit_code != 0:
            for f in report.findings:
                self.say(f"  [{f.severity}] {f.server} {f.area}: {f.message}")
            for reason in report.unreachable:
                self.say(f"  could not audit {reason}")
            raise Refused(f"the audit of the target {self.target.site.name} is not clean (exit {report.exit_code}); "
                          "repair it (a redeploy of the target), then rerun: the env files were not switched")
        self.say(f"audit of {self.target.site.name}: clean")
        for plane in todo:
            why = switch.only_the_url_changes(
                plane, switch.render(self.source.site, plane, self.source.store.password(plane.app_role)),
                switch.render(self.target.site, plane, self.target.store.password(plane.app_role)))
            if why:
                raise Refused(why)
        failed = switch.write_env_files(self.pyinfra_state, self.target.inventory,
                                        Deployment(self.target.site, self.target.store, None), todo)
        if failed:
            raise Refused(f"writing the env files failed on {', '.join(failed)}; rerun to try again")
        for plane in todo:
            self.record.set_status(plane.key, SWITCHED)
        self.switch_seconds = time.monotonic() - started
        self.say(f"switched: {', '.join(p.env_var for p in todo)} now point at {self.target.site.name}")

    def rollback(self) -> None:
        """Lift the freeze of every plane not yet switched."""
        if self.record is None:
            raise Refused(f"no cutover of site {self.source.site.name} is under way; nothing to roll back")
        switched = [p.key for p in self.planes if self.status(p) == SWITCHED]
        if switched:
            raise Refused(f"{', '.join(switched)} already switched: services write to {self.record.target} now, and "
                          "those writes would be lost; roll back the other planes with --plane")
        for plane in self.planes:
            if self.status(plane) not in state.HOLDS_FREEZE:
                continue
            server = self.source.server(plane)
            with self.source.admin(server) as connect:
                freeze.lift(self.source.host(server), server.port, plane, connect)
            self.record.set_status(plane.key, ROLLED_BACK)
            self.say(f"{plane.key}: {plane.app_role} logs in again on the source; writes resume there")
        self.say(f"rolled back. The target keeps what was copied; a new cutover refuses it until its databases are "
                 f"emptied (drop them, then deploy {self.target.site.name} again)")

    def times_text(self) -> list[str]:
        """Time per plane and step in this run, and how long each plane's writes have been stopped."""
        out = ["Time per plane:"]
        for plane, times in self.timings.items():
            steps = "  ".join(f"{k} {v:.1f} s" for k, v in times.items())
            entry = self.record.plane(plane) if self.record else {}
            frozen, switched = entry.get(f"{FROZEN}_at"), entry.get(f"{SWITCHED}_at")
            since = "" if not frozen or entry.get("status") == ROLLED_BACK else \
                f"; writes stopped {frozen} to {switched}" if switched else f"; writes stopped since {frozen}"
            out.append(f"  {plane:<8} {steps}  total {sum(times.values()):.1f} s{since}")
        if self.switch_seconds is not None:
            out.append(f"  switch (the target's audit and every env file): {self.switch_seconds:.1f} s")
        return out


@contextmanager
def _progress(label: str, estimate: int | None):
    """A progress bar of rows and bytes for one table's copy (on stderr)."""
    counts = {"rows": 0, "bytes": 0}

    def show(_):
        return f"{counts['rows']:,} rows, {counts['bytes'] / 1e6:,.1f} MB"

    with click.progressbar(length=max(estimate or 0, 1), label=label, file=click.get_text_stream("stderr"),
                           item_show_func=show, show_pos=True) as bar:
        def on_progress(rows: int, size: int) -> None:
            counts["rows"] += rows
            counts["bytes"] += size
            bar.update(rows, counts)

        yield on_progress
