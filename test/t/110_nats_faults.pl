# Publisher against a misbehaving NATS: down at start, stopped under write
# load and started again, switched by SIGHUP, wrong URL, wrong token, TLS
# required by us but not offered.  Writers never wait or fail; the backlog
# waits in PostgreSQL; each problem is logged once; the worker never
# crash-loops; secrets never reach the log; nothing is lost or reordered.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $down = { port => $port };    # not started yet
my $node = new_publisher_node('faults', $down, "para_sync.confirm_timeout = '1s'\n");

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.t');
	INSERT INTO public.t SELECT g, 0 FROM generate_series(1, 100) g;
});
ok(1, 'writers commit while NATS is unreachable');
my $pid = worker_pid($node);

ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT retries >= 4 AND backlog = 100 FROM para_sync.status') eq 't' },
		'retries and backlog'),
	'the worker keeps retrying and reports the backlog');
like( $node->safe_psql('postgres', q{SELECT nats_state || ' ' || last_error FROM para_sync.status}),
	qr/^failed could not connect to NATS at nats:\/\/127\.0\.0\.1:$port/,
	'status shows the connection failure');
my $log = slurp_file($node->logfile);
my @warn = ($log =~ /WARNING:  para_sync publisher: could not connect to NATS/g);
is(scalar(@warn), 1, 'a persistent failure is logged once, not per retry');
is(worker_pid($node), $pid, 'no crash loop');
is($node->safe_psql('postgres', q{
	SELECT oldest_unpublished IS NOT NULL AND oldest_unpublished_age > '0' FROM para_sync.status}),
	't', 'status shows the age of the oldest unpublished envelope');

# Commits do not wake a worker that backs off (it would only sleep again):
# 300 of them, one at a time, cost it a few wake-ups, not one each.  Its
# sleeps are the voluntary context switches of its process.  The back-off
# is an hour meanwhile, so that its own retries (each a wake-up) do not
# grow with how long the 300 commits take; the changed connect_timeout
# makes it log that it took the settings (and retry once at once).
my $log_at = -s $node->logfile;
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET para_sync.backoff_min = '1h';
	ALTER SYSTEM SET para_sync.backoff_max = '1h';
	ALTER SYSTEM SET para_sync.connect_timeout = '1999ms';
	SELECT pg_reload_conf();});
$node->wait_for_log(qr/para_sync publisher: NATS settings changed; reconnecting/, $log_at);
my $sleeps = worker_sleeps($pid);
$node->safe_psql('postgres',
	join('', map { 'UPDATE public.t SET v = v + 1 WHERE id = ' . (1 + $_ % 100) . ";\n" } 1 .. 300));
my $woken = worker_sleeps($pid) - $sleeps;
ok($woken < 100, "300 commits during the back-off woke the worker $woken times, not once each");

# NATS comes up: the backlog drains.  The subscriber is there before the
# worker may connect (core NATS keeps nothing for a subscriber that comes
# later): the hour-long back-off holds the worker until the settings are
# reset, and the changed connect_timeout makes it reconnect at once then.
my $nats = start_nats(name => 'faults_nats', port => $port);
my $file = "$tmp/faults.msgs";
my $sub = start_sub($nats, $file);
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET para_sync.backoff_min;
	ALTER SYSTEM RESET para_sync.backoff_max;
	ALTER SYSTEM RESET para_sync.connect_timeout;
	SELECT pg_reload_conf();});
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0'
		  && scalar(@{ read_sub($file) }) >= 100 }, 'backlog to drain'),
	'backlog drains once NATS is up');
like(slurp_file($node->logfile), qr/LOG:  para_sync publisher: connected to NATS at/,
	'recovery is logged');

# nats-server stopped for a while under write load, then started again; the
# load is 8000 transactions at most 400 per second, so that it still runs
# when the server is stopped below, however fast the machine
my $pgb = start_pgbench($node, q{
\set id random(1, 100)
UPDATE public.t SET v = v + 1 WHERE id = :id;
}, '-c', '2', '-j', '2', '-t', '4000', '-R', '400');
ok(wait_for(sub { scalar(@{ read_sub($file) }) > 400 }, 'load to flow'), 'load flows');
# Core NATS delivers at most once to subscribers: what the server confirmed
# but had not yet passed on when it stops is gone for the recorder, though
# the publisher did its job.  So the publisher first loses NATS by a reload
# to a dead URL, the recorder catches up with everything removed from the
# outbox (confirmed but not yet removed is sent again anyway), and only then
# is the server stopped, while writers go on.
sub recorder_has_all_acked
{
	my %high;
	for (@{ read_sub($file) }) { $high{ $_->[0] } = $_->[1] if ($high{ $_->[0] } // 0) < $_->[1] }
	for (split /\n/, $node->safe_psql('postgres', 'SELECT key, seq FROM para_sync.counters'))
	{
		my ($k, $s) = split /\|/;
		return 0 if ($high{$k} // 0) < $s;
	}
	return 1;
}
my $dead = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf('postgresql.conf', "para_sync.nats_url = 'nats://127.0.0.1:$dead'\n");
$node->reload;
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT nats_state FROM para_sync.status') ne 'connected' }, 'publisher cut off'),
	'publisher loses NATS under load');
ok(wait_for(\&recorder_has_all_acked, 'recorder to catch up'),
	'recorder has everything removed from the outbox so far');
stop_nats($nats);
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox');
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') > $before + 200 },
		'writes to go on while NATS is down'),
	'writers keep committing while NATS is down');
like($node->safe_psql('postgres', 'SELECT nats_state FROM para_sync.status'),
	qr/reconnecting|failed|connecting/, 'status while NATS is down');

