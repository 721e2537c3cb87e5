-- Multi-row statements: each changed object gets its own envelopes, in the
-- order its changes happened, whatever the statement does to other rows of
-- the table at the same time.  After every statement the invariant is
-- checked for every key ever written: its last envelope equals
-- para_sync.snapshot(key) (value and sequence) and its sequences are
-- 1, 2, ... without a gap.
SET client_min_messages = warning;
SET para_sync.sequence_cache_check = on;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.bulk (id int PRIMARY KEY, label text, score int, note text);
SELECT para_sync.sync_table('public.bulk', exclude_columns => '{note}');

-- every key whose last envelope differs from its snapshot, or whose
-- sequences are not 1..n; empty when the invariant holds
CREATE FUNCTION pg_temp.broken() RETURNS TABLE (key text, problem text)
LANGUAGE sql AS $$
	WITH last AS (
		SELECT DISTINCT ON (o.key) o.key, o.seq, e->'value' AS value
		  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
		 ORDER BY o.key, o.seq DESC),
	seqs AS (
		SELECT o.key, count(*) AS n, min(o.seq) AS lo, max(o.seq) AS hi
		  FROM para_sync.outbox o GROUP BY o.key)
	SELECT l.key, 'last envelope is not the snapshot'
	  FROM last l, para_sync.snapshot_json(l.key) s
	 WHERE (s->>'sequence')::bigint IS DISTINCT FROM l.seq
	    OR (s->'value') IS DISTINCT FROM l.value
	UNION ALL
	SELECT s.key, 'sequences ' || s.lo || '..' || s.hi || ' in ' || s.n || ' rows'
	  FROM seqs s WHERE s.lo <> 1 OR s.hi <> s.n
	ORDER BY 1
$$;

-- envelopes per op since the mark, to see what a statement published
CREATE TEMP TABLE mark (n bigint);
CREATE FUNCTION pg_temp.since_mark() RETURNS TABLE (op text, envelopes bigint)
LANGUAGE sql AS $$
	SELECT e->>'op', count(*)
	  FROM (SELECT envelope FROM para_sync.outbox ORDER BY txid, key, seq
	        OFFSET (SELECT n FROM pg_temp.mark)) o,
	       para_sync.envelope_to_jsonb(o.envelope) e
	 GROUP BY 1 ORDER BY 1
$$;
CREATE FUNCTION pg_temp.set_mark() RETURNS void
LANGUAGE sql AS $$
	DELETE FROM pg_temp.mark;
	INSERT INTO pg_temp.mark SELECT count(*) FROM para_sync.outbox;
$$;

-- a bulk INSERT: one upsert per row
SELECT pg_temp.set_mark();
INSERT INTO public.bulk SELECT g, 'l' || g, 0, 'n' FROM generate_series(1, 300) g;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();

-- a bulk UPDATE of synced columns: one upsert per row
SELECT pg_temp.set_mark();
UPDATE public.bulk SET score = score + 1;
SELECT * FROM pg_temp.since_mark();
-- ... of nothing synced: nothing
SELECT pg_temp.set_mark();
UPDATE public.bulk SET note = 'excluded only';
UPDATE public.bulk SET label = label;
SELECT * FROM pg_temp.since_mark();
-- ... of some rows changing something synced and others not
SELECT pg_temp.set_mark();
UPDATE public.bulk SET score = CASE WHEN id % 3 = 0 THEN score + 1 ELSE score END;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();

-- a bulk key change: a delete of each old key, an upsert of each new one
SELECT pg_temp.set_mark();
UPDATE public.bulk SET id = id + 1000 WHERE id <= 100;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();
-- ... and back, onto keys that had a history: their sequences continue
UPDATE public.bulk SET id = id - 1000 WHERE id > 1000;
SELECT * FROM pg_temp.broken();
SELECT key, array_agg(seq ORDER BY seq) AS seqs, array_agg(e->>'op' ORDER BY seq) AS ops
  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
 WHERE key IN ('bulk:7', 'bulk:1007') GROUP BY key ORDER BY key;

