-- Product plane (zeroui_product_pg), migration 0001: the policy bundle / snapshot / release
-- spine. Every row is per tenant (tenant_id); nothing here is a registry shared by all.
--
-- A bundle is a named policy set of a tenant; a snapshot is one immutable, signed version
-- of it; a release puts a released snapshot on a tenant's channel. Snapshot state follows
-- the lifecycle in policy_lifecycle_transitions, enforced by trigger:
--   draft -> review -> approved -> released -> retired
--   review -> draft (changes requested), approved -> draft (approval withdrawn),
--   draft -> retired and approved -> retired (abandoned).
-- Services say who acts with SET LOCAL zeroui.actor = '...' (and zeroui.reason); the
-- trigger writes both into the transition audit trail.

-- Keeps updated_at honest on mutable tables of this database.
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

-- Who is acting: the service's zeroui.actor setting, else the database user.
CREATE FUNCTION zeroui_actor() RETURNS text
LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(nullif(current_setting('zeroui.actor', true), ''), session_user)
$fn$;

-- zeroui-class: product/policy_lifecycle: the lifecycle states of policy snapshots (reference data, migrations only)
CREATE TABLE policy_lifecycle_states (
    state       text PRIMARY KEY,
    is_terminal boolean NOT NULL,
    description text NOT NULL,
    CONSTRAINT policy_lifecycle_states_format CHECK (state ~ '^[a-z_]{1,32}$')
);

INSERT INTO policy_lifecycle_states (state, is_terminal, description) VALUES
    ('draft', false, 'being written; content may change'),
    ('review', false, 'submitted for governance review; content frozen'),
    ('approved', false, 'approved and signed; may be released'),
    ('released', false, 'available for release to tenant channels'),
    ('retired', true, 'no longer released; kept for audit and replay');

-- zeroui-class: product/policy_lifecycle: the legal snapshot state transitions; the snapshot trigger refuses any other
CREATE TABLE policy_lifecycle_transitions (
    from_state  text NOT NULL REFERENCES policy_lifecycle_states (state),
    to_state    text NOT NULL REFERENCES policy_lifecycle_states (state),
    description text NOT NULL,
    PRIMARY KEY (from_state, to_state),
    CONSTRAINT policy_lifecycle_transitions_moves CHECK (from_state <> to_state)
);

INSERT INTO policy_lifecycle_transitions (from_state, to_state, description) VALUES
    ('draft', 'review', 'submit for review'),
    ('review', 'draft', 'changes requested'),
    ('review', 'approved', 'approve'),
    ('approved', 'draft', 'approval withdrawn before release'),
    ('approved', 'released', 'release'),
    ('released', 'retired', 'retire'),
    ('draft', 'retired', 'abandon a draft'),
    ('approved', 'retired', 'abandon an approved snapshot');

-- The lifecycle is schema, not data: services read it, only migrations change it.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON policy_lifecycle_states, policy_lifecycle_transitions FROM :"app_role";

-- zeroui-class: product/policy_lifecycle: policy bundles, the named policy sets of a tenant
CREATE TABLE policy_bundles (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    bundle_key  text NOT NULL,
    title       text NOT NULL,
    description text,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz,
    CONSTRAINT policy_bundles_key UNIQUE (tenant_id, bundle_key),
    CONSTRAINT policy_bundles_key_format CHECK (bundle_key ~ '^[a-z][a-z0-9_.-]{0,127}$'),
    CONSTRAINT policy_bundles_title_len CHECK (length(title) BETWEEN 1 AND 200)
);

CREATE TRIGGER policy_bundles_touch
    BEFORE UPDATE ON policy_bundles
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- zeroui-class: product/policy_lifecycle: policy snapshots, versioned signed policy documents with a lifecycle state
CREATE TABLE policy_snapshots (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    bundle_id        bigint NOT NULL REFERENCES policy_bundles (id),
    version          integer NOT NULL,
    state            text NOT NULL DEFAULT 'draft' REFERENCES policy_lifecycle_states (state),
    document         jsonb NOT NULL,     -- the compiled policy
    digest           text NOT NULL,      -- sha256 of the canonical document: what IDEs verify
    size_bytes       integer NOT NULL,
    signature        text,               -- detached signature over digest, set on approval
    signing_key_id   text,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    state_changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT policy_snapshots_snapshot_id_key UNIQUE (snapshot_id),
    CONSTRAINT policy_snapshots_version_key UNIQUE (bundle_id, version),
    CONSTRAINT policy_snapshots_digest_key UNIQUE (bundle_id, digest),
    CONSTRAINT policy_snapshots_version CHECK (version >= 1),
    CONSTRAINT policy_snapshots_document_object CHECK (jsonb_typeof(document) = 'object'),
    CONSTRAINT policy_snapshots_digest_format CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    CONSTRAINT policy_snapshots_size CHECK (size_bytes >= 0),
    CONSTRAINT policy_snapshots_signature_pair CHECK ((signature IS NULL) = (signing_key_id IS NULL)),
    -- Approved, released and retired snapshots were signed on approval.
    CONSTRAINT policy_snapshots_signed CHECK (state IN ('draft', 'review') OR signature IS NOT NULL)
);

CREATE INDEX policy_snapshots_bundle_state_idx ON policy_snapshots (bundle_id, state);

-- zeroui-class: product/policy_lifecycle: audit trail of every snapshot state change (written by trigger, append-only)
CREATE TABLE policy_snapshot_transitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id bigint NOT NULL REFERENCES policy_snapshots (id),
    from_state  text REFERENCES policy_lifecycle_states (state),   -- NULL: created
    to_state    text NOT NULL REFERENCES policy_lifecycle_states (state),
    actor       text NOT NULL,
    reason      text,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX policy_snapshot_transitions_snapshot_idx ON policy_snapshot_transitions (snapshot_id, changed_at);

