# A partitioned table synced by its root, live (src/partition.c): a
# libparasync collection of a 200,000-row list-partitioned table loads while
# another session runs a bounded script of multi-row statements on it —
# updates within a partition, cross-partition moves, deletes, inserts,
# TRUNCATE of one partition, DETACH and ATTACH of a partition with rows.
# The collection starts once the writer has committed its first rounds, so
# its pages (some 20, of the client's default 10,000 rows) are read while
# changes arrive.  Each statement touches about as many rows whatever the
# table's size (the moduli follow $rows): the script makes about 100,000
# envelopes.  Once the publisher has drained the outbox, the collection
# equals the table: every row's key, value and sequence is the table's and
# snapshot()'s, and it holds no key the table does not.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;
use Time::HiRes qw(usleep);

my $rows = 200_000;
my $rounds = 40;

# The rows each statement of a round selects, by id modulo these: about
# 700 of partition a (a third of the rows) updated, 380 moved to another
# partition (a key change: two envelopes), 95 deleted, 20 moved into e.
my $m_update = int($rows / 2_100);
my $m_move = int($rows / 380);
my $m_delete = int($rows / 95);
my $m_to_e = int($rows / 20);

my $nats = start_nats(name => 'partitions_live_nats');
my $node = new_publisher_node('partitions_live', $nats);
# every envelope published, to check each key's sequences
my $msgs = "${PostgreSQL::Test::Utils::tmp_check}/partitions_live.msgs";
my $recorder = start_sub($nats, $msgs, '-s', 'synced.>');

# ids are unique across regions, so a row can move to any partition.
# Partition b is small (1 row in 40): its TRUNCATE publishes a delete per row.
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
	SELECT CASE WHEN g % 40 = 0 THEN 'b' ELSE (ARRAY['a', 'c', 'd'])[1 + g % 3] END,
	       g, 0, 'r' || g
	  FROM generate_series(1, $rows) g;
	SELECT para_sync.sync_table('public.ev');
	CREATE TABLE public.ev_e (LIKE public.ev INCLUDING ALL);
	CREATE TABLE public.rounds (k int);
});

# The writer's script: $rounds rounds of multi-row statements, each in its
# own transaction; partition e is attached and detached every round.  Each
# round ends by noting its number in public.rounds (not synced).
my $script = '';
for my $k (1 .. $rounds)
{
	my $m = $k % 7;
	$script .= qq{
UPDATE public.ev SET n = n + 1 WHERE id % $m_update = $m AND region = 'a';
UPDATE public.ev SET region = CASE region WHEN 'a' THEN 'b' WHEN 'b' THEN 'c' WHEN 'c' THEN 'd' ELSE 'a' END,
	n = n + 1 WHERE id % $m_move = $k;
DELETE FROM public.ev WHERE id % $m_delete = $k;
INSERT INTO public.ev SELECT 'd', $rows + $k * 100 + g, $k, 'new' FROM generate_series(1, 20) g;
INSERT INTO public.ev_e SELECT 'e', 2 * $rows + $k * 100 + g, $k, 'e' FROM generate_series(1, 10) g;
ALTER TABLE public.ev ATTACH PARTITION public.ev_e FOR VALUES IN ('e');
UPDATE public.ev SET region = 'e' WHERE id % $m_to_e = $k;
ALTER TABLE public.ev DETACH PARTITION public.ev_e;
};
	$script .= "TRUNCATE public.ev_b;\n" if $k == $rounds / 2;
	$script .= "DELETE FROM public.ev_e WHERE id % 3 = 0;\n";
	$script .= "INSERT INTO public.rounds VALUES ($k);\n";
}
# the envelopes the script makes, at most (about 100,000 whatever $rows,
# a third of them from attach and detach republishing partition e)
my $changes = 150_000;

# The writer starts first; the collection once the writer has committed
# $before rounds, so that the load's pages are read while the writer goes on.
my ($wout, $werr) = ('', '');
my $writer = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	'<', \$script, '>', \$wout, '2>', \$werr);
my $before = 2;
ok( wait_for(sub {
		$writer->pump_nb;
		$node->safe_psql('postgres', 'SELECT count(*) FROM public.rounds') >= $before },
		"the writer's first rounds", deadline_for($changes * $before / $rounds)),
	"the writer committed $before rounds") or diag($werr);
my ($in, $out, $err) = ('', '', '');
my $follow = IPC::Run::start(
	[ "$ENV{TESTDIR}/test/tools/psync_follow", '-u', nats_url($nats),
	  '-d', $node->connstr('postgres'), 'ev:*' ],
	'<', \$in, '>', \$out, '2>', \$err);
ok(wait_for(sub { $follow->pump_nb; $writer->pump_nb; $out =~ /^ready$/m },
		'psync_follow ready', deadline_for($rows)),
	'the collection is set up') or diag($err);
# how far the writer was when the load ended (it depends on the machine)
note($node->safe_psql('postgres', 'SELECT count(*) FROM public.rounds')
	. " of $rounds rounds committed when the load ended");
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