-- a key shift in one statement onto keys other rows of it leave (the only
-- plan is a scan of an index on -id, so rows are visited in descending key
-- order and the unique check passes): each key in the middle is deleted and
-- upserted again
CREATE INDEX bulk_desc ON public.bulk ((-id));
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT pg_temp.set_mark();
UPDATE public.bulk SET id = id + 1 WHERE -id BETWEEN -300 AND -201;
RESET enable_seqscan;
RESET enable_bitmapscan;
DROP INDEX public.bulk_desc;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();
SELECT key, array_agg(seq ORDER BY seq) AS seqs, array_agg(e->>'op' ORDER BY seq) AS ops
  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
 WHERE key IN ('bulk:201', 'bulk:250', 'bulk:301') GROUP BY key ORDER BY key;

-- INSERT ... ON CONFLICT DO UPDATE of existing and new keys at once
SELECT pg_temp.set_mark();
INSERT INTO public.bulk SELECT g, 'upsert', 0 FROM generate_series(251, 350) g
ON CONFLICT (id) DO UPDATE SET label = excluded.label;
SELECT * FROM pg_temp.since_mark();
-- ... where the update changes nothing synced: only the new keys publish
SELECT pg_temp.set_mark();
INSERT INTO public.bulk SELECT g, 'again', 0 FROM generate_series(341, 360) g
ON CONFLICT (id) DO UPDATE SET note = 'excluded only';
SELECT * FROM pg_temp.since_mark();
-- ... DO NOTHING: only the new keys
SELECT pg_temp.set_mark();
INSERT INTO public.bulk SELECT g, 'nothing', 0 FROM generate_series(356, 365) g
ON CONFLICT DO NOTHING;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();

-- writable CTEs: each key deleted and inserted again in one statement
SELECT pg_temp.set_mark();
WITH d AS (DELETE FROM public.bulk WHERE id <= 50 RETURNING id)
INSERT INTO public.bulk SELECT id, 'reborn', 1 FROM d;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();
SELECT key, array_agg(seq ORDER BY seq) AS seqs, array_agg(e->>'op' ORDER BY seq) AS ops
  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
 WHERE key = 'bulk:10' GROUP BY key;
-- ... an UPDATE and a DELETE of the same table, some rows in both
SELECT pg_temp.set_mark();
WITH u AS (UPDATE public.bulk SET label = 'cte' WHERE id BETWEEN 51 AND 80 RETURNING id)
DELETE FROM public.bulk WHERE id BETWEEN 71 AND 90;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();

-- a trigger of the user that gives each deleted key back to a new row
-- before the capture of the delete fires ('aa' sorts before para_sync)
CREATE FUNCTION pg_temp.resurrect() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.bulk VALUES (OLD.id, 'resurrected', OLD.score);
	RETURN NULL;
END $$;
CREATE TRIGGER aa_resurrect AFTER DELETE ON public.bulk
	FOR EACH ROW WHEN (OLD.label <> 'resurrected') EXECUTE FUNCTION pg_temp.resurrect();
SELECT pg_temp.set_mark();
DELETE FROM public.bulk WHERE id BETWEEN 91 AND 110;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();
SELECT count(*) AS resurrected FROM public.bulk WHERE label = 'resurrected';
DROP TRIGGER aa_resurrect ON public.bulk;

-- a trigger of the user that changes each updated row again before the
-- capture of the outer UPDATE fires: that capture publishes the row's latest
-- version, so the last envelope of each key is the trigger's content
CREATE FUNCTION pg_temp.again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE public.bulk SET label = 'twice', score = NEW.score + 1 WHERE id = NEW.id;
	RETURN NULL;
END $$;
CREATE TRIGGER aa_again AFTER UPDATE ON public.bulk
	FOR EACH ROW WHEN (NEW.label <> 'twice') EXECUTE FUNCTION pg_temp.again();
SELECT pg_temp.set_mark();
UPDATE public.bulk SET label = 'outer' WHERE id BETWEEN 111 AND 130;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();
SELECT count(*) AS changed_twice FROM public.bulk WHERE label = 'twice';
DROP TRIGGER aa_again ON public.bulk;

-- savepoints: a rolled-back bulk statement numbers nothing
BEGIN;
SAVEPOINT s;
UPDATE public.bulk SET score = score + 100;
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.set_mark();
UPDATE public.bulk SET score = score + 1 WHERE id <= 20;
COMMIT;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();

