-- Product plane, migration 0002: orchestration state — workflow runs per tenant and their
-- steps, claimed by workers under a lease. A worker claims the next due run with
--   UPDATE orchestration_runs SET status = 'running', attempt = attempt + 1,
--          lease_owner = $worker, lease_expires_at = now() + interval '5 minutes',
--          started_at = coalesce(started_at, now())
--   WHERE id = (SELECT id FROM orchestration_runs
--               WHERE status = 'pending' AND not_before <= now() AND attempt < max_attempts
--               ORDER BY priority DESC, not_before, id
--               LIMIT 1 FOR UPDATE SKIP LOCKED)
--   RETURNING *;
-- and a sweeper returns runs whose lease expired (status 'running', lease_expires_at <
-- now()) to 'pending', or to 'failed' once attempt = max_attempts.

-- zeroui-class: product/orchestration_state: orchestration runs (one workflow instance for one tenant), leased by workers
CREATE TABLE orchestration_runs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id           uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL,
    workflow_key     text NOT NULL,       -- e.g. 'policy.release', 'report.monthly'
    workflow_version text NOT NULL,
    idempotency_key  text NOT NULL,       -- the same request twice starts one run
    status           text NOT NULL DEFAULT 'pending',
    priority         smallint NOT NULL DEFAULT 0,
    params           jsonb NOT NULL DEFAULT '{}',
    input_digest     bytea,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    not_before       timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orchestration_runs_run_id_key UNIQUE (run_id),
    CONSTRAINT orchestration_runs_idempotency_key UNIQUE (tenant_id, idempotency_key),
    CONSTRAINT orchestration_runs_workflow_key_format CHECK (workflow_key ~ '^[a-z][a-z0-9_.-]{0,127}$'),
    CONSTRAINT orchestration_runs_idempotency_key_len CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    CONSTRAINT orchestration_runs_status CHECK (status IN ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT orchestration_runs_params_object CHECK (jsonb_typeof(params) = 'object'),
    CONSTRAINT orchestration_runs_input_digest CHECK (octet_length(input_digest) = 32),
    CONSTRAINT orchestration_runs_attempts CHECK (attempt >= 0 AND max_attempts >= 1 AND attempt <= max_attempts),
    -- A lease is an owner and an expiry together, and only a running run holds one.
    CONSTRAINT orchestration_runs_lease CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT orchestration_runs_lease_running CHECK (lease_owner IS NULL OR status = 'running'),
    CONSTRAINT orchestration_runs_finished CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);

CREATE INDEX orchestration_runs_due_idx ON orchestration_runs (priority DESC, not_before, id)
    WHERE status = 'pending';
CREATE INDEX orchestration_runs_lease_idx ON orchestration_runs (lease_expires_at)
    WHERE status = 'running';
CREATE INDEX orchestration_runs_tenant_idx ON orchestration_runs (tenant_id, created_at DESC);

CREATE TRIGGER orchestration_runs_touch
    BEFORE UPDATE ON orchestration_runs
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- zeroui-class: product/orchestration_state: the ordered steps of a run, each with its own retry state and result digest
CREATE TABLE orchestration_steps (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint NOT NULL REFERENCES orchestration_runs (id) ON DELETE CASCADE,
    ordinal         integer NOT NULL,
    step_key        text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    result          jsonb,              -- small structured result (ids, counts), not documents
    output_digest   bytea,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orchestration_steps_ordinal_key UNIQUE (run_id, ordinal),
    CONSTRAINT orchestration_steps_step_key UNIQUE (run_id, step_key),
    CONSTRAINT orchestration_steps_ordinal CHECK (ordinal >= 0),
    CONSTRAINT orchestration_steps_step_key_format CHECK (step_key ~ '^[a-z][a-z0-9_.-]{0,127}$'),
    CONSTRAINT orchestration_steps_status CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    CONSTRAINT orchestration_steps_attempts CHECK (attempts >= 0),
    CONSTRAINT orchestration_steps_output_digest CHECK (octet_length(output_digest) = 32),
    CONSTRAINT orchestration_steps_finished CHECK ((status IN ('succeeded', 'failed', 'skipped')) = (finished_at IS NOT NULL))
);

CREATE INDEX orchestration_steps_retry_idx ON orchestration_steps (next_attempt_at)
    WHERE status = 'pending' AND next_attempt_at IS NOT NULL;

CREATE TRIGGER orchestration_steps_touch
    BEFORE UPDATE ON orchestration_steps
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
