-- Subject layouts: set_subject_layout(),
-- the layout each outbox row is captured under, and the errors.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.lay_users (id int PRIMARY KEY, name text);
CREATE TABLE public.lay_orders (id int PRIMARY KEY, total int);

-- the default layout is 'key'; 'table' is chosen right after tagging
SELECT para_sync.sync_table('public.lay_users');
BEGIN;
SELECT para_sync.sync_table('public.lay_orders', name => 'orders');
SELECT para_sync.set_subject_layout('public.lay_orders', 'table');
COMMIT;
SELECT table_name, sync_name, subject_layout FROM para_sync.synced_tables ORDER BY sync_name;

INSERT INTO public.lay_users VALUES (1, 'ann');
INSERT INTO public.lay_orders VALUES (1, 10);
SELECT key, seq, subject_layout FROM para_sync.outbox ORDER BY key, seq;

-- a change of layout applies to changes captured after it; rows already
-- queued keep the layout they were captured under
BEGIN;
UPDATE public.lay_orders SET total = 11;
SELECT para_sync.set_subject_layout('public.lay_orders', 'key');
UPDATE public.lay_orders SET total = 12;
COMMIT;
SELECT para_sync.set_subject_layout('public.lay_users', 'table');
UPDATE public.lay_users SET name = 'bob';
DELETE FROM public.lay_users;
SELECT key, seq, subject_layout FROM para_sync.outbox ORDER BY key, seq;
SELECT sync_name, subject_layout FROM para_sync.synced_tables ORDER BY sync_name;

-- setting the same layout again is harmless
SELECT para_sync.set_subject_layout('public.lay_users', 'table');

-- unsync publishes its deletes in the table's layout
INSERT INTO public.lay_users VALUES (2, 'cy');
SELECT para_sync.unsync_table('public.lay_users');
SELECT key, seq, subject_layout, para_sync.envelope_to_jsonb(envelope)->>'op' AS op
  FROM para_sync.outbox WHERE key LIKE 'lay_users:%' ORDER BY key, seq;

-- errors: bad layout, NULLs, untagged table, not a table
SELECT para_sync.set_subject_layout('public.lay_orders', 'Table');
SELECT para_sync.set_subject_layout('public.lay_orders', NULL);
SELECT para_sync.set_subject_layout(NULL, 'key');
SELECT para_sync.set_subject_layout('public.lay_users', 'table');
SELECT para_sync.set_subject_layout('public.nope', 'table');
-- the registry refuses an unknown layout written directly too
\set VERBOSITY terse
UPDATE para_sync.tables SET subject_layout = 'both' WHERE sync_name = 'orders';
\set VERBOSITY default

-- privileges: only the table's owner (or a superuser) may change the layout
CREATE ROLE para_sync_layout_owner;
CREATE ROLE para_sync_layout_other;
GRANT CREATE ON SCHEMA public TO para_sync_layout_owner;
SET ROLE para_sync_layout_owner;
CREATE TABLE public.lay_owned (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.lay_owned');
SELECT para_sync.set_subject_layout('public.lay_owned', 'table');
SELECT para_sync.set_subject_layout('public.lay_owned', 'key');
RESET ROLE;
SET ROLE para_sync_layout_other;
SELECT para_sync.set_subject_layout('public.lay_owned', 'table');
-- nor may anyone else write the registry or the outbox
UPDATE para_sync.tables SET subject_layout = 'table';
RESET ROLE;
SELECT sync_name, subject_layout FROM para_sync.synced_tables
 WHERE sync_name = 'lay_owned';

-- cleanup
SET ROLE para_sync_layout_owner;
SELECT para_sync.unsync_table('public.lay_owned');
DROP TABLE public.lay_owned;
RESET ROLE;
SELECT para_sync.unsync_table('public.lay_orders');
DROP TABLE public.lay_users, public.lay_orders;
REVOKE ALL ON SCHEMA public FROM para_sync_layout_owner;
DROP OWNED BY para_sync_layout_owner, para_sync_layout_other;
DROP ROLE para_sync_layout_owner, para_sync_layout_other;
TRUNCATE para_sync.outbox, para_sync.counters;
DELETE FROM para_sync.sync_names WHERE sync_name IN ('lay_users', 'orders', 'lay_owned');
