-- Types are told apart by what they are, never by a name a user can create;
-- every value a plain table accepts is captured and survives.
SET client_min_messages = warning;
SET timezone = 'UTC';
TRUNCATE para_sync.outbox, para_sync.counters;

-- a non-superuser's enum named citext is an enum: its label travels as str,
-- as a column and an array element (as a primary key it is refused, as
-- every enum is), and the server survives
CREATE ROLE para_sync_o1;
CREATE SCHEMA o1 AUTHORIZATION para_sync_o1;
SET ROLE para_sync_o1;
CREATE TYPE o1.citext AS ENUM ('a', 'b');
CREATE DOMAIN o1.text AS int;
CREATE TABLE o1.tc (id int PRIMARY KEY, c o1.citext, arr o1.citext[], t o1.text);
SELECT para_sync.sync_table('o1.tc');
INSERT INTO o1.tc VALUES (1, 'a', '{b,a}', 5);
SELECT para_sync.snapshot_json('tc:1')->'value' AS value;
CREATE TABLE o1.tk (k o1.citext PRIMARY KEY, v int);
SELECT para_sync.sync_table('o1.tk');
-- a type named text in the key is what it is (an int domain)
CREATE TABLE o1.tk2 (k o1.text PRIMARY KEY, c o1.citext);
SELECT para_sync.sync_table('o1.tk2');
INSERT INTO o1.tk2 VALUES (7, 'b');
UPDATE o1.tk2 SET c = 'a';
SELECT para_sync.snapshot_json('tk2:7') - 'schema_version' AS snapshot;
RESET ROLE;
SELECT key, seq, para_sync.envelope_to_jsonb(envelope)->'value' AS value
  FROM para_sync.outbox WHERE key LIKE 't%' ORDER BY key, seq;
SELECT 1 AS server_alive;

-- the real citext is text on the wire (told by its I/O functions, not its name)
CREATE EXTENSION citext SCHEMA public;
CREATE TABLE public.ci (id int PRIMARY KEY, c public.citext, ca public.citext[]);
SELECT para_sync.sync_table('public.ci');
INSERT INTO public.ci VALUES (1, 'MiXeD', '{Ab,cD}');
SELECT para_sync.snapshot_json('ci:1')->'value' AS value;

-- json is captured from its own text: \u0000, duplicate keys, order, any
-- number survive (a write that works on a plain table works on a synced one)
CREATE TABLE public.js (id int PRIMARY KEY, j json);
SELECT para_sync.sync_table('public.js');
INSERT INTO public.js VALUES
	(1, '{"a":"\u0000"}'),
	(2, '{"k": 1, "k": 2, "k": [true]}'),
	(3, '"top"'),
	(4, '[1, 1.0, 1e2, -5, 12345678901234567890, -9223372036854775809, 2.5, 1e400, 0.1]'),
	(5, '{"s": "\ud83d\ude00 \" \\ \/ \b\f\n\r\t \u00e9 é", "\u0041": null, "e": {}, "f": []}'),
	(6, ' { "z" : false , "y" : [ ] } '),
	(7, NULL);
SELECT count(*) AS captured FROM para_sync.outbox WHERE key LIKE 'js:%';
-- the NUL byte is in the msgpack str: a161 "a", a100 a one-byte str 0x00
SELECT position('\xa161a100'::bytea IN para_sync.snapshot('js:1')) > 0 AS nul_kept;
-- duplicate keys stay, in order: 83 (map of 3) "k" 1 "k" 2 "k" [true]
SELECT position('\x83a16b01a16b02a16b91c3'::bytea IN para_sync.snapshot('js:2')) > 0 AS dups_kept;
-- object keys in written order (json keeps it; jsonb would sort "z" after "y")
SELECT position('\x82a17ac2a17990'::bytea IN para_sync.snapshot('js:6')) > 0 AS order_kept;
SELECT id, para_sync.snapshot_json('js:' || id)->'value'->'j' AS j FROM public.js ORDER BY id;
-- snapshots and change envelopes agree
SELECT bool_and(para_sync.envelope_to_jsonb(o.envelope)->'value' = para_sync.snapshot_json(o.key)->'value') AS same
  FROM para_sync.outbox o WHERE o.key LIKE 'js:%';

