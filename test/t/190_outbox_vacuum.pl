# The publisher vacuums the outbox itself after draining a backlog
# (src/outbox_vacuum.c): with autovacuum off, the dead rows and dead index
# entries that removing 50,000 published envelopes left behind are gone
# within seconds of the outbox running empty, while writers keep writing and
# every change still arrives in per-key order.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $nats = start_nats(name => 'vac_nats');
my $node = new_publisher_node('vac', $nats, "autovacuum = off\n");
my $file = "${PostgreSQL::Test::Utils::tmp_check}/vac.msgs";
my $sub = start_sub($nats, $file);

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL, note text);
	SELECT para_sync.sync_table('public.items');
	INSERT INTO public.items SELECT g, 0, 'n' || g FROM generate_series(1, 2000) g;
});
ok(wait_for(sub { $node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' },
		'first drain'), 'the first 2,000 envelopes drain');

my $vacuums_sql = q{SELECT vacuum_count FROM pg_catalog.pg_stat_user_tables
	WHERE relid = 'para_sync.outbox'::regclass};
# a started worker vacuums once when it first catches up (a crash may have left dead rows)
ok(wait_for(sub { $node->safe_psql('postgres', $vacuums_sql) >= 1 }, 'vacuum after start'),
	'the worker vacuums the outbox once after it started and caught up');
my $vacuums = $node->safe_psql('postgres', $vacuums_sql);

# a backlog of 50,000 envelopes while NATS is out of reach
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET para_sync.nats_url = 'nats://127.0.0.1:1';
	SELECT pg_catalog.pg_reload_conf();});
ok(wait_for(sub { $node->safe_psql('postgres',
			q{SELECT nats_state <> 'connected' FROM para_sync.status}) eq 't' }, 'disconnect'),
	'the worker lets go of NATS');
$node->safe_psql('postgres', 'UPDATE public.items SET v = v + 1') for 1 .. 25;
is($node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox'), '50000',
	'50,000 envelopes wait in the outbox');
is($node->safe_psql('postgres', $vacuums_sql), $vacuums, 'no vacuum while nothing drains');

# drain it while writers keep writing, during and after the vacuum
my $pgb = start_pgbench($node, q{
\set id random(1, 2000)
UPDATE public.items SET v = v + 1 WHERE id = :id;
}, '-c', '2', '-j', '2', '-R', '200', '-t', '800');
$node->safe_psql('postgres', "ALTER SYSTEM SET para_sync.nats_url = '" . nats_url($nats) . "';
	SELECT pg_catalog.pg_reload_conf();");

ok(wait_for(sub { $node->safe_psql('postgres', $vacuums_sql) > $vacuums },
		'vacuum after the drain', deadline_for(50000)),
	'after the drain the publisher vacuums the outbox itself (autovacuum is off)');

my ($rc, $out, $err) = finish_pgbench($pgb);
is($rc, 0, 'writers ran undisturbed') or diag($err);
my $total;
ok(wait_all_delivered($node, $file, 'everything delivered', \$total),
	"all $total changes delivered");
my @problems = check_contiguous(read_sub($file));
is(scalar(@problems), 0, 'per-key sequences contiguous and in order')
  or diag(join("\n", @problems[ 0 .. ($#problems < 9 ? $#problems : 9) ]));

# the worker's deletes reach the statistics while it runs, so that autovacuum
# (when on) sees the outbox's dead rows too
ok(wait_for(sub { $node->safe_psql('postgres', q{SELECT n_tup_del FROM pg_catalog.pg_stat_user_tables
			WHERE relid = 'para_sync.outbox'::regclass}) >= $total }, 'statistics'),
	"the worker's deletes show in pg_stat_user_tables");

# the dead index entries of the backlog are gone: the primary key's empty
# leaf pages were deleted (50,000 entries take some 300 leaf pages)
SKIP:
{
	skip 'pgstattuple not available', 1
	  unless $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_catalog.pg_available_extensions WHERE name = 'pgstattuple'}) eq '1';
	$node->safe_psql('postgres', 'CREATE EXTENSION pgstattuple');
	my $leaves = $node->safe_psql('postgres',
		q{SELECT leaf_pages FROM public.pgstatindex('para_sync.outbox_pkey')});
	cmp_ok($leaves, '<', 60, "the outbox's primary key is small again ($leaves leaf pages)");
}

stop_sub($sub);
$node->stop;
stop_nats($nats);
done_testing();
