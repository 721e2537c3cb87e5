-- Partitioned tables, synced by their root: one sync name, keys of the
-- root's primary key, values in the root's columns whatever the partition's
-- attribute numbers; later, attached and sub-partitions captured; cross-
-- partition moves; attach/detach/truncate/drop of one partition; refusals;
-- snapshot(), snapshot_table() and snapshot_page() of the root.
SET client_min_messages = warning;
SET para_sync.sequence_cache_check = on;
TRUNCATE para_sync.outbox, para_sync.counters;

-- the envelopes appended since the last mark(), in the order appended
CREATE TEMP TABLE seen (key text, seq bigint);
CREATE FUNCTION pg_temp.mark() RETURNS void
LANGUAGE sql AS $$
	INSERT INTO seen SELECT o.key, o.seq FROM para_sync.outbox o
	 WHERE NOT EXISTS (SELECT 1 FROM seen s WHERE s.key = o.key AND s.seq = o.seq)
$$;
CREATE FUNCTION pg_temp.changes(prefix text) RETURNS TABLE (key text, seq bigint, op text, value jsonb)
LANGUAGE sql AS $$
	SELECT o.key, o.seq, e->>'op', e->'value'
	  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
	 WHERE o.key LIKE prefix || ':%'
	   AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.key = o.key AND s.seq = o.seq)
	 ORDER BY o.ctid
$$;
CREATE FUNCTION pg_temp.snap(k text) RETURNS text
LANGUAGE sql AS $$
	SELECT (e->'value')::text || ' @' || (e->>'sequence')
	  FROM para_sync.snapshot_json(k) e
$$;
-- every key's last envelope equals snapshot(key), value and sequence
CREATE FUNCTION pg_temp.mismatches(prefix text) RETURNS TABLE (key text, last text, snap text)
LANGUAGE sql AS $$
	SELECT l.key, l.last, pg_temp.snap(l.key)
	  FROM (SELECT DISTINCT ON (o.key) o.key,
				   (e->'value')::text || ' @' || o.seq AS last
			  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
			 WHERE o.key LIKE prefix || ':%'
			 ORDER BY o.key, o.seq DESC) l
	 WHERE l.last IS DISTINCT FROM pg_temp.snap(l.key)
$$;

-- == a list-partitioned root, one sync name ==
CREATE TABLE public.ev (region text, id int, note text, PRIMARY KEY (region, id))
	PARTITION BY LIST (region);
CREATE TABLE public.ev_eu PARTITION OF public.ev FOR VALUES IN ('eu');
-- a partition whose attribute numbers differ from the root's
CREATE TABLE public.ev_us (junk int, note text, id int NOT NULL, region text NOT NULL);
ALTER TABLE public.ev_us DROP COLUMN junk;
ALTER TABLE public.ev ATTACH PARTITION public.ev_us FOR VALUES IN ('us');
INSERT INTO public.ev VALUES ('eu', 1, 'before');
SELECT para_sync.sync_table('public.ev');
SELECT table_name, sync_name, schema_version FROM para_sync.synced_tables WHERE sync_name = 'ev';
INSERT INTO public.ev VALUES ('eu', 2, 'a'), ('us', 5, 'b');
INSERT INTO public.ev_us (id, region, note) VALUES (2, 'us', 'direct');
UPDATE public.ev SET note = 'c' WHERE id = 1;
DELETE FROM public.ev_eu WHERE id = 2;
SELECT * FROM pg_temp.changes('ev');
-- values are in the root's column order, from every partition
SELECT pg_temp.snap('ev:us:2') AS us2, pg_temp.snap('ev:eu:1') AS eu1,
	   pg_temp.snap('ev:eu:2') AS eu2;