-- a bulk DELETE: one delete per row, and it does not look each deleted
-- key up in the table's primary key again: the table's index scans stay at
-- 0 (pg_stat_xact_* shows what is not yet flushed, so flush first)
SELECT pg_temp.set_mark();
SELECT pg_stat_force_next_flush();
BEGIN;
DELETE FROM public.bulk;
SELECT idx_scan AS bulk_index_scans FROM pg_stat_xact_user_tables
 WHERE relid = 'public.bulk'::regclass;
COMMIT;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();

-- ... and by COPY: written when the COPY ends
SELECT pg_temp.set_mark();
COPY public.bulk (id, label, score, note) FROM stdin;
4001	copied	1	n
4002	copied	2	n
4003	copied	3	n
\.
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();

-- a trigger of the user's that starts a subtransaction (an exception block)
-- after the capture of each inserted row ('zz' sorts after para_sync),
-- changes the row again there and reads its snapshot: the changes of the
-- statement still pending are written in that subtransaction (lent to
-- it); where it rolls back (even ids) they are numbered and written again
-- later, where it commits they stay
CREATE FUNCTION pg_temp.try_again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		UPDATE public.bulk SET score = NEW.score + 100 WHERE id = NEW.id;
		PERFORM para_sync.snapshot_json('bulk:' || NEW.id);
		IF NEW.id % 2 = 0 THEN
			RAISE EXCEPTION 'undone';
		END IF;
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	RETURN NULL;
END $$;
CREATE TRIGGER zz_try_again AFTER INSERT ON public.bulk
	FOR EACH ROW EXECUTE FUNCTION pg_temp.try_again();
SELECT pg_temp.set_mark();
INSERT INTO public.bulk SELECT g, 'tried', 0, 'n' FROM generate_series(2001, 2040) g;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();
SELECT count(*) FILTER (WHERE score = 100) AS kept, count(*) FILTER (WHERE score = 0) AS undone
  FROM public.bulk WHERE id BETWEEN 2001 AND 2040;
DROP TRIGGER zz_try_again ON public.bulk;

-- a trigger of the user's that reads snapshot() of each changed row while
-- the statement's changes are pending: it gets the sequence the row's
-- content is published with (the pending changes of that key are written
-- first and read with SnapshotSelf, outbox_append.c), never the content
-- with an older sequence
CREATE TEMP TABLE seen (key text, seq bigint, value jsonb);
CREATE FUNCTION pg_temp.look() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	s jsonb := para_sync.snapshot_json('bulk:' || NEW.id);
BEGIN
	INSERT INTO pg_temp.seen VALUES ('bulk:' || NEW.id, (s->>'sequence')::bigint, s->'value');
	RETURN NULL;
END $$;
CREATE TRIGGER zz_look AFTER INSERT OR UPDATE ON public.bulk
	FOR EACH ROW EXECUTE FUNCTION pg_temp.look();
UPDATE public.bulk SET score = score + 1 WHERE id BETWEEN 2001 AND 2040;
INSERT INTO public.bulk SELECT g, 'looked', 0, 'n' FROM generate_series(5001, 5020) g;
SELECT count(*) AS seen,
       count(*) FILTER (WHERE o.seq IS NULL OR (e->'value') IS DISTINCT FROM s.value) AS not_as_published
  FROM pg_temp.seen s
  LEFT JOIN para_sync.outbox o ON o.key = s.key AND o.seq = s.seq
  LEFT JOIN LATERAL para_sync.envelope_to_jsonb(o.envelope) e ON true;
SELECT * FROM pg_temp.broken();
DROP TRIGGER zz_look ON public.bulk;

-- ... and from a parallel query, inside an exception block: the leader is in
-- parallel mode and can write nothing (nor take a transaction id for the
-- block), so the pending changes of the key are counted, not written; the
-- parallel reading has the row's new content and the sequence it is
-- published with (one more than before the statement)
CREATE TABLE public.many AS SELECT g AS id FROM generate_series(1, 5000) g;
ANALYZE public.many;
CREATE TABLE public.expected_seq AS
	SELECT 'bulk:' || id AS key, (para_sync.snapshot_json('bulk:' || id)->>'sequence')::bigint + 1 AS seq
	  FROM public.bulk WHERE id BETWEEN 2001 AND 2010;
