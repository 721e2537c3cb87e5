-- The envelope wire format: field set, smallest integer
-- encodings, and the value mapping of every supported type.
SET client_min_messages = warning;
SET timezone = 'UTC';
TRUNCATE para_sync.outbox, para_sync.counters;

-- exact bytes of a small snapshot: a fixmap of 5 fields, positive fixint id
CREATE TABLE public.tiny (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.tiny', schema_version => '1');
INSERT INTO public.tiny VALUES (7);
SELECT encode(para_sync.snapshot('tiny:7'), 'hex') AS snapshot_bytes;
SELECT para_sync.snapshot_json('tiny:7');
-- change envelopes carry op and txid (the writer's 64-bit xid)
SELECT e - 'txid' AS envelope, (e->>'txid')::bigint > 0 AS has_txid
  FROM para_sync.outbox, para_sync.envelope_to_jsonb(envelope) e;

-- integers use their smallest encoding: fixint, uint8/16/32/64, negative
-- forms (a176 is the map key "v", followed by the value's bytes)
CREATE TABLE public.ints (id int8 PRIMARY KEY, v int8);
SELECT para_sync.sync_table('public.ints');
INSERT INTO public.ints VALUES
	(1, 127), (2, 128), (3, 65535), (4, 65536), (5, 4294967296),
	(6, -32), (7, -33), (8, -129), (9, -2147483649), (10, 9007199254740993);
SELECT id, v, (para_sync.snapshot_json('ints:' || id)->'value'->>'v')::int8 = v AS roundtrip,
	   position(decode('a176' ||
		   CASE WHEN v BETWEEN 0 AND 127 THEN lpad(to_hex(v), 2, '0')
				WHEN v BETWEEN 128 AND 255 THEN 'cc' || to_hex(v)
				WHEN v BETWEEN 256 AND 65535 THEN 'cd' || lpad(to_hex(v), 4, '0')
				WHEN v BETWEEN 65536 AND 4294967295 THEN 'ce' || lpad(to_hex(v), 8, '0')
				WHEN v > 4294967295 THEN 'cf' || lpad(to_hex(v), 16, '0')
				WHEN v BETWEEN -32 AND -1 THEN to_hex(256 + v)
				WHEN v BETWEEN -128 AND -33 THEN 'd0' || to_hex(256 + v)
				WHEN v BETWEEN -32768 AND -129 THEN 'd1' || to_hex(65536 + v)
				WHEN v BETWEEN -2147483648 AND -32769 THEN 'd2' || to_hex((4294967296 + v)::int8)
				ELSE 'd3' || to_hex(v) END, 'hex')
		   IN para_sync.snapshot('ints:' || id)) > 0 AS smallest_form
  FROM public.ints ORDER BY id;

-- every type of the mapping
CREATE TYPE public.mood AS ENUM ('sad', 'happy');
CREATE DOMAIN public.posint AS int CHECK (VALUE > 0);
CREATE TABLE public.all_types (
	id int PRIMARY KEY,
	i2 int2, i4 int4, i8 int8, o oid,
	f4 float4, f8 float8, f8nan float8, b bool,
	n numeric, t text, vc varchar(10), bp char(4), nm name,
	by bytea, j json, jb jsonb, u uuid,
	tstz timestamptz, ts timestamp, ts_inf timestamptz, ts_old timestamptz,
	d date, tm time, iv interval, e public.mood, dom public.posint,
	ia int[], ta2 text[], nulls int[], empty int[],
	nothing text
);
SELECT para_sync.sync_table('public.all_types');
INSERT INTO public.all_types VALUES (
	1,
	-2, 40000, 5000000000, 4000000000,
	1.5, -0.25, 'NaN', true,
	'12345678901234567890.000000000001', 'héllo', 'vc', 'bp', 'nm',
	'\x00ff10', '{"a": [1, 2.5, "x", null, false, {"b": {}}], "big": 12345678901234567890}',
	'{"nested": {"deep": [true]}, "n": -3, "f": 0.5}',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	'2024-02-29 12:34:56.789012+00', '1999-12-31 23:59:59.5', 'infinity', '1960-01-01 00:00:00.000001+00',
	'2024-01-02', '13:14:15', '1 day 2 hours', 'happy', 42,
	'{1,2,3}', '{{a,b},{c,d}}', '{1,NULL,3}', '{}',
	NULL
);
SELECT jsonb_pretty(para_sync.snapshot_json('all_types:1')->'value');

-- the timestamp extension (type -1) is in the raw bytes: d7 ff (timestamp 64)
SELECT position('\xd7ff'::bytea IN para_sync.snapshot('all_types:1')) > 0 AS has_ts64,
	   position('\xc70cff'::bytea IN para_sync.snapshot('all_types:1')) > 0 AS has_ts96_for_1960;

-- TOASTed values are detoasted into the envelope
CREATE TABLE public.big (id int PRIMARY KEY, body text);
SELECT para_sync.sync_table('public.big');
INSERT INTO public.big SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 5000) g;
UPDATE public.big SET id = id WHERE id = 1;	-- unchanged: nothing new
SELECT count(*) AS envelopes,
	   bool_and(para_sync.envelope_to_jsonb(envelope)->'value'->>'body' = (SELECT body FROM public.big)) AS body_matches,
	   bool_and(length(envelope) > 160000) AS full_size
  FROM para_sync.outbox WHERE key = 'big:1';

-- envelope_to_jsonb refuses bytes that are not one msgpack value
SELECT para_sync.envelope_to_jsonb('\x81a16b');
SELECT para_sync.envelope_to_jsonb('\x0101');

DROP TABLE public.tiny, public.ints, public.all_types, public.big;
DROP TYPE public.mood;
DROP DOMAIN public.posint;