-- == a cross-partition UPDATE: delete of the old key, upsert of the new ==
SELECT pg_temp.mark();
UPDATE public.ev SET region = 'us', note = 'moved' WHERE region = 'eu' AND id = 1;
SELECT * FROM pg_temp.changes('ev');
SELECT pg_temp.snap('ev:eu:1') AS eu1, pg_temp.snap('ev:us:1') AS us1;
-- and back, twice in one transaction
BEGIN;
UPDATE public.ev SET region = 'eu' WHERE region = 'us' AND id = 1;
UPDATE public.ev SET region = 'us' WHERE region = 'eu' AND id = 1;
COMMIT;
SELECT * FROM pg_temp.changes('ev') WHERE key LIKE 'ev:%:1';
SELECT * FROM pg_temp.mismatches('ev');

-- == partitions created later, and sub-partitions, are captured ==
SELECT pg_temp.mark();
CREATE TABLE public.ev_asia PARTITION OF public.ev FOR VALUES IN ('jp', 'kr')
	PARTITION BY LIST (region);
CREATE TABLE public.ev_jp PARTITION OF public.ev_asia FOR VALUES IN ('jp');
CREATE TABLE public.ev_kr (id int NOT NULL, region text NOT NULL, note text);
ALTER TABLE public.ev_asia ATTACH PARTITION public.ev_kr FOR VALUES IN ('kr');
INSERT INTO public.ev VALUES ('jp', 1, 'x'), ('kr', 1, 'y');
UPDATE public.ev_kr SET note = 'z';
SELECT * FROM pg_temp.changes('ev');
-- para_sync's triggers on every partition, ALWAYS
SELECT c.relname, t.tgname, t.tgenabled
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE t.tgname LIKE 'para_sync%' AND c.relname LIKE 'ev%'
 ORDER BY 1, 2;

-- == ATTACH of a table with rows: an upsert per row ==
SELECT pg_temp.mark();
CREATE TABLE public.ev_fr (LIKE public.ev);
INSERT INTO public.ev_fr VALUES ('fr', 1, 'f1'), ('fr', 2, 'f2');
ALTER TABLE public.ev ATTACH PARTITION public.ev_fr FOR VALUES IN ('fr');
SELECT * FROM pg_temp.changes('ev');
SELECT pg_temp.snap('ev:fr:2') AS fr2;

-- == DETACH: a delete per row; the detached table is no longer captured ==
SELECT pg_temp.mark();
ALTER TABLE public.ev DETACH PARTITION public.ev_fr;
INSERT INTO public.ev_fr VALUES ('fr', 3, 'f3');
TRUNCATE public.ev_fr;
SELECT * FROM pg_temp.changes('ev');
SELECT pg_temp.snap('ev:fr:2') AS fr2;
-- attached again: upserts continue the keys' sequences
INSERT INTO public.ev_fr VALUES ('fr', 1, 'again');
ALTER TABLE public.ev ATTACH PARTITION public.ev_fr FOR VALUES IN ('fr');
SELECT * FROM pg_temp.changes('ev') WHERE key = 'ev:fr:1';
-- a rolled-back DETACH publishes nothing
SELECT pg_temp.mark();
BEGIN;
ALTER TABLE public.ev DETACH PARTITION public.ev_fr;
ROLLBACK;
SELECT count(*) AS envelopes FROM para_sync.outbox;

-- == TRUNCATE of one partition, of a sub-partitioned one, of the root ==
SELECT pg_temp.mark();
TRUNCATE public.ev_us;
SELECT * FROM pg_temp.changes('ev');
SELECT pg_temp.mark();
TRUNCATE public.ev_asia;
SELECT * FROM pg_temp.changes('ev');
-- a partition created while para_sync's event triggers were off has no
-- truncate trigger: TRUNCATE of the root publishes its deletes all the same
ALTER EVENT TRIGGER para_sync_partitions_end DISABLE;
CREATE TABLE public.ev_nz PARTITION OF public.ev FOR VALUES IN ('nz');
ALTER EVENT TRIGGER para_sync_partitions_end ENABLE ALWAYS;
INSERT INTO public.ev VALUES ('us', 7, 'u7'), ('jp', 7, 'j7'), ('nz', 7, 'n7');
SELECT pg_temp.mark();
TRUNCATE public.ev;
SELECT key, op FROM pg_temp.changes('ev') ORDER BY key;
SELECT * FROM pg_temp.mismatches('ev');
-- a partition created as an element of CREATE SCHEMA gets its truncate
-- trigger: TRUNCATE of the partition itself publishes its deletes
CREATE SCHEMA ev_schema
	CREATE TABLE ev_ca PARTITION OF public.ev FOR VALUES IN ('ca');
