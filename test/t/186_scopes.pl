# Scopes with a real nats-server (docs/protocol.md, "Scopes"): a table with
# a scope publishes each change on synced.<sync name>.<scope>.<key>, so the
# server selects one tenant's rows.  Two writers move rows between the
# scopes acme and globex and change them, a bounded number of times; then:
#   - a subscriber of synced.orders.acme.> (and one of ...globex.>) gets
#     only its scope's envelopes, each carrying that scope, with no gap for
#     a row it holds, and ends holding exactly the scope's rows, at
#     snapshot(key)'s sequences;
#   - a subscriber of synced.orders.*.* gets every change of the table, in
#     order and gap-free per key, never a table event;
#   - a move is a delete on the old scope's subject, then an upsert on the
#     new one's, at the next two sequences;
#   - a key's subscriber synced.orders.*.<key> follows it across scopes;
#   - table events go to synced.orders.orders;
#   - an envelope beyond max_payload goes out as op refetch on its scope's
#     subject, with its scope;
#   - every (key, sequence) has one envelope, whichever subject it went on;
#   - pg_dump and restore keep the scope columns.
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
my $nats = start_nats(name => 'scope_nats', max_payload => 4096);
my $node = new_publisher_node('scopes', $nats);

my %sub;
for my $s ([ acme => 'synced.orders.acme.>' ], [ globex => 'synced.orders.globex.>' ],
	[ table => 'synced.orders.*.*' ], [ all => 'synced.>' ],
	[ key7 => 'synced.orders.*.orders:7' ], [ events => 'synced.orders.orders' ])
{
	my $file = "$tmp/scope_$s->[0].msgs";
	$sub{ $s->[0] } = { file => $file, h => start_sub($nats, $file, '-s', $s->[1]) };
}

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.shop_orders (id int PRIMARY KEY, tenant text NOT NULL, n int);
	CREATE INDEX ON public.shop_orders (tenant, id);
	BEGIN;
	SELECT para_sync.sync_table('public.shop_orders', name => 'orders');
	SELECT para_sync.set_scope('public.shop_orders', '{tenant}');
	COMMIT;
	INSERT INTO public.shop_orders
		SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, 0
		  FROM generate_series(1, 20) g;
});

# two writers: moves of random rows to a random scope, and updates in place
my $pgb = start_pgbench($node, q{
\set id random(1, 20)
\set to random(0, 1)
UPDATE public.shop_orders SET tenant = CASE WHEN :to = 0 THEN 'acme' ELSE 'globex' END, n = n + 1 WHERE id = :id;
\set id2 random(1, 20)
UPDATE public.shop_orders SET n = n + 1 WHERE id = :id2;
}, '-c', '2', '-t', '150');
my ($rc, $out, $err) = finish_pgbench($pgb);
is($rc, 0, 'writers succeeded') or diag($err);

# one known move at the end: orders:7 from globex to acme
my $seq7 = $node->safe_psql('postgres', q{
	UPDATE public.shop_orders SET tenant = 'globex' WHERE id = 7;
	SELECT (para_sync.snapshot_json('orders:7')->>'sequence')::int});
$node->safe_psql('postgres', q{UPDATE public.shop_orders SET tenant = 'acme' WHERE id = 7});

my $total;
ok(wait_all_delivered($node, $sub{all}{file}, 'every change on synced.>', \$total),
	'synced.> receives every change');

# the scope field of an envelope (hex), or undef
sub scope_of
{
	my ($hex) = @_;
	my $bytes = pack('H*', $hex);
	return undef unless $bytes =~ /\xa5scope([\xa0-\xbf])/;
	return substr($bytes, $+[1], ord($1) & 0x1f);
}

my $all = read_sub($sub{all}{file});
my $tbl = read_sub($sub{table}{file});
is(scalar(keys %{ { map { ("$_->[0]/$_->[1]" => 1) } @$tbl } }), $total,
	"synced.orders.*.* receives every change ($total)");
is_deeply([ check_contiguous($tbl) ], [], 'synced.orders.*.*: every key gap-free and in order');
is_deeply([ grep { $_->[0] !~ /^orders:/ } @$tbl ], [], 'synced.orders.*.* gets no table event');
is_deeply([ grep { !defined scope_of($_->[3]) } @$all ], [], 'every envelope carries its scope');

# one envelope per (key, sequence), over every subscriber
my (%env, @two);
for my $name (keys %sub)
{
	for my $m (@{ read_sub($sub{$name}{file}) })
	{
		my $id = "$m->[0]/$m->[1]";
		push @two, "$name: $id" if defined $env{$id} && $env{$id} ne $m->[3];
		$env{$id} = $m->[3];
	}
}
is_deeply(\@two, [], 'each (key, sequence) has one envelope, whatever its subject');

# a scope's subscriber: only its scope; a held key's next envelope is the
# next sequence; a key not held only enters (upsert); it ends with the scope
my $rows = $node->safe_psql('postgres', q{
	SELECT string_agg(tenant || ' orders:' || id || ' ' ||
					  (para_sync.snapshot_json('orders:' || id)->>'sequence'), ',')
	  FROM public.shop_orders});
