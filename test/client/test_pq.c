/*
 * test_pq.c — refetch over libpq against a real PostgreSQL with para_sync
 * (PSYNC_TEST_CONNINFO): psync_pq_fetch_snapshot, the conninfo and pool
 * refetchers, refetch off the calling thread, failures → stale.  The
 * publishing worker is not needed: envelopes are published in-process.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"
#include "pg.h"

static PGconn *conn;
static char table[64];
static char key[96];
static pthread_t main_thread;

static bool
setup_table(void)
{
	char		sql[1024];

	snprintf(table, sizeof(table), "%s", pg_table_name("pqt"));
	snprintf(key, sizeof(key), "%s:1", table);
	snprintf(sql, sizeof(sql),
			 "CREATE TABLE public.%s (id int PRIMARY KEY, name text, n int);"
			 "SELECT para_sync.sync_table('public.%s');"
			 "INSERT INTO public.%s VALUES (1, 'ada', 0);"
			 "UPDATE public.%s SET name = 'grace', n = 1 WHERE id = 1;"
			 "UPDATE public.%s SET name = 'hopper', n = 2 WHERE id = 1;",
			 table, table, table, table, table);
	return pg_exec(conn, "CREATE EXTENSION IF NOT EXISTS para_sync") != NULL &&
		pg_exec(conn, sql) != NULL;
}

static void
fetch_snapshot_of_a_row(void)
{
	void	   *bytes;
	size_t		len;
	psync_envelope env;
	char		name[32];

	CHECK_EQ_INT(psync_pq_fetch_snapshot(conn, key, &bytes, &len), PSYNC_OK);
	CHECK_EQ_INT(psync_envelope_decode(bytes, len, &env), PSYNC_DECODE_OK);
	CHECK_EQ_INT(env.sequence, 3);
	CHECK_EQ_INT(env.op, PSYNC_OP_SNAPSHOT);
	CHECK(!env.has_txid);
	CHECK(env.key_len == strlen(key) && memcmp(env.key, key, env.key_len) == 0);
	test_value_name(env.value, env.value_len, name, sizeof(name));
	CHECK(strcmp(name, "hopper") == 0);
	free(bytes);
}

static void
snapshot_of_a_missing_row(void)
{
	void	   *bytes;
	size_t		len;
	psync_envelope env;
	char		missing[128];

	snprintf(missing, sizeof(missing), "%s:999", table);
	CHECK_EQ_INT(psync_pq_fetch_snapshot(conn, missing, &bytes, &len), PSYNC_OK);
	CHECK_EQ_INT(psync_envelope_decode(bytes, len, &env), PSYNC_DECODE_OK);
	CHECK_EQ_INT(env.sequence, 0);
	CHECK(env.has_value && env.value_len == 1 && env.value[0] == 0xc0);
	free(bytes);
	/* a key of no synced table is no error: nil at its last sequence (0) */
	CHECK_EQ_INT(psync_pq_fetch_snapshot(conn, "no_such_table_xyz:1", &bytes, &len), PSYNC_OK);
	CHECK_EQ_INT(psync_envelope_decode(bytes, len, &env), PSYNC_DECODE_OK);
	CHECK_EQ_INT(env.sequence, 0);
	CHECK(env.has_value && env.value_len == 1 && env.value[0] == 0xc0);
	free(bytes);
	/* a key the table's key type cannot read is an error from the server */
	snprintf(missing, sizeof(missing), "%s:not-a-number", table);
	CHECK_EQ_INT(psync_pq_fetch_snapshot(conn, missing, &bytes, &len), PSYNC_ERR_DATABASE);
	CHECK(bytes == NULL);
}

/* ---- replicas with the libpq refetcher ---- */

typedef struct observed
{
	atomic_int	parses_off_main;
	atomic_int	parses;
	char		name[32];
} observed;

static bool
observe_parse(void *ctx, const uint8_t *mp, size_t len, const psync_envelope *env,
			  void *recycled, void **out, const char **error)
{
	observed   *o = ctx;

	(void) env;
	(void) error;
	atomic_fetch_add(&o->parses, 1);
	if (!pthread_equal(pthread_self(), main_thread))
		atomic_fetch_add(&o->parses_off_main, 1);
	test_value_name(mp, len, o->name, sizeof(o->name));
	*out = recycled ? recycled : malloc(1);
	return true;
}

