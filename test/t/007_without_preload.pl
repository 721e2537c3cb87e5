# Without shared_preload_libraries there is no publisher and no shared
# memory, but the library still loads (CREATE EXTENSION, capture,
# snapshot()) in any backend: defining a PGC_POSTMASTER setting after
# startup would be FATAL for every session that loads it.  Sync-name
# owners follow DROP OWNED there too.
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

# the statement that loads the library (the first capture of a new
# session) has its envelopes written when it ends, as every later one,
# though the hooks that write them there were not in place when it started
is( $node->safe_psql('postgres', q{
	BEGIN;
	UPDATE public.items SET label = 'b' WHERE id = 1;
	SELECT count(*) FROM para_sync.outbox WHERE key = 'items:1';
	COMMIT;
}), '2', 'the envelope of the statement that loaded the library is in the outbox when it ends');

# a session that never loaded the library has no utility hook: DROP OWNED
# (which revokes the owner's privilege on para_sync.sync_names) must still
# release the role's names, or DROP ROLE leaves them bound to a dead OID
$node->safe_psql('postgres', q{
	CREATE ROLE regress_np;
	GRANT CREATE ON SCHEMA public TO regress_np;
	SET ROLE regress_np;
	CREATE TABLE public.np (id int PRIMARY KEY);
	SELECT FROM para_sync.sync_table('public.np');
	SELECT FROM para_sync.unsync_table('public.np');
	DROP TABLE public.np;
	RESET ROLE;
	REVOKE CREATE ON SCHEMA public FROM regress_np;
});
$node->safe_psql('postgres', 'DROP OWNED BY regress_np; DROP ROLE regress_np;');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM para_sync.sync_names n
		WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = n.owner::oid)}),
	'0', 'DROP OWNED in a fresh session releases the names: none is left to a dropped role');

$node->stop;
done_testing();
