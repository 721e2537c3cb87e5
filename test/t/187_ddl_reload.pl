# Column DDL and libparasync, with a real nats-server: ADD COLUMN, ALTER
# COLUMN ... TYPE ... USING, DROP COLUMN, RENAME COLUMN and ADD COLUMN with
# a volatile default change snapshot() of every row at the same sequence,
# without a row change.  The DDL publishes one table
# event ('reload', key = the sync name); replicas of the table's keys
# refetch and collections reload, so that every client ends equal to
# snapshot() of every key: value, sequence and schema_version.  One table
# is in the 'key' subject layout, one in the 'table' layout.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'ddl_reload_nats');
my $node = new_publisher_node('ddl_reload', $nats);

my %sub;
for my $s ([ items => 'synced.items' ], [ orders => 'synced.orders.>' ])
{
	my $file = "$tmp/ddl_reload_$s->[0].msgs";
	$sub{ $s->[0] } = { file => $file, h => start_sub($nats, $file, '-s', $s->[1]) };
}

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.items (id int PRIMARY KEY, n int, s text);
	CREATE TABLE public.shop_orders (id int PRIMARY KEY, total int, note text);
	SELECT para_sync.sync_table('public.items', schema_version => '1');
	BEGIN;
	SELECT para_sync.sync_table('public.shop_orders', name => 'orders', schema_version => '1');
	SELECT para_sync.set_subject_layout('public.shop_orders', 'table');
	COMMIT;
	INSERT INTO public.items SELECT i, i, 's' || i FROM generate_series(1, 30) i;
	INSERT INTO public.shop_orders SELECT i, 10 * i, 'n' || i FROM generate_series(1, 30) i;
	UPDATE public.items SET n = n + 100 WHERE id <= 10;
});

# replicas of some keys and a collection of each table
my ($in, $out, $err) = ('', '', '');
my $follow = IPC::Run::start(
	[ "$ENV{TESTDIR}/test/tools/psync_follow", '-u', nats_url($nats),
	  '-d', $node->connstr('postgres'), '-t', 'orders',
	  (map { "items:$_" } 1, 2, 11, 30), (map { "orders:$_" } 1, 29),
	  'items:*', 'orders:*' ],
	'<', \$in, '>', \$out, '2>', \$err);
ok(wait_for(sub { $follow->pump_nb; $out =~ /^ready$/m }, 'psync_follow ready'),
	'libparasync replicas and collections are set up') or diag($err);

# One dump of what the clients hold: [kind, key, sequence, status, hex].
sub dump_clients
{
	$out = '';
	$in .= "dump\n";
	wait_for(sub { $follow->pump_nb; $out =~ /^end$/m }, 'dump', 60) or return [];
	return [ map { [ split / / ] } grep { /^[RC] / } split /\n/, $out ];
}

# The keys whose client state differs from snapshot() (value, sequence,
# schema_version), and the collection keys missing or extra; '' when equal.
sub differences
{
	my $rows = dump_clients();
	return 'no dump' unless @$rows;
	my $values = join(',', map { "('$_->[0]', '$_->[1]', '$_->[4]')" } @$rows);
	return $node->safe_psql('postgres', qq{
		WITH held (kind, key, env) AS (VALUES $values),
		cmp AS (
			SELECT kind, key, para_sync.envelope_to_jsonb(decode(env, 'hex')) AS c,
			       para_sync.snapshot_json(key) AS s
			  FROM held)
		SELECT string_agg(kind || ' ' || key || ' holds ' || (c - 'op')::text
		                  || ' snapshot ' || (s - 'op')::text, E'\n' ORDER BY kind, key)
		  FROM (
			SELECT kind, key, c, s FROM cmp
			 WHERE c->'value' IS DISTINCT FROM s->'value'
			    OR c->'sequence' IS DISTINCT FROM s->'sequence'
			    OR c->'schema_version' IS DISTINCT FROM s->'schema_version'
			UNION ALL
			SELECT 'C', key, NULL, NULL FROM (
				SELECT 'items:' || id AS key FROM public.items
				UNION ALL SELECT 'orders:' || id FROM public.shop_orders
				EXCEPT SELECT key FROM held WHERE kind = 'C') missing
			UNION ALL
			SELECT 'C', key, NULL, NULL FROM held
			 WHERE kind = 'C' AND (para_sync.snapshot_json(key)->'value') = 'null'::jsonb) d});
}

sub converge
{
	my ($what) = @_;
	my $last;
	# the publisher drained the outbox: every event and change is on the bus
	ok( wait_for(sub {
			$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' },
			"outbox drained ($what)"),
		"$what: published");
	ok(wait_for(sub { ($last = differences()) eq '' }, "clients equal to snapshot() ($what)"),
		"$what: every replica and collection member equals snapshot()")
	  or diag($last);
}

converge('before any DDL');

$node->safe_psql('postgres', q{
	ALTER TABLE public.items ADD COLUMN c int DEFAULT 7;
	ALTER TABLE public.shop_orders ADD COLUMN c int DEFAULT 7;
});
is($node->safe_psql('postgres', q{SELECT para_sync.snapshot_json('items:1')->'value'->>'c'}), '7',
	'ADD COLUMN: the snapshot has the new field at the same sequence');
converge('ADD COLUMN');

$node->safe_psql('postgres', q{
	ALTER TABLE public.items ALTER COLUMN n TYPE text USING 'n=' || n;
	ALTER TABLE public.shop_orders ALTER COLUMN total TYPE numeric USING total / 4.0;
	UPDATE public.items SET s = 'after' WHERE id = 2;
});
converge('ALTER COLUMN TYPE USING');

$node->safe_psql('postgres', q{
	ALTER TABLE public.items DROP COLUMN s;
	ALTER TABLE public.shop_orders DROP COLUMN note;
	INSERT INTO public.items VALUES (31, 'new', 1);
	DELETE FROM public.shop_orders WHERE id = 30;
});
converge('DROP COLUMN');

# a rename, and a new column whose volatile default differs per row
$node->safe_psql('postgres', q{
	ALTER TABLE public.items RENAME COLUMN c TO c2;
	ALTER TABLE public.shop_orders ADD COLUMN r float8 DEFAULT random();
});
converge('RENAME COLUMN, ADD COLUMN DEFAULT random()');

is($node->safe_psql('postgres', q{SELECT para_sync.snapshot_json('items:2')->>'schema_version'}), '1+4',
	'four statements bumped the version of items four times');

# the events themselves, on the subjects of each layout
my @items_events = map { "$_->[0]/$_->[1]/$_->[2]" } @{ read_sub($sub{items}{file}) };
is(join(',', @items_events), 'items/1/reload,items/2/reload,items/3/reload,items/4/reload',
	'synced.items carries the four reload events of items');
my @orders_events = map { "$_->[0]/$_->[1]/$_->[2]" }
  grep { $_->[0] !~ /:/ } @{ read_sub($sub{orders}{file}) };
is(join(',', @orders_events), 'orders/1/reload,orders/2/reload,orders/3/reload,orders/4/reload',
	'synced.orders.> carries the reload events of the table-layout table');

$in .= "quit\n";
$follow->finish;
is($follow->result(0), 0, 'psync_follow exits cleanly') or diag($err);
stop_sub($_->{h}) for values %sub;
stop_nats($nats);
done_testing();
