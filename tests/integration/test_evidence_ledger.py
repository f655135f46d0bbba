"""The evidence ledger on the pilot (session fixture ``local_site``): no login role, and no role
a login role can become, can rewrite the tenant receipts; a cut tail shows; the ledger's lock
cannot be held by a role that may not append; audit trails and evidence tables refuse edits.

Every tampering path is tried by each login role the deploy made: the admin (over loopback
TLS, as itself and after SET ROLE to the plane's owner, which it may become), and the tenant
app and read-only roles from the tenant service host. Each must be refused with SQLSTATE
42501. As a control, the evidence keeper (reached here by the superuser alone) may do what
ownership allows, so a refusal is about who asks, not about the statement. Everything runs
in transactions that are rolled back.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest
from psycopg import sql

from hosts import service_host, sql_rolled_back, superuser_psql, superuser_rows

from zeroui_db import contract

pytestmark = pytest.mark.integration

INSUFFICIENT_PRIVILEGE = "42501"
LOCK_NOT_AVAILABLE = "55P03"
TENANT, PRODUCT, SHARED = contract.TENANT, contract.PRODUCT, contract.SHARED
KEEPER, OWNER = TENANT.keeper_role, TENANT.owner_role
# The key of the advisory lock the append trigger took before the keeper: anyone may take it.
OLD_APPEND_LOCK = 6504695737493312067


@dataclass(frozen=True)
class Tamper:
    what: str
    statement: str
    keeper_may: bool  # the control: ownership lets the keeper do it


# Names are schema-qualified: the admin holds no privilege in schema public, so it meets a
# refusal there too rather than "does not exist".
TAMPERING = [
    Tamper("disable the append-only triggers",
           "ALTER TABLE public.receipts DISABLE TRIGGER receipts_no_update_delete", True),
    Tamper("disable every trigger", "ALTER TABLE public.receipts DISABLE TRIGGER USER", True),
    Tamper("drop the append trigger", "DROP TRIGGER receipts_append ON public.receipts", True),
    Tamper("add a trigger", "CREATE TRIGGER zt_tamper BEFORE INSERT ON public.receipts "
                            "FOR EACH ROW EXECUTE FUNCTION public.receipts_append()", True),
    Tamper("add a rule", "CREATE RULE zt_tamper AS ON INSERT TO public.receipts DO INSTEAD NOTHING", True),
    Tamper("hide rows", "ALTER TABLE public.receipts ENABLE ROW LEVEL SECURITY", True),
    Tamper("alter the table", "ALTER TABLE public.receipts ADD COLUMN zt_extra int", True),
    Tamper("take the table", f"ALTER TABLE public.receipts OWNER TO {OWNER}", False),
    Tamper("replace the refusal", "CREATE OR REPLACE FUNCTION public.receipts_refuse_change() RETURNS trigger "
                                  "LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$", True),
    Tamper("replace the verifier", "CREATE OR REPLACE FUNCTION public.verify_receipt_chain() RETURNS bigint "
                                   "LANGUAGE sql AS 'SELECT NULL::bigint'", True),
    Tamper("drop the append function", "DROP FUNCTION public.receipts_append() CASCADE", True),
    Tamper("drop the ledger", "DROP TABLE public.receipts CASCADE", True),
    Tamper("drop the schema", "DROP SCHEMA public CASCADE", False),
    Tamper("rename the schema", "ALTER SCHEMA public RENAME TO zt_tampered", False),
    Tamper("shadow the ledger", "CREATE SCHEMA zt_shadow; CREATE TABLE zt_shadow.receipts (seq bigint)", False),
    Tamper("drop the keeper's objects", f"DROP OWNED BY {KEEPER}", False),
    Tamper("take the keeper's objects", f"REASSIGN OWNED BY {KEEPER} TO {OWNER}", False),
    Tamper("rewrite a receipt",
           "UPDATE public.receipts SET payload = '{}' WHERE seq = (SELECT max(seq) FROM public.receipts)", False),
    Tamper("cut the tail", "DELETE FROM public.receipts WHERE seq = (SELECT max(seq) FROM public.receipts)", False),
    Tamper("truncate", "TRUNCATE public.receipts CASCADE", False),
    Tamper("act as the keeper", f"SET ROLE {KEEPER}", False),
    Tamper("become a member of the keeper", f"GRANT {KEEPER} TO CURRENT_USER", False),
    Tamper("switch triggers off", "SET session_replication_role = replica", False),
    Tamper("forge a checkpoint", "INSERT INTO public.receipt_checkpoints (seq, reason) VALUES (0, 'forged')", True),
    Tamper("remove a checkpoint", "DELETE FROM public.receipt_checkpoints", False),
    Tamper("hold the append lock", "SELECT 1 FROM public.receipt_chain_lock FOR UPDATE", True),
    Tamper("hold the append lock through a checkpoint", "SELECT public.record_receipt_checkpoint('zt')", True),
    Tamper("lock the ledger", "LOCK TABLE public.receipts IN EXCLUSIVE MODE", True),
]


@dataclass(frozen=True)
class Session:
    role: str
    host: str | None  # the lab host it logs in from; None: this machine, over loopback
    setup: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.role + (f" as {self.setup[0].split()[-1]}" if self.setup else "")


SESSIONS = (
    Session(contract.ADMIN_ROLE, None),
    Session(contract.ADMIN_ROLE, None, (f"SET ROLE {OWNER}",)),  # what its membership allows
    Session(TENANT.app_role, service_host(TENANT)),
    Session(TENANT.readonly_role, service_host(TENANT)),
    Session(contract.AUDIT_ROLE, None),
)


def run(lab, site, session: Session, statements: list[str], dbname: str = TENANT.store) -> list[dict]:
    host = site.server_address if session.host else "127.0.0.1"
    return sql_rolled_back(lab, session.host, statements, list(session.setup), host=host, port=site.port,
                           dbname=dbname, user=session.role, password=site.password(session.role))


@pytest.mark.parametrize("session", SESSIONS, ids=str)
def test_every_tampering_path_is_refused(lab, local_site, session):
    results = run(lab, local_site, session, [t.statement for t in TAMPERING])
    got = {t.what: r["sqlstate"] for t, r in zip(TAMPERING, results)}
    assert got == {t.what: INSUFFICIENT_PRIVILEGE for t in TAMPERING}, \
        {t.what: r for t, r in zip(TAMPERING, results) if r["sqlstate"] != INSUFFICIENT_PRIVILEGE}


def test_the_keeper_may_what_its_ownership_allows(local_site):
    """The control: the same statements as the keeper (only the superuser can become it) pass where
    ownership decides, so the refusals above are about who asks."""
    allowed = [t for t in TAMPERING if t.keeper_may]
    script = ["BEGIN;", f"SET LOCAL ROLE {KEEPER};"]
    for i, t in enumerate(allowed):
        script += [f"SAVEPOINT s{i};", f"{t.statement};", f"ROLLBACK TO SAVEPOINT s{i};"]
    script.append("SELECT 'all passed'; ROLLBACK;")
    out = superuser_rows(local_site.port, TENANT.store, "\n".join(script))
    assert out[-1] == ["all passed"], out


def test_no_login_role_can_become_a_role_that_owns_the_ledger(local_site):
    """From the catalog: the ledger's tables and functions belong to the keeper, which has no member, and no
    role a login role may SET ROLE to (directly or through others) owns any of them."""
    rows = superuser_rows(local_site.port, TENANT.store, sql.SQL("""
        WITH ledger AS (
            SELECT relowner AS owner, relname AS name FROM pg_class
            WHERE relname IN ('receipts', 'receipt_checkpoints', 'receipt_chain_lock') AND relkind = 'r'
            UNION ALL SELECT proowner, proname FROM pg_proc
            WHERE proname IN ('receipts_append', 'receipts_refuse_change', 'receipt_hash', 'verify_receipt_chain',
                              'record_receipt_checkpoint', 'verify_receipt_checkpoints', 'receipts_lock_chain'))
        SELECT 'owner', name, pg_get_userbyid(owner) FROM ledger
        UNION ALL SELECT 'member', pg_get_userbyid(member), '' FROM pg_auth_members WHERE roleid = {keeper}::regrole
        UNION ALL SELECT 'reaches', l.rolname, o.rolname FROM pg_roles l, pg_roles o
        WHERE l.rolcanlogin AND NOT l.rolsuper AND pg_has_role(l.oid, o.oid, 'MEMBER')
          AND o.oid IN (SELECT owner FROM ledger)""").format(keeper=sql.Literal(KEEPER)))
    owners = {name: owner for kind, name, owner in rows if kind == "owner"}
    assert len(owners) == 10 and set(owners.values()) == {KEEPER}, owners
    assert [r for r in rows if r[0] != "owner"] == []


def test_a_cut_tail_shows_against_a_checkpoint(local_site):
    """verify_receipt_chain() cannot tell a chain with its last receipts cut from a shorter one; the checkpoint
    recorded before the cut can. (As the superuser, triggers off; rolled back.)"""
    out = superuser_rows(local_site.port, TENANT.store, """
        BEGIN;
        INSERT INTO receipts (kind, source, occurred_at, payload)
        SELECT 'zt.cut', 'zt', now(), jsonb_build_object('n', n) FROM generate_series(1, 3) n;
        SELECT 'checkpoint', id FROM record_receipt_checkpoint('zt: before the cut');
        SELECT 'before', coalesce(verify_receipt_chain()::text, 'null'),
               coalesce(verify_receipt_checkpoints()::text, 'null');
        SET LOCAL session_replication_role = replica;
        DELETE FROM receipts WHERE seq > (SELECT max(seq) - 2 FROM receipts);
        SELECT 'after', coalesce(verify_receipt_chain()::text, 'null'),
               coalesce(verify_receipt_checkpoints()::text, 'null');
        ROLLBACK;""")
    tagged = {r[0]: r[1:] for r in out if r[0] in ("checkpoint", "before", "after")}
    checkpoint = tagged["checkpoint"][0]
    assert tagged["before"] == ["null", "null"]
    assert tagged["after"] == ["null", checkpoint]  # the chain alone looks intact; the checkpoint does not hold


def test_a_checkpoint_records_the_true_head(local_site):
    """Checkpoints are the superuser's (the backup's): whoever calls the function records the real head."""
    out = superuser_rows(local_site.port, TENANT.store, """
        BEGIN;
        SELECT 'head', seq, encode(content_hash, 'hex') FROM public.receipt_chain_head();
        SELECT 'checkpoint', seq, encode(content_hash, 'hex') FROM public.record_receipt_checkpoint('zt: head');
        ROLLBACK;""")
    tagged = {r[0]: r[1:] for r in out if r[0] in ("head", "checkpoint")}
    assert tagged["checkpoint"] == tagged["head"], out


# Matches a call convert_to(<text>, 'UTF8') better than pg_catalog.convert_to(text, name): an
# untyped literal prefers text, the preferred type of its category.
_PLANTED = """CREATE FUNCTION public.convert_to(text, text) RETURNS bytea LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'zt planted function ran as %', current_user; END$$"""


def test_a_function_the_owner_plants_in_public_never_runs_for_the_keeper_or_the_superuser(lab, local_site):
    """The owner (the admin, acting as it) owns schema public and may create functions there. One that
    the ledger's hash would call, and that fails naming who ran it, must never run for an append (the
    keeper's lock, the hash), for the superuser's verification with its default search path, or for
    the nightly backup (the superuser)."""
    superuser_psql(local_site.port, TENANT.store, f"SET ROLE {OWNER};\n{_PLANTED};")
    try:
        # The control: an unqualified call does reach it.
        control = superuser_psql(local_site.port, TENANT.store, "SELECT convert_to('x', 'UTF8');", check=False)
        assert "zt planted function ran as postgres" in control.stderr, control.stderr
        # The superuser appends (the trigger hashes) and verifies, with its default search path.
        verified = superuser_rows(local_site.port, TENANT.store, """
            BEGIN;
            INSERT INTO public.receipts (kind, source, occurred_at, payload) VALUES ('zt.planted', 'zt', now(), '{}');
            SELECT coalesce(public.verify_receipt_chain()::text, 'intact'),
                   coalesce(public.verify_receipt_checkpoints()::text, 'hold');
            ROLLBACK;""")
        assert ["intact", "hold"] in verified, verified
        [append] = run(lab, local_site, SESSIONS[2], [
            "INSERT INTO public.receipts (kind, source, occurred_at, payload) "
            "VALUES ('zt.planted', 'zt', now(), '{}') RETURNING seq"])
        assert append["ok"], append
        backup = local_site.zeroui_db("backup")
        assert backup.returncode == 0 and "zt planted" not in backup.stderr + backup.stdout, backup.stderr
    finally:
        superuser_psql(local_site.port, TENANT.store, "DROP FUNCTION public.convert_to(text, text);")


@pytest.mark.parametrize("session", [s for s in SESSIONS if s.role != TENANT.app_role], ids=str)
def test_only_an_appender_may_take_the_append_lock(lab, local_site, session):
    """receipts_lock_chain() is for the roles with INSERT on receipts (the app role, the keeper)."""
    [outcome] = run(lab, local_site, session, ["SELECT public.receipts_lock_chain()"])
    assert outcome["sqlstate"] == INSUFFICIENT_PRIVILEGE, outcome


# Runs inside the tenant service host: concurrent sessions on the ledger, timed. Secrets on stdin.
_STALL = r"""
import json, sys, threading, time, psycopg
a = json.load(sys.stdin)
def connect(role):
    return psycopg.connect(host=a["host"], port=a["port"], dbname=a["dbname"], user=role,
                           password=a["passwords"][role], sslmode="require", connect_timeout=10)
