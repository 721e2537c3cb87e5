/*
 * outbox_batch.c — the capture trigger's envelopes of a statement, numbered
 * and written to the outbox as a set.
 *
 * The capture trigger (capture.c) decides each event's change when it
 * fires, as before: what to publish, under which key, with which content.
 * It no longer numbers and writes it there: the change waits here, pending,
 * and the statement's pending changes are numbered together and written
 * together when the statement ends (the executor's and the utility's
 * finish, outbox_batch_init()):
 *
 *  - their keys' last sequences come from the sequence cache (the first
 *    pending change of a key, by the version it replaced: seq_cache.c) or,
 *    for the rest, from one merge of the sorted keys with the outbox's and
 *    the counters' primary keys (outbox_last_sequences(), SnapshotSelf),
 *    not from two index descents per change;
 *  - a key's changes are numbered on from there in the order they were
 *    captured, which is the order the row path numbered them in;
 *  - the rows go in with heap_multi_insert() (outbox_append_rows()), each
 *    under the command its change was captured in, as the row-by-row
 *    writes had it: a snapshot taken later in the transaction (a query run
 *    by a trigger of the user's, snapshot() there) sees a change's envelope
 *    exactly when it sees the row change itself.
 *
 * Why numbering later gives the same sequences as numbering at each event:
 * a key's sequences are taken by whoever holds the key (the synced table's
 * row lock or unique check, capture.c), and this transaction holds every
 * pending key until it ends; within the transaction everything that reads
 * or writes a key's sequence (every append, every look-up, the one-pass
 * reads of lifecycle.c, snapshot()) goes through outbox_append.c or
 * outbox_name_seqs.c, which write what is pending first
 * (outbox_batch_flush(true)).  (A query of para_sync.outbox itself, run by
 * a trigger of the user's between two capture events, does not see the
 * changes of that statement captured so far; with the row-by-row writes it
 * did.  snapshot() there does: it reads through outbox_append.c.)  A change of the command id between two
 * events (another statement ran: a trigger's, a foreign-key action's)
 * writes what is pending before the later event is added, so pending
 * changes are always of one statement's events in a row.  What is pending
 * is written before the transaction commits or prepares (at the latest in
 * its pre-commit callback) and forgotten when it aborts.
 *
 * Subtransactions.  Rows are written in the current subtransaction, and a
 * change pending for an outer one (its owner) must not be lost with an
 * inner one that aborts.  A user's trigger can start a subtransaction
 * (PL/pgSQL's exception block) between two events of a statement, while
 * changes are pending, and write there what forces them out.  So:
 *  - a flush that is not forced writes only when the current
 *    subtransaction owns every pending change, otherwise it waits;
 *  - a forced flush writes them all; those owned by an outer
 *    subtransaction are also kept, lent to the current one (its tag); they
 *    go back to pending if the borrower aborts (its rows are gone: they are
 *    numbered and written again, later), and pass to its parent if it
 *    commits, until the borrower is their owner (then they are its own:
 *    forgotten here);
 *  - a subtransaction that aborts forgets the pending changes it owns
 *    (the events of a statement rolled back); one that commits hands them
 *    to its parent.  A row's holder vouches for the sequence cache only
 *    when the subtransaction writing the row created it (outbox_append.c),
 *    so a lent row's key is forgotten by the cache, never misremembered.
 */
#include "para_sync.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/* One change captured and not yet written. */
typedef struct PendingChange
{
	text	   *key;
	char	   *value;			/* the encoded value; NULL: a delete */
	int			value_len;
	const char *schema_version;
	const char *scope;			/* NULL: none */
	psync_op	op;
	char		layout;
	uint64		txid;
	FullTransactionId replaced; /* creator of the version it replaced, or invalid */
	TransactionId holder_xmin;	/* see OutboxNewRow */
	FullTransactionId holder_writer;
	SubTransactionId owner;		/* the subtransaction whose change it is */
	SubTransactionId tag;		/* lent: the subtransaction that wrote it */
	uint64		order;			/* when it was captured */
	CommandId	cid;			/* the command it was captured in */
} PendingChange;

