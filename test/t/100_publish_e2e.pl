# Publisher end to end: concurrent writers on many keys, a real nats-server
# and a subscriber that records every message.  Every committed change
# arrives, per-key sequences are contiguous after de-duplication, the last
# value of each key equals snapshot(), rolled-back changes never go out, and
# the worker is woken by commits (the fallback poll is set to an hour).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $nats = start_nats(name => 'e2e_nats');
my $node = new_publisher_node('e2e', $nats, "para_sync.poll_interval = '1h'\n");
my $file = "${PostgreSQL::Test::Utils::tmp_check}/e2e.msgs";
my $sub = start_sub($nats, $file);

# the worker idles harmlessly until the extension exists
ok( wait_for(sub {
		$node->safe_psql('postgres', q{SELECT query FROM pg_stat_activity
			WHERE backend_type = 'para_sync publisher'}) =~ /waiting for CREATE EXTENSION/ },
		'worker to wait for the extension'),
	'without the extension the worker waits, harmless');

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL, note text);
	SELECT para_sync.sync_table('public.items');
	INSERT INTO public.items SELECT g, 0, 'n' || g FROM generate_series(1, 200) g;
});

# the insert's commit must wake the worker: the poll is an hour
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' }, 'first drain'),
	'commit wakes the publisher (poll interval is 1h)');

my $pgb = start_pgbench($node, q{
\set id random(1, 200)
\set id2 random(201, 300)
UPDATE public.items SET v = v + 1 WHERE id = :id;
INSERT INTO public.items VALUES (:id2, 1, 'new') ON CONFLICT (id) DO UPDATE SET v = public.items.v + 1;
DELETE FROM public.items WHERE id = :id2 + 100;
INSERT INTO public.items VALUES (:id2 + 100, 7, 'again') ON CONFLICT DO NOTHING;
}, '-c', '4', '-j', '2', '-t', '300');

# rolled-back transactions, interleaved with the load
for my $i (1 .. 20)
{
	$node->safe_psql('postgres', qq{
		BEGIN;
		UPDATE public.items SET v = -1, note = 'rolled back' WHERE id IN ($i, $i + 50);
		INSERT INTO public.items VALUES (100000 + $i, -1, 'rolled back');
		ROLLBACK;});
}
my ($rc, $out, $err) = finish_pgbench($pgb);
is($rc, 0, 'pgbench writers all succeeded') or diag($err);

# everything committed drains
my $total;
ok(wait_all_delivered($node, $file, 'every change to arrive', \$total),
	'every committed change arrived');

my $msgs = read_sub($file);
my @problems = check_contiguous($msgs);
is_deeply(\@problems, [], 'per-key sequences contiguous, in order, one envelope per sequence');
diag("received " . scalar(@$msgs) . " messages for $total changes");

is(scalar(grep { $_->[0] =~ /^items:1000\d\d$/ } @$msgs), 0,
	'no key that only a rolled-back transaction wrote was published');

# last received value of every key == snapshot()
my $latest = latest_by_key($msgs);
my $values = join(",\n",
	map { "('$_', $latest->{$_}[0], '$latest->{$_}[2]')" } sort keys %$latest);
$node->safe_psql('postgres', "CREATE TABLE recv (key text, seq int8, env text);
	INSERT INTO recv VALUES $values;");
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM recv r
	 WHERE (para_sync.envelope_to_jsonb(decode(r.env, 'hex')) - 'txid' - 'op')
	       IS DISTINCT FROM (para_sync.envelope_to_jsonb(para_sync.snapshot(r.key)) - 'op')}),
	'0', 'last value and sequence of every key equal snapshot()');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM recv r
	 WHERE para_sync.envelope_to_jsonb(decode(r.env, 'hex'))->'value'->>'note' = 'rolled back'}),
	'0', 'no rolled-back value was published');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.items WHERE id > 1000'), '0',
	'sanity: rolled-back inserts are not in the table');

