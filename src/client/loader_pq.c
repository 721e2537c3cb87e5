/*
 * loader_pq.c — the libpq page loader of collections (psync_pq_loader).
 *
 * One page is one statement,
 *   SELECT s.envelope FROM para_sync.synced_tables t,
 *          para_sync.snapshot_page(t.table_name, $2, $3) s
 *    WHERE t.sync_name = $1
 * with binary results, on the loader's own connection (opened lazily from
 * a conninfo string, reopened after a failure).  A server whose extension
 * is older than 0.4 has no snapshot_page(): there the loader pages with
 * snapshot_table() (see docs/protocol.md, "Loading a whole table" and
 * "Versioning").  Which of the two is looked up once, at the loader's first
 * page, and kept for its life: a cursor is only good in the order of the
 * function that gave it, and a load of one collection may be midway when
 * another collection of the same loader starts its own (a server updated
 * meanwhile would otherwise switch that load to the other order and skip
 * rows).  A loader made before the update keeps paging with
 * snapshot_table(), which 0.4 keeps.  Pages run on the
 * collections' loader threads; a mutex lets several collections share one
 * loader, one page at a time.  A collection of one scope asks for table
 * "<sync name>@<scope>": its pages are snapshot_page(..., scope => <scope>)
 * (docs/protocol.md "Scopes").  The layout check reads
 * para_sync.synced_tables.subject_layout ("scope" when its scope_columns
 * is set); cancel sends a cancel request for
 * the statement in flight (PQcancel, safe from another thread).
 */
#include "para_sync/client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "client_error.h"
#include "pq_internal.h"

struct psync_pq_loader
{
	pthread_mutex_t lock;
	char	   *conninfo;
	PGconn	   *conn;
	pthread_mutex_t cancel_lock;	/* guards cancel */
	PGcancel   *cancel;			/* while a statement runs */
	bool		old_server;		/* no snapshot_page(): page with snapshot_table() */
	bool		has_scopes;		/* snapshot_page() takes a scope */
	bool		checked;		/* old_server is known (and never changes) */
};

/* The statement of conn may be cancelled from now on (lock held). */
static void
cancel_arm(psync_pq_loader *l)
{
	PGcancel   *cancel = PQgetCancel(l->conn);

	pthread_mutex_lock(&l->cancel_lock);
	l->cancel = cancel;
	pthread_mutex_unlock(&l->cancel_lock);
}

static void
cancel_disarm(psync_pq_loader *l)
{
	pthread_mutex_lock(&l->cancel_lock);
	PQfreeCancel(l->cancel);
	l->cancel = NULL;
	pthread_mutex_unlock(&l->cancel_lock);
}

static bool
ensure_connection(psync_pq_loader *l, char *error, size_t error_size)
{
	if (l->conn != NULL && PQstatus(l->conn) == CONNECTION_OK)
		return true;
	PQfinish(l->conn);
	l->conn = PQconnectdb(l->conninfo);
	if (PQstatus(l->conn) == CONNECTION_OK)
		return true;
	client_pq_message(error, error_size, "could not connect to the database",
			 l->conn != NULL ? PQerrorMessage(l->conn) : "out of memory");
	PQfinish(l->conn);
	l->conn = NULL;
	return false;
}

/* Whether table is a sync name at all (to tell "empty" from "unknown"). */
static psync_status
check_table(PGconn *conn, const char *table, char *error, size_t error_size)
{
	const char *params[1] = {table};
	PGresult   *res = PQexecParams(conn,
								   "SELECT 1 FROM para_sync.synced_tables t"
								   " WHERE t.sync_name OPERATOR(pg_catalog.=) $1",
								   1, NULL, params, NULL, NULL, 0);
	psync_status st = PSYNC_OK;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		client_pq_message(error, error_size, "para_sync.synced_tables", PQresultErrorMessage(res));
		st = PSYNC_ERR_DATABASE;
	}
	else if (PQntuples(res) == 0)
	{
		snprintf(error, error_size, "no synced table has sync name \"%s\"", table);
		st = PSYNC_ERR_NOT_FOUND;
	}
	PQclear(res);
	return st;
}

