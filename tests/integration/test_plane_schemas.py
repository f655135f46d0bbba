"""The plane schemas as deployed on @local (session fixture ``local_site``): migration
ledgers, ownership, the privilege matrix on the real tables, the tenant receipts chain,
the product lifecycle, hard rule 3 on the live shared database, and the migration
runner's refusals, rollbacks and concurrency.

Names of planes, databases, roles and env vars come from ``zeroui_db.contract``; table
names are the schema files' own. Login roles connect from their service group's lab host
(pg_hba admits a plane's login roles only from there); the superuser works over the local
socket. Probe writes run in transactions that are rolled back, so the data stays clean.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from deployment import run_deploy
from hosts import service_host, sql_rolled_back, superuser_psql, superuser_rows

from zeroui_db import contract, ledger, schemas
from zeroui_db.config import ADMIN_LOOPBACK

pytestmark = pytest.mark.integration

INSUFFICIENT_PRIVILEGE = "42501"
CHECK_VIOLATION = "23514"
OWNED_RELKINDS = ("r", "p", "v", "m", "S", "f")  # tables, views, sequences: everything with an owner


# -- helpers -----------------------------------------------------------------------------------






def refused_as_superuser(port: int, dbname: str, script: str | sql.Composable) -> str:
    """Run a script that must fail as the superuser; its error output. psql stops at the
    first error and exits, so an open transaction is rolled back with the connection."""
    proc = superuser_psql(port, dbname, script, check=False)
    assert proc.returncode != 0, f"expected a refusal, got: {proc.stdout}"
    return proc.stderr


def session(lab, site, plane: contract.Plane, role: str, statements: list[str | sql.Composable]) -> list[dict]:
    """Run statements as ``role`` from the plane's service host over TLS, in one rolled-back transaction."""
    text = [s.as_string() if isinstance(s, sql.Composable) else s for s in statements]
    return sql_rolled_back(lab, service_host(plane), text, host=site.server_address, port=site.port,
                           dbname=plane.store, user=role, password=site.password(role))


def outcome(results: list[dict]) -> list[tuple[bool, str | None]]:
    return [(r["ok"], r["sqlstate"]) for r in results]


def public_tables(port: int, plane: contract.Plane) -> dict[str, str | None]:
    """Each table of the plane's public schema -> a column an UPDATE may name (not identity, not generated)."""
    found = superuser_rows(port, plane.store, """
        SELECT c.relname,
               coalesce((SELECT a.attname FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.attidentity = '' AND a.attgenerated = ''
                         ORDER BY a.attnum LIMIT 1), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
        ORDER BY 1""")
    return {name: column or None for name, column in found}


def ledger_rows(port: int, dbname: str) -> list[list[str]]:
    return superuser_rows(port, dbname, sql.SQL(
        "SELECT filename, checksum, applied_by, applied_as FROM {} ORDER BY filename").format(
        sql.Identifier(ledger.TABLE)))


def relation_exists(port: int, dbname: str, name: str) -> bool:
    [[found]] = superuser_rows(port, dbname, sql.SQL("SELECT to_regclass({}) IS NOT NULL").format(
        sql.Literal(f"public.{name}")))
    return found == "t"


# -- 1. ledgers and ownership ------------------------------------------------------------------


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES, ids=lambda p: p.key)
def test_ledger_lists_exactly_the_planes_migrations(local_site, plane):
    """The ledger holds each of the plane's files once, with its checksum, applied by the admin as the owner."""
    files = schemas.migrations(plane)
    assert files, f"no migration files for {plane.key}"
    expected = [[m.name, m.checksum, contract.ADMIN_ROLE, plane.owner_role] for m in files]
    assert ledger_rows(local_site.port, plane.store) == expected