INSERT = ("INSERT INTO receipts (kind, source, occurred_at, payload) "
          "VALUES ('zt.stall', 'zt', now(), '{}') RETURNING seq")
out = {}
# 1. The read-only role holds the old advisory lock: appends go on.
with connect(a["ro"]) as ro, connect(a["app"]) as app:
    ro.execute("SELECT pg_advisory_xact_lock(%s)", [a["old_lock"]])
    start = time.monotonic()
    app.execute(INSERT)
    out["append_while_ro_holds_advisory_lock"] = time.monotonic() - start
    app.rollback(); ro.rollback()
# 2. An app session appends and keeps its transaction open: the next append waits at most lock_timeout.
with connect(a["app"]) as holder, connect(a["app"]) as waiter:
    holder.execute(INSERT)
    start = time.monotonic()
    try:
        waiter.execute(INSERT)
        out["waiter"] = "appended"
    except psycopg.Error as e:
        out["waiter"] = e.sqlstate
    out["waited"] = time.monotonic() - start
    holder.rollback()
with connect(a["app"]) as app:
    out["settings"] = list(app.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),"
                                       " current_setting('idle_in_transaction_session_timeout')").fetchone())
print(json.dumps(out))
"""


def test_the_ledger_lock_cannot_be_held_by_a_reader_and_waits_are_bounded(lab, local_site):
    request = {"host": local_site.server_address, "port": local_site.port, "dbname": TENANT.store,
               "app": TENANT.app_role, "ro": TENANT.readonly_role, "old_lock": OLD_APPEND_LOCK,
               "passwords": {r: local_site.password(r) for r in TENANT.login_roles}}
    proc = lab.run(service_host(TENANT), [sys.executable, "-c", _STALL], input=json.dumps(request), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["append_while_ro_holds_advisory_lock"] < 2.0, out
    # The app role's own settings bound the wait (lock_timeout 5s by default) and idle transactions.
    assert out["settings"] == ["5s", "30s", "1min"], out
    assert out["waiter"] == LOCK_NOT_AVAILABLE and 4.5 <= out["waited"] < 8, out


# -- audit trails and evidence tables ----------------------------------------------------------

EVIDENCE = {
    PRODUCT: ("policy_snapshot_transitions", [
        "INSERT INTO policy_snapshot_transitions (snapshot_id, to_state, actor) "
        "SELECT id, 'draft', 'forged' FROM policy_snapshots LIMIT 1",
        "UPDATE policy_snapshot_transitions SET actor = 'forged'",
        "DELETE FROM policy_snapshot_transitions",
        "TRUNCATE policy_snapshot_transitions"]),
    SHARED: ("supply_chain_verifications", [
        "UPDATE supply_chain_verifications SET outcome = 'pass'",
        "DELETE FROM supply_chain_verifications",
        "TRUNCATE supply_chain_verifications"]),
    TENANT: ("decisions", [
        "UPDATE decisions SET outcome = 'allow'",
        "DELETE FROM decisions",
        "TRUNCATE decisions"]),
}


@pytest.mark.parametrize("plane", list(EVIDENCE), ids=lambda p: p.key)
def test_app_role_cannot_forge_or_edit_evidence(lab, local_site, plane):
    table, statements = EVIDENCE[plane]
    results = run(lab, local_site, Session(plane.app_role, service_host(plane)), statements, dbname=plane.store)
    assert [r["sqlstate"] for r in results] == [INSUFFICIENT_PRIVILEGE] * len(statements), results


@pytest.mark.parametrize("plane", list(EVIDENCE), ids=lambda p: p.key)
def test_evidence_tables_refuse_delete_for_every_role(local_site, plane):
    """The trigger refuses the superuser too (a row must exist for a row trigger to fire: one is made)."""
    table, _ = EVIDENCE[plane]
    seed = {
        PRODUCT: "INSERT INTO policy_bundles (tenant_id, bundle_key, title, created_by) "
                 "VALUES (gen_random_uuid(), 'zt.evidence', 'ZT', 'zt');"
                 "INSERT INTO policy_snapshots (bundle_id, version, document, digest, size_bytes, created_by) "
                 "SELECT id, 1, '{}', 'sha256:' || repeat('c', 64), 2, 'zt' FROM policy_bundles "
                 "WHERE bundle_key = 'zt.evidence';",
        SHARED: "INSERT INTO artifacts (artifact_kind, name, version, digest) "
                "VALUES ('other', 'zt', '1', 'sha256:' || repeat('d', 64)) ON CONFLICT DO NOTHING;"
                "INSERT INTO supply_chain_verifications (artifact_id, check_kind, verifier, verifier_version, outcome) "
                "SELECT id, 'signature', 'zt', '1', 'pass' FROM artifacts LIMIT 1;",
        TENANT: "INSERT INTO decisions (decision_kind, subject_kind, subject_ref, as_of, input_digest, policy_digest, "
                "engine_version, outcome) VALUES ('merge_gate', 'repo', 'zt', now(), sha256('zt'), "
                "'sha256:' || repeat('e', 64), 'zt', 'allow');",
    }[plane]
    proc = superuser_psql(local_site.port, plane.store, f"BEGIN;\n{seed}\nDELETE FROM {table};\nROLLBACK;\n",
                          check=False)
    assert proc.returncode != 0 and f"{table} is evidence, recorded once: DELETE refused" in proc.stderr, proc.stderr


def test_the_audit_trail_is_written_by_its_trigger_with_the_acting_role(lab, local_site):
    """With INSERT gone, the lifecycle still writes the trail (SECURITY DEFINER), naming the session's role."""
    key = "zt.trail"
    [_, _, trail] = run(lab, local_site, Session(PRODUCT.app_role, service_host(PRODUCT)), [
        f"INSERT INTO policy_bundles (tenant_id, bundle_key, title, created_by) "
        f"VALUES (gen_random_uuid(), '{key}', 'ZT', 'zt')",
        f"INSERT INTO policy_snapshots (bundle_id, version, document, digest, size_bytes, created_by) "
        f"SELECT id, 1, '{{}}', 'sha256:' || repeat('f', 64), 2, 'zt' FROM policy_bundles WHERE bundle_key = '{key}'",
        f"SELECT t.to_state, t.actor FROM policy_snapshot_transitions t "
        f"JOIN policy_snapshots s ON s.id = t.snapshot_id "
        f"JOIN policy_bundles b ON b.id = s.bundle_id WHERE b.bundle_key = '{key}'",
    ], dbname=PRODUCT.store)
    assert trail["rows"] == [["draft", PRODUCT.app_role]], trail


