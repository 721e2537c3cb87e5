# An envelope larger than the server's max_payload goes out as op refetch,
# without a value, with the key, sequence and schema version of the change;
# the backlog keeps draining behind it and nothing loops on it.  Core NATS
# and JetStream (where the Nats-Msg-Id header counts too).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'refetch_nats', max_payload => 4096, js => 1);
my $node = new_publisher_node('refetch', $nats);
my $file = "$tmp/refetch.msgs";
my $sub = start_sub($nats, $file);

# One transaction: the worker reads all four changes in one batch, in key
# order (separate commits could be split across batches and go out in
# another order across keys, which nothing promises).
$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.docs (id int PRIMARY KEY, body text NOT NULL);
	SELECT para_sync.sync_table('public.docs', schema_version => '2.5');
	BEGIN;
	INSERT INTO public.docs VALUES (1, 'small');
	INSERT INTO public.docs VALUES (2, pg_catalog.repeat('x', 20000));
	INSERT INTO public.docs VALUES (3, 'small too');
	UPDATE public.docs SET body = 'now small' WHERE id = 2;
	COMMIT;
});

ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0'
		  && scalar(@{ read_sub($file) }) == 4 }, 'drain past the oversized envelope'),
	'the backlog drains past an oversized envelope');
my $msgs = read_sub($file);
is(join(',', map { "$_->[0]/$_->[1]/$_->[2]" } @$msgs),
	'docs:1/1/upsert,docs:2/1/refetch,docs:2/2/upsert,docs:3/1/upsert',
	'the oversized change went out as refetch, in order');
my ($refetch) = grep { $_->[2] eq 'refetch' } @$msgs;
is( $node->safe_psql('postgres', qq{
	SELECT e ? 'value', e->>'key', e->>'sequence', e->>'schema_version', e->>'op', e ? 'txid'
	  FROM para_sync.envelope_to_jsonb(decode('$refetch->[3]', 'hex')) e}),
	'f|docs:2|1|2.5|refetch|t',
	'the refetch envelope has key, sequence, schema version, no value');
is($node->safe_psql('postgres', 'SELECT refetches, published FROM para_sync.status'), '1|4',
	'status counts the refetch');

# JetStream: same, with the message id header counted
ok(IPC::Run::run([ sub_tool(), '-u', nats_url($nats), '-C', 'DOCS', '-s', 'synced.>' ]), 'stream');
$node->append_conf('postgresql.conf', "para_sync.jetstream_stream = 'DOCS'\n");
$node->reload;
ok( wait_for(sub { $node->safe_psql('postgres', 'SELECT mode, nats_state FROM para_sync.status') eq 'jetstream|connected' },
		'jetstream mode'), 'switched to JetStream by SIGHUP');
# an envelope of 4086 bytes: fits core NATS, not with the Nats-Msg-Id header
my $small = length($msgs->[0][3]) / 2;    # body 'small': 5 bytes, 1-byte str header
my $len = 4086 - ($small - 5 - 1 + 3);
$node->safe_psql('postgres', qq{
	UPDATE public.docs SET body = pg_catalog.repeat('y', $len) WHERE id = 1;
	UPDATE public.docs SET body = 'small again' WHERE id = 1;});
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox') eq '0'
		  && scalar(@{ read_sub($file) }) == 6 }, 'drain in JetStream mode'),
	'JetStream mode drains past an envelope that only the header makes too large');
$msgs = read_sub($file);
is(join(',', map { "$_->[0]/$_->[1]/$_->[2]" } @$msgs[4, 5]),
	'docs:1/2/refetch,docs:1/3/upsert', 'refetch in JetStream mode');
like(slurp_file($node->logfile), qr/para_sync publisher: connected to NATS/, 'connected');
unlike(slurp_file($node->logfile), qr/WARNING:  para_sync publisher/, 'no publish failure was logged');

stop_sub($sub);
$node->stop;
stop_nats($nats);
done_testing();