# The functions of the tenant's evidence ledger: they write and verify it, so they are the keeper's.
LEDGER_FUNCTIONS = {"receipt_canonical", "receipt_hash", "receipts_append", "receipts_refuse_change",
                    "verify_receipt_chain", "record_receipt_checkpoint", "verify_receipt_checkpoints",
                    "receipt_chain_head", "receipt_chain_status", "receipts_lock_chain"}


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES, ids=lambda p: p.key)
def test_every_public_relation_is_owned_by_the_owner_role(local_site, plane):
    """Tables (the migration ledger included), sequences and views of the public schema belong to the plane's
    owner role; the tables classified as the evidence ledger, their sequences and functions to its keeper."""
    owners = superuser_rows(local_site.port, plane.store, sql.SQL("""
        SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner),
               coalesce((SELECT t.relname FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                         WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') AND t.relkind = 'r' LIMIT 1), c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = ANY({})
        ORDER BY 1""").format(sql.Literal(list(OWNED_RELKINDS))))
    tables = {name for name, kind, _, _ in owners if kind in ("r", "p")}
    declared = {t.name for t in schemas.tables(plane.key)}
    assert declared and declared | {ledger.TABLE} <= tables
    evidence = {t.name for t in schemas.tables(plane.key) if t.class_key == contract.EVIDENCE_LEDGER}
    assert bool(evidence) == plane.keeps_evidence
    keeper = plane.keeper_role if plane.keeps_evidence else None
    expected = {name: keeper if table in evidence else plane.owner_role for name, _, _, table in owners}
    assert {name: owner for name, _, owner, _ in owners} == expected
    functions = dict(superuser_rows(local_site.port, plane.store, """
        SELECT p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' ORDER BY 1"""))
    assert functions and functions == {
        name: keeper if name in LEDGER_FUNCTIONS and keeper else plane.owner_role for name in functions}
    assert not keeper or LEDGER_FUNCTIONS <= set(functions)


# -- 2. privilege matrix -----------------------------------------------------------------------

# Per plane: statements that write a representative mutable table as a service would
# (each must succeed for the app role), and that table (the target of the DDL probes).
_PROBE = "zt-probe"
REPRESENTATIVE: dict[contract.Plane, tuple[str, list[str]]] = {
    contract.TENANT: ("provider_cursors", [
        f"INSERT INTO integration_connections (provider_key, name) VALUES ('{_PROBE}', '{_PROBE}') RETURNING status",
        f"INSERT INTO provider_cursors (connection_id, stream, cursor_value) "
        f"SELECT id, 'pull_requests', 'page-1' FROM integration_connections WHERE name = '{_PROBE}' "
        f"RETURNING cursor_value",
        "UPDATE provider_cursors SET cursor_value = 'page-2', version = version + 1 "
        "WHERE stream = 'pull_requests' AND version = 0 RETURNING cursor_value, version",
        f"INSERT INTO webhook_deliveries (connection_id, dedup_key, event_type, signature_valid, payload_sha256, "
        f"payload_bytes) SELECT id, 'delivery-1', 'pull_request.opened', true, sha256('x'), 1 "
        f"FROM integration_connections WHERE name = '{_PROBE}' RETURNING status",
        "SELECT count(*) FROM webhook_deliveries WHERE dedup_key = 'delivery-1'",
    ]),
    contract.PRODUCT: ("governance_requests", [
        f"INSERT INTO governance_requests (tenant_id, kind, subject_ref, requested_by, justification) "
        f"VALUES (gen_random_uuid(), 'waiver', 'repo:{_PROBE}', '{_PROBE}', 'probe') RETURNING state",
        f"UPDATE governance_requests SET state = 'withdrawn', decided_at = now() "
        f"WHERE subject_ref = 'repo:{_PROBE}' RETURNING state",
        "INSERT INTO tenant_metric_daily (tenant_id, metric_key, day, value_sum, sample_count) "
        "VALUES (gen_random_uuid(), 'receipts.ingested', current_date, 3, 1) RETURNING sample_count",
        f"SELECT count(*) FROM governance_requests WHERE subject_ref = 'repo:{_PROBE}'",
    ]),
    contract.SHARED: ("providers", [
        f"INSERT INTO providers (provider_key, display_name, category) VALUES ('{_PROBE}', 'ZT probe', 'other') "
        f"RETURNING status",
        f"UPDATE providers SET status = 'deprecated' WHERE provider_key = '{_PROBE}' RETURNING status",
        f"INSERT INTO provider_allowlist_entries (provider_id, entry_kind, host, reason, added_by) "
        f"SELECT id, 'egress_host', 'api.example.com', 'probe', '{_PROBE}' FROM providers "
        f"WHERE provider_key = '{_PROBE}' RETURNING entry_kind",
        f"SELECT count(*) FROM providers WHERE provider_key = '{_PROBE}'",
    ]),
}


