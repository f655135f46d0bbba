-- IDE plane (SQLite file zeroui_local.db on the laptop), migration 0001: the local receipt
-- cache, bounded to the newest N receipts by the database itself. N is the setting
-- 'receipt_cache_limit' in ide_settings (the deploy keeps it at the site's value).
-- Conventions for the IDE files: STRICT tables; times are TEXT in UTC as
-- 'YYYY-MM-DDTHH:MM:SS.SSSZ' (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), checked by CHECK
-- so they compare correctly as text. The runner sets WAL and foreign keys.

-- zeroui-class: ide/receipt_cache: IDE settings (key/value text), including receipt_cache_limit, the N of the last-N receipt cache
CREATE TABLE ide_settings (
    key        TEXT PRIMARY KEY CHECK (key GLOB '[a-z]*' AND key NOT GLOB '*[^a-z0-9_]*' AND length(key) <= 64),
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
               CHECK (updated_at IS strftime('%Y-%m-%dT%H:%M:%fZ', updated_at)),
    -- The cache limit is a whole number of receipts, 1 to 1000000 (the site config's range).
    CHECK (key <> 'receipt_cache_limit'
           OR (value NOT GLOB '*[^0-9]*' AND value GLOB '[1-9]*' AND length(value) <= 7
               AND CAST(value AS INTEGER) BETWEEN 1 AND 1000000))
) STRICT;

INSERT INTO ide_settings (key, value) VALUES ('receipt_cache_limit', '500');

-- zeroui-class: ide/receipt_cache: the newest N receipts produced or fetched on this laptop (a cache, not the ledger)
CREATE TABLE receipt_cache (
    -- AUTOINCREMENT: ids are never reused, so id order is insertion order even after trims.
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    receipt_id    TEXT NOT NULL UNIQUE CHECK (length(receipt_id) = 36),  -- uuid, same as the tenant ledger's
    kind          TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 128),
    source        TEXT NOT NULL CHECK (length(source) BETWEEN 1 AND 200),
    subject_ref   TEXT,
    policy_digest TEXT CHECK (policy_digest GLOB 'sha256:*' AND length(policy_digest) = 71),
    occurred_at   TEXT NOT NULL CHECK (occurred_at IS strftime('%Y-%m-%dT%H:%M:%fZ', occurred_at)),
    cached_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                  CHECK (cached_at IS strftime('%Y-%m-%dT%H:%M:%fZ', cached_at)),
    payload       TEXT NOT NULL CHECK (json_valid(payload)),  -- JSON, as sent upward
    ledger_seq    INTEGER CHECK (ledger_seq >= 1),  -- seq in the tenant ledger once acknowledged
    content_hash  TEXT CHECK (length(content_hash) = 64 AND content_hash NOT GLOB '*[^0-9a-f]*')
) STRICT;

CREATE INDEX receipt_cache_occurred_at_idx ON receipt_cache (occurred_at);
CREATE INDEX receipt_cache_subject_idx ON receipt_cache (subject_ref) WHERE subject_ref IS NOT NULL;

-- Keeps the newest N: delete every row at or below the id of the (N+1)-th newest. When
-- there are N or fewer rows the subquery is NULL and nothing is deleted.
CREATE TRIGGER receipt_cache_trim
AFTER INSERT ON receipt_cache
BEGIN
    DELETE FROM receipt_cache
    WHERE id <= (SELECT id FROM receipt_cache ORDER BY id DESC LIMIT 1 OFFSET
                     (SELECT CAST(value AS INTEGER) FROM ide_settings WHERE key = 'receipt_cache_limit'));
END;

-- Lowering the limit trims at once rather than at the next insert.
CREATE TRIGGER receipt_cache_limit_changed
AFTER UPDATE OF value ON ide_settings
WHEN NEW.key = 'receipt_cache_limit'
BEGIN
    DELETE FROM receipt_cache
    WHERE id <= (SELECT id FROM receipt_cache ORDER BY id DESC LIMIT 1 OFFSET CAST(NEW.value AS INTEGER));
END;

-- The limit setting must exist for the trim to work: it can change, not go away.
CREATE TRIGGER ide_settings_keep_limit
BEFORE DELETE ON ide_settings
WHEN OLD.key = 'receipt_cache_limit'
BEGIN
    SELECT RAISE(ABORT, 'receipt_cache_limit cannot be deleted; update it instead');
END;