static psync_replica *
replica_with(psync_transport *t, psync_refetcher *rf, observed *o)
{
	psync_replica_options opts;
	psync_replica *r = NULL;

	psync_replica_options_init(&opts);
	opts.key = key;
	opts.schema = (psync_schema) {observe_parse, test_free_value, o};
	opts.transport = t;
	opts.refetch = psync_pq_refetch_fn();
	opts.refetch_ctx = psync_pq_refetch_ctx(rf);
	opts.initial_refetch = true;
	CHECK_EQ_INT(psync_replica_new(&opts, &r), PSYNC_OK);
	return r;
}

static void
conninfo_refetcher_hydrates_off_the_calling_thread(void)
{
	psync_transport *t;
	psync_refetcher *rf;
	psync_replica *r;
	observed	o = {0};
	psync_replica_metadata m;

	psync_inprocess_transport_new(&t);
	CHECK_EQ_INT(psync_pq_refetcher_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &rf), PSYNC_OK);
	r = replica_with(t, rf, &o);
	CHECK_EQ_INT(psync_replica_wait_idle(r, 30000), PSYNC_OK);
	psync_replica_meta(r, &m);
	CHECK_EQ_INT(m.sequence, 3);
	CHECK_EQ_INT(m.status, PSYNC_REPLICA_OK);
	CHECK(strcmp(o.name, "hopper") == 0);
	CHECK_EQ_INT(atomic_load(&o.parses_off_main), 1);

	/* a gap on the bus: refetched from the database */
	{
		char		sql[256];
		psync_envelope env = test_envelope(key, 9, "gapped");

		snprintf(sql, sizeof(sql), "UPDATE public.%s SET name = 'lovelace' WHERE id = 1", table);
		pg_exec(conn, sql);
		psync_transport_publish(t, &env);
		CHECK_EQ_INT(psync_replica_wait_idle(r, 30000), PSYNC_OK);
		psync_replica_meta(r, &m);
		CHECK_EQ_INT(m.sequence, 4);
		CHECK(strcmp(o.name, "lovelace") == 0);
	}
	psync_replica_destroy(r);
	psync_refetcher_destroy(rf);
	psync_transport_destroy(t);
}

typedef struct pool
{
	PGconn	   *conn;
	atomic_int	acquired;
	atomic_int	released;
} pool;

static PGconn *
pool_acquire(void *ctx)
{
	pool	   *p = ctx;

	atomic_fetch_add(&p->acquired, 1);
	return p->conn;
}

static void
pool_release(void *ctx, PGconn *c, bool broken)
{
	pool	   *p = ctx;

	(void) c;
	(void) broken;
	atomic_fetch_add(&p->released, 1);
}

static void
pool_refetcher_uses_the_applications_connection(void)
{
	psync_transport *t;
	psync_refetcher *rf;
	psync_replica *r;
	observed	o = {0};
	pool		p = {0};
	psync_replica_metadata m;

	p.conn = pg_connect();
	psync_inprocess_transport_new(&t);
	CHECK_EQ_INT(psync_pq_refetcher_new_pool(pool_acquire, pool_release, &p, &rf), PSYNC_OK);
	r = replica_with(t, rf, &o);
	CHECK_EQ_INT(psync_replica_wait_idle(r, 30000), PSYNC_OK);
	psync_replica_meta(r, &m);
	CHECK_EQ_INT(m.status, PSYNC_REPLICA_OK);
	CHECK(m.sequence >= 3);
	CHECK_EQ_INT(atomic_load(&p.acquired), 1);
	CHECK_EQ_INT(atomic_load(&p.released), 1);
	psync_replica_destroy(r);
	psync_refetcher_destroy(rf);
	psync_transport_destroy(t);
	PQfinish(p.conn);
}

static void
unreachable_database_goes_stale(void)
{
	psync_transport *t;
	psync_refetcher *rf;
	psync_replica *r;
	observed	o = {0};
	psync_replica_metadata m;

	psync_inprocess_transport_new(&t);
	CHECK_EQ_INT(psync_pq_refetcher_new_conninfo("host=127.0.0.1 port=1 connect_timeout=2", &rf), PSYNC_OK);
	r = replica_with(t, rf, &o);
	CHECK_EQ_INT(psync_replica_wait_idle(r, 30000), PSYNC_OK);
	psync_replica_meta(r, &m);
	CHECK_EQ_INT(m.status, PSYNC_REPLICA_STALE);
	CHECK_EQ_INT(atomic_load(&o.parses), 0);
	psync_replica_destroy(r);
	psync_refetcher_destroy(rf);
	psync_transport_destroy(t);
}

