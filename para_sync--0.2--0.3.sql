/* para_sync--0.2--0.3.sql — upgrade from 0.2 to 0.3.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql, para_sync--0.1--0.2.sql
 * and then this script, so a new install and an upgraded one always end with
 * the same objects.  Each section below is one concern; every object
 * reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.3'" to load this file. \quit

-- == Table events (column DDL): a key may be a sync name ==
-- DDL that changes every row's snapshot at the same sequence appends one
-- 'reload' envelope whose key is the table's sync name, numbered by that
-- key's own counter (src/table_event.c, docs/protocol.md "Table events").
COMMENT ON COLUMN para_sync.outbox.key IS
	'an object''s key (<sync name>:<key part>...), or a sync name alone for a table event (op reload)';
COMMENT ON COLUMN para_sync.counters.key IS
	'an object''s key, or a sync name alone: the last sequence of its table events';
