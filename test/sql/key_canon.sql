-- Keys are a function of the primary key's value: equal values (by the
-- key's btree equality) give one key, whatever the session settings; a key
-- type without a canonical text is refused; snapshot(key) answers only for
-- the exact key.
SET client_min_messages = warning;
SET timezone = 'UTC';
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE FUNCTION public.stream(prefix text) RETURNS TABLE (key text, seq int8, op text, value jsonb)
LANGUAGE sql AS $$
	SELECT o.key, o.seq, e->>'op', e->'value'
	  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
	 WHERE o.key LIKE prefix || ':%' ORDER BY o.key, o.seq $$;

-- numeric: 1.0 = 1.00 = 1, -0.0 = 0, NaN
CREATE TABLE public.num (id numeric PRIMARY KEY, v text);
SELECT para_sync.sync_table('public.num');
INSERT INTO public.num VALUES (1.0, 'a');
UPDATE public.num SET id = 1.00;
UPDATE public.num SET v = 'b';
INSERT INTO public.num VALUES (-0.0, 'z'), ('NaN', 'n'), (12.50, 'x'), (100, 'h'),
	(-0.000120, 'm'), ('Infinity', 'i'), ('-Infinity', 'j');
UPDATE public.num SET id = 1e2 WHERE id = 100;
SELECT * FROM public.stream('num');
SELECT para_sync.snapshot_json('num:1') - 'schema_version' AS canonical;
-- keys that are not the canonical text of any value read as nil
SELECT para_sync.snapshot_json('num:1%2E0') - 'schema_version' AS ghost;
SELECT para_sync.snapshot_json('num:1%2E00') - 'schema_version' AS ghost;
SELECT para_sync.snapshot_json('num:-0') - 'schema_version' AS ghost;
SELECT para_sync.snapshot_json('num:1e2')->'value' AS ghost,
	   para_sync.snapshot_json('num:100')->'value' AS live;

-- float: -0 = 0, every NaN is one key
CREATE TABLE public.flt (id float8 PRIMARY KEY, v int);
SELECT para_sync.sync_table('public.flt');
INSERT INTO public.flt VALUES ('-0', 1), ('NaN', 2), (0.1, 3);
UPDATE public.flt SET id = 0 WHERE v = 1;
UPDATE public.flt SET id = 'NaN'::float8 + 1 WHERE v = 2;
SELECT * FROM public.stream('flt');
SELECT para_sync.snapshot_json('flt:-0')->'value' AS ghost, para_sync.snapshot_json('flt:0')->'value' AS live;

-- interval: '1 day' = '24 hours', '1 mon' = '30 days'
CREATE TABLE public.iv (id interval PRIMARY KEY, v int);
SELECT para_sync.sync_table('public.iv');
INSERT INTO public.iv VALUES ('1 day', 1), ('30 days', 2), ('-1 day +2 hours', 3);
UPDATE public.iv SET id = '24 hours' WHERE v = 1;
UPDATE public.iv SET id = '1 mon' WHERE v = 2;
UPDATE public.iv SET id = '-22 hours' WHERE v = 3;
SET intervalstyle = 'iso_8601';
UPDATE public.iv SET v = v + 10;
RESET intervalstyle;
SELECT key, seq, op FROM public.stream('iv');
SELECT para_sync.snapshot_json('iv:1%20day')->'value' AS live,
	   para_sync.snapshot_json('iv:24%3A00%3A00')->'value' AS ghost;

-- char(n): trailing blanks are insignificant
CREATE TABLE public.bp (id char(5) PRIMARY KEY, v int);
SELECT para_sync.sync_table('public.bp');
INSERT INTO public.bp VALUES ('ab', 1);
UPDATE public.bp SET id = 'ab  ';
SELECT key, seq, op FROM public.stream('bp');
SELECT para_sync.snapshot_json('bp:ab')->'value' AS live,
	   para_sync.snapshot_json('bp:ab%20')->'value' AS ghost;