# The collection's dump, its lines "C key sequence status hex" without the
# closing "end"; undef when it did not come.  psync_follow writes it much
# faster than pumps every 100 ms would read it (10 kB a read).
sub dump_clients
{
	my $deadline = time + deadline_for($rows);
	$out = '';
	$in .= "dump\n";
	until (length($out) >= 4 && substr($out, -4) eq "end\n"
		&& (length($out) == 4 || substr($out, -5, 1) eq "\n"))
	{
		return undef if time > $deadline || !$follow->pumpable;
		my $had = length $out;
		$follow->pump_nb;
		usleep(1_000) if length $out == $had;
	}
	return substr($out, 0, -4);
}

# Dump the collection into public.held (kind, key, sequence, status, hex
# envelope); '' when done.
sub load_held
{
	my $held = dump_clients();
	return 'no dump' unless defined $held;
	$node->safe_psql('postgres', q{
		CREATE TABLE IF NOT EXISTS public.held (kind text, key text, seq int8, status text, env text);
		TRUNCATE public.held});
	my $copied = IPC::Run::run(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', q{COPY public.held FROM STDIN (DELIMITER ' ')} ],
		'<', \$held, '>', \my $o, '2>', \my $e);
	return $copied ? '' : "copy failed: $e";
}

# A fresh dump's members that differ from the table, in one set-based
# comparison: the value from the row, the sequence from the outbox and the
# counters (0 for a row never changed); and keys missing or extra.  '' when
# equal.  Cheap enough to repeat while the collection catches up.
sub table_differences
{
	my $loaded = load_held();
	return $loaded if $loaded ne '';
	return $node->safe_psql('postgres', q{
		WITH h AS (
			SELECT key, para_sync.envelope_to_jsonb(decode(env, 'hex')) AS c
			  FROM public.held WHERE kind = 'C'),
		t AS (
			SELECT 'ev:' || e.region || ':' || e.id AS key, pg_catalog.to_jsonb(e) AS value
			  FROM public.ev e),
		s AS (
			SELECT key, max(seq) AS seq FROM (
				SELECT key, seq FROM para_sync.outbox
				UNION ALL SELECT key, seq FROM para_sync.counters) q
			 GROUP BY key)
		SELECT string_agg(d, E'\n' ORDER BY d) FROM (
			SELECT key || CASE
					WHEN t.key IS NULL THEN ' extra'
					WHEN h.key IS NULL THEN ' missing'
					ELSE ' holds ' || (h.c - 'op')::text || ' table ' || t.value::text
					     || ' at ' || coalesce(s.seq, 0) END AS d
			  FROM h FULL JOIN t USING (key) LEFT JOIN s USING (key)
			 WHERE h.key IS NULL OR t.key IS NULL
			    OR h.c->'value' IS DISTINCT FROM t.value
			    OR (h.c->>'sequence')::int8 IS DISTINCT FROM coalesce(s.seq, 0)
			 LIMIT 20) x});
}

# Members of public.held that differ from snapshot() of their key, and keys
# missing or extra; '' when equal.  One snapshot() call per member (some 10
# seconds for 200,000): run once, after table_differences() found none.
sub snapshot_differences
{
	# a plan for 200,000 rows may be parallel: snapshot() runs in the leader
	return $node->safe_psql('postgres', q{
		WITH cmp AS (
			SELECT h.key, para_sync.envelope_to_jsonb(decode(h.env, 'hex')) AS c,
			       para_sync.snapshot_json(h.key) AS s
			  FROM public.held h WHERE h.kind = 'C')
		SELECT string_agg(d, E'\n' ORDER BY d) FROM (
			SELECT key || ' holds ' || (c - 'op')::text || ' snapshot ' || (s - 'op')::text AS d
			  FROM cmp
			 WHERE c->'value' IS DISTINCT FROM s->'value'
			    OR c->'sequence' IS DISTINCT FROM s->'sequence'
			UNION ALL
			SELECT 'missing ' || k FROM (
				SELECT 'ev:' || region || ':' || id AS k FROM public.ev
				EXCEPT SELECT key FROM public.held WHERE kind = 'C') m
			UNION ALL
			SELECT 'extra ' || key FROM cmp WHERE (s->'value') = 'null'::jsonb
			LIMIT 20) x});
}

my $last;
ok( wait_for(sub { ($last = table_differences()) eq '' }, 'collection equal to the table',
		deadline_for($rows)),
	'the collection equals the table: every key, value and sequence')
  or diag($last);
is(snapshot_differences(), '',
	'every member equals snapshot() of its key: value and sequence');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM public.held WHERE kind = 'C'}),
	$node->safe_psql('postgres', 'SELECT count(*) FROM public.ev'),
	'as many members as rows');

$in .= "quit\n";
$follow->finish;
is($follow->result(0), 0, 'psync_follow exits cleanly') or diag($err);
stop_nats($nats);
done_testing();