INSERT INTO public.ev VALUES ('ca', 1, 'c1');
SELECT pg_temp.mark();
TRUNCATE ev_schema.ev_ca;
SELECT key, op FROM pg_temp.changes('ev');
SELECT * FROM pg_temp.mismatches('ev');
DROP TABLE ev_schema.ev_ca;
DROP SCHEMA ev_schema;

-- == DROP TABLE of one partition: a delete per row ==
INSERT INTO public.ev VALUES ('jp', 8, 'j8'), ('kr', 8, 'k8'), ('eu', 8, 'e8');
SELECT pg_temp.mark();
DROP TABLE public.ev_jp;
SELECT key, op FROM pg_temp.changes('ev');
SELECT pg_temp.mark();
DROP TABLE public.ev_asia;
SELECT key, op FROM pg_temp.changes('ev');
SELECT pg_temp.snap('ev:kr:8') AS kr8;

-- == snapshot_table() and snapshot_page() of the root ==
INSERT INTO public.ev VALUES ('us', 3, 'u3'), ('eu', 4, 'e4');
SELECT s.key, (para_sync.envelope_to_jsonb(s.envelope))->'value' AS value
  FROM para_sync.snapshot_table('public.ev') s;
SELECT s.key FROM para_sync.snapshot_page('public.ev', NULL, 2) s;
SELECT s.key FROM para_sync.snapshot_page('public.ev', 'ev:eu:8', 10) s;

-- == column DDL on the root reaches every partition: one reload event ==
SELECT pg_temp.mark();
ALTER TABLE public.ev ADD COLUMN extra int DEFAULT 0;
SELECT o.key, e->>'op' AS op, e->>'schema_version' AS schema_version
  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
 WHERE o.key = 'ev' AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.key = o.key AND s.seq = o.seq);
INSERT INTO public.ev VALUES ('us', 11, 'x', 5);
UPDATE public.ev_eu SET extra = 1 WHERE id = 4;
SELECT key, value FROM pg_temp.changes('ev');
ALTER TABLE public.ev DROP COLUMN extra;
SELECT pg_temp.snap('ev:us:11') AS us11;

-- == set_schema_version() of the root reaches the partitions ==
SELECT para_sync.set_schema_version('public.ev', '2');
UPDATE public.ev SET note = 'v2' WHERE region = 'us' AND id = 3;
SELECT key, e->>'schema_version' AS schema_version
  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
 WHERE o.key = 'ev:us:3' ORDER BY o.seq DESC LIMIT 1;

-- == DETACH of a sub-partitioned partition: a delete per row of its leaves ==
CREATE TABLE public.ev_sa PARTITION OF public.ev FOR VALUES IN ('br', 'ar') PARTITION BY LIST (region);
CREATE TABLE public.ev_br PARTITION OF public.ev_sa FOR VALUES IN ('br');
CREATE TABLE public.ev_ar PARTITION OF public.ev_sa FOR VALUES IN ('ar');
INSERT INTO public.ev VALUES ('br', 1, 'b1'), ('ar', 1, 'a1');
SELECT pg_temp.mark();
ALTER TABLE public.ev DETACH PARTITION public.ev_sa;
SELECT key, op FROM pg_temp.changes('ev') ORDER BY key;
-- no para_sync trigger is left on the detached tables
SELECT count(*) AS triggers FROM pg_trigger t
 WHERE t.tgname LIKE 'para_sync%' AND t.tgrelid IN ('public.ev_sa'::regclass, 'public.ev_br'::regclass, 'public.ev_ar'::regclass);