-- a composite key with a timestamptz keeps one key across TimeZone and
-- DateStyle changes (inserted under UTC, updated under Asia/Tokyo)
CREATE TABLE public.tz (at timestamptz, n int, v text, PRIMARY KEY (at, n));
SELECT para_sync.sync_table('public.tz');
SET timezone = 'UTC';
INSERT INTO public.tz VALUES ('2024-01-02 03:04:05.25+00', 1, 'a');
SET timezone = 'Asia/Tokyo';
UPDATE public.tz SET v = 'b';
SET datestyle = 'SQL, DMY';
UPDATE public.tz SET v = 'c';
SET datestyle = 'German';
SET timezone = 'America/St_Johns';
UPDATE public.tz SET v = 'd';
RESET datestyle;
SET timezone = 'UTC';
SELECT key, seq, op, value->>'v' AS v FROM public.stream('tz');

-- other key types with well-defined text: uuid, bool, bytea, time, timetz,
-- timestamp, date, name, varchar, oid and domains over them
CREATE TYPE public.color AS ENUM ('red', 'green');
CREATE DOMAIN public.small AS int2;
CREATE TABLE public.many (e text, u uuid, b bool, by bytea, t time, ttz timetz,
	ts timestamp, d date, nm name, vc varchar(9), o oid, s public.small, i8 int8, f4 float4,
	PRIMARY KEY (e, u, b, by, t, ttz, ts, d, nm, vc, o, s, i8, f4));
SELECT para_sync.sync_table('public.many');
SET bytea_output = 'escape';
SET datestyle = 'Postgres, MDY';
INSERT INTO public.many VALUES ('green', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', true, '\x00ff',
	'01:02:03.5', '01:02:03+05:30', '2024-02-29 23:59:59', '2024-02-29', 'nm', 'vc', 7, 3,
	-9223372036854775808, -0.0);
RESET ALL;
SET client_min_messages = warning;
SELECT key FROM public.stream('many');
SELECT key AS many_key FROM public.stream('many') \gset
SELECT para_sync.snapshot_json(:'many_key')->'value'->>'e' AS found;

-- key types without a canonical text are refused at sync_table()
CREATE TABLE public.bad_jsonb (id jsonb PRIMARY KEY);
SELECT para_sync.sync_table('public.bad_jsonb');
CREATE TABLE public.bad_array (id int[] PRIMARY KEY);
SELECT para_sync.sync_table('public.bad_array');
CREATE TABLE public.bad_range (id int4range PRIMARY KEY);
SELECT para_sync.sync_table('public.bad_range');
CREATE TYPE public.pair AS (a int, b int);
CREATE TABLE public.bad_composite (id public.pair PRIMARY KEY);
SELECT para_sync.sync_table('public.bad_composite');
CREATE EXTENSION citext SCHEMA public;
CREATE TABLE public.bad_citext (id public.citext PRIMARY KEY);
SELECT para_sync.sync_table('public.bad_citext');
CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE public.bad_collation (id text COLLATE public.ci PRIMARY KEY);
SELECT para_sync.sync_table('public.bad_collation');
CREATE TABLE public.bad_enum (id public.color PRIMARY KEY);
SELECT para_sync.sync_table('public.bad_enum');
CREATE TABLE public.bad_second (id int, j jsonb, PRIMARY KEY (id, j));
SELECT para_sync.sync_table('public.bad_second');
SELECT count(*) AS tagged_bad FROM para_sync.synced_tables WHERE sync_name LIKE 'bad_%';

DROP TABLE public.num, public.flt, public.iv, public.bp, public.tz, public.many,
	public.bad_jsonb, public.bad_array, public.bad_range, public.bad_composite,
	public.bad_citext, public.bad_collation, public.bad_enum, public.bad_second;
DROP TYPE public.color, public.pair;
DROP DOMAIN public.small;
DROP COLLATION public.ci;
DROP EXTENSION citext;
DROP FUNCTION public.stream(text);