/* Whether the server has snapshot_page() (extension 0.4 or later). */
static psync_status
check_page_function(psync_pq_loader *l, char *error, size_t error_size)
{
	PGresult   *res = PQexec(l->conn,
							 "SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 0,"
							 " pg_catalog.bool_or(p.pronargs OPERATOR(pg_catalog.>=) 4)"
							 " FROM pg_catalog.pg_proc p"
							 " WHERE p.proname OPERATOR(pg_catalog.=) 'snapshot_page'"
							 " AND p.pronamespace OPERATOR(pg_catalog.=)"
							 " 'para_sync'::pg_catalog.regnamespace");
	psync_status st = PSYNC_OK;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		client_pq_message(error, error_size, "looking up para_sync.snapshot_page()",
						  PQresultErrorMessage(res));
		st = PSYNC_ERR_DATABASE;
	}
	else
	{
		l->old_server = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		l->has_scopes = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		l->checked = true;
	}
	PQclear(res);
	return st;
}

static psync_status
pq_load_page(void *ctx, const char *table, const char *after_key, int max_rows,
			 psync_page_row_fn row, void *row_ctx, char *error, size_t error_size)
{
	psync_pq_loader *l = ctx;
	char		limit[16];
	char		name[64];
	const char *params[4];
	const char *at;
	PGresult   *res;
	psync_status st = PSYNC_OK;

	if (l == NULL || table == NULL || row == NULL || max_rows <= 0)
		return PSYNC_ERR_INVALID_ARGUMENT;
	snprintf(limit, sizeof(limit), "%d", max_rows);
	/* "<sync name>@<scope>": one scope's rows */
	at = strchr(table, '@');
	if (at != NULL && (size_t) (at - table) >= sizeof(name))
		return PSYNC_ERR_INVALID_ARGUMENT;
	if (at != NULL)
	{
		memcpy(name, table, at - table);
		name[at - table] = '\0';
	}
	params[0] = at != NULL ? name : table;
	params[1] = after_key;		/* NULL: SQL NULL, from the first key */
	params[2] = limit;
	params[3] = at != NULL ? at + 1 : NULL;
	pthread_mutex_lock(&l->lock);
	if (!ensure_connection(l, error, error_size))
	{
		pthread_mutex_unlock(&l->lock);
		return PSYNC_ERR_DATABASE;
	}
	if (!l->checked && (st = check_page_function(l, error, error_size)) != PSYNC_OK)
	{
		pthread_mutex_unlock(&l->lock);
		return st;
	}
	if (at != NULL && (l->old_server || !l->has_scopes))
	{
		snprintf(error, error_size, "the server's para_sync has no scopes: "
				 "snapshot_page() takes no scope (extension 0.4 or later needed)");
		pthread_mutex_unlock(&l->lock);
		return PSYNC_ERR_DATABASE;
	}
	cancel_arm(l);
	res = PQexecParams(l->conn, at != NULL ?
					   "SELECT s.envelope"
					   " FROM para_sync.synced_tables t,"
					   " para_sync.snapshot_page(t.table_name, $2, $3::pg_catalog.int4,"
					   " scope => $4) s"
					   " WHERE t.sync_name OPERATOR(pg_catalog.=) $1" :
					   l->old_server ?
					   "SELECT s.envelope"
					   " FROM para_sync.synced_tables t,"
					   " para_sync.snapshot_table(t.table_name, $2, $3::pg_catalog.int4) s"
					   " WHERE t.sync_name OPERATOR(pg_catalog.=) $1" :
					   "SELECT s.envelope"
					   " FROM para_sync.synced_tables t,"
					   " para_sync.snapshot_page(t.table_name, $2, $3::pg_catalog.int4) s"
					   " WHERE t.sync_name OPERATOR(pg_catalog.=) $1",
					   at != NULL ? 4 : 3, NULL, params, NULL, NULL, 1);
	cancel_disarm(l);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		client_pq_message(error, error_size, l->old_server ?
						  "para_sync.snapshot_table() failed" :
						  "para_sync.snapshot_page() failed",
						  PQresultErrorMessage(res));
		st = PSYNC_ERR_DATABASE;
	}
	else
	{
		int			n = PQntuples(res);

		if (n == 0 && after_key == NULL)
			st = check_table(l->conn, params[0], error, error_size);
		for (int i = 0; i < n; i++)
			row(row_ctx, PQgetvalue(res, i, 0), (size_t) PQgetlength(res, i, 0));
	}
	PQclear(res);
	pthread_mutex_unlock(&l->lock);
	return st;
}

