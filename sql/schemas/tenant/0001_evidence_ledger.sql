-- Tenant plane (zeroui_tenant_pg), migration 0001: the durable receipts/evidence ledger.
--
-- receipts is append-only and hash-chained:
--   * seq is the gapless chain position and content_hash = sha256(prev_hash || canonical
--     content); the BEFORE INSERT trigger computes seq, prev_hash, content_hash and
--     recorded_at, so whatever a client sends for them is overwritten;
--   * triggers refuse UPDATE, DELETE and TRUNCATE for every role, the owner included, and
--     the app role additionally loses those privileges (the deploy's default privileges
--     would grant UPDATE and DELETE);
--   * verify_receipt_chain() recomputes the chain and names the first broken receipt.
-- Role names are never spelled here: the runner fills in :"app_role" and :"readonly_role".

-- Keeps updated_at honest on mutable tables of this database (used by later migrations).
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

-- zeroui-class: tenant/evidence_ledger: durable receipts, append-only and hash-chained (seq, prev_hash, content_hash)
CREATE TABLE receipts (
    seq             bigint PRIMARY KEY,      -- chain position 1, 2, 3, ... (set by the trigger)
    receipt_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    idempotency_key text,                    -- e.g. the IDE outbox key: a retried upload is one receipt
    kind            text NOT NULL,           -- e.g. 'policy.decision', 'ide.check'
    source          text NOT NULL,           -- emitting component, e.g. 'ide:vscode', 'tenant:ingest'
    actor           text,                    -- who caused it (user or service id); never a secret
    subject_ref     text,                    -- what it is about (repo, PR, commit, ...)
    policy_digest   text,                    -- policy snapshot the decision was made under, if any
    occurred_at     timestamptz NOT NULL,    -- when it happened, as the source says
    recorded_at     timestamptz NOT NULL,    -- when the ledger took it (set by the trigger)
    payload         jsonb NOT NULL,          -- the evidence itself
    prev_hash       bytea,                   -- content_hash of seq - 1; NULL only for seq 1
    content_hash    bytea NOT NULL,
    CONSTRAINT receipts_receipt_id_key UNIQUE (receipt_id),
    CONSTRAINT receipts_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT receipts_content_hash_key UNIQUE (content_hash),
    CONSTRAINT receipts_seq_positive CHECK (seq >= 1),
    CONSTRAINT receipts_genesis CHECK ((seq = 1) = (prev_hash IS NULL)),
    CONSTRAINT receipts_hash_sizes CHECK (octet_length(content_hash) = 32 AND (prev_hash IS NULL OR octet_length(prev_hash) = 32)),
    CONSTRAINT receipts_idempotency_key_len CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    CONSTRAINT receipts_kind_format CHECK (kind ~ '^[a-z][a-z0-9_.:-]{0,127}$'),
    CONSTRAINT receipts_source_len CHECK (length(source) BETWEEN 1 AND 200),
    CONSTRAINT receipts_policy_digest_format CHECK (policy_digest ~ '^sha256:[0-9a-f]{64}$'),
    CONSTRAINT receipts_payload_object CHECK (jsonb_typeof(payload) = 'object')
);

-- Reads: a subject's receipts over time, receipts of a kind over time, time windows.
CREATE INDEX receipts_subject_idx ON receipts (subject_ref, occurred_at) WHERE subject_ref IS NOT NULL;
CREATE INDEX receipts_kind_idx ON receipts (kind, occurred_at);
CREATE INDEX receipts_occurred_at_idx ON receipts (occurred_at);