def test_representative_tables_cover_every_postgres_plane():
    assert set(REPRESENTATIVE) == set(contract.POSTGRES_PLANES)


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES, ids=lambda p: p.key)
def test_app_role_writes_data_but_no_ddl(lab, local_site, plane):
    """The app role reads and writes a mutable table of its plane; CREATE, ALTER, DROP, TRUNCATE and the
    migration ledger are out of its reach."""
    table, writes = REPRESENTATIVE[plane]
    assert table in {t.name for t in schemas.tables(plane.key)}
    target, ledger_table = sql.Identifier(table), sql.Identifier(ledger.TABLE)
    denied = [
        sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(f"zt_app_{secrets.token_hex(4)}")),
        sql.SQL("ALTER TABLE {} ADD COLUMN zt_extra int").format(target),
        sql.SQL("CREATE INDEX zt_app_idx ON {} (updated_at)").format(target),  # each target has updated_at
        sql.SQL("DROP TABLE {}").format(target),
        sql.SQL("TRUNCATE {}").format(target),
        sql.SQL("SELECT count(*) FROM {}").format(ledger_table),
        sql.SQL("INSERT INTO {} (filename, checksum) VALUES ('9999_zt.sql', repeat('0', 64))").format(ledger_table),
    ]
    results = session(lab, local_site, plane, plane.app_role, [*writes, *denied])
    assert outcome(results[:len(writes)]) == [(True, None)] * len(writes), results
    assert all(r["rows"] for r in results[:len(writes)]), results  # every write and read touched its row
    assert outcome(results[len(writes):]) == [(False, INSUFFICIENT_PRIVILEGE)] * len(denied), results


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES, ids=lambda p: p.key)
def test_readonly_role_selects_every_table_and_writes_none(lab, local_site, plane):
    """The read-only role reads every table of its plane (the ledger too) and may not INSERT, UPDATE or DELETE any."""
    tables = public_tables(local_site.port, plane)
    assert ledger.TABLE in tables and len(tables) > 1
    statements, expect = [], []
    for name, column in tables.items():
        t = sql.Identifier(name)
        statements.append(sql.SQL("SELECT count(*) FROM {}").format(t))
        expect.append((name, "SELECT", True, None))
        statements.append(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t))
        expect.append((name, "INSERT", False, INSUFFICIENT_PRIVILEGE))
        if column is not None:
            statements.append(sql.SQL("UPDATE {} SET {} = {} WHERE false").format(
                t, sql.Identifier(column), sql.Identifier(column)))
            expect.append((name, "UPDATE", False, INSUFFICIENT_PRIVILEGE))
        statements.append(sql.SQL("DELETE FROM {} WHERE false").format(t))
        expect.append((name, "DELETE", False, INSUFFICIENT_PRIVILEGE))
    results = session(lab, local_site, plane, plane.readonly_role, statements)
    got = [(name, verb, r["ok"], r["sqlstate"]) for (name, verb, _, _), r in zip(expect, results)]
    assert got == expect


# -- 3. tenant receipts ------------------------------------------------------------------------


def _receipt(source: str, n: int, **extra: str) -> str:
    columns = {"kind": "'ide.check'", "source": f"'{source}'", "occurred_at": "now()",
               "payload": f"'{{\"n\": {n}}}'", **extra}
    return (f"INSERT INTO receipts ({', '.join(columns)}) VALUES ({', '.join(columns.values())}) "
            "RETURNING seq, encode(prev_hash, 'hex'), encode(content_hash, 'hex')")