DROP TABLE public.ev_sa;

-- == refusals ==
\set VERBOSITY default
-- a partition of a synced root cannot be tagged on its own
SELECT para_sync.sync_table('public.ev_us', name => 'evus');
-- nor a root one of whose partitions is synced on its own
CREATE TABLE public.hp (id int PRIMARY KEY, v text) PARTITION BY HASH (id);
CREATE TABLE public.hp0 PARTITION OF public.hp FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.hp1 PARTITION OF public.hp FOR VALUES WITH (MODULUS 2, REMAINDER 1);
SELECT para_sync.sync_table('public.hp1');
SELECT para_sync.sync_table('public.hp');
-- nor can a table synced on its own be attached to a synced root
CREATE TABLE public.ev_de (LIKE public.ev INCLUDING ALL);
SELECT para_sync.sync_table('public.ev_de');
ALTER TABLE public.ev ATTACH PARTITION public.ev_de FOR VALUES IN ('de');
-- DETACH ... CONCURRENTLY would publish nothing
ALTER TABLE public.ev DETACH PARTITION public.ev_us CONCURRENTLY;
-- para_sync's triggers stay on every partition
ALTER TABLE public.ev_us DISABLE TRIGGER para_sync_capture;
ALTER TABLE public.ev_us DISABLE TRIGGER ALL;
ALTER TABLE public.ev_us DISABLE TRIGGER para_sync_no_truncate;
DROP TRIGGER para_sync_no_truncate ON public.ev_us;
-- renamed, it would be left behind by DETACH and unsync_table()
ALTER TRIGGER para_sync_no_truncate ON public.ev_us RENAME TO renamed;
-- nor replaced, nor created other than as para_sync's own
CREATE FUNCTION public.noop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE OR REPLACE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON public.ev_us
	FOR EACH STATEMENT EXECUTE FUNCTION public.noop_trigger();
CREATE OR REPLACE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON public.ev_us
	FOR EACH STATEMENT EXECUTE FUNCTION para_sync.refuse_truncate();
CREATE TRIGGER para_sync_no_truncate AFTER TRUNCATE ON public.ev_nz
	FOR EACH STATEMENT EXECUTE FUNCTION para_sync.refuse_truncate();
CREATE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON public.ev_nz
	FOR EACH STATEMENT EXECUTE FUNCTION public.noop_trigger();
-- (as pg_restore does: made ENABLE ALWAYS)
CREATE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON public.ev_nz
	FOR EACH STATEMENT EXECUTE FUNCTION para_sync.refuse_truncate();
-- nor owned by an extension (DROP EXTENSION would drop it, silently)
ALTER TRIGGER para_sync_no_truncate ON public.ev_us DEPENDS ON EXTENSION plpgsql;
DROP FUNCTION public.noop_trigger();
SELECT c.relname, t.tgfoid::regproc, t.tgenabled
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE t.tgname = 'para_sync_no_truncate' AND c.relname IN ('ev_us', 'ev_nz') ORDER BY 1;
-- no unlogged partition: created, attached or set so
CREATE UNLOGGED TABLE public.ev_ul PARTITION OF public.ev FOR VALUES IN ('ul');
CREATE UNLOGGED TABLE public.ev_ul (LIKE public.ev);
ALTER TABLE public.ev ATTACH PARTITION public.ev_ul FOR VALUES IN ('ul');
DROP TABLE public.ev_ul;
ALTER TABLE public.ev_us SET UNLOGGED;
CREATE TABLE public.ulp (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE UNLOGGED TABLE public.ulp_1 PARTITION OF public.ulp FOR VALUES FROM (0) TO (10);
SELECT para_sync.sync_table('public.ulp');
DROP TABLE public.ulp;
-- a partition dropped other than by DROP TABLE
CREATE SCHEMA elsewhere;
CREATE TABLE elsewhere.ev_it PARTITION OF public.ev FOR VALUES IN ('it');
INSERT INTO public.ev VALUES ('it', 1, 'i1');
DROP SCHEMA elsewhere CASCADE;
ALTER TABLE public.ev DETACH PARTITION elsewhere.ev_it;
DROP SCHEMA elsewhere CASCADE;
-- a trigger named as para_sync's truncate trigger is not trusted by its
-- name: one that is not para_sync's is refused (its TRUNCATE would publish
-- nothing), para_sync's own, disabled before the ATTACH, made ENABLE ALWAYS
CREATE TABLE public.ev_no (LIKE public.ev);
CREATE FUNCTION public.noop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON public.ev_no
	FOR EACH STATEMENT EXECUTE FUNCTION public.noop_trigger();