/* Why it is stale: libpq's connection error, on the replica and refetcher. */
static void
unreachable_database_error_text(void)
{
	psync_transport *t;
	psync_refetcher *rf;
	psync_replica *r;
	observed	o = {0};
	char		buf[512];
	char		rbuf[512];

	psync_inprocess_transport_new(&t);
	CHECK_EQ_INT(psync_pq_refetcher_new_conninfo("host=127.0.0.1 port=1 connect_timeout=2", &rf), PSYNC_OK);
	CHECK_EQ_INT(psync_refetcher_last_error(rf, buf, sizeof(buf)), 0);
	r = replica_with(t, rf, &o);
	CHECK_EQ_INT(psync_replica_wait_idle(r, 30000), PSYNC_OK);
	CHECK(psync_replica_last_error(r, buf, sizeof(buf)) > 0);
	fprintf(stderr, "  # replica: %s\n", buf);
	CHECK(strncmp(buf, "refetch failed: could not connect to the database: ", 51) == 0);
	CHECK(strstr(buf, "127.0.0.1") != NULL || strstr(buf, "refused") != NULL);
	CHECK(psync_refetcher_last_error(rf, rbuf, sizeof(rbuf)) > 0);
	CHECK(strstr(buf, rbuf) != NULL);
	psync_replica_destroy(r);
	psync_refetcher_destroy(rf);
	psync_transport_destroy(t);
}

/* A server-side error (no such sync name) reaches the replica as text. */
static void
server_error_text_reaches_the_replica(void)
{
	psync_transport *t;
	psync_refetcher *rf;
	psync_replica *r;
	psync_replica_options opts;
	char		buf[512];
	psync_replica_metadata m;
	char		bad_key[128];

	psync_inprocess_transport_new(&t);
	CHECK_EQ_INT(psync_pq_refetcher_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &rf), PSYNC_OK);
	psync_replica_options_init(&opts);
	snprintf(bad_key, sizeof(bad_key), "%s:not-a-number", table);
	opts.key = bad_key;
	psync_schema_raw(&opts.schema);
	opts.transport = t;
	opts.refetch = psync_pq_refetch_fn();
	opts.refetch_ctx = psync_pq_refetch_ctx(rf);
	opts.initial_refetch = true;
	CHECK_EQ_INT(psync_replica_new(&opts, &r), PSYNC_OK);
	CHECK_EQ_INT(psync_replica_wait_idle(r, 30000), PSYNC_OK);
	psync_replica_meta(r, &m);
	CHECK_EQ_INT(m.status, PSYNC_REPLICA_STALE);
	psync_replica_last_error(r, buf, sizeof(buf));
	fprintf(stderr, "  # replica: %s\n", buf);
	CHECK(strstr(buf, "invalid input syntax for type integer: \"not-a-number\"") != NULL);
	CHECK(buf[strlen(buf) - 1] != '\n');
	psync_refetcher_last_error(rf, buf, sizeof(buf));
	CHECK(strstr(buf, "not-a-number") != NULL);
	psync_replica_destroy(r);
	psync_refetcher_destroy(rf);
	psync_transport_destroy(t);
}

/*
 * Replicas disposed while their refetches are still queued: destroying the
 * refetcher fails those requests, which land in the void (ASan/LSan check
 * that nothing is touched after free and nothing leaks).
 */
static void
destroy_fails_queued_requests(void)
{
	psync_transport *t;
	psync_refetcher *rf;
	psync_replica *r[20];
	observed	o = {0};

	psync_inprocess_transport_new(&t);
	CHECK_EQ_INT(psync_pq_refetcher_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &rf), PSYNC_OK);
	for (int i = 0; i < 20; i++)
		r[i] = replica_with(t, rf, &o);
	for (int i = 0; i < 20; i++)
		psync_replica_destroy(r[i]);
	psync_refetcher_destroy(rf);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_destroy(t);
}

int
main(void)
{
	main_thread = pthread_self();
	if (getenv("PSYNC_TEST_CONNINFO") == NULL)
	{
		printf("skip - PSYNC_TEST_CONNINFO not set (run through make client-check)\n");
		return 0;
	}
	conn = pg_connect();
	if (conn == NULL || !setup_table())
	{
		printf("not ok - para_sync database not usable\n");
		return 1;
	}
	RUN(fetch_snapshot_of_a_row);
	RUN(snapshot_of_a_missing_row);
	RUN(conninfo_refetcher_hydrates_off_the_calling_thread);
	RUN(pool_refetcher_uses_the_applications_connection);
	RUN(unreachable_database_goes_stale);
	RUN(unreachable_database_error_text);
	RUN(server_error_text_reaches_the_replica);
	RUN(destroy_fails_queued_requests);
	PQfinish(conn);
	return harness_finish();
}