def test_app_role_appends_receipts_and_cannot_change_them(lab, local_site):
    """INSERT and SELECT work for the app role; the trigger sets seq and the hashes whatever the client sends;
    the chain verifies; UPDATE, DELETE and TRUNCATE are refused."""
    plane = contract.TENANT
    source = f"zt:{secrets.token_hex(4)}"
    forged = {"seq": "424242", "prev_hash": "sha256('forged')", "content_hash": "sha256('forged')"}
    statements = [
        _receipt(source, 1), _receipt(source, 2), _receipt(source, 3, **forged),
        f"SELECT count(*) FROM receipts WHERE source = '{source}'",
        "SELECT verify_receipt_chain() IS NULL",
        f"UPDATE receipts SET kind = 'ide.tampered' WHERE source = '{source}'",
        f"DELETE FROM receipts WHERE source = '{source}'",
        "TRUNCATE receipts",
    ]
    results = session(lab, local_site, plane, plane.app_role, statements)
    assert outcome(results[:5]) == [(True, None)] * 5, results
    chain = [r["rows"][0] for r in results[:3]]
    seqs = [int(seq) for seq, _, _ in chain]
    assert seqs == list(range(seqs[0], seqs[0] + 3))  # gapless, and the forged seq was overwritten
    for (_, _, before), (_, prev, _) in zip(chain, chain[1:]):
        assert prev == before  # each receipt links to the one before it
    assert chain[2][2] != hashlib.sha256(b"forged").hexdigest()
    assert results[3]["rows"] == [[3]] and results[4]["rows"] == [[True]]
    assert outcome(results[5:]) == [(False, INSUFFICIENT_PRIVILEGE)] * 3, results


@pytest.mark.parametrize("change", ["UPDATE receipts SET kind = 'ide.tampered'", "DELETE FROM receipts"])
def test_receipts_refuse_update_and_delete_even_for_the_superuser(local_site, change):
    """The append-only trigger stops the superuser too (a row must exist for a row trigger to fire)."""
    operation = change.split()[0]
    stderr = refused_as_superuser(local_site.port, contract.TENANT.store, f"""
        BEGIN;
        {_receipt('zt:superuser', 1)};
        {change} WHERE source = 'zt:superuser';
        """)
    assert f"receipts is an append-only ledger: {operation} refused" in stderr


def test_receipts_refuse_truncate_even_for_the_superuser(local_site):
    # CASCADE gets past the foreign keys that point at receipts, so the trigger is what refuses;
    # the transaction would be rolled back if it did not.
    stderr = refused_as_superuser(local_site.port, contract.TENANT.store,
                                  "BEGIN; TRUNCATE receipts CASCADE; ROLLBACK;")
    assert "receipts is an append-only ledger: TRUNCATE refused" in stderr


def test_receipt_chain_detects_a_tampered_row(local_site):
    """With triggers off (replica mode) the superuser can rewrite a payload; verify_receipt_chain() then names
    that receipt. Everything is rolled back."""
    source = f"zt:{secrets.token_hex(4)}"
    out = superuser_rows(local_site.port, contract.TENANT.store, f"""
        BEGIN;
        {_receipt(source, 1)};
        {_receipt(source, 2)};
        {_receipt(source, 3)};
        SELECT 'intact', coalesce(verify_receipt_chain()::text, 'null');
        SET LOCAL session_replication_role = replica;
        UPDATE receipts SET payload = '{{"n": 666}}'
         WHERE seq = (SELECT min(seq) + 1 FROM receipts WHERE source = '{source}')
        RETURNING 'tampered', seq;
        SELECT 'verify', coalesce(verify_receipt_chain()::text, 'null');
        ROLLBACK;
        SELECT 'after', coalesce(verify_receipt_chain()::text, 'null'),
               (SELECT count(*) FROM receipts WHERE source = '{source}');
        """)
    tagged = {r[0]: r[1:] for r in out if r[0] in ("intact", "tampered", "verify", "after")}
    assert tagged["intact"] == ["null"]
    tampered = tagged["tampered"][0]
    assert tagged["verify"] == [tampered]
    assert tagged["after"] == ["null", "0"]  # rolled back: chain intact, nothing left


# The format checks as sql/schemas/tenant/0001 first wrote them: what a receipt's kind and policy
# digest may be. 0014 wrote them again, cheaper; they must still take and refuse the same values.
FIRST_KIND_RULE = "^[a-z][a-z0-9_.:-]{0,127}$"
FIRST_DIGEST_RULE = "^sha256:[0-9a-f]{64}$"
KINDS = ["a", "ide.check", "a:b.c-d_e9", "a" + "b" * 127, "a" + "b" * 128, "", "A", "9a", "-a", "a b", "a\n",
         "a/b", "é", "aé", "a" + "é" * 63, "a" + "b" * 126 + "é", "ab$", "ide.Check"]
DIGESTS = ["sha256:" + "0123456789abcdef" * 4, "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64,
           "sha256:" + "g" * 64, "SHA256:" + "a" * 64, "sha512:" + "a" * 64, "xsha256:" + "a" * 63,
           "sha256:" + "a" * 63 + "é", "sha256:" + "a" * 64 + "\n", "sha256:" + "a" * 62 + "\n" + "a", "sha256:", ""]


