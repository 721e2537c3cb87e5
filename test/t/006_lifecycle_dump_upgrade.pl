# Sync-name claims and the table-lifecycle triggers survive pg_dump/restore
# (the owner is written by role name) and an upgrade from 0.1: the upgrade
# claims the names of tagged tables for their owners and the names that only
# keys remember for the extension owner, and TRUNCATE through a trigger that
# 0.1 created publishes deletes.  Each owner's privilege on sync_names (its
# dependency for DROP ROLE) survives both.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('lifecycle');
$node->init;
# no publisher drains the outboxes this test reads
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'para_sync'
para_sync.nats_url = 'nats://127.0.0.1:1'
para_sync.sequence_cache_check = on
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE ROLE regress_a;
	CREATE ROLE regress_b;
	GRANT CREATE ON SCHEMA public TO regress_a, regress_b;
	CREATE DATABASE source;
	CREATE DATABASE restored;
	CREATE DATABASE old;
});
$node->safe_psql('source', q{GRANT CREATE ON SCHEMA public TO regress_a, regress_b});
$node->safe_psql('old', q{GRANT CREATE ON SCHEMA public TO regress_a, regress_b});

sub changes
{
	my ($db, $prefix) = @_;
	return $node->safe_psql($db, qq{
		SELECT string_agg(o.key || '=' || o.seq || ' ' || (para_sync.envelope_to_jsonb(o.envelope)->>'op'),
						  ',' ORDER BY o.key, o.seq)
		  FROM para_sync.outbox o WHERE o.key LIKE '$prefix:%'});
}

# ---- dump and restore
$node->safe_psql('source', q{
	CREATE EXTENSION para_sync;
	SET ROLE regress_a;
	CREATE TABLE public.victim (id int PRIMARY KEY, v text);
	SELECT para_sync.sync_table('public.victim');
	INSERT INTO public.victim VALUES (1, 'a');
	SELECT para_sync.unsync_table('public.victim');
	CREATE TABLE public.kept (id int PRIMARY KEY, v text);
	SELECT para_sync.sync_table('public.kept');
	INSERT INTO public.kept VALUES (1, 'k'), (2, 'k');
});

my $dump = $node->basedir . '/source.sql';
command_ok([ 'pg_dump', '-d', $node->connstr('source'), '-f', $dump ], 'pg_dump');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'restore');

is( $node->safe_psql('restored',
		q{SELECT string_agg(sync_name || '=' || owner, ',' ORDER BY sync_name) FROM para_sync.sync_names}),
	'kept=regress_a,victim=regress_a',
	'the claims are restored, owners mapped by role name');
# the owner's privilege on para_sync.sync_names (what makes DROP ROLE in
# another database refuse, src/sync_names.c) is restored with the claims
is( $node->safe_psql('restored',
		q{SELECT array_to_string(relacl, ',') LIKE '%regress_a=r/%' FROM pg_class
		   WHERE oid = 'para_sync.sync_names'::regclass}),
	't', 'the owner holds its privilege on sync_names after the restore');
is( $node->safe_psql('restored',
		q{SELECT string_agg(evtname, ',' ORDER BY evtname) FROM pg_event_trigger WHERE evtname LIKE 'para_sync%'}),
	'para_sync_check_dropped_tables,para_sync_ddl_guard_drop,para_sync_ddl_guard_end,para_sync_ddl_guard_start,para_sync_ddl_guard_types,para_sync_forget_dropped_tables,para_sync_partitions_drop,para_sync_partitions_end,para_sync_partitions_start,para_sync_retire_dropped_tables,para_sync_sync_names_drop_owned',
	'each event trigger exists once');

my ($rc, $out, $err) = $node->psql('restored', q{
	SET ROLE regress_b;
	CREATE TABLE public.fake (id int PRIMARY KEY, v text);
	SELECT para_sync.sync_table('public.fake', 'victim');});
like($err, qr/sync name "victim" belongs to role "regress_a"/, 'another role cannot take a restored name over');

$node->safe_psql('restored', q{SET ROLE regress_a; SELECT para_sync.sync_table('public.victim'); DROP TABLE public.kept;});
is(changes('restored', 'kept'), 'kept:1=1 upsert,kept:1=2 delete,kept:2=1 upsert,kept:2=2 delete',
	'DROP TABLE in the restored database publishes a delete per row');

