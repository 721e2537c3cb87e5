-- DDL and trigger-state guards of synced tables: what is refused with a
-- clear error, and what is followed (excluded columns, schema_version).
SET client_min_messages = notice;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.g (id int PRIMARY KEY, v int, secret text);
SELECT para_sync.sync_table('public.g', schema_version => '3', exclude_columns => '{secret}');
INSERT INTO public.g VALUES (1, 5, 's1');

-- == the capture trigger fires ALWAYS, and stays so ==
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'public.g'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT para_sync.set_schema_version('public.g', '4');
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'public.g'::regclass AND NOT tgisinternal ORDER BY tgname;

-- replica mode (logical replication apply, pg_restore of a replica) is captured
SET session_replication_role = replica;
UPDATE public.g SET v = 6 WHERE id = 1;
RESET session_replication_role;
SELECT key, seq, para_sync.envelope_to_jsonb(envelope)->'value' AS value
  FROM para_sync.outbox ORDER BY key, seq;

-- switching it off or changing it is refused
ALTER TABLE public.g DISABLE TRIGGER para_sync_capture;
ALTER TABLE public.g DISABLE TRIGGER USER;
ALTER TABLE public.g DISABLE TRIGGER ALL;
ALTER TABLE public.g ENABLE TRIGGER ALL;
ALTER TABLE public.g ENABLE REPLICA TRIGGER para_sync_capture;
ALTER TABLE public.g ENABLE TRIGGER para_sync_capture;
ALTER TABLE public.g ENABLE ALWAYS TRIGGER para_sync_capture;   -- already so: fine
-- the guard fires in replica mode too
SET session_replication_role = replica;
ALTER TABLE public.g DISABLE TRIGGER para_sync_capture;
RESET session_replication_role;
DROP TRIGGER para_sync_capture ON public.g;
ALTER TRIGGER para_sync_capture ON public.g RENAME TO other;
CREATE OR REPLACE TRIGGER para_sync_capture AFTER INSERT ON public.g
	FOR EACH ROW EXECUTE FUNCTION para_sync.capture();
CREATE TRIGGER second_capture AFTER INSERT ON public.g
	FOR EACH ROW EXECUTE FUNCTION para_sync.capture();
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'public.g'::regclass AND NOT tgisinternal ORDER BY tgname;
-- the table's own triggers can still be switched by name
CREATE FUNCTION public.g_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER g_own BEFORE UPDATE ON public.g FOR EACH ROW EXECUTE FUNCTION public.g_noop();
ALTER TABLE public.g DISABLE TRIGGER g_own;
ALTER TABLE public.g ENABLE TRIGGER g_own;
DROP TRIGGER g_own ON public.g;

-- == excluded columns follow the column, not its name ==
ALTER TABLE public.g RENAME COLUMN secret TO pw;
SELECT exclude_columns, schema_version FROM para_sync.synced_tables WHERE sync_name = 'g';
UPDATE public.g SET v = 7, pw = 'p2' WHERE id = 1;
SELECT para_sync.envelope_to_jsonb(envelope)->'value' AS value
  FROM para_sync.outbox WHERE key = 'g:1' ORDER BY seq DESC LIMIT 1;
SELECT para_sync.snapshot_json('g:1')->'value' AS snapshot;
-- dropping it forgets the name: a new column of that name is synced
ALTER TABLE public.g DROP COLUMN pw;
SELECT exclude_columns, schema_version FROM para_sync.synced_tables WHERE sync_name = 'g';
ALTER TABLE public.g ADD COLUMN pw text;
UPDATE public.g SET pw = 'visible' WHERE id = 1;
SELECT para_sync.snapshot_json('g:1')->'value' AS snapshot;

-- == column changes bump schema_version ==
SELECT para_sync.set_schema_version('public.g', '5');
ALTER TABLE public.g ALTER COLUMN v TYPE text;
ALTER TABLE public.g RENAME COLUMN v TO val;
ALTER TABLE public.g ADD COLUMN extra int, ADD COLUMN extra2 int;
ALTER TABLE public.g DROP COLUMN extra;
SELECT schema_version FROM para_sync.synced_tables WHERE sync_name = 'g';
UPDATE public.g SET val = 'x' WHERE id = 1;
SELECT para_sync.envelope_to_jsonb(envelope)->>'schema_version' AS v
  FROM para_sync.outbox WHERE key = 'g:1' ORDER BY seq DESC LIMIT 1;
