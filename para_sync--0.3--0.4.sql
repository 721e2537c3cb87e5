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
CREATE FUNCTION para_sync.snapshot_page(tbl pg_catalog.regclass,
										after_key pg_catalog.text DEFAULT NULL,
										max_rows pg_catalog.int4 DEFAULT 1000)
RETURNS TABLE (key pg_catalog.text, envelope pg_catalog.bytea)
AS 'MODULE_PATHNAME', 'para_sync_snapshot_page'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 1000;

COMMENT ON FUNCTION para_sync.snapshot_page(pg_catalog.regclass, pg_catalog.text, pg_catalog.int4) IS
'current objects of a synced table whose primary key follows that of after_key (primary-key order), at most max_rows, with their snapshot envelopes; caller''s privileges apply';

COMMENT ON FUNCTION para_sync.snapshot_table(pg_catalog.regclass, pg_catalog.text, pg_catalog.int4) IS
'current objects of a synced table whose key follows after_key (byte order of the key text; O(table) per page unless keyed by one integer column: use snapshot_page()), at most max_rows, with their snapshot envelopes; caller''s privileges apply';
