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

-- Tags a table.  registry_write('insert') creates the capture and TRUNCATE
-- triggers itself, firing ALWAYS, so that a table is never registered
-- without them (whoever calls the registry functions).
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
	RETURN para_sync.registry_write('insert', tbl, chosen, schema_version, excluded);
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

-- Tables tagged by 0.1 have ENABLE ORIGIN capture and TRUNCATE triggers: make them ALWAYS
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
		EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER para_sync_no_truncate', tbl);
	END LOOP;
END
$$;

-- == table lifecycle and sync names ==
-- unsync_table(), DROP TABLE and TRUNCATE of a synced table publish a delete
-- for every row they remove (src/lifecycle.c); a sync name stays bound to
-- the role that first tagged a table under it (src/sync_names.c).

-- Every sync name ever used, and the role it belongs to.  A regrole, so
-- pg_dump writes the owner by name and a restore maps it to that role.
CREATE TABLE para_sync.sync_names (
	sync_name	pg_catalog.text COLLATE pg_catalog."C" PRIMARY KEY,
	owner		pg_catalog.regrole NOT NULL,
	claimed_at	pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON para_sync.sync_names FROM PUBLIC;
GRANT SELECT ON para_sync.sync_names TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('para_sync.sync_names', '');
COMMENT ON TABLE para_sync.sync_names IS
	'Sync names and the roles they belong to; only that role (or a superuser) may tag a table under a name or release it.';

-- Upgrade: the names of tagged tables belong to the tables' owners; names
-- that only keys remember (their tables untagged or dropped under 0.1)
-- belong to the extension owner, so a superuser must release them.
INSERT INTO para_sync.sync_names (sync_name, owner)
SELECT t.sync_name, c.relowner::pg_catalog.regrole
  FROM para_sync.tables t
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid;
INSERT INTO para_sync.sync_names (sync_name, owner)
SELECT DISTINCT pg_catalog.split_part(k.key, ':', 1), c.relowner::pg_catalog.regrole
  FROM (SELECT o.key FROM para_sync.outbox o
		UNION ALL SELECT n.key FROM para_sync.counters n) k,
	   pg_catalog.pg_class c
 WHERE c.oid OPERATOR(pg_catalog.=) 'para_sync.outbox'::pg_catalog.regclass
ON CONFLICT (sync_name) DO NOTHING;

CREATE FUNCTION para_sync.release_sync_name(name pg_catalog.text)
RETURNS void
AS 'MODULE_PATHNAME', 'para_sync_release_sync_name'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION para_sync.release_sync_name(pg_catalog.text) IS
	'Frees a sync name no table uses, so that any table owner may tag a table under it; needs the privileges of its owner role or superuser.';

-- TRUNCATE of a synced table: a delete for every row.  The 0.1 trigger
-- function keeps its name (existing triggers call it) but now captures.
CREATE OR REPLACE FUNCTION para_sync.refuse_truncate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'para_sync_capture_truncate'
LANGUAGE C;
COMMENT ON FUNCTION para_sync.refuse_truncate() IS
	'BEFORE TRUNCATE trigger of synced tables: appends a delete envelope for every row the TRUNCATE removes (the name is kept from 0.1).';

-- DROP TABLE of a synced table: a delete for every row, while the rows
-- still exist; other ways of dropping a synced table are refused.
CREATE FUNCTION para_sync.retire_dropped_tables()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'para_sync_retire_dropped_tables'
LANGUAGE C;
COMMENT ON FUNCTION para_sync.retire_dropped_tables() IS
	'ddl_command_start of DROP TABLE: appends a delete envelope for every row of each synced table dropped.';
CREATE EVENT TRIGGER para_sync_retire_dropped_tables ON ddl_command_start
	WHEN TAG IN ('DROP TABLE')
	EXECUTE FUNCTION para_sync.retire_dropped_tables();

-- Named to fire before para_sync_forget_dropped_tables (event triggers fire
-- in name order), while the registry still lists the dropped tables.
CREATE FUNCTION para_sync.check_dropped_tables()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'para_sync_check_dropped_tables'
LANGUAGE C;
COMMENT ON FUNCTION para_sync.check_dropped_tables() IS
	'sql_drop: refuses to drop a synced table other than by naming it in DROP TABLE (DROP SCHEMA ... CASCADE, DROP OWNED, ...).';
CREATE EVENT TRIGGER para_sync_check_dropped_tables ON sql_drop
	EXECUTE FUNCTION para_sync.check_dropped_tables();

COMMENT ON FUNCTION para_sync.unsync_table(pg_catalog.regclass) IS
	'Stops syncing a table: appends a delete envelope for every row, then removes the registration; the sync name stays bound to its owner.';
-- Event trigger functions are not for direct calls.
REVOKE ALL ON FUNCTION para_sync.retire_dropped_tables(), para_sync.check_dropped_tables() FROM PUBLIC;
COMMENT ON EVENT TRIGGER para_sync_retire_dropped_tables IS
	'Publishes a delete for every row of each synced table that DROP TABLE names, before it goes.';
COMMENT ON EVENT TRIGGER para_sync_check_dropped_tables IS
	'Refuses to drop a synced table other than with DROP TABLE.';
-- DROP TABLE in session_replication_role = replica (a superuser's session,
-- a logical replication apply worker) drops the rows all the same: the
-- dropped-table event triggers fire in every mode.
ALTER EVENT TRIGGER para_sync_retire_dropped_tables ENABLE ALWAYS;
ALTER EVENT TRIGGER para_sync_check_dropped_tables ENABLE ALWAYS;
ALTER EVENT TRIGGER para_sync_forget_dropped_tables ENABLE ALWAYS;

-- == snapshot_table: a table's objects in key order, page by page ==

-- Keyset paging over a synced table: the current rows whose key follows
-- after_key (byte order of the key text), at most max_rows, each with the
-- same op-snapshot envelope snapshot(key) returns.  Read with the caller's
-- privileges: row-level security and column grants apply.
CREATE FUNCTION para_sync.snapshot_table(tbl pg_catalog.regclass,
										 after_key pg_catalog.text DEFAULT NULL,
										 max_rows pg_catalog.int4 DEFAULT 1000)
RETURNS TABLE (key pg_catalog.text, envelope pg_catalog.bytea)
AS 'MODULE_PATHNAME', 'para_sync_snapshot_table'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 1000;

COMMENT ON FUNCTION para_sync.snapshot_table(pg_catalog.regclass, pg_catalog.text, pg_catalog.int4) IS
'current objects of a synced table whose key follows after_key (byte order), at most max_rows, with their snapshot envelopes; caller''s privileges apply';

-- == types printed by synced columns ==
-- ALTER TYPE ... RENAME VALUE of an enum, and ALTER TYPE ... ADD|DROP
-- ATTRIBUTE of a composite type, change the text of stored values without a
-- row change: the guard (src/ddl_guard.c) refuses them while a synced column
-- prints the type (directly, or through a domain, array, composite or range).
CREATE EVENT TRIGGER para_sync_ddl_guard_types ON ddl_command_start
	WHEN TAG IN ('ALTER TYPE')
	EXECUTE FUNCTION para_sync.ddl_guard();
ALTER EVENT TRIGGER para_sync_ddl_guard_types ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER para_sync_ddl_guard_types IS
	'refuses renaming an enum label, or adding or dropping a composite type''s attribute, while a synced column prints the type';

-- == publisher status: state_detail, skipped ==
-- state_detail says why the worker is in its state (e.g. which standby slot
-- holds publishing back); skipped counts envelopes too large for NATS even
-- as op refetch.  Changing OUT columns needs a new function and view.
DROP VIEW para_sync.status;
DROP FUNCTION para_sync.publisher_status();

CREATE FUNCTION para_sync.publisher_status(
	OUT pid pg_catalog.int4,
	OUT state pg_catalog.text,
	OUT nats_state pg_catalog.text,
	OUT nats_server pg_catalog.text,
	OUT mode pg_catalog.text,
	OUT backlog pg_catalog.int8,
	OUT oldest_unpublished pg_catalog.timestamptz,
	OUT oldest_unpublished_age pg_catalog.interval,
	OUT backlog_measured_at pg_catalog.timestamptz,
	OUT published pg_catalog.int8,
	OUT batches pg_catalog.int8,
	OUT retries pg_catalog.int8,
	OUT refetches pg_catalog.int8,
	OUT last_error pg_catalog.text,
	OUT last_error_at pg_catalog.timestamptz,
	OUT last_publish_at pg_catalog.timestamptz,
	OUT started_at pg_catalog.timestamptz,
	OUT state_detail pg_catalog.text,
	OUT skipped pg_catalog.int8)
RETURNS record
AS 'MODULE_PATHNAME', 'para_sync_publisher_status'
LANGUAGE C VOLATILE STRICT;

CREATE VIEW para_sync.status AS
SELECT s.* FROM para_sync.publisher_status() s;

REVOKE ALL ON FUNCTION para_sync.publisher_status() FROM PUBLIC;
REVOKE ALL ON para_sync.status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION para_sync.publisher_status() TO pg_monitor;
GRANT SELECT ON para_sync.status TO pg_monitor;

COMMENT ON FUNCTION para_sync.publisher_status() IS
	'State of the para_sync publisher background worker, from shared memory (see docs/publisher.md).';
COMMENT ON VIEW para_sync.status IS
	'One row: what the para_sync publisher is doing, its backlog, counters and last problem.';

-- == subject layouts: subjects a table subscriber can filter on the server ==
-- A table's envelopes go to <prefix>.<key> (layout 'key', the default and
-- the only layout of 0.1) or to <prefix>.<sync name>.<key> (layout 'table'),
-- where the NATS server itself selects one table for a subscriber of
-- <prefix>.<sync name>.>.  The registry holds the setting; every outbox row
-- holds the layout its change was captured under, so envelopes queued
-- before a change of the setting keep the subject they were written for.
ALTER TABLE para_sync.tables
	ADD COLUMN subject_layout pg_catalog.text COLLATE pg_catalog."C" NOT NULL DEFAULT 'key'
		CONSTRAINT tables_subject_layout_check
		CHECK (subject_layout OPERATOR(pg_catalog.=) ANY (ARRAY['key', 'table']::pg_catalog.text[]));

