-- Tenant plane, migration 0012: decisions are evidence, recorded once and never edited.
-- 0003 revoked UPDATE from the app role but not DELETE, so DELETE + INSERT could still edit a
-- decision. Now the app role loses DELETE and TRUNCATE too, and a trigger refuses UPDATE,
-- DELETE and TRUNCATE for every role (retention, if ever, is a migration's job).

CREATE FUNCTION refuse_evidence_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $fn$
BEGIN
    RAISE EXCEPTION '% is evidence, recorded once: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a new row that supersedes the old one';
END
$fn$;

REVOKE UPDATE, DELETE, TRUNCATE ON decisions FROM :"app_role";

CREATE TRIGGER decisions_no_update_delete
    BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION refuse_evidence_change();

CREATE TRIGGER decisions_no_truncate
    BEFORE TRUNCATE ON decisions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_evidence_change();
