/* para_sync--0.3--0.4.sql — upgrade from 0.3 to 0.4.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql, the upgrade scripts
 * 0.1--0.2 and 0.2--0.3, and then this script, so a new install and an
 * upgraded one always end with the same objects (test/t/003_upgrade.pl
 * compares them).  Each section below is one concern, headed "-- == ... ==";
 * every object reference is schema-qualified and every new object has a
 * COMMENT ON.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.4'" to load this file. \quit

-- == snapshot_page: a table's objects in primary-key order, page by page ==

-- Keyset paging in the primary key's index order: the current rows whose
-- primary key follows the one after_key names (the last key of the previous
-- page), at most max_rows, each with the envelope snapshot(key) returns.
-- O(max_rows) per page for every key type (an index range scan).  Read with
-- the caller's privileges: row-level security and column grants apply.
-- snapshot_table() keeps its byte order of keys for clients of 0.3
-- (docs/protocol.md, "Loading a whole table" and "Versioning").
-- With scope (a table with a scope, see "scopes" below), only the rows of
-- that scope: O(max_rows) given an index on (scope columns, primary key).
CREATE FUNCTION para_sync.snapshot_page(tbl pg_catalog.regclass,
										after_key pg_catalog.text DEFAULT NULL,
										max_rows pg_catalog.int4 DEFAULT 1000,
										scope pg_catalog.text DEFAULT NULL)
RETURNS TABLE (key pg_catalog.text, envelope pg_catalog.bytea)
AS 'MODULE_PATHNAME', 'para_sync_snapshot_page'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 1000;

COMMENT ON FUNCTION para_sync.snapshot_page(pg_catalog.regclass, pg_catalog.text, pg_catalog.int4, pg_catalog.text) IS
'current objects of a synced table (of one scope when scope is given) whose primary key follows that of after_key (primary-key order), at most max_rows, with their snapshot envelopes; caller''s privileges apply';

COMMENT ON FUNCTION para_sync.snapshot_table(pg_catalog.regclass, pg_catalog.text, pg_catalog.int4) IS
'current objects of a synced table whose key follows after_key (byte order of the key text; O(table) per page unless keyed by one integer column: use snapshot_page()), at most max_rows, with their snapshot envelopes; caller''s privileges apply';

-- == partitioned tables, synced by their root ==

-- sync_table() of a partitioned table registers the root: its capture
-- trigger is cloned by PostgreSQL to every partition, present and future,
-- and rows are keyed by the root's sync name and primary key
-- (src/partition.c).  These event triggers follow the partitions: a table
-- created or attached as a partition gets the truncate trigger (statement
-- triggers are not cloned) and, when attached with rows, an upsert per row;
-- DETACH PARTITION publishes a delete per row; DETACH ... CONCURRENTLY and
-- changes to para_sync's triggers on a partition are refused.
CREATE FUNCTION para_sync.partition_ddl_start()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'para_sync_partition_ddl_start'
LANGUAGE C;
CREATE FUNCTION para_sync.partition_ddl_end()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'para_sync_partition_ddl_end'
LANGUAGE C;
CREATE FUNCTION para_sync.partition_check_dropped()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'para_sync_partition_check_dropped'
LANGUAGE C;
REVOKE ALL ON FUNCTION para_sync.partition_ddl_start(), para_sync.partition_ddl_end(),
	para_sync.partition_check_dropped() FROM PUBLIC;
COMMENT ON FUNCTION para_sync.partition_ddl_start() IS
	'ddl_command_start of ALTER TABLE, ALTER TRIGGER, CREATE TRIGGER and DROP TRIGGER: publishes a delete per row of a partition detached from a synced root; refuses DETACH ... CONCURRENTLY, attaching a table synced on its own, and changes to para_sync''s triggers on a partition.';
COMMENT ON FUNCTION para_sync.partition_check_dropped() IS
	'sql_drop: refuses to drop a partition of a synced table other than by DROP TABLE (DROP SCHEMA ... CASCADE, DROP OWNED, ...).';
COMMENT ON FUNCTION para_sync.partition_ddl_end() IS
	'ddl_command_end of CREATE TABLE, ALTER TABLE, CREATE TRIGGER and CREATE SCHEMA: a new partition of a synced root gets the truncate trigger (ENABLE ALWAYS); an attached one also an upsert per row.';

CREATE EVENT TRIGGER para_sync_partitions_start ON ddl_command_start
	WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'CREATE TRIGGER', 'DROP TRIGGER')
	EXECUTE FUNCTION para_sync.partition_ddl_start();
CREATE EVENT TRIGGER para_sync_partitions_end ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TRIGGER', 'CREATE SCHEMA')
	EXECUTE FUNCTION para_sync.partition_ddl_end();
CREATE EVENT TRIGGER para_sync_partitions_drop ON sql_drop
	EXECUTE FUNCTION para_sync.partition_check_dropped();
ALTER EVENT TRIGGER para_sync_partitions_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER para_sync_partitions_start ENABLE ALWAYS;
ALTER EVENT TRIGGER para_sync_partitions_end ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER para_sync_partitions_start IS
	'Publishes the deletes of a partition detached from a synced root; refuses what would leave a partition''s changes unpublished.';
COMMENT ON EVENT TRIGGER para_sync_partitions_drop IS
	'Refuses to drop a partition of a synced table other than with DROP TABLE.';
COMMENT ON EVENT TRIGGER para_sync_partitions_end IS
	'Gives a new partition of a synced root its truncate trigger, and publishes the rows of an attached one.';

-- == scopes: one tenant's rows on their own subjects ==
-- A table with a scope publishes each change on
-- <prefix>.<sync name>.<scope>.<key>, the scope being one subject token made
-- of the row's scope columns (docs/protocol.md, "Scopes"), so that the NATS
-- server filters and authorizes one tenant's rows by subject.  The registry
-- keeps the scope columns by name, as exclude_columns (the DDL guard
-- follows their renames and refuses dropping or retyping them; a name
-- survives a restore, which renumbers columns after a dropped one); each outbox
-- row keeps the scope its change was captured under, so queued envelopes
-- go out on the subjects they were written for.
ALTER TABLE para_sync.tables
	ADD COLUMN scope_columns pg_catalog.text[];

ALTER TABLE para_sync.outbox
	ADD COLUMN scope pg_catalog.text COLLATE pg_catalog."C";

COMMENT ON COLUMN para_sync.tables.scope_columns IS
'the scope columns, in scope order (set with para_sync.set_scope()); follow renames of the columns; NULL: no scope';
COMMENT ON COLUMN para_sync.outbox.scope IS
'scope token the change was captured under (subject <prefix>.<sync name>.<scope>.<key>); NULL: none, subject_layout decides';

-- Runs with the caller's rights: only the table's owner may change it.
CREATE FUNCTION para_sync.set_scope(tbl pg_catalog.regclass,
									columns pg_catalog.text[])
RETURNS void
AS 'MODULE_PATHNAME', 'para_sync_set_scope'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION para_sync.set_scope(pg_catalog.regclass, pg_catalog.text[]) IS
'scope columns of the table from now on: its changes go to <prefix>.<sync name>.<scope>.<key>; NULL or ''{}'' removes the scope; table owner only';

-- Like set_subject_layout(): call it right after sync_table(), in the same
-- transaction, and the table's first change already has its scope.

CREATE OR REPLACE VIEW para_sync.synced_tables AS
SELECT t.relid AS table_name,
	   t.sync_name,
	   t.schema_version,
	   t.exclude_columns,
	   t.tagged_at,
	   t.subject_layout,
	   t.scope_columns
  FROM para_sync.tables t;

COMMENT ON COLUMN para_sync.synced_tables.scope_columns IS
'the scope columns (current names, in scope order), NULL: no scope (see para_sync.set_scope())';
COMMENT ON VIEW para_sync.synced_tables IS
'Every synced table with its sync name, schema_version, excluded columns, subject layout and scope columns; readable by everyone';
