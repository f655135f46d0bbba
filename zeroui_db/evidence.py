"""The evidence ledger's guarantees that live outside the migrations: the pilot's evidence
guard (event triggers only a superuser may install), and reading the receipts chain's state
the way the backup, the restore drill and an audit check it.

The ledger itself (owned by the keeper role, append-only, hash-chained, with checkpoints of
its head) is in ``sql/schemas/tenant/``; see README, "The evidence ledger".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from . import ledger
from .contract import Plane

GUARD_FILE = Path(__file__).resolve().parent.parent / "sql" / "server" / "evidence_guard.sql"
GUARD_SCHEMA, GUARD_FUNCTION = "zeroui_guard", "evidence_guard"
GUARD_TRIGGERS = GUARD_FILE.read_text().count("\nCREATE EVENT TRIGGER ")  # the script's own: start, drop, end
MARKER = "zeroui evidence guard "

# Whether the guard of this very script is installed and enabled: (marker, enabled triggers).
# The catalogs are readable by every role, the admin included (the guard's schema is not: no
# regprocedure lookups here).
GUARD_STATE = sql.SQL("""
SELECT obj_description(p.oid, 'pg_proc'),
       (SELECT count(*) FROM pg_event_trigger t WHERE t.evtfoid = p.oid AND t.evtenabled <> 'D')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = {schema} AND p.proname = {function}
""").format(schema=sql.Literal(GUARD_SCHEMA), function=sql.Literal(GUARD_FUNCTION))


@dataclass(frozen=True)
class GuardScript:
    sql: str  # for the superuser's psql (one transaction), in the plane's database
    marker: str  # the function's comment once installed: says which script it came from


def guard_script(plane: Plane) -> GuardScript:
    body = ledger.with_variables(plane, GUARD_FILE.read_text())
    marker = MARKER + hashlib.sha256(body.encode()).hexdigest()
    comment = sql.SQL("COMMENT ON FUNCTION {}() IS {};\n").format(
        sql.Identifier(GUARD_SCHEMA, GUARD_FUNCTION), sql.Literal(marker))
    return GuardScript(f"{body}\n{comment.as_string()}", marker)


def guard_current(state: tuple[str | None, int] | None, script: GuardScript) -> bool:
    """Whether the database holds this script's guard, all of its triggers enabled."""
    return state is not None and state[0] == script.marker and state[1] == GUARD_TRIGGERS


@dataclass(frozen=True)
class ChainState:
    """The receipts chain of one database, as the backup and the drill check it."""

    receipts: int
    head_seq: int  # 0: empty
    head_hash: str | None  # hex
    broken_at: int | None  # verify_receipt_chain(): the first broken seq
    checkpoints: int
    checkpoint_broken: int | None  # verify_receipt_checkpoints(): the first checkpoint that no longer holds
    last_recorded_at: str | None  # ISO 8601, UTC
    hash_at: dict[int, str] = field(default_factory=dict)  # seq -> hex, for the seqs asked about

    def holds(self, seq: int, content_hash: str | None) -> bool:
        """Whether receipt ``seq`` with ``content_hash`` is in this chain (an anchor holds)."""
        return seq == 0 or self.hash_at.get(seq) == content_hash


def chain_state_query(seqs: list[int]) -> sql.Composed:
    """One query for a ChainState, as a row of JSON; ``seqs``: whose hashes to report (anchors)."""
    return sql.SQL("""
SELECT json_build_object(
  'receipts', (SELECT count(*) FROM public.receipts),
  'head_seq', h.seq, 'head_hash', encode(h.content_hash, 'hex'),
  'broken_at', public.verify_receipt_chain(),
  'checkpoints', (SELECT count(*) FROM public.receipt_checkpoints),
  'checkpoint_broken', public.verify_receipt_checkpoints(),
  'last_recorded_at', (SELECT to_char(max(recorded_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                       FROM public.receipts),
  'hash_at', (SELECT coalesce(json_object_agg(seq, encode(content_hash, 'hex')), '{{}}')
              FROM public.receipts WHERE seq = ANY({seqs}::bigint[])))
FROM public.receipt_chain_head() h""").format(seqs=sql.Literal(seqs))


def chain_state(row: dict) -> ChainState:
    """A ChainState from the JSON row of :func:`chain_state_query`."""
    return ChainState(row["receipts"], row["head_seq"], row["head_hash"], row["broken_at"], row["checkpoints"],
                      row["checkpoint_broken"], row["last_recorded_at"],
                      {int(k): v for k, v in (row.get("hash_at") or {}).items()})
