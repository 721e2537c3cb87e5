/*
 * publisher.c — the publisher's loop: what the background worker
 * (publisher_worker.c) does from its setup until SIGTERM.
 *
 * It is one of the publisher*.c family, whose files publisher.h lists; the
 * settings are defined in settings.c.
 *
 * The worker sleeps on its latch, which every transaction that wrote
 * envelopes sets at commit unless NATS is failing (publisher_wake.c); a
 * slow poll (para_sync.poll_interval) is only a fallback, e.g. for COMMIT
 * PREPARED.  Every iteration of the loop runs the same phases, in a memory
 * context reset at its start:
 *
 *   connect  (only when not connected: the extension exists, NATS connects)
 *   read     up to para_sync.batch_size / para_sync.batch_bytes committed
 *            envelopes in per-key sequence order, from the key of the
 *            previous batch on and wrapping (publisher_batch.c,
 *            outbox_consume.c), in a short transaction; then flush WAL
 *            up to the latest commit of its writers, so only commits
 *            durable on disk go out
 *            (synchronous_commit = off too)
 *   standby  wait until every slot of para_sync.standby_slots confirmed
 *            that WAL (publisher_standby.c)
 *   publish  to <subject_prefix>.<key> (or <subject_prefix>.<sync name>.<key>
 *            for a table in the 'table' subject layout) (publisher_nats.c)
 *   read-ahead  while NATS works on it (only after a full batch): the next
 *            batch, from the rows after this batch's last (key, sequence),
 *            without wrapping around;
 *            it is the next iteration's batch if this one succeeds, and is
 *            dropped otherwise
 *   confirm  wait for NATS to confirm the batch (flush / every ack)
 *   send-ahead  the read-ahead batch goes out now, so that NATS works on it
 *            during the remove (still one unconfirmed batch at a time)
 *   remove   each key's rows up to its last published sequence, recording it
 *            in para_sync.counters (outbox_consume.c), in a short transaction
 *   gather   (only with para_sync.batch_delay, after a batch that took every
 *            committed envelope) sleep that long, so that the next batch
 *            carries the commits made meanwhile
 *   caught-up  after such a batch, sleep at once unless the count of
 *            commit wake-ups (publisher_wake_count()) changed since
 *            before the read (no read that would find nothing)
 *   vacuum   (only when a read found nothing) the outbox, once
 *            para_sync.vacuum_threshold rows were removed since the last
 *            time (outbox_vacuum.c)
 *
 * Any failure takes the one backoff path: log once per change of the
 * problem, wait (doubling), and read the same rows again, so nothing is
 * lost or reordered (an envelope may go out twice: at least once).
 */
#include "para_sync.h"
#include "publisher.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* ---- one batch: read, wait for standbys, publish, remove */

static MemoryContext loop_cxt = NULL;	/* reset at the start of every iteration */
static uint64 wakes_before_read = 0;	/* publisher_wake_count() before the read */
static char *after_key = NULL;	/* in TopMemoryContext */

static Oid	extension_oid = InvalidOid;
static Oid	extension_outbox = InvalidOid;	/* its para_sync.outbox when looked up */

/*
 * Start a transaction with a snapshot.  false (and no transaction) when the
 * extension is not installed in this database.  Looking the extension up is
 * a catalog scan, twice per batch; while para_sync's tables stay resolved
 * as they were when it was last looked up (DROP EXTENSION invalidates them,
 * and starting the transaction took in every invalidation) it is the same
 * extension as before.
 */
bool
publisher_begin_work(void)
{
	Oid			ext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (OidIsValid(extension_oid) && outbox_resolved() == extension_outbox)
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		return true;
	}
	ext = get_extension_oid("para_sync", true);
	if (!OidIsValid(ext))
	{
		CommitTransactionCommand();
		extension_oid = InvalidOid;
		return false;
	}
	if (ext != extension_oid)
	{
		/* installed, or dropped and re-created: start afresh */
		publisher_status_forget_backlog_plan();
		extension_oid = ext;
	}
	extension_outbox = outbox_relations()->outbox;
	PushActiveSnapshot(GetTransactionSnapshot());
	return true;
}

void
publisher_end_work(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(loop_cxt);
}

/* Did a commit wake the worker since this iteration began (before its read)? */
static bool
commits_since_read(void)
{
	return publisher_wake_count() != wakes_before_read;
}

/*
 * Wait until every slot of para_sync.standby_slots confirmed the batch's WAL
 * as flushed.  false: shutdown or reload came first (the batch is read again).
 */
