/*
 * test_layout_live.c — the 'table' subject layout end to end: PostgreSQL +
 * para_sync + its publisher + nats-server.  Two tables change side by side,
 * one in the 'table' layout, one in the default 'key' layout.  A
 * collection and a table subscription of the 'table'-layout table, on a
 * transport told about the layout, receive exactly that table's envelopes
 * (and the collection equals the table); a plain NATS subscriber of
 * "<prefix>.<table>.>" — the server-side filter they use — gets nothing
 * else; the default-layout table's per-key subscriber works as before.
 * A collection on a transport in the other layout is refused or reports
 * state "error" (also after a switch at run time).
 */
#include <pthread.h>
#include <stdatomic.h>

#include <nats/nats.h>

#include "harness.h"
#include "live.h"
#include "pg.h"

static PGconn *conn;
static char tbl_t[64];			/* 'table' layout */
static char tbl_k[64];			/* 'key' layout */

typedef struct counter
{
	const char *table;
	atomic_long mine;
	atomic_long other;
} counter;

static bool
key_of_table(const char *key, size_t len, const char *table)
{
	size_t		tlen = strlen(table);

	return len > tlen && memcmp(key, table, tlen) == 0 && key[tlen] == ':';
}

static void
count_handler(void *ctx, const psync_event *ev)
{
	counter    *c = ctx;

	if (ev->kind != PSYNC_EVENT_ENVELOPE)
		return;
	if (key_of_table(ev->key, ev->key_len, c->table))
		atomic_fetch_add(&c->mine, 1);
	else
		atomic_fetch_add(&c->other, 1);
}

static void
count_raw(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	counter    *c = closure;
	psync_envelope env;

	(void) nc;
	(void) sub;
	if (psync_envelope_decode(natsMsg_GetData(msg), (size_t) natsMsg_GetDataLength(msg), &env) ==
		PSYNC_DECODE_OK && key_of_table(env.key, env.key_len, c->table))
		atomic_fetch_add(&c->mine, 1);
	else
		atomic_fetch_add(&c->other, 1);
	natsMsg_Destroy(msg);
}

static void
member_seq(void *ctx, const char *key, size_t key_len, const void *value, int64_t seq)
{
	(void) key;
	(void) key_len;
	(void) value;
	*(int64_t *) ctx = seq;
}

static long
changes_of(const char *table)
{
	char		sql[256];
	const char *r;

	snprintf(sql, sizeof(sql),
			 "SELECT coalesce(sum(seq), 0) FROM para_sync.counters WHERE key LIKE '%s:%%'", table);
	r = pg_exec(conn, sql);
	return r ? atol(r) : -1;
}

static bool
outbox_empty(void)
{
	const char *r = pg_exec(conn, "SELECT count(*) = 0 FROM para_sync.outbox");

	return r != NULL && strcmp(r, "t") == 0;
}

/* Every row's sequence in the collection equals the database's. */
static long
mismatches(psync_collection *col)
{
	char		sql[512];
	PGresult   *res;
	long		bad = 0;

	snprintf(sql, sizeof(sql),
			 "SELECT '%s:' || id, coalesce((SELECT seq FROM para_sync.counters c"
			 " WHERE c.key = '%s:' || id), 0) FROM public.%s",
			 tbl_t, tbl_t, tbl_t);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		PQclear(res);
		return -1;
	}
	for (int i = 0; i < PQntuples(res); i++)
	{
		int64_t		seq = -1;

		if (!psync_collection_get(col, PQgetvalue(res, i, 0), member_seq, &seq) ||
			seq != atoll(PQgetvalue(res, i, 1)))
			bad++;
	}
	bad += labs((long) psync_collection_count(col) - PQntuples(res));
	PQclear(res);
	return bad;
}

