/*
 * test_collection_live.c — a collection of a 20k-row table on PostgreSQL +
 * para_sync + its publisher + nats-server, loaded while another connection
 * updates, deletes and inserts rows as fast as it can.  When the writer has
 * stopped and everything is published, every row of the table must be a
 * member with the same value bytes and sequence as snapshot_table() gives,
 * and nothing else may be a member.  Then a LOST (resync) must keep it so.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"
#include "live.h"
#include "pg.h"

#define ROWS 20000

static PGconn *conn;
static char table[64];
static atomic_bool stop_writer;
static atomic_long writes;

static void *
writer_main(void *arg)
{
	PGconn	   *w = pg_connect();
	unsigned	seed = 12345;

	(void) arg;
	if (w == NULL)
		return NULL;
	pg_exec(w, "SET synchronous_commit = off");
	while (!atomic_load(&stop_writer))
	{
		char		sql[2048];
		size_t		n = 0;

		n += snprintf(sql + n, sizeof(sql) - n, "BEGIN;");
		for (int i = 0; i < 8; i++)
		{
			int			id = 1 + (int) (rand_r(&seed) % (ROWS + ROWS / 4));
			int			op = (int) (rand_r(&seed) % 10);

			if (op < 6)
				n += snprintf(sql + n, sizeof(sql) - n,
							  "UPDATE public.%s SET n = n + 1, name = 'u' || (n + 1) WHERE id = %d;",
							  table, id);
			else if (op < 8)
				n += snprintf(sql + n, sizeof(sql) - n,
							  "DELETE FROM public.%s WHERE id = %d;", table, id);
			else
				n += snprintf(sql + n, sizeof(sql) - n,
							  "INSERT INTO public.%s VALUES (%d, 'ins', 0) ON CONFLICT (id) DO NOTHING;",
							  table, id);
		}
		snprintf(sql + n, sizeof(sql) - n, "COMMIT;");
		if (pg_exec(w, sql) != NULL)
			atomic_fetch_add(&writes, 8);
	}
	PQfinish(w);
	return NULL;
}

/* Members vs snapshot_table(): mismatches (0: equal). */
typedef struct compare
{
	const psync_envelope *want;
	bool		same;
} compare;

static void
compare_member(void *ctx, const char *key, size_t key_len, const void *value, int64_t seq)
{
	compare    *c = ctx;
	const psync_raw_value *v = value;

	(void) key;
	(void) key_len;
	c->same = (uint64_t) seq == c->want->sequence && v->len == c->want->value_len &&
		memcmp(v->data, c->want->value, v->len) == 0;
}

