/* para_sync--0.1.sql — schema, registry, outbox and SQL API of para_sync. */

\echo Use "CREATE EXTENSION para_sync" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Internal state.  Nobody but the extension owner may read or write it: the
-- capture trigger and snapshot() switch to the owner for the few statements
-- that touch it, so table writers need (and get) no privileges here.
-- ---------------------------------------------------------------------------

-- Registry of synced tables.  Keyed by the table (a regclass, so that
-- pg_dump writes it by name and a restore maps it to the new oid); the sync
-- name is what keys and subjects carry, so it survives renames.
CREATE TABLE para_sync.tables (
	relid			pg_catalog.regclass PRIMARY KEY,
	sync_name		pg_catalog.text COLLATE "C" NOT NULL UNIQUE,
	schema_version	pg_catalog.text NOT NULL,
	exclude_columns	pg_catalog.text[] NOT NULL DEFAULT '{}',
	tagged_at		pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The durable outbox.  One row per captured change, written in the writer's
-- own transaction.  (key, seq) is both the consumption order (per key) and
-- the index the capture trigger reads the latest sequence from.  Rows are
-- deleted once NATS confirmed them, so no position cursor exists that a
-- late-committing transaction could fall behind.
CREATE TABLE para_sync.outbox (
	key			pg_catalog.text COLLATE "C" NOT NULL,
	seq			pg_catalog.int8 NOT NULL,
	txid		pg_catalog.int8 NOT NULL,
	queued_at	pg_catalog.timestamptz NOT NULL,
	envelope	pg_catalog.bytea NOT NULL,
	PRIMARY KEY (key, seq)
) WITH (autovacuum_vacuum_scale_factor = 0.02,
		autovacuum_vacuum_insert_scale_factor = 0.02,
		autovacuum_vacuum_cost_delay = 0);

-- Last sequence of every key whose outbox rows have all been consumed.
-- Written only by the consumer (the publisher, para_sync.ack()), never on
-- the write path.  Half-full pages keep its updates HOT.
CREATE TABLE para_sync.counters (
	key		pg_catalog.text COLLATE "C" PRIMARY KEY,
	seq		pg_catalog.int8 NOT NULL
) WITH (fillfactor = 50);

REVOKE ALL ON para_sync.tables, para_sync.outbox, para_sync.counters FROM PUBLIC;

-- pg_dump keeps their contents: after a restore the registry, every key's
-- sequence and the envelopes not yet published are all still there.
SELECT pg_catalog.pg_extension_config_dump('para_sync.tables', '');
SELECT pg_catalog.pg_extension_config_dump('para_sync.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('para_sync.counters', '');

-- Everyone may call the public API (snapshot(), sync_table() on tables they
-- own, ...); the tables above stay private.
GRANT USAGE ON SCHEMA para_sync TO PUBLIC;

-- ---------------------------------------------------------------------------
-- C functions.
-- ---------------------------------------------------------------------------

CREATE FUNCTION para_sync.capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'para_sync_capture'
LANGUAGE C;

CREATE FUNCTION para_sync.refuse_truncate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'para_sync_refuse_truncate'
LANGUAGE C;

CREATE FUNCTION para_sync.snapshot(key pg_catalog.text)
RETURNS pg_catalog.bytea
AS 'MODULE_PATHNAME', 'para_sync_snapshot'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;

CREATE FUNCTION para_sync.envelope_to_jsonb(envelope pg_catalog.bytea)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'para_sync_envelope_to_jsonb'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION para_sync.snapshot_json(key pg_catalog.text)
RETURNS pg_catalog.jsonb
LANGUAGE sql STABLE STRICT PARALLEL RESTRICTED
RETURN para_sync.envelope_to_jsonb(para_sync.snapshot(key));


-- ---------------------------------------------------------------------------
-- Tagging.  The functions run with the caller's rights: the caller must own
-- the table (checked first, in C, by check_syncable and again by
-- registry_write) and creates the trigger as its owner.  Only the registry
-- row itself is written by registry_write as the extension owner, so table
-- owners need no privilege on para_sync's tables.
-- ---------------------------------------------------------------------------

-- Checks that the caller owns tbl and that tbl can be synced with these
-- excluded columns; returns its primary-key columns in index order.
CREATE FUNCTION para_sync.check_syncable(tbl pg_catalog.regclass,
										 exclude_columns pg_catalog.text[])
RETURNS pg_catalog.text[]
AS 'MODULE_PATHNAME', 'para_sync_check_syncable'
LANGUAGE C STABLE STRICT;

-- Writes the registry row of tbl ('insert', 'update' or 'delete') after the
-- same ownership check; returns the row's sync name.
CREATE FUNCTION para_sync.registry_write(action pg_catalog.text,
										 tbl pg_catalog.regclass,
										 sync_name pg_catalog.text,
										 schema_version pg_catalog.text,
										 exclude_columns pg_catalog.text[])
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'para_sync_registry_write'
LANGUAGE C VOLATILE;

CREATE FUNCTION para_sync.drop_triggers(tbl pg_catalog.regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	trigger_name pg_catalog.name;
BEGIN
	FOR trigger_name IN
		SELECT t.tgname FROM pg_catalog.pg_trigger t
		 WHERE t.tgrelid OPERATOR(pg_catalog.=) tbl
		   AND t.tgname OPERATOR(pg_catalog.=) ANY (ARRAY['para_sync_capture', 'para_sync_no_truncate']::pg_catalog.name[])
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', trigger_name, tbl);
	END LOOP;
END
$$;

-- (Re-)creates the capture and truncate-guard triggers.  Re-creating them
-- is also what tells every backend to reload the table's registration.
CREATE FUNCTION para_sync.install_triggers(tbl pg_catalog.regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM para_sync.drop_triggers(tbl);
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER para_sync_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
		'FOR EACH ROW EXECUTE FUNCTION para_sync.capture()', tbl);
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON %s '
		'FOR EACH STATEMENT EXECUTE FUNCTION para_sync.refuse_truncate()', tbl);
END
$$;

CREATE FUNCTION para_sync.sync_table(tbl pg_catalog.regclass,
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
	RETURN chosen;
END
$$;

CREATE FUNCTION para_sync.set_schema_version(tbl pg_catalog.regclass,
											 v pg_catalog.text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM para_sync.registry_write('update', tbl, NULL, v, NULL);
	PERFORM para_sync.install_triggers(tbl);
END
$$;

CREATE FUNCTION para_sync.unsync_table(tbl pg_catalog.regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM para_sync.registry_write('delete', tbl, NULL, NULL, NULL);
	PERFORM para_sync.drop_triggers(tbl);
END
$$;

-- A dropped table leaves the registry; its counters stay, so re-creating and
-- re-tagging it under the same sync name continues every key's sequence.
CREATE FUNCTION para_sync.forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM para_sync.tables t
	 USING pg_catalog.pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
	   AND d.objid = t.relid
	   AND d.objsubid = 0;
END
$$;

CREATE EVENT TRIGGER para_sync_forget_dropped_tables ON sql_drop
	EXECUTE FUNCTION para_sync.forget_dropped_tables();

CREATE VIEW para_sync.synced_tables AS
SELECT t.relid AS table_name,
	   t.sync_name,
	   t.schema_version,
	   t.exclude_columns,
	   t.tagged_at
  FROM para_sync.tables t;

GRANT SELECT ON para_sync.synced_tables TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Consumption (used by the background worker; not for PUBLIC).
--
-- consume() returns up to batch_size committed envelopes in per-key sequence
-- order, starting at key after_key and wrapping around, so that a large
-- backlog is drained fairly across keys.  Nothing is removed: ack() removes
-- what NATS confirmed and remembers each key's last sequence in counters.
-- A transaction that wrote an envelope earlier but commits later is simply
-- still in the outbox at the next call: there is no position to fall behind.
-- ---------------------------------------------------------------------------

CREATE FUNCTION para_sync.consume(batch_size pg_catalog.int4,
								  after_key pg_catalog.text DEFAULT '')
RETURNS TABLE (key pg_catalog.text, seq pg_catalog.int8, envelope pg_catalog.bytea)
AS 'MODULE_PATHNAME', 'para_sync_consume'
LANGUAGE C STABLE STRICT ROWS 1000;

-- Marks envelopes as delivered: for each (keys[i], seqs[i]) removes that
-- key's outbox rows up to seqs[i] and records the highest removed sequence
-- as the key's last sequence.  Returns how many rows were removed (NULL
-- arrays acknowledge nothing).
CREATE FUNCTION para_sync.ack(keys pg_catalog.text[], seqs pg_catalog.int8[])
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'para_sync_ack'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION para_sync.consume(pg_catalog.int4, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION para_sync.ack(pg_catalog.text[], pg_catalog.int8[]) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Publisher status (the background worker; see docs/publisher.md).  Read
-- from shared memory: cheap to query.  Readable by pg_monitor members and
-- the extension owner; last_error may name NATS servers.
-- ---------------------------------------------------------------------------

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
	OUT started_at pg_catalog.timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'para_sync_publisher_status'
LANGUAGE C VOLATILE STRICT;

CREATE VIEW para_sync.status AS
SELECT s.* FROM para_sync.publisher_status() s;

REVOKE ALL ON FUNCTION para_sync.publisher_status() FROM PUBLIC;
REVOKE ALL ON para_sync.status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION para_sync.publisher_status() TO pg_monitor;
GRANT SELECT ON para_sync.status TO pg_monitor;
