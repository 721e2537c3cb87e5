/* para_sync--0.1--0.2.sql — upgrade from 0.1 to 0.2.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql and then this script, so
 * a new install and an upgraded one always end with the same objects.  Each
 * section below is one concern; every object reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.2'" to load this file. \quit

-- == table lifecycle and sync names ==
-- unsync_table(), DROP TABLE and TRUNCATE of a synced table publish a delete
-- for every row they remove (src/lifecycle.c); a sync name stays bound to
-- the role that first tagged a table under it (src/sync_names.c).

-- Every sync name ever used, and the role it belongs to.  A regrole, so
-- pg_dump writes the owner by name and a restore maps it to that role.
CREATE TABLE para_sync.sync_names (
	sync_name	pg_catalog.text COLLATE "C" PRIMARY KEY,
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
