/* para_sync--0.1--0.2.sql — upgrade from 0.1 to 0.2.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql and then this script, so
 * a new install and an upgraded one always end with the same objects.  Each
 * section below is one concern; every object reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.2'" to load this file. \quit

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
