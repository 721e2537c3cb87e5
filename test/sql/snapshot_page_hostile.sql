-- snapshot_page() against hostile callers: a role with SELECT only, or
-- less, passing any after_key, max_rows and regclass it likes.  Each gets
-- a clear error (never an internal one) or exactly the rows it may see, in
-- primary-key order, page after page.
SET client_min_messages = warning;

CREATE ROLE para_sync_hostile;
CREATE TABLE public.hu (id uuid PRIMARY KEY, v text);
CREATE TABLE public.hn (id numeric PRIMARY KEY, v text);
CREATE TABLE public.hd (id date PRIMARY KEY, v text);
CREATE TABLE public.ht (id text COLLATE "und-x-icu" PRIMARY KEY, owner name, v text);
CREATE TABLE public.hc (b int, a varchar(10) COLLATE "C", v text, PRIMARY KEY (a, b));
CREATE TABLE public.hcol (id int PRIMARY KEY, v text, secret text);
SELECT para_sync.sync_table(x)
  FROM unnest('{public.hu,public.hn,public.hd,public.ht,public.hc,public.hcol}'::regclass[]) x;
INSERT INTO public.hu VALUES ('00000000-0000-0000-0000-000000000001', 'x'),
	('7f000000-0000-0000-0000-000000000000', 'x'), ('ffffffff-ffff-ffff-ffff-ffffffffffff', 'x');
INSERT INTO public.hn VALUES ('NaN', 'x'), (1.5, 'x'), (-2, 'x'), (1e20, 'x');
INSERT INTO public.hd VALUES ('infinity', 'x'), ('-infinity', 'x'), ('2020-01-01', 'x');
-- und-x-icu: 'a' < 'A' < 'a b' < 'ab' < 'B' < 'c', unlike byte order
INSERT INTO public.ht SELECT k, CASE WHEN k IN ('A', 'ab', 'c') THEN 'para_sync_hostile' END, 'x'
  FROM unnest('{a,B,c,a b,ab,A}'::text[]) k;
INSERT INTO public.hc VALUES (1, 'a', 'x'), (10, 'a', 'x'), (2, 'b', 'x'), (2, 'B', 'x');
INSERT INTO public.hcol VALUES (1, 'x', 's');
GRANT SELECT ON public.hu, public.hn, public.hd, public.ht, public.hc TO para_sync_hostile;
GRANT SELECT (id, v) ON public.hcol TO para_sync_hostile;
ALTER TABLE public.ht ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON public.ht USING (owner = current_user);

-- every key of tbl, pages of page_size, each resumed from the last key
CREATE FUNCTION public.hostile_pages(tbl regclass, page_size int) RETURNS text[]
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
		EXIT WHEN n < page_size;
	END LOOP;
	RETURN keys;
END $$;

-- the owner (no policy applies) pages all six, in und-x-icu's order
SELECT public.hostile_pages('public.ht', 1) AS p1, public.hostile_pages('public.ht', 4) AS p4;

SET ROLE para_sync_hostile;

-- values of every kind the key types read, canonical or not
SELECT key FROM para_sync.snapshot_page('public.hn');
SELECT key FROM para_sync.snapshot_page('public.hn', 'hn:NaN', 5);
SELECT key FROM para_sync.snapshot_page('public.hn', 'hn:-Infinity', 2);
SELECT key FROM para_sync.snapshot_page('public.hd', 'hd:-infinity', 5);
SELECT key FROM para_sync.snapshot_page('public.hd', 'hd:infinity', 5);
SELECT key FROM para_sync.snapshot_page('public.hu', 'hu:7F000000000000000000000000000000', 5);
SELECT key FROM para_sync.snapshot_page('public.hc', 'hc:a:1', 5);
SELECT key FROM para_sync.snapshot_page('public.hc', 'hc::-1', 5);

-- paging under a non-C collation and row-level security: exactly the rows
-- the policy shows, in the collation's order, whatever the page size
SELECT key FROM para_sync.snapshot_page('public.ht');
SELECT public.hostile_pages('public.ht', 1) AS p1, public.hostile_pages('public.ht', 2) AS p2;
-- a cursor on a row the policy hides (or none at all) leaks nothing
SELECT key FROM para_sync.snapshot_page('public.ht', 'ht:a', 1);
SELECT key FROM para_sync.snapshot_page('public.ht', 'ht:zzz', 1);
SELECT public.hostile_pages('public.hc', 1) AS composite;

