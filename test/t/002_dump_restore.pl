# pg_dump and restore keep what para_sync knows: the registry (mapped to the
# restored table's new oid), every key's sequence, and the envelopes not yet
# published; capture goes on in the restored database without a gap.
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
});

my $dump = $node->basedir . '/source.sql';
command_ok([ 'pg_dump', '-d', $node->connstr('source'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'restore');

is( $node->safe_psql('restored',
		q{SELECT table_name || ' ' || sync_name || ' ' || schema_version FROM para_sync.synced_tables}),
	'items items 2',
	'the registry names the restored table');
is( $node->safe_psql('restored',
		q{SELECT string_agg(key || '=' || seq, ',' ORDER BY key) FROM para_sync.outbox}),
	'items:3=1,items:3=2',
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

$node->stop;
done_testing();