-- The canonical encoding of a receipt's content: a JSON array in fixed field order. jsonb's
-- text form is deterministic (normalised keys and spacing), and timestamps are rendered
-- in UTC with microseconds so neither TimeZone nor DateStyle changes the encoding.
CREATE FUNCTION receipt_canonical(r receipts) RETURNS text
LANGUAGE sql STABLE AS $fn$
    SELECT jsonb_build_array(
        r.seq, r.receipt_id, r.idempotency_key, r.kind, r.source, r.actor, r.subject_ref, r.policy_digest,
        to_char(r.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        to_char(r.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        r.payload
    )::text
$fn$;

-- content_hash = sha256(prev_hash || UTF-8 canonical content); prev_hash is empty for seq 1.
-- prev_hash has a fixed length (32 bytes), so the concatenation is unambiguous.
CREATE FUNCTION receipt_hash(prev_hash bytea, r receipts) RETURNS bytea
LANGUAGE sql STABLE AS $fn$
    SELECT sha256(coalesce(prev_hash, '\x'::bytea) || convert_to(receipt_canonical(r), 'UTF8'))
$fn$;

-- Appends a receipt to the chain. A transaction-scoped advisory lock serialises appends;
-- the chain head is then read from the table itself (not from a head row), so a row that
-- INSERT ... ON CONFLICT DO NOTHING skips leaves the chain untouched. Under READ COMMITTED
-- (the default) each query here sees what earlier appenders committed; under REPEATABLE
-- READ or SERIALIZABLE a concurrent append surfaces as a unique violation on seq (retry),
-- never as a fork.
CREATE FUNCTION receipts_append() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    head receipts%ROWTYPE;
BEGIN
    -- Lock key: 'ZEROUIRC' as a big-endian bigint, reserved for the receipt chain.
    PERFORM pg_advisory_xact_lock(6504695737493312067);
    SELECT * INTO head FROM receipts ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(head.seq, 0) + 1;
    NEW.prev_hash := head.content_hash;  -- NULL for the first receipt
    NEW.recorded_at := clock_timestamp();  -- taken under the lock: non-decreasing along seq
    NEW.content_hash := receipt_hash(NEW.prev_hash, NEW);
    RETURN NEW;
END
$fn$;

CREATE TRIGGER receipts_append
    BEFORE INSERT ON receipts
    FOR EACH ROW EXECUTE FUNCTION receipts_append();

-- Refuses any change to the ledger, whoever asks (the owner included).
CREATE FUNCTION receipts_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'receipts is an append-only ledger: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a new receipt that supersedes or corrects the old one';
END
$fn$;

CREATE TRIGGER receipts_no_update_delete
    BEFORE UPDATE OR DELETE ON receipts
    FOR EACH ROW EXECUTE FUNCTION receipts_refuse_change();

CREATE TRIGGER receipts_no_truncate
    BEFORE TRUNCATE ON receipts
    FOR EACH STATEMENT EXECUTE FUNCTION receipts_refuse_change();

-- Defence in depth: the app role may only read and append; the read-only role only reads.
REVOKE UPDATE, DELETE, TRUNCATE ON receipts FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON receipts FROM :"app_role";
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON receipts FROM :"readonly_role";

-- Verifies the whole chain; returns the seq of the first broken receipt, NULL when intact.
-- A receipt is broken when
--   * its seq is not its position (a receipt before it was removed), or
--   * its prev_hash is not the content_hash of the receipt before it (a link was cut or
--     an earlier receipt's hash was rewritten), or
--   * its content_hash is not sha256(prev_hash || canonical content) (its content changed).
-- The query:
--   SELECT seq FROM (
--       SELECT r.seq, r.prev_hash, r.content_hash,
--              row_number() OVER w AS expected_seq, lag(r.content_hash) OVER w AS expected_prev,
--              receipt_hash(r.prev_hash, r) AS recomputed
--       FROM receipts r WINDOW w AS (ORDER BY r.seq)) c
--   WHERE c.seq <> c.expected_seq OR c.prev_hash IS DISTINCT FROM c.expected_prev
--      OR c.content_hash <> c.recomputed
--   ORDER BY c.seq LIMIT 1;
-- Removing receipts from the end of the chain leaves a valid (shorter) chain; detecting that
-- needs the head (seq, content_hash) anchored elsewhere, e.g. in an exported receipt.
CREATE FUNCTION verify_receipt_chain() RETURNS bigint
LANGUAGE sql STABLE AS $fn$
    SELECT seq FROM (
        SELECT r.seq, r.prev_hash, r.content_hash,
               row_number() OVER w AS expected_seq,
               lag(r.content_hash) OVER w AS expected_prev,
               receipt_hash(r.prev_hash, r) AS recomputed
        FROM receipts r
        WINDOW w AS (ORDER BY r.seq)
    ) c
    WHERE c.seq <> c.expected_seq
       OR c.prev_hash IS DISTINCT FROM c.expected_prev
       OR c.content_hash <> c.recomputed
    ORDER BY c.seq
    LIMIT 1
$fn$;
