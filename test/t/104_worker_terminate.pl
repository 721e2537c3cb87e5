# The publisher after pg_terminate_backend() (ops scripts that terminate
# every backend of a database hit it): it exits with code 1, so the
# postmaster starts it again (code 0 would unregister it for good), it logs
# who terminated it, and the new worker publishes what was committed
# meanwhile.  While no worker runs, para_sync.status counts the outbox
# itself instead of showing a stale backlog: made deterministic by a
# para_sync.database that does not exist, so that no worker can start.  A
# shutdown (the postmaster's own SIGTERM) logs no restart.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $nats = start_nats(name => 'term_nats');
my $node = new_publisher_node('term', $nats);
my $file = "${PostgreSQL::Test::Utils::tmp_check}/term.msgs";
my $sub = start_sub($nats, $file);

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.t');
	INSERT INTO public.t SELECT g, 0 FROM generate_series(1, 100) g;
});
my $total;
ok(wait_all_delivered($node, $file, 'the first rows', \$total), 'the first rows are published');

sub status { return $node->safe_psql('postgres', "SELECT $_[0] FROM para_sync.status"); }
my $restart_line = qr/para_sync publisher: terminated by process \d+; the postmaster starts it again in 5 s/;

# --- pg_terminate_backend(): the worker comes back and publishes the changes made meanwhile
my $pid = worker_pid($node);
my $log_at = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'worker terminated');
ok( wait_for(sub {
		$node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '0' }, 'old worker gone'),
	'the old worker exited');
$node->safe_psql('postgres', 'UPDATE public.t SET v = v + 1 WHERE id <= 50');
ok(wait_new_worker($node, $pid, 'a new worker'), 'the postmaster starts the publisher again');
isnt(worker_pid($node), $pid, 'with a new pid');
ok(wait_all_delivered($node, $file, 'the changes made meanwhile', \$total),
	'the changes committed while it was gone are published');
is($total, 150, 'all 150 changes');
ok(wait_for(sub { slurp_file($node->logfile, $log_at) =~ $restart_line }, 'the LOG line'),
	'the termination and the restart are logged');
my $new_pid = worker_pid($node);
ok(wait_for(sub { status("pid = $new_pid AND state = 'idle'") eq 't' }, 'the new worker idle'),
	'para_sync.status shows the new worker');

# --- no worker runs: the status counts the outbox
$node->safe_psql('postgres', q{ALTER SYSTEM SET para_sync.database = 'no_such_db';
	SELECT pg_reload_conf();});
ok( wait_for(sub {
		status(q{pid IS NULL AND state = 'stopped'
			AND last_error = 'database "no_such_db" does not exist'}) eq 't' },
		'the worker to fail to start'),
	'no worker runs while para_sync.database does not exist');
$node->safe_psql('postgres', 'UPDATE public.t SET v = v + 1 WHERE id <= 30');
is( status(q{pid IS NULL, state, backlog,
		backlog = (SELECT count(*) FROM para_sync.outbox),
		oldest_unpublished = (SELECT min(queued_at) FROM para_sync.outbox),
		backlog_measured_at IS NOT NULL}),
	't|stopped|30|t|t|t',
	'with no worker, para_sync.status counts the outbox: the real backlog');
$node->safe_psql('postgres', 'CREATE ROLE mon LOGIN IN ROLE pg_monitor');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT backlog FROM para_sync.status',
	extra_params => [ '-U', 'mon' ]);
is("$ret|$out", '0|30', 'also for a pg_monitor member, who cannot read the outbox') or diag($err);

$node->safe_psql('postgres', q{ALTER SYSTEM RESET para_sync.database;
	SELECT pg_reload_conf();});
ok(wait_new_worker($node, undef, 'a worker once the database is right'),
	'the worker starts again once para_sync.database is fixed');
ok(wait_all_delivered($node, $file, 'the backlog', \$total), 'and publishes the backlog');
is($total, 180, 'all 180 changes');
ok(wait_for(sub { status('backlog') eq '0' }, 'backlog 0'), 'its status shows it caught up');

# --- a shutdown's SIGTERM comes from the postmaster: no restart announced
my $any_line = qr/para_sync publisher: terminated/;
my $lines_before = () = slurp_file($node->logfile) =~ /$any_line/g;
$node->stop;
my $lines_after = () = slurp_file($node->logfile) =~ /$any_line/g;
is($lines_after, $lines_before, 'a shutdown logs no restart of the publisher');

stop_sub($sub);
stop_nats($nats);
done_testing();