static bool
phase_wait_standbys(Batch *b)
{
	char		reason[256];
	bool		reported = false;

	for (;;)
	{
		StandbyWait w = publisher_standby_confirmed(b->wal_upto, reason, sizeof(reason));

		if (w == STANDBY_CONFIRMED)
			break;
		publisher_set_activity(PSW_WAITING_STANDBY, "para_sync publisher: waiting for standbys to confirm WAL");
		publisher_status_set_detail(reason);
		if (w == STANDBY_PROBLEM && !reported)
		{
			publisher_report_problem(reason);
			reported = true;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 w == STANDBY_PROBLEM ? 200 : 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending || ConfigReloadPending)
			return false;
		publisher_status_refresh_backlog(false);
	}
	publisher_status_set_detail("");
	if (reported)
		publisher_report_recovered("the standby slots confirmed the WAL; publishing resumed");
	return true;
}

/* Remove the published rows: each key's rows up to its last sequence. */
static void
phase_remove(Batch *b)
{
	OutboxAck  *acks = palloc(sizeof(OutboxAck) * b->n);
	int			n = 0;

	for (int i = 0; i < b->n; i++)
	{
		PsyncOutMsg *m = &b->msgs[i];

		/* consecutive rows of a key: one pair, with the rows' places */
		if (n > 0 && m->key_len == b->msgs[i - 1].key_len &&
			memcmp(m->key, b->msgs[i - 1].key, m->key_len) == 0)
		{
			acks[n - 1].upto = m->seq;
			acks[n - 1].ntids++;
			continue;
		}
		acks[n].key = b->keys[i];
		acks[n].upto = m->seq;
		acks[n].tids = &b->tids[i];
		acks[n].ntids = 1;
		n++;
	}
	if (!publisher_begin_work())
		return;					/* dropped meanwhile: nothing left to remove */
	outbox_remove(acks, n);
	publisher_end_work();
}

/*
 * para_sync.batch_delay: after a batch that took every committed envelope,
 * let commits gather for a moment before the next read.  Under sustained
 * traffic a batch then carries more envelopes, and each batch costs the
 * worker two transactions and a NATS round trip, and nats-server the same
 * round trip (bench/notes/2026-12-01-publisher-cost-batch-delay.md).
 * Commits do not cut the pause short; after an empty read the worker sleeps
 * on its latch and a commit wakes it at once, so an isolated commit is never
 * delayed.  pg_usleep ends early on a signal.
 */
static void
phase_gather(const Batch *b)
{
	if (psync_batch_delay_us <= 0 || !publisher_batch_took_all(b))
		return;
	publisher_set_activity(PSW_IDLE, "para_sync publisher: letting commits gather (para_sync.batch_delay)");
	pg_usleep(psync_batch_delay_us);
}

/*
 * After a batch that took every envelope committed when it was read: did a
 * commit come since?  Each commit after that read's snapshot counts itself
 * (publisher_wake_count()) before it sets the latch, so with the count
 * unchanged nothing is left to read, and the worker sleeps without the read
 * that would find nothing (at low rates, one transaction per batch).  Not
 * when the outbox is due for its vacuum, which follows an empty read, nor
 * with a signal pending.
 */
static bool
phase_caught_up(const Batch *b)
{
	if (!publisher_batch_took_all(b) || outbox_vacuum_due() ||
		ShutdownRequestPending || ConfigReloadPending || commits_since_read())
		return false;
	publisher_status_refresh_backlog(true);
	publisher_set_activity(PSW_IDLE, "para_sync publisher: waiting for commits");
	return true;
}

/* Caught up: vacuum the dead rows the removals left behind. */
static void
phase_vacuum(void)
{
	publisher_set_activity(PSW_VACUUMING, "para_sync publisher: vacuuming para_sync.outbox");
	outbox_vacuum_run();
	MemoryContextSwitchTo(loop_cxt);
}

static void
remember_position(Batch *b)
{
	char	   *next = MemoryContextStrdup(TopMemoryContext, b->msgs[b->n - 1].key);

	pfree(after_key);
	after_key = next;
}

/* ---- the loop */

/* What an iteration asks the loop to do next. */
typedef enum Next
{
	NEXT_NOW,					/* more work: go on without waiting */
	NEXT_CAUGHT_UP,				/* published all there was: sleep like NEXT_WAIT */
	NEXT_WAIT,					/* sleep until a commit, an event or the poll */
	NEXT_BACKOFF				/* something failed (errbuf): back off */
} Next;

static char errbuf[512];

