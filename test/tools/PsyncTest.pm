# PsyncTest.pm — helpers for the publisher's TAP tests (test/t/1*.pl):
# a real nats-server on a free loopback port, the psync_sub recorder, a
# PostgreSQL node with para_sync preloaded, and deadline-based polling.
package PsyncTest;

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path);
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(start_nats stop_nats nats_url start_sub stop_sub read_sub
  wait_for new_publisher_node latest_by_key check_contiguous
  start_pgbench finish_pgbench sub_tool worker_pid deadline_secs deadline_for
  wait_new_worker wait_all_delivered commit_one_by_one worker_sleeps
  start_follow follow_dump stop_follow follow_differences create_scoped_orders);

# The extension, and public.shop_orders synced as 'orders' with a scope on
# its tenant column (an index on (tenant, id) for one scope's pages) and
# $rows rows: even ids in tenant 'acme', odd ones in 'globex'.
sub create_scoped_orders
{
	my ($node, $rows) = @_;
	$node->safe_psql('postgres', qq{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.shop_orders (id int PRIMARY KEY, tenant text NOT NULL, total int NOT NULL);
	CREATE INDEX ON public.shop_orders (tenant, id);
	BEGIN;
	SELECT para_sync.sync_table('public.shop_orders', name => 'orders');
	SELECT para_sync.set_scope('public.shop_orders', ARRAY['tenant']);
	COMMIT;
	INSERT INTO public.shop_orders
	SELECT i, CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'globex' END, i FROM generate_series(1, $rows) i;
});
}

# Generous: the tests poll until this many seconds pass, then fail.
sub deadline_secs { return 180; }

