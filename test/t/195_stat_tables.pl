# para_sync.stat_tables: the publisher's per-table statistics.  Two synced
# tables get a known number of changes each, among them an envelope larger
# than the NATS server's max_payload (published as op refetch) and one whose
# key alone exceeds it (skipped); once the subscriber has them all, every
# column of both rows is checked against what was written and what arrived.  Then: pg_monitor may read the view
# and a plain role may not; only a superuser may reset it, and a reset
# starts the counts afresh; a server restart does too; a database the
# publisher does not publish from counts nothing; and with
# para_sync.stat_max_tables full, the names beyond it are counted in the
# row without a sync name.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'stat_nats', max_payload => 1000);
my $node = new_publisher_node('stat', $nats);
my $file = "$tmp/stat.msgs";
my $sub = start_sub($nats, $file);

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.alpha_t (id int PRIMARY KEY, body text NOT NULL);
	CREATE TABLE public.beta_t (id text PRIMARY KEY, body text NOT NULL);
	SELECT para_sync.sync_table('public.alpha_t', name => 'alpha');
	SELECT para_sync.sync_table('public.beta_t', name => 'beta');
	CREATE ROLE stat_mon LOGIN IN ROLE pg_monitor;
	CREATE ROLE stat_plain LOGIN;
});

my $cols = q{table_name, sync_name, captured, published, refetches, skipped, bytes_published,
	last_change_at, last_publish_at, last_publish_lag, total_publish_lag, stats_since};
is($node->safe_psql('postgres', "SELECT $cols FROM para_sync.stat_tables ORDER BY sync_name"),
	"alpha_t|alpha|0|0|0|0|0||||00:00:00|\nbeta_t|beta|0|0|0|0|0||||00:00:00|",
	'before any change: a row of zeros per synced table');

# One transaction per table, so that each table's envelopes share one
# queued_at and go out in one batch.  alpha: 5 inserts and 3 updates;
# beta: 5 inserts, one with a value far beyond max_payload (op refetch),
# one with a key beyond it (skipped: too large even as op refetch).
my $alpha_at = $node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO public.alpha_t SELECT g, 'a' || g FROM generate_series(1, 5) g;
	UPDATE public.alpha_t SET body = body || '!' WHERE id <= 3;
	SELECT now();
	COMMIT;});
my $beta_at = $node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO public.beta_t SELECT g, 'b' || g FROM generate_series(1, 3) g;
	INSERT INTO public.beta_t VALUES ('4', repeat('x', 20000));
	INSERT INTO public.beta_t VALUES (repeat('k', 1000), 'too long a key');
	SELECT now();
	COMMIT;});

# stat_tables counts a batch right after removing it from the outbox: wait
# for the counts, not for the outbox
sub wait_counted
{
	my ($n, $what) = @_;
	return wait_for(sub {
		$node->safe_psql('postgres', 'SELECT sum(captured) FROM para_sync.stat_tables') eq $n },
		$what);
}
ok(wait_counted(13, 'thirteen changes counted'), 'the thirteen changes were taken and counted');

ok(wait_for(sub { scalar(@{ read_sub($file) }) >= 12 }, 'twelve envelopes received'),
	'the subscriber got the twelve envelopes sent');
my $msgs = read_sub($file);
is(scalar(@$msgs), 12, 'and nothing more');
my %bytes;
$bytes{ ($_->[0] =~ /^([^:]+):/)[0] } += length($_->[3]) / 2 for @$msgs;
is(join(',', map { "$_->[0]/$_->[2]" } grep { $_->[2] eq 'refetch' } @$msgs), 'beta:4/refetch',
	'the large envelope went out as op refetch');

is( $node->safe_psql('postgres', qq{
	SELECT table_name, sync_name, captured, published, refetches, skipped, bytes_published,
		   last_change_at = CASE sync_name WHEN 'alpha' THEN '$alpha_at' ELSE '$beta_at' END::timestamptz,
		   last_publish_at > last_change_at AND last_publish_at <= now(),
		   last_publish_lag = last_publish_at - last_change_at,
		   extract(epoch FROM total_publish_lag) = published * extract(epoch FROM last_publish_lag),
		   stats_since <= last_publish_at AND stats_since > last_change_at
	  FROM para_sync.stat_tables ORDER BY sync_name}),
	"alpha_t|alpha|8|8|0|0|$bytes{alpha}|t|t|t|t|t\n"
	  . "beta_t|beta|5|4|1|1|$bytes{beta}|t|t|t|t|t",
	'every column of both tables after delivery');