static long
mismatches(psync_collection *col, bool verbose)
{
	char		sql[256];
	const char *params[1] = {NULL};
	PGresult   *res;
	long		bad = 0;
	int			n;

	snprintf(sql, sizeof(sql),
			 "SELECT envelope FROM para_sync.snapshot_table('public.%s', NULL, 1000000)", table);
	res = PQexecParams(conn, sql, 0, NULL, params, NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "  %s", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	n = PQntuples(res);
	for (int i = 0; i < n; i++)
	{
		psync_envelope env;
		compare		c = {&env, false};
		char		key[128];

		if (psync_envelope_decode(PQgetvalue(res, i, 0), (size_t) PQgetlength(res, i, 0), &env) != PSYNC_DECODE_OK)
		{
			bad++;
			continue;
		}
		snprintf(key, sizeof(key), "%.*s", (int) env.key_len, env.key);
		if (!psync_collection_get(col, key, compare_member, &c))
		{
			if (verbose && bad < 5)
				fprintf(stderr, "  missing %s seq=%llu\n", key, (unsigned long long) env.sequence);
			bad++;
		}
		else if (!c.same)
		{
			if (verbose && bad < 5)
				fprintf(stderr, "  differs %s (db seq=%llu)\n", key, (unsigned long long) env.sequence);
			bad++;
		}
	}
	if ((size_t) n != psync_collection_count(col))
	{
		if (verbose)
			fprintf(stderr, "  %zu members, %d rows\n", psync_collection_count(col), n);
		bad += labs((long) psync_collection_count(col) - n);
	}
	PQclear(res);
	return bad;
}

static bool
outbox_empty(void)
{
	const char *r = pg_exec(conn, "SELECT count(*) = 0 FROM para_sync.outbox");

	return r != NULL && strcmp(r, "t") == 0;
}

static void
collection_loads_under_concurrent_writes(void)
{
	char		sql[512];
	psync_nats_options no;
	psync_transport *t = NULL;
	psync_refetcher *rf = NULL;
	psync_pq_loader *loader = NULL;
	psync_collection *col = NULL;
	psync_collection_options co;
	psync_collection_counters st;
	pthread_t	writer;
	long		bad;
	double		t0;

	snprintf(table, sizeof(table), "%s", pg_table_name("coll"));
	snprintf(sql, sizeof(sql),
			 "CREATE TABLE public.%s (id int PRIMARY KEY, name text, n int);"
			 "INSERT INTO public.%s SELECT g, 'row ' || g, 0 FROM generate_series(1, %d) g;"
			 "SELECT para_sync.sync_table('public.%s');", table, table, ROWS, table);
	CHECK(pg_exec(conn, sql) != NULL);

	psync_nats_options_init(&no);
	no.url = getenv("PSYNC_TEST_NATS_URL");
	CHECK_EQ_INT(psync_nats_transport_connect(&no, &t), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_refetcher_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &rf), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_loader_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &loader), PSYNC_OK);
	if (t == NULL || rf == NULL || loader == NULL)
		return;

	/* writes run before, during and after the load */
	pthread_create(&writer, NULL, writer_main, NULL);
	CHECK(LIVE_WAIT_FOR(atomic_load(&writes) > 200, 30));

	psync_collection_options_init(&co);
	co.table = table;
	psync_schema_raw(&co.schema);
	co.transport = t;
	co.load_page = psync_pq_load_page_fn();
	co.load_ctx = psync_pq_load_page_ctx(loader);
	co.refetch = psync_pq_refetch_fn();
	co.refetch_ctx = psync_pq_refetch_ctx(rf);
	co.page_size = 500;			/* 40 pages: a long window for races */
	t0 = live_now();
	CHECK_EQ_INT(psync_collection_new(&co, &col), PSYNC_OK);
	if (col == NULL)
	{
		char		buf[512];

		psync_last_error(buf, sizeof(buf));
		fprintf(stderr, "  %s\n", buf);
		atomic_store(&stop_writer, true);
		pthread_join(writer, NULL);
		return;
	}
	fprintf(stderr, "  # loaded %zu rows in %.2f s while writing (%ld writes so far)\n",
			psync_collection_count(col), live_now() - t0, atomic_load(&writes));
	/* and 200 more writes after it */
	{
		long		loaded_at = atomic_load(&writes);

		CHECK(LIVE_WAIT_FOR(atomic_load(&writes) >= loaded_at + 200, 30));
	}
	atomic_store(&stop_writer, true);
	pthread_join(writer, NULL);

	/* everything committed is published, then delivered and applied */
	CHECK(LIVE_WAIT_FOR(outbox_empty(), 60));
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(psync_collection_wait_idle(col, 0) == PSYNC_OK && mismatches(col, false) == 0, 30));
	bad = mismatches(col, true);
	CHECK_EQ_INT(bad, 0);
	psync_collection_stats(col, &st);
	fprintf(stderr, "  # %ld writes; members %zu; applied %llu, stale %llu, gaps %llu, row refetches %llu, loads %llu\n",
			atomic_load(&writes), psync_collection_count(col),
			(unsigned long long) st.applied, (unsigned long long) st.ignored_stale,
			(unsigned long long) st.gaps, (unsigned long long) st.row_refetches,
			(unsigned long long) st.loads);
	CHECK(st.applied > 0);

	/* a resync (as after PSYNC_EVENT_LOST) keeps it equal */
	snprintf(sql, sizeof(sql),
			 "DELETE FROM public.%s WHERE id %% 97 = 0; UPDATE public.%s SET n = n + 1 WHERE id %% 89 = 0",
			 table, table);
	pg_exec(conn, sql);
	psync_collection_resync(col);
	CHECK(LIVE_WAIT_FOR(outbox_empty(), 60));
	CHECK(LIVE_WAIT_FOR(psync_collection_wait_idle(col, 0) == PSYNC_OK && mismatches(col, false) == 0, 30));
	CHECK_EQ_INT(mismatches(col, true), 0);

	CHECK_EQ_INT(psync_collection_destroy(col), PSYNC_OK);
	psync_pq_loader_destroy(loader);
	psync_refetcher_destroy(rf);
	psync_transport_destroy(t);
}

int
main(void)
{
	int			exit_code;

	conn = pg_live_connect(&exit_code);
	if (conn == NULL)
		return exit_code;
	if (!pg_live_require(conn, "para_sync.snapshot_table(regclass,text,integer)"))
		return 1;
	RUN(collection_loads_under_concurrent_writes);
	PQfinish(conn);
	return harness_finish();
}