-- bad values: class 22 errors
SELECT key FROM para_sync.snapshot_page('public.hu', 'hu:zz', 5);
SELECT key FROM para_sync.snapshot_page('public.hu', 'hu:%ZZ', 5);
SELECT key FROM para_sync.snapshot_page('public.hu', 'hu:%4a', 5);
SELECT key FROM para_sync.snapshot_page('public.hu', 'hu:%', 5);
SELECT key FROM para_sync.snapshot_page('public.ht', 'ht:%00', 5);
SELECT key FROM para_sync.snapshot_page('public.hu', 'hu:' || repeat('a', 100000), 5);
SELECT key FROM para_sync.snapshot_page('public.hu', 'ht:a', 5);
SELECT key FROM para_sync.snapshot_page('public.hc', 'hc:a', 5);
SELECT key FROM para_sync.snapshot_page('public.hc', 'hc:a:1:', 5);
SELECT key FROM para_sync.snapshot_page('public.hc', 'hc:a:99999999999', 5);
SELECT key FROM para_sync.snapshot_page('public.hd', 'hd:2020-02-30', 5);
SELECT key FROM para_sync.snapshot_page('public.hu', NULL, -1);
SELECT key FROM para_sync.snapshot_page('public.hu', NULL, NULL);
SELECT count(*) FROM para_sync.snapshot_page('public.hu', NULL, 2147483647);

-- tables it may not read, or that are no synced tables at all
SELECT key FROM para_sync.snapshot_page('public.hcol', NULL, 5);
SELECT key FROM para_sync.snapshot_page(0, NULL, 1);
SELECT key FROM para_sync.snapshot_table(0, NULL, 1);
SELECT key FROM para_sync.snapshot_page(4000000000::oid::regclass, NULL, 1);
SELECT key FROM para_sync.snapshot_page('pg_catalog.pg_class', NULL, 1);
SELECT key FROM para_sync.snapshot_page('para_sync.outbox', NULL, 1);
SELECT key FROM para_sync.snapshot_page('pg_catalog.pg_class_oid_index', NULL, 1);
RESET ROLE;

-- a table dropped once its OID was taken
CREATE TABLE public.hgone (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.hgone');
SELECT set_config('para_sync_test.gone', 'public.hgone'::regclass::oid::text, false) IS NOT NULL AS taken;
DROP TABLE public.hgone;
DO $$
BEGIN
	PERFORM para_sync.snapshot_page(current_setting('para_sync_test.gone')::oid, NULL, 1);
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING 'SQLSTATE %', SQLSTATE;
END $$;

-- a policy that rebuilds the table's cache entry while a page is read
-- (set_schema_version() invalidates it, snapshot() rebuilds it): the page
-- and snapshot() keep using the entry they began with, which is freed only
-- after them (it was freed under them: a use after free that a build
-- without memory checking does not show)
CREATE ROLE para_sync_hostile_owner;
GRANT CREATE, USAGE ON SCHEMA public TO para_sync_hostile_owner;
SET ROLE para_sync_hostile_owner;
CREATE TABLE public.hev (id int PRIMARY KEY, v text);
SELECT para_sync.sync_table('public.hev');
INSERT INTO public.hev SELECT g, 'v' || g FROM generate_series(1, 300) g;
CREATE FUNCTION public.hev_policy(i int) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	IF i % 50 = 0 THEN
		PERFORM para_sync.set_schema_version('public.hev', 'v' || i);
		PERFORM para_sync.snapshot('hev:1');
	END IF;
	RETURN true;
END $$;
ALTER TABLE public.hev ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY rebuild ON public.hev USING (public.hev_policy(id));
SELECT count(*) AS rows, count(DISTINCT key) AS keys FROM para_sync.snapshot_page('public.hev', NULL, 1000);
SELECT count(*) AS rows FROM para_sync.snapshot_table('public.hev', NULL, 1000);
SELECT length(para_sync.snapshot('hev:7')) > 0 AS read;
DROP TABLE public.hev;
DROP FUNCTION public.hev_policy(int);
RESET ROLE;
DROP OWNED BY para_sync_hostile_owner;
DROP ROLE para_sync_hostile_owner;

DROP TABLE public.hu, public.hn, public.hd, public.ht, public.hc, public.hcol;
DROP FUNCTION public.hostile_pages(regclass, int);
DROP ROLE para_sync_hostile;
