/* para_sync--0.1--0.2.sql — upgrade from 0.1 to 0.2.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql and then this script, so
 * a new install and an upgraded one always end with the same objects.  Each
 * section below is one concern; every object reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.2'" to load this file. \quit

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
