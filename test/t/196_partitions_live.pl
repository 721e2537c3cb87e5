# A partitioned table synced by its root, live (src/partition.c): a
# libparasync collection of a 20,000-row list-partitioned table loads while
# another session runs a bounded script of multi-row statements on it —
# updates within a partition, cross-partition moves, deletes, inserts,
# TRUNCATE of one partition, DETACH and ATTACH of a partition with rows.
# Once the publisher has drained the outbox, the collection equals the
# table: every row's key, value and sequence is snapshot()'s, and it holds
# no key the table does not.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $rows = 20_000;
my $rounds = 40;

my $nats = start_nats(name => 'partitions_live_nats');
my $node = new_publisher_node('partitions_live', $nats);
# every envelope published, to check each key's sequences
my $msgs = "${PostgreSQL::Test::Utils::tmp_check}/partitions_live.msgs";
my $recorder = start_sub($nats, $msgs, '-s', 'synced.>');

# ids are unique across regions, so a row can move to any partition
$node->safe_psql('postgres', qq{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.ev (region text, id int, n int, note text, PRIMARY KEY (region, id))
		PARTITION BY LIST (region);
	CREATE TABLE public.ev_a PARTITION OF public.ev FOR VALUES IN ('a');
	CREATE TABLE public.ev_b PARTITION OF public.ev FOR VALUES IN ('b');
	CREATE TABLE public.ev_cd PARTITION OF public.ev FOR VALUES IN ('c', 'd')
		PARTITION BY LIST (region);
	CREATE TABLE public.ev_c PARTITION OF public.ev_cd FOR VALUES IN ('c');
	CREATE TABLE public.ev_d PARTITION OF public.ev_cd FOR VALUES IN ('d');
	INSERT INTO public.ev
	SELECT (ARRAY['a', 'b', 'c', 'd'])[1 + g % 4], g, 0, 'r' || g FROM generate_series(1, $rows) g;
	SELECT para_sync.sync_table('public.ev');
	CREATE TABLE public.ev_e (LIKE public.ev INCLUDING ALL);
});

# The writer's script: $rounds rounds of multi-row statements, each in its
# own transaction; partition e is attached and detached every round.
my $script = '';
for my $k (1 .. $rounds)
{
	my $m = $k % 7;
	$script .= qq{
UPDATE public.ev SET n = n + 1 WHERE id % 7 = $m AND region = 'a';
UPDATE public.ev SET region = CASE region WHEN 'a' THEN 'b' WHEN 'b' THEN 'c' WHEN 'c' THEN 'd' ELSE 'a' END,
	n = n + 1 WHERE id % 53 = $k % 53;
DELETE FROM public.ev WHERE id % 211 = $k;
INSERT INTO public.ev SELECT 'd', $rows + $k * 100 + g, $k, 'new' FROM generate_series(1, 20) g;
INSERT INTO public.ev_e SELECT 'e', 2 * $rows + $k * 100 + g, $k, 'e' FROM generate_series(1, 10) g;
ALTER TABLE public.ev ATTACH PARTITION public.ev_e FOR VALUES IN ('e');
UPDATE public.ev SET region = 'e' WHERE id % 997 = $k;
ALTER TABLE public.ev DETACH PARTITION public.ev_e;
};
	$script .= "TRUNCATE public.ev_b;\n" if $k == $rounds / 2;
	$script .= "DELETE FROM public.ev_e WHERE id % 3 = 0;\n";
}
# the envelopes the script makes, at most (about 91,000: attach and detach
# republish partition e each round)
my $changes = 5 * $rows;

my ($in, $out, $err) = ('', '', '');
my $follow = IPC::Run::start(
	[ "$ENV{TESTDIR}/test/tools/psync_follow", '-u', nats_url($nats),
	  '-d', $node->connstr('postgres'), 'ev:*' ],
	'<', \$in, '>', \$out, '2>', \$err);
my ($wout, $werr) = ('', '');
my $writer = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	'<', \$script, '>', \$wout, '2>', \$werr);

ok(wait_for(sub { $follow->pump_nb; $out =~ /^ready$/m }, 'psync_follow ready', deadline_for($rows)),
	'the collection is set up') or diag($err);
ok($writer->finish, 'the writer ran every statement') or diag($werr);

ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0' },
		'outbox drained', deadline_for($changes)),
	'the publisher drained the outbox');
stop_sub($recorder);
my $published = read_sub($msgs);
ok(@$published > $rounds * 40, scalar(@$published) . ' envelopes published');
is(join("\n", check_contiguous($published)), '',
	'every key\'s published sequences are gap-free, one envelope per sequence');

# One dump of the collection: [kind, key, sequence, status, hex].
sub dump_clients
{
	$out = '';
	$in .= "dump\n";
	wait_for(sub { $follow->pump_nb; $out =~ /^end$/m }, 'dump', deadline_for($rows)) or return [];
	return [ map { [ split / / ] } grep { /^C / } split /\n/, $out ];
}

# Members that differ from snapshot(), and keys missing or extra; '' when equal.
sub differences
{
	my $held = dump_clients();
	return 'no dump' unless @$held;
	$node->safe_psql('postgres', 'CREATE TABLE IF NOT EXISTS public.held (key text, env text); TRUNCATE public.held');
	my $copy = join("\n", map { "$_->[1]\t$_->[4]" } @$held) . "\n";
	my $copied = IPC::Run::run(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', 'COPY public.held FROM STDIN' ], '<', \$copy, '>', \my $o, '2>', \my $e);
	return "copy failed: $e" unless $copied;
	return $node->safe_psql('postgres', q{
		WITH cmp AS (
			SELECT h.key, para_sync.envelope_to_jsonb(decode(h.env, 'hex')) AS c,
			       para_sync.snapshot_json(h.key) AS s
			  FROM public.held h)
		SELECT string_agg(d, E'\n' ORDER BY d) FROM (
			SELECT key || ' holds ' || (c - 'op')::text || ' snapshot ' || (s - 'op')::text AS d
			  FROM cmp
			 WHERE c->'value' IS DISTINCT FROM s->'value'
			    OR c->'sequence' IS DISTINCT FROM s->'sequence'
			UNION ALL
			SELECT 'missing ' || k FROM (
				SELECT 'ev:' || region || ':' || id AS k FROM public.ev
				EXCEPT SELECT key FROM public.held) m
			UNION ALL
			SELECT 'extra ' || key FROM cmp WHERE (s->'value') = 'null'::jsonb
			LIMIT 20) x});
}

my $last;
ok(wait_for(sub { ($last = differences()) eq '' }, 'collection equal to the table', deadline_for($rows)),
	'the collection equals the table: every key, value and sequence')
  or diag($last);
is( $node->safe_psql('postgres', 'SELECT count(*) FROM public.held'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM public.ev'),
	'as many members as rows');

$in .= "quit\n";
$follow->finish;
is($follow->result(0), 0, 'psync_follow exits cleanly') or diag($err);
stop_nats($nats);
done_testing();