ALTER TABLE public.ev ATTACH PARTITION public.ev_no FOR VALUES IN ('no');
DROP TABLE public.ev_no;
DROP FUNCTION public.noop_trigger();
CREATE TABLE public.ev_se (LIKE public.ev);
CREATE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON public.ev_se
	FOR EACH STATEMENT EXECUTE FUNCTION para_sync.refuse_truncate();
ALTER TABLE public.ev_se DISABLE TRIGGER para_sync_no_truncate;
INSERT INTO public.ev_se VALUES ('se', 1, 's1');
ALTER TABLE public.ev ATTACH PARTITION public.ev_se FOR VALUES IN ('se');
SELECT pg_temp.mark();
TRUNCATE public.ev_se;
SELECT key, op FROM pg_temp.changes('ev');
SELECT pg_temp.snap('ev:se:1') AS se1;
DROP TABLE public.ev_se;
\set VERBOSITY terse
SELECT para_sync.unsync_table('public.hp1');
SELECT para_sync.unsync_table('public.ev_de');
DROP TABLE public.ev_de;

-- == a range-partitioned root with a hash-partitioned level ==
SELECT pg_temp.mark();
SELECT para_sync.sync_table('public.hp');
INSERT INTO public.hp SELECT g, 'v' || g FROM generate_series(1, 6) g;
UPDATE public.hp SET id = id + 10 WHERE id <= 2;
SELECT count(*) FILTER (WHERE op = 'upsert') AS upserts,
	   count(*) FILTER (WHERE op = 'delete') AS deletes
  FROM pg_temp.changes('hp');
SELECT * FROM pg_temp.mismatches('hp');
CREATE TABLE public.rg (day date, n int, v text, PRIMARY KEY (day, n)) PARTITION BY RANGE (day);
CREATE TABLE public.rg_2026 PARTITION OF public.rg FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
	PARTITION BY HASH (n);
CREATE TABLE public.rg_2026_0 PARTITION OF public.rg_2026 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.rg_2026_1 PARTITION OF public.rg_2026 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE public.rg_rest PARTITION OF public.rg DEFAULT;
SELECT para_sync.sync_table('public.rg', name => 'days');
INSERT INTO public.rg SELECT '2026-06-01'::date + g, g, 'v' FROM generate_series(1, 4) g;
UPDATE public.rg SET day = day + 365 WHERE n = 1;
UPDATE public.rg SET n = n + 100 WHERE n = 2;
SELECT key, op, value FROM pg_temp.changes('days');
SELECT * FROM pg_temp.mismatches('days');

-- == unsync_table() of the root: a delete per row, captured no more ==
SELECT pg_temp.mark();
SELECT para_sync.unsync_table('public.rg');
INSERT INTO public.rg VALUES ('2026-02-01', 9, 'after');
TRUNCATE public.rg_2026_0;
SELECT key, op FROM pg_temp.changes('days');
SELECT count(*) AS triggers FROM pg_trigger t
 WHERE t.tgname LIKE 'para_sync%' AND t.tgrelid::regclass::text LIKE 'rg%';

