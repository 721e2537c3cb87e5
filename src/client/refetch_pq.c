/*
 * refetch_pq.c — refetch over libpq: para_sync.snapshot(key) on a worker.
 *
 * Owns the ready refetch function.  Replicas start refetches on NATS
 * delivery threads, which must never block on a database round trip, so
 * requests are queued to one worker thread that runs
 *   SELECT para_sync.snapshot($1)      (binary result: the envelope bytes)
 * on a connection from the application (a conninfo the refetcher connects
 * with, or an acquire/release pair over the application's pool).
 */
#include "para_sync/client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "client_error.h"
#include "pq_internal.h"

typedef struct pq_job
{
	psync_refetch_request *request;
	struct pq_job *next;
} pq_job;

struct psync_refetcher
{
	pthread_t	thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pq_job	   *head;
	pq_job	   *tail;
	bool		stopping;
	psync_pq_acquire_fn acquire;
	psync_pq_release_fn release;
	void	   *ctx;
	/* conninfo mode: the refetcher's own connection */
	char	   *conninfo;
	PGconn	   *own_conn;
	char		connect_error[PSYNC_ERROR_LEN];	/* worker thread only */
	char		last_error[PSYNC_ERROR_LEN];	/* under lock */
};

/* libpq's message without its trailing newline (pq_internal.h). */
void
client_pq_message(char *buf, size_t size, const char *what, const char *message)
{
	size_t		len;

	snprintf(buf, size, "%s: %s", what,
			 message != NULL && message[0] != '\0' ? message : "no message from libpq");
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
}

