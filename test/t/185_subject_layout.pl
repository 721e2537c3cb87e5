# Subject layouts with a real nats-server: one table publishes in the
# default 'key' layout (<prefix>.<key>), one in the 'table' layout
# (<prefix>.<sync name>.<key>).  A subscriber of <prefix>.<sync name>.>
# receives exactly its table's envelopes, selected by the server; the
# default layout's subscribers (<prefix>.*, a per-key subject) work as
# before; <prefix>.> still sees both; envelopes queued before a layout
# change go out on the subject they were captured for.  Then the same in
# JetStream mode: a stream on <prefix>.> stores both layouts once each;
# pg_dump and restore keep the setting and the layout of waiting envelopes.
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
my $nats = start_nats(name => 'layout_nats');
my $node = new_publisher_node('layout', $nats, "para_sync.subject_prefix = 'app'\n");

my %sub;
for my $s ([ all => 'app.>' ], [ table => 'app.orders.>' ], [ keys => 'app.*' ],
	[ user7 => 'app.users:7' ], [ order7 => 'app.orders.orders:7' ])
{
	my $file = "$tmp/layout_$s->[0].msgs";
	$sub{ $s->[0] } = { file => $file, h => start_sub($nats, $file, '-s', $s->[1]) };
}

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.users (id int PRIMARY KEY, name text);
	CREATE TABLE public.shop_orders (id int PRIMARY KEY, total int);
	SELECT para_sync.sync_table('public.users');
	BEGIN;
	SELECT para_sync.sync_table('public.shop_orders', name => 'orders');
	SELECT para_sync.set_subject_layout('public.shop_orders', 'table');
	COMMIT;
});

my $pgb = start_pgbench($node, q{
\set id random(1, 20)
INSERT INTO public.users VALUES (:id, 'u') ON CONFLICT (id) DO UPDATE SET name = public.users.name || 'x';
INSERT INTO public.shop_orders VALUES (:id, 1) ON CONFLICT (id) DO UPDATE SET total = public.shop_orders.total + 1;
}, '-c', '2', '-t', '100');
my ($rc, $out, $err) = finish_pgbench($pgb);
is($rc, 0, 'writers succeeded') or diag($err);
$node->safe_psql('postgres', q{DELETE FROM public.shop_orders WHERE id = 7; DELETE FROM public.users WHERE id = 7;});

my $total;
ok(wait_all_delivered($node, $sub{all}{file}, 'every change on app.>', \$total),
	'app.> receives every change of both layouts');

sub counts
{
	my ($msgs) = @_;
	my %c;
	$c{ (split /:/, $_->[0])[0] }++ for @$msgs;
	return \%c;
}
my $changes = sub {
	my ($name) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(sum(seq), 0) FROM para_sync.counters WHERE key LIKE '$name:%'");
};
my ($n_users, $n_orders) = ($changes->('users'), $changes->('orders'));
ok($n_users > 0 && $n_orders > 0, "both tables changed ($n_users, $n_orders)");

# the per-table subscriber: exactly the table's envelopes, all of them
ok( wait_for(sub {
		my %seen = map { ("$_->[0]/$_->[1]" => 1) } @{ read_sub($sub{table}{file}) };
		scalar(keys %seen) >= $n_orders }, 'orders on app.orders.>'),
	'app.orders.> receives every change of orders');
my $tmsgs = read_sub($sub{table}{file});
is_deeply(counts($tmsgs), { orders => scalar(@$tmsgs) },
	'app.orders.> receives nothing of another table');
is_deeply([ check_contiguous($tmsgs) ], [], 'orders sequences contiguous on app.orders.>');

# default-layout subscribers are unchanged
ok( wait_for(sub {
		my %seen = map { ("$_->[0]/$_->[1]" => 1) } @{ read_sub($sub{keys}{file}) };
		scalar(keys %seen) >= $n_users }, 'users on app.*'),
	'app.* receives every change of users');
my $kmsgs = read_sub($sub{keys}{file});
is_deeply(counts($kmsgs), { users => scalar(@$kmsgs) },
	'app.* receives nothing of the table-layout table');

my $u7 = read_sub($sub{user7}{file});
my $o7 = read_sub($sub{order7}{file});
ok(@$u7 > 0 && @$o7 > 0, 'per-key subscribers of both layouts receive their key');
is_deeply([ grep { $_->[0] ne 'users:7' } @$u7 ], [], 'app.users:7 receives only users:7');
is_deeply([ grep { $_->[0] ne 'orders:7' } @$o7 ], [], 'app.orders.orders:7 receives only orders:7');
is($u7->[-1][2] . ' ' . $o7->[-1][2], 'delete delete', 'per-key subscribers saw the deletes');
is_deeply([ check_contiguous($u7) ], [], 'users:7 contiguous');
is_deeply([ check_contiguous($o7) ], [], 'orders:7 contiguous');

