# The publisher's vacuum after a drain (src/outbox_vacuum.c) waits until no
# transaction can see the rows it removed: a transaction whose snapshot is
# older than the drain's last removal holds them back, and a VACUUM run then
# would leave the backlog's dead index entries behind until the next one.
# Here a REPEATABLE READ transaction holds its snapshot while a 20,000-row
# backlog drains; once the worker is caught up and idle, the transaction
# ends, and the vacuum that follows leaves the outbox's primary key small.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $nats = start_nats(name => 'vacwait_nats');
my $node = new_publisher_node('vacwait', $nats,
	"autovacuum = off\npara_sync.vacuum_threshold = 1000\n");

$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE EXTENSION pgstattuple;
	CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL);
	SELECT para_sync.sync_table('public.items');
	INSERT INTO public.items SELECT g, 0 FROM generate_series(1, 2000) g;
});
my $vacuums_sql = q{SELECT vacuum_count FROM pg_catalog.pg_stat_user_tables
	WHERE relid = 'para_sync.outbox'::regclass};
ok(wait_for(sub { $node->safe_psql('postgres', $vacuums_sql) >= 1 }, 'first vacuum'),
	'the worker vacuums once after it started and caught up');

# a backlog of 20,000 envelopes while NATS is out of reach
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET para_sync.nats_url = 'nats://127.0.0.1:1';
	SELECT pg_catalog.pg_reload_conf();});
ok(wait_for(sub { $node->safe_psql('postgres',
			q{SELECT nats_state <> 'connected' FROM para_sync.status}) eq 't' }, 'disconnect'),
	'the worker lets go of NATS');
$node->safe_psql('postgres', 'UPDATE public.items SET v = v + 1') for 1 .. 10;
my $vacuums = $node->safe_psql('postgres', $vacuums_sql);

# a snapshot older than every removal of the drain
my $old = $node->background_psql('postgres');
$old->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$old->query_safe('SELECT count(*) FROM public.items');

$node->safe_psql('postgres', "ALTER SYSTEM SET para_sync.nats_url = '" . nats_url($nats) . "';
	SELECT pg_catalog.pg_reload_conf();");
ok(wait_for(sub { $node->safe_psql('postgres', q{
			SELECT (SELECT count(*) FROM para_sync.outbox) = 0
			   AND (SELECT a.query FROM pg_catalog.pg_stat_activity a
			         WHERE a.backend_type = 'para_sync publisher') = 'para_sync publisher: waiting for commits'}) eq 't' },
		'drained and idle', deadline_for(20000)),
	'the backlog drains and the worker goes idle');

$old->query_safe('COMMIT');
$old->quit;
ok(wait_for(sub { $node->safe_psql('postgres', $vacuums_sql) > $vacuums }, 'vacuum after the drain'),
	'the worker vacuums the outbox after the drain');
# 20,000 entries take some 120 leaf pages; the vacuum deletes the empty ones
my $leaves = $node->safe_psql('postgres',
	q{SELECT leaf_pages FROM public.pgstatindex('para_sync.outbox_pkey')});
cmp_ok($leaves, '<', 10, "the outbox's primary key is small again ($leaves leaf pages)");

$node->stop;
stop_nats($nats);
done_testing();
