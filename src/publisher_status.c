/*
 * publisher_status.c — the publisher's status: its shared memory (what the
 * background worker is doing, para_sync.status, and its latch and commit
 * wake-up state, used by publisher_wake.c) and its reports (log lines,
 * pg_stat_activity).
 *
 * Owns: the shmem request/startup hooks, the worker's registration there
 * (latch, pid), the worker's problem reports (one WARNING per change of the
 * problem) and activity, and para_sync.publisher_status(), the function
 * behind the para_sync.status view.  Reading the view costs a spinlock and
 * a memcpy: the worker measures the backlog itself, at most once a second
 * (publisher_status_refresh_backlog(), with the outbox family's count,
 * outbox_backlog_count()).  While no worker runs, the view counts the
 * outbox itself with the same query.
 */
#include "para_sync.h"
#include "publisher.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(para_sync_publisher_status);

PsyncShared *publisher_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static const char *const worker_state_names[] = {
	[PSW_STOPPED] = "stopped",
	[PSW_STARTING] = "starting",
	[PSW_NO_EXTENSION] = "waiting for CREATE EXTENSION",
	[PSW_CONNECTING] = "connecting",
	[PSW_IDLE] = "idle",
	[PSW_READING] = "reading",
	[PSW_PUBLISHING] = "publishing",
	[PSW_ACKING] = "acknowledging",
	[PSW_BACKOFF] = "backoff",
	[PSW_WAITING_STANDBY] = "waiting for standby",
	[PSW_RECOVERY] = "in recovery",
	[PSW_VACUUMING] = "vacuuming",
};

static const char *const nats_state_names[] = {
	[PSN_DISCONNECTED] = "disconnected",
	[PSN_CONNECTING] = "connecting",
	[PSN_CONNECTED] = "connected",
	[PSN_RECONNECTING] = "reconnecting",
	[PSN_FAILED] = "failed",
};

static void
publisher_status_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PsyncShared)));
}

static void
publisher_status_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	publisher_shared = ShmemInitStruct("para_sync publisher", sizeof(PsyncShared),
								   &found);
	if (!found)
	{
		memset(publisher_shared, 0, sizeof(PsyncShared));
		SpinLockInit(&publisher_shared->mutex);
		pg_atomic_init_u32(&publisher_shared->wake_on_commit, 1);
		pg_atomic_init_u64(&publisher_shared->commit_wakes, 0);
		pg_atomic_init_u32(&publisher_shared->database, InvalidOid);
		publisher_shared->backlog = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init (publisher_init()). */
void
publisher_status_shmem_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = publisher_status_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = publisher_status_shmem_startup;
}

/* The worker announces itself (latch, pid) and withdraws at exit. */
static void
publisher_status_unregister_worker(int code, Datum arg)
{
	publisher_wake_set_database(InvalidOid);
	SpinLockAcquire(&publisher_shared->mutex);
	publisher_shared->latch = NULL;
	publisher_shared->pid = 0;
	publisher_shared->state = PSW_STOPPED;
	publisher_shared->nats_state = PSN_DISCONNECTED;
	publisher_shared->server[0] = '\0';
	/* no longer measured: the view counts the outbox until a worker runs */
	publisher_shared->backlog = -1;
	publisher_shared->oldest_queued_at = 0;
	publisher_shared->backlog_at = 0;
	SpinLockRelease(&publisher_shared->mutex);
}

void
publisher_status_register_worker(void)
{
	SpinLockAcquire(&publisher_shared->mutex);
	publisher_shared->latch = MyLatch;
	publisher_shared->pid = MyProcPid;
	publisher_shared->state = PSW_STARTING;
	publisher_shared->detail[0] = '\0';
	publisher_shared->nats_state = PSN_DISCONNECTED;
	publisher_shared->started_at = GetCurrentTimestamp();
	publisher_shared->backlog = -1;
	SpinLockRelease(&publisher_shared->mutex);
	before_shmem_exit(publisher_status_unregister_worker, (Datum) 0);
}

void
publisher_status_set_state(PsyncWorkerState state)
{
	SpinLockAcquire(&publisher_shared->mutex);
	publisher_shared->state = state;
	publisher_shared->jetstream = psync_jetstream_stream[0] != '\0';
	SpinLockRelease(&publisher_shared->mutex);
}

void
publisher_status_set_nats(PsyncNatsState state, const char *server)
{
	SpinLockAcquire(&publisher_shared->mutex);
	publisher_shared->nats_state = state;
	if (server != NULL)
		strlcpy(publisher_shared->server, server, sizeof(publisher_shared->server));
	SpinLockRelease(&publisher_shared->mutex);
}

