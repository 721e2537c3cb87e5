-- Tagging tables: sync_table, synced_tables, set_schema_version,
-- unsync_table, and the clear errors of each.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.users (id int PRIMARY KEY, name text, secret text);
SELECT para_sync.sync_table('public.users');
SELECT table_name, sync_name, schema_version, exclude_columns FROM para_sync.synced_tables;

-- the capture and truncate triggers are installed
SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.users'::regclass ORDER BY tgname;

-- explicit name, version and excluded columns
CREATE TABLE public.accounts (id bigint PRIMARY KEY, email text, password_hash text);
SELECT para_sync.sync_table('public.accounts', name => 'acct', schema_version => '3.1',
							exclude_columns => '{password_hash}');
INSERT INTO public.accounts VALUES (1, 'a@b.c', 'xyz');
SELECT key, seq, para_sync.envelope_to_jsonb(envelope) - 'txid' AS envelope
  FROM para_sync.outbox ORDER BY key, seq;

-- set_schema_version changes the version of later envelopes
SELECT para_sync.set_schema_version('public.accounts', '3.2');
UPDATE public.accounts SET email = 'c@d.e';
SELECT seq, para_sync.envelope_to_jsonb(envelope)->>'schema_version' AS v
  FROM para_sync.outbox WHERE key = 'acct:1' ORDER BY seq;
SELECT sync_name, schema_version FROM para_sync.synced_tables ORDER BY sync_name;

-- errors
SELECT para_sync.sync_table('public.nope');
CREATE TABLE public.no_pk (a int);
SELECT para_sync.sync_table('public.no_pk');
-- the registry refuses it too when called directly
SELECT para_sync.registry_write('insert', 'public.no_pk', 'no_pk', '1', '{}');
SELECT para_sync.sync_table('public.users');
CREATE TABLE public.users2 (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.users2', name => 'users');
SELECT para_sync.sync_table('public.users2', name => 'bad.name');
SELECT para_sync.sync_table('public.users2', name => 'has space');
SELECT para_sync.sync_table('public.users2', name => '');
SELECT para_sync.sync_table('public.users2', schema_version => '');
SELECT para_sync.sync_table('public.users2', exclude_columns => '{id}');
SELECT para_sync.sync_table('public.users2', exclude_columns => '{nosuch}');
CREATE VIEW public.v AS SELECT 1 AS x;
SELECT para_sync.sync_table('public.v');
CREATE TABLE public.parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
-- a partitioned table is synced by its root (test/sql/partitions.sql)
BEGIN;
SELECT para_sync.sync_table('public.parted');
ROLLBACK;
CREATE UNLOGGED TABLE public.unlogged (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.unlogged');
CREATE TABLE public.deferred (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED);
SELECT para_sync.sync_table('public.deferred');
SELECT para_sync.sync_table('para_sync.outbox');
SELECT para_sync.set_schema_version('public.users2', '2');
SELECT para_sync.unsync_table('public.users2');
-- nothing of the failed attempts was registered
SELECT sync_name FROM para_sync.synced_tables ORDER BY sync_name;

-- TRUNCATE publishes a delete for every row (test/sql/lifecycle.sql has the details)
TRUNCATE public.users;

-- unsync: no more capture, the registry row is gone
SELECT para_sync.unsync_table('public.users');
INSERT INTO public.users VALUES (1, 'x', 'y');
SELECT count(*) FROM para_sync.outbox WHERE key LIKE 'users:%';
SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.users'::regclass;
SELECT sync_name FROM para_sync.synced_tables ORDER BY sync_name;

-- the sync name is free again, and a renamed table keeps its sync name
SELECT para_sync.sync_table('public.users2', name => 'users');
ALTER TABLE public.users2 RENAME TO people;
INSERT INTO public.people VALUES (7);
SELECT key FROM para_sync.outbox WHERE key LIKE 'users:%';

-- dropping a synced table forgets it
DROP TABLE public.people;
SELECT sync_name FROM para_sync.synced_tables ORDER BY sync_name;

DROP TABLE public.users, public.accounts, public.no_pk, public.parted,
	public.unlogged, public.deferred;
DROP VIEW public.v;