# A wait for work of $n changes (published, drained, read back): the
# deadline plus a second per 100 of them, so that a wait grows with the work
# a test gave, never with how fast the machine happens to be.
sub deadline_for
{
	my ($n) = @_;
	return deadline_secs() + int(($n // 0) / 100);
}

my $tools = "$ENV{TESTDIR}/test/tools";
sub sub_tool { return "$tools/psync_sub"; }

sub _port_open
{
	my ($port) = @_;
	my $s = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $port,
		Proto => 'tcp',
		Timeout => 1);
	return 0 unless $s;
	close $s;
	return 1;
}

# Poll $cond every 100 ms until it is true or the deadline passed.
sub wait_for
{
	my ($cond, $what, $secs) = @_;
	my $deadline = time + ($secs // deadline_secs());
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	diag("timed out waiting for $what");
	return 0;
}

# nats-server from PATH, else Debian's /usr/sbin (not in every user's PATH).
sub nats_server_bin
{
	for my $d (split(/:/, $ENV{PATH} // ''))
	{
		return "$d/nats-server" if $d ne '' && -x "$d/nats-server";
	}
	return '/usr/sbin/nats-server';
}

# start_nats(name => ..., port => ..., js => 1, max_payload => n,
#            token => ..., extra => "conf lines")
sub start_nats
{
	my (%o) = @_;
	my $name = $o{name} // 'nats';
	my $port = $o{port} // PostgreSQL::Test::Cluster::get_free_port();
	my $dir = "${PostgreSQL::Test::Utils::tmp_check}/$name";
	make_path($dir);
	my $conf = "listen: 127.0.0.1:$port\n";
	$conf .= "max_payload: $o{max_payload}\n" if $o{max_payload};
	$conf .= "authorization { token: \"$o{token}\" }\n" if $o{token};
	$conf .= "jetstream { store_dir: \"$dir/js\" }\n" if $o{js};
	$conf .= $o{extra} if $o{extra};
	PostgreSQL::Test::Utils::append_to_file("$dir/nats.conf.new", $conf);
	rename("$dir/nats.conf.new", "$dir/nats.conf");
	my $log = "$dir/nats.log";
	my $h = IPC::Run::start([ nats_server_bin(), '-c', "$dir/nats.conf" ],
		'>>', $log, '2>>', $log);
	_track($h);
	wait_for(sub { _port_open($port) }, "nats-server on port $port")
	  or BAIL_OUT("nats-server did not start, see $log");
	return { h => $h, port => $port, name => $name, %o };
}

# Every nats-server and subscriber a test started: whatever the test did not
# stop (it forgot, failed or bailed out) is killed when it exits, also one
# left frozen by SIGSTOP, so that no process outlives its test.
my @children;

sub _track
{
	push @children, $_[0];
}

END
{
	for my $h (@children)
	{
		next unless $h->pumpable;
		eval { $h->signal('CONT'); $h->signal('KILL'); $h->finish; };
	}
}

sub stop_nats
{
	my ($n) = @_;
	$n->{h}->signal('TERM');
	$n->{h}->finish;
	wait_for(sub { !_port_open($n->{port}) }, "nats-server to stop");
}

sub nats_url
{
	my ($n) = @_;
	return "nats://127.0.0.1:$n->{port}";
}

# Start the recorder; returns once its subscription is registered.
sub start_sub
{
	my ($n, $file, @args) = @_;
	my $ready = "$file.ready";
	unlink $ready;
	my $h = IPC::Run::start([ sub_tool(), '-u', nats_url($n), '-o', $file,
			'-r', $ready, @args ],
		'>>', "$file.out", '2>>', "$file.out");
	_track($h);
	wait_for(sub { -e $ready }, "subscriber ready")
	  or BAIL_OUT("psync_sub did not start");
	return $h;
}

sub stop_sub
{
	my ($h) = @_;
	$h->signal('TERM');
	$h->finish;
}

# Every recorded message: [key, seq, op, hex envelope], in arrival order.
sub read_sub
{
	my ($file) = @_;
	return [] unless -e $file;
	open my $fh, '<', $file or die "$file: $!";
	my @m;
	while (my $l = <$fh>)
	{
		next unless $l =~ /\n\z/;
		chomp $l;
		my @f = split / /, $l;
		push @m, [@f] if @f == 4;
	}
	close $fh;
	return \@m;
}

# key => [seq, op, hex] of the highest sequence received per key.
sub latest_by_key
{
	my ($msgs) = @_;
	my %l;
	for my $m (@$msgs)
	{
		$l{ $m->[0] } = [ $m->[1], $m->[2], $m->[3] ]
		  if !$l{ $m->[0] } || $l{ $m->[0] }[0] < $m->[1];
	}
	return \%l;
}

# Per key, after dropping duplicates, the sequences are exactly 1..max and
# arrive in order (a resend may repeat older ones, never skip ahead).
# Returns a list of problems (empty when fine).  With $from_first, a key may
# start at any sequence (a recorder that joined mid-stream).
sub check_contiguous
{
	my ($msgs, $from_first) = @_;
	my (%high, %env, @problems);
	for my $m (@$msgs)
	{
		my ($k, $s, undef, $hex) = @$m;
		my $h = $high{$k} // ($from_first ? $s - 1 : 0);
		if ($s > $h + 1)
		{
			push @problems, "$k: got $s after $h";
		}
		if (defined $env{"$k/$s"} && $env{"$k/$s"} ne $hex)
		{
			push @problems, "$k: two different envelopes for sequence $s";
		}
		$env{"$k/$s"} = $hex;
		$high{$k} = $s if $s > $h;
	}
	return @problems;
}

# A node with para_sync preloaded and publishing to $nats (may be undef).
# Every sequence cache hit is checked against the outbox and counters.
sub new_publisher_node
{
	my ($name, $nats, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $url = $nats ? nats_url($nats) : 'nats://127.0.0.1:1';
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'para_sync'
para_sync.database = 'postgres'
para_sync.nats_url = '$url'
para_sync.backoff_max = '1s'
para_sync.reconnect_wait = '200ms'
max_connections = 40
restart_after_crash = on
para_sync.sequence_cache_check = on
} . ($extra // ''));
	$node->start;
	return $node;
}

sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'para_sync publisher'});
}

# How often process $pid's main thread went to sleep so far (its voluntary
# context switches; Linux /proc): each wake-up of an idle worker is one.
sub worker_sleeps
{
	my ($pid) = @_;
	return (slurp_file("/proc/$pid/status") =~ /^voluntary_ctxt_switches:\s+(\d+)/m)[0];
}

# After a crash: wait until the server accepts queries and a publisher
# other than $old_pid runs (psql, not safe_psql: recovery may still start).
sub wait_new_worker
{
	my ($node, $old_pid, $what) = @_;
	return wait_for(sub {
		my ($r, $out) = $node->psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'para_sync publisher'});
		return $r == 0 && $out ne '' && $out ne ($old_pid // '');
	}, $what);
}

# pgbench in the background: start_pgbench($node, $script_text, @args)
sub start_pgbench
{
	my ($node, $script, @args) = @_;
	my $file = "${PostgreSQL::Test::Utils::tmp_check}/pgbench_" . int(rand(1e9)) . '.sql';
	PostgreSQL::Test::Utils::append_to_file($file, $script);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-h', $node->host, '-p', $node->port, '-f', $file, @args, 'postgres' ],
		'>', \$out, '2>', \$err);
	return { h => $h, out => \$out, err => \$err };
}

sub finish_pgbench
{
	my ($p) = @_;
	$p->{h}->finish;
	return ($p->{h}->result(0), ${ $p->{out} }, ${ $p->{err} });
}

# Waits until the outbox is empty and the recorder in $file holds one
# message for every (key, sequence) the database committed; the number of
# committed changes is stored in $$total_ref.  True when that happened.
# The wait grows with the outbox's rows when it starts.
sub wait_all_delivered
{
	my ($node, $file, $what, $total_ref) = @_;
	my $n = $node->safe_psql('postgres', 'SELECT count(*) FROM para_sync.outbox');
	return wait_for(
		sub {
			$$total_ref = $node->safe_psql('postgres', q{
				SELECT CASE WHEN (SELECT count(*) FROM para_sync.outbox) = 0
				            THEN (SELECT sum(seq) FROM para_sync.counters) END});
			return 0 if $$total_ref eq '';
			my %seen = map { ("$_->[0]/$_->[1]" => 1) } @{ read_sub($file) };
			return scalar(keys %seen) == $$total_ref;
		},
		$what, deadline_for($n));
}

