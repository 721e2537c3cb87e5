/*
 * outbox_append.c — the per-object sequence counters and the outbox's
 * append (the sequence store).
 *
 * The counter rule, here and nowhere else: an object's next sequence is
 * max(its rows in para_sync.outbox, its row in para_sync.counters) + 1
 * (outbox_next_sequence()), and removing rows from the outbox raises the
 * counter to the highest sequence removed (outbox_raise_counters(), at
 * the end of this file, called by outbox_remove()).  So the last sequence
 * is the highest seq of the object's rows still in the outbox, or, once
 * they were all consumed, its row in para_sync.counters (written by the
 * publisher, off the write path).  Reading the outbox alone while it holds
 * rows of the object is the same max: the publisher removes an object's
 * rows lowest sequence first and raises the counter in the same
 * transaction, so a counter never passes a row still queued.  So a change costs one or two index
 * probes and one outbox insert: the counter travels in the outbox row
 * itself.
 *
 * The outbox family: outbox_append.c (sequences, append, counters),
 * outbox_consume.c (read, remove), outbox_backlog.c (count),
 * outbox_vacuum.c (vacuum after a drain).
 *
 * Writers of one object are serialized by the row lock or unique-index
 * check on the synced table itself (the capture trigger fires AFTER ROW),
 * so the next writer reads the counter only after the previous one
 * committed or rolled back.  The read uses a fresh snapshot so that it sees
 * that commit even under REPEATABLE READ.  The outbox primary key (key, seq)
 * is the safety net: a duplicate sequence can never be stored.
 *
 * These reads take no SERIALIZABLE predicate (SIREAD) locks.  Writers of
 * different objects share outbox and counters index pages, so page locks
 * there would make SERIALIZABLE writers of different rows fail each other;
 * and they are not needed: writers of one object are already ordered by the
 * synced table's row lock, and a serializable reader of snapshot() is
 * protected by its read of the row itself, which takes the usual locks.
 *
 * This is the hot path of every synced write, so it talks to the heap and
 * the btree indexes directly (no SPI, no planner, no permission checks:
 * table writers hold no privileges on these tables by design).  The
 * relation OIDs are resolved once per backend and forgotten on any
 * invalidation of those relations (e.g. DROP EXTENSION).
 *
 * The same resolution is the one place that tells the 0.1 schema (a newer
 * library installed, ALTER EXTENSION UPDATE not yet run) from a current
 * one: a 0.1 outbox has no subject_layout column.  The 0.1 → 0.2 script adds
 * that column (an invalidation of the outbox) in the same transaction as
 * every other 0.2 object, so the answer changes exactly when the update
 * commits.  While it is 0.1, the library writes what 0.1 wrote (keys.c,
 * outbox rows without a layout) and refuses what needs the new schema
 * (outbox_require_updated_schema()).
 *
 * A change that replaces or deletes a row version usually skips the
 * look-up: seq_cache.c remembers each object's last sequence with the
 * (sub)transaction that appended it, and a hit needs the replaced version
 * to have been created by that (sub)transaction (the argument is at the top
 * of seq_cache.c).  That is only right if every envelope goes into the
 * outbox through outbox_append_rows(), which updates the cache (for
 * outbox_append() and the capture's pending changes, outbox_batch.c):
 * nothing else may append.  Setting para_sync.sequence_cache_check makes
 * every hit be compared with the look-up (the tests do).
 */
#include "para_sync.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "executor/tuptable.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

static OutboxRelations store = {InvalidOid, InvalidOid, InvalidOid, InvalidOid, false};
static IndexInfo *outbox_pkey_info = NULL;
/* the sequence cache's name for this store (seq_cache.c) */
static SeqCacheTag store_tag;

static void
outbox_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == store.outbox || relid == store.outbox_pkey ||
		relid == store.counters || relid == store.counters_pkey)
	{
		store.outbox = InvalidOid;
		if (outbox_pkey_info != NULL)
			pfree(outbox_pkey_info);
		outbox_pkey_info = NULL;
	}
}

void
outbox_append_init(void)
{
	CacheRegisterRelcacheCallback(outbox_relcache_callback, (Datum) 0);
}