static psync_status
pq_load_layout(void *ctx, const char *table, char *layout, size_t layout_size,
			   char *error, size_t error_size)
{
	psync_pq_loader *l = ctx;
	const char *params[1] = {table};
	PGresult   *res;
	psync_status st = PSYNC_OK;

	if (l == NULL || table == NULL || layout == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	pthread_mutex_lock(&l->lock);
	if (!ensure_connection(l, error, error_size))
	{
		pthread_mutex_unlock(&l->lock);
		return PSYNC_ERR_DATABASE;
	}
	cancel_arm(l);
	res = PQexecParams(l->conn,
					   "SELECT CASE WHEN (pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>)"
					   " 'scope_columns') IS NOT NULL THEN 'scope' ELSE t.subject_layout END"
					   " FROM para_sync.synced_tables t"
					   " WHERE t.sync_name OPERATOR(pg_catalog.=) $1",
					   1, NULL, params, NULL, NULL, 0);
	cancel_disarm(l);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		client_pq_message(error, error_size, "para_sync.synced_tables", PQresultErrorMessage(res));
		st = PSYNC_ERR_DATABASE;
	}
	else if (PQntuples(res) == 0)
	{
		snprintf(error, error_size, "no synced table has sync name \"%s\"", table);
		st = PSYNC_ERR_NOT_FOUND;
	}
	else
		snprintf(layout, layout_size, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	pthread_mutex_unlock(&l->lock);
	return st;
}

static void
pq_cancel_load(void *ctx)
{
	psync_pq_loader *l = ctx;
	char		ignored[256];

	if (l == NULL)
		return;
	pthread_mutex_lock(&l->cancel_lock);
	if (l->cancel != NULL)
		(void) PQcancel(l->cancel, ignored, sizeof(ignored));
	pthread_mutex_unlock(&l->cancel_lock);
}

psync_load_layout_fn
psync_pq_load_layout_fn(void)
{
	return pq_load_layout;
}

psync_cancel_load_fn
psync_pq_cancel_load_fn(void)
{
	return pq_cancel_load;
}

psync_status
psync_pq_loader_new_conninfo(const char *conninfo, psync_pq_loader **out)
{
	psync_pq_loader *l;

	if (out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	if (conninfo == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	if ((l = calloc(1, sizeof(*l))) == NULL || (l->conninfo = strdup(conninfo)) == NULL)
	{
		free(l);
		return PSYNC_ERR_NO_MEMORY;
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->cancel_lock, NULL);
	*out = l;
	return PSYNC_OK;
}

psync_load_page_fn
psync_pq_load_page_fn(void)
{
	return pq_load_page;
}

void *
psync_pq_load_page_ctx(psync_pq_loader *loader)
{
	return loader;
}

void
psync_pq_loader_destroy(psync_pq_loader *l)
{
	if (l == NULL)
		return;
	PQfinish(l->conn);
	pthread_mutex_destroy(&l->cancel_lock);
	pthread_mutex_destroy(&l->lock);
	free(l->conninfo);
	free(l);
}