# $n commits of $update (SQL changing synced rows, may use i, the commit's
# number), one at a time, each waiting until the outbox is empty again, so
# that most land while the worker reads or is about to sleep: with
# para_sync.poll_interval long, every one of them must wake the worker.
# Returns psql's (exit code, stderr); a commit not published within
# deadline_secs() fails the call.
sub commit_one_by_one
{
	my ($node, $n, $update) = @_;
	my $secs = deadline_secs();
	my ($ret, $out, $err) = $node->psql('postgres', qq{
	CREATE OR REPLACE PROCEDURE public.commit_one_by_one(n int) LANGUAGE plpgsql AS \$\$
	DECLARE
		t0 timestamptz;
	BEGIN
		FOR i IN 1 .. n LOOP
			$update;
			COMMIT;
			t0 := pg_catalog.clock_timestamp();
			WHILE EXISTS (SELECT FROM para_sync.outbox) LOOP
				IF pg_catalog.clock_timestamp() - t0 > interval '$secs s' THEN
					RAISE EXCEPTION 'commit % of % did not wake the publisher', i, n;
				END IF;
				PERFORM pg_catalog.pg_sleep(0.0002);
			END LOOP;
		END LOOP;
	END \$\$;
	CALL public.commit_one_by_one($n);
	DROP PROCEDURE public.commit_one_by_one(int);});
	return ($ret, $err);
}

# ---- libparasync clients (test/tools/psync_follow) ----

# start_follow($nats_url, $connstr, @args): psync_follow with replicas and
# collections (@args: -t/-S options, then KEY, TABLE:*, TABLE@SCOPE:*),
# once "ready"; undef (with its stderr in $$err_ref, when given) when it
# exits first (e.g. a subscription the NATS server refused).
sub start_follow
{
	my ($url, $connstr, $args, $err_ref) = @_;
	my $f = { in => '', out => '', err => '' };
	$f->{h} = IPC::Run::start(
		[ "$ENV{TESTDIR}/test/tools/psync_follow", '-u', $url, '-d', $connstr, @$args ],
		'<', \$f->{in}, '>', \$f->{out}, '2>', \$f->{err});
	_track($f->{h});
	wait_for(sub { $f->{h}->pump_nb if $f->{h}->pumpable; $f->{out} =~ /^ready$/m || !$f->{h}->pumpable },
		'psync_follow ready');
	if ($f->{out} !~ /^ready$/m)
	{
		$f->{h}->finish;
		$$err_ref = $f->{err} if $err_ref;
		return undef;
	}
	return $f;
}

# What a psync_follow holds: [kind (R|C), key, sequence, status, hex envelope].
sub follow_dump
{
	my ($f) = @_;
	$f->{out} = '';
	$f->{in} .= "dump\n";
	wait_for(sub { $f->{h}->pump_nb; $f->{out} =~ /^end$/m }, 'dump', 60) or return undef;
	return [ map { [ split / / ] } grep { /^[RC] / } split /\n/, $f->{out} ];
}

# Quit psync_follow (disposing of everything); its exit status.
sub stop_follow
{
	my ($f) = @_;
	$f->{in} .= "quit\n";
	$f->{h}->finish;
	return $f->{h}->result(0);
}

# How a psync_follow's holdings differ from the database ('' when equal):
# every replica and collection member must equal para_sync.snapshot() of
# its key (value and sequence), and the collection must hold exactly the
# keys that $members (SQL returning the expected keys) lists.
sub follow_differences
{
	my ($node, $f, $members) = @_;
	my $rows = follow_dump($f);
	return 'no dump' unless $rows;
	my $values = join(',', map { "('$_->[0]', '$_->[1]', '$_->[4]')" } @$rows)
	  || "(NULL, NULL, NULL)";
	return $node->safe_psql('postgres', qq{
		WITH held (kind, key, env) AS (VALUES $values),
		cmp AS (
			SELECT kind, key, para_sync.envelope_to_jsonb(decode(env, 'hex')) AS c,
			       para_sync.snapshot_json(key) AS s
			  FROM held WHERE kind IS NOT NULL)
		SELECT string_agg(d, E'\\n' ORDER BY d) FROM (
			SELECT kind || ' ' || key || ' holds ' || (c - 'op')::text
			       || ' snapshot ' || (s - 'op' - 'scope')::text AS d
			  FROM cmp
			 WHERE c->'value' IS DISTINCT FROM s->'value'
			    OR c->'sequence' IS DISTINCT FROM s->'sequence'
			UNION ALL
			SELECT 'C ' || key || ' missing' FROM (
				$members EXCEPT SELECT key FROM held WHERE kind = 'C') m(key)
			UNION ALL
			SELECT 'C ' || key || ' extra' FROM (
				SELECT key FROM held WHERE kind = 'C' EXCEPT $members) e(key)) x});
}

1;