static Oid
internal_relation(const char *name, Oid nsp)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"para_sync.%s\" does not exist", name),
				 errhint("Run CREATE EXTENSION para_sync in this database.")));
	return relid;
}

/* The relfilenode of relid (TRUNCATE changes it). */
static Oid
relation_file(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Oid			node = rel->rd_node.relNode;

	table_close(rel, AccessShareLock);
	return node;
}

const OutboxRelations *
outbox_relations(void)
{
	if (!OidIsValid(store.outbox))
	{
		Oid			nsp = get_namespace_oid("para_sync", false);
		OutboxRelations found;
		MemoryContext old;
		Relation	index;

		found.outbox = internal_relation("outbox", nsp);
		found.outbox_pkey = internal_relation("outbox_pkey", nsp);
		found.counters = internal_relation("counters", nsp);
		found.counters_pkey = internal_relation("counters_pkey", nsp);

		index = index_open(found.outbox_pkey, AccessShareLock);
		old = MemoryContextSwitchTo(CacheMemoryContext);
		outbox_pkey_info = BuildIndexInfo(index);
		MemoryContextSwitchTo(old);
		index_close(index, AccessShareLock);
		store_tag.db = MyDatabaseId;
		store_tag.outbox = found.outbox;
		store_tag.counters_node = relation_file(found.counters);
		found.legacy_schema =
			get_attnum(found.outbox, "subject_layout") == InvalidAttrNumber;
		/* a 0.3 outbox (before the update to 0.4) has no scope column */
		found.with_scope = get_attnum(found.outbox, "scope") != InvalidAttrNumber;
		store = found;
	}
	return &store;
}

/*
 * Refuse what needs a schema newer than 0.1 (tagging a table, claiming a
 * sync name) while the installed extension is still at 0.1.
 */
void
outbox_require_updated_schema(void)
{
	if (outbox_relations()->legacy_schema)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("para_sync's schema is older than its library"),
				 errdetail("The extension is installed at version 0.1; until it is updated, para_sync only keeps capturing the tables already synced, as version 0.1 did."),
				 errhint("Run ALTER EXTENSION para_sync UPDATE.")));
}

/*
 * para_sync.outbox's OID if it is still resolved, with no invalidation of
 * para_sync's relations since (as of the last AcceptInvalidationMessages());
 * InvalidOid otherwise.  Resolves nothing, so it cannot fail.
 */
Oid
outbox_resolved(void)
{
	return store.outbox;
}

/*
 * The first index entry of heap/index matching skeys in direction dir whose
 * row is visible to snapshot; false when there is none.  With attnum > 0,
 * that row's int8 column attnum goes to *value.
 *
 * In a SERIALIZABLE transaction an index scan under an MVCC snapshot would
 * take predicate locks on the index page and the heap tuples it reads.  So
 * there the scan runs under SnapshotAny, which takes none, and each tuple it
 * returns is checked against snapshot here: the same rows are found, with
 * no locks.  Elsewhere the plain MVCC scan is kept, since it also lets the
 * index forget entries of rows dead to everyone.  A non-MVCC snapshot
 * (SnapshotSelf) takes no predicate locks in the first place.
 */
