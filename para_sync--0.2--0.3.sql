/* para_sync--0.2--0.3.sql — upgrade from 0.2 to 0.3.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql, para_sync--0.1--0.2.sql
 * and then this script, so a new install and an upgraded one always end with
 * the same objects.  Each section below is one concern; every object
 * reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.3'" to load this file. \quit

-- == per-table statistics: para_sync.stat_tables, para_sync.stat_reset() ==
-- The publisher counts, per sync name, what it took out of the outbox and
-- published, in shared memory (src/stat_tables.c); the view adds the
-- registry's table and shows every synced table, with zeros until the
-- publisher counted something of it.  Readable by pg_monitor, like
-- para_sync.status; the reset is for superusers (or whom they grant it).

CREATE FUNCTION para_sync.publisher_table_stats(
	OUT sync_name pg_catalog.text,
	OUT captured pg_catalog.int8,
	OUT published pg_catalog.int8,
	OUT refetches pg_catalog.int8,
	OUT skipped pg_catalog.int8,
	OUT bytes_published pg_catalog.int8,
	OUT last_change_at pg_catalog.timestamptz,
	OUT last_publish_at pg_catalog.timestamptz,
	OUT last_publish_lag pg_catalog.interval,
	OUT total_publish_lag pg_catalog.interval,
	OUT stats_since pg_catalog.timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'para_sync_publisher_table_stats'
LANGUAGE C VOLATILE STRICT;

CREATE VIEW para_sync.stat_tables AS
SELECT t.relid AS table_name,
	   COALESCE(t.sync_name, s.sync_name) AS sync_name,
	   COALESCE(s.captured, 0) AS captured,
	   COALESCE(s.published, 0) AS published,
	   COALESCE(s.refetches, 0) AS refetches,
	   COALESCE(s.skipped, 0) AS skipped,
	   COALESCE(s.bytes_published, 0) AS bytes_published,
	   s.last_change_at,
	   s.last_publish_at,
	   s.last_publish_lag,
	   COALESCE(s.total_publish_lag, '0'::pg_catalog.interval) AS total_publish_lag,
	   s.stats_since
  FROM para_sync.tables t
  FULL JOIN para_sync.publisher_table_stats() s
	ON (s.sync_name COLLATE pg_catalog."C") OPERATOR(pg_catalog.=) t.sync_name;

REVOKE ALL ON FUNCTION para_sync.publisher_table_stats() FROM PUBLIC;
REVOKE ALL ON para_sync.stat_tables FROM PUBLIC;
GRANT EXECUTE ON FUNCTION para_sync.publisher_table_stats() TO pg_monitor;
GRANT SELECT ON para_sync.stat_tables TO pg_monitor;

CREATE FUNCTION para_sync.stat_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'para_sync_stat_reset'
LANGUAGE C VOLATILE STRICT;

REVOKE ALL ON FUNCTION para_sync.stat_reset() FROM PUBLIC;

COMMENT ON FUNCTION para_sync.publisher_table_stats() IS
	'Per-sync-name counters of the para_sync publisher in this database, from shared memory (see docs/publisher.md).';
COMMENT ON VIEW para_sync.stat_tables IS
	'One row per synced table (and per sync name the publisher counted without a table now): what the para_sync publisher took out of the outbox and published, and how late (see docs/publisher.md).';
COMMENT ON COLUMN para_sync.stat_tables.table_name IS
	'the table synced under sync_name now; null when none is (unsynced or dropped), or on the row counting sync names beyond para_sync.stat_max_tables';
COMMENT ON COLUMN para_sync.stat_tables.sync_name IS
	'the sync name the envelopes'' keys start with; null on the row counting sync names beyond para_sync.stat_max_tables';
COMMENT ON COLUMN para_sync.stat_tables.captured IS
	'committed changes the publisher took out of the outbox (published + skipped), counted once each when their batch is done; not the writers'' changes still waiting there';
COMMENT ON COLUMN para_sync.stat_tables.published IS
	'envelopes NATS confirmed, op refetch ones included';
COMMENT ON COLUMN para_sync.stat_tables.refetches IS
	'envelopes published as op refetch, without a value, because they were larger than the NATS server''s max_payload';
COMMENT ON COLUMN para_sync.stat_tables.skipped IS
	'envelopes not sent at all: larger than max_payload even as op refetch';
COMMENT ON COLUMN para_sync.stat_tables.bytes_published IS
	'bytes of the published envelopes as sent (an op refetch envelope counts its own size), without subjects and headers';
COMMENT ON COLUMN para_sync.stat_tables.last_change_at IS
	'start of the latest writing transaction among the counted changes (the outbox row''s queued_at)';
COMMENT ON COLUMN para_sync.stat_tables.last_publish_at IS
	'when the publisher finished the last batch that published an envelope of the table';
COMMENT ON COLUMN para_sync.stat_tables.last_publish_lag IS
	'in that batch, the largest time from an envelope''s queued_at (start of its writing transaction) to the end of the batch';
COMMENT ON COLUMN para_sync.stat_tables.total_publish_lag IS
	'that time summed over every published envelope: divided by published, the mean lag';
COMMENT ON COLUMN para_sync.stat_tables.stats_since IS
	'when counting began: the first batch counted after the server started or after para_sync.stat_reset(); null before';
COMMENT ON FUNCTION para_sync.stat_reset() IS
	'Sets para_sync.stat_tables of the current database back to zero; superusers only unless granted, like pg_stat_reset().';
