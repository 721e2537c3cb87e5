/* para_sync--0.2--0.3.sql — upgrade from 0.2 to 0.3.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql, para_sync--0.1--0.2.sql
 * and then this script, so a new install and an upgraded one always end with
 * the same objects.  Each section below is one concern; every object
 * reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.3'" to load this file. \quit

-- == synced columns that print catalog names ==
-- 0.3 refuses synced columns whose values print the names of catalog
-- objects (regclass, regtype, regproc, regrole, ..., aclitem, also inside
-- arrays, domains, composites and ranges: src/type_trust.c).  A table
-- tagged with one under 0.2 stops the update with an error naming it.  The
-- helper exists only for this step.
CREATE FUNCTION para_sync.refuse_catalog_name_columns()
RETURNS void
LANGUAGE c
VOLATILE STRICT
AS 'MODULE_PATHNAME', 'para_sync_refuse_catalog_name_columns';
REVOKE ALL ON FUNCTION para_sync.refuse_catalog_name_columns() FROM PUBLIC;
COMMENT ON FUNCTION para_sync.refuse_catalog_name_columns() IS
	'update step: refuses the update while a synced column prints catalog names';
SELECT para_sync.refuse_catalog_name_columns();
DROP FUNCTION para_sync.refuse_catalog_name_columns();

-- == sync-name owners are dependents of their roles ==
-- DROP ROLE is refused while the role owns sync names, REASSIGN OWNED passes
-- them on and DROP OWNED releases them (src/sync_names.c, in the current
-- database).  For other databases every owner role holds SELECT on
-- para_sync.sync_names, granted and revoked by the trigger below as names
-- come and go (also when a dump restores the table): PostgreSQL tracks that
-- privilege cluster-wide and refuses DROP ROLE in any database while it
-- exists, so no name is ever bound to a dropped role whose OID a later role
-- could reuse.

-- Names whose owner role was already dropped (under 0.2) pass to the
-- extension owner: only a superuser may release them.
UPDATE para_sync.sync_names n
   SET owner = (SELECT e.extowner FROM pg_catalog.pg_extension e
				 WHERE e.extname OPERATOR(pg_catalog.=) 'para_sync')::pg_catalog.regrole
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
					WHERE r.oid OPERATOR(pg_catalog.=) n.owner::pg_catalog.oid);

CREATE FUNCTION para_sync.sync_name_owner_privilege()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	table_owner pg_catalog.oid := (SELECT c.relowner FROM pg_catalog.pg_class c
									WHERE c.oid OPERATOR(pg_catalog.=) TG_RELID);
BEGIN
	IF TG_OP IN ('INSERT', 'UPDATE')
	   AND NEW.owner::pg_catalog.oid OPERATOR(pg_catalog.<>) table_owner THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON TABLE para_sync.sync_names TO %s', NEW.owner);
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE')
	   AND OLD.owner::pg_catalog.oid OPERATOR(pg_catalog.<>) table_owner
	   AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
				   WHERE r.oid OPERATOR(pg_catalog.=) OLD.owner::pg_catalog.oid)
	   AND NOT EXISTS (SELECT 1 FROM para_sync.sync_names n
					   WHERE n.owner OPERATOR(pg_catalog.=) OLD.owner) THEN
		EXECUTE pg_catalog.format('REVOKE SELECT ON TABLE para_sync.sync_names FROM %s', OLD.owner);
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION para_sync.sync_name_owner_privilege() FROM PUBLIC;
COMMENT ON FUNCTION para_sync.sync_name_owner_privilege() IS
	'trigger of para_sync.sync_names: every owner role of a sync name holds SELECT on the table, so DROP ROLE in any database is refused while it owns names';

CREATE TRIGGER sync_names_owner_privilege
	AFTER INSERT OR UPDATE OF owner OR DELETE ON para_sync.sync_names
	FOR EACH ROW EXECUTE FUNCTION para_sync.sync_name_owner_privilege();
ALTER TABLE para_sync.sync_names ENABLE ALWAYS TRIGGER sync_names_owner_privilege;
COMMENT ON TRIGGER sync_names_owner_privilege ON para_sync.sync_names IS
	'grants SELECT on para_sync.sync_names to each owner role of a sync name, and revokes it when the role owns none';

-- the owners recorded so far
UPDATE para_sync.sync_names SET owner = owner;

-- == Table events (column DDL): a key may be a sync name ==
-- DDL that changes every row's snapshot at the same sequence appends one
-- 'reload' envelope whose key is the table's sync name, numbered by that
-- key's own counter (src/table_event.c, docs/protocol.md "Table events").
COMMENT ON COLUMN para_sync.outbox.key IS
	'an object''s key (<sync name>:<key part>...), or a sync name alone for a table event (op reload)';
COMMENT ON COLUMN para_sync.counters.key IS
	'an object''s key, or a sync name alone: the last sequence of its table events';
