# The shared-memory sequence cache under load: concurrent writers of the
# same objects with rollbacks, savepoints, deletes and re-inserts, upserts,
# multi-row statements, REPEATABLE READ and SERIALIZABLE, the publisher acknowledging
# concurrently, a small cache that evicts, two databases with the same keys,
# and a crash in the middle.  Nested writes too: a user AFTER trigger that
# changes a row again before its capture event fires, and primary-key
# changes cascading (ON UPDATE CASCADE) to the row itself and to a synced
# child table.  Every cache hit is checked against the outbox
# and counters (para_sync.sequence_cache_check), and what the subscriber and
# the second database's outbox hold must be contiguous per key, never two
# different envelopes for one sequence.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PsyncTest;

my $nats = PsyncTest::start_nats(name => 'cache_nats');
# (new_publisher_node turns para_sync.sequence_cache_check on)
my $node = PsyncTest::new_publisher_node('cache', $nats, qq{
para_sync.sequence_cache_size = 512
});

my $schema = q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.t');
	INSERT INTO public.t SELECT g, 0 FROM generate_series(1, 300) g;
	CREATE TABLE public.n (id int PRIMARY KEY, v int NOT NULL,
		pid int REFERENCES public.n ON UPDATE CASCADE);
	CREATE TABLE public.c (id int PRIMARY KEY, v int NOT NULL,
		pid int REFERENCES public.n ON UPDATE CASCADE);
	CREATE FUNCTION public.n_again() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.v % 3 = 1 THEN
			UPDATE public.n SET v = NEW.v + 1 WHERE id = NEW.id;
		END IF;
		RETURN NULL;
	END $$;
	CREATE TRIGGER a_again AFTER UPDATE ON public.n
		FOR EACH ROW EXECUTE FUNCTION public.n_again();
	SELECT para_sync.sync_table('public.n');
	SELECT para_sync.sync_table('public.c');
	INSERT INTO public.n SELECT g, 0, g FROM generate_series(1, 50) g;
	INSERT INTO public.c SELECT g, 0, g % 50 + 1 FROM generate_series(1, 100) g;
};
my $file = "${PostgreSQL::Test::Utils::tmp_check}/cache_sub.txt";
my $sub = PsyncTest::start_sub($nats, $file);
$node->safe_psql('postgres', $schema);
$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('db2', $schema);

# one object per transaction (no deadlocks), in many shapes
my $single = q{
\set id random(1, 300)
\set r random(1, 12)
\if :r = 1
BEGIN ISOLATION LEVEL REPEATABLE READ;
\elif :r = 2
BEGIN ISOLATION LEVEL SERIALIZABLE;
\else
BEGIN;
\endif
UPDATE public.t SET v = v + 1 WHERE id = :id;
SAVEPOINT a;
UPDATE public.t SET v = v + 1 WHERE id = :id;
\if :r < 4
ROLLBACK TO SAVEPOINT a;
\endif
UPDATE public.t SET v = v + 1 WHERE id = :id;
\if :r = 5
DELETE FROM public.t WHERE id = :id;
INSERT INTO public.t VALUES (:id, 0);
\endif
\if :r = 6
DELETE FROM public.t WHERE id = :id;
\endif
INSERT INTO public.t VALUES (:id, 1) ON CONFLICT (id) DO UPDATE SET v = t.v + 1;
\if :r = 7
ROLLBACK;
\else
COMMIT;
\endif
};
# multi-row statements, locking in index order
my $multi = q{
\set id random(1, 290)
UPDATE public.t SET v = v + 1 WHERE id BETWEEN :id AND :id + 9;
};

# nested writes: updated again by a trigger, keys moved and moved back
# with the cascade changing the row itself and its children
my $nested = q{
\set id random(1, 50)
\set r random(1, 4)
BEGIN;
UPDATE public.n SET v = v + 1 WHERE id = :id;
UPDATE public.n SET id = id + 1000, v = v + 1 WHERE id = :id;
UPDATE public.c SET v = v + 1 WHERE pid = :id + 1000;
UPDATE public.n SET id = id - 1000 WHERE id = :id + 1000;
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
};

# $n transactions per client of each script (3 clients single, 1 multi,
# 2 nested); with @rate, at most that many per second per script, so that
# the load outlasts what the test does meanwhile on a fast machine
sub load
{
	my ($db, $n, @rate) = @_;
	my @each = ('-t', $n, '--max-tries', '1000', @rate, $db);
	return [
		start_pgbench_db($single, '-c', '3', '-j', '1', @each),
		start_pgbench_db($multi, '-c', '1', @each),
		start_pgbench_db($nested, '-c', '2', @each) ];
}

# PsyncTest::start_pgbench runs in postgres; this one takes the database last
sub start_pgbench_db
{
	my ($script, @args) = @_;
	my $db = pop @args;
	my $f = "${PostgreSQL::Test::Utils::tmp_check}/cache_" . int(rand(1e9)) . '.sql';
	PostgreSQL::Test::Utils::append_to_file($f, $script);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-h', $node->host, '-p', $node->port, '-f', $f, @args, $db ],
		'>', \$out, '2>', \$err);
	return { h => $h, out => \$out, err => \$err };
}

