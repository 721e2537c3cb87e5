-- Paths found by an adversarial review: every one either keeps "the last
-- envelope of a key equals snapshot(key)", is refused with a clear error,
-- or becomes visible as a new sequence.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

-- Values printed by their type's output function do not depend on the
-- writing or reading session's settings: a range of timestamptz (TimeZone,
-- DateStyle), a point (extra_float_digits).  (Types that print catalog
-- names, such as regclass, are refused: test/sql/type_trust.sql.)
CREATE TABLE tr_out (id int PRIMARY KEY, r tstzrange, p point, ra tstzrange[]);
SELECT para_sync.sync_table('tr_out');
SET timezone = 'UTC';
SET datestyle = 'ISO, MDY';
SET extra_float_digits = 0;
INSERT INTO tr_out VALUES (1, '[2024-01-01 00:00+00,2024-01-02 00:00+00)',
						   point(0.1::float8 + 0.2::float8, 1),
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
UPDATE public.tr_out SET r = r, p = p;
SELECT pg_catalog.count(*) AS envelopes FROM para_sync.outbox o WHERE o.key = 'tr_out:1';
RESET search_path;
RESET timezone;
RESET datestyle;
RESET extra_float_digits;

-- ALTER TYPE ... RENAME VALUE of an enum a synced column prints (directly,
-- through a domain, an array or a composite) would change values without a
-- capture: refused.  Not when only an excluded column uses it.
CREATE TYPE tr_mood AS ENUM ('a', 'b');
CREATE DOMAIN tr_mood_d AS tr_mood;
CREATE TYPE tr_pair AS (m tr_mood, n int);
CREATE TABLE tr_enum (id int PRIMARY KEY, m tr_mood);
CREATE TABLE tr_enum2 (id int PRIMARY KEY, d tr_mood_d[]);
CREATE TABLE tr_enum3 (id int PRIMARY KEY, p tr_pair);
CREATE TABLE tr_enum4 (id int PRIMARY KEY, hidden tr_mood);
SELECT para_sync.sync_table('tr_enum');
SELECT para_sync.sync_table('tr_enum4', exclude_columns => '{hidden}');
INSERT INTO tr_enum VALUES (1, 'a');
\set VERBOSITY default
ALTER TYPE tr_mood RENAME VALUE 'a' TO 'z';
\set VERBOSITY terse
SELECT para_sync.snapshot_json('tr_enum:1')->'value' AS value;
SELECT para_sync.unsync_table('tr_enum');
SELECT para_sync.sync_table('tr_enum2');
ALTER TYPE tr_mood RENAME VALUE 'a' TO 'z';
SELECT para_sync.unsync_table('tr_enum2');
SELECT para_sync.sync_table('tr_enum3');
ALTER TYPE tr_mood RENAME VALUE 'a' TO 'z';
SELECT para_sync.unsync_table('tr_enum3');
-- only the excluded column uses it now: allowed; adding a value always is
ALTER TYPE tr_mood RENAME VALUE 'a' TO 'z';
ALTER TYPE tr_mood ADD VALUE 'c';
SELECT para_sync.unsync_table('tr_enum4');

-- ALTER TYPE ... ADD|DROP ATTRIBUTE of a composite type a synced column
-- prints changes its values' text ("(1,2)" would read "(1,2,)"): refused;
-- renaming an attribute changes nothing printed and is allowed.
CREATE TYPE tr_comp AS (a int, b int);
CREATE TABLE tr_comp_t (id int PRIMARY KEY, c tr_comp[]);
SELECT para_sync.sync_table('tr_comp_t');
INSERT INTO tr_comp_t VALUES (1, ARRAY[ROW(1, 2)::tr_comp]);
\set VERBOSITY default
ALTER TYPE tr_comp ADD ATTRIBUTE x int;
\set VERBOSITY terse
ALTER TYPE tr_comp DROP ATTRIBUTE b;
ALTER TYPE tr_comp RENAME ATTRIBUTE a TO aa;
SELECT para_sync.snapshot_json('tr_comp_t:1')->'value' AS value;
SELECT para_sync.unsync_table('tr_comp_t');
ALTER TYPE tr_comp ADD ATTRIBUTE x int;

-- A trigger of the user that changes a row again before para_sync's capture
-- event for it fires (an AFTER trigger sorting before para_sync_capture, or
-- one fired for another row of the same statement): the outer event's row
-- is an old version, captured against the row's latest version instead.
CREATE TABLE tr_again (id int PRIMARY KEY, a int, x int);
SELECT para_sync.sync_table('tr_again', exclude_columns => '{x}');
CREATE FUNCTION tr_again_t() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' AND NEW.a = 10 THEN DELETE FROM tr_again WHERE id = NEW.id; END IF;
	IF TG_OP = 'INSERT' AND NEW.a = 20 THEN UPDATE tr_again SET x = 1 WHERE id = NEW.id; END IF;
	IF TG_OP = 'UPDATE' AND NEW.a = 1 THEN UPDATE tr_again SET a = 1001 WHERE id = NEW.id; END IF;
	IF TG_OP = 'UPDATE' AND NEW.a = 30 THEN DELETE FROM tr_again WHERE id = NEW.id; END IF;
	IF TG_OP = 'UPDATE' AND NEW.a = 40 THEN UPDATE tr_again SET a = 41 WHERE id = NEW.id; END IF;
	IF TG_OP = 'UPDATE' AND NEW.a = 50 AND NEW.id = 6 THEN UPDATE tr_again SET a = 51 WHERE id = 7; END IF;
	IF TG_OP = 'UPDATE' AND NEW.a = 60 THEN INSERT INTO tr_again VALUES (OLD.id, 61); END IF;
	IF TG_OP = 'DELETE' AND OLD.a = 70 THEN INSERT INTO tr_again VALUES (OLD.id, 71); END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER a_again AFTER INSERT OR UPDATE OR DELETE ON tr_again
	FOR EACH ROW EXECUTE FUNCTION tr_again_t();
INSERT INTO tr_again VALUES (1, 0);
UPDATE tr_again SET a = 1;                    -- updated again to 1001
INSERT INTO tr_again VALUES (2, 10);          -- deleted right away
INSERT INTO tr_again VALUES (3, 20);          -- then an excluded column only
INSERT INTO tr_again VALUES (4, 0), (5, 0), (6, 0), (7, 0);
UPDATE tr_again SET a = 30 WHERE id = 4;      -- then deleted
UPDATE tr_again SET a = 40, id = 55 WHERE id = 5;  -- new key, then updated again
UPDATE tr_again SET a = 50 WHERE id IN (6, 7);     -- 6's trigger updates 7 again
INSERT INTO tr_again VALUES (8, 0), (9, 70);
UPDATE tr_again SET a = 60, id = 88 WHERE id = 8;  -- new key, the old one inserted again
DELETE FROM tr_again WHERE id = 9;                 -- deleted, then inserted again
SELECT l.key, l.seq,
	   COALESCE(l.env->'value', 'null') = COALESCE(s->'value', 'null')
	   AND (s->>'sequence')::int8 = l.seq AS last_envelope_is_snapshot,
	   l.env->'value' AS last_value
  FROM (SELECT DISTINCT ON (o.key) o.key, o.seq, para_sync.envelope_to_jsonb(o.envelope) AS env
		  FROM para_sync.outbox o WHERE o.key LIKE 'tr_again:%' ORDER BY o.key, o.seq DESC) l,
	   para_sync.snapshot_json(l.key) s
 ORDER BY l.key;

-- ALTER TRIGGER para_sync_capture ... DEPENDS ON EXTENSION: a later DROP
-- EXTENSION (of an extension the table owner may own) would drop the
-- capture trigger silently.  Refused; other triggers may depend on one.
CREATE TABLE tr_dep (id int PRIMARY KEY);
SELECT para_sync.sync_table('tr_dep');
CREATE TRIGGER tr_dep_user BEFORE INSERT ON tr_dep
	FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
\set VERBOSITY default
ALTER TRIGGER para_sync_capture ON tr_dep DEPENDS ON EXTENSION plpgsql;
\set VERBOSITY terse
ALTER TRIGGER para_sync_no_truncate ON tr_dep DEPENDS ON EXTENSION plpgsql;
ALTER TRIGGER tr_dep_user ON tr_dep DEPENDS ON EXTENSION plpgsql;
SELECT t.tgname, d.deptype FROM pg_depend d JOIN pg_trigger t ON t.oid = d.objid
 WHERE d.classid = 'pg_trigger'::regclass AND d.refclassid = 'pg_extension'::regclass
   AND t.tgrelid = 'tr_dep'::regclass ORDER BY 1;
SELECT para_sync.unsync_table('tr_dep');

-- Tagging a table that has rows under a sync name whose keys have a
-- history (the same table again after unsync_table(), or a new table after
-- DROP TABLE): each such key's last envelope is a delete, so its row gets an
-- upsert under the next sequence; keys never published stay at 0.
CREATE TABLE tr_retag (id int PRIMARY KEY, v text);
SELECT para_sync.sync_table('tr_retag');
INSERT INTO tr_retag VALUES (1, 'a');
SELECT para_sync.unsync_table('tr_retag');
INSERT INTO tr_retag VALUES (2, 'b');
SELECT para_sync.sync_table('tr_retag');
DROP TABLE tr_retag;
CREATE TABLE tr_retag (id int PRIMARY KEY, v text);
INSERT INTO tr_retag VALUES (1, 'new'), (3, 'c');
SELECT para_sync.sync_table('tr_retag');
SELECT o.key, o.seq, e->>'op' AS op, e->'value' AS value
  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
 WHERE o.key LIKE 'tr_retag:%' ORDER BY o.key, o.seq;
SELECT k AS key, s->>'sequence' AS seq, s->'value' AS value
  FROM unnest(ARRAY['tr_retag:1', 'tr_retag:2', 'tr_retag:3']) k,
	   para_sync.snapshot_json(k) s ORDER BY k;
SELECT para_sync.unsync_table('tr_retag');

-- A key published under an earlier table of the sync name, whose key the
-- table now under that name cannot read (other key types or key count):
-- its last envelope was a delete, so snapshot() is nil at that sequence,
-- not an error.  A key that never existed still gets the input error.
CREATE TABLE tr_shape (k text PRIMARY KEY, v text);
SELECT para_sync.sync_table('tr_shape');
INSERT INTO tr_shape VALUES ('abc', 'a');
DROP TABLE tr_shape;
CREATE TABLE tr_shape (k int, j int, v text, PRIMARY KEY (k, j));
SELECT para_sync.sync_table('tr_shape');
SELECT s->'value' AS value, s->>'sequence' AS seq
  FROM para_sync.snapshot_json('tr_shape:abc') s;
SELECT para_sync.snapshot_json('tr_shape:xyz');
SELECT para_sync.snapshot_json('tr_shape:1');
SELECT para_sync.unsync_table('tr_shape');

-- leave nothing synced behind
SELECT para_sync.unsync_table(t.relid) FROM para_sync.tables t
 WHERE t.sync_name IN ('tr_out', 'tr_again') ORDER BY t.sync_name;
DROP TABLE tr_out, tr_again, tr_enum, tr_enum2, tr_enum3, tr_enum4, tr_comp_t,
	tr_dep, tr_retag, tr_shape;
DROP FUNCTION tr_again_t();
DROP TYPE tr_pair, tr_mood_d, tr_mood, tr_comp;

-- ALTER TYPE ... ADD|RENAME|DROP ATTRIBUTE ... CASCADE reaches the columns
-- of a table typed by the composite (CREATE TABLE ... OF) under the tag
-- ALTER TYPE: an excluded column renamed that way would be published, an
-- added one would not bump schema_version.  Refused while the table is
-- synced.
CREATE TYPE tr_row AS (a int, secret text);
CREATE TABLE tr_typed OF tr_row (PRIMARY KEY (a));
SELECT para_sync.sync_table('tr_typed', exclude_columns => '{secret}');
INSERT INTO tr_typed VALUES (1, 's');
\set VERBOSITY default
ALTER TYPE tr_row RENAME ATTRIBUTE secret TO pw CASCADE;
\set VERBOSITY terse
ALTER TYPE tr_row ADD ATTRIBUTE z int CASCADE;
ALTER TYPE tr_row DROP ATTRIBUTE secret CASCADE;
ALTER TYPE tr_row ALTER ATTRIBUTE secret TYPE varchar CASCADE;
SELECT para_sync.snapshot_json('tr_typed:1')->'value' AS value;
SELECT para_sync.unsync_table('tr_typed');
ALTER TYPE tr_row RENAME ATTRIBUTE secret TO pw CASCADE;
DROP TABLE tr_typed;
DROP TYPE tr_row;

-- The registry function called directly (it is executable by table owners,
-- as sync_table() runs with the caller's rights) registers a table together
-- with its triggers, firing ALWAYS: no table is registered but uncaptured.
CREATE TABLE tr_direct (id int PRIMARY KEY, v text);
SELECT para_sync.registry_write('insert', 'tr_direct', 'tr_direct', '1', '{}');
SELECT tgname, tgenabled FROM pg_catalog.pg_trigger
 WHERE tgrelid = 'tr_direct'::regclass ORDER BY tgname;
INSERT INTO tr_direct VALUES (1, 'a');
SET session_replication_role = replica;
UPDATE tr_direct SET v = 'b';
RESET session_replication_role;
SELECT key, seq FROM para_sync.outbox WHERE key LIKE 'tr_direct:%' ORDER BY seq;
SELECT para_sync.unsync_table('tr_direct');
DROP TABLE tr_direct;
