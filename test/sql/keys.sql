-- Object keys: <sync name>:<pk1>[:<pk2>...], each part escaped so
-- that a key is always one NATS subject token.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.mail (addr text PRIMARY KEY, n int);
SELECT para_sync.sync_table('public.mail');
INSERT INTO public.mail VALUES
	('a@b.com', 1), ('x.y', 2), ('star*', 3), ('gt>', 4), ('two words', 5),
	('100%', 6), ('colon:in:key', 7), ('héllo', 8), ('tab	nl
end', 9), ('', 10), ('Plain_Key-09', 11), ('日本', 12);
SELECT key, seq FROM para_sync.outbox ORDER BY (para_sync.envelope_to_jsonb(envelope)->'value'->>'n')::int;

-- no key can carry a subject-breaking byte
SELECT count(*) AS bad_keys FROM para_sync.outbox WHERE key !~ '^[A-Za-z0-9_%:-]+$';

-- every escaped key finds its row again
SELECT o.key, s->'value'->>'addr' = m.addr AS roundtrip, (s->>'sequence')::int AS seq
  FROM para_sync.outbox o
  JOIN public.mail m ON (para_sync.envelope_to_jsonb(o.envelope)->'value'->>'n')::int = m.n,
	   para_sync.snapshot_json(o.key) s
 ORDER BY m.n;

-- composite keys, in primary-key index order (not column order)
CREATE TABLE public.order_lines (line int, order_id int, qty int, PRIMARY KEY (order_id, line));
SELECT para_sync.sync_table('public.order_lines', name => 'orders');
INSERT INTO public.order_lines VALUES (7, 42, 1);
SELECT key FROM para_sync.outbox WHERE key LIKE 'orders:%';
SELECT para_sync.snapshot_json('orders:42:7') - 'schema_version';

-- other key types use their text output
CREATE TABLE public.by_uuid (id uuid PRIMARY KEY);
SELECT para_sync.sync_table('public.by_uuid');
INSERT INTO public.by_uuid VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
CREATE TABLE public.by_date (d date PRIMARY KEY, t timestamptz);
SELECT para_sync.sync_table('public.by_date');
INSERT INTO public.by_date VALUES ('2024-01-02', NULL);
SELECT key FROM para_sync.outbox WHERE key LIKE 'by_%' ORDER BY key;

-- keys do not depend on the session's DateStyle, TimeZone or float settings
CREATE TABLE public.events (at timestamptz, day date, x float8, span interval,
							PRIMARY KEY (at, day, x, span));
SELECT para_sync.sync_table('public.events');
SET datestyle = 'SQL, DMY';
SET timezone = 'America/New_York';
SET extra_float_digits = 0;
SET intervalstyle = 'sql_standard';
INSERT INTO public.events VALUES ('2024-01-02 03:04:05.5+00', '2024-03-04', 0.1, '1 day 2 hours');
RESET ALL;
SET client_min_messages = warning;
SET datestyle = 'German';
SET timezone = 'Asia/Tokyo';
DELETE FROM public.events;
SELECT key, seq, para_sync.envelope_to_jsonb(envelope)->>'op' AS op
  FROM para_sync.outbox WHERE key LIKE 'events:%' ORDER BY seq;
RESET ALL;
SET client_min_messages = warning;
SELECT key FROM para_sync.outbox WHERE key LIKE 'events:%' LIMIT 1 \gset
SELECT para_sync.snapshot_json(:'key')->'sequence' AS seq_by_key;

-- keys longer than 1024 bytes are refused at write time, and nothing is kept
INSERT INTO public.mail VALUES (repeat('x', 1020), 99);
INSERT INTO public.mail VALUES (repeat('.', 400), 99);
SELECT count(*) FROM public.mail WHERE n = 99;
INSERT INTO public.mail VALUES (repeat('x', 1019), 98);
SELECT length(key) FROM para_sync.outbox WHERE key LIKE 'mail:xxx%';

-- malformed keys given to snapshot()
SELECT para_sync.snapshot('mail');
SELECT para_sync.snapshot('no.such:1');
SELECT para_sync.snapshot('nosuch:1');
SELECT para_sync.snapshot('orders:42');
SELECT para_sync.snapshot('orders:42:7:1');
SELECT para_sync.snapshot('orders:abc:7');
SELECT para_sync.snapshot('mail:a%40b%2ecom');
SELECT para_sync.snapshot('mail:%41');
SELECT para_sync.snapshot('mail:a%4');
SELECT para_sync.snapshot('mail:a.b');
SELECT para_sync.snapshot('mail:%00');
SELECT para_sync.snapshot('mail:' || repeat('x', 1030));

DROP TABLE public.mail, public.order_lines, public.by_uuid, public.by_date, public.events;

-- One key grammar for server and client (docs/protocol.md, "Grammar"): the
-- edge-case rows of test/key_cases.txt get exactly the keys listed there
-- (the client's test_decode reads the same file and must accept each one),
-- and snapshot() refuses every key of test/key_cases_bad.txt (which the
-- client refuses too).  Empty parts are keys: '' is "kc1:".
\getenv abs_srcdir PG_ABS_SRCDIR
\set cases :abs_srcdir '/key_cases.txt'
\set bad_cases :abs_srcdir '/key_cases_bad.txt'
CREATE TEMP TABLE key_cases (ord serial, part1 text, part2 text, key text);
COPY key_cases (part1, part2, key) FROM :'cases' WITH (HEADER);
CREATE TEMP TABLE key_cases_bad (ord serial, key text);
COPY key_cases_bad (key) FROM :'bad_cases' WITH (HEADER);
CREATE TABLE public.kc_one (id text PRIMARY KEY, ord int);
CREATE TABLE public.kc_two (a text, b text, ord int, PRIMARY KEY (a, b));
SELECT para_sync.sync_table('public.kc_one', name => 'kc1');
SELECT para_sync.sync_table('public.kc_two', name => 'kc2');
TRUNCATE para_sync.outbox;
INSERT INTO public.kc_one SELECT part1, ord FROM key_cases WHERE part2 IS NULL;
INSERT INTO public.kc_two SELECT part1, part2, ord FROM key_cases WHERE part2 IS NOT NULL;
SELECT count(*) AS cases, count(*) FILTER (WHERE part2 IS NULL) AS one_column,
	   max(length(key)) AS longest_key FROM key_cases;
-- the key of each case, as the writer's trigger published it
SELECT c.ord, left(c.key, 40) AS key, o.key = c.key AS as_listed
  FROM key_cases c
  LEFT JOIN para_sync.outbox o
	ON (para_sync.envelope_to_jsonb(o.envelope)->'value'->>'ord')::int = c.ord
	   AND o.key LIKE 'kc_:%'
 ORDER BY c.ord;
-- snapshot_table() pages through them (page size 5) with the same keys
CREATE FUNCTION pg_temp.all_keys(tbl regclass) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	after text;
	k text;
	n int;
BEGIN
	LOOP
		n := 0;
		FOR k IN SELECT t.key FROM para_sync.snapshot_table(tbl, after, 5) t LOOP
			RETURN NEXT k;
			after := k;
			n := n + 1;
		END LOOP;
		EXIT WHEN n < 5;
	END LOOP;
END $$;
SELECT (SELECT array_agg(k ORDER BY k) FROM pg_temp.all_keys('public.kc_one') k) =
	   (SELECT array_agg(key ORDER BY key) FROM key_cases WHERE part2 IS NULL) AS one_column_paged,
	   (SELECT array_agg(k ORDER BY k) FROM pg_temp.all_keys('public.kc_two') k) =
	   (SELECT array_agg(key ORDER BY key) FROM key_cases WHERE part2 IS NOT NULL) AS two_column_paged;
-- snapshot(key) finds each case's row again
SELECT c.ord, s->'value'->>'ord' = c.ord::text AS found
  FROM key_cases c, para_sync.snapshot_json(c.key) s
 ORDER BY c.ord;
-- every key outside the grammar is refused, whether or not its sync name
-- has a table (22023; 54000 when longer than 1024 bytes)
CREATE FUNCTION pg_temp.snapshot_error(k text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM para_sync.snapshot(k);
	RETURN 'accepted';
EXCEPTION WHEN others THEN
	RETURN SQLSTATE;
END $$;
SELECT ord, left(to_json(key)::text, 30) AS key, pg_temp.snapshot_error(key) AS sqlstate
  FROM key_cases_bad ORDER BY ord;
DROP TABLE public.kc_one, public.kc_two;