static bool
first_visible(Oid heap_oid, Oid index_oid, ScanKey skeys, int nkeys,
			  ScanDirection dir, Snapshot snapshot, AttrNumber attnum, int64 *value)
{
	Relation	heap = table_open(heap_oid, AccessShareLock);
	Relation	index = index_open(index_oid, AccessShareLock);
	bool		filter = IsolationIsSerializable() && IsMVCCSnapshot(snapshot);
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	bool		found = false;

	scan = index_beginscan(heap, index, filter ? SnapshotAny : snapshot, nkeys, 0);
	index_rescan(scan, skeys, nkeys, NULL, 0);
	while (!found && index_getnext_slot(scan, dir, slot))
	{
		CHECK_FOR_INTERRUPTS();
		found = !filter || table_tuple_satisfies_snapshot(heap, slot, snapshot);
	}
	if (found && attnum > 0)
	{
		bool		isnull;

		*value = DatumGetInt64(slot_getattr(slot, attnum, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	/* keep the locks to the end of the transaction: the next row needs them */
	index_close(index, NoLock);
	table_close(heap, NoLock);
	return found;
}

/* The seq column of the last (or only) row for key, as seen by snapshot. */
static bool
probe_last_seq(Oid heap_oid, Oid index_oid, text *key, Snapshot snapshot,
			   AttrNumber seq_attnum, int64 *seq)
{
	ScanKeyData skey;

	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, PointerGetDatum(key));
	return first_visible(heap_oid, index_oid, &skey, 1, BackwardScanDirection,
						 snapshot, seq_attnum, seq);
}

/*
 * The last sequence of key (0 if never seen).  latest: what is committed
 * now plus everything this transaction wrote, its current command included
 * (SnapshotSelf: the capture trigger's rows are written without advancing
 * the command counter, see outbox_append()); otherwise read with the active
 * snapshot, so that snapshot() reads value and sequence consistently.
 *
 * SnapshotSelf reads the outbox and then the counters at two instants, not
 * at one: a publisher committing in between is harmless, because it removes
 * a key's outbox rows and raises its counter in one transaction, so the
 * counters read second are at least as new as the outbox read first.
 */
int64
outbox_read_last_sequence(const char *key, int key_len, bool latest)
{
	const OutboxRelations *rels = outbox_relations();
	text	   *key_text = cstring_to_text_with_len(key, key_len);
	Snapshot	snapshot = latest ? SnapshotSelf : RegisterSnapshot(GetActiveSnapshot());
	int64		seq = 0;

	if (!probe_last_seq(rels->outbox, rels->outbox_pkey, key_text, snapshot, 2, &seq))
		probe_last_seq(rels->counters, rels->counters_pkey, key_text, snapshot, 2, &seq);
	if (!latest)
		UnregisterSnapshot(snapshot);
	pfree(key_text);
	return seq;
}

/*
 * In parallel mode, where the capture's pending changes cannot be written
 * (outbox_batch.c), how many of key's a read with SnapshotSelf (latest) or
 * with the active snapshot would have seen; elsewhere 0: they are written.
 */
static int
pending_before(const char *key, int key_len, bool latest)
{
	if (!IsInParallelMode())
		return 0;
	return outbox_batch_pending(key, key_len,
								latest ? InvalidCommandId : GetActiveSnapshot()->curcid);
}

/*
 * The same, after writing the capture's pending envelopes (outbox_batch.c),
 * which it would otherwise not see.
 */
int64
outbox_last_sequence(const char *key, int key_len, bool latest)
{
	outbox_batch_flush(true);
	return outbox_read_last_sequence(key, key_len, latest) +
		pending_before(key, key_len, latest);
}

/*
 * The full transaction id that created tuple (a row version of a synced
 * table), or invalid when it cannot be known: no header, a frozen or
 * special xmin.  A live unfrozen version's xmin lies within 2^31 of this
 * transaction's id (wraparound protection), which makes the widening exact.
 */
FullTransactionId
outbox_version_writer(HeapTuple tuple)
{
	TransactionId xmin;
	FullTransactionId top;

	if (tuple == NULL || tuple->t_data == NULL)
		return InvalidFullTransactionId;
	xmin = HeapTupleHeaderGetXmin(tuple->t_data);
	if (!TransactionIdIsNormal(xmin))
		return InvalidFullTransactionId;
	top = GetTopFullTransactionId();
	return FullTransactionIdFromU64(U64FromFullTransactionId(top) +
									(int32) (xmin - XidFromFullTransactionId(top)));
}

/*
 * With para_sync.sequence_cache_check: an error unless seq is key's last
 * sequence as outbox_last_sequence() reads it now.  source names what
 * answered seq without that look-up (the sequence cache, or
 * outbox_name_seqs.c's one pass).
 */
void
outbox_check_last_sequence(const char *key, int key_len, int64 seq, const char *source)
{
	int64		stored;

	if (!psync_sequence_cache_check)
		return;
	stored = outbox_read_last_sequence(key, key_len, true);
	if (stored != seq)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("para_sync %s says %lld for key \"%.*s\", the outbox and counters say %lld",
						source, (long long) seq, key_len, key, (long long) stored),
				 errhint("Unless the store was changed by hand, this is a bug: report it; para_sync.sequence_cache_size = 0 turns the cache off.")));
}

