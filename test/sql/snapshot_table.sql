-- snapshot_table(): a synced table's objects in key order (byte order of the
-- key text), page by page, each envelope exactly what snapshot(key) returns.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

-- Every key of tbl, read page by page with pages of page_size rows.
CREATE FUNCTION public.page_keys(tbl regclass, page_size int) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
	keys text[] := '{}';
	last text := NULL;
	n int;
	k text;
BEGIN
	LOOP
		n := 0;
		FOR k IN SELECT s.key FROM para_sync.snapshot_table(tbl, last, page_size) s LOOP
			keys := keys || k;
			last := k;
			n := n + 1;
		END LOOP;
		IF n > page_size THEN RAISE EXCEPTION 'page of % rows > %', n, page_size; END IF;
		EXIT WHEN n < page_size;
	END LOOP;
	RETURN keys;
END $$;

-- integer keys of every sign and length: text order is not numeric order
CREATE TABLE public.nums (id int8 PRIMARY KEY, v text, secret text);
INSERT INTO public.nums
	SELECT g, 'v' || g, 's' FROM generate_series(-120, 1050) g
	UNION ALL SELECT x, 'edge', 's' FROM unnest(ARRAY[9223372036854775807, -9223372036854775808,
		1000000000000000000, -999999999999999999, 12345678901]::int8[]) x;
SELECT para_sync.sync_table('public.nums', exclude_columns => '{secret}');
UPDATE public.nums SET v = 'changed' WHERE id IN (7, 70, -7);
UPDATE public.nums SET v = 'again' WHERE id = 7;
DELETE FROM public.nums WHERE id IN (8, 100, -100);

-- one page: every row, in byte order of the key, none deleted
SELECT count(*) AS rows,
	   count(*) = (SELECT count(*) FROM public.nums) AS all_rows,
	   array_agg(key) = array_agg(key ORDER BY key COLLATE "C") AS in_key_order
  FROM (SELECT key FROM para_sync.snapshot_table('public.nums', NULL, 1000000)) s;
SELECT array_agg(key ORDER BY key COLLATE "C")
	   = (SELECT array_agg('nums:' || id ORDER BY ('nums:' || id) COLLATE "C") FROM public.nums) AS same_keys
  FROM para_sync.snapshot_table('public.nums', NULL, 1000000);
-- deleted rows are absent
SELECT key FROM para_sync.snapshot_table('public.nums', NULL, 1000000)
 WHERE key IN ('nums:8', 'nums:100', 'nums:-100');
-- paging with any page size gives the same keys as one page
SELECT ps, public.page_keys('public.nums', ps)
		   = (SELECT array_agg(key) FROM para_sync.snapshot_table('public.nums', NULL, 1000000)) AS same
  FROM unnest(ARRAY[1, 2, 7, 100, 999, 1000, 5000]) ps;
-- every envelope is exactly snapshot(key): value, sequence, op snapshot
SELECT count(*) FILTER (WHERE envelope <> para_sync.snapshot(key)) AS differ
  FROM para_sync.snapshot_table('public.nums', NULL, 1000000);
SELECT para_sync.envelope_to_jsonb(envelope)
  FROM para_sync.snapshot_table('public.nums', 'nums:69', 3);
-- page boundaries: after_key anywhere, even if no such key exists
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:-9', 4);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:1049', 4);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:1049x', 2);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:9', 3);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:999', 3);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:99', 3);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:9223372036854775807', 3);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:', 3);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums', 2);
SELECT key FROM para_sync.snapshot_table('public.nums', 'a', 2);
SELECT count(*) FROM para_sync.snapshot_table('public.nums', 'nums;', 2);
SELECT count(*) FROM para_sync.snapshot_table('public.nums', 'zzz', 2);
SELECT key FROM para_sync.snapshot_table('public.nums', NULL, 3);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:-', 3);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:-99', 3);
-- the default page is 1000 rows
SELECT count(*) FROM para_sync.snapshot_table('public.nums');

