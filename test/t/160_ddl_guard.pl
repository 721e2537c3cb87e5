# The capture trigger fires ALWAYS and stays so across the lifecycle: an
# upgrade from 0.1 converts existing triggers, logical replication into a
# synced table is captured, dump and restore keep the firing mode, and a
# data-only restore with --disable-triggers is refused instead of changing
# rows without envelopes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('guard');
$node->init(allows_streaming => 'logical');
# the publisher must not drain the outboxes this test reads
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'para_sync'
para_sync.nats_url = 'nats://127.0.0.1:1'
});
$node->start;

sub outbox
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT string_agg(key || '=' || seq, ',' ORDER BY key, seq) FROM para_sync.outbox});
}

sub capture_mode
{
	my ($db, $tbl) = @_;
	return $node->safe_psql($db,
		qq{SELECT tgenabled FROM pg_trigger WHERE tgrelid = '$tbl'::regclass AND tgname = 'para_sync_capture'});
}

# -- upgrade from 0.1: the ORIGIN trigger becomes ALWAYS
$node->safe_psql('postgres', 'CREATE DATABASE up');
$node->safe_psql('up', q{
	CREATE EXTENSION para_sync VERSION '0.1';
	CREATE TABLE public.items (id int PRIMARY KEY, label text);
	-- tagged with 0.1's own objects: this library refuses 0.1's sync_table()
	INSERT INTO para_sync.tables (relid, sync_name, schema_version) VALUES ('public.items', 'items', '1');
	SELECT para_sync.install_triggers('public.items');
	INSERT INTO public.items VALUES (1, 'a');
});
is(capture_mode('up', 'public.items'), 'O', '0.1 installs an ENABLE ORIGIN capture trigger');
$node->safe_psql('up', 'ALTER EXTENSION para_sync UPDATE');
is(capture_mode('up', 'public.items'), 'A', 'the upgrade makes it ENABLE ALWAYS');
$node->safe_psql('up', q{
	SET session_replication_role = replica;
	UPDATE public.items SET label = 'b';
});
is(outbox('up'), 'items:1=1,items:1=2', 'a change in replica mode is captured after the upgrade');
my ($rc, $out, $err) = $node->psql('up', 'ALTER TABLE public.items DISABLE TRIGGER USER');
like($err, qr/cannot disable all triggers of synced table "items"/, 'the upgraded database has the guard');

# -- logical replication into a synced table is captured
my $pub = PostgreSQL::Test::Cluster->new('pub');
$pub->init(allows_streaming => 'logical');
$pub->start;
$pub->safe_psql('postgres', q{
	CREATE TABLE public.items (id int PRIMARY KEY, label text);
	CREATE PUBLICATION p FOR TABLE public.items;
});
$node->safe_psql('postgres', 'CREATE DATABASE sub');
$node->safe_psql('sub', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.items (id int PRIMARY KEY, label text);
	SELECT para_sync.sync_table('public.items');
});
my $pubconn = $pub->connstr . ' dbname=postgres';
$node->safe_psql('sub', "CREATE SUBSCRIPTION s CONNECTION '$pubconn' PUBLICATION p WITH (copy_data = false)");
$pub->safe_psql('postgres', q{
	INSERT INTO public.items VALUES (1, 'a'), (2, 'a');
	UPDATE public.items SET label = 'b' WHERE id = 1;
	DELETE FROM public.items WHERE id = 2;
});
$pub->wait_for_catchup('s');
is(outbox('sub'), 'items:1=1,items:1=2,items:2=1,items:2=2',
	'inserts, updates and deletes applied by a subscription are captured');
is($node->safe_psql('sub', q{SELECT para_sync.snapshot_json('items:1')->>'sequence'}), '2',
	'snapshot agrees with the replicated changes');
$node->safe_psql('sub', 'DROP SUBSCRIPTION s');
$pub->stop;

# -- dump and restore keep the firing mode; the guard does not block restore
my $dump = $node->basedir . '/sub.dump';
command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('sub'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is(capture_mode('restored', 'public.items'), 'A', 'the restored capture trigger is ENABLE ALWAYS');
is($node->safe_psql('restored', 'SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE $$para_sync%$$'),
	$node->safe_psql('sub', 'SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE $$para_sync%$$'),
	'the extension\'s event triggers come from CREATE EXTENSION, not from the dump');

# -- a data-only restore with --disable-triggers is refused
my $data = $node->basedir . '/items.sql';
command_ok([ 'pg_dump', '-a', '--disable-triggers', '-t', 'public.items', '-d', $node->connstr('sub'), '-f', $data ],
	'data-only dump');
$node->safe_psql('restored', 'DELETE FROM public.items');
my $before = outbox('restored');
($rc, $out, $err) = $node->psql('restored', undef, extra_params => [ '-v', 'ON_ERROR_STOP=1', '-f', $data ]);
isnt($rc, 0, 'restoring with --disable-triggers fails');
like($err, qr/cannot disable all triggers of synced table "items"/, 'with the guard\'s error');
is($node->safe_psql('restored', 'SELECT count(*) FROM public.items'), '0', 'and changes nothing');
is(outbox('restored'), $before, 'nothing was captured either');
# without --disable-triggers the restored rows are captured
command_ok([ 'pg_dump', '-a', '-t', 'public.items', '-d', $node->connstr('sub'), '-f', $data ], 'data-only dump');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $data ],
	'data-only restore');
is($node->safe_psql('restored', q{SELECT para_sync.snapshot_json('items:1')->>'sequence'}), '4',
	'the restored row is a new change of its object (delete 3, re-insert 4)');

$node->stop;
done_testing();