void
publisher_status_set_error(const char *error)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&publisher_shared->mutex);
	strlcpy(publisher_shared->last_error, error, sizeof(publisher_shared->last_error));
	publisher_shared->last_error_at = now;
	SpinLockRelease(&publisher_shared->mutex);
}

void
publisher_status_set_detail(const char *detail)
{
	SpinLockAcquire(&publisher_shared->mutex);
	strlcpy(publisher_shared->detail, detail, sizeof(publisher_shared->detail));
	SpinLockRelease(&publisher_shared->mutex);
}

void
publisher_status_count_batch(uint64 published, uint64 refetches, uint64 skipped)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&publisher_shared->mutex);
	publisher_shared->published += published;
	publisher_shared->refetches += refetches;
	publisher_shared->skipped += skipped;
	publisher_shared->batches++;
	publisher_shared->last_publish_at = now;
	SpinLockRelease(&publisher_shared->mutex);
}

void
publisher_status_count_retry(void)
{
	SpinLockAcquire(&publisher_shared->mutex);
	publisher_shared->retries++;
	SpinLockRelease(&publisher_shared->mutex);
}

void
publisher_status_set_backlog(int64 backlog, TimestampTz oldest)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&publisher_shared->mutex);
	publisher_shared->backlog = backlog;
	publisher_shared->oldest_queued_at = oldest;
	publisher_shared->backlog_at = now;
	SpinLockRelease(&publisher_shared->mutex);
}

/* A batch was read: at least its rows are unconfirmed. */
void
publisher_status_backlog_at_least(int64 n)
{
	SpinLockAcquire(&publisher_shared->mutex);
	if (publisher_shared->backlog < n)
	{
		publisher_shared->backlog = n;
		publisher_shared->backlog_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&publisher_shared->mutex);
}

/* ---- the worker's measurement of the backlog (outbox_backlog_count()) */

/* the worker's prepared count, kept across batches */
static SPIPlanPtr backlog_plan = NULL;

static TimestampTz backlog_measured = 0;

/*
 * Measure backlog and oldest envelope, at most once every every_ms; 0 when
 * caught up.  Rows read but not yet removed count: they are not confirmed
 * yet.
 */
static void
measure_backlog(bool caught_up, int every_ms)
{
	TimestampTz now = GetCurrentTimestamp();

	if (caught_up)
	{
		publisher_status_set_backlog(0, 0);
		backlog_measured = now;
		return;
	}
	if (!TimestampDifferenceExceeds(backlog_measured, now, every_ms))
		return;
	backlog_measured = now;
	if (!publisher_begin_work())
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "para_sync publisher: SPI_connect failed");
	{
		int64		count;
		TimestampTz oldest;

		if (outbox_backlog_count(&backlog_plan, &count, &oldest))
			publisher_status_set_backlog(count, oldest);
	}
	SPI_finish();
	publisher_end_work();
}

/* The backlog, at most once a second (waiting, backing off, caught up). */
void
publisher_status_refresh_backlog(bool caught_up)
{
	measure_backlog(caught_up, 1000);
}

/*
 * The backlog after a batch: counting the outbox costs time in proportion
 * to it, which a full batch says is large, so then only every ten seconds
 * (a 200k drain spent a sixth of its time counting once a second).
 */
void
publisher_status_refresh_backlog_after(const Batch *b)
{
	measure_backlog(false, b->n >= b->cap ? 10000 : 1000);
}

/* The extension was installed or re-created: plan the count afresh. */
void
publisher_status_forget_backlog_plan(void)
{
	if (backlog_plan != NULL)
		SPI_freeplan(backlog_plan);
	backlog_plan = NULL;
}

/* ---- the worker's reports: one log line per change of the problem, never a flood */

static char last_problem[512] = "";

/*
 * Something keeps the worker from publishing: shown in para_sync.status
 * every time, logged as a WARNING once until it changes or is recovered.
 */
void
publisher_report_problem(const char *msg)
{
	publisher_status_set_error(msg);
	if (strcmp(msg, last_problem) == 0)
		return;
	strlcpy(last_problem, msg, sizeof(last_problem));
	ereport(WARNING,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("para_sync publisher: %s", msg),
			 errdetail("Envelopes stay in para_sync.outbox and are published once NATS accepts them."),
			 errhint("See SELECT * FROM para_sync.status; the para_sync.nats_* settings are reloaded on SIGHUP.")));
}

/* The reported problem is gone: logged once, only if one was reported. */
void
publisher_report_recovered(const char *msg)
{
	if (last_problem[0] == '\0')
		return;
	last_problem[0] = '\0';
	ereport(LOG, (errmsg("para_sync publisher: %s", msg)));
}

bool
publisher_has_problem(void)
{
	return last_problem[0] != '\0';
}

/* Forget the reported problem without a log line (e.g. new NATS settings). */
void
publisher_forget_problem(void)
{
	last_problem[0] = '\0';
}

