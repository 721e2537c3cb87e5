/*
 * outbox_batch.c — the capture trigger's envelopes of a statement, numbered
 * and written to the outbox as a set.
 *
 * The capture trigger (capture.c) decides each event's change when it
 * fires: what to publish, under which key, with which content.  It does
 * not number and write it there: the change waits here, pending, and the
 * statement's pending changes are numbered together and written together
 * when the statement ends (the end of the outermost query running, or of
 * a COPY: the hooks at the end of this file):
 *
 *  - their keys' last sequences come from the sequence cache (the first
 *    pending change of a key, by the version it replaced: seq_cache.c) or,
 *    for the rest, from one merge of the sorted keys with the outbox's and
 *    the counters' primary keys (outbox_read_last_sequences(),
 *    SnapshotSelf), not from two index descents per change;
 *  - a key's changes are numbered on from there in the order they were
 *    captured, which is the order the row-by-row writes numbered them in;
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
 * (outbox_batch_flush(true)), or, in parallel mode, where nothing can be
 * written, count it (outbox_batch_pending()).  A query of para_sync.outbox
 * itself, run by a trigger of the user's while a statement's AFTER
 * triggers fire, does not see the changes of that statement captured so
 * far (with row-by-row writes it did); snapshot() there does.  What is
 * pending is written before the transaction commits or prepares (at the
 * latest in its pre-commit callback), and forgotten when it aborts.  Also
 * written: 10,000 changes or work_mem of them at a time, whatever comes
 * first.
 *
 * Subtransactions.  Rows are written in the current subtransaction, and a
 * change pending for an outer one (its owner) must not be lost with an
 * inner one that aborts.  A user's trigger can start a subtransaction
 * (PL/pgSQL's exception block) while changes are pending, and there force
 * them out (by a read of a sequence, say).  So:
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
 * The abort callback allocates nothing: the pending list always has room
 * for every lent change (changes_reserve()).
 */
#include "para_sync.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
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
	const char *schema_version; /* one of known_versions */
	char	   *scope;			/* NULL: none */
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

/* all in batch_cxt, a child of TopTransactionContext; reset at its end */
static MemoryContext batch_cxt = NULL;
static ChangeList pending;
static ChangeList lent;
static Size pending_bytes = 0;
static SubTransactionId max_owner = InvalidSubTransactionId;	/* >= every owner */
static SubTransactionId max_tag = InvalidSubTransactionId;	/* >= every tag */
static List *known_versions = NIL;
static bool flushing = false;

static uint64 next_order = 0;
/* ExecutorFinish() calls in progress (queries of AFTER triggers nest) */
static int	finish_depth = 0;
/* loaded by a statement (no shared_preload_libraries): see outbox_batch_add() */
static bool write_at_once = false;

static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Room in l for need items. */
static void
changes_reserve(ChangeList *l, int need)
{
	if (need <= l->cap)
		return;
	l->cap = Max(need, Max(256, l->cap * 2));
	l->items = l->items == NULL ?
		MemoryContextAlloc(batch_cxt, sizeof(PendingChange) * l->cap) :
		repalloc(l->items, sizeof(PendingChange) * l->cap);
}

/* Free what a change kept (nothing refers to it any more). */
static void
free_change(PendingChange *c)
{
	pfree(c->key);
	if (c->value)
		pfree(c->value);
	if (c->scope)
		pfree(c->scope);
}

static Size
change_bytes(const PendingChange *c)
{
	return VARSIZE_ANY(c->key) + c->value_len + sizeof(PendingChange);
}

/* Forget everything (the transaction ended; batch_cxt went with it). */
static void
batch_reset(void)
{
	batch_cxt = NULL;
	memset(&pending, 0, sizeof(pending));
	memset(&lent, 0, sizeof(lent));
	pending_bytes = 0;
	max_owner = InvalidSubTransactionId;
	max_tag = InvalidSubTransactionId;
	known_versions = NIL;
	flushing = false;
}