-- 'k' = <prefix>.<key>, 't' = <prefix>.<sync name>.<key>
ALTER TABLE para_sync.outbox
	ADD COLUMN subject_layout pg_catalog."char" NOT NULL DEFAULT 'k';

COMMENT ON COLUMN para_sync.tables.subject_layout IS
	'key: envelopes go to <prefix>.<key>; table: to <prefix>.<sync name>.<key> (set with para_sync.set_subject_layout())';
COMMENT ON COLUMN para_sync.outbox.subject_layout IS
	'subject layout the change was captured under: k = <prefix>.<key>, t = <prefix>.<sync name>.<key>';

-- Runs with the caller's rights: only the table's owner may change it.
CREATE FUNCTION para_sync.set_subject_layout(tbl pg_catalog.regclass,
											 layout pg_catalog.text)
RETURNS void
AS 'MODULE_PATHNAME', 'para_sync_set_subject_layout'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION para_sync.set_subject_layout(pg_catalog.regclass, pg_catalog.text) IS
	'subjects of the table''s envelopes from now on: ''key'' (<prefix>.<key>) or ''table'' (<prefix>.<sync name>.<key>); table owner only';

-- The layout is a separate call rather than a sync_table() argument, so that
-- sync_table() keeps its signature: call it right after sync_table(), in the
-- same transaction, and the table's first change already has its layout.

