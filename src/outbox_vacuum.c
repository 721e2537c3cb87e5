/*
 * outbox_vacuum.c — the publisher vacuums para_sync.outbox itself once it
 * has caught up after removing many rows.
 *
 * Every published envelope is deleted from the outbox, so draining a
 * backlog leaves as many dead heap tuples and dead entries in the outbox's
 * primary key.  Until they are vacuumed, every outbox_read() walks them
 * (the scan from after_key to the end and the wrap-around from the start
 * cover the whole index), which made the commit -> subscriber latency after
 * a 200k backlog several times that on a fresh outbox until autovacuum came
 * around (bench/notes/2026-11-30-outbox-vacuum-latency.md).
 *
 * So the worker counts the rows it removed; when it finds the outbox empty
 * (caught up) and para_sync.vacuum_threshold rows were removed since its
 * last vacuum (or it just started: a crash may have left dead rows behind),
 * and no transaction can see the removed rows any more (waiting at most
 * OUTBOX_VACUUM_MAX_WAIT_MS for that), it runs a plain VACUUM of the outbox
 * between two batches:
 *
 *  - ShareUpdateExclusiveLock only, taken with SKIP_LOCKED (a concurrent
 *    VACUUM or autovacuum of the outbox makes it skip, never wait); no
 *    truncation of empty pages at the end, which would take an
 *    AccessExclusiveLock and block writers; writers are never blocked;
 *  - index cleanup forced on, so the btree's dead entries and empty pages
 *    go even when few heap pages have dead items;
 *  - never throttled (vacuum_cost_delay is ignored): publishing waits for it;
 *  - crash-safe like any VACUUM; it only removes rows already removed and
 *    committed by outbox_remove(), so no guarantee depends on it;
 *  - during it a SIGTERM ends the worker at VACUUM's next interrupt check
 *    (the postmaster restarts it unless the server is shutting down).
 *
 * The outbox family: outbox_append.c (sequences, append, counters),
 * outbox_consume.c (read, remove), outbox_backlog.c (count),
 * outbox_vacuum.c (vacuum after a drain).
 */
#include "para_sync.h"
#include "publisher.h"

#include "access/transam.h"
#include "access/xact.h"
#include "commands/extension.h"
#include "commands/vacuum.h"
#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "postmaster/interrupt.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* rows removed since the last vacuum; -1: none yet since the worker started */
static int64 removed_since_vacuum = -1;

/* every removal so far ran in a transaction older than this */
static FullTransactionId removed_before = {0};

/* since when the vacuum has waited for the removals to be removable (0: not) */
static TimestampTz waiting_since = 0;

/* how long the vacuum waits for the removals to be removable at most */
#define OUTBOX_VACUUM_MAX_WAIT_MS 10000

/* The publisher removed n more rows from the outbox. */
void
outbox_vacuum_count(int64 n)
{
	if (removed_since_vacuum >= 0)
		removed_since_vacuum += n;
	removed_before = ReadNextFullTransactionId();
}

/*
 * Whether every row the publisher removed is dead to every transaction, so
 * that a VACUUM now removes them all.  A writer whose snapshot is older than
 * the last removal (any transaction running while the drain ended) holds
 * them back: a VACUUM then leaves them and their index entries until the
 * next one, and the outbox's primary key stays as large as the backlog was
 * (the shared horizon: conservative, other databases count too).
 */
static bool
removals_removable(void)
{
	TransactionId oldest;

	if (!FullTransactionIdIsValid(removed_before))
		return true;
	oldest = GetOldestNonRemovableTransactionId(NULL);
	return !TransactionIdIsValid(oldest) ||
		TransactionIdFollowsOrEquals(oldest, XidFromFullTransactionId(removed_before));
}

/*
 * Whether the caught-up publisher should vacuum the outbox now: enough rows
 * were removed (or it just started), and the removals are removable, or it
 * has waited OUTBOX_VACUUM_MAX_WAIT_MS for that (a long transaction
 * elsewhere: vacuum what can go).  While it waits, the worker reads and
 * sleeps as usual and asks again.
 */
bool
outbox_vacuum_due(void)
{
	TimestampTz now;

	if (psync_vacuum_threshold <= 0 || ShutdownRequestPending)
		return false;
	if (removed_since_vacuum >= 0 && removed_since_vacuum < psync_vacuum_threshold)
		return false;
	if (removals_removable())
		return true;
	now = GetCurrentTimestamp();
	if (waiting_since == 0)
		waiting_since = now;
	return TimestampDifferenceExceeds(waiting_since, now, OUTBOX_VACUUM_MAX_WAIT_MS);
}

/*
 * VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON, TRUNCATE OFF) para_sync.outbox, run
 * the way a top-level VACUUM statement runs: outside a transaction block,
 * vacuum() commits the transaction started here and runs its own.  Called
 * outside a transaction; returns outside one.  Does nothing when the
 * extension is not installed.
 */
void
outbox_vacuum_run(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "para_sync outbox vacuum",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old_portal = PortalContext;
	MemoryContext old = MemoryContextSwitchTo(cxt);
	int64		removed = removed_since_vacuum;
	TimestampTz start = GetCurrentTimestamp();
	VacuumParams params = {0};
	List	   *rels;
	double		saved_cost_delay;
	struct sigaction caller_sigterm;
	long		secs;
	int			usecs;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("para_sync", true)))
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return;
	}
	/* the list must outlive the transaction that vacuum() commits first */
	MemoryContextSwitchTo(cxt);
	rels = list_make1(makeVacuumRelation(NULL, outbox_relations()->outbox, NIL));

	params.options = VACOPT_VACUUM | VACOPT_SKIP_LOCKED | VACOPT_PROCESS_TOAST;
	params.freeze_min_age = -1;
	params.freeze_table_age = -1;
	params.multixact_freeze_min_age = -1;
	params.multixact_freeze_table_age = -1;
	params.is_wraparound = false;
	params.log_min_duration = -1;
	params.index_cleanup = VACOPTVALUE_ENABLED;
	params.truncate = VACOPTVALUE_DISABLED;
	params.nworkers = -1;

	/* vacuum() makes its working context under PortalContext */
	PortalContext = cxt;
	/* never throttled by a vacuum_cost_delay meant for manual VACUUMs: we are not publishing */
	saved_cost_delay = VacuumCostDelay;
	VacuumCostDelay = 0;
	/*
	 * VACUUM checks for interrupts, not for ShutdownRequestPending: SIGTERM
	 * goes to die() meanwhile, and back to the caller's handler after.
	 */
	sigaction(SIGTERM, NULL, &caller_sigterm);
	pqsignal(SIGTERM, die);
	if (!ShutdownRequestPending)
		vacuum(rels, &params, NULL, true);
	sigaction(SIGTERM, &caller_sigterm, NULL);
	VacuumCostDelay = saved_cost_delay;
	PortalContext = old_portal;
	CommitTransactionCommand();

	removed_since_vacuum = 0;
	waiting_since = 0;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
	/* a pause of publishing that long deserves a line in the log */
	ereport(secs >= 1 ? LOG : DEBUG1,
			(errmsg("para_sync publisher: vacuumed para_sync.outbox in %ld ms after removing " INT64_FORMAT " rows",
					secs * 1000 + usecs / 1000, Max(removed, 0))));
}
