-- Shared plane, migration 0005: supply chain verifications are evidence, recorded once.
-- 0003 revoked UPDATE from the app role but not DELETE, so DELETE + INSERT could still edit a
-- verdict. Now the app role loses DELETE and TRUNCATE too, and a trigger refuses UPDATE,
-- DELETE and TRUNCATE for every role.

CREATE FUNCTION refuse_evidence_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $fn$
BEGIN
    RAISE EXCEPTION '% is evidence, recorded once: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a new row that supersedes the old one';
END
$fn$;

REVOKE UPDATE, DELETE, TRUNCATE ON supply_chain_verifications FROM :"app_role";

CREATE TRIGGER supply_chain_verifications_no_update_delete
    BEFORE UPDATE OR DELETE ON supply_chain_verifications
    FOR EACH ROW EXECUTE FUNCTION refuse_evidence_change();

CREATE TRIGGER supply_chain_verifications_no_truncate
    BEFORE TRUNCATE ON supply_chain_verifications
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_evidence_change();