-- deep json and jsonb: every value capture writes is readable by
-- envelope_to_jsonb; a value nested deeper than the 32 levels a client
-- decodes travels as its JSON text (str) instead of a structure
CREATE TABLE public.deep (id int PRIMARY KEY, j json, jb jsonb, ja jsonb[], js jsonb, jt jsonb);
SELECT para_sync.sync_table('public.deep');
INSERT INTO public.deep
SELECT n, (repeat('[', n) || '1' || repeat(']', n))::json,
	   (repeat('{"a":', n) || '1' || repeat('}', n))::jsonb,
	   ARRAY[(repeat('[', n) || '2' || repeat(']', n))::jsonb],
	   (repeat('["s", ', n) || '"t"' || repeat(', "u"]', n))::jsonb,
	   '"scalar"'
  FROM (VALUES (29), (30), (31), (32), (5000)) v(n);
SELECT d.id,
	   jsonb_typeof(s->'value'->'j') AS j, jsonb_typeof(s->'value'->'jb') AS jb,
	   jsonb_typeof(s->'value'->'ja'->0) AS ja, jsonb_typeof(s->'value'->'js') AS js,
	   s->'value'->'jt' AS jt,
	   CASE WHEN jsonb_typeof(s->'value'->'js') = 'string' THEN (s->'value'->>'js')::jsonb = d.js
			ELSE s->'value'->'js' = d.js END AS js_survives,
	   CASE WHEN jsonb_typeof(s->'value'->'j') = 'string' THEN s->'value'->>'j' = d.j::text
			ELSE s->'value'->'j' = d.j::jsonb END AS j_survives,
	   CASE WHEN jsonb_typeof(s->'value'->'jb') = 'string' THEN (s->'value'->>'jb')::jsonb = d.jb
			ELSE s->'value'->'jb' = d.jb END AS jb_survives
  FROM public.deep d, para_sync.snapshot_json('deep:' || d.id) s ORDER BY d.id;
SELECT count(*) AS envelopes, bool_and(para_sync.envelope_to_jsonb(envelope) ? 'value') AS readable
  FROM para_sync.outbox WHERE key LIKE 'deep:%';
-- envelope_to_jsonb of any msgpack nesting (here 100 arrays) works
SELECT para_sync.envelope_to_jsonb(decode(repeat('91', 100) || 'c0', 'hex')) #> '{0,0,0,0,0,0,0,0,0,0}' IS NOT NULL AS deep_ok;
SELECT para_sync.envelope_to_jsonb('\x91'::bytea);
SELECT para_sync.envelope_to_jsonb('\xc1'::bytea);
SELECT para_sync.envelope_to_jsonb('\x9100'::bytea);
SELECT para_sync.envelope_to_jsonb(decode('dd7fffffff', 'hex'));
SELECT para_sync.envelope_to_jsonb(decode('82a161c0a161c3', 'hex')) AS dup_map;

-- timestamps over the whole range PostgreSQL has read back
CREATE TABLE public.far (id int PRIMARY KEY, t timestamptz);
SELECT para_sync.sync_table('public.far');
INSERT INTO public.far VALUES (1, '294276-12-31 23:59:59.999999+00'), (2, '4713-01-01 00:00:00+00 BC'),
	(3, '1969-12-31 23:59:59.999999+00'), (4, '100000-01-01 00:00:00+00');
SELECT id, para_sync.snapshot_json('far:' || id)->'value'->>'t' AS t FROM public.far ORDER BY id;
-- the last microsecond PostgreSQL has: timestamp 96, 999999000 ns, 9224318015999 s
SELECT position('\xc70cff3b9ac61800000863b432d9ff'::bytea IN para_sync.snapshot('far:1')) > 0 AS exact;
SELECT para_sync.envelope_to_jsonb(decode('c70cff00000000' || '7fffffffffffffff', 'hex'));
SELECT para_sync.envelope_to_jsonb(decode('c70cff3b9aca00' || '0000000000000000', 'hex'));

-- keys given to snapshot() must be valid UTF-8 once unescaped
CREATE TABLE public.names (n text PRIMARY KEY);
SELECT para_sync.sync_table('public.names');
SELECT para_sync.snapshot('names:%C3');
SELECT para_sync.snapshot('names:%ED%A0%80');
SELECT para_sync.snapshot_json('names:%C3%A9') - 'schema_version' AS valid_utf8;