/* Phase: make sure NATS is usable.  NEXT_NOW when connected. */
static Next
phase_connect(void)
{
	char		safe[512];

	if (publisher_nats_is_connected())
		return NEXT_NOW;
	if (!publisher_nats_is_closed())
	{
		/* nats.c is reconnecting; its callback wakes us, commits need not */
		publisher_wake_on_commit(false);
		publisher_set_activity(PSW_CONNECTING, "para_sync publisher: waiting for NATS to come back");
		publisher_status_refresh_backlog(false);
		return NEXT_WAIT;
	}
	publisher_set_activity(PSW_CONNECTING, "para_sync publisher: connecting to NATS");
	publisher_status_set_nats(PSN_CONNECTING, "");
	if (!publisher_nats_connect(errbuf, sizeof(errbuf)))
		return NEXT_BACKOFF;
	publisher_nats_strip_credentials(psync_nats_url, safe, sizeof(safe));
	snprintf(errbuf, sizeof(errbuf), "connected to NATS at %s", safe);
	if (publisher_has_problem())
		publisher_report_recovered(errbuf);
	else
		ereport(LOG, (errmsg("para_sync publisher: %s", errbuf)));
	return NEXT_NOW;
}

static Next
no_extension(void)
{
	publisher_set_activity(PSW_NO_EXTENSION, "para_sync publisher: waiting for CREATE EXTENSION para_sync");
	publisher_status_set_backlog(-1, 0);
	publisher_nats_disconnect();
	return NEXT_WAIT;
}

/* Send b, shrunk to the server's max_payload.  false: failed (errbuf). */
static bool
send_batch(Batch *b)
{
	publisher_batch_shrink(b);
	return publisher_nats_send_batch(b->msgs, b->n, errbuf,
									 sizeof(errbuf)) == PSP_OK;
}

/*
 * Once b is confirmed, send the read-ahead batch right away, so that NATS
 * works on it while b is removed: still one unconfirmed batch at a time, in
 * the order read.  Not before the standby slots confirmed its WAL (the next
 * iteration waits for them).  false: sending failed (errbuf); the batch is
 * dropped, to be read and sent again after the back-off.
 */
static bool
phase_send_ahead(void)
{
	char		reason[256];
	Batch	   *ahead = publisher_batch_ahead();

	if (ahead == NULL)
		return true;
	if (psync_standby_slots[0] != '\0' &&
		publisher_standby_confirmed(ahead->wal_upto, reason, sizeof(reason)) != STANDBY_CONFIRMED)
		return true;
	if (!send_batch(ahead))
	{
		publisher_batch_drop_ahead();
		return false;
	}
	ahead->sent = true;
	return true;
}

/* Phase: may this iteration publish?  NEXT_NOW when NATS is connected. */
static Next
phase_ready(void)
{
	if (RecoveryInProgress())
	{
		/* not reached with BgWorkerStart_RecoveryFinished; never publish on a standby */
		publisher_set_activity(PSW_RECOVERY, "para_sync publisher: waiting for promotion");
		return NEXT_WAIT;
	}
	if (publisher_nats_is_connected())
		return NEXT_NOW;
	/* connect only once there is something to publish from */
	if (!publisher_begin_work())
		return no_extension();
	publisher_end_work();
	return phase_connect();
}

/* The read found nothing: vacuum when due, then wait unless a commit came. */
static Next
phase_empty(void)
{
	publisher_status_refresh_backlog(true);
	if (outbox_vacuum_due())
		phase_vacuum();
	pgstat_report_stat(false);
	publisher_set_activity(PSW_IDLE, "para_sync publisher: waiting for commits");
	/* a commit after the snapshot whose wake-up a wait inside PostgreSQL consumed */
	return commits_since_read() ? NEXT_NOW : NEXT_WAIT;
}

/* b is confirmed: remove it, count it, and go on after it next time. */
static void
phase_done(Batch *b)
{
	publisher_set_activity(PSW_ACKING, "para_sync publisher: removing published envelopes");
	phase_remove(b);
	publisher_status_count_batch(b->n - b->skipped, b->refetched, b->skipped);
	stat_tables_count_batch(b->msgs, b->n);
	outbox_vacuum_count(b->n);
	remember_position(b);
	publisher_status_refresh_backlog_after(b);
	/* a worker's table statistics go out only when it asks (at most once a second): autovacuum needs its deletes */
	pgstat_report_stat(false);
}

/*
 * One iteration: check the server's role and the extension, connect, read a
 * batch, wait for the standbys, publish, remove, let commits gather, and
 * sleep unless a commit came meanwhile.
 */