/*
 * The next sequence of key, for the capture trigger.  replaced: the row
 * version that the triggering statement updated or deleted and whose key is
 * key, or NULL (an INSERT, a key given to a row by an UPDATE, a change not
 * made by a trigger event: always looked up).
 */
int64
outbox_next_sequence(const char *key, int key_len, HeapTuple replaced)
{
	int64		seq;

	outbox_batch_flush(true);
	if (replaced != NULL &&
		outbox_cached_last(key, key_len, outbox_version_writer(replaced), &seq))
		return seq + 1;
	return outbox_read_last_sequence(key, key_len, true) + 1;
}

/* seq_cache_prefetch() of key, in this store. */
void
outbox_cache_prefetch(const text *key)
{
	seq_cache_prefetch(&store_tag, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
}

/*
 * Key's last sequence from the sequence cache, if its entry names writer
 * (the creator of the version a change replaced: seq_cache.c); checked
 * against the look-up with para_sync.sequence_cache_check.
 */
bool
outbox_cached_last(const char *key, int key_len, FullTransactionId writer, int64 *seq)
{
	outbox_relations();
	if (!seq_cache_lookup(&store_tag, key, key_len, writer, seq))
		return false;
	outbox_check_last_sequence(key, key_len, *seq, "sequence cache");
	return true;
}

/*
 * skeys[0] and skeys[1]: the range of sync_name's keys in the outbox's and
 * the counters' primary keys, exactly the texts in ["name:", "name;").
 */
void
outbox_name_scankeys(const char *sync_name, ScanKey skeys)
{
	text	   *low = cstring_to_text(psprintf("%s:", sync_name));
	text	   *high = cstring_to_text(psprintf("%s;", sync_name));

	ScanKeyEntryInitialize(&skeys[0], 0, 1, BTGreaterEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXT_GE, PointerGetDatum(low));
	ScanKeyEntryInitialize(&skeys[1], 0, 1, BTLessStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXT_LT, PointerGetDatum(high));
}

/* Has any key of sync name ever had a sequence (read with a fresh snapshot)? */
bool
outbox_name_has_history(const char *sync_name)
{
	const OutboxRelations *rels;
	ScanKeyData skeys[2];
	Snapshot	snapshot;
	bool		found;

	outbox_batch_flush(true);
	rels = outbox_relations();
	outbox_name_scankeys(sync_name, skeys);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	found = first_visible(rels->outbox, rels->outbox_pkey, skeys, 2, ForwardScanDirection,
						  snapshot, 0, NULL) ||
		first_visible(rels->counters, rels->counters_pkey, skeys, 2, ForwardScanDirection,
					  snapshot, 0, NULL);
	UnregisterSnapshot(snapshot);
	return found;
}

/*
 * The one append: store one envelope in the outbox, in the current
 * transaction, with the subject layout its table has now (a 0.1 outbox has
 * no such column: the new library before ALTER EXTENSION UPDATE writes what
 * 0.1 wrote) and the scope token the change was captured under (scope.c;
 * NULL: none), both of which the publisher puts in the subject.  A 0.3
 * outbox has no scope column: a table can only have a scope once the 0.4
 * schema is there (set_scope() comes with it).
 *
 * holder: the row version whose content the envelope carries, or NULL (a
 * delete, or no version to go by).  Every append overwrites key's sequence
 * cache entry: with holder's writer when holder was created by the
 * (sub)transaction making this append, else with none (the entry is
 * forgotten).
 *
 * The command counter is advanced after the append, so that anything the
 * transaction reads later with an MVCC snapshot sees the row.  The capture
 * trigger's appends do not come here: they wait for the statement's end
 * and are written together (outbox_batch.c, outbox_append_rows()), without
 * advancing it, so that a multi-row statement's capture events all run
 * under the statement's own command id, and a change of the command id
 * during them means that another statement ran (capture.c relies on that).
 */
void
outbox_append(const char *key, int key_len, int64 seq, int64 txid,
			  bytea *envelope, char layout, const char *scope,
			  HeapTuple holder)
{
	OutboxNewRow	row;

	outbox_batch_flush(true);
	row.key = cstring_to_text_with_len(key, key_len);
	row.seq = seq;
	row.txid = txid;
	row.envelope = envelope;
	row.layout = layout;
	row.scope = scope;
	row.cid = GetCurrentCommandId(true);
	outbox_row_holder(&row, holder);
	outbox_append_rows(&row, 1);
	pfree(row.key);
	CommandCounterIncrement();
}

/* Record holder (see outbox_append()) in row. */
void
outbox_row_holder(OutboxNewRow *row, HeapTuple holder)
{
	row->holder_xmin = InvalidTransactionId;
	row->holder_writer = InvalidFullTransactionId;
	if (holder == NULL || holder->t_data == NULL)
		return;
	row->holder_xmin = HeapTupleHeaderGetXmin(holder->t_data);
	row->holder_writer = outbox_version_writer(holder);
}

/* rows written by one heap_multi_insert() call, at most */
#define MULTI_INSERT_ROWS 1000

static HeapTuple
row_tuple(TupleDesc desc, const OutboxNewRow *row)
{
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, row->scope == NULL};

	/* asked under the lock: it took in any invalidation of the outbox */
	if (outbox_relations()->legacy_schema && row->layout != PSYNC_LAYOUT_KEY)
		outbox_require_updated_schema();
	if (row->scope != NULL && !outbox_relations()->with_scope)
		elog(ERROR, "para_sync outbox has no scope column: run ALTER EXTENSION para_sync UPDATE");

	/*
	 * A 0.1 outbox has five columns, a 0.3 one six: heap_form_tuple ignores
	 * the ones after them.
	 */
	values[0] = PointerGetDatum(row->key);
	values[1] = Int64GetDatum(row->seq);
	values[2] = Int64GetDatum(row->txid);
	values[3] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[4] = PointerGetDatum(row->envelope);
	values[5] = CharGetDatum(row->layout);
	values[6] = row->scope ? CStringGetTextDatum(row->scope) : (Datum) 0;
	return heap_form_tuple(desc, values, nulls);
}

