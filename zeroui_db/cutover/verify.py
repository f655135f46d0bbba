"""Proof that a plane arrived: every table, sequence and the receipt chain, held against the
source after the copy.

The target is read again, after the copy's COMMIT, and held against the source with the same
digest (``checksums``): exact row count and SHA-256 of the rows in key order. The source's
side is the digest of the stream the copy sent out of the frozen source (the same query and
hashing), recorded with it; where none is recorded, or in another format, the source is read
again too. Tables written by migrations only (reference data) are compared the same way.
Sequences must continue from the same value. On the tenant plane the target's chain must verify
(``verify_receipt_chain()`` is NULL) and end in the source's head. Where digests differ, the
rows are named by key. The source, the target and the target's chain check are read at the
same time, each on its own session and native thread (gevent's pool: the ``zeroui-db``
command runs monkey-patched by pyinfra's command line, where a Python thread is a greenlet and
one psycopg call blocking in libpq holds up the others).

The chain is verified on the target once. The copy verifies it in the transaction that
writes the receipts, before COMMIT (``transfer``), so a broken chain is never committed, and
the record notes it with the digest of the receipts it sent. If the receipts read back now
have that digest, they are the rows it verified, and recomputing every hash again (the
costliest read of a cutover) would prove nothing new. That trusts the record, a private file
of the control machine (0600) like the secrets beside it; the runbook's own check on the
target (``SELECT verify_receipt_chain()``) does not. Otherwise (receipts a rerun found on
the target, or read back different) the chain is verified here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg
from gevent.threadpool import ThreadPoolExecutor
from psycopg import sql

from ..contract import Plane
from ..grants import SCHEMA as DATA_SCHEMA
from .checksums import Difference, Digest, differences, digest
from .tables import CHAIN_CHECK, CHAIN_TABLE, Table, chain_break
from .transfer import sequence_states

SCHEMA = "zeroui-db-cutover-verification/2"  # 2: digests of the binary format where a table travels in it


@dataclass
class TableCheck:
    table: str
    copied: bool  # False: reference data written by migrations on both sides, compared only
    format: str  # the COPY format both digests are of (Table.copy_format)
    source: Digest
    target: Digest
    differing: int = 0  # rows that differ, when the digests do
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.source == self.target

    def as_dict(self) -> dict:
        return {"table": self.table, "copied": self.copied, "ok": self.ok, "format": self.format,
                "source": self.source.as_dict(),
                "target": self.target.as_dict(), "differing_rows": self.differing,
                "differences": [{"key": d.key, "what": d.what} for d in self.differences]}


IN_THE_COPY = "before the copy's COMMIT, on the receipts read back now"
NOW = "after the copy"


@dataclass
class ChainCheck:
    broken_at: int | None  # verify_receipt_chain() on the target
    source_head: tuple[int, str] | None  # (seq, content_hash hex) of the last receipt
    target_head: tuple[int, str] | None
    verified: str = NOW  # when verify_receipt_chain() ran: IN_THE_COPY or NOW

    @property
    def ok(self) -> bool:
        return self.broken_at is None and self.source_head == self.target_head

    def as_dict(self) -> dict:
        head = lambda h: None if h is None else {"seq": h[0], "content_hash": h[1]}  # noqa: E731
        return {"ok": self.ok, "broken_at": self.broken_at, "verified": self.verified,
                "source_head": head(self.source_head), "target_head": head(self.target_head)}


@dataclass
class PlaneVerification:
    plane: str
    source: str  # address, for people
    target: str
    tables: list[TableCheck]
    sequences: dict[str, dict]  # name -> {"source": [last_value, is_called], "target": [...]}
    chain: ChainCheck | None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (all(t.ok for t in self.tables) and all(s["source"] == s["target"] for s in self.sequences.values())
                and (self.chain is None or self.chain.ok))

    def as_dict(self) -> dict:
        return {"plane": self.plane, "ok": self.ok, "source": self.source, "target": self.target,
                "seconds": round(self.seconds, 3), "tables": [t.as_dict() for t in self.tables],
                "sequences": [{"sequence": k, **v, "ok": v["source"] == v["target"]}
                              for k, v in self.sequences.items()],
                "chain": self.chain.as_dict() if self.chain else None}


def _side(conn: psycopg.Connection, tables: list[Table], known: dict[str, Digest]) -> tuple[dict, dict, tuple | None]:
    digests = {t.name: known.get(t.name) or digest(conn, t) for t in tables}
    sequences = {}
    for t in tables:
        sequences.update(sequence_states(conn, t))
    head = None
    if any(t.name == CHAIN_TABLE for t in tables):
        row = conn.execute(sql.SQL("SELECT seq, encode(content_hash, 'hex') FROM {} ORDER BY seq DESC LIMIT 1")
                           .format(sql.Identifier(DATA_SCHEMA, CHAIN_TABLE))).fetchone()
        head = tuple(row) if row else None
    return digests, sequences, head


def verify(plane: Plane, tables: list[Table], source: psycopg.Connection, target: psycopg.Connection,
           target_chain: psycopg.Connection, addresses: tuple[str, str],
           sent: dict[str, Digest] | None = None, chain_verified: str | None = None) -> PlaneVerification:
    """Hold the target's copy of ``plane`` against the source. Three sessions, read at once:
    the source, the target, and the target again for its chain check (``target_chain``).
    ``sent``: the source's digests of tables as their copy streamed them out of the frozen
    source (the same query and hashing, in the table's format), so the source is not read twice.
    ``chain_verified``: the SHA-256 of the receipts whose chain their copy verified before its
    COMMIT; verified again unless the receipts read back are those (and were sent so)."""
    started = time.monotonic()
    has_chain = any(t.name == CHAIN_TABLE for t in tables)
    sent_receipts = (sent or {}).get(CHAIN_TABLE)
    trust_copy = has_chain and sent_receipts is not None and chain_verified == sent_receipts.sha256
    with ThreadPoolExecutor(3) as pool:
        mine = pool.submit(_side, source, tables, sent or {})
        theirs = pool.submit(_side, target, tables, {})
        chain = pool.submit(chain_break, target_chain) if has_chain and not trust_copy else None
        (src, src_seq, src_head), (tgt, tgt_seq, tgt_head) = mine.result(), theirs.result()
        broken = chain.result() if chain else None
    checks = []
    for t in tables:
        check = TableCheck(t.name, t.copied, t.copy_format, src[t.name], tgt[t.name])
        if not check.ok:
            check.differing, check.differences = differences(source, target, t)
        checks.append(check)
    verified = NOW
    if trust_copy:
        if src[CHAIN_TABLE] == tgt[CHAIN_TABLE]:
            verified = IN_THE_COPY
        else:
            broken = chain_break(target_chain)
    sequences = {name: {"source": list(src_seq[name]), "target": list(tgt_seq.get(name, (None, None)))}
                 for name in src_seq}
    result = PlaneVerification(plane.key, *addresses, checks, sequences,
                               ChainCheck(broken, src_head, tgt_head, verified) if has_chain else None)
    result.seconds = time.monotonic() - started
    return result


def summary(v: PlaneVerification) -> list[str]:
    """The verification of one plane as a table, for people."""
    width = max([len(t.table) for t in v.tables] + [5])
    lines = [f"Verification of {v.plane}: {v.source} -> {v.target} ({v.seconds:.1f} s)",
             f"  {'table':<{width}}  {'source rows':>12}  {'target rows':>12}  {'sha256 source':<16}  "
             f"{'sha256 target':<16}  result"]
    for t in v.tables:
        mark = "equal" if t.ok else f"DIFFERENT ({t.differing} row{'s' if t.differing != 1 else ''})"
        lines.append(f"  {t.table:<{width}}  {t.source.rows:>12,}  {t.target.rows:>12,}  {t.source.sha256[:16]}  "
                     f"{t.target.sha256[:16]}  {mark}{'' if t.copied else ' (reference data)'}")
        for d in t.differences:
            lines.append(f"      {t.table} {d}")
        if t.differing > len(t.differences):
            lines.append(f"      … and {t.differing - len(t.differences)} more")
    unequal = [k for k, s in v.sequences.items() if s["source"] != s["target"]]
    lines.append(f"  sequences: {len(v.sequences) - len(unequal)} of {len(v.sequences)} continue from the source's "
                 "value" + (f"; different: {', '.join(unequal)}" if unequal else ""))
    if v.chain is not None:
        c = v.chain
        state = "intact" if c.broken_at is None else f"BROKEN at seq {c.broken_at}"
        head = lambda h: "empty" if h is None else f"seq {h[0]} {h[1][:16]}"  # noqa: E731
        same = "equal to the source's" if c.source_head == c.target_head else \
            f"NOT the source's ({head(c.source_head)})"
        lines.append(f"  receipt chain on the target: {state} ({CHAIN_CHECK}() {c.verified}); "
                     f"head {head(c.target_head)}, {same}")
    lines.append(f"  {v.plane}: {'verified' if v.ok else 'NOT verified'}")
    return lines
