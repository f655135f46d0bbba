-- Shared plane, migration 0004: global observability metadata — what is measured, who
-- reports it, and what alerts on it. No telemetry values that carry tenant payloads:
-- series live in the metrics backend, this is the catalogue around them.

-- zeroui-class: shared/observability_metadata: metric definitions (key, kind, unit, owner, allowed label keys)
CREATE TABLE metric_definitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    metric_key  text NOT NULL,
    kind        text NOT NULL,
    unit        text NOT NULL,            -- UCUM-style, e.g. 's', 'By', '1'
    description text NOT NULL,
    owner_team  text NOT NULL,
    label_keys  text[] NOT NULL DEFAULT '{}',  -- bounded label set; never tenant content
    created_at  timestamptz NOT NULL DEFAULT now(),
    deprecated_at timestamptz,
    CONSTRAINT metric_definitions_metric_key_key UNIQUE (metric_key),
    CONSTRAINT metric_definitions_key_format CHECK (metric_key ~ '^[a-z][a-z0-9_.]{0,127}$'),
    CONSTRAINT metric_definitions_kind CHECK (kind IN ('counter', 'gauge', 'histogram')),
    CONSTRAINT metric_definitions_labels CHECK (cardinality(label_keys) <= 16)
);

-- zeroui-class: shared/observability_metadata: telemetry sources (service instances per plane, version, last heartbeat)
CREATE TABLE telemetry_sources (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_key  text NOT NULL,
    plane        text NOT NULL,
    instance_id  text NOT NULL,
    version      text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT telemetry_sources_key UNIQUE (service_key, instance_id),
    CONSTRAINT telemetry_sources_service_key_format CHECK (service_key ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    CONSTRAINT telemetry_sources_plane CHECK (plane IN ('ide', 'tenant', 'product', 'shared')),
    CONSTRAINT telemetry_sources_seen CHECK (last_seen_at >= first_seen_at)
);

-- Stale sources (missed heartbeats).
CREATE INDEX telemetry_sources_last_seen_idx ON telemetry_sources (last_seen_at);

-- zeroui-class: shared/observability_metadata: alert rules over metrics (expression, severity, routing, enabled)
CREATE TABLE alert_rules (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_key    text NOT NULL,
    metric_id   bigint NOT NULL REFERENCES metric_definitions (id),
    expression  text NOT NULL,           -- query in the metrics backend's language
    for_seconds integer NOT NULL DEFAULT 0,
    severity    text NOT NULL,
    route       text NOT NULL,           -- on-call rotation or channel
    runbook_url text,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_rules_rule_key_key UNIQUE (rule_key),
    CONSTRAINT alert_rules_key_format CHECK (rule_key ~ '^[a-z][a-z0-9_.-]{0,127}$'),
    CONSTRAINT alert_rules_for CHECK (for_seconds >= 0),
    CONSTRAINT alert_rules_severity CHECK (severity IN ('info', 'warning', 'critical')),
    CONSTRAINT alert_rules_runbook CHECK (runbook_url ~ '^https://')
);

CREATE INDEX alert_rules_metric_idx ON alert_rules (metric_id);

CREATE TRIGGER alert_rules_touch
    BEFORE UPDATE ON alert_rules
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
