-- Tenant plane, migration 0011: a ledger no role can rewrite.
--
-- Until now the receipts ledger belonged to the plane's owner role, which the deploy's admin
-- may SET ROLE to: the owner could disable the append-only triggers, rewrite a receipt and
-- recompute the chain forward. From here on the ledger belongs to the evidence keeper
-- (:"keeper_role"), a role that never logs in and has no member; the migration runner lets
-- the owner act as the keeper for a migration such as this one alone (see ledger.py), and
-- the cutover acts as the keeper to copy the ledger (0010's verbatim path is now the keeper's).
-- Besides:
--   * appends are serialised by a row lock that only appenders take (INSERT on receipts and
--     EXECUTE on receipts_lock_chain() go together), no longer by an advisory lock that any
--     role could hold to stall every insert;
--   * the functions that write or verify the ledger run with a fixed search_path, pg_catalog
--     first, so nothing a role creates in public can stand in for a built-in;
--   * checkpoints of the chain head, recorded with each backup, let a cut tail be seen:
--     the chain alone cannot tell a shorter chain from a shortened one.

-- 1. The keeper takes the ledger over (the owner may do this while it is a member of the keeper).
ALTER TABLE receipts OWNER TO :"keeper_role";
ALTER FUNCTION receipt_canonical(receipts) OWNER TO :"keeper_role";
ALTER FUNCTION receipt_hash(bytea, receipts) OWNER TO :"keeper_role";
ALTER FUNCTION receipts_append() OWNER TO :"keeper_role";
ALTER FUNCTION receipts_refuse_change() OWNER TO :"keeper_role";
ALTER FUNCTION verify_receipt_chain() OWNER TO :"keeper_role";

-- The rest is the keeper's own work.
SET LOCAL ROLE :"keeper_role";

-- The owner reads the ledger (the admin audits it as the owner); writing is for the app role,
-- through the trigger, alone. Grants the owner made before the handover now come from the keeper.
GRANT SELECT ON receipts TO :"owner_role";

-- 2. The append lock.
-- zeroui-class: tenant/evidence_ledger: the one row whose lock serialises appends to the receipts chain (taken by appending only)
CREATE TABLE receipt_chain_lock (
    id boolean PRIMARY KEY DEFAULT true,
    CONSTRAINT receipt_chain_lock_one_row CHECK (id)
);

INSERT INTO receipt_chain_lock DEFAULT VALUES;

-- Readable by all plane roles; FOR UPDATE needs UPDATE, which only the keeper has.
GRANT SELECT ON receipt_chain_lock TO :"app_role", :"readonly_role", :"owner_role";

-- Takes the append lock for the calling transaction, as the keeper (SECURITY DEFINER). Only
-- the roles that may append may call it: the app role, and the keeper itself.
CREATE FUNCTION receipts_lock_chain() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    PERFORM 1 FROM receipt_chain_lock FOR UPDATE;
    IF NOT FOUND THEN  -- without its row nothing would serialise appends: refuse rather than fork
        RAISE EXCEPTION 'receipt_chain_lock has lost its row: appends refused'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$fn$;

REVOKE ALL ON FUNCTION receipts_lock_chain() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION receipts_lock_chain() TO :"app_role";

-- Appends a receipt to the chain under the append lock. The head is read from the table
-- itself, so a row that INSERT ... ON CONFLICT DO NOTHING skips leaves the chain untouched.
-- Under READ COMMITTED (the default) each query here sees what earlier appenders committed;
-- under REPEATABLE READ or SERIALIZABLE a concurrent append surfaces as a unique violation on
-- seq (retry), never as a fork. As in 0010, the table's owner (now the keeper, reached by the
-- cutover alone) may insert a receipt as it is, and only when it extends the chain exactly;
-- every other role's seq, prev_hash, recorded_at and content_hash are overwritten. The
-- function runs as the caller (no SECURITY DEFINER), so that "the table's owner" means the
-- role that inserts.
CREATE OR REPLACE FUNCTION receipts_append() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $fn$
DECLARE
    head_seq  bigint;
    head_hash bytea;
BEGIN
    PERFORM receipts_lock_chain();
    SELECT r.seq, r.content_hash INTO head_seq, head_hash FROM receipts r ORDER BY r.seq DESC LIMIT 1;
    IF NEW.content_hash IS NOT NULL
       AND (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID) = to_regrole(quote_ident(current_user)) THEN
        IF NEW.seq IS DISTINCT FROM coalesce(head_seq, 0) + 1 THEN
            RAISE EXCEPTION 'receipt % does not extend the chain: the head is %', NEW.seq, coalesce(head_seq, 0)
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.prev_hash IS DISTINCT FROM head_hash THEN
            RAISE EXCEPTION 'receipt %: prev_hash is not the content_hash of receipt %', NEW.seq, head_seq
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.content_hash IS DISTINCT FROM receipt_hash(NEW.prev_hash, NEW) THEN
            RAISE EXCEPTION 'receipt %: content_hash does not match its content', NEW.seq
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    NEW.seq := coalesce(head_seq, 0) + 1;
    NEW.prev_hash := head_hash;  -- NULL for the first receipt
    NEW.recorded_at := clock_timestamp();  -- taken under the lock: non-decreasing along seq
    NEW.content_hash := receipt_hash(NEW.prev_hash, NEW);
    RETURN NEW;