# readable by pg_monitor, by nobody else; reset by superusers only
is($node->safe_psql('postgres', 'SET ROLE stat_mon; SELECT count(*) FROM para_sync.stat_tables'),
	'2', 'a pg_monitor member reads stat_tables');
my ($ret, $out, $err) = $node->psql('postgres', 'SET ROLE stat_plain; SELECT * FROM para_sync.stat_tables');
like($err, qr/permission denied for view stat_tables/, 'a plain role cannot read stat_tables');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE stat_plain; SELECT * FROM para_sync.publisher_table_stats()');
like($err, qr/permission denied for function publisher_table_stats/, 'nor call the function behind it');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE stat_mon; SELECT para_sync.stat_reset()');
like($err, qr/permission denied for function stat_reset/, 'a pg_monitor member cannot reset');
is($node->safe_psql('postgres', 'SELECT sum(captured) FROM para_sync.stat_tables'), '13',
	'nothing was reset');

# docs/postgres_exporter.yml: each query runs as a pg_monitor member and
# returns exactly the columns its metrics list names, in order
my $yml = slurp_file("$ENV{TESTDIR}/docs/postgres_exporter.yml");
my @namespaces = $yml =~ /^(\w+):\n/mg;
is(join(',', @namespaces), 'para_sync_table,para_sync_publisher', 'the exporter file has both queries');
for my $block (split /^(?=\w+:\n)/m, $yml)
{
	my ($ns) = $block =~ /^(\w+):\n/ or next;
	my ($query) = $block =~ /^  query: \|\n((?:    .*\n)+)/m;
	my @metrics = $block =~ /^    - (\w+):$/mg;
	($ret, $out, $err) = $node->psql('postgres', qq{SET ROLE stat_mon;
		SELECT string_agg(k, ',') FROM (SELECT row_to_json(q) j FROM ($query) q LIMIT 1) x,
			   json_object_keys(x.j) k});
	is($out, join(',', @metrics), "exporter query $ns runs as pg_monitor, one column per metric");
	is($err, '', "exporter query $ns: no error");
}

my $reset_at = $node->safe_psql('postgres', 'SELECT now()');
$node->safe_psql('postgres', 'SELECT para_sync.stat_reset()');
is($node->safe_psql('postgres', "SELECT $cols FROM para_sync.stat_tables ORDER BY sync_name"),
	"alpha_t|alpha|0|0|0|0|0||||00:00:00|\nbeta_t|beta|0|0|0|0|0||||00:00:00|",
	'a superuser\'s reset: zeros again');
$node->safe_psql('postgres', q{UPDATE public.alpha_t SET body = 'again' WHERE id = 1});
ok(wait_counted(1, 'a change after the reset'), 'counting goes on after the reset');
is( $node->safe_psql('postgres', qq{
	SELECT sync_name, captured, published, stats_since > '$reset_at'
	  FROM para_sync.stat_tables ORDER BY sync_name}),
	"alpha|1|1|t\nbeta|0|0|",
	'after the reset only the new change counts, since then');

# a database the publisher does not publish from: its tables count nothing,
# and they are not in the publishing database's view
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.gamma_t (id int PRIMARY KEY);
	SELECT para_sync.sync_table('public.gamma_t', name => 'gamma');
	INSERT INTO public.gamma_t VALUES (1);});
is($node->safe_psql('other', 'SELECT sync_name, captured FROM para_sync.stat_tables'),
	'gamma|0', 'another database: its synced table, nothing counted');

# the statistics live in shared memory: a restart starts them afresh.  With
# room for one sync name, the second is counted in the row without one.
$node->append_conf('postgresql.conf', "para_sync.stat_max_tables = 1\n");
$node->restart;
is($node->safe_psql('postgres', 'SELECT sum(captured), count(stats_since) FROM para_sync.stat_tables'),
	'0|0', 'a restart resets the statistics');
$node->safe_psql('postgres', q{UPDATE public.alpha_t SET body = 'one' WHERE id = 1});
ok(wait_counted(1, 'alpha counted after the restart'), 'alpha counted');
$node->safe_psql('postgres', q{UPDATE public.beta_t SET body = 'two' WHERE id = '1'});
ok(wait_counted(2, 'beta counted after the restart'), 'beta counted');
is( $node->safe_psql('postgres', q{
	SELECT table_name, sync_name, captured, published FROM para_sync.stat_tables
	 ORDER BY sync_name NULLS LAST}),
	"alpha_t|alpha|1|1\nbeta_t|beta|0|0\n||1|1",
	'beyond para_sync.stat_max_tables, a name is counted in the row without a sync name');

stop_sub($sub);
$node->stop;
stop_nats($nats);
done_testing();
