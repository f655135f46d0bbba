-- IDE plane, migration 0003: the outbox — events waiting to go upward (to the tenant
-- services' API; never straight to a database), in id order, with retries and back-off.
-- Rows carry their own copy of the event: they do not reference receipt_cache, which
-- trims itself.
--
-- States: pending -> in_flight -> sent; in_flight -> pending (retry later) or dead (gave up).
--
-- Claim the oldest due pending item (one statement, so atomic; SQLite has one writer):
--   UPDATE outbox
--      SET state = 'in_flight', attempts = attempts + 1,
--          claimed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
--          lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+60 seconds')
--    WHERE id = (SELECT id FROM outbox
--                 WHERE state = 'pending' AND next_attempt_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
--                 ORDER BY id LIMIT 1)
--   RETURNING id, idempotency_key, event_type, destination, payload, attempts;
-- Delivered (the receiver de-duplicates on idempotency_key, so a resend is harmless):
--   UPDATE outbox SET state = 'sent', sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
--          claimed_at = NULL, lease_expires_at = NULL, last_error = NULL
--    WHERE id = :id AND state = 'in_flight';
-- Failed: retry with exponential back-off (5 s doubling, at most 1 h), or give up:
--   UPDATE outbox
--      SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
--          next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now',
--                                     '+' || min(3600, 5 * (1 << min(attempts - 1, 10))) || ' seconds'),
--          claimed_at = NULL, lease_expires_at = NULL, last_error = :error
--    WHERE id = :id AND state = 'in_flight';
-- A sender that died mid-flight: return expired claims to pending (run before claiming):
--   UPDATE outbox SET state = 'pending', claimed_at = NULL, lease_expires_at = NULL
--    WHERE state = 'in_flight' AND lease_expires_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now');
-- Housekeeping: DELETE FROM outbox WHERE state = 'sent' AND sent_at < <cut-off>;

-- zeroui-class: ide/outbox: events queued for sending upward (ordered by id; attempts, back-off, unique idempotency key)
CREATE TABLE outbox (
    -- AUTOINCREMENT: ids only grow, so id order is enqueue order.
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key  TEXT NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    event_type       TEXT NOT NULL CHECK (length(event_type) BETWEEN 1 AND 128),
    destination      TEXT NOT NULL DEFAULT 'tenant' CHECK (destination IN ('tenant', 'product')),  -- API, not DB
    payload          TEXT NOT NULL CHECK (json_valid(payload)),
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'in_flight', 'sent', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL DEFAULT 20 CHECK (max_attempts >= 1),
    next_attempt_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                     CHECK (next_attempt_at IS strftime('%Y-%m-%dT%H:%M:%fZ', next_attempt_at)),
    claimed_at       TEXT CHECK (claimed_at IS strftime('%Y-%m-%dT%H:%M:%fZ', claimed_at)),
    lease_expires_at TEXT CHECK (lease_expires_at IS strftime('%Y-%m-%dT%H:%M:%fZ', lease_expires_at)),
    last_error       TEXT,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                     CHECK (created_at IS strftime('%Y-%m-%dT%H:%M:%fZ', created_at)),
    sent_at          TEXT CHECK (sent_at IS strftime('%Y-%m-%dT%H:%M:%fZ', sent_at)),
    -- A claim is held exactly while in flight; sent_at exactly when sent.
    CHECK ((state = 'in_flight') = (claimed_at IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
) STRICT;

-- The claim scan (pending rows in id order) and the lease sweep.
CREATE INDEX outbox_pending_idx ON outbox (id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_in_flight_idx ON outbox (lease_expires_at) WHERE state = 'in_flight';
CREATE INDEX outbox_sent_idx ON outbox (sent_at) WHERE state = 'sent';