-- small integer keys
CREATE TABLE public.small (id int2 PRIMARY KEY);
INSERT INTO public.small SELECT g FROM generate_series(-32768, 32767, 997) g;
INSERT INTO public.small VALUES (32767), (0), (-1);
SELECT para_sync.sync_table('public.small');
SELECT public.page_keys('public.small', 3)
	   = (SELECT array_agg('small:' || id ORDER BY ('small:' || id) COLLATE "C") FROM public.small) AS same;

-- text and composite keys (escaped): the generic path, same rules
CREATE TABLE public.words (w text, n int, v int, PRIMARY KEY (w, n));
INSERT INTO public.words
	SELECT x, g, g FROM unnest(ARRAY['a', 'a.b', 'a~', 'A', 'é', '-', '_', 'a b', 'a:b', '10', '9']) x,
						generate_series(1, 12) g;
SELECT para_sync.sync_table('public.words');
DELETE FROM public.words WHERE w = 'a~' AND n = 3;
UPDATE public.words SET v = -1 WHERE w = 'é';
SELECT count(*) AS rows,
	   array_agg(key) = array_agg(key ORDER BY key COLLATE "C") AS in_key_order,
	   count(*) FILTER (WHERE envelope <> para_sync.snapshot(key)) AS differ
  FROM para_sync.snapshot_table('public.words', NULL, 1000000);
SELECT ps, public.page_keys('public.words', ps)
		   = (SELECT array_agg(key) FROM para_sync.snapshot_table('public.words', NULL, 1000000)) AS same
  FROM unnest(ARRAY[1, 5, 12, 131]) ps;
SELECT key FROM para_sync.snapshot_table('public.words', NULL, 5);
SELECT key FROM para_sync.snapshot_table('public.words', 'words:a%7E:12', 3);
SELECT count(*) FROM para_sync.snapshot_table('public.words', 'words:a%7E:3', 1000)
 WHERE key = 'words:a%7E:3';

-- row-level security and column grants apply; excluded columns never appear
CREATE ROLE para_sync_pager;
GRANT SELECT (id, v) ON public.nums TO para_sync_pager;
ALTER TABLE public.nums ENABLE ROW LEVEL SECURITY;
CREATE POLICY small_only ON public.nums FOR SELECT USING (id BETWEEN 0 AND 20);
SET ROLE para_sync_pager;
SELECT key FROM para_sync.snapshot_table('public.nums', NULL, 100);
SELECT key FROM para_sync.snapshot_table('public.nums', 'nums:18', 100);
SELECT count(*) FILTER (WHERE envelope <> para_sync.snapshot(key)) AS differ,
	   bool_or(para_sync.envelope_to_jsonb(envelope)->'value' ? 'secret') AS leaks_secret
  FROM para_sync.snapshot_table('public.nums', NULL, 100);
RESET ROLE;
-- as the owner, the excluded column is absent all the same
SELECT bool_or(para_sync.envelope_to_jsonb(envelope)->'value' ? 'secret') AS has_secret
  FROM para_sync.snapshot_table('public.nums', NULL, 100000);
REVOKE SELECT (v) ON public.nums FROM para_sync_pager;
SET ROLE para_sync_pager;
\set VERBOSITY terse
SELECT key FROM para_sync.snapshot_table('public.nums', NULL, 10);
\set VERBOSITY default
RESET ROLE;

-- a transaction sees its own changes, consistently with snapshot()
BEGIN;
UPDATE public.nums SET v = 'in xact' WHERE id = 5;
INSERT INTO public.nums VALUES (5000, 'new', 's');
DELETE FROM public.nums WHERE id = 6;
SELECT key, para_sync.envelope_to_jsonb(envelope)->'value'->>'v' AS v,
	   para_sync.envelope_to_jsonb(envelope)->'sequence' AS seq,
	   envelope = para_sync.snapshot(key) AS same
  FROM para_sync.snapshot_table('public.nums', 'nums:499', 4);
ROLLBACK;

-- bad input
SELECT * FROM para_sync.snapshot_table('public.nums', NULL, 0);
SELECT * FROM para_sync.snapshot_table('public.nums', NULL, NULL);
SELECT * FROM para_sync.snapshot_table(NULL);
CREATE TABLE public.not_synced (id int PRIMARY KEY);
SELECT * FROM para_sync.snapshot_table('public.not_synced');

