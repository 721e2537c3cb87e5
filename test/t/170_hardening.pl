# Publisher hardening: an envelope too large for NATS even as op refetch is
# skipped and reported without blocking or re-sending the backlog; a byte
# cap per batch (para_sync.batch_bytes); credentials in para_sync.nats_url
# are readable by superusers only and never logged; a tls:// URL enforces
# TLS; a missing para_sync.database shows why in para_sync.status; in core
# mode the backlog counts a batch that NATS has not confirmed yet; SIGTERM
# is handled within a second while NATS does not answer.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../tools";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsyncTest;
use Test::More;
use Time::HiRes qw(time);

my $tmp = ${PostgreSQL::Test::Utils::tmp_check};
my $nats = start_nats(name => 'hard_nats', max_payload => 300);
my $file = "$tmp/hard.rec";
my $sub = start_sub($nats, $file);
my $node = new_publisher_node('hard', $nats, q{
para_sync.confirm_timeout = '30s'
});
$node->safe_psql('postgres', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.h (k text PRIMARY KEY, v text);
	SELECT para_sync.sync_table('public.h');
});
sub status { return $node->safe_psql('postgres', "SELECT $_[0] FROM para_sync.status"); }
sub outbox { return $node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox'); }

# --- too large even as op refetch: a 400-byte key against max_payload 300
$node->safe_psql('postgres', q{
	INSERT INTO public.h VALUES ('a', 'x'), ('b', 'y'), (repeat('k', 400), 'z'), ('c', 'w');
	INSERT INTO public.h SELECT 'd' || g, 'v' FROM generate_series(1, 20) g;
});
ok(wait_for(sub { outbox() eq '0' }, 'drain past the oversized envelope'),
	'the backlog drains past an envelope too large even as op refetch');
is(status('skipped'), '1', 'status counts the skipped envelope');
like(status('last_error'), qr/skipped key "h:k{400}" sequence 1/, 'last_error names it');
like(slurp_file($node->logfile), qr/WARNING:  para_sync publisher: skipped the envelope of key "h:k+" sequence 1/,
	'the skip is logged');
# a marker after them: once it arrived, so did everything published before
# it (NATS keeps the order of one publisher's messages)
$node->safe_psql('postgres', q{INSERT INTO public.h VALUES ('marker', 'm')});
ok(wait_for(sub { grep { $_->[0] eq 'h:marker' } @{ read_sub($file) } }, 'the marker'),
	'a marker published after them arrived');
my %n;
$n{"$_->[0]/$_->[1]"}++ for grep { $_->[0] ne 'h:marker' } @{ read_sub($file) };
is(scalar(keys %n), 23, 'every other envelope arrived');
is(scalar(grep { $_ != 1 } values %n), 0, 'none was sent twice');

# --- batch_bytes: 64 kB cap, five 200 kB values in one transaction
stop_sub($sub);
stop_nats($nats);
$nats = start_nats(name => 'hard_nats2', port => $nats->{port});
$sub = start_sub($nats, $file);
$node->safe_psql('postgres', 'ALTER SYSTEM SET para_sync.batch_bytes = 64; SELECT pg_reload_conf()');
ok(wait_for(sub { status('nats_state') eq 'connected' }, 'reconnected'), 'reconnected');
my $batches = status('batches');
$node->safe_psql('postgres',
	q{INSERT INTO public.h SELECT 'big' || g, repeat(md5(g::text), 6400) FROM generate_series(1, 5) g});
ok(wait_for(sub { outbox() eq '0' }, 'big rows drained'), 'big rows drained');
cmp_ok(status('batches') - $batches, '>=', 5, 'one 200 kB envelope per batch under a 64 kB cap');

# --- nats_url with credentials: superusers only, never logged
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
$node->append_conf('postgresql.conf', "para_sync.nats_url = 'nats://alice:S3cr3t-pw\@127.0.0.1:1'\n");
$node->reload;
my ($rc, $out, $err) = $node->psql('postgres', 'SHOW para_sync.nats_url', extra_params => [ '-U', 'plain' ]);
isnt($rc, 0, 'a non-superuser cannot SHOW para_sync.nats_url');
like($err, qr/must be superuser|privileges of pg_read_all_settings/, '... for lack of privilege');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_settings WHERE name = 'para_sync.nats_url'},
		extra_params => [ '-U', 'plain' ]), '0', 'nor read it in pg_settings');