def test_receipt_checks_take_and_refuse_what_their_first_rules_did(local_site):
    """Every candidate kind and policy digest is appended in a savepoint of its own (rolled back):
    accepted exactly when the first rule's pattern matches it."""
    plane = contract.TENANT
    candidates = [("kind", k, FIRST_KIND_RULE) for k in KINDS] + \
                 [("policy_digest", d, FIRST_DIGEST_RULE) for d in DIGESTS]
    body = "\n".join(
        sql.SQL("""
        BEGIN
            INSERT INTO receipts (kind, source, occurred_at, payload, policy_digest)
            VALUES ({kind}, 'zt:checks', now(), '{{}}', {digest});
            RETURN NEXT ARRAY[{i}::text, 'accepted', ({value} ~ {rule})::text];
        EXCEPTION WHEN check_violation THEN
            RETURN NEXT ARRAY[{i}::text, 'refused', ({value} ~ {rule})::text];
        END;""").format(i=sql.Literal(i), value=sql.Literal(value), rule=sql.Literal(rule),
                        kind=sql.Literal(value if column == "kind" else "ide.check"),
                        digest=sql.Literal(value if column == "policy_digest" else None)).as_string()
        for i, (column, value, rule) in enumerate(candidates))
    rows = superuser_rows(local_site.port, plane.store, f"""
        BEGIN;
        CREATE FUNCTION pg_temp.zt_try() RETURNS SETOF text[] LANGUAGE plpgsql AS $zt$
        BEGIN {body}
        END $zt$;
        SELECT r[1], r[2], r[3] FROM pg_temp.zt_try() r;
        ROLLBACK;""")
    outcomes = {int(i): (got, matches) for i, got, matches in rows}
    assert len(outcomes) == len(candidates)
    wrong = [(candidates[i][:2], got) for i, (got, matches) in outcomes.items()
             if (got == "accepted") != (matches == "true")]
    assert wrong == []
    assert {got for got, _ in outcomes.values()} == {"accepted", "refused"}  # both ways were tried


def test_receipt_chain_names_the_first_break_of_any_kind(local_site):
    """verify_receipt_chain() names the first receipt whose hash, link or place in the sequence is
    wrong, whichever of its checks finds it (0015 checks hashes and links apart). As the superuser,
    triggers off; rolled back."""
    source = f"zt:{secrets.token_hex(4)}"
    appends = ";\n".join(_receipt(source, n) for n in range(1, 7))
    mine = f"(SELECT min(seq) FROM receipts WHERE source = '{source}')"
    out = superuser_rows(local_site.port, contract.TENANT.store, f"""
        BEGIN;
        {appends};
        SET LOCAL session_replication_role = replica;
        SAVEPOINT s;
        UPDATE receipts SET prev_hash = sha256('zt') WHERE seq = {mine} + 2;  -- a link and a hash
        SELECT 'link', verify_receipt_chain() - {mine};
        ROLLBACK TO SAVEPOINT s;
        DELETE FROM receipts WHERE seq = {mine} + 3;  -- a gap: the receipt after it is out of place
        SELECT 'gap', verify_receipt_chain() - {mine};
        UPDATE receipts SET payload = '{{"n": 0}}' WHERE seq = {mine} + 5;  -- a later hash
        SELECT 'gap and hash', verify_receipt_chain() - {mine};
        ROLLBACK TO SAVEPOINT s;
        UPDATE receipts SET content_hash = sha256('zt') WHERE seq = {mine} + 1;  -- a hash, and the next link
        SELECT 'hash', verify_receipt_chain() - {mine};
        ROLLBACK;""")
    found = {r[0]: int(r[1]) for r in out if r[0] in ("link", "gap", "gap and hash", "hash")}
    assert found == {"link": 2, "gap": 4, "gap and hash": 4, "hash": 1}


