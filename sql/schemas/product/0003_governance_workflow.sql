-- Product plane, migration 0003: governance workflow state — requests that need people's
-- approval (policy approvals, exceptions, waivers) and the votes on them. Separation of
-- duties is enforced here: nobody votes on their own request, and only open requests
-- take votes.

-- zeroui-class: product/governance_workflow: governance requests of a tenant (policy approval, exception, waiver) and their state
CREATE TABLE governance_requests (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id         uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL,
    kind               text NOT NULL,
    snapshot_id        bigint REFERENCES policy_snapshots (id),  -- what a policy/release approval is about
    subject_ref        text,            -- what an exception or waiver is about (repo, rule id, ...)
    state              text NOT NULL DEFAULT 'open',
    required_approvals smallint NOT NULL DEFAULT 1,
    requested_by       text NOT NULL,
    justification      text NOT NULL,
    requested_at       timestamptz NOT NULL DEFAULT now(),
    decided_at         timestamptz,
    decided_reason     text,
    expires_at         timestamptz,     -- an open request lapses; a granted waiver ends
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT governance_requests_request_id_key UNIQUE (request_id),
    CONSTRAINT governance_requests_kind CHECK (kind IN ('policy_approval', 'release_approval', 'policy_exception', 'waiver')),
    CONSTRAINT governance_requests_subject CHECK (
        CASE WHEN kind IN ('policy_approval', 'release_approval') THEN snapshot_id IS NOT NULL
             ELSE subject_ref IS NOT NULL END),
    CONSTRAINT governance_requests_state CHECK (state IN ('open', 'approved', 'rejected', 'withdrawn', 'expired')),
    CONSTRAINT governance_requests_approvals CHECK (required_approvals BETWEEN 1 AND 10),
    CONSTRAINT governance_requests_justification_len CHECK (length(justification) BETWEEN 1 AND 4000),
    CONSTRAINT governance_requests_decided CHECK ((state = 'open') = (decided_at IS NULL)),
    CONSTRAINT governance_requests_expiry CHECK (expires_at IS NULL OR expires_at > requested_at)
);

-- One open request of a kind per snapshot; a tenant's queue; expiry sweeps.
CREATE UNIQUE INDEX governance_requests_open_snapshot_idx ON governance_requests (snapshot_id, kind)
    WHERE state = 'open' AND snapshot_id IS NOT NULL;
CREATE INDEX governance_requests_tenant_idx ON governance_requests (tenant_id, state, requested_at);
CREATE INDEX governance_requests_expires_idx ON governance_requests (expires_at)
    WHERE state = 'open' AND expires_at IS NOT NULL;

CREATE TRIGGER governance_requests_touch
    BEFORE UPDATE ON governance_requests
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- zeroui-class: product/governance_workflow: approvers' votes on governance requests; one vote per approver
CREATE TABLE governance_votes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id bigint NOT NULL REFERENCES governance_requests (id) ON DELETE CASCADE,
    approver   text NOT NULL,
    vote       text NOT NULL,
    comment    text,
    voted_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT governance_votes_one_per_approver UNIQUE (request_id, approver),
    CONSTRAINT governance_votes_vote CHECK (vote IN ('approve', 'reject', 'abstain'))
);

CREATE FUNCTION governance_votes_guard() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    req governance_requests%ROWTYPE;
BEGIN
    SELECT * INTO req FROM governance_requests WHERE id = NEW.request_id;
    IF req.state IS DISTINCT FROM 'open' THEN
        RAISE EXCEPTION 'governance request % is %, it takes no votes', NEW.request_id, coalesce(req.state, 'missing')
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.approver = req.requested_by THEN
        RAISE EXCEPTION 'separation of duties: % cannot vote on their own request', NEW.approver
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER governance_votes_guard
    BEFORE INSERT OR UPDATE ON governance_votes
    FOR EACH ROW EXECUTE FUNCTION governance_votes_guard();