typedef struct ChangeList
{
	PendingChange *items;
	int			n;
	int			cap;
} ChangeList;

/* pending changes: written at most this many (or work_mem) at a time */
#define BATCH_MAX_CHANGES 10000

static MemoryContext batch_cxt = NULL;
static ChangeList pending;
static ChangeList lent;
static Size pending_bytes = 0;
static CommandId pending_cid = InvalidCommandId;
static uint64 next_order = 0;
static bool flushing = false;
static const char *known_version = NULL;	/* in batch_cxt */

static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static void
list_push(ChangeList *l, const PendingChange *c)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap == 0 ? 256 : l->cap * 2;
		l->items = l->items == NULL ?
			MemoryContextAlloc(batch_cxt, sizeof(PendingChange) * l->cap) :
			repalloc(l->items, sizeof(PendingChange) * l->cap);
	}
	l->items[l->n++] = *c;
}

/* Forget everything (the transaction ended; batch_cxt went with it). */
static void
batch_reset(void)
{
	batch_cxt = NULL;
	memset(&pending, 0, sizeof(pending));
	memset(&lent, 0, sizeof(lent));
	pending_bytes = 0;
	pending_cid = InvalidCommandId;
	flushing = false;
	known_version = NULL;
}

/*
 * Add one change of the capture trigger (capture.c): key, its encoded value
 * (NULL: a delete), its envelope's fields; replaced and holder as for
 * outbox_append().  Written by the statement's end.
 */