sub finish_all
{
	my ($runs, $what) = @_;
	for my $p (@$runs)
	{
		$p->{h}->finish;
		unlike(${ $p->{err} }, qr/sequence cache says|duplicate key|aborted/,
			"$what: no cache disagreement, no duplicate, no client aborted")
		  or diag(${ $p->{err} });
	}
}

# phase 1: both databases, publisher acknowledging as it goes
my $a = load('postgres', 300);
my $b = load('db2', 300);
finish_all($a, 'phase 1 postgres');
finish_all($b, 'phase 1 db2');

# phase 2: crash in the middle of the load, then more load
my $published = $node->safe_psql('postgres', 'SELECT published FROM para_sync.status');
my $c = load('postgres', 1200, '-R', '200');
ok( PsyncTest::wait_for(sub {
		$node->safe_psql('postgres', 'SELECT published FROM para_sync.status') >= $published + 1000 },
		'the crash phase\'s load to get going'),
	'phase 2: 1,000 changes published before the crash');
my $old = PsyncTest::worker_pid($node);
$node->stop('immediate');
$_->{h}->finish for @$c;
$node->start;
PsyncTest::wait_new_worker($node, $old, 'publisher back after the crash');
my $d = load('postgres', 250);
my $e = load('db2', 250);
finish_all($d, 'phase 2 postgres');
finish_all($e, 'phase 2 db2');

# the cache was used: a session updating rows another session wrote
$node->safe_psql('postgres', 'UPDATE public.t SET v = v + 1 WHERE id <= 20');
is( $node->safe_psql('postgres', q{
		UPDATE public.t SET v = v + 1 WHERE id <= 20;
		SELECT hits > 0 FROM para_sync.sequence_cache_counts()}),
	't', 'updates take their sequence from the cache');

# the cache turned off: every change looks up, numbering continues
$node->append_conf('postgresql.conf', 'para_sync.sequence_cache_size = 0');
$node->restart;
my $f = load('postgres', 100);
my $g = load('db2', 100);
finish_all($f, 'cache off postgres');
finish_all($g, 'cache off db2');
is( $node->safe_psql('postgres', q{
		UPDATE public.t SET v = v + 1 WHERE id <= 20;
		UPDATE public.t SET v = v + 1 WHERE id <= 20;
		SELECT hits FROM para_sync.sequence_cache_counts()}),
	'0', 'para_sync.sequence_cache_size = 0: no hit');

my $total;
ok(PsyncTest::wait_all_delivered($node, $file, 'all delivered', \$total),
	"every committed change of postgres was delivered ($total)");
PsyncTest::stop_sub($sub);
my @problems = PsyncTest::check_contiguous(PsyncTest::read_sub($file));
is(scalar(@problems), 0, 'per key: contiguous, in order, one envelope per sequence')
  or diag(join("\n", @problems[ 0 .. ($#problems < 20 ? $#problems : 20) ]));

# db2 is not published: its outbox holds every change
is( $node->safe_psql('db2', q{
	SELECT count(*) FROM (
		SELECT key, max(seq) AS m, count(*) AS n, min(seq) AS f
		  FROM para_sync.outbox GROUP BY key) s
	 WHERE m <> n OR f <> 1}),
	'0', 'db2: per-key sequences are 1..max with no hole or repeat');
is( $node->safe_psql('db2', q{
	SELECT count(*) FROM public.t r
	  JOIN LATERAL (SELECT para_sync.envelope_to_jsonb(o.envelope) AS e
					  FROM para_sync.outbox o WHERE o.key = 't:' || r.id
					 ORDER BY o.seq DESC LIMIT 1) l ON true
	 WHERE (l.e->'value'->>'v')::int <> r.v}),
	'0', 'db2: every row\'s last envelope carries its current value');
is( $node->safe_psql('db2', q{
	SELECT count(*) FROM (
		SELECT DISTINCT ON (o.key) o.key, o.seq, para_sync.envelope_to_jsonb(o.envelope) AS e
		  FROM para_sync.outbox o WHERE o.key ~ '^[nc]:' ORDER BY o.key, o.seq DESC) l,
		para_sync.snapshot_json(l.key) s
	 WHERE COALESCE(l.e->'value', 'null') <> COALESCE(s->'value', 'null')
		OR (s->>'sequence')::int8 <> l.seq}),
	'0', 'db2: nested writes: every key\'s last envelope is its snapshot');

ok( $node->safe_psql('db2', q{
	SELECT count(*) FILTER (WHERE key ~ '^n:') > 500 AND count(*) FILTER (WHERE key ~ '^c:') > 500
	  FROM para_sync.outbox}) eq 't', 'db2: the nested writes ran');

my $log = slurp_file($node->logfile);
unlike($log, qr/sequence cache says/, 'no cache disagreement in the server log');

$node->stop;
PsyncTest::stop_nats($nats);
done_testing();
