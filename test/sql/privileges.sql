-- Privileges: tagging needs ownership; writers of a synced table need no
-- privilege on para_sync's tables and cannot write or read them.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE ROLE para_sync_owner;
CREATE ROLE para_sync_writer;
GRANT USAGE, CREATE ON SCHEMA public TO para_sync_owner;
SET ROLE para_sync_owner;
CREATE TABLE public.notes (id int PRIMARY KEY, body text);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.notes TO para_sync_writer;
RESET ROLE;

-- a non-owner cannot tag, untag or re-version
SET ROLE para_sync_writer;
SELECT para_sync.sync_table('public.notes');
SELECT para_sync.registry_write('insert', 'public.notes', 'notes', '1', '{}');
RESET ROLE;

-- the owner can, with no privilege on para_sync's tables
SET ROLE para_sync_owner;
SELECT para_sync.sync_table('public.notes');
SELECT * FROM para_sync.tables;
RESET ROLE;

SET ROLE para_sync_writer;
SELECT para_sync.unsync_table('public.notes');
SELECT para_sync.set_schema_version('public.notes', '9');

-- a writer's changes are captured, though it holds no privilege on the outbox
INSERT INTO public.notes VALUES (1, 'hello');
UPDATE public.notes SET body = 'world';
SELECT para_sync.snapshot_json('notes:1') - 'schema_version';

-- but it cannot read, forge or remove envelopes, nor drain the outbox
SELECT * FROM para_sync.outbox;
INSERT INTO para_sync.outbox VALUES ('notes:1', 3, 1, now(), '\x80');
UPDATE para_sync.counters SET seq = 0;
DELETE FROM para_sync.outbox;
SELECT * FROM para_sync.consume(10);
SELECT para_sync.ack('{notes:1}', '{2}');
-- nor drop the capture trigger of a table it does not own
DROP TRIGGER para_sync_capture ON public.notes;
-- the public view of synced tables is readable
SELECT table_name, sync_name FROM para_sync.synced_tables;
RESET ROLE;

SELECT key, seq FROM para_sync.outbox ORDER BY key, seq;

-- a hostile search_path cannot redirect the capture trigger's statements
CREATE SCHEMA evil;
CREATE TABLE evil.outbox (key text, seq int8, txid int8, queued_at timestamptz, envelope bytea);
SET search_path = evil, public;
UPDATE public.notes SET body = 'search_path';
RESET search_path;
SELECT count(*) AS hijacked FROM evil.outbox;
SELECT key, seq FROM para_sync.outbox ORDER BY key, seq;

-- a table owner cannot forge envelopes for another table's objects by
-- attaching the capture trigger to an unregistered table of its own
SET ROLE para_sync_owner;
CREATE TABLE public.forger (id int PRIMARY KEY, body text);
CREATE TRIGGER fake AFTER INSERT ON public.forger FOR EACH ROW EXECUTE FUNCTION para_sync.capture();
INSERT INTO public.forger VALUES (1, 'forged');
DROP TABLE public.forger;
RESET ROLE;
SELECT key, seq FROM para_sync.outbox ORDER BY key, seq;

-- functions that must not be public
SELECT p.proname, has_function_privilege('para_sync_writer', p.oid, 'EXECUTE') AS writer_may_execute
  FROM pg_proc p WHERE p.pronamespace = 'para_sync'::regnamespace ORDER BY p.proname;

SET ROLE para_sync_owner;
SELECT para_sync.unsync_table('public.notes');
DROP TABLE public.notes;
RESET ROLE;
DROP SCHEMA evil CASCADE;
REVOKE ALL ON SCHEMA public FROM para_sync_owner;
-- the owner's sync names go with DROP OWNED (test/sql/sync_name_owners.sql)
DROP OWNED BY para_sync_owner, para_sync_writer;
DROP ROLE para_sync_owner, para_sync_writer;
