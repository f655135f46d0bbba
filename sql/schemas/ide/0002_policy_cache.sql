-- IDE plane, migration 0002: the local policy cache — the current snapshot of each policy
-- bundle plus its verification metadata, so checks work offline. Only a verified snapshot
-- can be current; earlier snapshots stay for rollback until pruned.

-- zeroui-class: ide/policy_cache: cached policy snapshots with verification metadata (digest, signature, verifier, verified_at, source)
CREATE TABLE policy_cache (
    id                  INTEGER PRIMARY KEY,
    bundle_key          TEXT NOT NULL CHECK (length(bundle_key) BETWEEN 1 AND 128),
    snapshot_version    INTEGER NOT NULL CHECK (snapshot_version >= 1),
    digest              TEXT NOT NULL CHECK (digest GLOB 'sha256:*' AND length(digest) = 71
                                             AND substr(digest, 8) NOT GLOB '*[^0-9a-f]*'),
    document            TEXT NOT NULL CHECK (json_valid(document)),   -- the policy snapshot (JSON)
    size_bytes          INTEGER NOT NULL CHECK (size_bytes >= 0),
    signature           TEXT,                 -- detached signature over digest, as released
    signing_key_id      TEXT,
    verifier            TEXT NOT NULL,        -- what checked it, e.g. 'ed25519:<key id>' or 'sigstore'
    verification_status TEXT NOT NULL DEFAULT 'unverified'
                        CHECK (verification_status IN ('unverified', 'verified', 'failed')),
    verified_at         TEXT CHECK (verified_at IS strftime('%Y-%m-%dT%H:%M:%fZ', verified_at)),
    verification_error  TEXT,
    source              TEXT NOT NULL CHECK (length(source) BETWEEN 1 AND 500),  -- where it came from (URL, 'bundled')
    fetched_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                        CHECK (fetched_at IS strftime('%Y-%m-%dT%H:%M:%fZ', fetched_at)),
    is_current          INTEGER NOT NULL DEFAULT 0 CHECK (is_current IN (0, 1)),
    UNIQUE (bundle_key, digest),
    CHECK ((signature IS NULL) = (signing_key_id IS NULL)),
    CHECK ((verification_status = 'unverified') = (verified_at IS NULL)),
    -- Checks run only against a snapshot that verified.
    CHECK (is_current = 0 OR verification_status = 'verified')
) STRICT;

-- One current snapshot per bundle: clear the old flag, then set the new one, in one transaction.
CREATE UNIQUE INDEX policy_cache_current_idx ON policy_cache (bundle_key) WHERE is_current = 1;