REVOKE UPDATE, DELETE, TRUNCATE ON policy_snapshot_transitions FROM :"app_role";

-- zeroui-class: product/policy_lifecycle: releases of released snapshots to a tenant's channel; one active release per tenant and channel
CREATE TABLE policy_releases (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    release_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL,           -- the bundle's tenant (checked by trigger)
    channel       text NOT NULL DEFAULT 'stable',
    snapshot_id   bigint NOT NULL REFERENCES policy_snapshots (id),
    released_by   text NOT NULL,
    released_at   timestamptz NOT NULL DEFAULT now(),
    notes         text,
    superseded_at timestamptz,
    superseded_by bigint REFERENCES policy_releases (id),
    CONSTRAINT policy_releases_release_id_key UNIQUE (release_id),
    CONSTRAINT policy_releases_channel CHECK (channel IN ('canary', 'stable')),
    CONSTRAINT policy_releases_superseded CHECK (superseded_by IS NULL OR superseded_at IS NOT NULL),
    CONSTRAINT policy_releases_superseded_after CHECK (superseded_at IS NULL OR superseded_at >= released_at)
);

-- The current release of each tenant channel: supersede the old row, then insert the new one.
CREATE UNIQUE INDEX policy_releases_active_idx ON policy_releases (tenant_id, channel)
    WHERE superseded_at IS NULL;
CREATE INDEX policy_releases_snapshot_idx ON policy_releases (snapshot_id);

-- Snapshot guard: new snapshots start as drafts; a state change must be a listed
-- transition; content is frozen outside draft; a snapshot on an active release cannot
-- be retired.
CREATE FUNCTION policy_snapshots_guard() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'draft' THEN
            RAISE EXCEPTION 'a policy snapshot starts as draft, not %', NEW.state
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.state_changed_at := now();
        RETURN NEW;
    END IF;

    IF (NEW.bundle_id, NEW.version, NEW.snapshot_id) IS DISTINCT FROM (OLD.bundle_id, OLD.version, OLD.snapshot_id) THEN
        RAISE EXCEPTION 'policy snapshot % cannot move to another bundle, version or id', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;

    IF OLD.state <> 'draft'
       AND (NEW.document, NEW.digest, NEW.size_bytes) IS DISTINCT FROM (OLD.document, OLD.digest, OLD.size_bytes) THEN
        RAISE EXCEPTION 'policy snapshot % is %: its content is frozen', OLD.id, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;

    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT EXISTS (SELECT 1 FROM policy_lifecycle_transitions t
                       WHERE t.from_state = OLD.state AND t.to_state = NEW.state) THEN
            RAISE EXCEPTION 'illegal policy snapshot transition % -> % (snapshot %)', OLD.state, NEW.state, OLD.id
                USING ERRCODE = 'check_violation',
                      HINT = 'legal transitions are listed in policy_lifecycle_transitions';
        END IF;
        IF NEW.state = 'retired' AND EXISTS (SELECT 1 FROM policy_releases r
                                             WHERE r.snapshot_id = OLD.id AND r.superseded_at IS NULL) THEN
            RAISE EXCEPTION 'policy snapshot % is on an active release; supersede the release first', OLD.id
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.state_changed_at := now();
    END IF;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER policy_snapshots_guard
    BEFORE INSERT OR UPDATE ON policy_snapshots
    FOR EACH ROW EXECUTE FUNCTION policy_snapshots_guard();

-- Records creation and every state change in the audit trail.
CREATE FUNCTION policy_snapshots_audit() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO policy_snapshot_transitions (snapshot_id, from_state, to_state, actor, reason)
        VALUES (NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state, zeroui_actor(),
                nullif(current_setting('zeroui.reason', true), ''));
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER policy_snapshots_audit
    AFTER INSERT OR UPDATE ON policy_snapshots
    FOR EACH ROW EXECUTE FUNCTION policy_snapshots_audit();

-- Release guard: only a released snapshot of the tenant's own bundle goes on a channel;
-- what was released, where and to whom never changes afterwards.
CREATE FUNCTION policy_releases_guard() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    snap_state text;
    bundle_tenant uuid;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (NEW.tenant_id, NEW.channel, NEW.snapshot_id, NEW.released_at, NEW.release_id)
           IS DISTINCT FROM (OLD.tenant_id, OLD.channel, OLD.snapshot_id, OLD.released_at, OLD.release_id) THEN
            RAISE EXCEPTION 'policy release % is history: only superseded_at/superseded_by/notes may change', OLD.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    SELECT s.state, b.tenant_id INTO snap_state, bundle_tenant
    FROM policy_snapshots s JOIN policy_bundles b ON b.id = s.bundle_id
    WHERE s.id = NEW.snapshot_id;
    IF snap_state IS DISTINCT FROM 'released' THEN
        RAISE EXCEPTION 'policy snapshot % is %, not released', NEW.snapshot_id, coalesce(snap_state, 'missing')
            USING ERRCODE = 'check_violation';
    END IF;
    IF bundle_tenant <> NEW.tenant_id THEN
        RAISE EXCEPTION 'policy snapshot % belongs to another tenant', NEW.snapshot_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER policy_releases_guard
    BEFORE INSERT OR UPDATE ON policy_releases
    FOR EACH ROW EXECUTE FUNCTION policy_releases_guard();

-- Snapshots and releases are retired or superseded, never deleted.
REVOKE DELETE, TRUNCATE ON policy_snapshots, policy_releases FROM :"app_role";