-- changes that leave the envelope alone do not
ALTER TABLE public.g ALTER COLUMN val SET DEFAULT 'd';
ALTER TABLE public.g ADD COLUMN IF NOT EXISTS extra2 int;
SELECT schema_version FROM para_sync.synced_tables WHERE sync_name = 'g';
-- an excluded column's changes neither
CREATE TABLE public.h (id int PRIMARY KEY, hidden int);
SELECT para_sync.sync_table('public.h', exclude_columns => '{hidden}');
ALTER TABLE public.h ALTER COLUMN hidden TYPE text;
SELECT schema_version FROM para_sync.synced_tables WHERE sync_name = 'h';

-- the bump never makes a version too long for clients
SELECT para_sync.set_schema_version('public.h', repeat('v', 254));
ALTER TABLE public.h ADD COLUMN z int;
SELECT para_sync.set_schema_version('public.h', '1');
-- partitions are followed through their parent
CREATE TABLE public.pt (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
CREATE TABLE public.pt1 PARTITION OF public.pt FOR VALUES FROM (0) TO (100);
SELECT para_sync.sync_table('public.pt1');
ALTER TABLE public.pt ADD COLUMN w int;
ALTER TABLE public.pt RENAME COLUMN w TO w2;
ALTER TABLE public.pt DISABLE TRIGGER USER;
ALTER TABLE public.pt DROP CONSTRAINT pt_pkey;
ALTER TABLE public.pt ALTER COLUMN id TYPE bigint;
SELECT schema_version FROM para_sync.synced_tables WHERE sync_name = 'pt1';
SELECT para_sync.unsync_table('public.pt1');
DROP TABLE public.pt;

-- == primary key and table kind ==
ALTER TABLE public.g DROP CONSTRAINT g_pkey;
ALTER TABLE public.g DROP CONSTRAINT g_pkey, ADD PRIMARY KEY (id, val);
ALTER TABLE public.g DROP COLUMN id;
ALTER TABLE public.g ALTER COLUMN id TYPE bigint;
DROP INDEX public.g_pkey CASCADE;
ALTER TABLE public.g SET UNLOGGED;
ALTER TABLE public.g SET SCHEMA para_sync;
CREATE DOMAIN public.gid AS int;
CREATE TABLE public.k (id public.gid PRIMARY KEY, v int);
SELECT para_sync.sync_table('public.k');
DROP DOMAIN public.gid CASCADE;
-- a superuser can switch the guard off (documented); a deferrable key is
-- still refused when added back
ALTER EVENT TRIGGER para_sync_ddl_guard_start DISABLE;
ALTER TABLE public.k DROP CONSTRAINT k_pkey;
ALTER EVENT TRIGGER para_sync_ddl_guard_start ENABLE ALWAYS;
ALTER TABLE public.k ADD PRIMARY KEY (id) DEFERRABLE;
ALTER TABLE public.k ADD PRIMARY KEY (id);
-- still synced, still writable
SELECT sync_name, schema_version FROM para_sync.synced_tables ORDER BY sync_name;
INSERT INTO public.g (id, val) VALUES (2, 'two');
SELECT para_sync.snapshot_json('g:2')->'value' AS snapshot;

-- == para_sync's own tables take no DDL ==
CREATE INDEX ON para_sync.outbox (queued_at);
CREATE TRIGGER t AFTER INSERT ON para_sync.outbox FOR EACH ROW EXECUTE FUNCTION public.g_noop();
CREATE RULE r AS ON INSERT TO para_sync.counters DO NOTHING;
CREATE POLICY p ON para_sync.tables USING (true);
ALTER TABLE para_sync.outbox ADD COLUMN x int;
ALTER TABLE para_sync.counters RENAME TO c2;
ALTER INDEX para_sync.outbox_pkey RENAME TO o2;
-- storage parameters stay tunable
ALTER TABLE para_sync.outbox SET (autovacuum_vacuum_cost_delay = 1);
ALTER TABLE para_sync.outbox RESET (autovacuum_vacuum_cost_delay);

-- == DROP EXTENSION keeps synced tables and unpublished envelopes ==
DROP EXTENSION para_sync;
DROP EXTENSION para_sync CASCADE;
DROP SCHEMA para_sync CASCADE;
SELECT para_sync.unsync_table('public.g');
SELECT para_sync.unsync_table('public.h');
SELECT para_sync.unsync_table('public.k');
DROP EXTENSION para_sync CASCADE;      -- the backlog is still there
SELECT para_sync.ack(array_agg(key), array_agg(seq)) > 0 AS acked FROM para_sync.outbox;
BEGIN;
DROP EXTENSION para_sync CASCADE;      -- allowed, with a warning: sequences are lost
ROLLBACK;
SELECT count(*) > 0 AS counters_kept FROM para_sync.counters;

DROP TABLE public.g, public.h, public.k;
DROP FUNCTION public.g_noop();
