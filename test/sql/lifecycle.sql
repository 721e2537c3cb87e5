-- Table lifecycle: unsync_table(), DROP TABLE and TRUNCATE of a synced table
-- publish a delete for every row they remove, snapshot() of a key whose table
-- is gone or untagged is nil at the key's last sequence, and a sync name
-- stays bound to the role that tagged it until released.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE FUNCTION pg_temp.changes(prefix text) RETURNS TABLE (key text, seq bigint, op text, label text)
LANGUAGE sql AS $$
	SELECT o.key, o.seq, e->>'op', e->'value'->>'label'
	  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
	 WHERE o.key LIKE prefix || ':%'
	 ORDER BY o.key, o.seq
$$;
CREATE FUNCTION pg_temp.snap(k text) RETURNS text
LANGUAGE sql AS $$
	SELECT (e->'value')::text || ' @' || (e->>'sequence')
	  FROM para_sync.snapshot_json(k) e
$$;

-- == unsync_table(): a delete for every current row ==
CREATE TABLE public.u (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.u');
INSERT INTO public.u VALUES (1, 'a'), (2, 'b');
UPDATE public.u SET label = 'c' WHERE id = 1;
SELECT para_sync.unsync_table('public.u');
SELECT * FROM pg_temp.changes('u');
-- the last envelope of each key is what snapshot() says, without an error
SELECT pg_temp.snap('u:1') AS u1, pg_temp.snap('u:2') AS u2, pg_temp.snap('u:3') AS u3;
-- a rolled-back unsync publishes nothing
SELECT para_sync.sync_table('public.u');
BEGIN;
SELECT para_sync.unsync_table('public.u');
ROLLBACK;
SELECT count(*) AS envelopes FROM para_sync.outbox WHERE key LIKE 'u:%';
-- re-tagging continues every key's sequence
UPDATE public.u SET label = 'd' WHERE id = 2;
SELECT * FROM pg_temp.changes('u') WHERE seq > 2;
SELECT pg_temp.snap('u:2') AS u2;

-- == DROP TABLE: a delete for every row, before the table goes ==
CREATE TABLE public.d (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.d');
INSERT INTO public.d VALUES (1, 'a'), (2, 'b');
BEGIN;
INSERT INTO public.d VALUES (3, 'own');
DELETE FROM public.d WHERE id = 2;
DROP TABLE public.d;
COMMIT;
SELECT * FROM pg_temp.changes('d');
SELECT pg_temp.snap('d:1') AS d1, pg_temp.snap('d:2') AS d2, pg_temp.snap('d:3') AS d3;
SELECT count(*) AS registered FROM para_sync.synced_tables WHERE sync_name = 'd';
-- DROP TABLE of several tables, one of them synced; IF EXISTS of a missing one
CREATE TABLE public.d (id int PRIMARY KEY, label text);
CREATE TABLE public.plain (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.d');
INSERT INTO public.d VALUES (1, 'again');
DROP TABLE IF EXISTS public.plain, public.nosuch, public.d;
SELECT * FROM pg_temp.changes('d') WHERE seq > 2;
SELECT pg_temp.snap('d:1') AS d1;
-- two synced tables, one of them named twice: one delete per row
CREATE TABLE public.w (id int PRIMARY KEY, label text);
CREATE TABLE public.w2 (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.w');
SELECT para_sync.sync_table('public.w2');
INSERT INTO public.w VALUES (1, 'a'), (2, 'b');
INSERT INTO public.w2 VALUES (1, 'c');
DROP TABLE public.w, public.w2, public.w;
SELECT * FROM pg_temp.changes('w');
SELECT * FROM pg_temp.changes('w2');
SELECT count(*) AS registered FROM para_sync.synced_tables WHERE sync_name IN ('w', 'w2');
-- a rolled-back drop publishes nothing
CREATE TABLE public.d (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.d');
INSERT INTO public.d VALUES (1, 'kept');
BEGIN;
DROP TABLE public.d;
ROLLBACK;
SELECT * FROM pg_temp.changes('d') WHERE seq > 4;
-- in session_replication_role = replica too
INSERT INTO public.d VALUES (2, 'replica');
SET session_replication_role = replica;
DROP TABLE public.d;
RESET session_replication_role;
SELECT * FROM pg_temp.changes('d') WHERE key = 'd:2' AND seq > 2;
SELECT count(*) AS registered FROM para_sync.synced_tables WHERE sync_name = 'd';
-- with the event triggers disabled by a superuser, a stale registration
-- reads as nil too (no error)
CREATE TABLE public.stale (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.stale');
ALTER EVENT TRIGGER para_sync_retire_dropped_tables DISABLE;
ALTER EVENT TRIGGER para_sync_check_dropped_tables DISABLE;
ALTER EVENT TRIGGER para_sync_forget_dropped_tables DISABLE;
DROP TABLE public.stale;
ALTER EVENT TRIGGER para_sync_retire_dropped_tables ENABLE ALWAYS;
ALTER EVENT TRIGGER para_sync_check_dropped_tables ENABLE ALWAYS;
ALTER EVENT TRIGGER para_sync_forget_dropped_tables ENABLE ALWAYS;
SELECT pg_temp.snap('stale:1') AS stale1;
DELETE FROM para_sync.tables WHERE sync_name = 'stale';
-- a drop that would remove a synced table indirectly is refused
CREATE SCHEMA lc;
CREATE TABLE lc.inner_t (id int PRIMARY KEY);
SELECT para_sync.sync_table('lc.inner_t');
INSERT INTO lc.inner_t VALUES (1);
DROP SCHEMA lc CASCADE;
SELECT count(*) AS still_there FROM lc.inner_t;
-- ... and so is a parent's DROP ... CASCADE that takes a synced child along
CREATE TABLE public.parent (id int PRIMARY KEY);
CREATE TABLE public.child (id int PRIMARY KEY) INHERITS (public.parent);
SELECT para_sync.sync_table('public.child');
DROP TABLE public.parent CASCADE;
-- after unsync_table() the same drops go through
SELECT para_sync.unsync_table('lc.inner_t');
DROP SCHEMA lc CASCADE;
SELECT * FROM pg_temp.changes('inner_t');
SELECT para_sync.unsync_table('public.child');
DROP TABLE public.parent CASCADE;

-- == TRUNCATE: a delete for every row it removes, in its transaction ==
CREATE TABLE public.t (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.t');
INSERT INTO public.t VALUES (1, 'a'), (2, 'b');
UPDATE public.t SET label = 'c' WHERE id = 1;
TRUNCATE public.t;
SELECT * FROM pg_temp.changes('t');
SELECT pg_temp.snap('t:1') AS t1, pg_temp.snap('t:2') AS t2;
-- re-inserting continues from the delete
INSERT INTO public.t VALUES (1, 'again');
SELECT * FROM pg_temp.changes('t') WHERE seq > 3;
-- rolled back: nothing
BEGIN;
TRUNCATE public.t;
ROLLBACK;
SELECT count(*) AS envelopes FROM para_sync.outbox WHERE key LIKE 't:%';
-- rows written earlier in the same transaction are deleted too, after their upserts
BEGIN;
INSERT INTO public.t VALUES (5, 'new');
TRUNCATE public.t;
COMMIT;
SELECT * FROM pg_temp.changes('t') WHERE key = 't:5' OR seq > 4;
-- several tables, RESTART IDENTITY, and CASCADE to a referencing synced table
CREATE TABLE public.tp (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label text);
CREATE TABLE public.tchild (id int PRIMARY KEY, p int REFERENCES public.tp, label text);
SELECT para_sync.sync_table('public.tp'), para_sync.sync_table('public.tchild');
INSERT INTO public.t VALUES (1, 'x');
INSERT INTO public.tp (label) VALUES ('p1'), ('p2');
INSERT INTO public.tchild VALUES (10, 1, 'c1');
TRUNCATE public.t, public.tp RESTART IDENTITY CASCADE;
SELECT * FROM pg_temp.changes('t') WHERE seq > 5;
SELECT * FROM pg_temp.changes('tp');
SELECT * FROM pg_temp.changes('tchild');
INSERT INTO public.tp (label) VALUES ('p1 again');
SELECT * FROM pg_temp.changes('tp') WHERE seq > 2;
-- an empty table: nothing
TRUNCATE public.tchild;
SELECT count(*) AS envelopes FROM para_sync.outbox WHERE key LIKE 'tchild:%';
-- row-level security does not hide rows from TRUNCATE's deletes
ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.t FORCE ROW LEVEL SECURITY;
CREATE ROLE regress_lc_trunc;
ALTER TABLE public.t OWNER TO regress_lc_trunc;
SET ROLE regress_lc_trunc;
SELECT count(*) AS visible FROM public.t;
TRUNCATE public.t;
RESET ROLE;
SELECT * FROM pg_temp.changes('t') WHERE seq > 6;
DROP TABLE public.t, public.tchild, public.tp;
DROP ROLE regress_lc_trunc;

-- without a primary key the rows' keys are unknown: refused, unless empty
-- (a registration left from before primary-key DDL was guarded, made by hand)
CREATE TABLE public.nopk (id int, label text);
INSERT INTO public.nopk VALUES (1, 'row');
INSERT INTO para_sync.tables (relid, sync_name, schema_version) VALUES ('public.nopk', 'nopk', '1');
SELECT para_sync.install_triggers('public.nopk');
TRUNCATE public.nopk;
SELECT para_sync.unsync_table('public.nopk');
DROP TABLE public.nopk;
ALTER TABLE public.nopk ADD PRIMARY KEY (id);
SELECT para_sync.unsync_table('public.nopk');
SELECT * FROM pg_temp.changes('nopk');
CREATE TABLE public.nopk_empty (id int);
INSERT INTO para_sync.tables (relid, sync_name, schema_version) VALUES ('public.nopk_empty', 'nopk_empty', '1');
SELECT para_sync.install_triggers('public.nopk_empty');
TRUNCATE public.nopk_empty;
DROP TABLE public.nopk, public.nopk_empty;

-- == snapshot() of keys without a table ==
SELECT pg_temp.snap('never_tagged:1') AS unknown_name;

-- == sync names stay bound to the role that tagged them ==
CREATE ROLE regress_lc_a;
CREATE ROLE regress_lc_b;
CREATE ROLE regress_lc_a_member IN ROLE regress_lc_a;
GRANT CREATE ON SCHEMA public TO regress_lc_a, regress_lc_a_member;
CREATE SCHEMA o1 AUTHORIZATION regress_lc_b;
SET ROLE regress_lc_a;
CREATE TABLE public.victim (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.victim');
INSERT INTO public.victim VALUES (1, 'mine');
UPDATE public.victim SET label = 'still mine';
SELECT para_sync.unsync_table('public.victim');
RESET ROLE;
SELECT * FROM pg_temp.changes('victim');
-- another role cannot take the name over, nor release it
SET ROLE regress_lc_b;
CREATE TABLE o1.fake (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('o1.fake', 'victim');
SELECT para_sync.release_sync_name('victim');
INSERT INTO o1.fake VALUES (1, 'forged');
RESET ROLE;
SELECT * FROM pg_temp.changes('victim') WHERE seq > 3;
SELECT pg_temp.snap('victim:1') AS victim1;
-- the owner re-tags (a member of the owning role may, too)
SET ROLE regress_lc_a;
SELECT para_sync.sync_table('public.victim');
UPDATE public.victim SET label = 'back';
SELECT para_sync.unsync_table('public.victim');
RESET ROLE;
SELECT * FROM pg_temp.changes('victim') WHERE seq > 3;
SET ROLE regress_lc_a_member;
CREATE TABLE public.victim2 (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.victim2', 'victim');
SELECT para_sync.unsync_table('public.victim2');
RESET ROLE;
SELECT sync_name, owner FROM para_sync.sync_names WHERE sync_name = 'victim';
-- a dropped table keeps its name bound too
SET ROLE regress_lc_a;
SELECT para_sync.sync_table('public.victim', 'victim');
RESET ROLE;
-- (a non-owner's DROP TABLE fails before anything is published; DROP OWNED is refused)
SET ROLE regress_lc_b;
DROP TABLE public.victim;
RESET ROLE;
DROP OWNED BY regress_lc_a;
SET ROLE regress_lc_a;
DROP TABLE public.victim;
RESET ROLE;
SELECT * FROM pg_temp.changes('victim') WHERE seq > 5;
SET ROLE regress_lc_b;
SELECT para_sync.sync_table('o1.fake', 'victim');
RESET ROLE;
-- a name in use cannot be released; an unknown one is an error
SET ROLE regress_lc_a;
CREATE TABLE public.victim (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.victim');
SELECT para_sync.release_sync_name('victim');
SELECT para_sync.unsync_table('public.victim');
SELECT para_sync.release_sync_name('nosuch');
-- the owner releases it; then anyone may claim it
SELECT para_sync.release_sync_name('victim');
RESET ROLE;
SET ROLE regress_lc_b;
SELECT para_sync.sync_table('o1.fake', 'victim');
UPDATE o1.fake SET label = 'released to b';
RESET ROLE;
SELECT * FROM pg_temp.changes('victim') WHERE seq > 6;
SELECT sync_name, owner FROM para_sync.sync_names WHERE sync_name = 'victim';
-- a superuser may release any name that no table uses
SELECT para_sync.unsync_table('o1.fake');
SELECT para_sync.release_sync_name('victim');
SELECT count(*) AS claims FROM para_sync.sync_names WHERE sync_name = 'victim';
SELECT pg_temp.snap('victim:1') AS victim1;

DROP TABLE public.victim, public.victim2, public.u;
DROP SCHEMA o1 CASCADE;
REVOKE CREATE ON SCHEMA public FROM regress_lc_a, regress_lc_a_member;
DROP ROLE regress_lc_a_member, regress_lc_a, regress_lc_b;

-- == TRUNCATE, DROP TABLE and unsync_table() number their envelopes from
-- the name's last sequences read in one pass (outbox_name_seqs.c), or, for
-- a name with many more keys than the table has rows, row by row through
-- the sequence cache; sequence_cache_check compares every answer of both
-- with the per-key look-up ==
SET para_sync.sequence_cache_check = on;
CREATE TABLE public.lcs (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.lcs') IS NOT NULL AS tagged;
INSERT INTO public.lcs SELECT g, 'x' FROM pg_catalog.generate_series(1, 100) g;
UPDATE public.lcs SET label = 'y' WHERE id <= 50;
SELECT hits AS h0, misses AS m0 FROM para_sync.sequence_cache_counts() \gset
BEGIN;
TRUNCATE public.lcs;
-- read in one pass: no key looked up one by one
SELECT hits + misses - :h0 - :m0 AS looked_up FROM para_sync.sequence_cache_counts();
ROLLBACK;
UPDATE public.lcs SET label = 'w';
SELECT para_sync.unsync_table('public.lcs');
-- each key: an insert, an update (two for half of them), then the delete
SELECT op, seq, count(*) FROM (
	SELECT DISTINCT ON (key) key, seq, op FROM pg_temp.changes('lcs') ORDER BY key, seq DESC) last
 GROUP BY op, seq ORDER BY op, seq;
SELECT pg_temp.snap('lcs:1') AS lcs1, pg_temp.snap('lcs:100') AS lcs100;
-- re-tagged with its rows: an upsert for each (the keys have a history)
SELECT para_sync.sync_table('public.lcs') IS NOT NULL AS tagged;
INSERT INTO public.lcs VALUES (101, 'z');
DROP TABLE public.lcs;
SELECT op, seq, count(*) FROM (
	SELECT DISTINCT ON (key) key, seq, op FROM pg_temp.changes('lcs') ORDER BY key, seq DESC) last
 GROUP BY op, seq ORDER BY op, seq;
SELECT pg_temp.snap('lcs:1') AS lcs1, pg_temp.snap('lcs:101') AS lcs101;
-- a one-page table whose name has 3,000 keys (of a table dropped before):
-- row by row, through the cache
CREATE TABLE public.lcf_old (id int PRIMARY KEY, label text);
SELECT para_sync.sync_table('public.lcf_old', 'lcf') IS NOT NULL AS tagged;
INSERT INTO public.lcf_old SELECT g, 'x' FROM pg_catalog.generate_series(1, 3000) g;
DROP TABLE public.lcf_old;
CREATE TABLE public.lcf (id int PRIMARY KEY, label text);
INSERT INTO public.lcf SELECT g, 'x' FROM pg_catalog.generate_series(1, 10) g;
SELECT para_sync.sync_table('public.lcf', 'lcf') IS NOT NULL AS tagged;
SELECT pg_catalog.pg_relation_size('public.lcf') / pg_catalog.current_setting('block_size')::int AS pages;
UPDATE public.lcf SET label = 'y';
SELECT hits AS h0, misses AS m0 FROM para_sync.sequence_cache_counts() \gset
TRUNCATE public.lcf;
SELECT hits + misses - :h0 - :m0 AS looked_up, hits > :h0 AS cache_used
  FROM para_sync.sequence_cache_counts();
-- 3,000 keys: insert, delete; 10 of them: insert, delete, upsert (re-tag),
-- upsert (update), delete
SELECT op, seq, count(*) FROM (
	SELECT DISTINCT ON (key) key, seq, op FROM pg_temp.changes('lcf') ORDER BY key, seq DESC) last
 GROUP BY op, seq ORDER BY op, seq;
SELECT para_sync.unsync_table('public.lcf');
DROP TABLE public.lcf;
SELECT para_sync.release_sync_name('lcs'), para_sync.release_sync_name('lcf');
RESET para_sync.sequence_cache_check;
