-- Tenant plane, migration 0003: tenant history used for deterministic decisions.
-- Facts carry validity intervals so a decision can read the history "as of" an instant,
-- and each decision is keyed by its inputs, policy and engine version, so replaying the
-- same inputs finds the recorded outcome instead of deciding again.

-- zeroui-class: tenant/tenant_history: normalised facts about the tenant's subjects (repos, PRs, deployments, people) with validity intervals
CREATE TABLE history_facts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_kind       text NOT NULL,        -- 'repo', 'pull_request', 'deployment', 'person', ...
    subject_ref        text NOT NULL,        -- stable id of the subject within the tenant
    fact_key           text NOT NULL,        -- e.g. 'default_branch', 'review_count'
    value              jsonb NOT NULL,
    valid_from         timestamptz NOT NULL,
    valid_to           timestamptz,          -- NULL: the current value
    source             text NOT NULL,        -- 'webhook', 'poll', 'ide', 'manual'
    source_delivery_id bigint REFERENCES webhook_deliveries (id),
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT history_facts_version_key UNIQUE (subject_kind, subject_ref, fact_key, valid_from),
    CONSTRAINT history_facts_subject_kind_format CHECK (subject_kind ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT history_facts_fact_key_format CHECK (fact_key ~ '^[a-z][a-z0-9_.]{0,127}$'),
    CONSTRAINT history_facts_subject_ref_len CHECK (length(subject_ref) BETWEEN 1 AND 500),
    CONSTRAINT history_facts_interval CHECK (valid_to IS NULL OR valid_to > valid_from),
    CONSTRAINT history_facts_source CHECK (source IN ('webhook', 'poll', 'ide', 'manual', 'derived'))
);

-- At most one current value per fact: close the old row (set valid_to) and insert the new
-- one in the same transaction. As-of read of instant T:
--   WHERE subject_kind = $1 AND subject_ref = $2 AND fact_key = $3
--     AND valid_from <= T AND (valid_to IS NULL OR valid_to > T)
-- (served by history_facts_version_key).
CREATE UNIQUE INDEX history_facts_current_idx ON history_facts (subject_kind, subject_ref, fact_key)
    WHERE valid_to IS NULL;
CREATE INDEX history_facts_delivery_idx ON history_facts (source_delivery_id)
    WHERE source_delivery_id IS NOT NULL;

-- zeroui-class: tenant/tenant_history: deterministic decisions, keyed by inputs digest, policy digest and engine version
CREATE TABLE decisions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    decision_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    decision_kind  text NOT NULL,           -- e.g. 'merge_gate', 'deploy_gate'
    subject_kind   text NOT NULL,
    subject_ref    text NOT NULL,
    as_of          timestamptz NOT NULL,    -- history was read as of this instant
    input_digest   bytea NOT NULL,          -- sha256 of the canonical inputs (the facts read)
    policy_digest  text NOT NULL,           -- the policy snapshot applied
    engine_version text NOT NULL,
    outcome        text NOT NULL,
    reasons        jsonb NOT NULL DEFAULT '[]',  -- rule ids and messages behind the outcome
    receipt_seq    bigint REFERENCES receipts (seq),  -- the receipt that evidences it
    decided_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT decisions_decision_id_key UNIQUE (decision_id),
    -- Same inputs, same policy, same engine: same decision (look it up, do not decide again).
    CONSTRAINT decisions_replay_key UNIQUE (decision_kind, subject_kind, subject_ref, input_digest, policy_digest, engine_version),
    CONSTRAINT decisions_kind_format CHECK (decision_kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT decisions_input_digest CHECK (octet_length(input_digest) = 32),
    CONSTRAINT decisions_policy_digest_format CHECK (policy_digest ~ '^sha256:[0-9a-f]{64}$'),
    CONSTRAINT decisions_outcome CHECK (outcome IN ('allow', 'deny', 'warn', 'not_applicable')),
    CONSTRAINT decisions_reasons_array CHECK (jsonb_typeof(reasons) = 'array')
);

CREATE INDEX decisions_subject_idx ON decisions (subject_kind, subject_ref, decided_at DESC);
CREATE INDEX decisions_receipt_idx ON decisions (receipt_seq) WHERE receipt_seq IS NOT NULL;

-- A recorded decision never changes (a new decision is a new row); retention may delete.
REVOKE UPDATE ON decisions FROM :"app_role";
