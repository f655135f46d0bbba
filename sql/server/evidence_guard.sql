-- The evidence guard: event triggers in a plane database that holds an evidence ledger, on
-- the pilot's own cluster. Only a superuser may create, alter, disable or drop an event
-- trigger, so the local superuser installs this (a managed service's admin may not; see
-- README, "The evidence ledger").
--
-- Why: the keeper (:"keeper_role") owns the ledger and nobody can act as it, but PostgreSQL
-- lets the owner of a schema drop any object in it, and the plane's owner owns schema public
-- (as the database owner). So the guard refuses, to every role but the keeper and superusers:
--   * dropping any object of the keeper's (tables, indexes, functions, types, triggers, rules,
--     policies), also through DROP SCHEMA ... CASCADE or DROP OWNED;
--   * renaming or giving away a schema that holds the keeper's objects;
--   * creating or renaming a table, view or function elsewhere under the name of one of the
--     keeper's, which an altered search_path would let stand in for the ledger.
-- Everything else passes untouched. Event triggers do not fire for DDL on event triggers
-- themselves, nor for databases and roles (shared objects).

CREATE SCHEMA IF NOT EXISTS zeroui_guard;
REVOKE ALL ON SCHEMA zeroui_guard FROM PUBLIC;

CREATE OR REPLACE FUNCTION zeroui_guard.evidence_guard() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    keeper oid := to_regrole(':"keeper_role"');
    protected text;
    obj record;
    found text;
BEGIN
    IF keeper IS NULL OR current_user::regrole = keeper
       OR (SELECT rolsuper FROM pg_roles WHERE oid = current_user::regrole) THEN
        RETURN;
    END IF;

    IF TG_EVENT = 'ddl_command_start' THEN
        -- What the keeper owns before this command runs; sql_drop, which sees the dropped
        -- objects only after they are gone, compares against it.
        SELECT string_agg(o::text, ',') INTO protected FROM (
            SELECT c.oid FROM pg_class c WHERE c.relowner = keeper
            UNION ALL SELECT p.oid FROM pg_proc p WHERE p.proowner = keeper
            UNION ALL SELECT t.oid FROM pg_type t WHERE t.typowner = keeper
            UNION ALL SELECT g.oid FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
                      WHERE c.relowner = keeper AND NOT g.tgisinternal
            UNION ALL SELECT r.oid FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE c.relowner = keeper
            UNION ALL SELECT p.oid FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relowner = keeper
            UNION ALL SELECT k.oid FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid WHERE c.relowner = keeper
        ) s(o);
        PERFORM set_config('zeroui_guard.protected', ',' || coalesce(protected, '') || ',', true);

    ELSIF TG_EVENT = 'sql_drop' THEN
        protected := current_setting('zeroui_guard.protected', true);
        FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
            IF protected LIKE '%,' || obj.objid || ',%' THEN
                RAISE EXCEPTION '% % belongs to the evidence keeper: % refused', obj.object_type,
                    obj.object_identity, TG_TAG
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
        END LOOP;

    ELSIF TG_EVENT = 'ddl_command_end' THEN
        FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
            IF obj.classid = 'pg_namespace'::regclass AND (
                   EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = obj.objid AND c.relowner = keeper)
                   OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = obj.objid AND p.proowner = keeper)) THEN
                RAISE EXCEPTION 'schema % holds the evidence keeper''s objects: % refused', obj.object_identity, TG_TAG
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            found := NULL;
            IF obj.classid = 'pg_class'::regclass THEN
                SELECT c.relname INTO found FROM pg_class c
                WHERE c.oid = obj.objid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                  AND EXISTS (SELECT 1 FROM pg_class k WHERE k.relowner = keeper AND k.relname = c.relname
                                                         AND k.relnamespace <> c.relnamespace);
            ELSIF obj.classid = 'pg_proc'::regclass THEN
                SELECT p.proname INTO found FROM pg_proc p
                WHERE p.oid = obj.objid
                  AND EXISTS (SELECT 1 FROM pg_proc k WHERE k.proowner = keeper AND k.proname = p.proname
                                                        AND k.pronamespace <> p.pronamespace);
            END IF;
            IF found IS NOT NULL THEN
                RAISE EXCEPTION '% is the name of an evidence keeper''s object: % refused', obj.object_identity, TG_TAG
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
        END LOOP;
    END IF;
END
$fn$;

DROP EVENT TRIGGER IF EXISTS zeroui_evidence_guard_start;
DROP EVENT TRIGGER IF EXISTS zeroui_evidence_guard_drop;
DROP EVENT TRIGGER IF EXISTS zeroui_evidence_guard_end;
CREATE EVENT TRIGGER zeroui_evidence_guard_start ON ddl_command_start
    EXECUTE FUNCTION zeroui_guard.evidence_guard();
CREATE EVENT TRIGGER zeroui_evidence_guard_drop ON sql_drop
    EXECUTE FUNCTION zeroui_guard.evidence_guard();
CREATE EVENT TRIGGER zeroui_evidence_guard_end ON ddl_command_end
    EXECUTE FUNCTION zeroui_guard.evidence_guard();