def test_receipt_chain_is_verified_by_parallel_workers(local_site):
    """The chain's hashes are recomputed in a parallel scan (0015): the plan of the query inside
    verify_receipt_chain(), logged to the client by auto_explain, launched workers. Parallel
    plans are made cheap so that a small ledger gets one too."""
    result = superuser_psql(local_site.port, contract.TENANT.store, """
        LOAD 'auto_explain';
        SET auto_explain.log_min_duration = 0;
        SET auto_explain.log_analyze = on;
        SET auto_explain.log_nested_statements = on;
        SET client_min_messages = log;
        SET max_parallel_workers_per_gather = 2;
        SET parallel_setup_cost = 0;
        SET parallel_tuple_cost = 0;
        SET min_parallel_table_scan_size = 0;
        SELECT verify_receipt_chain() IS NULL;""")
    assert result.stdout.strip() == "t"
    assert re.search(r"Parallel Seq Scan on (public\.)?receipts", result.stderr), result.stderr
    assert re.search(r"Workers Launched: [1-9]", result.stderr), result.stderr


# -- 4. product lifecycle ----------------------------------------------------------------------


def test_product_lifecycle_transitions_are_enforced_for_the_app_role(lab, local_site):
    """Legal transitions pass and are audited; an illegal one, a non-draft start and widening the lifecycle
    table are refused by the database."""
    plane = contract.PRODUCT
    tenant, key = str(uuid.uuid4()), f"zt.lifecycle.{secrets.token_hex(3)}"
    snapshot = f"(SELECT s.id FROM policy_snapshots s JOIN policy_bundles b ON b.id = s.bundle_id " \
               f"WHERE b.bundle_key = '{key}')"
    digest = "sha256:" + "a" * 64

    def move(state: str, signed: bool = False) -> str:
        sign = ", signature = 'sig', signing_key_id = 'zt-key'" if signed else ""
        return f"UPDATE policy_snapshots SET state = '{state}'{sign} WHERE id = {snapshot} RETURNING state"

    statements = [
        f"INSERT INTO policy_bundles (tenant_id, bundle_key, title, created_by) "
        f"VALUES ('{tenant}', '{key}', 'ZT', 'zt') RETURNING bundle_key",
        f"INSERT INTO policy_snapshots (bundle_id, version, document, digest, size_bytes, created_by) "
        f"SELECT id, 1, '{{}}', '{digest}', 2, 'zt' FROM policy_bundles WHERE bundle_key = '{key}' RETURNING state",
        move("review"),                      # legal: draft -> review
        move("released", signed=True),       # illegal: review -> released
        move("approved", signed=True),       # legal: review -> approved
        move("review"),                      # illegal: approved -> review
        f"SELECT state FROM policy_snapshots WHERE id = {snapshot}",
        f"SELECT from_state, to_state FROM policy_snapshot_transitions WHERE snapshot_id = {snapshot} ORDER BY id",
        f"INSERT INTO policy_snapshots (bundle_id, version, document, digest, size_bytes, created_by, state, "
        f"signature, signing_key_id) SELECT id, 2, '{{}}', 'sha256:{'b' * 64}', 2, 'zt', 'released', 's', 'k' "
        f"FROM policy_bundles WHERE bundle_key = '{key}'",
        "INSERT INTO policy_lifecycle_transitions (from_state, to_state, description) "
        "VALUES ('draft', 'released', 'shortcut')",
    ]
    r = session(lab, local_site, plane, plane.app_role, statements)
    assert outcome(r[:3]) == [(True, None)] * 3, r
    assert (r[1]["rows"], r[2]["rows"]) == ([["draft"]], [["review"]])
    assert outcome([r[3]]) == [(False, CHECK_VIOLATION)]
    assert r[3]["message"].startswith("illegal policy snapshot transition review -> released")
    assert r[4]["ok"] and r[4]["rows"] == [["approved"]], r[4]
    assert outcome([r[5]]) == [(False, CHECK_VIOLATION)]
    assert r[5]["message"].startswith("illegal policy snapshot transition approved -> review")
    assert r[6]["rows"] == [["approved"]]
    assert r[7]["rows"] == [[None, "draft"], ["draft", "review"], ["review", "approved"]]
    assert outcome([r[8]]) == [(False, CHECK_VIOLATION)] and "starts as draft" in r[8]["message"]
    assert outcome([r[9]]) == [(False, INSUFFICIENT_PRIVILEGE)]


# -- 5. hard rule 3 on the live shared database ------------------------------------------------


