# The publisher removes published rows by the place (TID) it read them at.
# While it waits for NATS to confirm a batch, the rows can be removed by
# someone else (para_sync.ack()), vacuumed away, and their places taken by
# new envelopes of other keys.  The removal must notice that and leave the
# new rows alone: removing them would lose their envelopes unpublished.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'place_nats');
# long enough that the frozen server below causes no resend (it stays frozen
# for a few statements, well under the ~10 s in which nats.c's pings would
# give it up and reconnect)
my $node = new_publisher_node('place', $nats, "para_sync.confirm_timeout = '120s'\n");
my $file = "$tmp/place.msgs";
my $sub = start_sub($nats, $file);

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.t');
	INSERT INTO public.t VALUES (1, 0);
});
ok(wait_for(sub { scalar(@{ read_sub($file) }) == 1 }, 'the first envelope'),
	'the publisher runs');
ok(wait_for(sub { $node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' },
		'the first removal'), 'and removes what it published');
# an empty outbox, whether or not the worker's own first vacuum ran yet
$node->safe_psql('postgres', 'VACUUM para_sync.outbox');

# The server freezes: the next batch is sent, its confirmation does not come.
$nats->{h}->signal('STOP');
$node->safe_psql('postgres', 'UPDATE public.t SET v = 1 WHERE id = 1');
my $place = $node->safe_psql('postgres', q{SELECT ctid FROM para_sync.outbox WHERE key = 't:1' AND seq = 2});
ok( wait_for(sub {
		$node->safe_psql('postgres', q{SELECT state FROM para_sync.status}) eq 'publishing' },
		'the worker to wait for the confirmation'),
	'the publisher waits for NATS to confirm t:1 sequence 2');

# Meanwhile the row is acknowledged by SQL, vacuumed away, and new rows of
# other keys are captured, one of them at its place.
is($node->safe_psql('postgres', q{SELECT para_sync.ack(ARRAY['t:1'], ARRAY[2::int8])}),
	'1', 'para_sync.ack() removes the row the worker read');
$node->safe_psql('postgres', 'VACUUM para_sync.outbox');
$node->safe_psql('postgres', 'INSERT INTO public.t SELECT g, 0 FROM generate_series(2, 6) g');
like( $node->safe_psql('postgres', qq{SELECT key FROM para_sync.outbox WHERE ctid = '$place'}),
	qr/^t:[2-6]$/, "a new envelope took the place $place of the one the worker read");

# The confirmation comes: the worker removes its batch.
$nats->{h}->signal('CONT');
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0'
		  && scalar(@{ read_sub($file) }) >= 7 },
		'everything to be published'),
	'the outbox drains');
my $latest = latest_by_key(read_sub($file));
is_deeply([ map { "$_:" . ($latest->{"t:$_"} ? $latest->{"t:$_"}[0] : 'missing') } 1 .. 6 ],
	[ '1:2', '2:1', '3:1', '4:1', '5:1', '6:1' ],
	'every envelope reached the subscriber, the one at the reused place too');
is_deeply([ check_contiguous(read_sub($file)) ], [], 'per key, sequences arrive gap-free and in order');
is( $node->safe_psql('postgres', q{SELECT string_agg(key || '=' || seq, ' ' ORDER BY key) FROM para_sync.counters}),
	't:1=2 t:2=1 t:3=1 t:4=1 t:5=1 t:6=1', 'the counters hold every key\'s last sequence');
is($node->safe_psql('postgres', q{SELECT coalesce(last_error, '') FROM para_sync.status}), '',
	'the worker reports no error');

stop_sub($sub);
stop_nats($nats);
$node->stop;
done_testing();