# NATS back on its port; the recorder resubscribes, then the publisher returns
unlink "$file.ready.reconnected";
$nats = start_nats(name => 'faults_nats', port => $port);
ok(wait_for(sub { -e "$file.ready.reconnected" }, 'recorder to reconnect'), 'recorder back');
$node->append_conf('postgresql.conf', "para_sync.nats_url = '" . nats_url($nats) . "'\n");
$node->reload;

my ($rc, $out, $err) = finish_pgbench($pgb);
is($rc, 0, 'no writer failed or was blocked by NATS') or diag($err);
my $total;
ok(wait_all_delivered($node, $file, 'all changes after the restart', \$total),
	'nothing lost across the NATS restart');
is_deeply([ check_contiguous(read_sub($file)) ], [], 'nor reordered');
is(worker_pid($node), $pid, 'same worker throughout');

# SIGHUP with another nats_url: reconnects there
my $nats2 = start_nats(name => 'faults_nats2');
my $file2 = "$tmp/faults2.msgs";
my $sub2 = start_sub($nats2, $file2);
$node->append_conf('postgresql.conf', "para_sync.nats_url = '" . nats_url($nats2) . "'\n");
$node->reload;
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT nats_server FROM para_sync.status') eq nats_url($nats2) },
		'reconnect to the new URL'),
	'SIGHUP with a changed nats_url reconnects');
$node->safe_psql('postgres', 'UPDATE public.t SET v = v + 1 WHERE id <= 10');
ok(wait_for(sub { scalar(@{ read_sub($file2) }) == 10 }, 'changes on the new server'),
	'changes go to the new server');

# a slow NATS (the server process stopped): the batch is not confirmed in
# time, the writer does not notice, and it all goes out once NATS answers
$nats2->{h}->signal('STOP');
$node->safe_psql('postgres', 'UPDATE public.t SET v = v + 1 WHERE id <= 10');
ok(1, 'writers commit while NATS hangs');
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT last_error FROM para_sync.status') =~ /did not confirm/ },
		'confirm timeout'),
	'an unconfirmed batch is reported');
$nats2->{h}->signal('CONT');
ok( wait_for(sub {
		my %seen = map { ("$_->[0]/$_->[1]" => 1) } @{ read_sub($file2) };
		scalar(keys %seen) == 20 }, 'changes after NATS answers again'),
	'and published once NATS answers again');
is_deeply([ check_contiguous(read_sub($file2), 1) ], [], 'in order, no gap');

# a bad URL: clear error, no crash loop
$node->append_conf('postgresql.conf', "para_sync.nats_url = 'nats://127.0.0.1:notaport'\n");
$node->reload;
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT last_error FROM para_sync.status') =~ /nats:\/\/127\.0\.0\.1:notaport/ },
		'bad url error'),
	'a bad URL gives a clear error');

# token auth: wrong token, then the right one; neither is ever logged
stop_sub($sub2);
stop_nats($nats2);
my $nats3 = start_nats(name => 'faults_nats3', token => 'right-TOKEN-4711');
$node->append_conf('postgresql.conf', "para_sync.nats_url = '" . nats_url($nats3) . "'\npara_sync.nats_token = 'wrong-TOKEN-0815'\n");
$node->reload;
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT last_error FROM para_sync.status') =~ /authoriz/i },
		'auth error'),
	'a wrong token gives an authorization error');
$node->safe_psql('postgres', 'UPDATE public.t SET v = v + 1 WHERE id <= 5');
$node->append_conf('postgresql.conf', "para_sync.nats_token = 'right-TOKEN-4711'\n");
$node->reload;
ok( wait_for(sub {
		$node->safe_psql('postgres', q{
			SELECT nats_state = 'connected' AND backlog = 0 FROM para_sync.status}) eq 't' },
		'drain with the right token'),
	'the right token connects and drains');

# TLS required by us, not offered by the server
$node->append_conf('postgresql.conf', "para_sync.tls_required = on\n");
$node->reload;
ok( wait_for(sub {
		$node->safe_psql('postgres', q{
			SELECT nats_state <> 'connected' AND last_error ~* 'secure|tls|ssl' FROM para_sync.status}) eq 't' },
		'tls error'),
	'TLS required but not offered gives a clear error')
  or diag($node->safe_psql('postgres', 'SELECT last_error FROM para_sync.status'));
$node->append_conf('postgresql.conf', "para_sync.tls_required = off\n");
$node->reload;
ok( wait_for(sub {
		$node->safe_psql('postgres', q{SELECT nats_state FROM para_sync.status}) eq 'connected' },
		'back to plain'),
	'and recovers when fixed');

is(worker_pid($node), $pid, 'no crash loop through all bad settings');
$log = slurp_file($node->logfile);
unlike($log, qr/TOKEN-4711|TOKEN-0815/, 'tokens never reach the log');
my @authwarn = ($log =~ /WARNING:  para_sync publisher: could not connect to NATS at \S+: Authorization/gi);
ok(scalar(@authwarn) <= 1, 'the auth failure is logged at most once');

# Commits do not wake a worker that backs off (it would only sleep again);
# after all these back-offs they wake it again: with the poll at an hour,
# each of 200 commits made one at a time must be published.
$node->append_conf('postgresql.conf', "para_sync.poll_interval = '1h'\n");
$node->reload;
my ($cret, $cerr) = commit_one_by_one($node, 200,
	'UPDATE public.t SET v = v + 1 WHERE id = 1 + i % 100');
is($cret, 0, 'after back-offs, every commit wakes the publisher again') or diag($cerr);

# SIGTERM is handled promptly
$node->stop('fast');
ok(1, 'fast shutdown with the worker running');
stop_sub($sub);
stop_nats($nats);
stop_nats($nats3);
done_testing();