def test_the_audit_finds_a_cut_tail_and_a_ledger_handed_back_to_the_owner(local_site):
    """The audit role reads the ledger's status (no receipt): a checkpoint the chain no longer holds is
    critical. Receipts put back byte for byte, and the audit is clean again. The same for the ledger's
    table given back to the owner, which a redeploy cannot undo (only the superuser could do either)."""
    from test_audit import findings, run_audit

    [[checkpoint]] = superuser_rows(local_site.port, TENANT.store, """
        INSERT INTO receipts (kind, source, occurred_at, payload) VALUES ('zt.audit', 'zt', now(), '{}');
        SELECT id FROM record_receipt_checkpoint('zt: before the cut');""")[-1:]
    [[last]] = superuser_rows(local_site.port, TENANT.store, "SELECT max(seq) FROM receipts")
    saved = superuser_rows(local_site.port, TENANT.store, f"COPY (SELECT * FROM receipts WHERE seq = {last}) TO STDOUT")
    superuser_psql(local_site.port, TENANT.store, f"BEGIN; SET LOCAL session_replication_role = replica; "
                                                  f"DELETE FROM receipts WHERE seq = {last}; COMMIT;")
    try:
        code, report, _ = run_audit(local_site.inventory, local_site.env)
        assert code == 1
        assert f"critical ledger: checkpoint {checkpoint} of the receipts chain in {TENANT.store} no longer holds: " \
               "receipts were cut or rewritten" in [f.split(" | ")[0] for f in findings(report, "ledger")]
    finally:
        copy = "\n".join("\t".join(r) for r in saved)
        superuser_psql(local_site.port, TENANT.store, "BEGIN;\nSET LOCAL session_replication_role = replica;\n"
                                                      f"COPY receipts FROM STDIN;\n{copy}\n\\.\nCOMMIT;\n")
    assert run_audit(local_site.inventory, local_site.env)[0] == 0

    superuser_psql(local_site.port, TENANT.store, f"ALTER TABLE receipts OWNER TO {OWNER}")
    try:
        code, report, _ = run_audit(local_site.inventory, local_site.env)
        assert code == 1 and any(f"the evidence ledger's table public.receipts in {TENANT.store} is owned by {OWNER}"
                                 in f for f in findings(report, "classification")), findings(report)
    finally:  # back to the keeper, with the owner's read of it as the migration granted it
        superuser_psql(local_site.port, TENANT.store, f"ALTER TABLE receipts OWNER TO {KEEPER}; "
                                                      f"SET ROLE {KEEPER}; GRANT SELECT ON receipts TO {OWNER};")
    assert run_audit(local_site.inventory, local_site.env)[0] == 0
