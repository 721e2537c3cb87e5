-- Scopes: set_scope() and its refusals, the scope token of a row, moves
-- between scopes (a delete in the old scope, an upsert in the new one),
-- the scope in envelopes, snapshot(), snapshot_page(scope => ...), and the
-- DDL guard on scope columns.
SET client_min_messages = notice;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.sc_orders (id int PRIMARY KEY, tenant text, region int, total int);
CREATE INDEX ON public.sc_orders (tenant, id);
BEGIN;
SELECT para_sync.sync_table('public.sc_orders', name => 'orders');
SELECT para_sync.set_scope('public.sc_orders', ARRAY['tenant']);
COMMIT;
SELECT sync_name, subject_layout, scope_columns FROM para_sync.synced_tables;
SELECT scope_columns FROM para_sync.tables WHERE sync_name = 'orders';

-- the outbox rows not shown yet: each change's scope, and the envelope's
-- scope field
CREATE TEMP TABLE shown (key text, seq int8);
CREATE FUNCTION pg_temp.changes()
RETURNS TABLE (key text, seq int8, scope text, op text, env_scope text, value jsonb)
LANGUAGE sql AS $$
	WITH new AS (
		SELECT o.key, o.seq, o.scope, e->>'op' AS op, e->>'scope' AS env_scope,
			   e->'value' AS value
		  FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
		 WHERE NOT EXISTS (SELECT 1 FROM shown s WHERE s.key = o.key AND s.seq = o.seq)),
	ins AS (INSERT INTO shown SELECT new.key, new.seq FROM new)
	SELECT * FROM new ORDER BY key, seq $$;

-- tokens: plain, escaped, NULL, '', too long
INSERT INTO public.sc_orders VALUES (1, 'acme', 1, 10), (2, 'globex', 1, 20),
	(3, 'a.b c*', 1, 30), (4, NULL, 1, 40), (5, '', 1, 50);
SELECT key, seq, scope, op, env_scope FROM pg_temp.changes();
-- the scope field comes last, after txid
SELECT position('\xa573636f7065'::bytea IN envelope) > position('\xa474786964'::bytea IN envelope),
	   substr(envelope, length(envelope) - 10) = '\xa573636f7065a461636d65'::bytea
  FROM para_sync.outbox WHERE key = 'orders:1';
\set VERBOSITY terse
INSERT INTO public.sc_orders VALUES (6, repeat('x', 257), 1, 60);
\set VERBOSITY default
INSERT INTO public.sc_orders VALUES (6, repeat('x', 256), 1, 60);
DELETE FROM public.sc_orders WHERE id = 6;
SELECT key, seq, length(scope) AS scope_bytes, op, env_scope = scope AS same
  FROM pg_temp.changes();

-- an update within the scope: one upsert; a move: delete in the old scope
-- (the row that left), then upsert in the new one, each its own sequence
UPDATE public.sc_orders SET total = 11 WHERE id = 1;
UPDATE public.sc_orders SET tenant = 'globex' WHERE id = 1;
UPDATE public.sc_orders SET tenant = NULL, total = 12 WHERE id = 1;
-- a scope column changed to an equal value: no move
UPDATE public.sc_orders SET tenant = NULL WHERE id = 1;
SELECT key, seq, scope, op, env_scope, value FROM pg_temp.changes();

-- a move and a key change at once: delete of the old key in the old scope,
-- upsert of the new key in the new scope
UPDATE public.sc_orders SET id = 7, tenant = 'acme' WHERE id = 2;
-- one statement moving several rows, and a move back
UPDATE public.sc_orders SET tenant = 'initech' WHERE id IN (3, 4, 5);
UPDATE public.sc_orders SET tenant = 'acme' WHERE id = 3;
DELETE FROM public.sc_orders WHERE id = 5;
SELECT key, seq, scope, op, env_scope FROM pg_temp.changes();