static void
table_layout_is_filtered_by_the_server(void)
{
	char		sql[1024];
	char		subject[128];
	const char *layout[2];
	psync_nats_options no;
	psync_transport *t = NULL;
	psync_refetcher *rf = NULL;
	psync_pq_loader *loader = NULL;
	psync_collection *col = NULL;
	psync_collection_options co;
	psync_subscription_id pattern_id,
				key_id;
	natsConnection *raw = NULL;
	natsSubscription *raw_sub = NULL;
	counter		pattern = {.table = tbl_t},
				per_key = {.table = tbl_k},
				server = {.table = tbl_t};
	long		n_t,
				n_k;

	snprintf(tbl_t, sizeof(tbl_t), "%s", pg_table_name("lay_t"));
	snprintf(tbl_k, sizeof(tbl_k), "%s", pg_table_name("lay_k"));
	snprintf(sql, sizeof(sql),
			 "CREATE TABLE public.%s (id int PRIMARY KEY, n int);"
			 "CREATE TABLE public.%s (id int PRIMARY KEY, n int);"
			 "INSERT INTO public.%s SELECT g, 0 FROM generate_series(1, 100) g;"
			 "SELECT para_sync.sync_table('public.%s');"
			 "SELECT para_sync.set_subject_layout('public.%s', 'table');"
			 "SELECT para_sync.sync_table('public.%s');",
			 tbl_t, tbl_k, tbl_t, tbl_t, tbl_t, tbl_k);
	CHECK(pg_exec(conn, sql) != NULL);

	layout[0] = tbl_t;
	layout[1] = NULL;
	psync_nats_options_init(&no);
	no.url = getenv("PSYNC_TEST_NATS_URL");
	no.table_layout = layout;
	CHECK_EQ_INT(psync_nats_transport_connect(&no, &t), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_refetcher_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &rf), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_loader_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &loader), PSYNC_OK);
	CHECK_EQ_INT(natsConnection_ConnectTo(&raw, getenv("PSYNC_TEST_NATS_URL")), NATS_OK);
	if (t == NULL || rf == NULL || loader == NULL || raw == NULL)
		return;

	/* the server-side filter the transport uses for the table */
	snprintf(subject, sizeof(subject), "synced.%s.>", tbl_t);
	CHECK_EQ_INT(natsConnection_Subscribe(&raw_sub, raw, subject, count_raw, &server), NATS_OK);
	natsConnection_Flush(raw);

	snprintf(sql, sizeof(sql), "%s:*", tbl_t);
	CHECK_EQ_INT(psync_transport_subscribe(t, sql, count_handler, &pattern, &pattern_id), PSYNC_OK);
	snprintf(sql, sizeof(sql), "%s:1", tbl_k);
	CHECK_EQ_INT(psync_transport_subscribe(t, sql, count_handler, &per_key, &key_id), PSYNC_OK);

	psync_collection_options_init(&co);
	co.table = tbl_t;
	psync_schema_raw(&co.schema);
	co.transport = t;
	co.load_page = psync_pq_load_page_fn();
	co.load_ctx = psync_pq_load_page_ctx(loader);
	co.refetch = psync_pq_refetch_fn();
	co.refetch_ctx = psync_pq_refetch_ctx(rf);
	CHECK_EQ_INT(psync_collection_new(&co, &col), PSYNC_OK);
	if (col == NULL)
		return;
	CHECK_EQ_INT(psync_collection_count(col), 100);

	/* both tables change side by side */
	snprintf(sql, sizeof(sql),
			 "INSERT INTO public.%s SELECT g, 0 FROM generate_series(1, 50) g;"
			 "UPDATE public.%s SET n = n + 1 WHERE id %% 3 = 0;"
			 "UPDATE public.%s SET n = n + 1;"
			 "DELETE FROM public.%s WHERE id %% 10 = 0;"
			 "INSERT INTO public.%s VALUES (1000, 1);"
			 "UPDATE public.%s SET n = n + 2 WHERE id <= 5;",
			 tbl_k, tbl_t, tbl_k, tbl_t, tbl_t, tbl_k);
	CHECK(pg_exec(conn, sql) != NULL);
	CHECK(LIVE_WAIT_FOR(outbox_empty(), 60));
	n_t = changes_of(tbl_t);
	n_k = changes_of(tbl_k);
	fprintf(stderr, "  # %ld changes of %s ('table'), %ld of %s ('key')\n", n_t, tbl_t, n_k, tbl_k);
	psync_transport_flush(t, 5000);
	natsConnection_Flush(raw);
	/* the 100 rows inserted before tagging were loaded, never published */
	CHECK(LIVE_WAIT_FOR(atomic_load(&server.mine) == n_t, 30));
	CHECK(LIVE_WAIT_FOR(atomic_load(&pattern.mine) == n_t, 30));
	CHECK(LIVE_WAIT_FOR(atomic_load(&per_key.mine) == 3, 30));
	CHECK(LIVE_WAIT_FOR(psync_collection_wait_idle(col, 0) == PSYNC_OK && mismatches(col) == 0, 30));
	usleep(200 * 1000);
	CHECK_EQ_INT(atomic_load(&server.other), 0);
	CHECK_EQ_INT(atomic_load(&pattern.other), 0);
	CHECK_EQ_INT(atomic_load(&per_key.other), 0);
	CHECK_EQ_INT(mismatches(col), 0);
	CHECK_EQ_INT(psync_collection_count(col), 91);

	CHECK_EQ_INT(psync_collection_destroy(col), PSYNC_OK);
	psync_transport_unsubscribe(t, pattern_id);
	psync_transport_unsubscribe(t, key_id);
	natsSubscription_Unsubscribe(raw_sub);
	natsSubscription_Destroy(raw_sub);
	natsConnection_Destroy(raw);
	psync_pq_loader_destroy(loader);
	psync_refetcher_destroy(rf);
	psync_transport_destroy(t);
}

/* Is a page query (snapshot_page()) waiting for a lock? */
static bool
page_waits_on_lock(void)
{
	const char *r = pg_exec(conn, "SELECT count(*) > 0 FROM pg_catalog.pg_stat_activity"
							" WHERE wait_event_type = 'Lock' AND query LIKE '%snapshot_page%'");

	return r != NULL && strcmp(r, "t") == 0;
}

