# Scoped streams end to end, with the publisher and a real nats-server:
# concurrent writers move rows between scopes (an UPDATE of the scope
# column, also there and back in one transaction), update, insert and
# delete them.  Three libparasync collections — scope acme, scope globex,
# every scope — and replicas of two keys (which follow their key into any
# scope) each end exact against the table: a scope's collection holds
# exactly the rows now in that scope, each member and replica equal to
# para_sync.snapshot() of its key (value and sequence).  A recorder of one
# scope's subjects receives only envelopes of that scope.  The writers'
# work is a fixed number of transactions.
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
my $nats = start_nats(name => 'scope_moves_nats');
my $node = new_publisher_node('scope_moves', $nats);
my $acme_file = "$tmp/scope_moves_acme.msgs";
my $acme_sub = start_sub($nats, $acme_file, '-s', 'synced.orders.acme.>');

create_scoped_orders($node, 40);
is($node->safe_psql('postgres',
		q{SELECT scope_columns::text FROM para_sync.synced_tables WHERE sync_name = 'orders'}),
	'{tenant}', 'the table has a scope');

my $url = nats_url($nats);
my $connstr = $node->connstr('postgres');
my %follow;
$follow{acme} = start_follow($url, $connstr, [ '-S', 'orders', 'orders@acme:*' ]);
$follow{globex} = start_follow($url, $connstr, [ '-S', 'orders', 'orders@globex:*' ]);
$follow{all} = start_follow($url, $connstr, [ '-S', 'orders', 'orders:1', 'orders:2', 'orders:*' ]);
ok($follow{acme} && $follow{globex} && $follow{all},
	'collections of scope acme, of scope globex and of every scope are loaded');

my %members = (
	acme => q{SELECT 'orders:' || id FROM public.shop_orders WHERE tenant = 'acme'},
	globex => q{SELECT 'orders:' || id FROM public.shop_orders WHERE tenant = 'globex'},
	all => q{SELECT 'orders:' || id FROM public.shop_orders});

sub converge
{
	my ($what) = @_;
	ok( wait_for(sub {
			$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' },
			"outbox drained ($what)"),
		"$what: published");
	for my $c (qw(acme globex all))
	{
		my $last;
		ok(wait_for(sub { ($last = follow_differences($node, $follow{$c}, $members{$c})) eq '' },
				"$c equal to the table ($what)"),
			"$what: the $c collection holds exactly its rows, each equal to snapshot()")
		  or diag($last);
	}
}

converge('after the load');

# the writers: moves (also there and back in one transaction), updates,
# inserts into any scope, deletes
my $pgb = start_pgbench($node, q{
\set id random(1, 40)
\set t random(0, 2)
UPDATE public.shop_orders SET tenant = (ARRAY['acme', 'globex', 'initech'])[:t + 1], total = total + 1 WHERE id = :id;
\set id2 random(1, 40)
UPDATE public.shop_orders SET total = total + 1 WHERE id = :id2;
\set id3 random(1, 40)
BEGIN;
UPDATE public.shop_orders SET tenant = 'acme' WHERE id = :id3;
UPDATE public.shop_orders SET tenant = 'globex', total = total + 1 WHERE id = :id3;
COMMIT;
\set id4 random(41, 60)
\set t4 random(0, 1)
INSERT INTO public.shop_orders VALUES (:id4, (ARRAY['acme', 'globex'])[:t4 + 1], 1)
  ON CONFLICT (id) DO UPDATE SET tenant = EXCLUDED.tenant, total = public.shop_orders.total + 1;
\set id5 random(41, 60)
DELETE FROM public.shop_orders WHERE id = :id5;
}, '-c', '3', '-t', '150');
my ($rc, $out, $err) = finish_pgbench($pgb);
is($rc, 0, 'the writers succeeded') or diag($err);

converge('after concurrent moves');

# every envelope on acme's subjects is of scope acme, deletes included
stop_sub($acme_sub);
my $msgs = read_sub($acme_file);
ok(@$msgs > 40, 'the recorder of synced.orders.acme.> received envelopes');
my $hexes = join(',', map { "('$_->[3]')" } @$msgs);
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM (VALUES $hexes) v(h)
	 WHERE para_sync.envelope_to_jsonb(decode(h, 'hex'))->>'scope' IS DISTINCT FROM 'acme'}),
	'0', 'every envelope on acme\'s subjects carries scope acme');
ok((grep { $_->[2] eq 'delete' } @$msgs), 'moves out of acme reached its subjects as deletes');

# each (key, sequence) went out once, with one content, whatever its scope
my $all_file = "$tmp/scope_moves_all.msgs";
my $all_sub = start_sub($nats, $all_file, '-s', 'synced.orders.>');
$node->safe_psql('postgres', q{
	UPDATE public.shop_orders SET tenant = CASE tenant WHEN 'acme' THEN 'globex' ELSE 'acme' END
	 WHERE id <= 10;
});
ok( wait_for(sub {
		my $n = grep { $_->[2] eq 'delete' } @{ read_sub($all_file) };
		$n == 10 }, 'ten moves recorded'),
	'ten moves: ten deletes on synced.orders.>');
my @dup = check_contiguous(read_sub($all_file), 1);
is(scalar(@dup), 0, 'the moves\' sequences are contiguous per key, each with one content')
  or diag(join("\n", @dup));
stop_sub($all_sub);
converge('after ten moves at once');

is(stop_follow($follow{$_}), 0, "the $_ client exits cleanly") for sort keys %follow;
stop_nats($nats);
done_testing();