CREATE FUNCTION pg_temp.expect(s jsonb, k text, score int) RETURNS bool
LANGUAGE plpgsql PARALLEL RESTRICTED AS $$
DECLARE
	want bigint := (SELECT e.seq FROM public.expected_seq e WHERE e.key = k);
BEGIN
	IF (s->>'sequence')::bigint IS DISTINCT FROM want OR (s->'value'->>'score')::int IS DISTINCT FROM score THEN
		RAISE EXCEPTION 'parallel reading of %: %, expected sequence % and score %', k, s, want, score;
	END IF;
	RETURN true;
END $$;
CREATE FUNCTION pg_temp.look_parallel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		PERFORM pg_temp.expect(para_sync.snapshot_json('bulk:' || m.id), 'bulk:' || m.id, NEW.score)
		   FROM public.many m WHERE m.id = NEW.id;
	EXCEPTION WHEN division_by_zero THEN
		NULL;
	END;
	RETURN NULL;
END $$;
CREATE TRIGGER zz_look_parallel AFTER UPDATE ON public.bulk
	FOR EACH ROW EXECUTE FUNCTION pg_temp.look_parallel();
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF)
	SELECT pg_temp.expect(para_sync.snapshot_json('bulk:' || m.id), 'bulk:' || m.id, 1)
	  FROM public.many m WHERE m.id = 1;
UPDATE public.bulk SET score = score + 1 WHERE id BETWEEN 2001 AND 2010;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
SELECT * FROM pg_temp.broken();
DROP TRIGGER zz_look_parallel ON public.bulk;
DROP TABLE public.many, public.expected_seq;

-- MERGE: deletes, updates and inserts of one statement
SELECT pg_temp.set_mark();
MERGE INTO public.bulk b
USING (SELECT g AS id FROM generate_series(2031, 2060) g) s ON b.id = s.id
WHEN MATCHED AND b.id % 3 = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET score = b.score + 1
WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'merged', 0, 'n');
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();

-- a deferred constraint trigger of the user's that changes each inserted
-- row again when the transaction commits
CREATE FUNCTION pg_temp.at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE public.bulk SET label = 'at commit' WHERE id = NEW.id;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER zz_at_commit AFTER INSERT ON public.bulk
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.at_commit();
SELECT pg_temp.set_mark();
BEGIN;
INSERT INTO public.bulk SELECT g, 'inserted', 0, 'n' FROM generate_series(6001, 6050) g;
COMMIT;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();
SELECT count(*) AS changed_at_commit FROM public.bulk WHERE label = 'at commit';
DROP TRIGGER zz_at_commit ON public.bulk;