my %want;
for (split /,/, $rows)
{
	my ($tenant, $key, $seq) = split / /;
	$want{$tenant}{$key} = $seq;
}
for my $scope (qw(acme globex))
{
	my $msgs = read_sub($sub{$scope}{file});
	my (%held, @problems);
	ok(scalar(@$msgs) > 0, "$scope: received envelopes");
	is_deeply([ grep { (scope_of($_->[3]) // '') ne $scope } @$msgs ], [],
		"$scope: every envelope is of scope $scope");
	for my $m (@$msgs)
	{
		my ($k, $s, $op) = @$m;
		if (exists $held{$k})
		{
			push @problems, "$k: $s after $held{$k}" if $s != $held{$k} + 1;
		}
		elsif ($op ne 'upsert')
		{
			push @problems, "$k: $op $s of a key not held";
		}
		if ($op eq 'delete') { delete $held{$k} }
		else { $held{$k} = $s }
	}
	is_deeply(\@problems, [], "$scope: no gap for a key held, keys enter by upsert");
	is_deeply(\%held, $want{$scope} // {},
		"$scope: ends with exactly the scope's rows at snapshot()'s sequences");
}

# the move of orders:7: delete on globex's subject, then upsert on acme's
my @g7 = grep { $_->[0] eq 'orders:7' && $_->[1] > $seq7 } @{ read_sub($sub{globex}{file}) };
my @a7 = grep { $_->[0] eq 'orders:7' && $_->[1] > $seq7 } @{ read_sub($sub{acme}{file}) };
is(join(',', map { "$_->[1] $_->[2]" } @g7), ($seq7 + 1) . ' delete',
	'a move is a delete on the old scope\'s subject');
is(join(',', map { "$_->[1] $_->[2]" } @a7), ($seq7 + 2) . ' upsert',
	'... then an upsert on the new scope\'s subject');
my @t7 = map { "$_->[1] $_->[2] " . scope_of($_->[3]) }
  grep { $_->[0] eq 'orders:7' && $_->[1] > $seq7 } @$tbl;
is(join(',', @t7), ($seq7 + 1) . ' delete globex,' . ($seq7 + 2) . ' upsert acme',
	'synced.orders.*.* sees the delete, then the upsert');

# a key's subscriber follows it through every scope
my $k7 = read_sub($sub{key7}{file});
is_deeply([ grep { $_->[0] ne 'orders:7' } @$k7 ], [], 'synced.orders.*.orders:7 gets only orders:7');
is_deeply([ check_contiguous($k7) ], [], 'orders:7 gap-free across its scopes');
is($k7->[-1][1], $seq7 + 2, 'orders:7 ends at its last sequence');

# a table event goes to synced.orders.orders
$node->safe_psql('postgres', q{ALTER TABLE public.shop_orders ADD COLUMN note text});
ok( wait_for(sub { @{ read_sub($sub{events}{file}) } > 0 }, 'table event'),
	'the table event arrives on synced.orders.orders');
is(join(',', map { "$_->[0] $_->[2]" } @{ read_sub($sub{events}{file}) }), 'orders reload',
	'synced.orders.orders gets the reload only');

# too large for max_payload: the refetch stand-in keeps subject and scope
my $tenant8 = $node->safe_psql('postgres', q{
	UPDATE public.shop_orders SET note = repeat('x', 5000) WHERE id = 8;
	SELECT tenant FROM public.shop_orders WHERE id = 8});
my $seq8 = $node->safe_psql('postgres',
	q{SELECT (para_sync.snapshot_json('orders:8')->>'sequence')::int});
ok( wait_for(sub {
		grep { $_->[0] eq 'orders:8' && $_->[1] == $seq8 } @{ read_sub($sub{$tenant8}{file}) } },
		'refetch stand-in'),
	"the refetch stand-in goes to synced.orders.$tenant8.orders:8");
my ($r8) = grep { $_->[0] eq 'orders:8' && $_->[1] == $seq8 } @{ read_sub($sub{$tenant8}{file}) };
is($r8->[2] . ' ' . scope_of($r8->[3]), "refetch $tenant8", 'the refetch stand-in carries the scope');

# pg_dump and restore keep a table's scope columns, also when the restore
# renumbers them (a dropped column before them), and rows keep their scope
$node->safe_psql('postgres', q{
	CREATE TABLE public.tickets (id int PRIMARY KEY, junk int, board text, note text);
	ALTER TABLE public.tickets DROP COLUMN junk;
	BEGIN;
	SELECT para_sync.sync_table('public.tickets');
	SELECT para_sync.set_scope('public.tickets', '{board}');
	COMMIT;
	INSERT INTO public.tickets VALUES (1, 'b1', 'n1');
});
my $dump = "$tmp/scopes.sql";
command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'restore');
is($node->safe_psql('restored', q{SELECT string_agg(sync_name || '=' || scope_columns::text, ','
	ORDER BY sync_name) FROM para_sync.synced_tables}),
	'orders={tenant},tickets={board}', 'the restore keeps the scope columns');
$node->safe_psql('restored', q{UPDATE public.tickets SET note = 'n2' WHERE id = 1});
is($node->safe_psql('restored', q{SELECT scope FROM para_sync.outbox
	WHERE key = 'tickets:1' ORDER BY seq DESC LIMIT 1}), 'b1',
	'capture after the restore takes the scope from the same column');

stop_sub($_->{h}) for values %sub;
$node->stop;
stop_nats($nats);
done_testing();
