/*
 * status.c — the publisher's shared memory: what the background worker is
 * doing (para_sync.status), and its latch, which committing writers set.
 *
 * Owns: the shmem request/startup hooks, the commit-time wake-up of the
 * worker (an XactCallback that counts the commit and SetLatch()es it when
 * the transaction wrote envelopes, see capture.c, unless NATS is failing), and
 * para_sync.publisher_status(), the function behind the para_sync.status
 * view.  Reading the view costs a spinlock and a memcpy: the worker measures
 * the backlog itself, at most once a second.  While no worker runs, the
 * view counts the outbox itself (outbox_backlog_count(), the worker's query).
 */
#include "para_sync.h"
#include "publisher.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(para_sync_publisher_status);

PsyncShared *psync_shared = NULL;

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
status_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PsyncShared)));
}

static void
status_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	psync_shared = ShmemInitStruct("para_sync publisher", sizeof(PsyncShared),
								   &found);
	if (!found)
	{
		memset(psync_shared, 0, sizeof(PsyncShared));
		SpinLockInit(&psync_shared->mutex);
		pg_atomic_init_u32(&psync_shared->wake_on_commit, 1);
		pg_atomic_init_u64(&psync_shared->commit_wakes, 0);
		pg_atomic_init_u32(&psync_shared->database, InvalidOid);
		psync_shared->backlog = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Whether commits wake the worker: not while it backs off after a NATS
 * failure or waits for nats.c to reconnect (it would only go back to sleep,
 * once per commit, each costing the committing writer a signal; the retry,
 * or nats.c's reconnect callback, wakes it).  The worker turns this on
 * again before its next read takes a snapshot, and a writer looks at it
 * after its commit is visible, each behind a full barrier: either that read
 * sees the commit or the writer wakes the worker.
 */
void
status_wake_on_commit(bool on)
{
	pg_atomic_write_u32(&psync_shared->wake_on_commit, on ? 1 : 0);
	pg_memory_barrier();
}

/*
 * How many commits woke the worker so far.  The worker reads it after
 * turning wake-ups on and before a read's snapshot, and again after the
 * batch (or an empty read): equal, and no commit that wakes the worker came
 * after that snapshot (each counts itself before it sets the latch).  Not
 * counted: commits while wake-ups are off (NATS failing; the retry reads
 * them), commits in other databases (not the worker's outbox) and COMMIT
 * PREPARED (the fallback poll finds it).  Unlike the
 * latch, which waits inside PostgreSQL (a lock, a buffer, the standby
 * slots) may reset, the count is never lost.
 */
uint64
status_commit_wakes(void)
{
	return pg_atomic_read_u64(&psync_shared->commit_wakes);
}

/*
 * The database the worker publishes from, once it is connected to it
 * (InvalidOid when no worker runs): only commits there wake it.
 */
void
status_set_database(Oid database)
{
	pg_atomic_write_u32(&psync_shared->database, database);
}

/*
 * Commit of a transaction that wrote envelopes in the worker's database:
 * count it and wake the worker, unless NATS is failing.  (Envelopes written
 * in another database with the extension are not the worker's to publish:
 * docs/publisher.md, para_sync.database.)  Runs after the commit is visible
 * to new snapshots.  A stale latch pointer (worker just exited) is harmless:
 * SetLatch on a latch nobody waits on only sets a flag.
 */
static void
status_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (para_sync_xact_wrote_envelopes && psync_shared != NULL)
			{
				Latch	   *latch = ((volatile PsyncShared *) psync_shared)->latch;

				pg_memory_barrier();
				if (latch != NULL &&
					pg_atomic_read_u32(&psync_shared->database) == MyDatabaseId &&
					pg_atomic_read_u32(&psync_shared->wake_on_commit) != 0)
				{
					pg_atomic_fetch_add_u64(&psync_shared->commit_wakes, 1);
					SetLatch(latch);
				}
			}
			para_sync_xact_wrote_envelopes = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is found by the fallback poll */
			para_sync_xact_wrote_envelopes = false;
			break;
		default:
			break;
	}
}

