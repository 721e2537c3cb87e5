# bench/drain_lib.sh — shared by bench/drain, bench/latency and
# bench/publisher_load: a throwaway
# PostgreSQL (scripts/pg-cluster) with para_sync preloaded, a nats-server and
# the psync_sub recorder, all on free loopback ports, cleaned up on exit.
# BENCH_CONF="name = value" adds one line to the cluster's configuration
# (e.g. BENCH_CONF="para_sync.batch_delay = 2000").  Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUB="$ROOT/test/tools/psync_sub"

# calc EXPR: floating-point arithmetic without bc
calc() { awk "BEGIN { printf \"%.2f\", $* }"; }

free_port() {
	perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'
}

wait_port() {
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on port $1" >&2
	return 1
}

# "<pid> <ticks>": the publisher worker and the CPU time (user + system, in
# clock ticks) it used so far
worker_ticks() {
	local pid
	pid=$("${PSQL[@]}" -c "SELECT pid FROM para_sync.status")
	echo "$pid $(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
}

bench_setup() {
	WORK=$(mktemp -d /tmp/psync-bench.XXXXXX)
	chmod 755 "$WORK"
	PGPORT_B=$(free_port)
	NATS_PORT=$(free_port)
	NATS_URL="nats://127.0.0.1:$NATS_PORT"
	NATS_PID=""
	trap bench_cleanup EXIT INT TERM
	make -s -C "$ROOT" >/dev/null
	make -s -C "$ROOT" install >/dev/null
	make -s -C "$ROOT" test/tools/psync_sub >/dev/null
	# the worker points at a closed port until publish_now
	"$ROOT/scripts/pg-cluster" start "$WORK/pg" "$PGPORT_B" \
		"para_sync.nats_url = 'nats://127.0.0.1:$(free_port)'" \
		"para_sync.backoff_max = '200ms'" \
		"para_sync.reconnect_wait = '100ms'" \
		"shared_buffers = '256MB'" \
		"max_wal_size = '4GB'" \
		"checkpoint_timeout = '30min'" \
		"max_connections = 50" \
		"$@" ${BENCH_CONF:+"$BENCH_CONF"}
	PSQL=(psql -h "$WORK/pg" -p "$PGPORT_B" -U postgres -X -q -At -v ON_ERROR_STOP=1 postgres)
}

start_nats() {
	local args=(-a 127.0.0.1 -p "$NATS_PORT")
	[ "${1:-}" = js ] && args+=(-js -sd "$WORK/js")
	nats-server "${args[@]}" >"$WORK/nats.log" 2>&1 &
	NATS_PID=$!
	wait_port "$NATS_PORT"
}

# point the worker at the running nats-server
publish_now() {
	"${PSQL[@]}" -c "ALTER SYSTEM SET para_sync.nats_url = '$NATS_URL'" -c "SELECT pg_catalog.pg_reload_conf()" >/dev/null
}

# wait_drained [INTERVAL]: wait until the outbox is empty, looking every
# INTERVAL seconds (0.1); fails after 15 minutes
wait_drained() {
	local until=$((SECONDS + 900))
	while [ "$("${PSQL[@]}" -c "SELECT NOT EXISTS (SELECT FROM para_sync.outbox)")" != t ]; do
		if [ "$SECONDS" -gt "$until" ]; then
			echo "the publisher did not drain the outbox" >&2
			return 1
		fi
		sleep "${1:-0.1}"
	done
}

bench_cleanup() {
	[ -n "${SUB_PID:-}" ] && kill "$SUB_PID" 2>/dev/null
	[ -n "${NATS_PID:-}" ] && kill "$NATS_PID" 2>/dev/null
	"$ROOT/scripts/pg-cluster" stop "$WORK/pg" 2>/dev/null
	wait 2>/dev/null
	[ -n "${KEEP:-}" ] || rm -rf "$WORK"
}

# the benchmark table: a synced row per key, with the writer's clock in ts
create_bench_table() {
	{ "${PSQL[@]}" <<'SQL'
CREATE EXTENSION para_sync;
CREATE TABLE public.bench (id int PRIMARY KEY, v int NOT NULL, ts timestamptz NOT NULL,
                           note text NOT NULL);
SELECT para_sync.sync_table('public.bench');
SQL
} >/dev/null
}