-- schema_version is capped at 255 bytes (what clients accept)
CREATE TABLE public.sv (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.sv', schema_version => repeat('v', 256));
SELECT para_sync.sync_table('public.sv', schema_version => repeat('v', 10 * 1024 * 1024));
SELECT para_sync.sync_table('public.sv', schema_version => repeat('v', 255)) AS tagged;
SELECT para_sync.set_schema_version('public.sv', repeat('é', 128));
SELECT para_sync.set_schema_version('public.sv', repeat('é', 127));
SELECT length(schema_version) FROM para_sync.synced_tables WHERE sync_name = 'sv';

-- snapshot() parses a key with the base type's input: a domain's CHECK
-- (which may call the table owner's functions) never runs for the caller
CREATE FUNCTION o1.spy(int) RETURNS bool LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'spy ran as %', current_user; RETURN true; END $$;
ALTER FUNCTION o1.spy(int) OWNER TO para_sync_o1;
CREATE DOMAIN o1.spied AS int CHECK (o1.spy(VALUE));
ALTER DOMAIN o1.spied OWNER TO para_sync_o1;
CREATE TABLE o1.sp (id o1.spied PRIMARY KEY);
ALTER TABLE o1.sp OWNER TO para_sync_o1;
SELECT para_sync.sync_table('o1.sp');
SET client_min_messages = notice;
SELECT para_sync.snapshot_json('sp:1') - 'schema_version' AS no_spy;
SET client_min_messages = warning;

-- para_sync's own queries name everything with its schema: a collation "C"
-- placed earlier in the search_path is not picked up (a new session, so
-- that the queries are planned under that search_path)
CREATE SCHEMA evil;
CREATE COLLATION evil."C" (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
\c -
SET client_min_messages = warning;
SET search_path = evil, pg_catalog, public;
SELECT para_sync.snapshot_json('NAMES:x') AS wrong_case;
SELECT para_sync.snapshot_json('names:x') - 'schema_version' AS right_case;
RESET search_path;
DROP SCHEMA evil CASCADE;

-- Columns whose values print the names of catalog objects (regclass,
-- regtype, regproc, regrole, ..., aclitem) would change their text when the
-- named object is renamed or dropped, with no row change and no envelope:
-- refused when tagging, also inside an array, a domain, a composite or a
-- range, and when ALTER TABLE adds or retypes such a column.  An excluded
-- column may have any type.
CREATE TABLE public.rc (id int PRIMARY KEY, r regclass);
SELECT para_sync.sync_table('public.rc');
CREATE TABLE public.rc_arr (id int PRIMARY KEY, t regtype[]);
SELECT para_sync.sync_table('public.rc_arr');
CREATE DOMAIN public.owner_role AS regrole;
CREATE TABLE public.rc_dom (id int PRIMARY KEY, o public.owner_role);
SELECT para_sync.sync_table('public.rc_dom');
CREATE TYPE public.callee AS (fn regprocedure, label text);
CREATE TABLE public.rc_comp (id int PRIMARY KEY, c public.callee[]);
SELECT para_sync.sync_table('public.rc_comp');
CREATE TYPE public.relrange AS RANGE (subtype = regclass);
CREATE TABLE public.rc_range (id int PRIMARY KEY, rr public.relrange);
SELECT para_sync.sync_table('public.rc_range');
CREATE TABLE public.rc_acl (id int PRIMARY KEY, acl aclitem[]);
SELECT para_sync.sync_table('public.rc_acl');
SELECT para_sync.sync_table('public.rc', exclude_columns => '{r}');
ALTER TABLE public.rc ADD COLUMN ns regnamespace;
ALTER TABLE public.rc ADD COLUMN o oid;
ALTER TABLE public.rc ALTER COLUMN o TYPE regclass USING o::regclass;
-- renaming the excluded column keeps it excluded; a new column of its old name is synced
ALTER TABLE public.rc RENAME COLUMN r TO r2;
ALTER TABLE public.rc ADD COLUMN r regconfig;
SELECT table_name, schema_version, exclude_columns FROM para_sync.synced_tables
 WHERE sync_name = 'rc';
INSERT INTO public.rc VALUES (1, 'public.rc', 42);
SELECT para_sync.snapshot_json('rc:1')->'value' AS value;
SELECT para_sync.unsync_table('public.rc');
DROP TABLE public.rc, public.rc_arr, public.rc_dom, public.rc_comp, public.rc_range, public.rc_acl;
DROP TYPE public.callee, public.relrange;
DROP DOMAIN public.owner_role;

DROP TABLE o1.tc, o1.tk, o1.tk2, o1.sp, public.ci, public.js, public.deep, public.far, public.names, public.sv;
DROP EXTENSION citext;
DROP SCHEMA o1 CASCADE;
DROP OWNED BY para_sync_o1;
DROP ROLE para_sync_o1;
