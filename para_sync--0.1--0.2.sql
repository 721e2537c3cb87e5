/* para_sync--0.1--0.2.sql — upgrade from 0.1 to 0.2.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql and then this script, so
 * a new install and an upgraded one always end with the same objects.  Each
 * section below is one concern; every object reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.2'" to load this file. \quit

-- == DDL guard: capture trigger ENABLE ALWAYS, refused and followed DDL ==
--
-- The capture trigger fires ALWAYS: row changes made under
-- session_replication_role = replica (logical replication apply, replica
-- restores) are captured like any other.  The event triggers below (C, in
-- src/ddl_guard.c) refuse DDL that would let changes of a synced table go
-- unpublished or change what its keys mean, refuse DDL on para_sync's own
-- tables, refuse DROP EXTENSION while tables are synced or envelopes are
-- unpublished, and follow column renames, drops and type changes (excluded
-- columns stay excluded under a new name; schema_version is bumped).

-- Tags a table; the capture trigger is made ALWAYS.  (Installing triggers
-- after registering is fine for the guard: it refuses no CREATE TRIGGER and
-- ENABLE ALWAYS, and a fresh table has no para_sync trigger to drop.)
CREATE OR REPLACE FUNCTION para_sync.sync_table(tbl pg_catalog.regclass,
									 name pg_catalog.text DEFAULT NULL,
									 schema_version pg_catalog.text DEFAULT '1',
									 exclude_columns pg_catalog.text[] DEFAULT '{}')
RETURNS pg_catalog.text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	excluded pg_catalog.text[] := COALESCE(exclude_columns, '{}');
	chosen pg_catalog.text;
BEGIN
	PERFORM para_sync.check_syncable(tbl, excluded);
	chosen := COALESCE(name, (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) tbl));
	chosen := para_sync.registry_write('insert', tbl, chosen, schema_version, excluded);
	PERFORM para_sync.install_triggers(tbl);
	EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER para_sync_capture', tbl);
	RETURN chosen;
END
$$;

-- Changes the schema version only: registry_write() tells every backend to
-- reload the registration; the triggers (and their firing mode) stay.
CREATE OR REPLACE FUNCTION para_sync.set_schema_version(tbl pg_catalog.regclass,
											 v pg_catalog.text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM para_sync.registry_write('update', tbl, NULL, v, NULL);
END
$$;

CREATE FUNCTION para_sync.ddl_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'para_sync_ddl_guard'
LANGUAGE C;

REVOKE ALL ON FUNCTION para_sync.ddl_guard() FROM PUBLIC;

COMMENT ON FUNCTION para_sync.ddl_guard() IS
	'event trigger: refuses DDL that would break capture of synced tables or para_sync''s own tables, and follows column changes';

CREATE EVENT TRIGGER para_sync_ddl_guard_start ON ddl_command_start
	WHEN TAG IN ('ALTER TABLE', 'ALTER INDEX', 'ALTER TRIGGER', 'ALTER POLICY', 'ALTER SCHEMA',
				 'CREATE TABLE', 'CREATE INDEX', 'CREATE TRIGGER', 'CREATE RULE', 'CREATE POLICY',
				 'DROP TRIGGER', 'DROP INDEX', 'DROP EXTENSION', 'DROP SCHEMA')
	EXECUTE FUNCTION para_sync.ddl_guard();
CREATE EVENT TRIGGER para_sync_ddl_guard_end ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION para_sync.ddl_guard();
CREATE EVENT TRIGGER para_sync_ddl_guard_drop ON sql_drop
	EXECUTE FUNCTION para_sync.ddl_guard();

-- Event triggers skip session_replication_role = replica unless ALWAYS.
ALTER EVENT TRIGGER para_sync_ddl_guard_start ENABLE ALWAYS;
ALTER EVENT TRIGGER para_sync_ddl_guard_end ENABLE ALWAYS;
ALTER EVENT TRIGGER para_sync_ddl_guard_drop ENABLE ALWAYS;

COMMENT ON EVENT TRIGGER para_sync_ddl_guard_start IS
	'refuses DDL that would let changes of synced tables go unpublished, DDL on para_sync''s tables, and DROP EXTENSION para_sync while tables are synced or envelopes unpublished';
COMMENT ON EVENT TRIGGER para_sync_ddl_guard_end IS
	'follows column changes of synced tables: renamed excluded columns, schema_version bumps';
COMMENT ON EVENT TRIGGER para_sync_ddl_guard_drop IS
	'follows dropped columns of synced tables; refuses drops that take a synced table''s primary key';

-- Tables tagged by 0.1 have an ENABLE ORIGIN capture trigger: make it ALWAYS
-- (re-creating it where it went missing).
DO $$
DECLARE
	tbl pg_catalog.regclass;
BEGIN
	FOR tbl IN SELECT t.relid FROM para_sync.tables t LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
						WHERE g.tgrelid OPERATOR(pg_catalog.=) tbl
						  AND g.tgname OPERATOR(pg_catalog.=) 'para_sync_capture') THEN
			PERFORM para_sync.install_triggers(tbl);
		END IF;
		EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER para_sync_capture', tbl);
	END LOOP;
END
$$;

-- == sequence cache ==

CREATE FUNCTION para_sync.sequence_cache_counts(OUT hits pg_catalog.int8,
												OUT misses pg_catalog.int8)
RETURNS record
AS 'MODULE_PATHNAME', 'para_sync_sequence_cache_counts'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION para_sync.sequence_cache_counts() IS
	'how many changes captured in this session took their sequence from the shared-memory sequence cache (hits) or from the outbox and counters indexes (misses)';
