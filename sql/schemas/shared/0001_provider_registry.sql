-- Shared plane (zeroui_shared_pg), migration 0001: provider registry metadata, allowlists
-- and adapter versions, the same for every tenant. Hard rule 3 applies to this whole
-- database: no tenant payload bodies, only metadata (digests, sizes, ids).

-- Keeps updated_at honest on mutable tables of this database.
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

-- zeroui-class: shared/provider_registry: the registry of providers ZeroUI integrates with (key, category, status)
CREATE TABLE providers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_key text NOT NULL,            -- referenced by tenants' integration_connections
    display_name text NOT NULL,
    category     text NOT NULL,
    homepage_url text,
    docs_url     text,
    status       text NOT NULL DEFAULT 'active',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT providers_provider_key_key UNIQUE (provider_key),
    CONSTRAINT providers_provider_key_format CHECK (provider_key ~ '^[a-z][a-z0-9_-]{0,63}$'),
    CONSTRAINT providers_display_name_len CHECK (length(display_name) BETWEEN 1 AND 200),
    CONSTRAINT providers_category CHECK (category IN ('scm', 'ci', 'issue_tracker', 'chat', 'cloud', 'llm', 'observability', 'other')),
    CONSTRAINT providers_urls CHECK (homepage_url ~ '^https://' AND docs_url ~ '^https://'),
    CONSTRAINT providers_status CHECK (status IN ('active', 'deprecated', 'disabled'))
);

CREATE TRIGGER providers_touch
    BEFORE UPDATE ON providers
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- zeroui-class: shared/provider_registry: released adapter versions per provider, with artifact digest and support status
CREATE TABLE provider_adapter_versions (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_id       bigint NOT NULL REFERENCES providers (id),
    version           text NOT NULL,        -- semantic version
    artifact_digest   text NOT NULL,        -- of the adapter build; see the supply_chain tables
    min_core_version  text,                 -- oldest ZeroUI core it runs with
    api_version       text,                 -- provider API version it speaks
    status            text NOT NULL DEFAULT 'candidate',
    released_at       timestamptz,
    deprecated_at     timestamptz,
    notes             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT provider_adapter_versions_key UNIQUE (provider_id, version),
    CONSTRAINT provider_adapter_versions_semver CHECK (version ~ '^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$'),
    CONSTRAINT provider_adapter_versions_min_core CHECK (min_core_version ~ '^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$'),
    CONSTRAINT provider_adapter_versions_digest CHECK (artifact_digest ~ '^sha256:[0-9a-f]{64}$'),
    CONSTRAINT provider_adapter_versions_status CHECK (status IN ('candidate', 'supported', 'deprecated', 'revoked')),
    CONSTRAINT provider_adapter_versions_released CHECK (status = 'candidate' OR released_at IS NOT NULL),
    CONSTRAINT provider_adapter_versions_deprecated CHECK ((status IN ('deprecated', 'revoked')) = (deprecated_at IS NOT NULL))
);

-- What may run now, per provider.
CREATE INDEX provider_adapter_versions_supported_idx ON provider_adapter_versions (provider_id, released_at DESC)
    WHERE status = 'supported';
CREATE INDEX provider_adapter_versions_digest_idx ON provider_adapter_versions (artifact_digest);

-- zeroui-class: shared/provider_registry: allowlists per provider (egress hosts, ingress networks, OAuth scopes)
CREATE TABLE provider_allowlist_entries (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_id bigint NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    entry_kind  text NOT NULL,
    host        text,        -- egress_host: host name, optionally with :port
    network     cidr,        -- ingress_network: where the provider's webhooks come from
    scope       text,        -- oauth_scope: a scope ZeroUI may request
    reason      text NOT NULL,
    added_by    text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    CONSTRAINT provider_allowlist_entries_kind CHECK (entry_kind IN ('egress_host', 'ingress_network', 'oauth_scope')),
    -- Exactly the one value column that matches the kind is set.
    CONSTRAINT provider_allowlist_entries_value CHECK (
        CASE entry_kind
            WHEN 'egress_host' THEN host IS NOT NULL AND num_nonnulls(network, scope) = 0
            WHEN 'ingress_network' THEN network IS NOT NULL AND num_nonnulls(host, scope) = 0
            WHEN 'oauth_scope' THEN scope IS NOT NULL AND num_nonnulls(host, network) = 0
        END),
    CONSTRAINT provider_allowlist_entries_host CHECK (host ~ '^[a-z0-9]([a-z0-9.-]{0,252})(:[0-9]{1,5})?$'),
    CONSTRAINT provider_allowlist_entries_scope_len CHECK (length(scope) BETWEEN 1 AND 200),
    CONSTRAINT provider_allowlist_entries_expiry CHECK (expires_at IS NULL OR expires_at > added_at)
);

-- No duplicate entries; the value columns are mutually exclusive, so one index each.
CREATE UNIQUE INDEX provider_allowlist_entries_host_idx ON provider_allowlist_entries (provider_id, host)
    WHERE entry_kind = 'egress_host';
CREATE UNIQUE INDEX provider_allowlist_entries_network_idx ON provider_allowlist_entries (provider_id, network)
    WHERE entry_kind = 'ingress_network';
CREATE UNIQUE INDEX provider_allowlist_entries_scope_idx ON provider_allowlist_entries (provider_id, scope)
    WHERE entry_kind = 'oauth_scope';