/*
 * What the worker is doing: its state in para_sync.status and its activity
 * in pg_stat_activity, written only when they change.  activity is a string
 * constant.
 */
void
publisher_set_activity(PsyncWorkerState state, const char *activity)
{
	static PsyncWorkerState last = PSW_STOPPED;
	static const char *last_activity = NULL;	/* a string constant */

	if (state == last && last_activity != NULL && strcmp(activity, last_activity) == 0)
		return;
	last = state;
	last_activity = activity;
	publisher_status_set_state(state);
	pgstat_report_activity(state == PSW_IDLE ? STATE_IDLE : STATE_RUNNING, activity);
}

/*
 * No worker runs (not started yet, terminated and not yet back, or failing
 * to start): what it would show as backlog is the outbox of this database,
 * counted now, as the extension owner (members of pg_monitor may read the
 * view without reading the outbox).  One pass over the outbox per call,
 * like one of the worker's measurements.
 */
static void
count_backlog_now(PsyncShared *snap)
{
	OwnerSwitch sw;
	int64		count;
	TimestampTz oldest;

	catalog_become_owner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "para_sync: SPI_connect failed");
	if (outbox_backlog_count(NULL, &count, &oldest))
	{
		snap->backlog = count;
		snap->oldest_queued_at = oldest;
		snap->backlog_at = GetCurrentTimestamp();
	}
	SPI_finish();
	catalog_restore_user(&sw);
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL || s[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

static Datum
timestamp_or_null(TimestampTz t, bool *isnull)
{
	*isnull = (t == 0);
	return TimestampTzGetDatum(t);
}

/* 0.1 had the first 17 columns; 0.2 adds state_detail and skipped */
#define STATUS_COLS_01 17
#define STATUS_COLS 19

Datum
para_sync_publisher_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[STATUS_COLS];
	bool		nulls[STATUS_COLS];
	PsyncShared snap;
	int			i = 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	if (desc->natts != STATUS_COLS && desc->natts != STATUS_COLS_01)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("para_sync.publisher_status() returns %d columns, expected %d",
						desc->natts, STATUS_COLS),
				 errhint("Run ALTER EXTENSION para_sync UPDATE.")));

	memset(nulls, 0, sizeof(nulls));
	if (publisher_shared == NULL)
	{
		/* not preloaded: no worker can run */
		memset(&snap, 0, sizeof(snap));
		snap.backlog = -1;
		strlcpy(snap.last_error,
				"para_sync is not in shared_preload_libraries: no publisher runs",
				sizeof(snap.last_error));
	}
	else
	{
		SpinLockAcquire(&publisher_shared->mutex);
		memcpy(&snap, publisher_shared, sizeof(snap));
		SpinLockRelease(&publisher_shared->mutex);
		if (snap.pid == 0)
			count_backlog_now(&snap);
	}

	values[i] = Int32GetDatum(snap.pid);
	nulls[i++] = (snap.pid == 0);
	values[i++] = CStringGetTextDatum(worker_state_names[snap.state]);
	values[i++] = CStringGetTextDatum(nats_state_names[snap.nats_state]);
	values[i] = text_or_null(snap.server, &nulls[i]);
	i++;
	values[i++] = CStringGetTextDatum(snap.jetstream ? "jetstream" : "core");
	values[i] = Int64GetDatum(snap.backlog);
	nulls[i++] = (snap.backlog < 0);
	values[i] = timestamp_or_null(snap.oldest_queued_at, &nulls[i]);
	i++;
	if (snap.oldest_queued_at != 0)
		values[i] = DirectFunctionCall2(timestamp_mi,
										TimestampTzGetDatum(GetCurrentTimestamp()),
										TimestampTzGetDatum(snap.oldest_queued_at));
	else
		nulls[i] = true;
	i++;
	values[i] = timestamp_or_null(snap.backlog_at, &nulls[i]);
	i++;
	values[i++] = Int64GetDatum((int64) snap.published);
	values[i++] = Int64GetDatum((int64) snap.batches);
	values[i++] = Int64GetDatum((int64) snap.retries);
	values[i++] = Int64GetDatum((int64) snap.refetches);
	values[i] = text_or_null(snap.last_error, &nulls[i]);
	i++;
	values[i] = timestamp_or_null(snap.last_error_at, &nulls[i]);
	i++;
	values[i] = timestamp_or_null(snap.last_publish_at, &nulls[i]);
	i++;
	values[i] = timestamp_or_null(snap.started_at, &nulls[i]);
	i++;
	if (desc->natts == STATUS_COLS)
	{
		values[i] = text_or_null(snap.detail, &nulls[i]);
		i++;
		values[i++] = Int64GetDatum((int64) snap.skipped);
	}
	Assert(i == desc->natts);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
