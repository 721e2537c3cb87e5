# Publisher in JetStream mode (nats-server -js, store under the test's tmp
# dir): a missing stream is a clear error until the stream exists; then
# every change is stored exactly once, also across a worker crash that makes
# the worker send a batch again (duplicates dropped by Nats-Msg-Id).
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
my $nats = start_nats(name => 'js_nats', js => 1);
my $url = nats_url($nats);
my $node = new_publisher_node('js', $nats, q{
para_sync.jetstream_stream = 'SYNCED'
para_sync.batch_size = 100
});

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.j (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.j');
	INSERT INTO public.j SELECT g, 0 FROM generate_series(1, 200) g;
});

ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT last_error FROM para_sync.status')
		  =~ /JetStream stream "SYNCED" does not exist/ }, 'missing stream error'),
	'a missing stream is a clear error');
is($node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox'), '200',
	'the backlog waits in PostgreSQL');

# a stream that does not bind our subjects: publishes are refused
ok(IPC::Run::run([ sub_tool(), '-u', $url, '-C', 'SYNCED', '-s', 'elsewhere.>' ]),
	'stream created for other subjects');
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT last_error FROM para_sync.status')
		  =~ /refused a publish|did not acknowledge|no responders/i }, 'unbound subject error'),
	'a subject the stream does not bind is a clear error')
  or diag($node->safe_psql('postgres', 'SELECT last_error FROM para_sync.status'));
is($node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox'), '200',
	'nothing removed while JetStream refuses');

ok(IPC::Run::run([ sub_tool(), '-u', $url, '-D', 'SYNCED' ]), 'stream deleted');
ok(IPC::Run::run([ sub_tool(), '-u', $url, '-C', 'SYNCED', '-s', 'synced.>' ]),
	'stream created for synced.>');
ok( wait_for(sub {
		$node->safe_psql('postgres', q{SELECT count(*) = 0 FROM para_sync.outbox}) eq 't' },
		'backlog to drain into the stream'),
	'the backlog drains into the stream');

# load, with the worker SIGKILLed in the middle (twice); the postmaster
# resets the cluster, so each round has its own writers (3000 transactions,
# at most 500 per second, so that the kill is in the middle however fast
# the machine)
for my $round (1 .. 2)
{
	my $pgb = start_pgbench($node, q{
\set id random(1, 200)
UPDATE public.j SET v = v + 1 WHERE id = :id;
}, '-c', '2', '-j', '2', '-t', '1500', '-R', '500');
	my $pid = worker_pid($node);
	ok( wait_for(sub {
			$node->safe_psql('postgres', 'SELECT published FROM para_sync.status') > 300 }, 'progress'),
		"publishing under load, round $round");
	kill 'KILL', $pid;
	ok(wait_new_worker($node, $pid, 'restart'), "worker restarted after SIGKILL $round");
	finish_pgbench($pgb);
}
$node->safe_psql('postgres', 'UPDATE public.j SET v = v + 1');

my $total;
ok( wait_for(sub {
		$total = $node->safe_psql('postgres', q{
			SELECT CASE WHEN (SELECT count(*) FROM para_sync.outbox) = 0
			            THEN (SELECT sum(seq) FROM para_sync.counters) END});
		$total ne '' }, 'drain after the crashes'),
	'everything committed was confirmed by JetStream');

my $dump = "$tmp/js.dump";
ok(IPC::Run::run([ sub_tool(), '-u', $url, '-j', 'SYNCED', '-s', 'synced.>', '-o', $dump ]),
	'read the stream');
my $msgs = read_sub($dump);
my %n;
$n{"$_->[0]/$_->[1]"}++ for @$msgs;
is(scalar(@$msgs), $total, 'the stream holds exactly one message per committed change');
is(scalar(grep { $_ != 1 } values %n), 0, 'no (key, sequence) twice');
is_deeply([ check_contiguous($msgs) ], [], 'per-key sequences contiguous and in order in the stream');
diag("stream holds " . scalar(@$msgs) . " messages for $total changes; "
	  . $node->safe_psql('postgres', 'SELECT published FROM para_sync.status') . " published by the last worker");

$node->stop;
stop_nats($nats);
done_testing();