END
$fn$;

-- 3. Fixed search paths. receipt_canonical() and receipt_hash() keep none, so that queries can
-- inline them; they are called from the functions below, whose path holds during the call.
CREATE OR REPLACE FUNCTION receipts_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $fn$
BEGIN
    RAISE EXCEPTION '% is an append-only ledger: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a new receipt that supersedes or corrects the old one';
END
$fn$;

ALTER FUNCTION verify_receipt_chain() SET search_path = pg_catalog, public;

-- 4. Checkpoints of the chain head.
-- zeroui-class: tenant/evidence_ledger: checkpoints of the receipts chain head (seq, content_hash), recorded with each backup; a cut tail shows against them
CREATE TABLE receipt_checkpoints (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq          bigint NOT NULL,          -- the head's seq; 0 when the chain was empty
    content_hash bytea,                    -- the head's content_hash; NULL when the chain was empty
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by  text NOT NULL DEFAULT session_user,
    reason       text NOT NULL,            -- e.g. 'backup 20261128-013000F', 'audit'
    CONSTRAINT receipt_checkpoints_seq CHECK (seq >= 0),
    CONSTRAINT receipt_checkpoints_head CHECK ((seq = 0) = (content_hash IS NULL)),
    CONSTRAINT receipt_checkpoints_hash_size CHECK (octet_length(content_hash) = 32),
    CONSTRAINT receipt_checkpoints_reason_len CHECK (length(reason) BETWEEN 1 AND 200)
);

CREATE TRIGGER receipt_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON receipt_checkpoints
    FOR EACH ROW EXECUTE FUNCTION receipts_refuse_change();

CREATE TRIGGER receipt_checkpoints_no_truncate
    BEFORE TRUNCATE ON receipt_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION receipts_refuse_change();

GRANT SELECT ON receipt_checkpoints TO :"app_role", :"readonly_role", :"owner_role";
-- The owner also reads where the checkpoints' numbering stands (a copy carries it on).
GRANT SELECT ON SEQUENCE receipt_checkpoints_id_seq TO :"owner_role";

-- Records the current head as a checkpoint, under the append lock: until the caller commits no
-- receipt is appended, so the head it returns is the head at any instant before that commit
-- (the backup takes its restore point then). Anyone allowed to call it can only record the
-- true head.
CREATE FUNCTION record_receipt_checkpoint(reason text) RETURNS receipt_checkpoints
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
DECLARE
    head receipts%ROWTYPE;
    checkpoint receipt_checkpoints;
BEGIN
    PERFORM receipts_lock_chain();
    SELECT * INTO head FROM receipts ORDER BY seq DESC LIMIT 1;
    INSERT INTO receipt_checkpoints (seq, content_hash, reason)
    VALUES (coalesce(head.seq, 0), head.content_hash, reason)
    RETURNING * INTO checkpoint;
    RETURN checkpoint;
END
$fn$;

REVOKE ALL ON FUNCTION record_receipt_checkpoint(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_receipt_checkpoint(text) TO :"owner_role";

-- The first checkpoint the chain contradicts (its seq is gone, or holds another hash), NULL
-- when every checkpoint holds. With verify_receipt_chain() NULL this says the chain is intact
-- and no shorter than at its last checkpoint.
CREATE FUNCTION verify_receipt_checkpoints() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $fn$
    SELECT c.id
    FROM receipt_checkpoints c LEFT JOIN receipts r ON r.seq = c.seq
    WHERE c.seq > 0 AND r.content_hash IS DISTINCT FROM c.content_hash
    ORDER BY c.id
    LIMIT 1
$fn$;

-- The head of the chain: (0, NULL) when it is empty.
CREATE FUNCTION receipt_chain_head(OUT seq bigint, OUT content_hash bytea)
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $fn$
    SELECT coalesce(max(r.seq), 0), (SELECT h.content_hash FROM receipts h ORDER BY h.seq DESC LIMIT 1)
    FROM receipts r
$fn$;

-- What the audit checks, readable by a role that may read no receipt (the audit role): the head,
-- and whether every checkpoint holds. Cheap (the head by index, one lookup per checkpoint); the
-- whole chain is verified by every backup and by the restore drill.
CREATE FUNCTION receipt_chain_status(OUT head_seq bigint, OUT head_hash text, OUT checkpoints bigint,
                                     OUT last_checkpoint_at timestamptz, OUT checkpoint_broken bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    SELECT h.seq, encode(h.content_hash, 'hex'),
           (SELECT count(*) FROM receipt_checkpoints), (SELECT max(recorded_at) FROM receipt_checkpoints),
           verify_receipt_checkpoints()
    FROM receipt_chain_head() h
$fn$;