static Next
run_iteration(void)
{
	Batch		b;
	Next		next;
	bool		sent_ahead;

	next = phase_ready();
	if (next != NEXT_NOW)
		return next;

	publisher_set_activity(PSW_READING, "para_sync publisher: reading the outbox");
	if (!publisher_batch_read(&b, after_key))
		return no_extension();
	if (b.n == 0)
		return phase_empty();
	publisher_status_backlog_at_least(b.n);

	/* a read-ahead batch went out already, once the standbys had its WAL */
	if (!b.sent && psync_standby_slots[0] != '\0' && !phase_wait_standbys(&b))
		return NEXT_NOW;
	publisher_set_activity(PSW_PUBLISHING, "para_sync publisher: publishing, waiting for NATS to confirm");
	if (!b.sent && !send_batch(&b))
		return NEXT_BACKOFF;
	publisher_batch_read_ahead(&b);
	if (publisher_nats_confirm_batch(b.msgs, b.n, errbuf,
									 sizeof(errbuf)) != PSP_OK)
		return NEXT_BACKOFF;
	sent_ahead = phase_send_ahead();

	phase_done(&b);
	if (!sent_ahead)
		return NEXT_BACKOFF;
	phase_gather(&b);
	return phase_caught_up(&b) ? NEXT_CAUGHT_UP : NEXT_NOW;
}

/* ---- the loop */

static long backoff_ms = 0;		/* the last back-off; 0: none since success */
static TimestampTz retry_at = 0;	/* backing off until then; 0: not */

/* The loop's state; called once, from the worker's setup. */
void
publisher_loop_init(void)
{
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "para_sync publisher loop",
									 ALLOCSET_DEFAULT_SIZES);
	publisher_batch_init();
	after_key = MemoryContextStrdup(TopMemoryContext, "");
}

/* Before a pass: a reload (SIGHUP), an event from nats.c. */
static void
take_events(void)
{
	if (ConfigReloadPending)
	{
		publisher_batch_drop_ahead();
		publisher_reload_settings();
		backoff_ms = 0;
		retry_at = 0;
	}
	if (publisher_nats_poll_events(errbuf, sizeof(errbuf)))
	{
		publisher_batch_drop_ahead();
		if (publisher_nats_is_connected())
			publisher_report_recovered(errbuf);
		else
		{
			publisher_status_count_retry();
			publisher_report_problem(errbuf);
		}
	}
}

/* One pass: an iteration, or the rest of a back-off (*timeout set). */
static Next
run_pass(long *timeout)
{
	if (retry_at != 0 && GetCurrentTimestamp() < retry_at)
	{
		/* woken while backing off (a NATS event, a commit just before it): sleep the rest */
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), retry_at, &secs, &usecs);
		*timeout = secs * 1000 + usecs / 1000 + 1;
		publisher_status_refresh_backlog(false);
		return NEXT_WAIT;
	}
	retry_at = 0;
	/* before this iteration reads: commits from now on wake us */
	publisher_wake_on_commit(true);
	wakes_before_read = publisher_wake_count();
	return run_iteration();
}

/* A pass failed (errbuf): back off, doubling.  Returns the wait in ms. */
static long
back_off(void)
{
	publisher_report_problem(errbuf);
	publisher_status_count_retry();
	backoff_ms = backoff_ms <= 0 ? psync_backoff_min_ms :
		Min(backoff_ms * 2, (long) psync_backoff_max_ms);
	retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
	/* the retry reads whatever was committed meanwhile */
	publisher_wake_on_commit(false);
	publisher_set_activity(PSW_BACKOFF, "para_sync publisher: backing off after a NATS failure");
	publisher_status_refresh_backlog(false);
	return backoff_ms;
}

/* After a pass: how long to sleep (ms, 0: not at) given what it asked for. */
static long
after_pass(Next next, long timeout)
{
	if (next != NEXT_NOW)
		publisher_batch_drop_ahead();
	if (next == NEXT_BACKOFF)
		return back_off();
	if (next == NEXT_NOW || next == NEXT_CAUGHT_UP)
	{
		if (backoff_ms != 0 && publisher_nats_is_connected())
		{
			publisher_report_recovered("NATS accepts envelopes again; publishing resumed");
			backoff_ms = 0;
		}
		if (next == NEXT_NOW)
			return 0;
	}
	return timeout;
}

/*
 * The loop: one pass after another, each in loop_cxt, sleeping on the latch
 * in between, until SIGTERM (within a second).
 */
void
publisher_loop(void)
{
	while (!ShutdownRequestPending)
	{
		long		timeout = psync_poll_interval_ms;
		Next		next;

		/*
		 * Whatever sets the latch from here on wakes the wait below: a commit
		 * before this is visible to this pass's read, and a signal or NATS
		 * event before it is seen by the checks that follow.
		 */
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			break;
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		take_events();
		next = run_pass(&timeout);
		MemoryContextSwitchTo(TopMemoryContext);
		timeout = after_pass(next, timeout);

		/* a wait inside PostgreSQL may have consumed a signal's latch */
		if (timeout > 0 && !ShutdownRequestPending && !ConfigReloadPending)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
}
