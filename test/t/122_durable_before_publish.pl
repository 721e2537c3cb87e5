# An envelope is published only once its writer's commit is on disk, also
# when the writer committed with synchronous_commit = off: the publisher
# flushes the WAL up to that commit first (docs/publisher.md).  Here nobody
# else flushes (the WAL writer sleeps 10 s), so a publisher that published
# an unflushed commit would show it: after an immediate shutdown the row
# would be back at its old value while subscribers hold the new one.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'durable_nats');
my $node = new_publisher_node('durable', $nats, q{
wal_writer_delay = '10s'
wal_writer_flush_after = '1GB'
checkpoint_timeout = '1h'
autovacuum = off
});
my $file = "$tmp/durable.msgs";
my $sub = start_sub($nats, $file);

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.d (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.d');
	INSERT INTO public.d SELECT g, 0 FROM generate_series(1, 5) g;
});
ok(wait_for(sub { scalar(@{ read_sub($file) }) >= 5 }, 'inserts published'),
	'the inserts are published');

# Synchronous commits only, for a while, before the asynchronous ones below:
# a publisher that stopped flushing once it had seen only synchronous
# commits (their records are on disk before they are visible) must start
# again with the first asynchronous one (bench/notes/2026-12-01-publisher-fifth-pass.md,
# "Tried, not kept": a version that never started again fails the crash check
# of d:1).
for my $round (1 .. 3)
{
	$node->safe_psql('postgres', "UPDATE public.d SET v = $round WHERE id = 4");
	ok( wait_for(
			sub {
				grep { $_->[0] eq 'd:4' && $_->[1] == 1 + $round } @{ read_sub($file) };
			},
			"synchronous update $round of d:4 published"),
		"synchronous update $round of d:4 is published");
}

for my $id (1 .. 3)
{
	$node->safe_psql('postgres', qq{
		SET synchronous_commit = off;
		UPDATE public.d SET v = 1 WHERE id = $id;
	});
	ok( wait_for(
			sub {
				grep { $_->[0] eq "d:$id" && $_->[1] == 2 } @{ read_sub($file) };
			},
			"update of d:$id published"),
		"the asynchronous commit of d:$id is published");
	# no flush from here on: an immediate shutdown loses unflushed WAL
	$node->stop('immediate');
	$node->start;
	is($node->safe_psql('postgres', "SELECT v FROM public.d WHERE id = $id"),
		'1', "the published change of d:$id survived the crash");
}

# Asynchronous writers, concurrently, while the worker publishes and removes
# (its own commits are asynchronous too and share the commit log's LSN
# groups with theirs): after an immediate shutdown, no key may have been
# published beyond the sequence that survived.
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET synchronous_commit = off');
my ($rc, $out, $err) = finish_pgbench(start_pgbench($node, q{
\set id random(1, 5)
UPDATE public.d SET v = v + 1 WHERE id = :id;
}, '-c', '2', '-j', '2', '-t', '1500'));
is($rc, 0, 'asynchronous writers ran while the worker published') or diag($err);
$node->stop('immediate');
$node->start;
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET synchronous_commit');
my %published;
for (@{ read_sub($file) })
{
	$published{ $_->[0] } = $_->[1] if $_->[1] > ($published{ $_->[0] } // 0);
}
my @beyond;
for my $id (1 .. 5)
{
	my $key = "d:$id";
	my $durable = $node->safe_psql('postgres',
		"SELECT para_sync.envelope_to_jsonb(para_sync.snapshot('$key'))->>'sequence'");
	push @beyond, "$key published $published{$key}, durable $durable"
	  if $published{$key} > $durable;
}
is_deeply(\@beyond, [], 'nothing was published beyond what survived the crash');
diag('published up to ' . join(', ', map { "$_/$published{$_}" } sort keys %published));

# and after every crash, sequences go on where the published ones ended
$node->safe_psql('postgres', 'UPDATE public.d SET v = v + 1');
my $total;
ok(wait_all_delivered($node, $file, 'updates after the crashes', \$total),
	'updates after the crashes are published');
my @problems = check_contiguous(read_sub($file));
is_deeply(\@problems, [], 'per key, contiguous sequences, one content each');

stop_sub($sub);
$node->stop;
stop_nats($nats);
done_testing();