-- == DROP TABLE of the root: a delete per row ==
SELECT pg_temp.mark();
DROP TABLE public.hp;
SELECT count(*) AS deletes FROM pg_temp.changes('hp') WHERE op = 'delete';
SELECT * FROM pg_temp.mismatches('hp');
SELECT sync_name FROM para_sync.synced_tables ORDER BY 1;

DROP TABLE public.ev, public.rg;

-- == DROP TABLE naming a root and its partitions: one delete per row ==
-- whatever the order and overlap of the names (root and partition, root,
-- sub-root and leaf, a partition named twice); each statement drops a
-- fresh two-level dd: dd_a, and dd_bc with dd_b and dd_c
CREATE FUNCTION pg_temp.dd() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	CREATE TABLE public.dd (region text, id int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
	CREATE TABLE public.dd_a PARTITION OF public.dd FOR VALUES IN ('a');
	CREATE TABLE public.dd_bc PARTITION OF public.dd FOR VALUES IN ('b', 'c')
		PARTITION BY LIST (region);
	CREATE TABLE public.dd_b PARTITION OF public.dd_bc FOR VALUES IN ('b');
	CREATE TABLE public.dd_c PARTITION OF public.dd_bc FOR VALUES IN ('c');
	PERFORM para_sync.sync_table('public.dd');
	INSERT INTO public.dd VALUES ('a', 1), ('a', 2), ('b', 1), ('c', 1);
	PERFORM pg_temp.mark();
END
$$;
-- the envelopes of each key since the mark
CREATE FUNCTION pg_temp.dd_ops() RETURNS TABLE (key text, ops text)
LANGUAGE sql AS $$
	SELECT key, string_agg(op, ' ' ORDER BY seq) FROM pg_temp.changes('dd') GROUP BY key ORDER BY key
$$;
SELECT pg_temp.dd();
DROP TABLE public.dd, public.dd_a;
SELECT * FROM pg_temp.dd_ops();
SELECT pg_temp.dd();
DROP TABLE public.dd_a, public.dd;
SELECT * FROM pg_temp.dd_ops();
SELECT pg_temp.dd();
DROP TABLE public.dd, public.dd_bc, public.dd_b;
SELECT * FROM pg_temp.dd_ops();
SELECT pg_temp.dd();
DROP TABLE public.dd_b, public.dd_bc, public.dd;
SELECT * FROM pg_temp.dd_ops();
SELECT pg_temp.dd();
DROP TABLE public.dd_bc, public.dd_c;
DROP TABLE public.dd_a, public.dd_a;
SELECT * FROM pg_temp.dd_ops();
SELECT pg_temp.mark();
DROP TABLE public.dd;
SELECT * FROM pg_temp.dd_ops();
SELECT * FROM pg_temp.mismatches('dd');
SELECT count(*) AS registered FROM para_sync.synced_tables WHERE sync_name = 'dd';

-- == a partition owned by another role: the root's owner is refused clearly ==
\set VERBOSITY default
CREATE ROLE regress_part_a;
CREATE ROLE regress_part_b;
GRANT CREATE ON SCHEMA public TO regress_part_a;
SET ROLE regress_part_a;
CREATE TABLE public.po (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE public.po_1 PARTITION OF public.po FOR VALUES FROM (0) TO (100);
RESET ROLE;
ALTER TABLE public.po_1 OWNER TO regress_part_b;
SET ROLE regress_part_a;
SELECT para_sync.sync_table('public.po');
RESET ROLE;
SELECT count(*) AS synced FROM para_sync.synced_tables WHERE sync_name = 'po';
DROP TABLE public.po;
REVOKE CREATE ON SCHEMA public FROM regress_part_a;
DROP ROLE regress_part_a, regress_part_b;
