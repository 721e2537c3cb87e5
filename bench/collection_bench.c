/*
 * collection_bench.c — what a psync_collection of a whole table costs:
 * load-to-live time and heap bytes per row.
 *
 *   collection_bench CONNINFO NATS_URL TABLE PAGE_SIZE [SCOPE|'*']
 *
 * With SCOPE, TABLE has a scope (docs/protocol.md "Scopes") and a tenant
 * column holding the scope (bench/scope_load creates it): the collection
 * is that scope's ('*': every row of the scoped table).
 *
 * TABLE must already be synced (bench/collection creates it).  Creates a
 * collection with the raw schema (values kept as their MessagePack bytes),
 * timing psync_collection_new (subscribe + every page + reconcile: live on
 * return), then one update committed in the database and the time until
 * the collection applied it.  Heap in use is read with mallinfo2() before
 * and after; the sum of envelope sizes comes from snapshot_table() (one page).
 * Prints one line of "name=value" figures.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "para_sync/client.h"

static atomic_int updates_seen;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
on_change(void *ctx, psync_collection *c, psync_member_change change,
		  const char *key, size_t key_len, const void *value, int64_t seq)
{
	(void) ctx;
	(void) c;
	(void) key;
	(void) key_len;
	(void) value;
	(void) seq;
	if (change == PSYNC_MEMBER_UPDATED)
		atomic_fetch_add(&updates_seen, 1);
}

static const char *
one(PGconn *conn, const char *sql)
{
	static char buf[256];
	PGresult   *r = PQexec(conn, sql);

	buf[0] = '\0';
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
		snprintf(buf, sizeof(buf), "%s", PQgetvalue(r, 0, 0));
	else if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
	PQclear(r);
	return buf;
}

int
main(int argc, char **argv)
{
	psync_nats_options no;
	psync_transport *t;
	psync_pq_loader *loader;
	psync_refetcher *rf;
	psync_collection_options co;
	psync_collection *c;
	PGconn	   *conn;
	char		sql[512];
	double		t0, t_live, t_update;
	size_t		heap0, heap1, rows;
	long long	env_bytes;
	struct mallinfo2 mi;

	const char *scope = argc == 6 && strcmp(argv[5], "*") != 0 ? argv[5] : NULL;
	const char *scoped[2] = {argc == 6 ? argv[3] : NULL, NULL};

	if (argc != 5 && argc != 6)
	{
		fprintf(stderr, "usage: %s CONNINFO NATS_URL TABLE PAGE_SIZE [SCOPE|'*']\n", argv[0]);
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 1;
	}
	if (scope != NULL)
		snprintf(sql, sizeof(sql),
				 "SELECT sum(octet_length(envelope)) FROM para_sync.snapshot_page('public.%s', NULL, "
				 "100000000, scope => '%s')", argv[3], scope);
	else
		snprintf(sql, sizeof(sql),
				 "SELECT sum(octet_length(envelope)) FROM para_sync.snapshot_table('public.%s', NULL, 100000000)",
				 argv[3]);
	env_bytes = atoll(one(conn, sql));

	psync_nats_options_init(&no);
	no.url = argv[2];
	no.scoped_tables = scoped;
	if (psync_nats_transport_connect(&no, &t) != PSYNC_OK ||
		psync_pq_loader_new_conninfo(argv[1], &loader) != PSYNC_OK ||
		psync_pq_refetcher_new_conninfo(argv[1], &rf) != PSYNC_OK)
	{
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	malloc_trim(0);
	mi = mallinfo2();
	heap0 = mi.uordblks + mi.hblkhd;

	psync_collection_options_init(&co);
	co.table = argv[3];
	psync_schema_raw(&co.schema);
	co.transport = t;
	co.load_page = psync_pq_load_page_fn();
	co.load_ctx = psync_pq_load_page_ctx(loader);
	co.refetch = psync_pq_refetch_fn();
	co.refetch_ctx = psync_pq_refetch_ctx(rf);
	co.on_change = on_change;
	co.page_size = atoi(argv[4]);
	co.scope = scope;
	t0 = now();
	if (psync_collection_new(&co, &c) != PSYNC_OK)
	{
		char		buf[512];

		psync_last_error(buf, sizeof(buf));
		fprintf(stderr, "collection: %s\n", buf);
		return 1;
	}
	t_live = now() - t0;
	rows = psync_collection_count(c);
	malloc_trim(0);
	mi = mallinfo2();
	heap1 = mi.uordblks + mi.hblkhd;

	/* live: one committed update reaches it */
	if (scope != NULL)
		snprintf(sql, sizeof(sql), "UPDATE public.%s SET v = v + 1 WHERE id = "
				 "(SELECT min(id) FROM public.%s WHERE tenant = '%s')", argv[3], argv[3], scope);
	else
		snprintf(sql, sizeof(sql), "UPDATE public.%s SET v = v + 1 WHERE id = (SELECT min(id) FROM public.%s)",
				 argv[3], argv[3]);
	t0 = now();
	one(conn, sql);
	while (atomic_load(&updates_seen) == 0 && now() - t0 < 10)
		usleep(200);
	t_update = now() - t0;

	printf("rows=%zu load_to_live_s=%.3f rows_per_s=%.0f heap_bytes=%zu bytes_per_row=%.1f "
		   "envelope_bytes=%lld envelope_bytes_per_row=%.1f ratio=%.2f first_update_ms=%.1f\n",
		   rows, t_live, rows / t_live, heap1 - heap0, (double) (heap1 - heap0) / rows,
		   env_bytes, (double) env_bytes / rows, (double) (heap1 - heap0) / env_bytes,
		   t_update * 1000);
	psync_collection_destroy(c);
	psync_refetcher_destroy(rf);
	psync_pq_loader_destroy(loader);
	psync_transport_destroy(t);
	PQfinish(conn);
	return 0;
}
