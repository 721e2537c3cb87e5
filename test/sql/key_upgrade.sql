-- Upgrading from 0.1: rows whose 0.1 key differs from their key now (0.1
-- kept what equality ignores: "1%2E0", blanks of char(n), "-0", interval
-- splits) are moved once by ALTER EXTENSION ... UPDATE: a delete of the old
-- key, an upsert of the new, under the usual sequence rules.  Every delete
-- is of a key some client could have received: none for a key nobody
-- published.  In a database of its own, so that the extension can start at
-- version 0.1.
SET client_min_messages = warning;
SELECT current_database() AS regress_db \gset
CREATE DATABASE para_sync_key_upgrade;
\c para_sync_key_upgrade
SET client_min_messages = warning;
CREATE EXTENSION para_sync VERSION '0.1';

CREATE TABLE public.legacy (id numeric, c char(4), f float8, iv interval, n int,
							PRIMARY KEY (id, c, f, iv));
CREATE TABLE public.plain (id int PRIMARY KEY);
INSERT INTO public.legacy VALUES (1.0, 'ab', 1, '1 day', 1), (2, 'wxyz', '-0', '24:00:00', 2),
	(3, 'wxyz', 0.5, '2 days', 3);
INSERT INTO public.plain VALUES (1);
-- the state 0.1 left, made with 0.1's own objects (this library refuses
-- 0.1's sync_table(), whose registry_write() needs the 0.2 schema): both
-- tables tagged, each row published under its 0.1 key
INSERT INTO para_sync.tables (relid, sync_name, schema_version) VALUES
	('public.legacy', 'legacy', '1'), ('public.plain', 'plain', '1');
SELECT para_sync.install_triggers('public.legacy'), para_sync.install_triggers('public.plain');
INSERT INTO para_sync.counters VALUES
	('legacy:1%2E0:ab%20%20:1:1%20day', 3),
	('legacy:2:wxyz:-0:24%3A00%3A00', 1),
	('legacy:3:wxyz:0%2E5:2%20days', 7),
	('plain:1', 1);

-- The window between installing this library and ALTER EXTENSION UPDATE:
-- the library writes exactly what 0.1 wrote.  Changes go out under their
-- 0.1 keys (the new row 4.50 as "4%2E50", not "4.5"), so the update below
-- moves only keys that were really published; tagging another table waits
-- for the update.
INSERT INTO public.legacy VALUES (4.50, 'ab', 1, '1 day', 4);
UPDATE public.legacy SET n = n + 100 WHERE n = 2;
SELECT o.key, o.seq, e->>'op' AS op, e->'value'->>'n' AS n
  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e ORDER BY o.key, o.seq;
SELECT para_sync.snapshot_json('legacy:4%2E50:ab%20%20:1:1%20day') - 'schema_version' AS window_row;
CREATE TABLE public.later (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.later');

ALTER EXTENSION para_sync UPDATE;
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'para_sync';
SELECT o.key, o.seq, e->>'op' AS op, e->'value'->>'n' AS n
  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e ORDER BY o.key, o.seq;
-- the upgrade step leaves no function behind
SELECT count(*) AS helpers FROM pg_catalog.pg_proc WHERE proname = 'rekey_legacy';
-- later changes continue under the new keys
UPDATE public.legacy SET n = n + 10 WHERE n = 1;
SELECT para_sync.snapshot_json('legacy:1:ab:1:1%20day') - 'schema_version' AS moved_row;
SELECT para_sync.snapshot_json('legacy:1%2E0:ab%20%20:1:1%20day') - 'schema_version' AS old_key;

\c :regress_db
DROP DATABASE para_sync_key_upgrade;

-- A table tagged under 0.1 with a key type 0.2 refuses (an enum: renaming a
-- label would move its objects) stops the update with an error naming it,
-- instead of leaving the table registered but unwritable.  Untagged, the
-- update goes through.
CREATE DATABASE para_sync_key_upgrade_refused;
\c para_sync_key_upgrade_refused
SET client_min_messages = warning;
CREATE EXTENSION para_sync VERSION '0.1';
CREATE TYPE public.mood AS ENUM ('sad', 'happy');
CREATE TABLE public.moods (m public.mood PRIMARY KEY, n int);
INSERT INTO para_sync.tables (relid, sync_name, schema_version) VALUES ('public.moods', 'moods', '1');
SELECT para_sync.install_triggers('public.moods');
ALTER EXTENSION para_sync UPDATE;
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'para_sync';
SELECT para_sync.unsync_table('public.moods');
ALTER EXTENSION para_sync UPDATE;
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'para_sync';
\c :regress_db
DROP DATABASE para_sync_key_upgrade_refused;

-- A table tagged under 0.2 with a synced column that prints catalog names
-- (0.3 refuses them: renaming the named object would change its text with
-- no envelope) stops the update to 0.3 with an error naming it.  With the
-- column retyped (the DDL guard bumps schema_version), the update goes
-- through.
CREATE DATABASE para_sync_key_upgrade_names;
\c para_sync_key_upgrade_names
SET client_min_messages = warning;
CREATE EXTENSION para_sync VERSION '0.2';
CREATE TABLE public.refs (id int PRIMARY KEY, r regclass);
INSERT INTO para_sync.tables (relid, sync_name, schema_version) VALUES ('public.refs', 'refs', '1');
SELECT para_sync.install_triggers('public.refs');
ALTER EXTENSION para_sync UPDATE;
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'para_sync';
ALTER TABLE public.refs ALTER COLUMN r TYPE text USING r::text;
ALTER EXTENSION para_sync UPDATE;
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'para_sync';
SELECT sync_name, schema_version FROM para_sync.synced_tables;
\c :regress_db
DROP DATABASE para_sync_key_upgrade_names;