def _columns(port: int, dbname: str) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in superuser_rows(port, dbname, """
        SELECT table_schema, table_name, column_name FROM information_schema.columns
        WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg\\_toast%'
        ORDER BY 1, 2, 3""")]


@pytest.mark.parametrize("plane", contract.PAYLOAD_FREE_PLANES, ids=lambda p: p.key)
def test_payload_free_database_has_no_payload_body_column(local_site, plane):
    """No column of any user table or view in the live database is named like a payload body."""
    columns = _columns(local_site.port, plane.store)
    assert {t.name for t in schemas.tables(plane.key)} <= {table for _, table, _ in columns}
    assert [c for c in columns if contract.PAYLOAD_BODY_COLUMN.search(c[2])] == []


def test_payload_body_check_is_not_vacuous(local_site):
    """The same live query finds the tenant ledger's payload column, so the check above can fail."""
    columns = _columns(local_site.port, contract.TENANT.store)
    assert ("public", "receipts", "payload") in [c for c in columns if contract.PAYLOAD_BODY_COLUMN.search(c[2])]


# -- 6. the migration runner -------------------------------------------------------------------


def test_tampered_applied_migration_stops_the_deploy(local_site):
    """A ledger checksum that no longer matches its file stops the deploy with both checksums named; once the
    row is restored the deploy is a no-op again."""
    plane = contract.POSTGRES_PLANES[-1]
    migration = schemas.migrations(plane)[1]
    fake = hashlib.sha256(f"zt-tampered-{secrets.token_hex(4)}".encode()).hexdigest()

    def update(checksum: str) -> sql.Composable:
        return sql.SQL("UPDATE {} SET checksum = {} WHERE filename = {} RETURNING filename").format(
            sql.Identifier(ledger.TABLE), sql.Literal(checksum), sql.Literal(migration.name))

    assert superuser_rows(local_site.port, plane.store, update(fake)) == [[migration.name]]
    try:
        # As ./bundle deploy runs it (-y: the operation is generated while executing), and as a dry
        # run (generated while planning): both refuse with one line naming the file and both checksums.
        dry = run_deploy(local_site.inventory, "--dry", env=local_site.env, check=False, json_output=False)
        for run in (run_deploy(local_site.inventory, env=local_site.env, check=False, json_output=False), dry):
            assert run.returncode != 0
            lines = [line for line in run.stderr.splitlines() if "changed after it was applied" in line]
            assert lines, run.stderr[-4000:]
            line = lines[0]
            assert f"{plane.key}/{migration.name}" in line and fake in line and migration.checksum in line, line
            assert "Traceback" not in run.stderr, run.stderr[-4000:]  # a refusal, not a crash
    finally:
        superuser_psql(local_site.port, plane.store, update(migration.checksum))
    assert ledger_rows(local_site.port, plane.store)[1][:2] == [migration.name, migration.checksum]
    assert local_site.deploy().changed == []


BROKEN = """\
-- zeroui-class: {plane}/{data_class}: scratch table of a migration that fails (test)
CREATE TABLE {table} (id bigint PRIMARY KEY);

INSERT INTO {missing} (id) VALUES (1);
"""
LATER = """\
-- zeroui-class: {plane}/{data_class}: scratch table of a migration after a failing one (test)
CREATE TABLE {table} (id bigint PRIMARY KEY);
"""


def test_failing_migration_is_rolled_back_and_stops_the_run(local_site, tmp_path):
    """A migration whose second statement fails leaves nothing behind (no table, no ledger row), the next file
    does not run, and the message names the file and the statement."""
    plane = contract.TENANT
    data_class = plane.data_classes[0].key
    tag = secrets.token_hex(3)
    broken_table, later_table, missing = f"zt_broken_{tag}", f"zt_later_{tag}", f"zt_missing_{tag}"
    root = tmp_path / "schemas"
    shutil.copytree(schemas.SCHEMA_DIR, root)
    folder = schemas.plane_dir(plane, root)
    (folder / "0099_broken.sql").write_text(
        BROKEN.format(plane=plane.key, data_class=data_class, table=broken_table, missing=missing))
    (folder / "0100_later.sql").write_text(LATER.format(plane=plane.key, data_class=data_class, table=later_table))
    assert schemas.classification_errors(root) == []  # the files pass the gate; they fail in the database
    before = ledger_rows(local_site.port, plane.store)

    run = run_deploy(local_site.inventory, env={**local_site.env, "ZEROUI_SCHEMA_DIR": str(root)},
                     check=False, json_output=False)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if f"{plane.key}/0099_broken.sql: statement 2 failed" in line]
    assert lines, run.stderr[-4000:]
    assert f"INSERT INTO {missing} (id) VALUES (1)" in lines[0] and missing in lines[0]
    assert "rolled back" in lines[0]
    assert "Traceback" not in run.stderr

    assert not relation_exists(local_site.port, plane.store, broken_table)
    assert not relation_exists(local_site.port, plane.store, later_table)
    assert ledger_rows(local_site.port, plane.store) == before
    assert local_site.deploy().changed == []