# the status view, from shared memory
my $st = $node->safe_psql('postgres', q{
	SELECT state, nats_state, nats_server, mode, backlog, published >= } . $total . q{,
	       batches > 0, last_publish_at IS NOT NULL, pid = (SELECT pid FROM pg_stat_activity
	       WHERE backend_type = 'para_sync publisher')
	  FROM para_sync.status});
is($st, "idle|connected|" . nats_url($nats) . "|core|0|t|t|t|t", 'para_sync.status reports the worker');
is( $node->safe_psql('postgres', q{
	SELECT wait_event_type || ':' || wait_event || ':' || query FROM pg_stat_activity
	 WHERE backend_type = 'para_sync publisher'}),
	'Extension:Extension:para_sync publisher: waiting for commits',
	'pg_stat_activity shows what the worker waits for');

# Commits one at a time (poll interval one hour): each must wake the worker.
my ($cret, $cerr) = commit_one_by_one($node, 500,
	'UPDATE public.items SET v = v + 1 WHERE id = 1 + i % 200');
is($cret, 0, '500 commits one at a time each woke the publisher') or diag($cerr);

# Commits in another database with the extension are not the worker's to
# publish, and do not wake it: its main thread's voluntary context switches
# (each wake-up is at least one) stay far below one per commit.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL);
	INSERT INTO public.items SELECT g, 0 FROM generate_series(1, 200) g;
	SELECT para_sync.sync_table('public.items');
	CREATE PROCEDURE public.commit_200() LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. 200 LOOP
			UPDATE public.items SET v = v + 1 WHERE id = i;
			COMMIT;
			PERFORM pg_catalog.pg_sleep(0.002);
		END LOOP;
	END $$;});
my $wpid = worker_pid($node);
SKIP:
{
	skip 'no /proc to count the worker\'s wake-ups', 2 unless -r "/proc/$wpid/status";
	my $sleeps = worker_sleeps($wpid);
	$node->safe_psql('other', 'CALL public.commit_200()');
	my $woken = worker_sleeps($wpid) - $sleeps;
	cmp_ok($woken, '<', 50,
		"200 commits in another database did not wake the worker (woken $woken times)");
	is($node->safe_psql('other', 'SELECT count(*) FROM para_sync.outbox'), '200',
		"the other database's envelopes stay in its own outbox");
}
$node->safe_psql('postgres', 'DROP DATABASE other');

# not for PUBLIC
$node->safe_psql('postgres', 'CREATE ROLE nobody LOGIN');
my ($ret, $o, $e) = $node->psql('postgres', 'SELECT * FROM para_sync.status',
	extra_params => [ '-U', 'nobody' ]);
like($e, qr/permission denied/, 'para_sync.status is not readable by PUBLIC');

# DROP EXTENSION and CREATE EXTENSION again: the worker serves the new one
# (its prepared statements referred to the dropped tables).  The drop is
# refused while a table is synced or envelopes are unpublished.
my $before = grep { $_->[0] eq 'items:1' && $_->[1] == 1 } @{ read_sub($file) };
my $pid0 = worker_pid($node);
$node->safe_psql('postgres', q{SELECT para_sync.unsync_table('public.items')});
ok( wait_for(
		sub { $node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' },
		'outbox drained'),
	'outbox drained before DROP EXTENSION');
$node->safe_psql('postgres', q{
	DROP EXTENSION para_sync;
	CREATE EXTENSION para_sync;
	SELECT para_sync.sync_table('public.items');
	UPDATE public.items SET v = 42 WHERE id = 1;});
ok( wait_for(sub {
		(grep { $_->[0] eq 'items:1' && $_->[1] == 1 } @{ read_sub($file) }) > $before }, 'after re-create'),
	'after DROP and CREATE EXTENSION changes are published again');
is(worker_pid($node), $pid0, 'same worker, no restart needed');

stop_sub($sub);
$node->stop;
stop_nats($nats);
done_testing();
