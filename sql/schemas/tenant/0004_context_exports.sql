-- Tenant plane, migration 0004: context exports, snapshots and indexes. Everything here
-- is redacted before it is written, under a policy named by digest; no column holds a
-- secret, and snapshot content itself lives in object storage, addressed by digest.

-- zeroui-class: tenant/context_export: redacted context snapshots of a scope as of an instant (content by digest and URI)
CREATE TABLE context_snapshots (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id             uuid NOT NULL DEFAULT gen_random_uuid(),
    scope_kind              text NOT NULL,
    scope_ref               text NOT NULL,       -- e.g. the repo
    as_of                   timestamptz NOT NULL,
    status                  text NOT NULL DEFAULT 'building',
    redaction_policy_digest text NOT NULL,       -- no snapshot without the policy that redacted it
    redaction_summary       jsonb NOT NULL DEFAULT '{}',  -- counts of what was removed, never the values
    content_sha256          bytea,
    size_bytes              bigint,
    storage_uri             text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    ready_at                timestamptz,
    expires_at              timestamptz,
    CONSTRAINT context_snapshots_snapshot_id_key UNIQUE (snapshot_id),
    CONSTRAINT context_snapshots_scope_kind CHECK (scope_kind IN ('repo', 'workspace', 'service', 'tenant')),
    CONSTRAINT context_snapshots_scope_ref_len CHECK (length(scope_ref) BETWEEN 1 AND 500),
    CONSTRAINT context_snapshots_status CHECK (status IN ('building', 'ready', 'failed', 'expired')),
    CONSTRAINT context_snapshots_redaction_digest CHECK (redaction_policy_digest ~ '^sha256:[0-9a-f]{64}$'),
    CONSTRAINT context_snapshots_redaction_summary CHECK (jsonb_typeof(redaction_summary) = 'object'),
    CONSTRAINT context_snapshots_sha256 CHECK (octet_length(content_sha256) = 32),
    CONSTRAINT context_snapshots_size CHECK (size_bytes >= 0),
    CONSTRAINT context_snapshots_ready CHECK (
        status <> 'ready' OR (content_sha256 IS NOT NULL AND size_bytes IS NOT NULL AND ready_at IS NOT NULL)),
    CONSTRAINT context_snapshots_expiry CHECK (expires_at IS NULL OR expires_at > created_at)
);

-- The latest ready snapshot of a scope; expiry sweeps.
CREATE INDEX context_snapshots_scope_idx ON context_snapshots (scope_kind, scope_ref, as_of DESC)
    WHERE status = 'ready';
CREATE INDEX context_snapshots_expires_idx ON context_snapshots (expires_at)
    WHERE expires_at IS NOT NULL AND status <> 'expired';

-- zeroui-class: tenant/context_export: searchable index entries of a snapshot (paths, symbols, redacted summaries)
CREATE TABLE context_index_entries (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id    bigint NOT NULL REFERENCES context_snapshots (id) ON DELETE CASCADE,
    entry_kind     text NOT NULL,
    entry_key      text NOT NULL,             -- path, symbol or document id
    summary        text,                      -- redacted like the snapshot
    attributes     jsonb NOT NULL DEFAULT '{}',  -- language, owners, size class, ...
    content_sha256 bytea,
    size_bytes     bigint,
    CONSTRAINT context_index_entries_key UNIQUE (snapshot_id, entry_kind, entry_key),
    CONSTRAINT context_index_entries_kind CHECK (entry_kind IN ('file', 'symbol', 'document', 'dependency', 'ownership')),
    CONSTRAINT context_index_entries_key_len CHECK (length(entry_key) BETWEEN 1 AND 2000),
    CONSTRAINT context_index_entries_attributes CHECK (jsonb_typeof(attributes) = 'object'),
    CONSTRAINT context_index_entries_sha256 CHECK (octet_length(content_sha256) = 32),
    CONSTRAINT context_index_entries_size CHECK (size_bytes >= 0)
);

-- Lookup by key across snapshots, and full-text search over summaries (built-in 'simple' config).
CREATE INDEX context_index_entries_lookup_idx ON context_index_entries (entry_kind, entry_key);
CREATE INDEX context_index_entries_summary_fts_idx ON context_index_entries
    USING gin (to_tsvector('simple', coalesce(summary, '')));

-- zeroui-class: tenant/context_export: exports of snapshots to consumers (IDE, product plane), for audit and revocation
CREATE TABLE context_exports (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    export_id     uuid NOT NULL DEFAULT gen_random_uuid(),
    snapshot_id   bigint NOT NULL REFERENCES context_snapshots (id),
    destination   text NOT NULL,
    purpose       text NOT NULL,             -- why it was exported (policy governed)
    requested_by  text NOT NULL,
    status        text NOT NULL DEFAULT 'requested',
    requested_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    revoked_at    timestamptz,
    export_sha256 bytea,                     -- digest and size of what was delivered
    size_bytes    bigint,
    CONSTRAINT context_exports_export_id_key UNIQUE (export_id),
    CONSTRAINT context_exports_destination CHECK (destination IN ('ide', 'tenant_service', 'product')),
    CONSTRAINT context_exports_purpose_len CHECK (length(purpose) BETWEEN 1 AND 500),
    CONSTRAINT context_exports_status CHECK (status IN ('requested', 'delivered', 'failed', 'revoked')),
    CONSTRAINT context_exports_delivered CHECK (status <> 'delivered' OR (delivered_at IS NOT NULL AND export_sha256 IS NOT NULL)),
    CONSTRAINT context_exports_revoked CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
    CONSTRAINT context_exports_sha256 CHECK (octet_length(export_sha256) = 32),
    CONSTRAINT context_exports_size CHECK (size_bytes >= 0)
);

CREATE INDEX context_exports_snapshot_idx ON context_exports (snapshot_id);
CREATE INDEX context_exports_requested_at_idx ON context_exports (requested_at);