-- a row moved and then deleted by a trigger of the same statement: the
-- trigger's delete went to the new scope, and the old scope gets a delete
-- too (else its subscribers would keep the row)
CREATE FUNCTION pg_temp.drop_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM public.sc_orders WHERE id = NEW.id;
	RETURN NULL;
END $$;
CREATE TRIGGER a_drop_gone AFTER UPDATE ON public.sc_orders
	FOR EACH ROW WHEN (NEW.tenant = 'gone') EXECUTE FUNCTION pg_temp.drop_gone();
INSERT INTO public.sc_orders VALUES (8, 'acme', 1, 80);
UPDATE public.sc_orders SET tenant = 'gone' WHERE id = 8;
SELECT key, seq, scope, op, env_scope FROM pg_temp.changes();
DROP TRIGGER a_drop_gone ON public.sc_orders;

-- snapshot(key) says which scope the row is in now; a missing row: none
SELECT para_sync.envelope_to_jsonb(para_sync.snapshot('orders:3')) - 'value';
SELECT para_sync.envelope_to_jsonb(para_sync.snapshot('orders:1')) - 'value';
SELECT para_sync.envelope_to_jsonb(para_sync.snapshot('orders:5'));

-- several columns, numbers in canonical form
CREATE TABLE public.sc_multi (id int PRIMARY KEY, org text, team numeric, name text);
SELECT para_sync.sync_table('public.sc_multi', name => 'multi');
SELECT para_sync.set_scope('public.sc_multi', ARRAY['org', 'team']);
SELECT scope_columns FROM para_sync.synced_tables WHERE sync_name = 'multi';
INSERT INTO public.sc_multi VALUES (1, 'acme', 7.00, 'a'), (2, 'acme', NULL, 'b'),
	(3, '', 1.5, 'c'), (4, 'x:y', -0.10, 'd');
SELECT key, seq, scope, op, env_scope FROM pg_temp.changes();
-- a renamed scope column stays a scope column under its new name
ALTER TABLE public.sc_multi RENAME COLUMN team TO squad;
SELECT scope_columns FROM para_sync.synced_tables WHERE sync_name = 'multi';
UPDATE public.sc_multi SET squad = 8 WHERE id = 1;
SELECT key, seq, scope, op FROM pg_temp.changes() WHERE key LIKE 'multi:%';

-- paging one scope: primary-key order, after_key, max_rows
INSERT INTO public.sc_orders SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, 1, g
  FROM generate_series(10, 19) g;
SELECT count(*) FROM pg_temp.changes();
SELECT key, para_sync.envelope_to_jsonb(envelope)->>'scope' AS scope
  FROM para_sync.snapshot_page('public.sc_orders', NULL, 100, scope => 'acme');
SELECT key FROM para_sync.snapshot_page('public.sc_orders', 'orders:12', 2, scope => 'acme');
SELECT key FROM para_sync.snapshot_page('public.sc_orders', NULL, 3, scope => 'globex');
SELECT key FROM para_sync.snapshot_page('public.sc_orders', scope => '%00');
SELECT key FROM para_sync.snapshot_page('public.sc_orders', scope => 'nobody');
-- a scope no row is in any more (orders:3 moved away)
SELECT key FROM para_sync.snapshot_page('public.sc_orders', scope => 'a%2Eb%20c%2A');
-- without scope: every row, each envelope with its own scope
SELECT count(*), count(DISTINCT para_sync.envelope_to_jsonb(envelope)->>'scope')
  FROM para_sync.snapshot_page('public.sc_orders', NULL, 1000);
SELECT count(*) FROM para_sync.snapshot_table('public.sc_orders', NULL, 1000) s
 WHERE para_sync.envelope_to_jsonb(s.envelope)->>'scope' IS NOT NULL;
