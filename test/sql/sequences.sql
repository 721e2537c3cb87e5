-- Per-object sequences: gap-free, +1 per committed change, kept
-- across delete/re-insert, untag/retag and drop/re-create.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.items (id int PRIMARY KEY, label text, score int, note text);
SELECT para_sync.sync_table('public.items', exclude_columns => '{note}');

CREATE FUNCTION pg_temp.changes() RETURNS TABLE (key text, seq bigint, op text, label text)
LANGUAGE sql AS $$
	SELECT o.key, o.seq, e->>'op', e->'value'->>'label'
	  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
	 ORDER BY o.key, o.seq
$$;

-- first change after tagging is 1; every committed change adds one
INSERT INTO public.items VALUES (1, 'a', 0);
UPDATE public.items SET label = 'b' WHERE id = 1;
UPDATE public.items SET score = score + 1;
SELECT * FROM pg_temp.changes();

-- an UPDATE that changes no synced column publishes and bumps nothing
UPDATE public.items SET label = label;
UPDATE public.items SET note = 'only an excluded column';
SELECT count(*) AS envelopes FROM para_sync.outbox;

-- a rolled-back change consumes nothing
BEGIN;
UPDATE public.items SET label = 'rolled back' WHERE id = 1;
ROLLBACK;
-- nor does a rolled-back savepoint
BEGIN;
SAVEPOINT s;
UPDATE public.items SET label = 'savepoint' WHERE id = 1;
ROLLBACK TO SAVEPOINT s;
UPDATE public.items SET label = 'c' WHERE id = 1;
COMMIT;
SELECT * FROM pg_temp.changes() WHERE seq > 3;

-- several changes of one object in one transaction: each its own number
BEGIN;
UPDATE public.items SET label = 'd' WHERE id = 1;
UPDATE public.items SET label = 'e' WHERE id = 1;
UPDATE public.items SET label = 'f' WHERE id = 1;
COMMIT;
SELECT * FROM pg_temp.changes() WHERE seq > 4;

-- delete keeps the counter: re-inserting continues from it
DELETE FROM public.items WHERE id = 1;
INSERT INTO public.items VALUES (1, 'g', 0);
SELECT * FROM pg_temp.changes() WHERE seq > 7;

-- a primary-key change is a delete of the old key and an upsert of the new
UPDATE public.items SET id = 2 WHERE id = 1;
SELECT * FROM pg_temp.changes() WHERE key = 'items:2' OR seq > 9;

-- a key shift in one transaction: items:3 is deleted, then upserted again
INSERT INTO public.items VALUES (3, 'three', 0);
BEGIN;
UPDATE public.items SET id = 4 WHERE id = 3;
UPDATE public.items SET id = 3 WHERE id = 2;
COMMIT;
SELECT key, seq, op, label FROM pg_temp.changes() WHERE key IN ('items:2', 'items:3', 'items:4')
 ORDER BY key, seq;
SELECT para_sync.snapshot_json(k) - 'schema_version' AS snapshot
  FROM unnest(ARRAY['items:2', 'items:3', 'items:4']) AS k;

-- after the outbox was consumed, counters carry the sequence on
SELECT para_sync.ack(array_agg(key), array_agg(seq)) FROM para_sync.outbox;
SELECT count(*) AS left_in_outbox FROM para_sync.outbox;
UPDATE public.items SET label = 'after ack' WHERE id = 4;
SELECT * FROM pg_temp.changes();

-- untag and re-tag keeps the counters
SELECT para_sync.unsync_table('public.items');
UPDATE public.items SET label = 'untracked' WHERE id = 4;
SELECT para_sync.sync_table('public.items');
UPDATE public.items SET label = 'retagged' WHERE id = 4;
SELECT * FROM pg_temp.changes();

-- drop and re-create under the same sync name keeps them too
DROP TABLE public.items;
CREATE TABLE public.items (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.items');
INSERT INTO public.items VALUES (4, 'recreated');
SELECT * FROM pg_temp.changes() WHERE key = 'items:4';

-- a multi-row statement numbers each object on its own
INSERT INTO public.items SELECT g, 'bulk' FROM generate_series(10, 14) g;
UPDATE public.items SET label = 'bulk2' WHERE id >= 10;
SELECT key, array_agg(seq ORDER BY seq) FROM para_sync.outbox
 WHERE key LIKE 'items:1_' GROUP BY key ORDER BY key;

DROP TABLE public.items;
