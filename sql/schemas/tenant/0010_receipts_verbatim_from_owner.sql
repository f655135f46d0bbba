-- Tenant plane, migration 0010: the receipt chain takes a verbatim copy from its owner.
--
-- Moving the ledger to another server (zeroui-db cutover) must keep every receipt byte for
-- byte, seq, prev_hash, recorded_at and content_hash included, but receipts_append computed
-- those on every INSERT, so a copy would have re-hashed the chain. From here on:
--   * every role but the table's owner appends exactly as before: whatever it sends for
--     seq, prev_hash, recorded_at and content_hash is overwritten (the services' path);
--   * the owner role (NOLOGIN: reached only with SET ROLE by the admin, for migrations and
--     the cutover) may insert a receipt as it is, and only when it extends the chain exactly:
--     its seq is the head's + 1, its prev_hash the head's content_hash (NULL for seq 1), and
--     its content_hash equals receipt_hash(prev_hash, receipt) recomputed. Anything else is
--     refused, so a copy proves the chain link by link as it arrives.
-- The owner's row goes verbatim only when it carries a content_hash; without one it is
-- appended like any other. Only this function changes: the trigger, the table, the other
-- guards and the grants stay as 0001 made them.
CREATE OR REPLACE FUNCTION receipts_append() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    head_seq  bigint;
    head_hash bytea;
BEGIN
    -- Lock key: 'ZEROUIRC' as a big-endian bigint, reserved for the receipt chain.
    PERFORM pg_advisory_xact_lock(6504695737493312067);
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
