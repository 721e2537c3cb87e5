-- Table events: column DDL of a synced table changes what snapshot() returns
-- for every row without a row change, so the DDL's transaction appends one
-- 'reload' envelope for the table (key: the sync name, its own sequence),
-- and no row envelope.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.ev (id int PRIMARY KEY, n int, s text, secret text);
SELECT para_sync.sync_table('public.ev', schema_version => '3', exclude_columns => '{secret}');
INSERT INTO public.ev SELECT i, i * 10, 'r' || i, 'x' FROM generate_series(1, 3) i;
UPDATE public.ev SET n = 11 WHERE id = 1;

-- what the outbox holds, without the txid (it varies)
CREATE FUNCTION pg_temp.outbox() RETURNS TABLE (key text, seq bigint, layout "char", envelope jsonb)
LANGUAGE sql AS $$
	SELECT o.key, o.seq, o.subject_layout, para_sync.envelope_to_jsonb(o.envelope) - 'txid'
	  FROM para_sync.outbox o ORDER BY o.key COLLATE "C", o.seq $$;
-- the txid of each table event is the DDL's transaction
CREATE TABLE pg_temp.ddl_txids (key text, seq bigint, txid bigint);

-- ADD COLUMN: every snapshot has the new field at the same sequence
BEGIN;
ALTER TABLE public.ev ADD COLUMN c int DEFAULT 7;
INSERT INTO pg_temp.ddl_txids SELECT 'ev', 1, pg_catalog.txid_current();
COMMIT;
SELECT * FROM pg_temp.outbox() WHERE key NOT LIKE 'ev:%';
SELECT count(*) AS row_envelopes FROM para_sync.outbox WHERE key LIKE 'ev:%';
SELECT para_sync.snapshot_json('ev:2') - 'txid' AS snapshot;
SELECT (para_sync.envelope_to_jsonb(o.envelope)->>'txid')::bigint = d.txid AS txid_is_the_ddls
  FROM para_sync.outbox o JOIN pg_temp.ddl_txids d USING (key, seq);

-- ALTER COLUMN ... TYPE ... USING rewrites values; DROP COLUMN; RENAME COLUMN;
-- ADD COLUMN with a volatile default: one event each, the next number
ALTER TABLE public.ev ALTER COLUMN n TYPE text USING 'n=' || n;
ALTER TABLE public.ev DROP COLUMN s;
ALTER TABLE public.ev RENAME COLUMN c TO c2;
ALTER TABLE public.ev ADD COLUMN r float8 DEFAULT random();
SELECT key, seq, envelope FROM pg_temp.outbox() WHERE key NOT LIKE 'ev:%';
SELECT count(*) AS row_envelopes FROM para_sync.outbox WHERE key LIKE 'ev:%';
SELECT (para_sync.snapshot_json('ev:1')->'value') - 'r' AS value,
       para_sync.snapshot_json('ev:1')->>'schema_version' AS schema_version,
       para_sync.snapshot_json('ev:1')->>'sequence' AS sequence;

-- one statement, one event, however many columns it changes
ALTER TABLE public.ev ADD COLUMN a int, ADD COLUMN b int, DROP COLUMN r;
SELECT key, seq, envelope->>'schema_version' AS schema_version FROM pg_temp.outbox()
 WHERE key NOT LIKE 'ev:%' ORDER BY seq DESC LIMIT 1;

-- rolled back: no event, no number used
BEGIN;
ALTER TABLE public.ev ADD COLUMN gone int;
ROLLBACK;
SELECT max(seq) AS last_event FROM para_sync.outbox WHERE key = 'ev';

-- excluded columns are not in any value: renaming or dropping one is no event;
-- set_schema_version() changes the label only: no event either
ALTER TABLE public.ev RENAME COLUMN secret TO pw;
ALTER TABLE public.ev DROP COLUMN pw;
SELECT para_sync.set_schema_version('public.ev', '4');
SELECT max(seq) AS last_event FROM para_sync.outbox WHERE key = 'ev';

-- the sync name's counter continues after the publisher removed its events
SELECT para_sync.ack(array_agg(key), array_agg(seq)) > 0 AS acked FROM para_sync.outbox;
SELECT key, seq FROM para_sync.counters WHERE key = 'ev';
ALTER TABLE public.ev ADD COLUMN d int;
SELECT key, seq, envelope FROM pg_temp.outbox();

-- a table in the 'table' layout: its event goes to <prefix>.<name>.<name>
CREATE TABLE public.ev_orders (id int PRIMARY KEY, total int);
BEGIN;
SELECT para_sync.sync_table('public.ev_orders', name => 'ev_ord');
SELECT para_sync.set_subject_layout('public.ev_orders', 'table');
COMMIT;
ALTER TABLE public.ev_orders ADD COLUMN note text;
SELECT key, seq, layout, envelope->>'op' AS op FROM pg_temp.outbox() WHERE key = 'ev_ord';

-- an inheritance child synced on its own gets its own event
CREATE TABLE public.ev_parent (id int PRIMARY KEY, v int);
CREATE TABLE public.ev_child (id int PRIMARY KEY) INHERITS (public.ev_parent);
SELECT para_sync.sync_table('public.ev_parent');
SELECT para_sync.sync_table('public.ev_child');
ALTER TABLE public.ev_parent ADD COLUMN w int;
SELECT key, seq, envelope->>'schema_version' AS schema_version FROM pg_temp.outbox()
 WHERE key IN ('ev_parent', 'ev_child');

-- a table event's key is no object's key: snapshot() refuses it
SELECT para_sync.snapshot_json('ev');

SELECT para_sync.unsync_table('public.ev');
SELECT para_sync.unsync_table('public.ev_orders');
SELECT para_sync.unsync_table('public.ev_child');
SELECT para_sync.unsync_table('public.ev_parent');
DROP TABLE public.ev, public.ev_orders, public.ev_parent CASCADE;
TRUNCATE para_sync.outbox, para_sync.counters;
