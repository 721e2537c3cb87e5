# The publisher reads the next batch while NATS confirms the current one
# (read-ahead), with tiny batches so that nearly every batch has one:
#
#  - core NATS, writers changing 30 keys while a backlog drains, so batches
#    wrap around the key space: every committed (key, sequence) arrives
#    exactly once (no failure, so no resend) and in per-key order;
#  - JetStream, nats-server SIGKILLed in the middle of draining a backlog
#    and started again on the same store: nothing lost, per-key order in the
#    stream, and a (key, sequence) stored twice only with the same content.
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

# ---- core NATS, live writers, wrapping batches
my $node = new_publisher_node('ra', undef, q{
para_sync.batch_size = 7
para_sync.confirm_timeout = '10s'
});
$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.r (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.r');
	INSERT INTO public.r SELECT g, 0 FROM generate_series(1, 30) g;
});
$node->safe_psql('postgres', 'UPDATE public.r SET v = v + 1') for 1 .. 10;
is($node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox'), '330',
	'a backlog while NATS is down');

# the recorder listens before the worker can publish
my $nats = start_nats(name => 'ra_nats');
my $file = "$tmp/ra.msgs";
my $sub = start_sub($nats, $file);
$node->safe_psql('postgres', "ALTER SYSTEM SET para_sync.nats_url = '" . nats_url($nats) . "'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $pgb = start_pgbench($node, q{
\set id random(1, 30)
UPDATE public.r SET v = v + 1 WHERE id = :id;
}, '-c', '2', '-j', '2', '-t', '500');
my ($rc, $out, $err) = finish_pgbench($pgb);
is($rc, 0, 'writers commit while the backlog drains') or diag($err);
my $total;
ok(wait_all_delivered($node, $file, 'backlog and live writes', \$total),
	'every committed change arrived');
my $msgs = read_sub($file);
my %n;
$n{"$_->[0]/$_->[1]"}++ for @$msgs;
is(scalar(@$msgs), $total, 'exactly one message per committed change');
is(scalar(grep { $_ != 1 } values %n), 0, 'no (key, sequence) twice');
my (%high, @disorder);
for (@$msgs)
{
	push @disorder, "$_->[0]: $_->[1] after $high{$_->[0]}"
	  if defined $high{ $_->[0] } && $_->[1] != $high{ $_->[0] } + 1;
	$high{ $_->[0] } = $_->[1];
}
is_deeply(\@disorder, [], 'each key in sequence order, no gap');
ok($node->safe_psql('postgres', 'SELECT batches FROM para_sync.status') > 100,
	'many small batches');
stop_sub($sub);
stop_nats($nats);

# ---- JetStream, nats-server SIGKILLed while draining
my $jport = PostgreSQL::Test::Cluster::get_free_port();
my %jconf = (name => 'ra_js', port => $jport, js => 1);
my $js = start_nats(%jconf);
my $jurl = nats_url($js);
ok(IPC::Run::run([ sub_tool(), '-u', $jurl, '-C', 'SYNCED', '-s', 'synced.>' ]),
	'stream created');
$node->safe_psql('postgres', q{ALTER SYSTEM SET para_sync.jetstream_stream = 'SYNCED'});
$node->safe_psql('postgres', q{ALTER SYSTEM SET para_sync.nats_url = 'nats://127.0.0.1:1'});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_for(sub { $node->safe_psql('postgres', 'SELECT nats_state FROM para_sync.status') ne 'connected' },
		'worker away from NATS'), 'worker pointed at a closed port');
$node->safe_psql('postgres', 'UPDATE public.r SET v = v + 1') for 1 .. 100;
# and enough more that the drain is still going when nats-server is killed
$node->safe_psql('postgres', 'INSERT INTO public.r SELECT g, 0 FROM generate_series(31, 20030) g');
my $backlog = $node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox');
ok($backlog >= 23000, "a JetStream backlog of $backlog");

$node->safe_psql('postgres', "ALTER SYSTEM SET para_sync.nats_url = '$jurl'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') < $backlog - 300 }, 'drain to start'),
	'the drain started');
$js->{h}->signal('KILL');
$js->{h}->finish;
my $left = $node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox');
ok($left > 0, "nats-server killed in the middle of the drain ($left envelopes left)");
sleep 1;
$js = start_nats(%jconf);
ok(wait_all_js($node), 'the backlog drains after nats-server is back');

my $dump = "$tmp/ra_js.dump";
ok(IPC::Run::run([ sub_tool(), '-u', $jurl, '-j', 'SYNCED', '-s', 'synced.>', '-o', $dump ]),
	'read the stream');
my $stored = read_sub($dump);
my %seen = map { ("$_->[0]/$_->[1]" => 1) } @$stored;
is(scalar(keys %seen), $backlog, 'every envelope of the backlog is in the stream');
is_deeply([ check_contiguous($stored, 1) ], [], 'per-key order in the stream, one content per sequence');
diag("stream holds " . scalar(@$stored) . " messages for $backlog envelopes");

$node->stop;
stop_nats($js);
done_testing();

sub wait_all_js
{
	my ($n) = @_;
	return wait_for(sub {
			$n->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' },
		'JetStream drain');
}