# ---- upgrade from 0.1
# (this library refuses sync_table() on a 0.1 schema, so tag as 0.1 did:
# the registry row and the triggers)
$node->safe_psql('old', q{
	CREATE EXTENSION para_sync VERSION '0.1';
	SET ROLE regress_a;
	CREATE TABLE public.u1 (id int PRIMARY KEY, v text);
	CREATE TABLE public.gone (id int PRIMARY KEY);
	RESET ROLE;
	INSERT INTO para_sync.tables (relid, sync_name, schema_version)
	VALUES ('public.u1', 'u1', '1'), ('public.gone', 'gone', '1');
	SELECT para_sync.install_triggers('public.u1'), para_sync.install_triggers('public.gone');
	INSERT INTO public.u1 VALUES (1, 'a'), (2, 'b');
	INSERT INTO public.gone VALUES (1);
	DELETE FROM para_sync.tables WHERE sync_name = 'gone';
	SELECT para_sync.drop_triggers('public.gone');
	-- part of the backlog already published: only counters remember u1:2
	SELECT para_sync.ack('{u1:2}', '{1}');
});
$node->safe_psql('old', q{ALTER EXTENSION para_sync UPDATE TO '0.2'});

is( $node->safe_psql('old',
		q{SELECT string_agg(sync_name || '=' || owner, ',' ORDER BY sync_name) FROM para_sync.sync_names}),
	'gone=postgres,u1=regress_a',
	'the upgrade claims tagged names for their owners, remembered ones for the extension owner');

($rc, $out, $err) = $node->psql('old', q{
	SET ROLE regress_b;
	CREATE TABLE public.fake (id int PRIMARY KEY);
	SELECT para_sync.sync_table('public.fake', 'gone');});
like($err, qr/sync name "gone" belongs to role "postgres"/, 'a name only keys remember is not free after the upgrade');

# ---- upgrade from 0.2: owners get their privilege on sync_names; a name
# whose owner role is gone (possible under 0.2) passes to the extension
# owner, never to a later role given the same OID
$node->safe_psql('old', q{
	INSERT INTO para_sync.sync_names (sync_name, owner) VALUES ('orphan', 4000000000::oid::regrole)});
$node->safe_psql('old', q{ALTER EXTENSION para_sync UPDATE});
is( $node->safe_psql('old',
		q{SELECT string_agg(sync_name || '=' || owner, ',' ORDER BY sync_name) FROM para_sync.sync_names}),
	'gone=postgres,orphan=postgres,u1=regress_a',
	'the update to 0.3 gives the names of dropped roles to the extension owner');
is( $node->safe_psql('old',
		q{SELECT array_to_string(relacl, ',') LIKE '%regress_a=r/%' FROM pg_class
		   WHERE oid = 'para_sync.sync_names'::regclass}),
	't', 'the update to 0.3 grants each owner its privilege on sync_names');

$node->safe_psql('old', q{TRUNCATE public.u1});
is(changes('old', 'u1'), 'u1:1=1 upsert,u1:1=2 delete,u1:2=2 delete',
	'TRUNCATE through the trigger 0.1 created publishes a delete per row');
is($node->safe_psql('old', q{SELECT para_sync.snapshot_json('u1:2')->>'sequence'}), '2',
	'snapshot agrees');

$node->safe_psql('old', q{
	INSERT INTO public.u1 VALUES (3, 'c');
	SET ROLE regress_a;
	DROP TABLE public.u1;});
is(changes('old', 'u1'), 'u1:1=1 upsert,u1:1=2 delete,u1:2=2 delete,u1:3=1 upsert,u1:3=2 delete',
	'DROP TABLE of a table tagged under 0.1 publishes its deletes');
is($node->safe_psql('old', q{SELECT para_sync.snapshot_json('u1:3')->>'sequence'}), '2',
	'snapshot of a dropped table is nil at the last sequence');

# the privileges the update granted are initial privileges of the extension
# (pg_dump leaves them out); sync_names' trigger grants them again as the
# restore loads the claims
my $dump_old = $node->basedir . '/old.sql';
$node->safe_psql('postgres', q{CREATE DATABASE old_restored});
command_ok([ 'pg_dump', '-d', $node->connstr('old'), '-f', $dump_old ], 'pg_dump of the updated database');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('old_restored'), '-f', $dump_old ],
	'restore of the updated database');
is( $node->safe_psql('old_restored',
		q{SELECT array_to_string(relacl, ',') LIKE '%regress_a=r/%' FROM pg_class
		   WHERE oid = 'para_sync.sync_names'::regclass}),
	't', 'an owner the update granted its privilege holds it after a restore');

$node->stop;
done_testing();
