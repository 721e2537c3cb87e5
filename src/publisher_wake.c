/*
 * publisher_wake.c — how committing writers wake the publisher: at the
 * commit of a transaction that wrote envelopes (capture.c sets
 * para_sync_xact_wrote_envelopes), an XactCallback counts the commit and
 * sets the worker's latch, unless NATS is failing or the worker publishes
 * another database.  The latch, the count and the switch live in the
 * publisher's shared memory (publisher_status.c); the worker's loop
 * (publisher.c) turns the switch and reads the count.
 */
#include "para_sync.h"
#include "publisher.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/latch.h"

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
publisher_wake_on_commit(bool on)
{
	pg_atomic_write_u32(&publisher_shared->wake_on_commit, on ? 1 : 0);
	pg_memory_barrier();
}

/*
 * How many commits woke the worker so far.  The worker reads it after
 * turning wake-ups on and before a read's snapshot, and again after the
 * batch (or an empty read): equal, and no commit that wakes the worker came
 * after that snapshot (each counts itself before it sets the latch).  Not
 * counted: commits while wake-ups are off (NATS failing; the retry reads
 * them), commits in other databases (not the worker's outbox) and COMMIT
 * PREPARED (the fallback poll finds it).  Unlike the latch, which waits
 * inside PostgreSQL (a lock, a buffer, the standby slots) may reset, the
 * count is never lost.
 */
uint64
publisher_wake_count(void)
{
	return pg_atomic_read_u64(&publisher_shared->commit_wakes);
}

/*
 * The database the worker publishes from, once it is connected to it
 * (InvalidOid when no worker runs): only commits there wake it.
 */
void
publisher_wake_set_database(Oid database)
{
	pg_atomic_write_u32(&publisher_shared->database, database);
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
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (para_sync_xact_wrote_envelopes && publisher_shared != NULL)
			{
				Latch	   *latch = ((volatile PsyncShared *) publisher_shared)->latch;

				pg_memory_barrier();
				if (latch != NULL &&
					pg_atomic_read_u32(&publisher_shared->database) == MyDatabaseId &&
					pg_atomic_read_u32(&publisher_shared->wake_on_commit) != 0)
				{
					pg_atomic_fetch_add_u64(&publisher_shared->commit_wakes, 1);
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

/* Called from _PG_init (publisher_init()), with or without preloading. */
void
publisher_wake_init(void)
{
	RegisterXactCallback(wake_xact_callback, NULL);
}