-- several columns, NULL part, '' part, a token in another form than the row's
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'acme:8');
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'acme:%00');
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => ':1%2E5');
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'x%3Ay:-0%2E1');
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'acme:8%2E0');
-- one empty text
CREATE TABLE public.sc_empty (id int PRIMARY KEY, t text);
SELECT para_sync.sync_table('public.sc_empty', name => 'empty');
SELECT para_sync.set_scope('public.sc_empty', '{t}');
INSERT INTO public.sc_empty VALUES (1, ''), (2, 'x');
SELECT key FROM para_sync.snapshot_page('public.sc_empty', scope => '%');
-- equal values of other forms (float -0 = 0, interval '1 day' = '24:00:00')
-- have one token: both forms are one scope, and pages of it are full
CREATE TABLE public.sc_eq (id int PRIMARY KEY, f float8, i interval);
SELECT para_sync.sync_table('public.sc_eq', name => 'eq');
SELECT para_sync.set_scope('public.sc_eq', '{f,i}');
INSERT INTO public.sc_eq VALUES (1, '-0', '1 day'), (2, '0', '24:00:00'), (3, '-0', '24:00:00'),
	(4, '0', '1 day'), (5, '0', '1 day 00:00:01');
SELECT key, scope FROM pg_temp.changes();
SELECT key FROM para_sync.snapshot_page('public.sc_eq', NULL, 2, scope => '0:1%20day');
SELECT key FROM para_sync.snapshot_page('public.sc_eq', 'eq:2', 2, scope => '0:1%20day');
SELECT key FROM para_sync.snapshot_page('public.sc_eq', NULL, 9, scope => '-0:24%3A00%3A00');
UPDATE public.sc_eq SET f = '-0', i = '24:00:00' WHERE id = 4;
SELECT key, seq, op FROM pg_temp.changes();
SELECT para_sync.unsync_table('public.sc_eq');
DROP TABLE public.sc_eq;
SELECT FROM pg_temp.changes();

-- a scope column that is also a primary-key column: the primary key (tenant, id)
-- is the index one scope's pages need, so no NOTICE (it named tenant twice)
CREATE TABLE public.sc_pkscope (tenant text, id int, PRIMARY KEY (tenant, id));
SELECT para_sync.sync_table('public.sc_pkscope', name => 'pkscope');
SELECT para_sync.set_scope('public.sc_pkscope', '{tenant}');
CREATE TABLE public.sc_pkscope2 (id int, tenant text, PRIMARY KEY (id, tenant));
SELECT para_sync.sync_table('public.sc_pkscope2', name => 'pkscope2');
SELECT para_sync.set_scope('public.sc_pkscope2', '{tenant}');
CREATE INDEX ON public.sc_pkscope2 (tenant, id);
SELECT para_sync.set_scope('public.sc_pkscope2', '{tenant}');
INSERT INTO public.sc_pkscope2 VALUES (1, 'a'), (2, 'b'), (3, 'a');
SELECT key FROM para_sync.snapshot_page('public.sc_pkscope2', 'pkscope2:1:a', 5, scope => 'a');
SELECT para_sync.unsync_table('public.sc_pkscope'), para_sync.unsync_table('public.sc_pkscope2');
DROP TABLE public.sc_pkscope, public.sc_pkscope2;
SELECT FROM pg_temp.changes();

-- one scope's page is an index range scan of (scope columns, primary key):
-- no sequential scan, a page's worth of index entries, whatever the table
CREATE TABLE public.sc_big (id int PRIMARY KEY, tenant int, v text);
CREATE INDEX ON public.sc_big (tenant, id);
SELECT para_sync.sync_table('public.sc_big', name => 'big');
SELECT para_sync.set_scope('public.sc_big', '{tenant}');
INSERT INTO public.sc_big SELECT g, g % 100, 'v' FROM generate_series(1, 5000) g;
ANALYZE public.sc_big;
BEGIN;
SELECT count(*) FROM para_sync.snapshot_page('public.sc_big', 'big:1007', 3, scope => '7');
SELECT seq_tup_read, idx_tup_fetch <= 3 AS page_only
  FROM pg_stat_xact_user_tables WHERE relname = 'sc_big';