# a layout change while envelopes wait: they keep their captured subject
my $before_t = scalar(@{ read_sub($sub{table}{file}) });
my $before_k = scalar(@{ read_sub($sub{keys}{file}) });
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET para_sync.nats_url = 'nats://127.0.0.1:1';
	SELECT pg_reload_conf();
});
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT nats_state FROM para_sync.status') ne 'CONNECTED' },
		'publisher to disconnect'),
	'publisher disconnected');
$node->safe_psql('postgres', q{
	UPDATE public.shop_orders SET total = -1 WHERE id = 1;
	SELECT para_sync.set_subject_layout('public.shop_orders', 'key');
	UPDATE public.shop_orders SET total = -2 WHERE id = 1;
});
is($node->safe_psql('postgres', q{SELECT string_agg(subject_layout::text, ',' ORDER BY seq)
	FROM para_sync.outbox WHERE key = 'orders:1'}), 't,k', 'queued rows keep their layout');
$node->safe_psql('postgres', qq{
	ALTER SYSTEM SET para_sync.nats_url = '@{[ nats_url($nats) ]}';
	SELECT pg_reload_conf();
});
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' }, 'drain'),
	'backlog drained after reconnect');
ok( wait_for(sub {
		@{ read_sub($sub{keys}{file}) } > $before_k }, 'key-layout envelope'),
	'the change after the switch arrives on app.*');
my @t_new = @{ read_sub($sub{table}{file}) }[ $before_t .. $#{ read_sub($sub{table}{file}) } ];
my @k_new = @{ read_sub($sub{keys}{file}) }[ $before_k .. $#{ read_sub($sub{keys}{file}) } ];
is(join(',', map { "$_->[0]/$_->[1]" } @t_new),
	'orders:1/' . ($node->safe_psql('postgres', q{SELECT seq - 1 FROM para_sync.counters WHERE key = 'orders:1'})),
	'the change before the switch went to app.orders.>');
is(join(',', map { "$_->[0]/$_->[1]" } @k_new),
	'orders:1/' . ($node->safe_psql('postgres', q{SELECT seq FROM para_sync.counters WHERE key = 'orders:1'})),
	'the change after the switch went to app.*');

stop_sub($_->{h}) for values %sub;

# JetStream: one stream on app.> stores both layouts, each change once
my $js = start_nats(name => 'layout_js', js => 1);
my $jsurl = nats_url($js);
ok(IPC::Run::run([ sub_tool(), '-u', $jsurl, '-C', 'SYNCED', '-s', 'app.>' ]),
	'stream created for app.>');
$node->safe_psql('postgres', qq{
	SELECT para_sync.set_subject_layout('public.shop_orders', 'table');
	ALTER SYSTEM SET para_sync.nats_url = '$jsurl';
	ALTER SYSTEM SET para_sync.jetstream_stream = 'SYNCED';
	SELECT pg_reload_conf();
});
$node->safe_psql('postgres', q{
	UPDATE public.users SET name = 'js' WHERE id <= 5;
	UPDATE public.shop_orders SET total = 100 WHERE id <= 5;
});
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' }, 'js drain'),
	'JetStream drain');
my $js_file = "$tmp/layout_js.msgs";
ok(IPC::Run::run([ sub_tool(), '-u', $jsurl, '-j', 'SYNCED', '-s', 'app.>', '-o', $js_file ]),
	'stream dumped');
my $jmsgs = read_sub($js_file);
my %jc = %{ counts($jmsgs) };
is_deeply(\%jc, { users => 5, orders => 5 }, 'the stream holds both layouts, each change once')
  or diag(explain($jmsgs));

# pg_dump and restore keep the setting and the layout of waiting envelopes
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET para_sync.nats_url = 'nats://127.0.0.1:1';
	SELECT pg_reload_conf();
});
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT nats_state FROM para_sync.status') ne 'CONNECTED' },
		'publisher to disconnect again'),
	'publisher disconnected before the dump');
$node->safe_psql('postgres', q{
	UPDATE public.shop_orders SET total = 7 WHERE id = 2;
	UPDATE public.users SET name = 'dump' WHERE id = 2;
});
my $state_sql = q{
	SELECT string_agg(sync_name || '=' || subject_layout, ',' ORDER BY sync_name) FROM para_sync.synced_tables
	UNION ALL
	SELECT string_agg(key || '/' || seq || '/' || subject_layout::text, ',' ORDER BY key, seq) FROM para_sync.outbox};
my $before = $node->safe_psql('postgres', $state_sql);
like($before, qr/orders:2\/\d+\/t,users:2\/\d+\/k/, 'both layouts wait in the outbox');
my $dump = "$tmp/layout.sql";
command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'restore');
is($node->safe_psql('restored', $state_sql), $before, 'the restore keeps layouts of tables and envelopes');
$node->safe_psql('restored', q{UPDATE public.shop_orders SET total = 8 WHERE id = 2});
is($node->safe_psql('restored', q{SELECT subject_layout FROM para_sync.outbox
	WHERE key = 'orders:2' ORDER BY seq DESC LIMIT 1}), 't', 'capture after the restore uses the layout');

stop_nats($nats);
stop_nats($js);
done_testing();