CREATE OR REPLACE VIEW para_sync.synced_tables AS
SELECT t.relid AS table_name,
	   t.sync_name,
	   t.schema_version,
	   t.exclude_columns,
	   t.tagged_at,
	   t.subject_layout
  FROM para_sync.tables t;

-- == sequence cache ==

CREATE FUNCTION para_sync.sequence_cache_counts(OUT hits pg_catalog.int8,
												OUT misses pg_catalog.int8)
RETURNS record
AS 'MODULE_PATHNAME', 'para_sync_sequence_cache_counts'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION para_sync.sequence_cache_counts() IS
	'how many changes captured in this session took their sequence from the shared-memory sequence cache (hits) or from the outbox and counters indexes (misses)';

-- == key canonical forms ==
-- Keys are now one per value (numeric 1.0, 1.00 and 1 are all "1"; float -0
-- is "0"; char(n) drops trailing blanks; intervals are re-split as equality
-- measures them).  Rows whose 0.1 key differs are moved once, here: a delete
-- of the old key and an upsert of the new, so replicas drop the old object.
-- The helper exists only for this step.  It comes last: until the
-- subject_layout columns above exist, the library takes the schema for 0.1
-- and renders keys as 0.1 did (src/outbox_append.c, src/keys.c); from
-- here on it renders them the new way.
CREATE FUNCTION para_sync.rekey_legacy()
RETURNS pg_catalog.int8
LANGUAGE c
VOLATILE STRICT
AS 'MODULE_PATHNAME', 'para_sync_rekey_legacy';
REVOKE ALL ON FUNCTION para_sync.rekey_legacy() FROM PUBLIC;
SELECT para_sync.rekey_legacy();
DROP FUNCTION para_sync.rekey_legacy();