/*
 * The heap tuples of rows; one: heap_insert(), more: heap_multi_insert()
 * (one WAL record per page), MULTI_INSERT_ROWS at a time.  tids[i] gets
 * where rows[i] went.
 */
static void
insert_heap_rows(Relation heap, const OutboxNewRow *rows, int n, ItemPointer tids)
{
	TupleDesc	desc = RelationGetDescr(heap);
	TupleDesc	slot_desc;
	TupleTableSlot **slots;
	int			nslots = Min(n, MULTI_INSERT_ROWS);
	int			done;

	if (n == 1)
	{
		HeapTuple	tuple = row_tuple(desc, &rows[0]);

		heap_insert(heap, tuple, rows[0].cid, 0, NULL);
		tids[0] = tuple->t_self;
		heap_freetuple(tuple);
		return;
	}
	/* slots of an unshared copy: no reference counting per slot */
	slot_desc = CreateTupleDescCopy(desc);
	slots = palloc(sizeof(TupleTableSlot *) * nslots);
	for (int i = 0; i < nslots; i++)
		slots[i] = MakeSingleTupleTableSlot(slot_desc, &TTSOpsHeapTuple);
	done = 0;
	while (done < n)
	{
		int			chunk = 0;

		CHECK_FOR_INTERRUPTS();
		/* one call per run of rows of one command, at most nslots */
		while (chunk < nslots && done + chunk < n &&
			   rows[done + chunk].cid == rows[done].cid)
		{
			ExecStoreHeapTuple(row_tuple(desc, &rows[done + chunk]), slots[chunk], true);
			chunk++;
		}
		heap_multi_insert(heap, slots, chunk, rows[done].cid, 0, NULL);
		for (int i = 0; i < chunk; i++)
		{
			tids[done + i] = slots[i]->tts_tid;
			ExecClearTuple(slots[i]);
		}
		done += chunk;
	}
	for (int i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	pfree(slots);
	FreeTupleDesc(slot_desc);
}

/*
 * Store rows in the outbox, in the current (sub)transaction, in order,
 * each under its command id (outbox_append(), and the capture's pending
 * envelopes: outbox_batch.c).  Does not advance the command counter.  Each row then overwrites its
 * key's sequence cache entry, in order: with its holder's writer when the
 * holder was created by the (sub)transaction writing the row, else with
 * none.
 */
void
outbox_append_rows(const OutboxNewRow *rows, int n)
{
	const OutboxRelations *rels = outbox_relations();
	Relation	heap = table_open(rels->outbox, RowExclusiveLock);
	Relation	index = index_open(rels->outbox_pkey, RowExclusiveLock);
	ItemPointer tids = palloc(sizeof(ItemPointerData) * n);
	TransactionId me;

	insert_heap_rows(heap, rows, n, tids);
	for (int i = 0; i < n; i++)
	{
		Datum		values[2] = {PointerGetDatum(rows[i].key), Int64GetDatum(rows[i].seq)};
		bool		nulls[2] = {false, false};

		/* the primary key refuses a duplicate sequence, whatever happened */
		index_insert(index, values, nulls, &tids[i], heap, UNIQUE_CHECK_YES,
					 false, outbox_pkey_info);
	}
	index_close(index, NoLock);
	table_close(heap, NoLock);
	pfree(tids);

	/*
	 * Only a holder created by the (sub)transaction that appended may vouch
	 * for the entry: a live holder then proves the append was kept.
	 */
	me = GetCurrentTransactionIdIfAny();
	for (int i = 0; i < n; i++)
	{
		if (i + SEQ_CACHE_PREFETCH_AHEAD < n)
			outbox_cache_prefetch(rows[i + SEQ_CACHE_PREFETCH_AHEAD].key);
		seq_cache_remember(&store_tag, VARDATA_ANY(rows[i].key),
						   VARSIZE_ANY_EXHDR(rows[i].key),
						   TransactionIdIsValid(rows[i].holder_xmin) &&
						   rows[i].holder_xmin == me ?
						   rows[i].holder_writer : InvalidFullTransactionId,
						   rows[i].seq);
	}
}

/* ---- the last sequences of a page's keys (snapshot_table.c) */

/* A page's key, sorted in byte order, with its place in the caller's arrays. */
typedef struct SortedKey
{
	text	   *key;
	int			idx;
} SortedKey;

static int
sorted_key_cmp(const void *a, const void *b)
{
	const text *x = ((const SortedKey *) a)->key;
	const text *y = ((const SortedKey *) b)->key;

	return key_cmp(VARDATA_ANY(x), VARSIZE_ANY_EXHDR(x), VARDATA_ANY(y), VARSIZE_ANY_EXHDR(y));
}

/* outbox_read_last_sequences() of at most this many keys probes each */
#define PROBE_KEYS 4

/* Index entries read forward before the scan is aimed at a key again. */
#define EACH_STEPS	8

/* The scan's next entry visible to snapshot (see first_visible()). */
static bool
next_visible(IndexScanDesc scan, Relation heap, TupleTableSlot *slot,
			 bool filter, Snapshot snapshot)
{
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		if (!filter || table_tuple_satisfies_snapshot(heap, slot, snapshot))
			return true;
	}
	return false;
}