/* psync_pq_fetch_snapshot, with the failure's text in err. */
static psync_status
fetch_snapshot(PGconn *conn, const char *key, void **out, size_t *out_len,
			   char *err, size_t err_size)
{
	const char *params[1] = {key};
	PGresult   *res;
	psync_status st = PSYNC_OK;

	if (conn == NULL || key == NULL || out == NULL || out_len == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	*out_len = 0;
	res = PQexecParams(conn, "SELECT para_sync.snapshot($1)", 1, NULL, params,
					   NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		st = PSYNC_ERR_DATABASE;
		client_pq_message(err, err_size, "para_sync.snapshot() failed",
				   res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	}
	else if (PQgetisnull(res, 0, 0))
	{
		st = PSYNC_ERR_NOT_FOUND;
		snprintf(err, err_size, "para_sync.snapshot() returned NULL");
	}
	else
	{
		size_t		len = (size_t) PQgetlength(res, 0, 0);

		*out = malloc(len > 0 ? len : 1);
		if (*out == NULL)
		{
			st = PSYNC_ERR_NO_MEMORY;
			snprintf(err, err_size, "out of memory");
		}
		else
		{
			memcpy(*out, PQgetvalue(res, 0, 0), len);
			*out_len = len;
		}
	}
	PQclear(res);
	return st;
}

psync_status
psync_pq_fetch_snapshot(PGconn *conn, const char *key, void **out, size_t *out_len)
{
	char		err[PSYNC_ERROR_LEN];

	return fetch_snapshot(conn, key, out, out_len, err, sizeof(err));
}

/* Keep err as the refetcher's last error and fail request with it. */
static void
fail_job(psync_refetcher *rf, psync_refetch_request *request, const char *err)
{
	pthread_mutex_lock(&rf->lock);
	snprintf(rf->last_error, sizeof(rf->last_error), "%s", err);
	pthread_mutex_unlock(&rf->lock);
	psync_refetch_fail(request, err);
}

static void
run_job(psync_refetcher *rf, psync_refetch_request *request)
{
	PGconn	   *conn = rf->acquire(rf->ctx);
	void	   *bytes = NULL;
	size_t		len = 0;
	psync_status st;

	char		err[PSYNC_ERROR_LEN];

	if (conn == NULL)
	{
		fail_job(rf, request, rf->connect_error[0] != '\0' ? rf->connect_error :
				 "no database connection (the pool's acquire returned NULL)");
		return;
	}
	st = fetch_snapshot(conn, psync_refetch_key(request), &bytes, &len, err, sizeof(err));
	rf->release(rf->ctx, conn, PQstatus(conn) != CONNECTION_OK);
	if (st == PSYNC_OK)
		psync_refetch_complete(request, bytes, len);
	else
		fail_job(rf, request, err);
	free(bytes);
}

static void *
worker_main(void *arg)
{
	psync_refetcher *rf = arg;

	for (;;)
	{
		pq_job	   *job;

		pthread_mutex_lock(&rf->lock);
		while (rf->head == NULL && !rf->stopping)
			pthread_cond_wait(&rf->wake, &rf->lock);
		if (rf->stopping)
		{
			pthread_mutex_unlock(&rf->lock);
			return NULL;
		}
		job = rf->head;
		rf->head = job->next;
		if (rf->head == NULL)
			rf->tail = NULL;
		pthread_mutex_unlock(&rf->lock);
		run_job(rf, job->request);
		free(job);
	}
}

/* The psync_refetch_fn: queue and return at once (any thread). */
static void
pq_refetch(void *ctx, const char *key, psync_refetch_request *request)
{
	psync_refetcher *rf = ctx;
	pq_job	   *job = malloc(sizeof(*job));

	(void) key;
	if (job == NULL)
	{
		psync_refetch_fail(request, "out of memory");
		return;
	}
	job->request = request;
	job->next = NULL;
	pthread_mutex_lock(&rf->lock);
	if (rf->stopping)
	{
		pthread_mutex_unlock(&rf->lock);
		free(job);
		psync_refetch_fail(request, "refetcher closed");
		return;
	}
	if (rf->tail != NULL)
		rf->tail->next = job;
	else
		rf->head = job;
	rf->tail = job;
	pthread_cond_signal(&rf->wake);
	pthread_mutex_unlock(&rf->lock);
}

psync_refetch_fn
psync_pq_refetch_fn(void)
{
	return pq_refetch;
}

void *
psync_pq_refetch_ctx(psync_refetcher *rf)
{
	return rf;
}

psync_status
psync_pq_refetcher_new_pool(psync_pq_acquire_fn acquire,
							psync_pq_release_fn release, void *ctx,
							psync_refetcher **out)
{
	psync_refetcher *rf;

	if (out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	if (acquire == NULL || release == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	if ((rf = calloc(1, sizeof(*rf))) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	rf->acquire = acquire;
	rf->release = release;
	rf->ctx = ctx;
	pthread_mutex_init(&rf->lock, NULL);
	pthread_cond_init(&rf->wake, NULL);
	if (pthread_create(&rf->thread, NULL, worker_main, rf) != 0)
	{
		pthread_cond_destroy(&rf->wake);
		pthread_mutex_destroy(&rf->lock);
		free(rf);
		return PSYNC_ERR_SYSTEM;
	}
	*out = rf;
	return PSYNC_OK;
}

/* conninfo mode: (re)connect lazily on the worker thread. */
static PGconn *
own_acquire(void *ctx)
{
	psync_refetcher *rf = ctx;

	if (rf->own_conn != NULL && PQstatus(rf->own_conn) == CONNECTION_OK)
		return rf->own_conn;
	PQfinish(rf->own_conn);
	rf->own_conn = PQconnectdb(rf->conninfo);
	if (PQstatus(rf->own_conn) != CONNECTION_OK)
	{
		client_pq_message(rf->connect_error, sizeof(rf->connect_error),
				   "could not connect to the database",
				   rf->own_conn != NULL ? PQerrorMessage(rf->own_conn) : "out of memory");
		PQfinish(rf->own_conn);
		rf->own_conn = NULL;
	}
	else
		rf->connect_error[0] = '\0';
	return rf->own_conn;
}

static void
own_release(void *ctx, PGconn *conn, bool broken)
{
	psync_refetcher *rf = ctx;

	if (broken && conn == rf->own_conn)
	{
		PQfinish(rf->own_conn);
		rf->own_conn = NULL;
	}
}

psync_status
psync_pq_refetcher_new_conninfo(const char *conninfo, psync_refetcher **out)
{
	char	   *copy;
	psync_status st;

	if (conninfo == NULL || out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	if ((copy = strdup(conninfo)) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	/* ctx is the refetcher itself: set once it exists, before any job */
	st = psync_pq_refetcher_new_pool(own_acquire, own_release, NULL, out);
	if (st != PSYNC_OK)
	{
		free(copy);
		return st;
	}
	pthread_mutex_lock(&(*out)->lock);
	(*out)->ctx = *out;
	(*out)->conninfo = copy;
	pthread_mutex_unlock(&(*out)->lock);
	return PSYNC_OK;
}

void
psync_refetcher_destroy(psync_refetcher *rf)
{
	pq_job	   *job;

	if (rf == NULL)
		return;
	pthread_mutex_lock(&rf->lock);
	rf->stopping = true;
	pthread_cond_broadcast(&rf->wake);
	pthread_mutex_unlock(&rf->lock);
	pthread_join(rf->thread, NULL);
	while ((job = rf->head) != NULL)
	{
		rf->head = job->next;
		psync_refetch_fail(job->request, "refetcher closed");
		free(job);
	}
	PQfinish(rf->own_conn);
	free(rf->conninfo);
	pthread_cond_destroy(&rf->wake);
	pthread_mutex_destroy(&rf->lock);
	free(rf);
}

size_t
psync_refetcher_last_error(psync_refetcher *rf, char *buf, size_t size)
{
	size_t		len;

	if (rf == NULL)
		return client_error_copy("", buf, size);
	pthread_mutex_lock(&rf->lock);
	len = client_error_copy(rf->last_error, buf, size);
	pthread_mutex_unlock(&rf->lock);
	return len;
}
