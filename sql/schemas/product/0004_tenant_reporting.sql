-- Product plane, migration 0004: product-side aggregates and reporting per tenant.
-- Rollup jobs upsert daily aggregates:
--   INSERT INTO tenant_metric_daily (tenant_id, metric_key, day, value_sum, sample_count, value_min, value_max)
--   VALUES (...) ON CONFLICT (tenant_id, metric_key, day) DO UPDATE SET
--       value_sum = tenant_metric_daily.value_sum + EXCLUDED.value_sum,
--       sample_count = tenant_metric_daily.sample_count + EXCLUDED.sample_count,
--       value_min = least(tenant_metric_daily.value_min, EXCLUDED.value_min),
--       value_max = greatest(tenant_metric_daily.value_max, EXCLUDED.value_max);

-- zeroui-class: product/tenant_reporting: per-tenant daily aggregates of product metrics (sum, count, min, max)
CREATE TABLE tenant_metric_daily (
    tenant_id    uuid NOT NULL,
    metric_key   text NOT NULL,         -- e.g. 'decisions.deny', 'receipts.ingested'
    day          date NOT NULL,          -- UTC day
    value_sum    numeric NOT NULL DEFAULT 0,
    sample_count bigint NOT NULL DEFAULT 0,
    value_min    numeric,
    value_max    numeric,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, metric_key, day),
    CONSTRAINT tenant_metric_daily_metric_key_format CHECK (metric_key ~ '^[a-z][a-z0-9_.]{0,127}$'),
    CONSTRAINT tenant_metric_daily_count CHECK (sample_count >= 0),
    CONSTRAINT tenant_metric_daily_range CHECK (value_min IS NULL OR value_max IS NULL OR value_min <= value_max)
);

-- Cross-tenant views of one metric (product dashboards).
CREATE INDEX tenant_metric_daily_metric_idx ON tenant_metric_daily (metric_key, day);

CREATE TRIGGER tenant_metric_daily_touch
    BEFORE UPDATE ON tenant_metric_daily
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- zeroui-class: product/tenant_reporting: generated per-tenant reports (kind, period, status, digest of the rendered document)
CREATE TABLE tenant_reports (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    report_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL,
    report_kind    text NOT NULL,       -- e.g. 'policy_compliance', 'usage'
    period_start   date NOT NULL,
    period_end     date NOT NULL,       -- inclusive
    status         text NOT NULL DEFAULT 'pending',
    run_id         bigint REFERENCES orchestration_runs (id),  -- the run that generates it
    summary        jsonb NOT NULL DEFAULT '{}',  -- headline figures for listings
    content_sha256 bytea,
    size_bytes     bigint,
    storage_uri    text,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    generated_at   timestamptz,
    CONSTRAINT tenant_reports_report_id_key UNIQUE (report_id),
    CONSTRAINT tenant_reports_period_key UNIQUE (tenant_id, report_kind, period_start, period_end),
    CONSTRAINT tenant_reports_kind_format CHECK (report_kind ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT tenant_reports_period CHECK (period_end >= period_start),
    CONSTRAINT tenant_reports_status CHECK (status IN ('pending', 'generating', 'ready', 'failed')),
    CONSTRAINT tenant_reports_summary_object CHECK (jsonb_typeof(summary) = 'object'),
    CONSTRAINT tenant_reports_sha256 CHECK (octet_length(content_sha256) = 32),
    CONSTRAINT tenant_reports_size CHECK (size_bytes >= 0),
    CONSTRAINT tenant_reports_ready CHECK (
        status <> 'ready' OR (content_sha256 IS NOT NULL AND size_bytes IS NOT NULL AND generated_at IS NOT NULL))
);

CREATE INDEX tenant_reports_tenant_idx ON tenant_reports (tenant_id, period_end DESC);
CREATE INDEX tenant_reports_run_idx ON tenant_reports (run_id) WHERE run_id IS NOT NULL;