/* Called from _PG_init. */
void
status_shmem_init(void)
{
	RegisterXactCallback(status_xact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = status_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = status_shmem_startup;
}

/* The worker announces itself (latch, pid) and withdraws at exit. */
static void
status_unregister_worker(int code, Datum arg)
{
	status_set_database(InvalidOid);
	SpinLockAcquire(&psync_shared->mutex);
	psync_shared->latch = NULL;
	psync_shared->pid = 0;
	psync_shared->state = PSW_STOPPED;
	psync_shared->nats_state = PSN_DISCONNECTED;
	psync_shared->server[0] = '\0';
	/* no longer measured: the view counts the outbox until a worker runs */
	psync_shared->backlog = -1;
	psync_shared->oldest_queued_at = 0;
	psync_shared->backlog_at = 0;
	SpinLockRelease(&psync_shared->mutex);
}

void
status_register_worker(void)
{
	SpinLockAcquire(&psync_shared->mutex);
	psync_shared->latch = MyLatch;
	psync_shared->pid = MyProcPid;
	psync_shared->state = PSW_STARTING;
	psync_shared->detail[0] = '\0';
	psync_shared->nats_state = PSN_DISCONNECTED;
	psync_shared->started_at = GetCurrentTimestamp();
	psync_shared->backlog = -1;
	SpinLockRelease(&psync_shared->mutex);
	before_shmem_exit(status_unregister_worker, (Datum) 0);
}

void
status_set_state(PsyncWorkerState state)
{
	SpinLockAcquire(&psync_shared->mutex);
	psync_shared->state = state;
	psync_shared->jetstream = psync_jetstream_stream[0] != '\0';
	SpinLockRelease(&psync_shared->mutex);
}

void
status_set_nats(PsyncNatsState state, const char *server)
{
	SpinLockAcquire(&psync_shared->mutex);
	psync_shared->nats_state = state;
	if (server != NULL)
		strlcpy(psync_shared->server, server, sizeof(psync_shared->server));
	SpinLockRelease(&psync_shared->mutex);
}

void
status_set_error(const char *error)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&psync_shared->mutex);
	strlcpy(psync_shared->last_error, error, sizeof(psync_shared->last_error));
	psync_shared->last_error_at = now;
	SpinLockRelease(&psync_shared->mutex);
}

void
status_set_detail(const char *detail)
{
	SpinLockAcquire(&psync_shared->mutex);
	strlcpy(psync_shared->detail, detail, sizeof(psync_shared->detail));
	SpinLockRelease(&psync_shared->mutex);
}

void
status_count_batch(uint64 published, uint64 refetches, uint64 skipped)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&psync_shared->mutex);
	psync_shared->published += published;
	psync_shared->refetches += refetches;
	psync_shared->skipped += skipped;
	psync_shared->batches++;
	psync_shared->last_publish_at = now;
	SpinLockRelease(&psync_shared->mutex);
}

void
status_count_retry(void)
{
	SpinLockAcquire(&psync_shared->mutex);
	psync_shared->retries++;
	SpinLockRelease(&psync_shared->mutex);
}

void
status_set_backlog(int64 backlog, TimestampTz oldest)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&psync_shared->mutex);
	psync_shared->backlog = backlog;
	psync_shared->oldest_queued_at = oldest;
	psync_shared->backlog_at = now;
	SpinLockRelease(&psync_shared->mutex);
}

/* A batch was read: at least its rows are unconfirmed. */
void
status_backlog_at_least(int64 n)
{
	SpinLockAcquire(&psync_shared->mutex);
	if (psync_shared->backlog < n)
	{
		psync_shared->backlog = n;
		psync_shared->backlog_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&psync_shared->mutex);
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
	if (psync_shared == NULL)
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
		SpinLockAcquire(&psync_shared->mutex);
		memcpy(&snap, psync_shared, sizeof(snap));
		SpinLockRelease(&psync_shared->mutex);
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
