# After a batch that took every committed envelope, the publisher sleeps
# unless a commit came meanwhile ("caught up"), and with
# para_sync.batch_delay it first lets commits gather, so a steady stream of
# commits goes out in fewer batches; nothing is lost or reordered:
#
#  - the same 40 commits, 5 ms apart, once with the setting off (about a
#    batch per commit) and once at 100 ms: then at most one batch per
#    100 ms of the time the commits took (measured, so that a slow machine
#    that spreads them out does not fail it), a few;
#  - a backlog drained after an outage in batches of 3 with read-ahead: a
#    read-ahead batch that is not full did not look at the keys before
#    where the drain began, so it must not count as caught up.
#
# The fallback poll is one hour: an envelope left behind fails the test.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'bd_nats');
my $file = "$tmp/bd.msgs";
my $sub = start_sub($nats, $file);
my $node = new_publisher_node('bd', $nats, "para_sync.poll_interval = '1h'\n");
$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.g (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.g');
	INSERT INTO public.g SELECT i, 0 FROM generate_series(1, 20) i;
	CREATE PROCEDURE public.spaced_commits(n int, gap float8) LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. n LOOP
			UPDATE public.g SET v = v + 1 WHERE id = 1 + i % 20;
			COMMIT;
			PERFORM pg_catalog.pg_sleep(gap);
		END LOOP;
	END $$;
});
my $total;
ok(wait_all_delivered($node, $file, 'the first rows to arrive', \$total), 'the first rows arrived');

# the batches the publisher needed for 40 commits, 5 ms apart, and how long
# the commits took (seconds, the server's clock)
sub batches_for_spaced_commits
{
	my ($what) = @_;
	my $b0 = $node->safe_psql('postgres', 'SELECT batches FROM para_sync.status');
	my $secs = $node->safe_psql('postgres', q{
		SELECT pg_catalog.clock_timestamp() AS t0 \gset
		CALL public.spaced_commits(40, 0.005);
		SELECT extract(epoch FROM pg_catalog.clock_timestamp() - :'t0'::timestamptz);});
	ok(wait_all_delivered($node, $file, $what, \$total), "$what: every change arrived");
	return ($node->safe_psql('postgres', 'SELECT batches FROM para_sync.status') - $b0, $secs);
}

my ($off, $off_secs) = batches_for_spaced_commits('batch_delay = 0');
diag("batch_delay = 0: $off batches for 40 commits in $off_secs s");

$node->safe_psql('postgres', q{ALTER SYSTEM SET para_sync.batch_delay = 100000});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
# A new session that sees the new value was forked after the postmaster
# re-read the file and had already sent SIGHUP on to the worker, so the
# worker takes the setting before it reads the first commit below.
ok( wait_for(sub { $node->safe_psql('postgres', 'SHOW para_sync.batch_delay') eq '100000' },
		'the reload'),
	'the postmaster took the new para_sync.batch_delay');
my ($on, $on_secs) = batches_for_spaced_commits('batch_delay = 100 ms');
# after each batch that took everything the worker pauses 100 ms: one batch
# per pause while the commits ran, the first and the last, and one spare
my $most = int($on_secs / 0.1) + 3;
cmp_ok($on, '<=', $most,
	"with para_sync.batch_delay = 100 ms they gather into a few batches ($on for 40 commits in $on_secs s)");
diag("the commits took $on_secs s: too long for this bound to tell one batch per commit apart")
  if $most >= 40;

# a backlog after an outage, the drain beginning in the middle of the keys
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET para_sync.batch_delay = 0;
	ALTER SYSTEM SET para_sync.batch_size = 3;
	SELECT pg_reload_conf();
	UPDATE public.g SET v = v + 1 WHERE id = 10;});
ok(wait_all_delivered($node, $file, 'g:10 alone', \$total), 'the last batch before the outage ended at g:10');
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET para_sync.nats_url = 'nats://127.0.0.1:1';
	SELECT pg_reload_conf();});
ok(wait_for(sub { $node->safe_psql('postgres', 'SELECT nats_state FROM para_sync.status') ne 'connected' },
	'the outage'), 'NATS out of reach');
$node->safe_psql('postgres', 'UPDATE public.g SET v = v + 1');
$node->safe_psql('postgres', "ALTER SYSTEM SET para_sync.nats_url = '" . nats_url($nats) . "'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_all_delivered($node, $file, 'the backlog after the outage', \$total),
	'the whole backlog went out, also the keys before where the drain began');

my $msgs = read_sub($file);
my @problems = check_contiguous($msgs);
is_deeply(\@problems, [], 'per-key sequences contiguous, in order, one envelope per sequence');
is(scalar(@$msgs), $total, 'exactly one message per committed change');

# the setting is bounded, so that SIGTERM ends a pause within 0.1 s
my ($ret, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET para_sync.batch_delay = 200000});
like($err, qr/200000 is outside the valid range/, 'a pause beyond 0.1 s is refused');

stop_sub($sub);
$node->stop;
stop_nats($nats);
done_testing();