-- paging takes no SERIALIZABLE predicate locks on the outbox and the
-- counters (every writer writes their index pages), as snapshot() takes
-- none; the rows read are locked as any read of them is
CREATE VIEW public.store_siread_locks AS
SELECT c.relname, l.locktype
  FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
 WHERE l.mode = 'SIReadLock' AND l.pid = pg_catalog.pg_backend_pid()
   AND c.relnamespace = 'para_sync'::regnamespace
   AND c.relname IN ('outbox', 'outbox_pkey', 'counters', 'counters_pkey')
 GROUP BY 1, 2;
SELECT count(*) AS in_outbox FROM para_sync.outbox WHERE key LIKE 'words:%';
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) AS rows FROM para_sync.snapshot_table('public.words', NULL, 1000);
SELECT * FROM public.store_siread_locks ORDER BY 1, 2;
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT length(para_sync.snapshot('words:a:1')) > 0 AS read;
SELECT * FROM public.store_siread_locks ORDER BY 1, 2;
COMMIT;
DROP VIEW public.store_siread_locks;

-- ==== snapshot_page(): pages in primary-key order, O(page) for every key type

-- Every key of tbl through snapshot_page(), page by page, each page resumed
-- from the previous page's last key alone.
CREATE FUNCTION public.pk_page_keys(tbl regclass, page_size int) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
	keys text[] := '{}';
	last text := NULL;
	n int;
	k text;
BEGIN
	LOOP
		n := 0;
		FOR k IN SELECT s.key FROM para_sync.snapshot_page(tbl, last, page_size) s LOOP
			keys := keys || k;
			last := k;
			n := n + 1;
		END LOOP;
		IF n > page_size THEN RAISE EXCEPTION 'page of % rows > %', n, page_size; END IF;
		EXIT WHEN n < page_size;
	END LOOP;
	RETURN keys;
END $$;
-- One page of every row: same keys as snapshot_table(), same envelopes as
-- snapshot(key), and the keys of any page size equal to it.
CREATE FUNCTION public.pk_page_check(tbl regclass, sizes int[],
	OUT rows bigint, OUT same_keys bool, OUT differ bigint, OUT paged_same bool)
LANGUAGE plpgsql AS $$
DECLARE
	one text[];
BEGIN
	SELECT count(*), array_agg(key), count(*) FILTER (WHERE envelope <> para_sync.snapshot(key))
	  INTO rows, one, differ FROM para_sync.snapshot_page(tbl, NULL, 1000000);
	same_keys := (SELECT array_agg(k ORDER BY k COLLATE "C") FROM unnest(one) k)
				 = (SELECT array_agg(key ORDER BY key COLLATE "C")
					  FROM para_sync.snapshot_table(tbl, NULL, 1000000));
	paged_same := true;
	FOR i IN 1 .. array_length(sizes, 1) LOOP
		paged_same := paged_same AND public.pk_page_keys(tbl, sizes[i]) = one;
	END LOOP;
END $$;

-- integers: primary-key order, not text order
SELECT * FROM public.pk_page_check('public.nums', ARRAY[1, 2, 7, 100, 999, 1000, 5000]);
SELECT key FROM para_sync.snapshot_page('public.nums', NULL, 3);
SELECT key FROM para_sync.snapshot_page('public.nums', 'nums:9', 3);
SELECT key FROM para_sync.snapshot_page('public.nums', 'nums:99', 3);
SELECT key FROM para_sync.snapshot_page('public.nums', 'nums:1049', 4);
-- after_key need not exist (a deleted row): the page goes on after its value
SELECT key FROM para_sync.snapshot_page('public.nums', 'nums:7', 2);
SELECT key FROM para_sync.snapshot_page('public.nums', 'nums:8', 2);
SELECT key FROM para_sync.snapshot_page('public.nums', 'nums:9223372036854775807', 3);
SELECT count(*) FROM para_sync.snapshot_page('public.nums');
SELECT array_agg((para_sync.envelope_to_jsonb(envelope)->'value'->>'id')::int8)
	   = (SELECT array_agg(id ORDER BY id) FROM public.nums) AS pk_order
  FROM para_sync.snapshot_page('public.nums', NULL, 1000000);

