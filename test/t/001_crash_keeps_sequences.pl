# The outbox and sequences are durable: after an immediate shutdown (crash)
# every committed envelope is still there, nothing of an uncommitted
# transaction is, and sequences continue without a gap or a reuse.  The
# same for a partitioned table synced by its root, with cross-partition
# moves (src/partition.c).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
# the publisher must not drain the outbox this test counts: point it nowhere
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'para_sync'
para_sync.nats_url = 'nats://127.0.0.1:1'
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.t (id int PRIMARY KEY, v int);
	SELECT para_sync.sync_table('public.t');
	INSERT INTO public.t SELECT g, 0 FROM generate_series(1, 50) g;
	UPDATE public.t SET v = v + 1;
});

# a transaction left open across the crash
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
$open->query_safe('UPDATE public.t SET v = 1000 WHERE id <= 10');

# and some commits with synchronous_commit = on after it
$node->safe_psql('postgres', 'UPDATE public.t SET v = v + 1 WHERE id > 40');

# a partitioned root, in its own database: a cross-partition move left open
$node->safe_psql('postgres', 'CREATE DATABASE parted');
$node->safe_psql('parted', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.pt (part int, id int, v int, PRIMARY KEY (part, id)) PARTITION BY LIST (part);
	CREATE TABLE public.pt_1 PARTITION OF public.pt FOR VALUES IN (1);
	CREATE TABLE public.pt_2 PARTITION OF public.pt FOR VALUES IN (2);
	SELECT para_sync.sync_table('public.pt');
	INSERT INTO public.pt SELECT 1, g, 0 FROM generate_series(1, 20) g;
	UPDATE public.pt SET part = 2 WHERE id > 15;
});
my $open_pt = $node->background_psql('parted');
$open_pt->query_safe('BEGIN');
$open_pt->query_safe('UPDATE public.pt SET part = 2, v = 1000 WHERE id <= 5');
$node->safe_psql('parted', 'UPDATE public.pt SET v = v + 1 WHERE id > 10');

$node->stop('immediate');
$open->quit;
$open_pt->quit;
$node->start;

is($node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox'),
	'110', 'every committed envelope survived the crash: 50 inserts, 50 + 10 updates')
  or diag($node->safe_psql('postgres', 'SELECT key, seq FROM para_sync.outbox ORDER BY 1, 2'));

is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
	 WHERE (e->'value'->>'v')::int = 1000}),
	'0',
	'nothing of the uncommitted transaction is in the outbox');

# Keys of database $db whose outbox sequences are not 1..max with no hole.
sub keys_with_holes
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
	SELECT count(*) FROM (
		SELECT key, max(seq) AS m, count(*) AS n FROM para_sync.outbox GROUP BY key) s
	 WHERE m <> n});
}

# "key=last seq,..." of @keys in database $db's outbox.
sub last_seqs
{
	my ($db, @keys) = @_;
	my $in = join(', ', map { "'$_'" } @keys);
	return $node->safe_psql($db, qq{
	SELECT string_agg(key || '=' || seq, ',' ORDER BY key)
	  FROM (SELECT key, max(seq) AS seq FROM para_sync.outbox
			 WHERE key IN ($in) GROUP BY key) s});
}

is(keys_with_holes('postgres'), '0', 'per-key sequences are contiguous');

# after recovery the counters continue from the last committed change
$node->safe_psql('postgres', 'UPDATE public.t SET v = v + 1 WHERE id IN (1, 45)');
is(last_seqs('postgres', 't:1', 't:45'), 't:1=3,t:45=4',
	'sequences continue after crash recovery');

is( $node->safe_psql(
		'postgres', q{SELECT para_sync.snapshot_json('t:45')->'sequence'}),
	'4',
	'snapshot agrees with the outbox');

# the partitioned root: 20 inserts, 5 moves (delete + upsert), 10 updates
is($node->safe_psql('parted', 'SELECT count(*) FROM para_sync.outbox'),
	'40', 'partitioned root: every committed envelope survived the crash');
is( $node->safe_psql(
		'parted', q{
	SELECT count(*) FROM para_sync.outbox o, para_sync.envelope_to_jsonb(o.envelope) e
	 WHERE (e->'value'->>'v')::int = 1000
	    OR o.key IN ('pt:2:1', 'pt:2:2', 'pt:2:3', 'pt:2:4', 'pt:2:5')}),
	'0',
	'partitioned root: nothing of the uncommitted move is in the outbox');
is(keys_with_holes('parted'), '0', 'partitioned root: per-key sequences are contiguous');
$node->safe_psql('parted', 'UPDATE public.pt SET part = 1 WHERE id = 20');
is(last_seqs('parted', 'pt:1:20', 'pt:2:20'), 'pt:1:20=3,pt:2:20=3',
	'partitioned root: a move after recovery continues both keys');
is($node->safe_psql('parted', q{SELECT para_sync.snapshot_json('pt:1:20')->'sequence'}),
	'3', 'partitioned root: snapshot agrees with the outbox');

$node->stop;
done_testing();
