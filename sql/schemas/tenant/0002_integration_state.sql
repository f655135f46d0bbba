-- Tenant plane, migration 0002: integration state — the tenant's provider connections,
-- their sync cursors and watermarks, and webhook ingestion metadata. Credentials are held
-- by reference (a secret-store key), never as values.

-- zeroui-class: tenant/integration_state: the tenant's connections to providers (non-secret settings, credential by reference)
CREATE TABLE integration_connections (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_key     text NOT NULL,            -- as in the shared plane's provider registry
    name             text NOT NULL,            -- the tenant's name for this connection
    external_account text,                     -- org/workspace/project id at the provider
    adapter_version  text,                     -- adapter version last used for this connection
    credential_ref   text,                     -- key in the secret store; the secret never lands here
    settings         jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'active',
    status_reason    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT integration_connections_name_key UNIQUE (provider_key, name),
    CONSTRAINT integration_connections_provider_key_format CHECK (provider_key ~ '^[a-z][a-z0-9_-]{0,63}$'),
    CONSTRAINT integration_connections_name_len CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT integration_connections_settings_object CHECK (jsonb_typeof(settings) = 'object'),
    CONSTRAINT integration_connections_status CHECK (status IN ('active', 'paused', 'disabled', 'error'))
);

CREATE TRIGGER integration_connections_touch
    BEFORE UPDATE ON integration_connections
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- zeroui-class: tenant/integration_state: per connection and stream, the provider cursor and the ingestion watermark
CREATE TABLE provider_cursors (
    connection_id        bigint NOT NULL REFERENCES integration_connections (id) ON DELETE CASCADE,
    stream               text NOT NULL,        -- e.g. 'pull_requests', 'issues', 'deployments'
    cursor_value         text,                 -- opaque provider cursor (page marker, since-id, ETag)
    watermark            timestamptz,          -- everything up to here has been ingested
    version              bigint NOT NULL DEFAULT 0,  -- optimistic concurrency: UPDATE ... WHERE version = $seen
    last_attempt_at      timestamptz,
    last_success_at      timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error           text,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, stream),
    CONSTRAINT provider_cursors_stream_format CHECK (stream ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    CONSTRAINT provider_cursors_failures CHECK (consecutive_failures >= 0),
    CONSTRAINT provider_cursors_version CHECK (version >= 0)
);

CREATE TRIGGER provider_cursors_touch
    BEFORE UPDATE ON provider_cursors
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- zeroui-class: tenant/integration_state: webhook deliveries received (metadata, digest and size; unique de-duplication key per connection)
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id   bigint NOT NULL REFERENCES integration_connections (id),
    dedup_key       text NOT NULL,       -- provider delivery id, or sha256 of the request when it has none
    event_type      text NOT NULL,       -- e.g. 'pull_request.opened'
    received_at     timestamptz NOT NULL DEFAULT now(),
    signature_valid boolean NOT NULL,    -- the provider's signature checked out
    payload_sha256  bytea NOT NULL,      -- digest and size of the request as received
    payload_bytes   integer NOT NULL,
    status          text NOT NULL DEFAULT 'received',
    attempts        integer NOT NULL DEFAULT 0,
    processed_at    timestamptz,
    last_error      text,
    -- INSERT ... ON CONFLICT ON CONSTRAINT webhook_deliveries_dedup DO NOTHING: a redelivery is a no-op.
    CONSTRAINT webhook_deliveries_dedup UNIQUE (connection_id, dedup_key),
    CONSTRAINT webhook_deliveries_dedup_key_len CHECK (length(dedup_key) BETWEEN 1 AND 300),
    CONSTRAINT webhook_deliveries_event_type_len CHECK (length(event_type) BETWEEN 1 AND 200),
    CONSTRAINT webhook_deliveries_sha256 CHECK (octet_length(payload_sha256) = 32),
    CONSTRAINT webhook_deliveries_bytes CHECK (payload_bytes >= 0),
    CONSTRAINT webhook_deliveries_attempts CHECK (attempts >= 0),
    CONSTRAINT webhook_deliveries_status CHECK (status IN ('received', 'processing', 'processed', 'ignored', 'failed')),
    -- An unsigned delivery is never processed, only ignored or failed.
    CONSTRAINT webhook_deliveries_signed CHECK (signature_valid OR status IN ('received', 'ignored', 'failed')),
    CONSTRAINT webhook_deliveries_done CHECK ((status IN ('processed', 'ignored')) = (processed_at IS NOT NULL))
);

-- Work queue of deliveries still to process, oldest first; retention purges by age.
CREATE INDEX webhook_deliveries_todo_idx ON webhook_deliveries (received_at)
    WHERE status IN ('received', 'failed');
CREATE INDEX webhook_deliveries_received_at_idx ON webhook_deliveries (received_at);
