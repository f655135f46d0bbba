-- Tenant plane, migration 0013: the ledger's functions see pg_catalog alone.
--
-- 0011 fixed their search_path to "pg_catalog, public". That was not enough:
--   * PostgreSQL picks a function or operator among every candidate on the path, and a
--     better-matching one in public beats pg_catalog's (a public.convert_to(text, text) over
--     pg_catalog.convert_to(text, name)). The tenant owner owns schema public (as the
--     database's owner) and the admin may SET ROLE to it: what it planted there would run as
--     whoever called the ledger's functions, the keeper (SECURITY DEFINER) or the superuser
--     that runs the nightly backup;
--   * pg_temp, when the path does not name it, is searched first for tables: a temporary
--     "receipts" would have stood in for the ledger.
-- From here on:
--   * every ledger function that sets a path sets "pg_catalog, pg_temp" (pg_temp last, and
--     never searched for functions or operators) and names the ledger's own objects public.*;
--   * receipt_canonical() and receipt_hash() keep no path of their own (queries may inline
--     them) and name every function and operator they call in pg_catalog, so no caller's path
--     changes what they compute. The text they hash is the same, byte for byte;
--   * the owner may no longer record a checkpoint: record_receipt_checkpoint() takes the append
--     lock, which only appenders may take, and the admin, acting as the owner, could have held
--     it for as long as it kept its transaction open. Backups record checkpoints (the pilot's
--     superuser); on a managed service, the admin acting as the keeper, as the cutover does.

-- The owner's own evidence trigger function first (the keeper may not alter it).
ALTER FUNCTION public.refuse_evidence_change() SET search_path = pg_catalog, pg_temp;

SET LOCAL ROLE :"keeper_role";

REVOKE EXECUTE ON FUNCTION public.record_receipt_checkpoint(text) FROM :"owner_role";

CREATE OR REPLACE FUNCTION public.receipt_canonical(r public.receipts) RETURNS pg_catalog.text
LANGUAGE sql STABLE AS $fn$
    SELECT pg_catalog.jsonb_build_array(
        r.seq, r.receipt_id, r.idempotency_key, r.kind, r.source, r.actor, r.subject_ref, r.policy_digest,
        pg_catalog.to_char(r.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        pg_catalog.to_char(r.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        r.payload
    )::pg_catalog.text
$fn$;

CREATE OR REPLACE FUNCTION public.receipt_hash(prev_hash pg_catalog.bytea, r public.receipts)
RETURNS pg_catalog.bytea
LANGUAGE sql STABLE AS $fn$
    SELECT pg_catalog.sha256(coalesce(prev_hash, '\x'::pg_catalog.bytea)
                             OPERATOR(pg_catalog.||) pg_catalog.convert_to(public.receipt_canonical(r), 'UTF8'))
$fn$;

CREATE OR REPLACE FUNCTION public.receipts_lock_chain() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM 1 FROM public.receipt_chain_lock FOR UPDATE;
    IF NOT FOUND THEN  -- without its row nothing would serialise appends: refuse rather than fork
        RAISE EXCEPTION 'receipt_chain_lock has lost its row: appends refused'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$fn$;

-- As in 0011, with its objects named in full.
CREATE OR REPLACE FUNCTION public.receipts_append() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    head_seq  bigint;
    head_hash bytea;
BEGIN
    PERFORM public.receipts_lock_chain();
    SELECT r.seq, r.content_hash INTO head_seq, head_hash FROM public.receipts r ORDER BY r.seq DESC LIMIT 1;
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
        IF NEW.content_hash IS DISTINCT FROM public.receipt_hash(NEW.prev_hash, NEW) THEN
            RAISE EXCEPTION 'receipt %: content_hash does not match its content', NEW.seq
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    NEW.seq := coalesce(head_seq, 0) + 1;
    NEW.prev_hash := head_hash;  -- NULL for the first receipt
    NEW.recorded_at := clock_timestamp();  -- taken under the lock: non-decreasing along seq
    NEW.content_hash := public.receipt_hash(NEW.prev_hash, NEW);
    RETURN NEW;
END
$fn$;

ALTER FUNCTION public.receipts_refuse_change() SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION public.verify_receipt_chain() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT seq FROM (
        SELECT r.seq, r.prev_hash, r.content_hash,
               row_number() OVER w AS expected_seq,
               lag(r.content_hash) OVER w AS expected_prev,
               public.receipt_hash(r.prev_hash, r) AS recomputed
        FROM public.receipts r
        WINDOW w AS (ORDER BY r.seq)
    ) c
    WHERE c.seq <> c.expected_seq
       OR c.prev_hash IS DISTINCT FROM c.expected_prev
       OR c.content_hash <> c.recomputed
    ORDER BY c.seq
    LIMIT 1
$fn$;

CREATE OR REPLACE FUNCTION public.record_receipt_checkpoint(reason text) RETURNS public.receipt_checkpoints
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    head public.receipts%ROWTYPE;
    checkpoint public.receipt_checkpoints;
BEGIN
    PERFORM public.receipts_lock_chain();
    SELECT * INTO head FROM public.receipts ORDER BY seq DESC LIMIT 1;
    INSERT INTO public.receipt_checkpoints (seq, content_hash, reason)
    VALUES (coalesce(head.seq, 0), head.content_hash, reason)
    RETURNING * INTO checkpoint;
    RETURN checkpoint;
END
$fn$;

CREATE OR REPLACE FUNCTION public.verify_receipt_checkpoints() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT c.id
    FROM public.receipt_checkpoints c LEFT JOIN public.receipts r ON r.seq = c.seq
    WHERE c.seq > 0 AND r.content_hash IS DISTINCT FROM c.content_hash
    ORDER BY c.id
    LIMIT 1
$fn$;

CREATE OR REPLACE FUNCTION public.receipt_chain_head(OUT seq bigint, OUT content_hash bytea)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT coalesce(max(r.seq), 0), (SELECT h.content_hash FROM public.receipts h ORDER BY h.seq DESC LIMIT 1)
    FROM public.receipts r
$fn$;

CREATE OR REPLACE FUNCTION public.receipt_chain_status(OUT head_seq bigint, OUT head_hash text,
                                                       OUT checkpoints bigint, OUT last_checkpoint_at timestamptz,
                                                       OUT checkpoint_broken bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT h.seq, encode(h.content_hash, 'hex'),
           (SELECT count(*) FROM public.receipt_checkpoints),
           (SELECT max(recorded_at) FROM public.receipt_checkpoints),
           public.verify_receipt_checkpoints()
    FROM public.receipt_chain_head() h
$fn$;
