# Without shared_preload_libraries there is no publisher and no shared
# memory, but the library still loads (CREATE EXTENSION, capture,
# snapshot()) in any backend: defining a PGC_POSTMASTER setting after
# startup would be FATAL for every session that loads it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('nopreload');
$node->init;
$node->start;

my ($rc, $out, $err) = $node->psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.items (id int PRIMARY KEY, label text);
	SELECT FROM para_sync.sync_table('public.items');
	INSERT INTO public.items VALUES (1, 'a');
});
is($rc, 0, 'the library loads without shared_preload_libraries') or diag($err);
is( $node->safe_psql('postgres', q{SELECT para_sync.snapshot('items:1') IS NOT NULL}),
	't', 'capture and snapshot() work in a new session');

$node->stop;
done_testing();