def _hba_allow_admin(site, dbname: str) -> tuple[Path, bytes]:
    """Let the admin role reach a scratch database over loopback TLS: one pg_hba line, ahead of all others."""
    path = Path(f"/etc/postgresql/{site.version}/{site.cluster}/pg_hba.conf")
    original = path.read_bytes()
    line = f"hostssl {dbname} {contract.ADMIN_ROLE} {ADMIN_LOOPBACK}/32 scram-sha-256\n"
    path.write_bytes(line.encode() + original)  # in place: owner and mode stay
    superuser_psql(site.port, contract.MAINTENANCE_DB, "SELECT pg_reload_conf();")
    return path, original


def _connect_admin(site, dbname: str) -> psycopg.Connection:
    kwargs = {"host": ADMIN_LOOPBACK, "port": site.port, "dbname": dbname, "user": contract.ADMIN_ROLE,
              "password": site.password(contract.ADMIN_ROLE), "sslmode": "verify-full", "sslrootcert": site.ca_file,
              "autocommit": True}
    deadline = time.monotonic() + 10
    while True:  # the reload is asynchronous
        try:
            return psycopg.connect(**kwargs)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_concurrent_runners_apply_each_migration_once(local_site):
    """Two runners applying every file of a plane to a fresh database at once: each file is applied exactly
    once, both finish without error, the ledger lists each file once."""
    plane = contract.TENANT
    files = schemas.migrations(plane)
    scratch = f"zt_concurrency_{secrets.token_hex(3)}"
    port = local_site.port
    superuser_psql(port, contract.MAINTENANCE_DB, sql.SQL("CREATE DATABASE {} OWNER {}").format(
        sql.Identifier(scratch), sql.Identifier(plane.owner_role)))
    hba, original = _hba_allow_admin(local_site, scratch)
    # The evidence keeper's migration needs the owner in the keeper role for its duration: on the
    # pilot the superuser grants that around it (operations/schemas.py); here around the whole run.
    keeper, owner = sql.Identifier(plane.keeper_role), sql.Identifier(plane.owner_role)
    superuser_psql(port, contract.MAINTENANCE_DB, sql.SQL("GRANT {} TO {}").format(keeper, owner))
    # What the deploy's plan grants the keeper before any migration runs.
    superuser_psql(port, scratch, sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(keeper))
    try:
        workers = 2
        barrier = threading.Barrier(workers, timeout=30)
        logs: list[str] = []

        def work(_: int) -> list[bool]:
            with _connect_admin(local_site, scratch) as conn:
                barrier.wait()  # both connected: start together
                return [ledger.apply(conn, plane, m, logs.append) for m in files]

        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(work, range(workers)))  # re-raises a worker's error

        assert all(len(r) == len(files) for r in results)
        assert [sum(applied) for applied in zip(*results)] == [1] * len(files)  # each file once
        assert sum(map(sum, results)) == len(files) == len(logs)
        assert ledger_rows(port, scratch) == [[m.name, m.checksum, contract.ADMIN_ROLE, plane.owner_role]
                                              for m in files]
        tables = {t.name for t in schemas.tables(plane.key)}
        assert all(relation_exists(port, scratch, t) for t in tables)
    finally:
        superuser_psql(port, contract.MAINTENANCE_DB, sql.SQL("REVOKE {} FROM {}").format(keeper, owner))
        hba.write_bytes(original)
        superuser_psql(port, contract.MAINTENANCE_DB, "SELECT pg_reload_conf();")
        superuser_psql(port, contract.MAINTENANCE_DB, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(scratch)))
    assert hba.read_bytes() == original