/*
 * A transport not told about a table's 'table' layout: the collection
 * would never receive a change.  psync_collection_new refuses it; a layout
 * switched at run time (set_subject_layout) is state "error" at the next
 * check.  And destroy cancels a page query that waits on a lock.
 */
static void
layout_mismatch_is_reported(void)
{
	char		sql[1024];
	char		buf[512];
	char		tbl_m[64];
	psync_nats_options no;
	psync_transport *t = NULL;
	psync_pq_loader *loader = NULL;
	psync_collection *col = NULL;
	psync_collection_options co;
	PGconn	   *locker;

	snprintf(tbl_m, sizeof(tbl_m), "%s", pg_table_name("lay_m"));
	snprintf(sql, sizeof(sql),
			 "CREATE TABLE public.%s (id int PRIMARY KEY, n int);"
			 "INSERT INTO public.%s SELECT g, 0 FROM generate_series(1, 10) g;"
			 "SELECT para_sync.sync_table('public.%s');"
			 "SELECT para_sync.set_subject_layout('public.%s', 'table');",
			 tbl_m, tbl_m, tbl_m, tbl_m);
	CHECK(pg_exec(conn, sql) != NULL);
	psync_nats_options_init(&no);
	no.url = getenv("PSYNC_TEST_NATS_URL");	/* every table in the 'key' layout */
	CHECK_EQ_INT(psync_nats_transport_connect(&no, &t), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_loader_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &loader), PSYNC_OK);
	if (t == NULL || loader == NULL)
		return;
	psync_collection_options_init(&co);
	co.table = tbl_m;
	psync_schema_raw(&co.schema);
	co.transport = t;
	co.load_page = psync_pq_load_page_fn();
	co.load_ctx = psync_pq_load_page_ctx(loader);
	co.layout_check_ms = -1;

	/* at start */
	CHECK_EQ_INT(psync_collection_new(&co, &col), PSYNC_ERR_LAYOUT);
	CHECK(col == NULL);
	psync_last_error(buf, sizeof(buf));
	CHECK(strstr(buf, "subject layout mismatch") != NULL);

	/* switched at run time */
	snprintf(sql, sizeof(sql), "SELECT para_sync.set_subject_layout('public.%s', 'key')", tbl_m);
	CHECK(pg_exec(conn, sql) != NULL);
	CHECK_EQ_INT(psync_collection_new(&co, &col), PSYNC_OK);
	if (col == NULL)
		return;
	CHECK_EQ_INT(psync_collection_count(col), 10);
	CHECK_EQ_INT(psync_collection_get_state(col), PSYNC_COLLECTION_LIVE);
	snprintf(sql, sizeof(sql), "SELECT para_sync.set_subject_layout('public.%s', 'table')", tbl_m);
	CHECK(pg_exec(conn, sql) != NULL);
	psync_collection_resync(col);
	CHECK_EQ_INT(psync_collection_wait_idle(col, 30000), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_get_state(col), PSYNC_COLLECTION_ERROR);
	psync_collection_last_error(col, buf, sizeof(buf));
	CHECK(strstr(buf, "in the 'table' layout, the transport subscribes in the 'key' layout") != NULL);

	/* back: a page query that waits on a lock is cancelled by destroy */
	snprintf(sql, sizeof(sql), "SELECT para_sync.set_subject_layout('public.%s', 'key')", tbl_m);
	CHECK(pg_exec(conn, sql) != NULL);
	locker = PQconnectdb(getenv("PSYNC_TEST_CONNINFO"));
	snprintf(sql, sizeof(sql), "BEGIN; LOCK TABLE public.%s IN ACCESS EXCLUSIVE MODE", tbl_m);
	CHECK(PQstatus(locker) == CONNECTION_OK && pg_exec(locker, sql) != NULL);
	psync_collection_resync(col);
	CHECK(LIVE_WAIT_FOR(page_waits_on_lock(), 30));
	CHECK_EQ_INT(psync_collection_get_state(col), PSYNC_COLLECTION_RELOADING);
	CHECK_EQ_INT(psync_collection_destroy(col), PSYNC_OK);	/* would wait for the lock */
	/* the lock is still held: destroy did not wait for it */
	CHECK(pg_exec(locker, "SELECT 1") != NULL && PQtransactionStatus(locker) == PQTRANS_INTRANS);
	pg_exec(locker, "ROLLBACK");
	PQfinish(locker);
	psync_pq_loader_destroy(loader);
	psync_transport_destroy(t);
}

int
main(void)
{
	int			exit_code;

	conn = pg_live_connect(&exit_code);
	if (conn == NULL)
		return exit_code;
	if (!pg_live_require(conn, "para_sync.set_subject_layout(regclass,text)"))
		return 1;
	RUN(table_layout_is_filtered_by_the_server);
	RUN(layout_mismatch_is_reported);
	PQfinish(conn);
	return harness_finish();
}
