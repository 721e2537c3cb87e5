-- snapshot(): an object's current value and sequence, with the caller's
-- privileges (row-level security and column grants apply).
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.docs (id int PRIMARY KEY, owner text, title text, internal text);
INSERT INTO public.docs VALUES (1, 'alice', 'before tagging', 'x');
SELECT para_sync.sync_table('public.docs', schema_version => '2', exclude_columns => '{internal}');

-- unchanged since tagging: current value, sequence 0
SELECT para_sync.snapshot_json('docs:1');
-- never seen: nil value, sequence 0
SELECT para_sync.snapshot_json('docs:999');
-- changed: value and sequence of the last committed change
UPDATE public.docs SET title = 'after' WHERE id = 1;
INSERT INTO public.docs VALUES (2, 'bob', 'bobs', 'y');
SELECT para_sync.snapshot_json('docs:1'), para_sync.snapshot_json('docs:2');
-- deleted: nil value with its last sequence
DELETE FROM public.docs WHERE id = 2;
SELECT para_sync.snapshot_json('docs:2');
-- the bytea is exactly what snapshot_json shows, op snapshot, no txid
SELECT para_sync.envelope_to_jsonb(para_sync.snapshot('docs:1')) = para_sync.snapshot_json('docs:1') AS same,
	   para_sync.snapshot_json('docs:1') ? 'txid' AS has_txid;

-- inside a transaction, snapshot() sees the transaction's own changes
BEGIN;
UPDATE public.docs SET title = 'uncommitted' WHERE id = 1;
SELECT para_sync.snapshot_json('docs:1')->'value'->>'title' AS title,
	   para_sync.snapshot_json('docs:1')->'sequence' AS seq;
ROLLBACK;
SELECT para_sync.snapshot_json('docs:1')->'value'->>'title' AS title,
	   para_sync.snapshot_json('docs:1')->'sequence' AS seq;

-- row-level security applies: alice sees her rows only
CREATE ROLE para_sync_alice;
GRANT SELECT (id, owner, title) ON public.docs TO para_sync_alice;
ALTER TABLE public.docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_docs ON public.docs FOR SELECT USING (owner = 'alice');
INSERT INTO public.docs VALUES (3, 'carol', 'secret plans', 'z');
SET ROLE para_sync_alice;
SELECT para_sync.snapshot_json('docs:1')->'value' AS alices;
SELECT para_sync.snapshot_json('docs:3')->'value' AS carols;
-- no grant on the excluded column is needed
SELECT para_sync.snapshot_json('docs:1')->'value' ? 'internal' AS leaks_internal;
RESET ROLE;

-- column grants apply: without SELECT on a synced column, snapshot() fails
REVOKE SELECT (title) ON public.docs FROM para_sync_alice;
SET ROLE para_sync_alice;
SELECT para_sync.snapshot('docs:1');
RESET ROLE;

-- the snapshot follows table changes (plan and cache invalidation)
ALTER TABLE public.docs ADD COLUMN tags text[] DEFAULT '{a}';
SELECT para_sync.snapshot_json('docs:1')->'value' AS with_tags;
ALTER TABLE public.docs DROP COLUMN owner CASCADE;
SELECT para_sync.snapshot_json('docs:1')->'value' AS without_owner;
UPDATE public.docs SET title = 'after alter' WHERE id = 1;
SELECT para_sync.envelope_to_jsonb(envelope)->'value' AS captured
  FROM para_sync.outbox WHERE key = 'docs:1' ORDER BY seq DESC LIMIT 1;

DROP TABLE public.docs;
DROP ROLE para_sync_alice;

-- snapshot() in a parallel query (PARALLEL RESTRICTED: the leader runs it
-- in parallel mode) as a session's first look-up of the table: the table
-- cache is built from the query's snapshot, and a write after it rebuilds
-- the entry from a fresh one
CREATE TABLE public.par (id int PRIMARY KEY, v text);
SELECT para_sync.sync_table('public.par') IS NOT NULL AS tagged;
INSERT INTO public.par SELECT g, 'v' || g FROM pg_catalog.generate_series(1, 2000) g;
ANALYZE public.par;
\c
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT count(para_sync.snapshot('par:' || id)) FROM public.par;
SELECT count(para_sync.snapshot('par:' || id)) AS snapshots FROM public.par;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
UPDATE public.par SET v = 'changed' WHERE id = 1;
SELECT para_sync.snapshot_json('par:1')->'value' AS value, para_sync.snapshot_json('par:1')->'sequence' AS seq;
DROP TABLE public.par;
SELECT para_sync.release_sync_name('par') IS NULL AS released;
