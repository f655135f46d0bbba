-- Tenant plane, migration 0015: verify_receipt_chain() recomputes the hashes in parallel.
--
-- Recomputing every receipt's hash is the whole cost of verifying the chain (jsonb's text
-- form of each payload above all), and each receipt's hash depends on that receipt alone
-- (prev_hash is a column of the row): the rows can be hashed by parallel workers. Until now
-- none could: receipt_canonical() and receipt_hash() were parallel-unsafe (the default for a
-- new function), and even with both parallel safe, the query ran without workers inside an
-- SQL-language function (measured on PostgreSQL 16) where PL/pgSQL gives it workers. The
-- check is the same, split in two:
--   * every content_hash is the hash of its row: a parallel scan, each worker hashing its
--     share of the rows;
--   * the links: seq counts 1, 2, 3, … along the chain and prev_hash is the content_hash
--     before it. A window over the primary key, reading hashes only;
-- and the first receipt either finds broken is where the chain breaks, as before. PL/pgSQL
-- runs its query with parallel workers where the server has them (measured on 750,000
-- receipts with 2 workers: 3.9 s instead of 7.6 s); where it has none, it takes as long
-- as before.
--
-- The two functions only compute (no writes, no state, no temporary objects): parallel
-- safe. What they compute does not change.

SET LOCAL ROLE :"keeper_role";

ALTER FUNCTION public.receipt_canonical(public.receipts) PARALLEL SAFE;
ALTER FUNCTION public.receipt_hash(pg_catalog.bytea, public.receipts) PARALLEL SAFE;

CREATE OR REPLACE FUNCTION public.verify_receipt_chain() RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RETURN least(
        -- a receipt whose content_hash is not the hash of its content (FILTER: min() over
        -- the whole table, in parallel, rather than a walk along the index, row by row)
        (SELECT min(r.seq) FILTER (WHERE r.content_hash IS DISTINCT FROM public.receipt_hash(r.prev_hash, r))
         FROM public.receipts r),
        -- a receipt out of sequence, or not linked to the one before it
        (SELECT min(c.seq)
         FROM (SELECT r.seq, r.prev_hash,
                      row_number() OVER w AS expected_seq,
                      lag(r.content_hash) OVER w AS expected_prev
               FROM public.receipts r
               WINDOW w AS (ORDER BY r.seq)) c
         WHERE c.seq <> c.expected_seq OR c.prev_hash IS DISTINCT FROM c.expected_prev));
END
$fn$;
