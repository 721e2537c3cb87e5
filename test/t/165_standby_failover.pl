# Failover to an asynchronous standby with para_sync.standby_slots: the
# primary publishes a batch only once the standby behind slot s1 flushed its
# WAL.  Under load the standby's WAL receiver is frozen (SIGSTOP) for 200
# commits, the primary stops -m immediate, the standby is promoted and writes go on
# there.  An independent subscriber must never see one (key, sequence) with
# two contents; every key's last envelope equals snapshot() on the new
# primary; the new primary's publisher starts by itself.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'fo_nats');
my $file = "$tmp/failover.rec";
my $sub = start_sub($nats, $file);

my $primary = new_publisher_node('fo_primary', $nats, q{
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
para_sync.standby_slots = 's1'
para_sync.batch_size = 100
para_sync.poll_interval = '1h'
});
$primary->safe_psql('postgres', q{
	SELECT pg_create_physical_replication_slot('s1', true);
	CREATE EXTENSION para_sync;
	CREATE TABLE public.f (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.f');
});

# without a standby behind s1, nothing is published: held back, visibly
$primary->safe_psql('postgres', 'INSERT INTO public.f SELECT g, 0 FROM generate_series(1, 200) g');
ok( wait_for(sub {
		$primary->safe_psql('postgres', 'SELECT state, state_detail FROM para_sync.status')
		  =~ /^waiting for standby\|standby slot "s1" is inactive/ }, 'held back by s1'),
	'an inactive slot holds publishing back, with the reason in status');
is(scalar(@{ read_sub($file) }), 0, 'nothing published before the standby confirmed');

$primary->backup('b1', backup_options => [ '-X', 'stream', '-S', 's1' ]);
my $standby = PostgreSQL::Test::Cluster->new('fo_standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
# each node lists the slots of its own standbys: this one, once promoted, has none
$standby->append_conf('postgresql.conf', "primary_slot_name = 's1'\npara_sync.standby_slots = ''\n");
$standby->start;
ok(wait_for(sub { scalar(@{ read_sub($file) }) >= 200 }, 'publishing once the standby streams'),
	'publishing starts once the standby confirms');
is($standby->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'para_sync publisher'}),
	'0', 'no publisher runs on the standby');

my $script = q{
\set id random(1, 200)
UPDATE public.f SET v = v + 1 WHERE id = :id;
};

# Commits that land while a batch waits for the standby (a wait that resets
# the worker's latch) must still wake it: with the fallback poll at one hour,
# a lost wake-up would leave them unpublished.
my ($brc, $bout, $berr) = finish_pgbench(start_pgbench($primary, $script, '-c', '2', '-j', '2', '-t', '500'));
is($brc, 0, 'a burst of commits behind the standby slot') or diag($berr);
my $total;
ok(wait_all_delivered($primary, $file, 'the burst behind the standby slot', \$total),
	'every commit of the burst was published (poll interval one hour)');
# 6000 transactions, at most 400 per second: still running at the failover
# below, however fast the machine
my $pgb = start_pgbench($primary, $script, '-c', '4', '-j', '2', '-t', '1500', '-R', '400');
ok(wait_for(sub { scalar(@{ read_sub($file) }) > 1200 }, 'progress under load'),
	'publishing under load');

my $walrcv = $standby->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
ok($walrcv =~ /^\d+$/, 'standby WAL receiver found');
kill 'STOP', $walrcv;
# 200 commits the standby never receives (publishing waits for it)
my $held = $primary->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox');
ok( wait_for(sub {
		$primary->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') >= $held + 200 },
		'commits behind the stopped standby'),
	'commits go on while the standby receives nothing');
$primary->stop('immediate');
kill 'CONT', $walrcv;
finish_pgbench($pgb);
my $published_at_failover = scalar(@{ read_sub($file) });

$standby->promote;
ok(wait_new_worker($standby, undef, 'publisher on the promoted standby'),
	'the publisher starts by itself on promotion');
$pgb = start_pgbench($standby, $script, '-c', '4', '-j', '2', '-t', '300');
finish_pgbench($pgb);

ok(wait_all_delivered($standby, $file, 'the new primary drains', \$total),
	'the new primary publishes its backlog, and the recorder has every change');
ok(scalar(@{ read_sub($file) }) > $published_at_failover, 'publishing resumed after the failover');

stop_sub($sub);
my $msgs = read_sub($file);
my (%content, @two);
for my $m (@$msgs)
{
	my $ks = "$m->[0]/$m->[1]";
	push @two, $ks if defined $content{$ks} && $content{$ks} ne $m->[3];
	$content{$ks} = $m->[3];
}
is(scalar(@two), 0, 'no (key, sequence) published with two different contents')
  or diag("first: @two[0 .. ($#two < 4 ? $#two : 4)]");

my $latest = latest_by_key($msgs);
my $values = join(",\n",
	map { "('$_', $latest->{$_}[0], '$latest->{$_}[2]')" } sort keys %$latest);
$standby->safe_psql('postgres', "CREATE TABLE recv (key text, seq int8, env text);
	INSERT INTO recv VALUES $values;");
is($standby->safe_psql('postgres', 'SELECT count(*) FROM recv'), '200', 'every key was received');
is( $standby->safe_psql('postgres', q{
	SELECT count(*) FROM recv r
	 WHERE (para_sync.envelope_to_jsonb(decode(r.env, 'hex')) - 'txid' - 'op')
	       IS DISTINCT FROM (para_sync.envelope_to_jsonb(para_sync.snapshot(r.key)) - 'op')}),
	'0', "every key's last envelope equals snapshot() on the new primary");
diag(scalar(@$msgs) . " messages, $published_at_failover before the failover");

$standby->stop;
stop_nats($nats);
done_testing();
