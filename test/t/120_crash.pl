# Publisher crashes under write load: the worker SIGKILLed (the postmaster
# then resets the whole cluster), the postmaster SIGKILLed, and every
# PostgreSQL process SIGKILLed at once while writers use
# synchronous_commit = off.  Every committed change is delivered at least
# once; nothing of a transaction that did not survive is ever delivered
# (such an envelope would show up as a second, different envelope for the
# same key and sequence, or as a sequence beyond the key's last one).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;
use Time::HiRes qw(usleep);

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'crash_nats');
# WAL reaches the disk late unless somebody flushes it: the worker must
my $node = new_publisher_node('crash', $nats, q{
wal_writer_delay = '10s'
wal_writer_flush_after = '1GB'
checkpoint_timeout = '1h'
restart_after_crash = on
para_sync.batch_size = 50
});
my $file = "$tmp/crash.msgs";
my $sub = start_sub($nats, $file);

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.c (id int PRIMARY KEY, v int NOT NULL, pad text);
	SELECT para_sync.sync_table('public.c');
	INSERT INTO public.c SELECT g, 0, 'p' FROM generate_series(1, 300) g;
});

my $script = q{
\set id random(1, 300)
UPDATE public.c SET v = v + 1 WHERE id = :id;
};

sub under_load
{
	my ($what, $crash, $async) = @_;
	local $ENV{PGOPTIONS} = $async ? '-c synchronous_commit=off' : '';
	my $before = scalar(@{ read_sub($file) });
	my $old_worker = worker_pid($node);
	# 12000 transactions at most 1000 per second: under load at the crash
	my $pgb = start_pgbench($node, $script, '-c', '4', '-j', '2', '-t', '3000', '-R', '1000');
	ok(wait_for(sub { scalar(@{ read_sub($file) }) > $before + 500 }, "load before $what"),
		"messages flow before $what");
	$crash->();
	finish_pgbench($pgb);    # clients lose their connections: expected
	ok(wait_new_worker($node, $old_worker, "server back after $what"),
		"server and a new publisher back after $what");
}

# 1. the worker is SIGKILLed
under_load('worker SIGKILL', sub {
	my $pid = worker_pid($node);
	kill 'KILL', $pid;
	ok(1, "worker $pid killed");
}, 0);

# SIGKILL the postmaster, and with $all every other process at the same
# moment; wait until all of them are gone, then start again.
sub kill_cluster
{
	my ($all) = @_;
	open my $fh, '<', $node->data_dir . '/postmaster.pid' or die;
	my $pm = <$fh>;
	close $fh;
	chomp $pm;
	my @children = map { chomp; $_ } `pgrep -P $pm`;
	if ($all)
	{
		kill 'KILL', $pm, @children;
	}
	$node->kill9;
	ok( wait_for(sub { !grep { kill 0, $_ } $pm, @children }, 'processes to exit'),
		'every process is gone');
	$node->start;
}

# 2. the postmaster is SIGKILLed (its children notice and exit)
under_load('postmaster SIGKILL', sub { kill_cluster(0) }, 0);

# 3. synchronous_commit = off, every process SIGKILLed at once: commits
# that were not flushed are lost, and must never have been published
under_load('kill of every process with synchronous_commit = off',
	sub { kill_cluster(1) }, 1);

# after recovery, more writes reuse any sequence a lost transaction had
$node->safe_psql('postgres', 'UPDATE public.c SET v = v + 1');

my $total;
ok(wait_all_delivered($node, $file, 'everything committed to arrive', \$total),
	'every committed change was delivered at least once');

my $msgs = read_sub($file);
is_deeply([ check_contiguous($msgs) ], [],
	'no second envelope for any sequence: nothing uncommitted was published');
my %last = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres', 'SELECT key, seq FROM para_sync.counters');
my @beyond = grep { $_->[1] > ($last{ $_->[0] } // 0) } @$msgs;
is(scalar(@beyond), 0, 'no sequence beyond what survived was published')
  or diag(join(', ', map { "$_->[0]/$_->[1]" } @beyond[0 .. 9]));
diag("received " . scalar(@$msgs) . " messages for $total changes");

stop_sub($sub);
$node->stop;
stop_nats($nats);
done_testing();
