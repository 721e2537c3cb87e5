/*
 * test_collection_live.c — a collection of a 20k-row table on PostgreSQL +
 * para_sync + its publisher + nats-server, loaded while another connection
 * updates, deletes and inserts rows as fast as it can; once with an int key,
 * once with a text key whose primary-key order is not the byte order of its
 * keys (pages come in primary-key order).  When the writer has
 * stopped and everything is published, every row of the table must be a
 * member with the same value bytes and sequence as snapshot_table() gives,
 * and nothing else may be a member.  Then a LOST (resync) must keep it so.
 * And tables keyed by the edge-case values of test/key_cases.txt (the empty
 * text among them) load in full with the keys listed there, and stay live.
 * And a load begun with snapshot_table() (a server without snapshot_page())
 * keeps that order to its end on a loader another collection shares.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"
#include "key_cases.h"
#include "live.h"
#include "pg.h"

#define ROWS 20000

static PGconn *conn;
static char table[64];
static bool text_keys;			/* id text: public.psync_live_tkey(n) */

/* The SQL of the id of row n ("%d" of the int key, or its text key). */
static const char *
id_sql(int n, char *buf, size_t size)
{
	if (text_keys)
		snprintf(buf, size, "public.psync_live_tkey(%d)", n);
	else
		snprintf(buf, size, "%d", n);
	return buf;
}
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
			char		idb[64];
			const char *id = id_sql(1 + (int) (rand_r(&seed) % (ROWS + ROWS / 4)), idb, sizeof(idb));
			int			op = (int) (rand_r(&seed) % 10);

			if (op < 6)
				n += snprintf(sql + n, sizeof(sql) - n,
							  "UPDATE public.%s SET n = n + 1, name = 'u' || (n + 1) WHERE id = %s;",
							  table, id);
			else if (op < 8)
				n += snprintf(sql + n, sizeof(sql) - n,
							  "DELETE FROM public.%s WHERE id = %s;", table, id);
			else
				n += snprintf(sql + n, sizeof(sql) - n,
							  "INSERT INTO public.%s VALUES (%s, 'ins', 0) ON CONFLICT (id) DO NOTHING;",
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
load_under_concurrent_writes(void)
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

	snprintf(table, sizeof(table), "%s", pg_table_name(text_keys ? "collt" : "coll"));
	/* text keys: '-' sorts before '.' as text, after it once escaped (%2E) */
	CHECK(pg_exec(conn, "CREATE OR REPLACE FUNCTION public.psync_live_tkey(n int) RETURNS text"
				  " IMMUTABLE LANGUAGE sql AS $$ SELECT (n % 13) || CASE WHEN n % 2 = 0"
				  " THEN '-' ELSE '.' END || n $$") != NULL);
	snprintf(sql, sizeof(sql),
			 "CREATE TABLE public.%s (id %s PRIMARY KEY, name text, n int);"
			 "INSERT INTO public.%s SELECT %s, 'row ' || g, 0 FROM generate_series(1, %d) g;"
			 "SELECT para_sync.sync_table('public.%s');", table, text_keys ? "text" : "int",
			 table, text_keys ? "public.psync_live_tkey(g)" : "g", ROWS, table);
	CHECK(pg_exec(conn, sql) != NULL);
	atomic_store(&stop_writer, false);
	atomic_store(&writes, 0);

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
			 "DELETE FROM public.%s WHERE hashtext(id::text) %% 97 = 0;"
			 " UPDATE public.%s SET n = n + 1 WHERE hashtext(id::text) %% 89 = 0",
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

static void
collection_loads_under_concurrent_writes(void)
{
	text_keys = false;
	load_under_concurrent_writes();
}

static void
text_keyed_collection_loads_under_concurrent_writes(void)
{
	text_keys = true;
	load_under_concurrent_writes();
}

/* COPY sql FROM STDIN with the bytes of path; false on failure. */
static bool
copy_file(const char *sql, const char *path)
{
	PGresult   *res = PQexec(conn, sql);
	FILE	   *f = fopen(path, "r");
	char		buf[8192];
	size_t		n;
	bool		ok = PQresultStatus(res) == PGRES_COPY_IN && f != NULL;

	PQclear(res);
	while (ok && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		ok = PQputCopyData(conn, buf, (int) n) == 1;
	if (f != NULL)
		fclose(f);
	if (PQputCopyEnd(conn, ok ? NULL : "test input unreadable") != 1)
		ok = false;
	while ((res = PQgetResult(conn)) != NULL)
	{
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			fprintf(stderr, "  COPY from %s: %s", path, PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

typedef struct member_seq
{
	int64_t		seq;
} member_seq;

static void
note_seq(void *ctx, const char *key, size_t key_len, const void *value, int64_t seq)
{
	(void) key;
	(void) key_len;
	(void) value;
	((member_seq *) ctx)->seq = seq;
}

/* The member's sequence (-1: not a member). */
static int64_t
member_sequence(psync_collection *col, const char *key)
{
	member_seq	m = {-1};

	if (!psync_collection_get(col, key, note_seq, &m))
		return -1;
	return m.seq;
}

/* A collection of sync name table over t (NULL on failure, with the error shown). */
static psync_collection *
open_collection(const char *table_name, psync_transport *t, psync_pq_loader *loader,
				psync_refetcher *rf)
{
	psync_collection_options co;
	psync_collection *col = NULL;

	psync_collection_options_init(&co);
	co.table = table_name;
	psync_schema_raw(&co.schema);
	co.transport = t;
	co.load_page = psync_pq_load_page_fn();
	co.load_ctx = psync_pq_load_page_ctx(loader);
	co.refetch = psync_pq_refetch_fn();
	co.refetch_ctx = psync_pq_refetch_ctx(rf);
	co.page_size = 5;			/* several pages, keyset-paged past edge keys */
	if (psync_collection_new(&co, &col) != PSYNC_OK)
	{
		char		buf[512];

		psync_last_error(buf, sizeof(buf));
		fprintf(stderr, "  collection %s: %s\n", table_name, buf);
		return NULL;
	}
	return col;
}

/*
 * Tables keyed by every edge-case value of test/key_cases.txt (one text
 * column as sync name kc1, two as kc2; test/sql/keys.sql checks their keys on
 * the server side): each loads in a collection with exactly the keys listed,
 * and the row keyed '' ("kc1:", "kc2::") stays live over NATS.
 */
static void
edge_case_keys_load_and_stay_live(void)
{
	psync_nats_options no;
	psync_transport *t = NULL;
	psync_refetcher *rf = NULL;
	psync_pq_loader *loader = NULL;
	psync_collection *one = NULL,
			   *two = NULL;
	key_case   *cases;
	size_t		n = key_cases_read(KEY_CASES_FILE, 3, &cases),
				n_one = 0;
	int64_t		seq_one,
				seq_two;

	CHECK(n >= 30);
	CHECK(pg_exec(conn,
				  "DROP TABLE IF EXISTS public.key_cases_one, public.key_cases_two;"
				  "CREATE TEMP TABLE key_cases (ord serial, part1 text, part2 text, key text);"
				  "CREATE TABLE public.key_cases_one (id text PRIMARY KEY, ord int);"
				  "CREATE TABLE public.key_cases_two (a text, b text, ord int, PRIMARY KEY (a, b));"
				  "SELECT para_sync.sync_table('public.key_cases_one', name => 'kc1');"
				  "SELECT para_sync.sync_table('public.key_cases_two', name => 'kc2');") != NULL);
	CHECK(copy_file("COPY key_cases (part1, part2, key) FROM STDIN WITH (HEADER)", KEY_CASES_FILE));
	CHECK(pg_exec(conn,
				  "INSERT INTO public.key_cases_one SELECT part1, ord FROM key_cases WHERE part2 IS NULL;"
				  "INSERT INTO public.key_cases_two SELECT part1, part2, ord FROM key_cases WHERE part2 IS NOT NULL;") != NULL);

	psync_nats_options_init(&no);
	no.url = getenv("PSYNC_TEST_NATS_URL");
	CHECK_EQ_INT(psync_nats_transport_connect(&no, &t), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_refetcher_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &rf), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_loader_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &loader), PSYNC_OK);
	if (t != NULL && rf != NULL && loader != NULL)
	{
		one = open_collection("kc1", t, loader, rf);
		two = open_collection("kc2", t, loader, rf);
	}
	CHECK(one != NULL && two != NULL);
	if (one != NULL && two != NULL)
	{
		for (size_t i = 0; i < n; i++)
		{
			bool		is_one = cases[i].field[1] == NULL;
			int64_t		seq = member_sequence(is_one ? one : two, cases[i].field[2]);

			n_one += is_one;
			if (seq <= 0)
				fprintf(stderr, "  %.60s: not a member\n", cases[i].field[2]);
			CHECK(seq > 0);		/* 1, or more in a rerun: sync names keep sequences */
		}
		CHECK_EQ_INT(psync_collection_count(one), n_one);
		CHECK_EQ_INT(psync_collection_count(two), n - n_one);

		/* the rows keyed '' change: their envelopes arrive on the table patterns */
		seq_one = member_sequence(one, "kc1:");
		seq_two = member_sequence(two, "kc2::");
		CHECK(pg_exec(conn, "UPDATE public.key_cases_one SET ord = -ord WHERE id = '';"
					  "UPDATE public.key_cases_two SET ord = -ord WHERE a = '' AND b = ''") != NULL);
		CHECK(LIVE_WAIT_FOR(outbox_empty(), 60));
		psync_transport_flush(t, 5000);
		CHECK(LIVE_WAIT_FOR(member_sequence(one, "kc1:") == seq_one + 1 &&
							member_sequence(two, "kc2::") == seq_two + 1, 30));
		CHECK_EQ_INT(psync_collection_count(one), n_one);
	}
	if (one != NULL)
		CHECK_EQ_INT(psync_collection_destroy(one), PSYNC_OK);
	if (two != NULL)
		CHECK_EQ_INT(psync_collection_destroy(two), PSYNC_OK);
	psync_pq_loader_destroy(loader);
	psync_refetcher_destroy(rf);
	psync_transport_destroy(t);
	key_cases_free(cases, n);
	pg_exec(conn, "DROP TABLE public.key_cases_one, public.key_cases_two; DROP TABLE key_cases");
}

/*
 * One row the client does not accept (a text primary key '' gives a key
 * with an empty id) must not fail the load of the others: it is skipped
 * and reported, or, should the client accept it, loaded.
 */
static void
a_rejected_row_does_not_fail_the_load(void)
{
	char		sql[512];
	char		name[64];
	char		key[96];
	psync_nats_options no;
	psync_transport *t = NULL;
	psync_pq_loader *loader = NULL;
	psync_collection *col = NULL;
	psync_collection_options co;
	psync_collection_counters st;

	snprintf(name, sizeof(name), "%s", pg_table_name("odd"));
	snprintf(sql, sizeof(sql),
			 "CREATE TABLE public.%s (id text PRIMARY KEY, n int);"
			 "INSERT INTO public.%s VALUES ('a', 1), ('', 2), ('b', 3);"
			 "SELECT para_sync.sync_table('public.%s');", name, name, name);
	CHECK(pg_exec(conn, sql) != NULL);
	psync_nats_options_init(&no);
	no.url = getenv("PSYNC_TEST_NATS_URL");
	CHECK_EQ_INT(psync_nats_transport_connect(&no, &t), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_loader_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &loader), PSYNC_OK);
	if (t == NULL || loader == NULL)
		return;
	psync_collection_options_init(&co);
	co.table = name;
	psync_schema_raw(&co.schema);
	co.transport = t;
	co.load_page = psync_pq_load_page_fn();
	co.load_ctx = psync_pq_load_page_ctx(loader);
	CHECK_EQ_INT(psync_collection_new(&co, &col), PSYNC_OK);
	if (col != NULL)
	{
		psync_collection_stats(col, &st);
		CHECK_EQ_INT(psync_collection_count(col) + st.rows_skipped, 3);
		snprintf(key, sizeof(key), "%s:a", name);
		CHECK(psync_collection_get(col, key, NULL, NULL));
		snprintf(key, sizeof(key), "%s:b", name);
		CHECK(psync_collection_get(col, key, NULL, NULL));
		fprintf(stderr, "  # %zu rows loaded, %llu skipped\n", psync_collection_count(col),
				(unsigned long long) st.rows_skipped);
		CHECK_EQ_INT(psync_collection_destroy(col), PSYNC_OK);
	}
	psync_pq_loader_destroy(loader);
	psync_transport_destroy(t);
}

static void
page_row_ignore(void *ctx, const void *envelope, size_t len)
{
	(void) ctx;
	(void) envelope;
	(void) len;
}

/*
 * One pq loader serving two collections: a load that began against a
 * server without snapshot_page() (0.3: paged with snapshot_table(), in byte
 * order of keys) must go on in that order when the server gains
 * snapshot_page() meanwhile and another collection starts its load on the
 * same loader.  Resuming a byte-order cursor in primary-key order would
 * skip rows (after "t:13": 2 to 9) with no error.  0.3 is played by
 * renaming snapshot_page() away for the first page.
 */
static psync_load_page_fn shared_real_page;
static char shared_other[64];
static int	shared_pages;

static psync_status
shared_load_page(void *ctx, const char *tbl, const char *after_key, int max_rows,
				 psync_page_row_fn row, void *row_ctx, char *error, size_t error_size)
{
	if (after_key != NULL && shared_pages++ == 0)
	{
		/* the server is updated, and another collection starts a load */
		char		other_err[256];

		pg_exec(conn, "ALTER FUNCTION para_sync.snapshot_page_hidden(regclass, text, int, text)"
				" RENAME TO snapshot_page");
		(void) shared_real_page(ctx, shared_other, NULL, max_rows, page_row_ignore, NULL,
								other_err, sizeof(other_err));
	}
	return shared_real_page(ctx, tbl, after_key, max_rows, row, row_ctx, error, error_size);
}

static void
a_load_keeps_its_page_order_on_a_shared_loader(void)
{
	char		sql[768];
	char		name[64];
	psync_nats_options no;
	psync_transport *t = NULL;
	psync_pq_loader *loader = NULL;
	psync_collection *col = NULL;
	psync_collection_options co;

	snprintf(name, sizeof(name), "%s", pg_table_name("shared"));
	snprintf(shared_other, sizeof(shared_other), "%s", pg_table_name("shared2"));
	snprintf(sql, sizeof(sql),
			 "CREATE TABLE public.%s (id int PRIMARY KEY, n int);"
			 "INSERT INTO public.%s SELECT g, g FROM generate_series(1, 30) g;"
			 "SELECT para_sync.sync_table('public.%s');"
			 "CREATE TABLE public.%s (id int PRIMARY KEY, n int);"
			 "SELECT para_sync.sync_table('public.%s');"
			 "ALTER FUNCTION para_sync.snapshot_page(regclass, text, int, text) RENAME TO snapshot_page_hidden",
			 name, name, name, shared_other, shared_other);
	CHECK(pg_exec(conn, sql) != NULL);
	psync_nats_options_init(&no);
	no.url = getenv("PSYNC_TEST_NATS_URL");
	CHECK_EQ_INT(psync_nats_transport_connect(&no, &t), PSYNC_OK);
	CHECK_EQ_INT(psync_pq_loader_new_conninfo(getenv("PSYNC_TEST_CONNINFO"), &loader), PSYNC_OK);
	if (t != NULL && loader != NULL)
	{
		shared_real_page = psync_pq_load_page_fn();
		shared_pages = 0;
		psync_collection_options_init(&co);
		co.table = name;
		psync_schema_raw(&co.schema);
		co.transport = t;
		co.load_page = shared_load_page;
		co.load_ctx = psync_pq_load_page_ctx(loader);
		co.page_size = 5;
		CHECK_EQ_INT(psync_collection_new(&co, &col), PSYNC_OK);
		CHECK(shared_pages > 0);
		if (col != NULL)
		{
			CHECK_EQ_INT(psync_collection_count(col), 30);
			CHECK_EQ_INT(psync_collection_destroy(col), PSYNC_OK);
		}
	}
	/* snapshot_page() back under its name whatever happened */
	pg_exec(conn, "DO $$ BEGIN"
			" IF to_regprocedure('para_sync.snapshot_page_hidden(regclass, text, int, text)') IS NOT NULL THEN"
			" ALTER FUNCTION para_sync.snapshot_page_hidden(regclass, text, int, text) RENAME TO snapshot_page;"
			" END IF; END $$");
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
	if (!pg_live_require(conn, "para_sync.snapshot_table(regclass,text,integer)"))
		return 1;
	RUN(collection_loads_under_concurrent_writes);
	RUN(text_keyed_collection_loads_under_concurrent_writes);
	RUN(edge_case_keys_load_and_stay_live);
	RUN(a_rejected_row_does_not_fail_the_load);
	RUN(a_load_keeps_its_page_order_on_a_shared_loader);
	PQfinish(conn);
	return harness_finish();
}
