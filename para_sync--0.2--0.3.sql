/* para_sync--0.2--0.3.sql — upgrade from 0.2 to 0.3.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql, para_sync--0.1--0.2.sql
 * and then this script, so a new install and an upgraded one always end with
 * the same objects.  Each section below is one concern; every object
 * reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.3'" to load this file. \quit

-- == synced columns that print catalog names ==
-- 0.3 refuses synced columns whose values print the names of catalog
-- objects (regclass, regtype, regproc, regrole, ..., aclitem, also inside
-- arrays, domains, composites and ranges: src/type_trust.c).  A table
-- tagged with one under 0.2 stops the update with an error naming it.  The
-- helper exists only for this step.
CREATE FUNCTION para_sync.refuse_catalog_name_columns()
RETURNS void
LANGUAGE c
VOLATILE STRICT
AS 'MODULE_PATHNAME', 'para_sync_refuse_catalog_name_columns';
REVOKE ALL ON FUNCTION para_sync.refuse_catalog_name_columns() FROM PUBLIC;
COMMENT ON FUNCTION para_sync.refuse_catalog_name_columns() IS
	'update step: refuses the update while a synced column prints catalog names';
SELECT para_sync.refuse_catalog_name_columns();
DROP FUNCTION para_sync.refuse_catalog_name_columns();

-- == sync-name owners are dependents of their roles ==
-- DROP ROLE is refused while the role owns sync names, REASSIGN OWNED passes
-- them on and DROP OWNED releases them (src/sync_names.c, in the current
-- database).  For other databases every owner role holds SELECT on
-- para_sync.sync_names, granted and revoked by the trigger below as names
-- come and go (also when a dump restores the table): PostgreSQL tracks that
-- privilege cluster-wide and refuses DROP ROLE in any database while it
-- exists, so no name is ever bound to a dropped role whose OID a later role
-- could reuse.

-- Names whose owner role was already dropped (under 0.2) pass to the
-- extension owner: only a superuser may release them.
UPDATE para_sync.sync_names n
   SET owner = (SELECT e.extowner FROM pg_catalog.pg_extension e
				 WHERE e.extname OPERATOR(pg_catalog.=) 'para_sync')::pg_catalog.regrole
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
					WHERE r.oid OPERATOR(pg_catalog.=) n.owner::pg_catalog.oid);

CREATE FUNCTION para_sync.sync_name_owner_privilege()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	table_owner pg_catalog.oid := (SELECT c.relowner FROM pg_catalog.pg_class c
									WHERE c.oid OPERATOR(pg_catalog.=) TG_RELID);
BEGIN
	IF TG_OP IN ('INSERT', 'UPDATE')
	   AND NEW.owner::pg_catalog.oid OPERATOR(pg_catalog.<>) table_owner THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON TABLE para_sync.sync_names TO %s', NEW.owner);
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE')
	   AND OLD.owner::pg_catalog.oid OPERATOR(pg_catalog.<>) table_owner
	   AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
				   WHERE r.oid OPERATOR(pg_catalog.=) OLD.owner::pg_catalog.oid)
	   AND NOT EXISTS (SELECT 1 FROM para_sync.sync_names n
					   WHERE n.owner OPERATOR(pg_catalog.=) OLD.owner) THEN
		EXECUTE pg_catalog.format('REVOKE SELECT ON TABLE para_sync.sync_names FROM %s', OLD.owner);
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION para_sync.sync_name_owner_privilege() FROM PUBLIC;
COMMENT ON FUNCTION para_sync.sync_name_owner_privilege() IS
	'trigger of para_sync.sync_names: every owner role of a sync name holds SELECT on the table, so DROP ROLE in any database is refused while it owns names';

CREATE TRIGGER sync_names_owner_privilege
	AFTER INSERT OR UPDATE OF owner OR DELETE ON para_sync.sync_names
	FOR EACH ROW EXECUTE FUNCTION para_sync.sync_name_owner_privilege();
ALTER TABLE para_sync.sync_names ENABLE ALWAYS TRIGGER sync_names_owner_privilege;
COMMENT ON TRIGGER sync_names_owner_privilege ON para_sync.sync_names IS
	'grants SELECT on para_sync.sync_names to each owner role of a sync name, and revokes it when the role owns none';

-- the owners recorded so far
UPDATE para_sync.sync_names SET owner = owner;

-- DROP OWNED revokes that privilege: an event trigger (which loads the
-- library in any session, unlike the utility hook) releases the role's
-- names with it.
CREATE FUNCTION para_sync.sync_names_drop_owned()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'para_sync_sync_names_drop_owned';
REVOKE ALL ON FUNCTION para_sync.sync_names_drop_owned() FROM PUBLIC;
COMMENT ON FUNCTION para_sync.sync_names_drop_owned() IS
	'event trigger: DROP OWNED BY a role releases its sync names in this database (a name still used by a synced table passes to the table''s owner)';
CREATE EVENT TRIGGER para_sync_sync_names_drop_owned ON ddl_command_end
	WHEN TAG IN ('DROP OWNED')
	EXECUTE FUNCTION para_sync.sync_names_drop_owned();
ALTER EVENT TRIGGER para_sync_sync_names_drop_owned ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER para_sync_sync_names_drop_owned IS
	'releases the sync names of the roles of DROP OWNED (src/sync_names.c)';

-- == Table events (column DDL): a key may be a sync name ==
-- DDL that changes every row's snapshot at the same sequence appends one
-- 'reload' envelope whose key is the table's sync name, numbered by that
-- key's own counter (src/table_event.c, docs/protocol.md "Table events").
COMMENT ON COLUMN para_sync.outbox.key IS
	'an object''s key (<sync name>:<key part>...), or a sync name alone for a table event (op reload)';
COMMENT ON COLUMN para_sync.counters.key IS
	'an object''s key, or a sync name alone: the last sequence of its table events';

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

-- ---------------------------------------------------------------------------
-- Comments on the objects of 0.1 (and on columns not yet described), so that
-- \df+, \dt+ and \dv+ document every object of the extension.  0.1 created
-- them without COMMENT ON; every later object carries its own.  A fresh
-- install runs this script too, so both paths end with the same comments
-- (test/sql/comments.sql lists any object left without one).
-- ---------------------------------------------------------------------------

COMMENT ON TABLE para_sync.tables IS
'Registry of synced tables: one row per table tagged with sync_table(); internal, read it through para_sync.synced_tables';
COMMENT ON COLUMN para_sync.tables.relid IS
'the synced table (a regclass, so that a restore maps it to the restored table)';
COMMENT ON COLUMN para_sync.tables.sync_name IS
'the name keys and subjects carry (the table name unless sync_table() was given another)';
COMMENT ON COLUMN para_sync.tables.schema_version IS
'the schema_version of the envelopes captured from now on';
COMMENT ON COLUMN para_sync.tables.exclude_columns IS
'columns never captured nor returned by snapshot(); follow renames of the column';
COMMENT ON COLUMN para_sync.tables.tagged_at IS
'when the table was tagged';

COMMENT ON TABLE para_sync.outbox IS
'The durable outbox: one envelope per captured change, written in the writer''s transaction, removed once NATS confirmed it; internal';
COMMENT ON COLUMN para_sync.outbox.seq IS
'the object''s sequence of this change (gap-free per key)';
COMMENT ON COLUMN para_sync.outbox.txid IS
'the 64-bit id of the transaction that made the change';
COMMENT ON COLUMN para_sync.outbox.queued_at IS
'when the change was captured';
COMMENT ON COLUMN para_sync.outbox.envelope IS
'the MessagePack envelope to publish (docs/protocol.md, "The envelope")';

COMMENT ON TABLE para_sync.counters IS
'The last sequence of every key whose outbox rows were all published and removed; internal, written only by ack()';
COMMENT ON COLUMN para_sync.counters.seq IS
'the key''s last sequence';

COMMENT ON VIEW para_sync.synced_tables IS
'Every synced table with its sync name, schema_version, excluded columns and subject layout; readable by everyone';
COMMENT ON COLUMN para_sync.synced_tables.table_name IS
'the synced table';
COMMENT ON COLUMN para_sync.synced_tables.sync_name IS
'the name its keys and subjects carry';
COMMENT ON COLUMN para_sync.synced_tables.schema_version IS
'the schema_version of the envelopes captured from now on';
COMMENT ON COLUMN para_sync.synced_tables.exclude_columns IS
'columns never captured nor returned by snapshot() (current names)';
COMMENT ON COLUMN para_sync.synced_tables.tagged_at IS
'when the table was tagged';
COMMENT ON COLUMN para_sync.synced_tables.subject_layout IS
'''key'' (subject <prefix>.<key>) or ''table'' (<prefix>.<sync name>.<key>)';

COMMENT ON COLUMN para_sync.sync_names.sync_name IS
'a sync name in use or used before';
COMMENT ON COLUMN para_sync.sync_names.owner IS
'the role the name is bound to: only it, its members or a superuser may tag a table under the name';
COMMENT ON COLUMN para_sync.sync_names.claimed_at IS
'when the name was first claimed';

COMMENT ON COLUMN para_sync.status.pid IS
'the publisher''s process id (NULL when none runs)';
COMMENT ON COLUMN para_sync.status.state IS
'what the publisher is doing (idle, publishing, backoff, ...)';
COMMENT ON COLUMN para_sync.status.nats_state IS
'disconnected, connecting, connected, reconnecting or failed';
COMMENT ON COLUMN para_sync.status.nats_server IS
'the NATS server connected to (credentials removed)';
COMMENT ON COLUMN para_sync.status.mode IS
'core or jetstream';
COMMENT ON COLUMN para_sync.status.backlog IS
'committed envelopes not yet confirmed by NATS (NULL when unknown)';
COMMENT ON COLUMN para_sync.status.oldest_unpublished IS
'enqueue time of the oldest unpublished envelope';
COMMENT ON COLUMN para_sync.status.oldest_unpublished_age IS
'age of the oldest unpublished envelope';
COMMENT ON COLUMN para_sync.status.backlog_measured_at IS
'when backlog was measured';
COMMENT ON COLUMN para_sync.status.published IS
'envelopes confirmed by NATS since the publisher started';
COMMENT ON COLUMN para_sync.status.batches IS
'batches confirmed by NATS since the publisher started';
COMMENT ON COLUMN para_sync.status.retries IS
'failed connection attempts and batches, each retried after a backoff';
COMMENT ON COLUMN para_sync.status.refetches IS
'envelopes sent as op refetch because they exceeded max_payload';
COMMENT ON COLUMN para_sync.status.skipped IS
'envelopes not published because even their op refetch form exceeded max_payload';
COMMENT ON COLUMN para_sync.status.last_error IS
'the latest problem (kept after recovery)';
COMMENT ON COLUMN para_sync.status.last_error_at IS
'when last_error happened';
COMMENT ON COLUMN para_sync.status.last_publish_at IS
'when the last batch was confirmed';
COMMENT ON COLUMN para_sync.status.started_at IS
'when the publisher started';
COMMENT ON COLUMN para_sync.status.state_detail IS
'why the publisher is in its state';

COMMENT ON FUNCTION para_sync.capture() IS
'Capture trigger of a synced table (para_sync_capture, AFTER each row, ENABLE ALWAYS): appends the change''s envelope to the outbox under the object''s next sequence';
COMMENT ON FUNCTION para_sync.snapshot(pg_catalog.text) IS
'The object''s current envelope (op snapshot): value and sequence read together, with the caller''s privileges; nil value for a deleted, invisible or unknown row';
COMMENT ON FUNCTION para_sync.snapshot_json(pg_catalog.text) IS
'snapshot(key) as jsonb, for people and debugging';
COMMENT ON FUNCTION para_sync.envelope_to_jsonb(pg_catalog.bytea) IS
'Any envelope (any MessagePack value) as jsonb';
COMMENT ON FUNCTION para_sync.check_syncable(pg_catalog.regclass, pg_catalog.text[]) IS
'Internal (sync_table()): checks that the caller owns the table and that it can be synced with these excluded columns; returns its primary-key columns';
COMMENT ON FUNCTION para_sync.registry_write(pg_catalog.text, pg_catalog.regclass, pg_catalog.text, pg_catalog.text, pg_catalog.text[]) IS
'Internal (sync_table(), set_schema_version(), unsync_table()): writes the table''s registry row after the ownership check';
COMMENT ON FUNCTION para_sync.drop_triggers(pg_catalog.regclass) IS
'Internal: drops para_sync''s triggers of a table';
COMMENT ON FUNCTION para_sync.install_triggers(pg_catalog.regclass) IS
'Internal: (re-)creates para_sync''s triggers of a table, which makes every backend reload its registration';
COMMENT ON FUNCTION para_sync.sync_table(pg_catalog.regclass, pg_catalog.text, pg_catalog.text, pg_catalog.text[]) IS
'Tags a table you own: registers it under its sync name (default: the table name) and installs the capture trigger; returns the sync name';
COMMENT ON FUNCTION para_sync.set_schema_version(pg_catalog.regclass, pg_catalog.text) IS
'Sets the schema_version of the table''s later envelopes (table owner only)';
COMMENT ON FUNCTION para_sync.forget_dropped_tables() IS
'Event trigger function (sql_drop): removes dropped tables from the registry; their keys'' sequences stay';
COMMENT ON EVENT TRIGGER para_sync_forget_dropped_tables IS
'Removes dropped tables from para_sync''s registry';
COMMENT ON FUNCTION para_sync.consume(pg_catalog.int4, pg_catalog.text) IS
'The publisher''s read step: up to batch_size committed envelopes in per-key sequence order, from after_key on; removes nothing; not for PUBLIC';
COMMENT ON FUNCTION para_sync.ack(pg_catalog.text[], pg_catalog.int8[]) IS
'The publisher''s remove step: removes each key''s outbox rows up to the acknowledged sequence and records it in counters; returns the rows removed; not for PUBLIC';
