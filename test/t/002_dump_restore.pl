# pg_dump and restore keep what para_sync knows: the registry (mapped to the
# restored table's new oid), every key's sequence, and the envelopes not yet
# published; capture goes on in the restored database without a gap.  A
# partitioned table synced by its root comes back the same way, with its
# partitions captured (src/partition.c).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
# the publisher must not drain the outboxes this test compares
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'para_sync'
para_sync.nats_url = 'nats://127.0.0.1:1'
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE source');
$node->safe_psql('source', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.items (id int PRIMARY KEY, label text);
	SELECT para_sync.sync_table('public.items', schema_version => '2');
	INSERT INTO public.items SELECT g, 'a' FROM generate_series(1, 3) g;
	UPDATE public.items SET label = 'b';
	-- items:1 and items:2 consumed (sequences in counters), items:3 pending
	SELECT para_sync.ack('{items:1,items:2}', '{2,2}');
	CREATE TABLE public.parts (region int, id int, label text, PRIMARY KEY (region, id))
		PARTITION BY LIST (region);
	CREATE TABLE public.parts_1 PARTITION OF public.parts FOR VALUES IN (1);
	CREATE TABLE public.parts_2 PARTITION OF public.parts FOR VALUES IN (2)
		PARTITION BY HASH (id);
	CREATE TABLE public.parts_2a PARTITION OF public.parts_2 FOR VALUES WITH (MODULUS 1, REMAINDER 0);
	SELECT para_sync.sync_table('public.parts');
	INSERT INTO public.parts VALUES (1, 1, 'a'), (2, 1, 'a');
});

my $dump = $node->basedir . '/source.sql';
command_ok([ 'pg_dump', '-d', $node->connstr('source'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'restore');

is( $node->safe_psql('restored',
		q{SELECT string_agg(table_name || ' ' || sync_name || ' ' || schema_version, ',' ORDER BY sync_name)
		    FROM para_sync.synced_tables}),
	'items items 2,parts parts 1',
	'the registry names the restored table');
is( $node->safe_psql('restored',
		q{SELECT string_agg(key || '=' || seq, ',' ORDER BY key) FROM para_sync.outbox}),
	'items:3=1,items:3=2,parts:1:1=1,parts:2:1=1',
	'unpublished envelopes survive');

$node->safe_psql('restored', q{UPDATE public.items SET label = 'c' WHERE id IN (1, 3)});
is( $node->safe_psql(
		'restored', q{
	SELECT string_agg(key || '=' || seq, ',' ORDER BY key, seq) FROM para_sync.outbox
	 WHERE (para_sync.envelope_to_jsonb(envelope)->'value'->>'label') = 'c'}),
	'items:1=3,items:3=3',
	'sequences continue in the restored database');
is($node->safe_psql('restored', q{SELECT para_sync.snapshot_json('items:2')->'sequence'}),
	'2', 'snapshot reads the restored counter');

# the partitioned root: every partition captured, ALWAYS, truncate included
is( $node->safe_psql(
		'restored', q{
	SELECT string_agg(t.tgrelid::regclass || '.' || t.tgname || '=' || t.tgenabled::text, ','
					  ORDER BY t.tgrelid::regclass::text, t.tgname)
	  FROM pg_trigger t WHERE t.tgname LIKE 'para_sync%' AND t.tgrelid::regclass::text LIKE 'parts%'}),
	'parts.para_sync_capture=A,parts.para_sync_no_truncate=A,'
	  . 'parts_1.para_sync_capture=A,parts_1.para_sync_no_truncate=A,'
	  . 'parts_2.para_sync_capture=A,parts_2.para_sync_no_truncate=A,'
	  . 'parts_2a.para_sync_capture=A,parts_2a.para_sync_no_truncate=A',
	'the partitions keep their triggers, ENABLE ALWAYS');
$node->safe_psql(
	'restored', q{
	UPDATE public.parts SET label = 'c';
	UPDATE public.parts SET region = 2, id = 2 WHERE region = 1;
	TRUNCATE public.parts_2a;
});
is( $node->safe_psql(
		'restored', q{
	SELECT string_agg(key || '=' || seq || ':' || (para_sync.envelope_to_jsonb(envelope)->>'op'), ','
					  ORDER BY key, seq)
	  FROM para_sync.outbox WHERE key LIKE 'parts:%'}),
	'parts:1:1=1:upsert,parts:1:1=2:upsert,parts:1:1=3:delete,'
	  . 'parts:2:1=1:upsert,parts:2:1=2:upsert,parts:2:1=3:delete,'
	  . 'parts:2:2=1:upsert,parts:2:2=2:delete',
	'the restored root captures its partitions, moves and TRUNCATE included');

$node->stop;
done_testing();
