-- Shared plane, migration 0002: evaluation harness metadata — suites, fixtures, runs and
-- per-fixture results. Fixtures are synthetic or anonymised (never a tenant's context),
-- and content lives in object storage: here only digests, sizes and URIs.

-- zeroui-class: shared/evaluation_harness: evaluation suites (named sets of fixtures with an owner)
CREATE TABLE eval_suites (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    suite_key   text NOT NULL,
    description text NOT NULL,
    owner_team  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    CONSTRAINT eval_suites_suite_key_key UNIQUE (suite_key),
    CONSTRAINT eval_suites_suite_key_format CHECK (suite_key ~ '^[a-z][a-z0-9_.-]{0,127}$')
);

-- zeroui-class: shared/evaluation_harness: versioned evaluation fixtures (synthetic or anonymised; digest, size, storage URI)
CREATE TABLE eval_fixtures (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    suite_id       bigint NOT NULL REFERENCES eval_suites (id),
    fixture_key    text NOT NULL,
    version        integer NOT NULL,
    origin         text NOT NULL,          -- contract: tenant data only if fully anonymised
    content_sha256 bytea NOT NULL,
    size_bytes     bigint NOT NULL,
    storage_uri    text NOT NULL,
    expected       jsonb NOT NULL DEFAULT '{}',  -- expected outcome labels, small
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT eval_fixtures_version_key UNIQUE (suite_id, fixture_key, version),
    CONSTRAINT eval_fixtures_key_format CHECK (fixture_key ~ '^[A-Za-z0-9][A-Za-z0-9_./-]{0,255}$'),
    CONSTRAINT eval_fixtures_version CHECK (version >= 1),
    CONSTRAINT eval_fixtures_origin CHECK (origin IN ('synthetic', 'anonymised', 'public')),
    CONSTRAINT eval_fixtures_sha256 CHECK (octet_length(content_sha256) = 32),
    CONSTRAINT eval_fixtures_size CHECK (size_bytes >= 0),
    CONSTRAINT eval_fixtures_expected_object CHECK (jsonb_typeof(expected) = 'object')
);

-- zeroui-class: shared/evaluation_harness: evaluation runs of a suite against a subject version (adapter, engine, model)
CREATE TABLE eval_runs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id             uuid NOT NULL DEFAULT gen_random_uuid(),
    suite_id           bigint NOT NULL REFERENCES eval_suites (id),
    subject_kind       text NOT NULL,
    subject_version    text NOT NULL,
    adapter_version_id bigint REFERENCES provider_adapter_versions (id),
    status             text NOT NULL DEFAULT 'queued',
    triggered_by       text NOT NULL,      -- CI job, release pipeline, person
    environment        jsonb NOT NULL DEFAULT '{}',  -- runner image digest, flags
    started_at         timestamptz,
    finished_at        timestamptz,
    fixtures_total     integer,
    fixtures_passed    integer,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT eval_runs_run_id_key UNIQUE (run_id),
    CONSTRAINT eval_runs_subject_kind CHECK (subject_kind IN ('adapter', 'policy_engine', 'model', 'ide_extension')),
    CONSTRAINT eval_runs_adapter CHECK (subject_kind <> 'adapter' OR adapter_version_id IS NOT NULL),
    CONSTRAINT eval_runs_status CHECK (status IN ('queued', 'running', 'passed', 'failed', 'error', 'cancelled')),
    CONSTRAINT eval_runs_environment_object CHECK (jsonb_typeof(environment) = 'object'),
    CONSTRAINT eval_runs_finished CHECK ((status IN ('passed', 'failed', 'error', 'cancelled')) = (finished_at IS NOT NULL)),
    CONSTRAINT eval_runs_counts CHECK (fixtures_passed IS NULL OR (fixtures_total IS NOT NULL AND fixtures_passed BETWEEN 0 AND fixtures_total))
);

CREATE INDEX eval_runs_suite_idx ON eval_runs (suite_id, created_at DESC);
CREATE INDEX eval_runs_subject_idx ON eval_runs (subject_kind, subject_version);
CREATE INDEX eval_runs_adapter_idx ON eval_runs (adapter_version_id) WHERE adapter_version_id IS NOT NULL;

-- zeroui-class: shared/evaluation_harness: per-fixture results of a run (outcome, score, duration, output digest)
CREATE TABLE eval_results (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        bigint NOT NULL REFERENCES eval_runs (id) ON DELETE CASCADE,
    fixture_id    bigint NOT NULL REFERENCES eval_fixtures (id),
    outcome       text NOT NULL,
    score         numeric(6, 5),
    duration_ms   integer,
    output_sha256 bytea,       -- digest and size of what the subject produced
    output_bytes  bigint,
    message       text,        -- short failure reason
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT eval_results_key UNIQUE (run_id, fixture_id),
    CONSTRAINT eval_results_outcome CHECK (outcome IN ('pass', 'fail', 'error', 'skip')),
    CONSTRAINT eval_results_score CHECK (score BETWEEN 0 AND 1),
    CONSTRAINT eval_results_duration CHECK (duration_ms >= 0),
    CONSTRAINT eval_results_sha256 CHECK (octet_length(output_sha256) = 32),
    CONSTRAINT eval_results_bytes CHECK (output_bytes >= 0),
    CONSTRAINT eval_results_message_len CHECK (length(message) <= 2000)
);

-- A fixture's history across runs (flakiness, regressions).
CREATE INDEX eval_results_fixture_idx ON eval_results (fixture_id, recorded_at DESC);