-- uuid
CREATE TABLE public.uuids (id uuid PRIMARY KEY, v int);
INSERT INTO public.uuids
	SELECT md5(g::text)::uuid, g FROM generate_series(1, 300) g;
INSERT INTO public.uuids VALUES ('00000000-0000-0000-0000-000000000000', 0),
	('ffffffff-ffff-ffff-ffff-ffffffffffff', -1);
SELECT para_sync.sync_table('public.uuids');
UPDATE public.uuids SET v = v + 1000 WHERE v % 7 = 0;
DELETE FROM public.uuids WHERE v % 11 = 0;
-- sequences from the outbox, from the counters (consumed) and none (0)
SELECT count(*) AS consumed FROM (SELECT para_sync.ack(array_agg(key), array_agg(seq))
  FROM (SELECT key, seq FROM para_sync.outbox WHERE key LIKE 'uuids:%' AND key < 'uuids:8') o) a;
SELECT (SELECT count(*) FROM para_sync.counters WHERE key LIKE 'uuids:%') AS in_counters,
	   (SELECT count(*) FROM para_sync.outbox WHERE key LIKE 'uuids:%') AS in_outbox;
SELECT * FROM public.pk_page_check('public.uuids', ARRAY[1, 10, 100, 282, 1000]);
SELECT array_agg((para_sync.envelope_to_jsonb(envelope)->'value'->>'id')::uuid)
	   = (SELECT array_agg(id ORDER BY id) FROM public.uuids) AS pk_order
  FROM para_sync.snapshot_page('public.uuids', NULL, 1000000);
SELECT key FROM para_sync.snapshot_page('public.uuids', NULL, 2);
SELECT key FROM para_sync.snapshot_page('public.uuids', 'uuids:7f000000-0000-0000-0000-000000000000', 2);

-- text keys that need escaping, in the column's collation order
CREATE TABLE public.texts (t text PRIMARY KEY, v int);
INSERT INTO public.texts
	SELECT x || g, g FROM unnest(ARRAY['a', 'a.b', 'a~', 'A', 'é', '-', '_', 'a b', 'a:b', '10', '9',
									   '%', 'a%2E', '', 'ü:', 'Z']) x,
						  generate_series(1, 9) g;
INSERT INTO public.texts VALUES ('', 0);
SELECT para_sync.sync_table('public.texts');
UPDATE public.texts SET v = -v WHERE v % 3 = 0;
SELECT count(*) AS consumed FROM (SELECT para_sync.ack(array_agg(key), array_agg(seq))
  FROM (SELECT key, seq FROM para_sync.outbox WHERE key LIKE 'texts:%' AND key < 'texts:a') o) a;
SELECT (SELECT count(*) FROM para_sync.counters WHERE key LIKE 'texts:%') AS in_counters,
	   (SELECT count(*) FROM para_sync.outbox WHERE key LIKE 'texts:%') AS in_outbox;
SELECT * FROM public.pk_page_check('public.texts', ARRAY[1, 4, 9, 145, 146]);
SELECT array_agg(para_sync.envelope_to_jsonb(envelope)->'value'->>'t')
	   = (SELECT array_agg(t ORDER BY t) FROM public.texts) AS pk_order
  FROM para_sync.snapshot_page('public.texts', NULL, 1000000);
SELECT key FROM para_sync.snapshot_page('public.texts', NULL, 2);
SELECT key FROM para_sync.snapshot_page('public.texts', 'texts:a%2E%252E1', 2);
-- a text key under the C collation pages in byte order of the raw text
CREATE TABLE public.ctexts (t text COLLATE "C" PRIMARY KEY);
INSERT INTO public.ctexts SELECT t FROM public.texts;
SELECT para_sync.sync_table('public.ctexts');
SELECT * FROM public.pk_page_check('public.ctexts', ARRAY[3, 145]);
SELECT array_agg(para_sync.envelope_to_jsonb(envelope)->'value'->>'t')
	   = (SELECT array_agg(t ORDER BY t COLLATE "C") FROM public.texts) AS pk_order
  FROM para_sync.snapshot_page('public.ctexts', NULL, 1000000);