-- a statement that fails while its changes are pending (a trigger of the
-- user's refuses a row after the capture of others): rolled back to the
-- savepoint, they are forgotten, and what follows is numbered as if the
-- statement never ran
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id = 3020 THEN
		RAISE EXCEPTION 'refused';
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER zz_refuse AFTER INSERT ON public.bulk
	FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
BEGIN;
SAVEPOINT s;
INSERT INTO public.bulk SELECT g, 'refused', 0, 'n' FROM generate_series(3001, 3040) g;
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.set_mark();
INSERT INTO public.bulk SELECT g, 'accepted', 0, 'n' FROM generate_series(3001, 3010) g;
COMMIT;
SELECT * FROM pg_temp.since_mark();
SELECT * FROM pg_temp.broken();
DROP TRIGGER zz_refuse ON public.bulk;

DROP TABLE public.bulk;

-- a bulk INSERT onto keys whose history is in the counters (published and
-- acknowledged): the statement's changes are numbered together when it
-- ends (outbox_batch.c), their keys' last sequences read in one merge with
-- the outbox's and one with the counters' primary key, not by a look-up
-- per row (before: 300 index scans of each)
CREATE TABLE public.bulk_set (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.bulk_set');
INSERT INTO public.bulk_set SELECT g, 'first' FROM generate_series(1, 300) g;
DELETE FROM public.bulk_set;
SELECT para_sync.ack(array_agg(key), array_agg(seq))
  FROM (SELECT key, max(seq) AS seq FROM para_sync.outbox
         WHERE key LIKE 'bulk_set:%' GROUP BY key) published;
SELECT pg_stat_force_next_flush();
BEGIN;
INSERT INTO public.bulk_set SELECT g, 'again' FROM generate_series(1, 300) g;
SELECT relname, idx_scan < 10 AS read_as_a_set FROM pg_stat_xact_all_tables
 WHERE relid IN ('para_sync.outbox'::regclass, 'para_sync.counters'::regclass)
 ORDER BY relname;
COMMIT;
SELECT min(seq), max(seq), count(*) FROM para_sync.outbox WHERE key LIKE 'bulk_set:%';
SELECT count(*) AS as_snapshot FROM para_sync.outbox o, para_sync.snapshot_json(o.key) s
 WHERE o.key LIKE 'bulk_set:%' AND (s->>'sequence')::bigint = o.seq;
-- ... also when each row's insert runs a query of its own (the foreign
-- key's check): the changes of the statement are still written together,
-- when it ends
CREATE TABLE public.bulk_parent (id int PRIMARY KEY);
INSERT INTO public.bulk_parent VALUES (1);
CREATE TABLE public.bulk_child (id int PRIMARY KEY, parent int REFERENCES public.bulk_parent);
SELECT para_sync.sync_table('public.bulk_child');
INSERT INTO public.bulk_child SELECT g, 1 FROM generate_series(1, 300) g;
DELETE FROM public.bulk_child;
SELECT para_sync.ack(array_agg(key), array_agg(seq))
  FROM (SELECT key, max(seq) AS seq FROM para_sync.outbox
         WHERE key LIKE 'bulk_child:%' GROUP BY key) published;
SELECT pg_stat_force_next_flush();
BEGIN;
INSERT INTO public.bulk_child SELECT g, 1 FROM generate_series(1, 300) g;
SELECT relname, idx_scan < 10 AS read_as_a_set FROM pg_stat_xact_all_tables
 WHERE relid IN ('para_sync.outbox'::regclass, 'para_sync.counters'::regclass)
 ORDER BY relname;
COMMIT;
SELECT count(*) AS as_snapshot FROM para_sync.outbox o, para_sync.snapshot_json(o.key) s
 WHERE o.key LIKE 'bulk_child:%' AND (s->>'sequence')::bigint = o.seq;
DROP TABLE public.bulk_child, public.bulk_parent;

-- keys the sequence cache cannot hold (over 52 bytes), with a backlog of
-- 100 envelopes each: a statement's read of their last sequences walks a
-- few rows of each key, then probes for its last one, not the backlog
CREATE TABLE public.long_keys (k text PRIMARY KEY, n int);
SELECT para_sync.sync_table('public.long_keys');
INSERT INTO public.long_keys SELECT repeat('k', 60) || g, 0 FROM generate_series(1, 10) g;
DO $$
BEGIN
	FOR i IN 1..100 LOOP
		UPDATE public.long_keys SET n = n + 1;
	END LOOP;
END $$;
SELECT pg_stat_force_next_flush();
BEGIN;
UPDATE public.long_keys SET n = n + 1;
SELECT idx_tup_fetch < 300 AS backlog_not_walked FROM pg_stat_xact_all_tables
 WHERE relid = 'para_sync.outbox'::regclass;
COMMIT;
SELECT count(*) AS keys, min(seq), max(seq) FROM (
	SELECT key, max(seq) AS seq FROM para_sync.outbox WHERE key LIKE 'long_keys:%' GROUP BY key) k;
DROP TABLE public.long_keys;

-- many single-row statements in one transaction: what the pending
-- changes used is reused, the batch's memory does not grow with them
BEGIN;
DO $$
BEGIN
	FOR i IN 1..10000 LOOP
		UPDATE public.bulk_set SET label = 'loop ' || i WHERE id = 1 + i % 3;
	END LOOP;
END $$;
SELECT total_bytes < 150000 AS batch_memory_bounded FROM pg_backend_memory_contexts
 WHERE name = 'para_sync outbox batch';
COMMIT;
SELECT count(*) AS as_snapshot FROM para_sync.outbox o, para_sync.snapshot_json(o.key) s
 WHERE o.key LIKE 'bulk_set:%' AND (s->>'sequence')::bigint = o.seq;
DROP TABLE public.bulk_set;
TRUNCATE para_sync.outbox, para_sync.counters;