void
outbox_batch_add(const char *key, int key_len, StringInfo value,
				 const char *schema_version, psync_op op, uint64 txid, char layout,
				 const char *scope, HeapTuple replaced, HeapTuple holder)
{
	PendingChange c;
	OutboxNewRow	row;
	MemoryContext old;

	/* a change of command: another statement ran since; write its changes */
	if (pending.n > 0 && pending_cid != GetCurrentCommandId(false))
		outbox_batch_flush(true);
	if (batch_cxt == NULL)
		batch_cxt = AllocSetContextCreate(TopTransactionContext, "para_sync outbox batch",
										  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(batch_cxt);
	c.key = cstring_to_text_with_len(key, key_len);
	c.value = NULL;
	c.value_len = value ? value->len : 0;
	if (value)
		c.value = memcpy(palloc(value->len + 1), value->data, value->len + 1);
	/* changes share their table's schema version: one copy per version */
	if (known_version == NULL || strcmp(known_version, schema_version) != 0)
		known_version = pstrdup(schema_version);
	c.schema_version = known_version;
	c.scope = scope ? pstrdup(scope) : NULL;
	MemoryContextSwitchTo(old);
	c.op = op;
	c.layout = layout;
	c.txid = txid;
	c.replaced = replaced ? outbox_version_writer(replaced) : InvalidFullTransactionId;
	outbox_row_holder(&row, holder);
	c.holder_xmin = row.holder_xmin;
	c.holder_writer = row.holder_writer;
	c.owner = GetCurrentSubTransactionId();
	c.tag = InvalidSubTransactionId;
	c.order = next_order++;
	/* used, as writing the row now would: a later statement sees it */
	c.cid = GetCurrentCommandId(true);
	list_push(&pending, &c);
	pending_cid = GetCurrentCommandId(false);
	pending_bytes += VARSIZE_ANY(c.key) + c.value_len + 64;
	if (pending.n >= BATCH_MAX_CHANGES || pending_bytes > (Size) work_mem * 1024)
		outbox_batch_flush(true);
}

/* pending changes by key, then in the order they were captured */
typedef struct KeyedChange
{
	const PendingChange *change;
	int			idx;
} KeyedChange;

static int
keyed_cmp(const void *a, const void *b)
{
	const KeyedChange *x = a;
	const KeyedChange *y = b;
	int			c = key_cmp(VARDATA_ANY(x->change->key), VARSIZE_ANY_EXHDR(x->change->key),
							VARDATA_ANY(y->change->key), VARSIZE_ANY_EXHDR(y->change->key));

	if (c != 0)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * seqs[i] := the sequence of changes[i]: each key's last sequence (from the
 * cache by its first change's replaced version, else read for all such
 * keys at once), then one more for each of its changes, in order.
 */
static void
number_changes(const PendingChange *changes, int n, int64 *seqs)
{
	KeyedChange *sorted = palloc(sizeof(KeyedChange) * n);
	int		   *first = palloc(sizeof(int) * n);	/* a group's first in sorted */
	int64	   *last = palloc(sizeof(int64) * n);
	const char **keys = palloc(sizeof(char *) * n);
	int		   *lens = palloc(sizeof(int) * n);
	int		   *asked = palloc(sizeof(int) * n);
	int			ngroups = 0;
	int			nasked = 0;

	for (int i = 0; i < n; i++)
		sorted[i] = (KeyedChange) {&changes[i], i};
	qsort(sorted, n, sizeof(KeyedChange), keyed_cmp);
	for (int i = 0; i < n; i++)
	{
		const PendingChange *c = sorted[i].change;

		if (i > 0 && keyed_cmp(&(KeyedChange) {sorted[i - 1].change, 0},
							   &(KeyedChange) {c, 0}) == 0)
			continue;
		first[ngroups] = i;
		if (!FullTransactionIdIsValid(c->replaced) ||
			!outbox_cached_last(VARDATA_ANY(c->key), VARSIZE_ANY_EXHDR(c->key),
								c->replaced, &last[ngroups]))
		{
			keys[nasked] = VARDATA_ANY(c->key);
			lens[nasked] = VARSIZE_ANY_EXHDR(c->key);
			asked[nasked++] = ngroups;
		}
		ngroups++;
	}
	if (nasked > 0)
	{
		int64	   *found = palloc(sizeof(int64) * nasked);

		outbox_last_sequences(nasked, keys, lens, found, true);
		for (int i = 0; i < nasked; i++)
			last[asked[i]] = found[i];
		pfree(found);
	}
	for (int g = 0; g < ngroups; g++)
	{
		int			end = g + 1 < ngroups ? first[g + 1] : n;
		int64		seq = last[g];

		for (int i = first[g]; i < end; i++)
			seqs[sorted[i].idx] = ++seq;
	}
	pfree(sorted);
	pfree(first);
	pfree(last);
	pfree(keys);
	pfree(lens);
	pfree(asked);
}

/* changes whose envelopes are built and written at a time */
#define WRITE_CHUNK 1000

/*
 * Number changes and write them, in order, in the current subtransaction,
 * WRITE_CHUNK at a time (each envelope is freed once written).
 */
static void
write_changes(const PendingChange *changes, int n)
{
	int64	   *seqs = palloc(sizeof(int64) * n);
	OutboxNewRow *rows = palloc(sizeof(OutboxNewRow) * Min(n, WRITE_CHUNK));

	number_changes(changes, n, seqs);
	for (int done = 0; done < n; done += WRITE_CHUNK)
	{
		int			chunk = Min(WRITE_CHUNK, n - done);

		CHECK_FOR_INTERRUPTS();
		for (int i = 0; i < chunk; i++)
		{
			const PendingChange *c = &changes[done + i];
			StringInfoData value = {c->value, c->value_len, c->value_len + 1, 0};
			int64		seq = seqs[done + i];

			rows[i].key = c->key;
			rows[i].seq = seq;
			rows[i].txid = (int64) c->txid;
			rows[i].envelope = capture_envelope_build_scoped(VARDATA_ANY(c->key),
															 VARSIZE_ANY_EXHDR(c->key),
															 c->value ? &value : NULL,
															 c->schema_version,
															 (uint64) seq, c->op,
															 true, c->txid, c->scope);
			rows[i].layout = c->layout;
			rows[i].scope = c->scope;
			rows[i].holder_xmin = c->holder_xmin;
			rows[i].holder_writer = c->holder_writer;
			rows[i].cid = c->cid;
		}
		outbox_append_rows(rows, chunk);
		for (int i = 0; i < chunk; i++)
			pfree(rows[i].envelope);
	}
	pfree(rows);
	pfree(seqs);
}

/* Free what a written change kept (not lent: nothing refers to it any more). */
static void
free_change(PendingChange *c)
{
	pfree(c->key);
	if (c->value)
		pfree(c->value);
	if (c->scope)
		pfree((char *) c->scope);
}

/*
 * Write the pending changes (if any).  Unless force, only when the current
 * subtransaction owns them all; forced, those of outer subtransactions are
 * lent (see the top of this file).
 */
void
outbox_batch_flush(bool force)
{
	SubTransactionId me;
	bool		pushed = false;
	bool		foreign = false;
	MemoryContext work;
	MemoryContext old;

	if (pending.n == 0 || flushing)
		return;
	me = GetCurrentSubTransactionId();
	for (int i = 0; i < pending.n && !foreign; i++)
		foreign = pending.items[i].owner != me;
	if (foreign && !force)
		return;
	flushing = true;
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed = true;
	}
	work = AllocSetContextCreate(CurrentMemoryContext, "para_sync outbox batch write",
								 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	write_changes(pending.items, pending.n);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	if (pushed)
		PopActiveSnapshot();
	for (int i = 0; i < pending.n; i++)
	{
		if (pending.items[i].owner != me)
		{
			pending.items[i].tag = me;
			list_push(&lent, &pending.items[i]);
		}
		else
			free_change(&pending.items[i]);	/* its memory serves the next ones */
	}
	pending.n = 0;
	pending_bytes = 0;
	flushing = false;
}

static int
order_cmp(const void *a, const void *b)
{
	uint64		x = ((const PendingChange *) a)->order;
	uint64		y = ((const PendingChange *) b)->order;

	return x < y ? -1 : x > y;
}

/*
 * Subtransaction sub ends (parent: what becomes current).  Committed: its
 * pending changes and its borrowings pass to parent.  Aborted: its pending
 * changes are forgotten, and what it borrowed is pending again.
 */
static void
batch_subxact_end(bool commit, SubTransactionId sub, SubTransactionId parent)
{
	int			kept = 0;

	for (int i = 0; i < pending.n; i++)
	{
		PendingChange *c = &pending.items[i];

		if (c->owner == sub)
		{
			if (!commit)
			{
				free_change(c);	/* a change rolled back with its statement */
				continue;
			}
			c->owner = parent;
		}
		pending.items[kept++] = *c;
	}
	pending.n = kept;
	kept = 0;
	for (int i = 0; i < lent.n; i++)
	{
		PendingChange *c = &lent.items[i];

		if (c->tag != sub)
			lent.items[kept++] = *c;
		else if (!commit)
		{
			c->tag = InvalidSubTransactionId;
			list_push(&pending, c);
		}
		else if (parent != c->owner)
		{
			c->tag = parent;
			lent.items[kept++] = *c;
		}
	}
	lent.n = kept;
	if (!commit)
		qsort(pending.items, pending.n, sizeof(PendingChange), order_cmp);
	if (pending.n == 0)
		pending_cid = InvalidCommandId;
}

static void
batch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (pending.n == 0 && lent.n == 0)
		return;
	switch (event)
	{
		case SUBXACT_EVENT_PRE_COMMIT_SUB:
			outbox_batch_flush(false);
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			batch_subxact_end(true, mySubid, parentSubid);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			flushing = false;
			batch_subxact_end(false, mySubid, parentSubid);
			break;
		default:
			break;
	}
}

static void
batch_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			outbox_batch_flush(true);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			batch_reset();
			break;
	}
}

/* A query's AFTER triggers have fired: write what they captured. */
static void
batch_executor_finish(QueryDesc *queryDesc)
{
	if (prev_ExecutorFinish)
		prev_ExecutorFinish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);
	outbox_batch_flush(false);
}

/* The same for utility statements that fire triggers (COPY FROM). */
static void
batch_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	outbox_batch_flush(false);
}

/* Called from _PG_init. */
void
outbox_batch_init(void)
{
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = batch_executor_finish;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = batch_process_utility;
	RegisterXactCallback(batch_xact_callback, NULL);
	RegisterSubXactCallback(batch_subxact_callback, NULL);
}