-- numeric and date keys; a key written 1.00 pages as 1
CREATE TABLE public.amounts (n numeric PRIMARY KEY);
INSERT INTO public.amounts VALUES (-1.5), (0), (1.00), (1.05), (2), (10), (1e20), ('NaN'), (-0.001);
SELECT para_sync.sync_table('public.amounts');
SELECT * FROM public.pk_page_check('public.amounts', ARRAY[1, 2, 9]);
SELECT key FROM para_sync.snapshot_page('public.amounts', NULL, 100);
SELECT key FROM para_sync.snapshot_page('public.amounts', 'amounts:1', 2);
CREATE TABLE public.days (d date PRIMARY KEY);
INSERT INTO public.days SELECT DATE '1999-12-25' + g FROM generate_series(0, 20) g;
INSERT INTO public.days VALUES ('-infinity'), ('infinity');
SELECT para_sync.sync_table('public.days');
SELECT * FROM public.pk_page_check('public.days', ARRAY[1, 5, 23]);
SELECT key FROM para_sync.snapshot_page('public.days', 'days:2000-01-05', 3);

-- composite keys: (text, int), pages crossing the first column's groups
SELECT * FROM public.pk_page_check('public.words', ARRAY[1, 5, 12, 13, 131]);
SELECT array_agg(ROW(para_sync.envelope_to_jsonb(envelope)->'value'->>'w',
					 (para_sync.envelope_to_jsonb(envelope)->'value'->>'n')::int)::text)
	   = (SELECT array_agg(ROW(w, n)::text ORDER BY w, n) FROM public.words) AS pk_order
  FROM para_sync.snapshot_page('public.words', NULL, 1000000);
SELECT key FROM para_sync.snapshot_page('public.words', 'words:a%7E:12', 3);
SELECT key FROM para_sync.snapshot_page('public.words', 'words:a%7E:2', 3);

-- row-level security and column grants apply
GRANT SELECT (id, v) ON public.nums TO para_sync_pager;
SET ROLE para_sync_pager;
SELECT key FROM para_sync.snapshot_page('public.nums', NULL, 100);
SELECT key FROM para_sync.snapshot_page('public.nums', 'nums:18', 100);
SELECT count(*) FILTER (WHERE envelope <> para_sync.snapshot(key)) AS differ
  FROM para_sync.snapshot_page('public.nums', NULL, 100);
RESET ROLE;

-- no predicate locks on the outbox and counters either
CREATE VIEW public.store_siread_locks AS
SELECT c.relname, l.locktype
  FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
 WHERE l.mode = 'SIReadLock' AND l.pid = pg_catalog.pg_backend_pid()
   AND c.relnamespace = 'para_sync'::regnamespace
   AND c.relname IN ('outbox', 'outbox_pkey', 'counters', 'counters_pkey')
 GROUP BY 1, 2;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) AS rows FROM para_sync.snapshot_page('public.words', 'words:a:3', 1000);
SELECT * FROM public.store_siread_locks ORDER BY 1, 2;
COMMIT;
DROP VIEW public.store_siread_locks;

-- bad input: after_key must be a key of the table
SELECT * FROM para_sync.snapshot_page('public.nums', 'users:1', 2);
SELECT * FROM para_sync.snapshot_page('public.nums', 'nums', 2);
SELECT * FROM para_sync.snapshot_page('public.nums', 'nums:x', 2);
SELECT * FROM para_sync.snapshot_page('public.nums', 'nums:1:2', 2);
SELECT * FROM para_sync.snapshot_page('public.nums', 'nums:a.b', 2);
SELECT * FROM para_sync.snapshot_page('public.words', 'words:a', 2);
SELECT * FROM para_sync.snapshot_page('public.nums', NULL, 0);
SELECT * FROM para_sync.snapshot_page(NULL);
SELECT * FROM para_sync.snapshot_page('public.not_synced');

DROP TABLE public.uuids, public.texts, public.ctexts, public.amounts, public.days;
DROP FUNCTION public.pk_page_check(regclass, int[]), public.pk_page_keys(regclass, int);

DROP TABLE public.nums, public.small, public.words, public.not_synced;
DROP FUNCTION public.page_keys(regclass, int);
DROP ROLE para_sync_pager;
