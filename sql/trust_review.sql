-- Paths found by an adversarial review: every one either keeps "the last
-- envelope of a key equals snapshot(key)", is refused with a clear error,
-- or becomes visible as a new sequence.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

-- Values printed by their type's output function do not depend on the
-- writing or reading session's settings: a range of timestamptz (TimeZone,
-- DateStyle), a point (extra_float_digits), regclass (search_path).
CREATE TABLE tr_out (id int PRIMARY KEY, r tstzrange, p point, rc regclass,
					 ra tstzrange[]);
SELECT para_sync.sync_table('tr_out');
SET timezone = 'UTC';
SET datestyle = 'ISO, MDY';
SET extra_float_digits = 0;
INSERT INTO tr_out VALUES (1, '[2024-01-01 00:00+00,2024-01-02 00:00+00)',
						   point(0.1::float8 + 0.2::float8, 1), 'tr_out',
						   ARRAY['[2024-01-01 00:00+00,)'::tstzrange]);
SET timezone = 'Asia/Tokyo';
SET datestyle = 'SQL, DMY';
SET extra_float_digits = 3;
SET search_path = pg_catalog;
SELECT para_sync.envelope_to_jsonb(o.envelope)->'value' AS written,
	   para_sync.snapshot_json('tr_out:1')->'value' AS snapshot
  FROM para_sync.outbox o WHERE o.key = 'tr_out:1';
SELECT para_sync.envelope_to_jsonb(o.envelope)->'value'
	   = para_sync.snapshot_json('tr_out:1')->'value' AS same_value
  FROM para_sync.outbox o WHERE o.key = 'tr_out:1';
-- an UPDATE to the same values in another session's settings captures nothing
UPDATE public.tr_out SET r = r, p = p, rc = rc;
SELECT pg_catalog.count(*) AS envelopes FROM para_sync.outbox o WHERE o.key = 'tr_out:1';
RESET search_path;
RESET timezone;
RESET datestyle;
RESET extra_float_digits;
