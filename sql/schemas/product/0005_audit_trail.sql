-- Product plane, migration 0005: the snapshot audit trail is written by its trigger alone.
-- policy_snapshot_transitions accepted INSERTs from the app role, so a service could forge a
-- state change that never happened. Now the audit trigger runs as the owner (SECURITY DEFINER,
-- fixed search_path: nothing a role creates in public can stand in for a built-in), the app
-- role loses INSERT, UPDATE, DELETE and TRUNCATE on the trail, and a trigger refuses UPDATE,
-- DELETE and TRUNCATE for every role. The actor is still who the service says it is
-- (zeroui.actor), else the database user (session_user, which SECURITY DEFINER leaves alone).

CREATE FUNCTION refuse_evidence_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $fn$
BEGIN
    RAISE EXCEPTION '% is evidence, recorded once: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a new row that supersedes the old one';
END
$fn$;

ALTER FUNCTION policy_snapshots_audit() SECURITY DEFINER SET search_path = pg_catalog, public;

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON policy_snapshot_transitions FROM :"app_role";

CREATE TRIGGER policy_snapshot_transitions_no_update_delete
    BEFORE UPDATE OR DELETE ON policy_snapshot_transitions
    FOR EACH ROW EXECUTE FUNCTION refuse_evidence_change();

CREATE TRIGGER policy_snapshot_transitions_no_truncate
    BEFORE TRUNCATE ON policy_snapshot_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_evidence_change();
