# Scoped streams under real authorization: the nats-server has three users
# — the publisher, allowed to publish synced.>, and acme and globex, each
# allowed to subscribe to its own scope (synced.*.<user>.>) and the table's
# events (synced.orders.orders) only — and PostgreSQL has the same two
# roles, each seeing its own rows through a row-level security policy
# (docs/publisher.md, "Scoped streams").  Each user's collection of its
# scope converges while rows move between the scopes; subscribing to the
# other scope, to the whole table or to one key everywhere is refused by
# the NATS server, and the client says so (status and the server's text).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $nats = start_nats(name => 'scope_perm_nats', extra => q{
authorization {
  users: [
    { user: publisher, password: "pub-secret",
      permissions: { publish: ["synced.>"], subscribe: ["_INBOX.>"] } }
    { user: acme, password: "acme-secret",
      permissions: { publish: ["_INBOX.>"],
                     subscribe: ["synced.*.acme.>", "synced.orders.orders", "_INBOX.>"] } }
    { user: globex, password: "globex-secret",
      permissions: { publish: ["_INBOX.>"],
                     subscribe: ["synced.*.globex.>", "synced.orders.orders", "_INBOX.>"] } }
  ]
}
});
my $node = new_publisher_node('scope_perm', $nats, qq{
para_sync.nats_user = 'publisher'
para_sync.nats_password = 'pub-secret'
});

create_scoped_orders($node, 30);
$node->safe_psql('postgres', q{
	-- the same users in PostgreSQL: each reads its own tenant's rows
	CREATE ROLE acme LOGIN;
	CREATE ROLE globex LOGIN;
	GRANT SELECT ON public.shop_orders TO acme, globex;
	ALTER TABLE public.shop_orders ENABLE ROW LEVEL SECURITY;
	CREATE POLICY tenant_rows ON public.shop_orders FOR SELECT USING (tenant = current_user);
});

my $port = $nats->{port};
my %follow;
for my $user (qw(acme globex))
{
	my $err = '';
	$follow{$user} = start_follow("nats://$user:$user-secret\@127.0.0.1:$port",
		$node->connstr('postgres') . " user=$user", [ '-S', 'orders', "orders\@$user:*" ], \$err);
	ok($follow{$user}, "user $user loads the collection of scope $user") or diag($err);
}

sub scope_members
{
	my ($user) = @_;
	return qq{SELECT 'orders:' || id FROM public.shop_orders WHERE tenant = '$user'};
}

sub converge
{
	my ($what) = @_;
	ok( wait_for(sub {
			$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' },
			"outbox drained ($what)"),
		"$what: published through the publisher's own NATS user");
	for my $user (qw(acme globex))
	{
		my $last;
		ok( wait_for(sub {
				($last = follow_differences($node, $follow{$user}, scope_members($user))) eq '' },
				"$user converges ($what)"),
			"$what: $user\'s collection holds exactly the $user rows, each equal to snapshot()")
		  or diag($last);
	}
}

converge('after the load');

my $pgb = start_pgbench($node, q{
\set id random(1, 30)
\set t random(0, 1)
UPDATE public.shop_orders SET tenant = (ARRAY['acme', 'globex'])[:t + 1], total = total + 1 WHERE id = :id;
\set id2 random(1, 30)
UPDATE public.shop_orders SET total = total + 1 WHERE id = :id2;
}, '-c', '2', '-t', '150');
my ($rc, $out, $err) = finish_pgbench($pgb);
is($rc, 0, 'the writers succeeded') or diag($err);
converge('after rows moved between acme and globex');

# the other scope, the whole table, one key everywhere: refused by the server
for my $t ([ 'orders@globex:*', 'synced.orders.globex.>' ],
	[ 'orders:*', 'synced.orders.>' ],
	[ 'orders:2', 'synced.orders.*.orders:2' ])
{
	my ($what, $subject) = @$t;
	my $err = '';
	my $f = start_follow("nats://acme:acme-secret\@127.0.0.1:$port",
		$node->connstr('postgres') . ' user=acme', [ '-S', 'orders', $what ], \$err);
	ok(!defined $f, "acme cannot follow $what");
	like($err, qr/subscription refused by the NATS server/,
		"$what: the client reports the refusal");
	like($err, qr/Permissions Violation for Subscription to "\Q$subject\E"/i,
		"$what: with the server's text naming $subject");
	stop_follow($f) if $f;
}

is(stop_follow($follow{$_}), 0, "the $_ client exits cleanly") for sort keys %follow;
stop_nats($nats);
done_testing();