COMMIT;

-- malformed tokens, and a scope for a table without one
SELECT key FROM para_sync.snapshot_page('public.sc_orders', scope => 'a.b');
SELECT key FROM para_sync.snapshot_page('public.sc_orders', scope => '');
SELECT key FROM para_sync.snapshot_page('public.sc_orders', scope => 'a:b');
SELECT key FROM para_sync.snapshot_page('public.sc_orders', scope => '%2e');
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'acme');
-- too many parts: refused as such, before any part is read by its type
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'acme::1');
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'acme:many');
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'a%00:1');
CREATE TABLE public.sc_plain (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.sc_plain', name => 'plain');
SELECT key FROM para_sync.snapshot_page('public.sc_plain', scope => 'acme');

-- row-level security and privileges apply to one scope's pages too
CREATE ROLE para_sync_scope_reader;
GRANT SELECT ON public.sc_orders TO para_sync_scope_reader;
ALTER TABLE public.sc_orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY sc_even ON public.sc_orders TO para_sync_scope_reader USING (id % 4 = 0);
SET ROLE para_sync_scope_reader;
SELECT key FROM para_sync.snapshot_page('public.sc_orders', scope => 'acme');
SELECT key FROM para_sync.snapshot_page('public.sc_multi', scope => 'acme:8');
RESET ROLE;
ALTER TABLE public.sc_orders DISABLE ROW LEVEL SECURITY;

-- set_scope() refusals
SELECT para_sync.set_scope(NULL, '{tenant}');
SELECT para_sync.set_scope('public.sc_orders', '{nope}');
SELECT para_sync.set_scope('public.sc_orders', '{ctid}');
SELECT para_sync.set_scope('public.sc_orders', '{tenant,tenant}');
SELECT para_sync.set_scope('public.sc_orders', '{a,b,c,d,e,f,g,h,i}');
SELECT para_sync.set_scope('public.sc_orders', '{{tenant},{region}}');
SELECT para_sync.set_scope('public.sc_orders', ARRAY[NULL]::text[]);
CREATE TABLE public.sc_bad (id int PRIMARY KEY, j jsonb, f float8, c text COLLATE "C", secret text);
SELECT para_sync.sync_table('public.sc_bad', name => 'bad', exclude_columns => '{secret}');
SELECT para_sync.set_scope('public.sc_bad', '{j}');
SELECT para_sync.set_scope('public.sc_bad', '{secret}');
CREATE TABLE public.sc_untagged (id int PRIMARY KEY, t text);
SELECT para_sync.set_scope('public.sc_untagged', '{t}');
-- no index on (scope columns, primary key): a NOTICE with the one to create
SELECT para_sync.set_scope('public.sc_bad', '{c,f}');
CREATE INDEX ON public.sc_bad (f, c, id);
SELECT para_sync.set_scope('public.sc_bad', '{c,f}');
SELECT para_sync.set_scope('public.sc_bad', '{}');
SELECT scope_columns FROM para_sync.synced_tables WHERE sync_name = 'bad';
-- only the owner
CREATE ROLE para_sync_scope_other;
SET ROLE para_sync_scope_other;
SELECT para_sync.set_scope('public.sc_bad', '{c}');
RESET ROLE;

-- a key deleted in scope s and given again, by the delete's own AFTER
-- trigger, to a row in scope t: subscribers of s see the key leave s
CREATE TABLE public.sc_again (id int PRIMARY KEY, t text);
SELECT para_sync.sync_table('public.sc_again', name => 'again');
SELECT para_sync.set_scope('public.sc_again', '{t}');
INSERT INTO public.sc_again VALUES (1, 's'), (2, 's');
CREATE FUNCTION public.sc_again_fn() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN INSERT INTO public.sc_again VALUES (OLD.id, CASE WHEN OLD.id = 1 THEN 't' ELSE 's' END); RETURN NULL; END$$;
CREATE TRIGGER aaa_again AFTER DELETE ON public.sc_again FOR EACH ROW EXECUTE FUNCTION public.sc_again_fn();
DELETE FROM public.sc_again;
SELECT key, seq, scope, op FROM pg_temp.changes() WHERE key LIKE 'again:%';
SELECT key, para_sync.envelope_to_jsonb(envelope)->>'sequence' AS seq,
       para_sync.envelope_to_jsonb(envelope)->>'scope' AS scope
  FROM para_sync.snapshot_page('public.sc_again', NULL, 10);
SELECT para_sync.unsync_table('public.sc_again');
DROP TABLE public.sc_again;
DROP FUNCTION public.sc_again_fn();
SELECT FROM pg_temp.changes();

-- a table already holding a row whose scope would be too long: refused, or
-- that row could never be updated, deleted, unsynced or dropped
CREATE TABLE public.sc_long (id int PRIMARY KEY, t text);
SELECT para_sync.sync_table('public.sc_long', name => 'long');
INSERT INTO public.sc_long VALUES (1, repeat('x', 257)), (2, 'ok');
ALTER TABLE public.sc_long ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY sc_long_hide ON public.sc_long USING (id = 2);
SELECT para_sync.set_scope('public.sc_long', '{t}');
SELECT scope_columns FROM para_sync.synced_tables WHERE sync_name = 'long';
UPDATE public.sc_long SET t = repeat('y', 256) WHERE true;
SELECT para_sync.set_scope('public.sc_long', '{t}');
SELECT para_sync.set_scope('public.sc_long', '{id,t}');
DELETE FROM public.sc_long WHERE true;
SELECT para_sync.unsync_table('public.sc_long');
DROP TABLE public.sc_long;
SELECT FROM pg_temp.changes();

-- the DDL guard: scope columns cannot be dropped or retyped
ALTER TABLE public.sc_orders DROP COLUMN tenant;
ALTER TABLE public.sc_orders ALTER COLUMN tenant TYPE varchar(20);
ALTER TABLE public.sc_multi DROP COLUMN squad;
-- nor dropped by a DROP of their type (or domain) with CASCADE
SELECT FROM pg_temp.changes();
CREATE DOMAIN public.sc_tenant_d AS text;
CREATE TABLE public.sc_dom (id int PRIMARY KEY, tenant public.sc_tenant_d);
SELECT para_sync.sync_table('public.sc_dom', 'dom');
SELECT para_sync.set_scope('public.sc_dom', '{tenant}');
DROP DOMAIN public.sc_tenant_d CASCADE;
INSERT INTO public.sc_dom VALUES (1, 'acme');
SELECT para_sync.unsync_table('public.sc_dom');
SELECT key, seq, scope, op, env_scope FROM pg_temp.changes();
DROP TABLE public.sc_dom;
DROP DOMAIN public.sc_tenant_d;
-- other columns can
ALTER TABLE public.sc_orders DROP COLUMN region;
-- once the scope is removed, they can too; changes go out without a scope
SELECT para_sync.set_scope('public.sc_orders', NULL);
ALTER TABLE public.sc_orders ALTER COLUMN tenant TYPE varchar(20);
SELECT FROM pg_temp.changes();
UPDATE public.sc_orders SET tenant = 'x' WHERE id = 10;
SELECT key, seq, scope, op, env_scope FROM pg_temp.changes();

-- unsync publishes its deletes in each row's scope
SELECT para_sync.unsync_table('public.sc_multi');
SELECT key, seq, scope, op, env_scope FROM pg_temp.changes();

DROP TABLE public.sc_orders, public.sc_multi, public.sc_empty, public.sc_plain, public.sc_big,
	public.sc_bad, public.sc_untagged;
DROP ROLE para_sync_scope_reader, para_sync_scope_other;
TRUNCATE para_sync.outbox, para_sync.counters;