ok(wait_for(sub { status('last_error') =~ /127\.0\.0\.1:1/ }, 'bad url tried'),
	'the worker tried the new URL');
unlike(status('last_error') . status('nats_server'), qr/S3cr3t/, 'status never shows the password');
my $log = slurp_file($node->logfile);
like($log, qr/parameter "para_sync.nats_url" changed \(value not logged\)/, 'the reload line is cut');
unlike($log, qr/S3cr3t/, 'the password never reaches the log');

# --- tls:// enforces TLS against a plaintext server
$node->safe_psql('postgres', qq{
	ALTER SYSTEM SET para_sync.nats_url = 'tls://127.0.0.1:$nats->{port}';
	SELECT pg_reload_conf();
});
my $before = scalar(@{ read_sub($file) });
$node->safe_psql('postgres', q{UPDATE public.h SET v = 'tls' WHERE k = 'a'});
ok( wait_for(sub {
		$node->safe_psql('postgres', q{
			SELECT nats_state <> 'connected' AND last_error ~* 'secure|tls|ssl' FROM para_sync.status}) eq 't' },
		'tls error'),
	'a tls:// URL to a plaintext server is refused')
  or diag(status('last_error'));
is(scalar(@{ read_sub($file) }), $before, 'nothing was sent in clear text');

# --- a missing para_sync.database: status says why
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET para_sync.database = 'no_such_db';
	SELECT pg_reload_conf();
});
ok( wait_for(sub {
		$node->safe_psql('postgres', 'SELECT state, last_error FROM para_sync.status')
		  =~ /^stopped\|database "no_such_db" does not exist/ }, 'missing database in status'),
	'status shows that para_sync.database does not exist')
  or diag($node->safe_psql('postgres', 'SELECT state, last_error FROM para_sync.status'));
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET para_sync.database;
	SELECT pg_reload_conf();
});

# --- core mode: a batch NATS has not confirmed yet counts in backlog
$node->safe_psql('postgres', qq{
	ALTER SYSTEM SET para_sync.nats_url = 'nats://127.0.0.1:$nats->{port}';
	SELECT pg_reload_conf();
});
ok(wait_for(sub { outbox() eq '0' && status('state') eq 'idle' }, 'drained again'),
	'back on plain NATS');
my $npid = $nats->{h}{KIDS}[0]{PID};
kill 'STOP', $npid;
$node->safe_psql('postgres', q{UPDATE public.h SET v = 'unconfirmed' WHERE k LIKE 'd%'});
ok(wait_for(sub { status('state') eq 'publishing' }, 'publishing'), 'publishing, NATS silent');
is(status('backlog'), '20', 'backlog counts the unconfirmed batch');

# --- SIGTERM while NATS does not answer: the worker exits within a second.
# Measured from the signal to the worker's own line saying it ends (its
# timestamp, same clock), not to when this script next looks: how often a
# loaded machine lets the test poll is not the worker's reaction time.
my $wpid = worker_pid($node);
my $log_at = -s $node->logfile;
my $t0 = time;
kill 'TERM', $wpid;
ok(wait_for(sub { !kill(0, $wpid) }, 'worker exit'), 'the worker exits on SIGTERM');
my ($ended) = slurp_file($node->logfile, $log_at)
  =~ /^(\S+ \S+ \S+) \[$wpid\] LOG:  para_sync publisher: terminated by process/m;
ok(defined $ended, 'the worker logged that it was terminated');
my $took = $node->safe_psql('postgres', "SELECT extract(epoch FROM '$ended'::timestamptz) - $t0");
cmp_ok($took, '<', 1.5, "within about a second while waiting for NATS ($took s)");
kill 'CONT', $npid;

$node->stop;
stop_sub($sub);
stop_nats($nats);
done_testing();