/* schema_version, as one copy per version and transaction */
static const char *
known_version(const char *schema_version)
{
	ListCell   *lc;
	MemoryContext old;
	char	   *copy;

	foreach(lc, known_versions)
		if (strcmp(lfirst(lc), schema_version) == 0)
			return lfirst(lc);
	old = MemoryContextSwitchTo(batch_cxt);
	copy = pstrdup(schema_version);
	known_versions = lappend(known_versions, copy);
	MemoryContextSwitchTo(old);
	return copy;
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
	OutboxNewRow row;
	MemoryContext old;

	if (batch_cxt == NULL)
		batch_cxt = AllocSetContextCreate(TopTransactionContext, "para_sync outbox batch",
										  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(batch_cxt);
	c.key = cstring_to_text_with_len(key, key_len);
	c.value = NULL;
	c.value_len = value ? value->len : 0;
	if (value)
		c.value = memcpy(palloc(value->len + 1), value->data, value->len + 1);
	c.scope = scope ? pstrdup(scope) : NULL;
	MemoryContextSwitchTo(old);
	c.schema_version = known_version(schema_version);
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
	changes_reserve(&pending, pending.n + 1 + lent.n);
	pending.items[pending.n++] = c;
	pending_bytes += change_bytes(&c);
	max_owner = Max(max_owner, c.owner);

	/*
	 * The library was loaded by a statement of this transaction (no
	 * shared_preload_libraries): the hooks were not in place when it
	 * started and do not see it end, so until the transaction ends, write
	 * each change at once.
	 */
	if (write_at_once)
		outbox_batch_flush(true);
	else if (pending.n >= BATCH_MAX_CHANGES || pending_bytes > (Size) work_mem * 1024)
		outbox_batch_flush(true);
}

/*
 * How many of key's changes are pending and were captured in a command
 * before below (InvalidCommandId: all of them).  A reader in parallel mode
 * (snapshot() evaluated by a parallel query's leader) cannot have them
 * written first (outbox_batch_flush()): the last sequence it reads lacks
 * them, and adding those whose row changes its snapshot sees (commands
 * before its own) gives what it would have read once they were written.
 */
int
outbox_batch_pending(const char *key, int key_len, CommandId below)
{
	int			count = 0;

	for (int i = 0; i < pending.n; i++)
		if ((below == InvalidCommandId || pending.items[i].cid < below) &&
			VARSIZE_ANY_EXHDR(pending.items[i].key) == key_len &&
			memcmp(VARDATA_ANY(pending.items[i].key), key, key_len) == 0)
			count++;
	return count;
}

/* pending changes by key, then in the order they were captured */
typedef struct KeyedChange
{
	const PendingChange *change;
	int			idx;
} KeyedChange;

static int
key_order(const PendingChange *a, const PendingChange *b)
{
	return key_cmp(VARDATA_ANY(a->key), VARSIZE_ANY_EXHDR(a->key),
				   VARDATA_ANY(b->key), VARSIZE_ANY_EXHDR(b->key));
}

static int
keyed_cmp(const void *a, const void *b)
{
	const KeyedChange *x = a;
	const KeyedChange *y = b;
	int			c = key_order(x->change, y->change);

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
	int64	   *found = palloc(sizeof(int64) * n);
	int			ngroups = 0;
	int			nasked = 0;

	for (int i = 0; i < n; i++)
	{
		sorted[i].change = &changes[i];
		sorted[i].idx = i;
	}
	qsort(sorted, n, sizeof(KeyedChange), keyed_cmp);
	for (int i = 0; i < n; i++)
	{
		const PendingChange *c = sorted[i].change;
		int			ahead = i + SEQ_CACHE_PREFETCH_AHEAD;

		if (ahead < n && FullTransactionIdIsValid(sorted[ahead].change->replaced))
			outbox_cache_prefetch(sorted[ahead].change->key);
		if (i > 0 && key_order(sorted[i - 1].change, c) == 0)
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
	outbox_read_last_sequences(nasked, keys, lens, found, true);
	for (int i = 0; i < nasked; i++)
		last[asked[i]] = found[i];
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
	pfree(found);
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
			StringInfoData value;

			value.data = c->value;
			value.len = c->value_len;
			value.maxlen = c->value_len + 1;
			value.cursor = 0;
			rows[i].key = c->key;
			rows[i].seq = seqs[done + i];
			rows[i].txid = (int64) c->txid;
			rows[i].envelope = capture_envelope_build_scoped(VARDATA_ANY(c->key),
															 VARSIZE_ANY_EXHDR(c->key),
															 c->value ? &value : NULL,
															 c->schema_version,
															 (uint64) seqs[done + i],
															 c->op, true, c->txid,
															 c->scope);
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

/* After a write: keep the changes of outer subtransactions, lent to me. */
static void
keep_lent(SubTransactionId me)
{
	int			foreign = 0;

	for (int i = 0; i < pending.n; i++)
		foreign += pending.items[i].owner != me;

	/*
	 * Allocate first: an error here leaves both lists as they were (the
	 * subtransaction that wrote them aborts, and they are still pending).
	 * The pending list keeps room to take every lent change back without
	 * allocating (the abort callback).
	 */
	changes_reserve(&lent, lent.n + foreign);
	changes_reserve(&pending, lent.n + foreign);
	for (int i = 0; i < pending.n; i++)
	{
		PendingChange *c = &pending.items[i];

		if (c->owner == me)
		{
			free_change(c);		/* its memory serves the next ones */
			continue;
		}
		c->tag = me;
		lent.items[lent.n++] = *c;
		max_tag = Max(max_tag, me);
	}
	pending.n = 0;
	pending_bytes = 0;
}

/*
 * Write the pending changes (if any).  Unless force, only when the current
 * subtransaction owns them all; forced, those of outer subtransactions are
 * lent (see the top of this file).  Nothing in parallel mode, where no
 * tuple (nor transaction id) can be written: readers count them instead.
 */
void
outbox_batch_flush(bool force)
{
	SubTransactionId me;
	bool		pushed = false;
	bool		foreign = false;
	MemoryContext work;
	MemoryContext old;

	if (pending.n == 0 || flushing || IsInParallelMode())
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
	keep_lent(me);
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
 * changes are forgotten, and what it borrowed is pending again.  Allocates
 * nothing.  Every change owned or borrowed by a subtransaction begun after
 * sub was passed on or forgotten when that one ended, so with no owner or
 * tag as high as sub there is nothing to do.
 */
static void
batch_subxact_end(bool commit, SubTransactionId sub, SubTransactionId parent)
{
	int			kept = 0;
	bool		restored = false;

	if (max_owner < sub && max_tag < sub)
		return;
	for (int i = 0; i < pending.n; i++)
	{
		PendingChange *c = &pending.items[i];

		if (c->owner == sub && !commit)
		{
			pending_bytes -= change_bytes(c);
			free_change(c);		/* rolled back with its statement */
			continue;
		}
		if (c->owner == sub)
			c->owner = parent;
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
			/* pending again: room for it was reserved when it was lent */
			Assert(pending.n < pending.cap);
			c->tag = InvalidSubTransactionId;
			pending.items[pending.n++] = *c;
			pending_bytes += change_bytes(c);
			restored = true;
		}
		else if (parent != c->owner)
		{
			c->tag = parent;
			lent.items[kept++] = *c;
		}
		else
			free_change(c);		/* its owner's own now */
	}
	lent.n = kept;
	if (restored)
		qsort(pending.items, pending.n, sizeof(PendingChange), order_cmp);
	max_owner = parent;
	max_tag = lent.n > 0 ? parent : InvalidSubTransactionId;
}

static void
batch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	switch (event)
	{
		case SUBXACT_EVENT_PRE_COMMIT_SUB:
			outbox_batch_flush(false);
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			batch_subxact_end(true, mySubid, parentSubid);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			flushing = false;	/* a flush that failed: it wrote nothing */
			batch_subxact_end(false, mySubid, parentSubid);
			break;
		default:
			break;
	}
}

/* Write what is pending before the transaction commits or prepares. */
static void
batch_before_commit(void)
{
	outbox_batch_flush(true);
	if (pending.n > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("para_sync could not write %d captured changes before the commit",
						pending.n),
				 errhint("This is a bug: report it.")));
}

static void
batch_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			batch_before_commit();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			batch_reset();
			write_at_once = false;
			break;
	}
}

/*
 * A query's AFTER triggers have fired: write what they captured, unless
 * the query ran inside another one's (a trigger's query: the outer one's
 * end writes them all, a statement's changes at once).
 */
static void
batch_executor_finish(QueryDesc *queryDesc)
{
	finish_depth++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		finish_depth--;
	}
	PG_END_TRY();
	if (finish_depth == 0)
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
	if (finish_depth == 0)
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
	/* preloaded: the hooks are in place before any statement */
	write_at_once = !process_shared_preload_libraries_in_progress;
}