/*
 * For each key not to skip (skip[idx], or NULL): the seq of its last row in
 * heap/index visible to snapshot, into seqs[idx], and found[idx].  keys are sorted in byte
 * order, as the index is.  One forward scan merges them with the index:
 * keys close together in the index (a page of uuid or text keys) cost an
 * entry or two each; for a key further on than EACH_STEPS entries the scan
 * is aimed at it again (one descent), and a key with more rows than that
 * (a backlog in the outbox) gets its last one by a backward probe.  So a
 * page costs O(keys) entries and descents, wherever its keys lie.  No
 * SERIALIZABLE predicate locks, as in first_visible().
 */
static void
merge_each_last_seq(Oid heap_oid, Oid index_oid, Snapshot snapshot, int n,
					const SortedKey *keys, const bool *skip, int64 *seqs, bool *found)
{
	Relation	heap = table_open(heap_oid, AccessShareLock);
	Relation	index = index_open(index_oid, AccessShareLock);
	bool		filter = IsolationIsSerializable();
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	bool		aimed = false;
	bool		have = false;
	int			steps = 0;		/* entries of other keys since the last aim */
	int			same = 0;		/* rows of this key read */
	int			i = 0;

	scan = index_beginscan(heap, index, filter ? SnapshotAny : snapshot, 1, 0);
	while (i < n)
	{
		const SortedKey *k = &keys[i];
		bool		isnull;
		text	   *entry;
		int			c;

		if (skip != NULL && skip[k->idx])
		{
			i++;
			continue;
		}
		if (!aimed || steps > EACH_STEPS)
		{
			ScanKeyData skey;

			/* keys[i].key stays allocated while the scan may use it */
			ScanKeyEntryInitialize(&skey, 0, 1, BTGreaterEqualStrategyNumber, InvalidOid,
								   C_COLLATION_OID, F_TEXT_GE, PointerGetDatum(k->key));
			index_rescan(scan, &skey, 1, NULL, 0);
			aimed = true;
			steps = 0;
			have = next_visible(scan, heap, slot, filter, snapshot);
		}
		if (!have)
			break;				/* no entry at or after this key: none of the rest */
		entry = DatumGetTextPP(slot_getattr(slot, 1, &isnull));
		c = sorted_key_cmp(&(SortedKey) {entry, 0}, k);
		if (c < 0)
		{
			steps++;
			have = next_visible(scan, heap, slot, filter, snapshot);
			continue;
		}
		if (c == 0)
		{
			/* a key's rows come in seq order: the last one wins */
			seqs[k->idx] = DatumGetInt64(slot_getattr(slot, 2, &isnull));
			found[k->idx] = true;
			if (++same > EACH_STEPS)
			{
				/* a long backlog: its last row by one backward probe */
				probe_last_seq(heap_oid, index_oid, k->key, snapshot, 2, &seqs[k->idx]);
				i++;
				same = 0;
				aimed = false;
				continue;
			}
			have = next_visible(scan, heap, slot, filter, snapshot);
			continue;
		}
		i++;					/* the entry is past this key: not in the index */
		steps = 0;
		same = 0;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(heap, NoLock);
}

/*
 * The last sequences of n distinct keys, in any order: what
 * outbox_read_last_sequence(key, len, latest) returns for each, by one merge of
 * the sorted keys with the outbox's index and one with the counters'
 * (merge_each_last_seq: O(n) whatever the keys' spread in the index), and
 * without SERIALIZABLE predicate locks (a serializable reader is protected
 * by its read of the rows themselves, as snapshot()'s).
 *
 * Read with the active snapshot (snapshot_table.c), a key's counter is
 * only read when it has no rows in the outbox.  latest (SnapshotSelf, the
 * capture's pending envelopes: outbox_batch.c) reads every key's counter
 * too and takes the higher of the two: a forward scan is not one moment,
 * and a publisher committing the removal of a key's rows while the scan is
 * among them leaves it the lower rows only; that commit raised the key's
 * counter, read after (as in outbox_name_seqs.c).  At most PROBE_KEYS keys
 * are read one by one instead: a backward probe each (highest row first,
 * so one moment per key) costs less than setting up the two merges.
 */
void
outbox_read_last_sequences(int n, const char *const *keys, const int *key_lens,
						   int64 *seqs, bool latest)
{
	const OutboxRelations *rels;
	Snapshot	snapshot;
	SortedKey  *sorted;
	bool	   *found;
	bool	   *in_counters;
	int64	   *counter_seqs;

	if (n <= PROBE_KEYS)
	{
		for (int i = 0; i < n; i++)
			seqs[i] = outbox_read_last_sequence(keys[i], key_lens[i], latest) +
				pending_before(keys[i], key_lens[i], latest);
		return;
	}
	rels = outbox_relations();
	snapshot = latest ? SnapshotSelf : RegisterSnapshot(GetActiveSnapshot());
	sorted = palloc(sizeof(SortedKey) * n);
	for (int i = 0; i < n; i++)
	{
		sorted[i].key = cstring_to_text_with_len(keys[i], key_lens[i]);
		sorted[i].idx = i;
	}
	qsort(sorted, n, sizeof(SortedKey), sorted_key_cmp);
	found = palloc0(sizeof(bool) * n);
	in_counters = palloc0(sizeof(bool) * n);
	counter_seqs = palloc0(sizeof(int64) * n);
	memset(seqs, 0, sizeof(int64) * n);
	merge_each_last_seq(rels->outbox, rels->outbox_pkey, snapshot, n, sorted, NULL,
						seqs, found);
	merge_each_last_seq(rels->counters, rels->counters_pkey, snapshot, n, sorted,
						latest ? NULL : found, counter_seqs, in_counters);
	for (int i = 0; i < n; i++)
	{
		if (in_counters[i] && (!found[i] || counter_seqs[i] > seqs[i]))
			seqs[i] = counter_seqs[i];
		seqs[i] += pending_before(keys[i], key_lens[i], latest);
	}
	if (!latest)
		UnregisterSnapshot(snapshot);
	for (int i = 0; i < n; i++)
		pfree(sorted[i].key);
	pfree(sorted);
	pfree(found);
	pfree(in_counters);
	pfree(counter_seqs);
}

/* The same, after writing the capture's pending envelopes (outbox_batch.c). */
void
outbox_last_sequences(int n, const char *const *keys, const int *key_lens,
					  int64 *seqs, bool latest)
{
	outbox_batch_flush(true);
	outbox_read_last_sequences(n, keys, key_lens, seqs, latest);
}

/* ---- the counters, raised when the outbox's rows are removed */

/*
 * counters[key] = greatest(counters[key], seq), through the heap and the
 * primary key directly: this runs once per key of every published batch,
 * where an INSERT ... ON CONFLICT through SPI cost the publisher more than
 * everything else it does per batch.  An update of seq alone stays HOT on
 * the half-full pages, so it adds no index entry.  A concurrent writer of
 * the same counter (only another para_sync.ack() can be one) makes this
 * transaction fail rather than lose either value.
 */
static void
raise_counter(Relation heap, Relation index, IndexInfo *info, Snapshot snapshot,
			  text *key, int64 seq)
{
	ScanKeyData skey;
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	Datum		values[2] = {PointerGetDatum(key), Int64GetDatum(seq)};
	bool		nulls[2] = {false, false};
	HeapTuple	tuple = heap_form_tuple(RelationGetDescr(heap), values, nulls);
	bool		found;

	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, PointerGetDatum(key));
	scan = index_beginscan(heap, index, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (!found)
	{
		heap_insert(heap, tuple, GetCurrentCommandId(true), 0, NULL);
		index_insert(index, values, nulls, &tuple->t_self, heap, UNIQUE_CHECK_YES,
					 false, info);
	}
	else
	{
		bool		isnull;

		if (DatumGetInt64(slot_getattr(slot, 2, &isnull)) < seq)
		{
			simple_heap_update(heap, &slot->tts_tid, tuple);
			if (!HeapTupleIsHeapOnly(tuple))
				index_insert(index, values, nulls, &tuple->t_self, heap,
							 UNIQUE_CHECK_YES, false, info);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	heap_freetuple(tuple);
}

/*
 * Raise the counter of every (keys[i], seqs[i]) pair; keys are distinct.
 * Called by outbox_remove() (outbox_consume.c) with the highest sequence
 * it removed of each key.
 */
void
outbox_raise_counters(text **keys, int64 *seqs, int n)
{
	const OutboxRelations *rels = outbox_relations();
	Relation	heap;
	Relation	index;
	IndexInfo  *info;
	Snapshot	snapshot;

	if (n == 0)
		return;
	heap = table_open(rels->counters, RowExclusiveLock);
	index = index_open(rels->counters_pkey, RowExclusiveLock);
	info = BuildIndexInfo(index);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	for (int i = 0; i < n; i++)
		raise_counter(heap, index, info, snapshot, keys[i], seqs[i]);
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	CommandCounterIncrement();
}
