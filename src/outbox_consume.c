/*
 * outbox_consume.c — the outbox's consume step, in one place: outbox_read()
 * and outbox_remove(), used by the publisher (publisher.c) and behind the SQL
 * functions para_sync.consume() and para_sync.ack().
 *
 * consume() walks the outbox primary key (key, seq) from after_key and wraps
 * around, so a batch is in per-key sequence order and a large backlog is
 * drained fairly across keys.  ack() deletes, per key, the rows up to the
 * acknowledged sequence and records the highest deleted sequence in
 * para_sync.counters (outbox_raise_counters(), outbox_append.c, the one
 * home of the counter rule), in the caller's transaction, where the capture
 * trigger will find it once the key has no outbox rows left.
 *
 * Both use the btree directly, so their cost does not depend on planner
 * statistics of a table that swings between empty and millions of rows.
 * They assume a single consumer at a time (the publisher).
 *
 * The outbox family: outbox_append.c (sequences, append, counters),
 * outbox_consume.c (read, remove), outbox_backlog.c (count),
 * outbox_vacuum.c (vacuum after a drain).
 */
#include "para_sync.h"
#include "publisher.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(para_sync_consume);
PG_FUNCTION_INFO_V1(para_sync_ack);

/* Do two texts hold the same bytes? */
static bool
same_text(const text *a, const text *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/*
 * The WAL position up to which the commit of the row in slot must be flushed
 * to be durable: the end of its commit record for an asynchronous commit
 * (clog keeps it, per group of transactions, so it may be a little later);
 * InvalidXLogRecPtr for a synchronous one, flushed before it became visible.
 * last_xid and last_lsn remember the previous row's answer: a transaction's
 * rows often come together.
 */
static XLogRecPtr
row_commit_lsn(TupleTableSlot *slot, TransactionId *last_xid, XLogRecPtr *last_lsn)
{
	HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, NULL);
	TransactionId xmin;

	/* a frozen row committed long ago: its clog entry may be gone */
	if (HeapTupleHeaderXminFrozen(tuple->t_data))
		return InvalidXLogRecPtr;
	xmin = HeapTupleHeaderGetRawXmin(tuple->t_data);
	if (xmin != *last_xid)
	{
		*last_xid = xmin;
		*last_lsn = TransactionIdGetCommitLSN(xmin);
	}
	return *last_lsn;
}

/*
 * Hand up to limit rows whose key compares to bound by strategy (>= or <) to
 * fn, in index order, but the rows of bound itself with seq <= after_seq.
 * Returns the number fn took; *stopped when fn refused one.
 */
static int
read_range(Relation heap, Relation index, text *bound, int64 after_seq,
		   StrategyNumber strategy, RegProcedure cmp, int limit,
		   OutboxRowFn fn, void *arg, bool *stopped)
{
	ScanKeyData skey;
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	bool		with_layout = !outbox_relations()->legacy_schema;
	bool		with_scope = outbox_relations()->with_scope;
	TransactionId last_xid = InvalidTransactionId;
	XLogRecPtr	last_lsn = InvalidXLogRecPtr;
	int			n = 0;

	ScanKeyEntryInitialize(&skey, 0, 1, strategy, InvalidOid, C_COLLATION_OID,
						   cmp, PointerGetDatum(bound));
	scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	while (n < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		OutboxRow	row;
		bool		isnull;

		row.key = DatumGetTextPP(slot_getattr(slot, 1, &isnull));
		row.seq = DatumGetInt64(slot_getattr(slot, 2, &isnull));
		if (after_seq > 0 && row.seq <= after_seq && same_text(row.key, bound))
			continue;
		row.txid = DatumGetInt64(slot_getattr(slot, 3, &isnull));
		row.queued_at = DatumGetTimestampTz(slot_getattr(slot, 4, &isnull));
		row.envelope = slot_getattr(slot, 5, &isnull);
		/* a 0.1 outbox (outbox_append.c) has no layout column */
		row.subject_layout = with_layout ?
			DatumGetChar(slot_getattr(slot, 6, &isnull)) : PSYNC_LAYOUT_KEY;
		/* a 0.3 outbox has no scope column: no scopes */
		row.scope = NULL;
		if (with_scope)
		{
			Datum		scope = slot_getattr(slot, 7, &isnull);

			if (!isnull)
				row.scope = DatumGetTextPP(scope);
		}
		row.wrapped = strategy == BTLessStrategyNumber;
		row.tid = slot->tts_tid;
		row.commit_lsn = row_commit_lsn(slot, &last_xid, &last_lsn);
		if (!fn(&row, arg))
		{
			*stopped = true;
			break;
		}
		n++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return n;
}

/*
 * Read up to limit committed envelopes (active snapshot) in per-key sequence
 * order, from the key after_key on (but its rows with seq <= after_seq; 0:
 * none), and with wrap also the keys before it.  Each row goes to fn, which
 * copies what it keeps (the row's memory lives only for the call) and may
 * refuse it to end the read early (a byte cap).  Returns the number of rows
 * fn took.
 */
int
outbox_read(const char *after_key, int64 after_seq, bool wrap, int limit,
			OutboxRowFn fn, void *arg)
{
	const OutboxRelations *rels = outbox_relations();
	text	   *bound = cstring_to_text(after_key ? after_key : "");
	Relation	heap;
	Relation	index;
	bool		stopped = false;
	int			n;

	heap = table_open(rels->outbox, AccessShareLock);
	index = index_open(rels->outbox_pkey, AccessShareLock);
	n = read_range(heap, index, bound, after_seq, BTGreaterEqualStrategyNumber,
				   F_TEXT_GE, limit, fn, arg, &stopped);
	if (wrap && n < limit && !stopped && VARSIZE_ANY_EXHDR(bound) > 0)
		n += read_range(heap, index, bound, 0, BTLessStrategyNumber, F_TEXT_LT,
						limit - n, fn, arg, &stopped);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	pfree(bound);
	return n;
}

static bool
consume_row(const OutboxRow *row, void *arg)
{
	ReturnSetInfo *rsinfo = arg;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = PointerGetDatum(row->key);
	values[1] = Int64GetDatum(row->seq);
	values[2] = PointerGetDatum(PG_DETOAST_DATUM(row->envelope));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return true;
}

Datum
para_sync_consume(PG_FUNCTION_ARGS)
{
	int32		limit = PG_GETARG_INT32(0);
	char	   *after_key = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (limit < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must not be negative")));
	InitMaterializedSRF(fcinfo, 0);
	outbox_read(after_key, 0, true, limit, consume_row, rsinfo);
	return (Datum) 0;
}

/* Delete key's outbox rows with seq <= upto; returns the highest deleted. */
static int64
delete_acked(Relation heap, Relation index, Snapshot snapshot, text *key,
			 int64 upto, int64 *deleted)
{
	ScanKeyData skeys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	int64		highest = 0;

	ScanKeyEntryInitialize(&skeys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, PointerGetDatum(key));
	ScanKeyEntryInitialize(&skeys[1], 0, 2, BTLessEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8LE, Int64GetDatum(upto));
	scan = index_beginscan(heap, index, snapshot, 2, 0);
	index_rescan(scan, skeys, 2, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;

		highest = DatumGetInt64(slot_getattr(slot, 2, &isnull));
		simple_heap_delete(heap, &slot->tts_tid);
		(*deleted)++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return highest;
}

/*
 * Delete the rows at ack->tids (read by the caller, all of ack->key with seq
 * <= ack->upto) without an index look-up; returns the highest deleted.
 * Every row is first checked to be still there and still that key's: when
 * one is not (removed meanwhile, the outbox truncated), nothing is deleted
 * and -1 is returned, for the index path to do it.
 */
static int64
delete_by_tids(Relation heap, Snapshot snapshot, BlockNumber nblocks,
			   const OutboxAck *ack, int64 *deleted)
{
	TupleDesc	desc = RelationGetDescr(heap);
	int64		highest = 0;

	for (int i = 0; i < ack->ntids; i++)
	{
		HeapTupleData tuple;
		Buffer		buf;
		bool		isnull;
		int64		seq;
		Datum		key_datum;
		text	   *key;
		bool		same;

		if (!ItemPointerIsValid(&ack->tids[i]) ||
			ItemPointerGetBlockNumber(&ack->tids[i]) >= nblocks)
			return -1;
		tuple.t_self = ack->tids[i];
		if (!heap_fetch(heap, snapshot, &tuple, &buf, false))
			return -1;
		seq = DatumGetInt64(heap_getattr(&tuple, 2, desc, &isnull));
		key_datum = heap_getattr(&tuple, 1, desc, &isnull);
		key = DatumGetTextPP(key_datum);
		same = seq <= ack->upto && same_text(key, ack->key);
		if ((Pointer) key != DatumGetPointer(key_datum))
			pfree(key);
		ReleaseBuffer(buf);
		if (!same)
			return -1;
		highest = Max(highest, seq);
	}
	for (int i = 0; i < ack->ntids; i++)
	{
		simple_heap_delete(heap, &ack->tids[i]);
		(*deleted)++;
	}
	return highest;
}

static int
ack_cmp(const void *a, const void *b)
{
	const OutboxAck *x = a;
	const OutboxAck *y = b;
	int			xlen = VARSIZE_ANY_EXHDR(x->key);
	int			ylen = VARSIZE_ANY_EXHDR(y->key);
	int			c = memcmp(VARDATA_ANY(x->key), VARDATA_ANY(y->key), Min(xlen, ylen));

	return c != 0 ? c : (xlen > ylen) - (xlen < ylen);
}

/* Sort by key and keep one pair per key, with the highest sequence. */
static int
dedupe_acks(OutboxAck *acks, int n)
{
	int			unique = 0;

	qsort(acks, n, sizeof(OutboxAck), ack_cmp);
	for (int i = 0; i < n; i++)
	{
		if (unique > 0 && ack_cmp(&acks[unique - 1], &acks[i]) == 0)
		{
			acks[unique - 1].upto = Max(acks[unique - 1].upto, acks[i].upto);
			acks[unique - 1].tids = NULL;	/* by the index */
		}
		else
			acks[unique++] = acks[i];
	}
	return unique;
}

/*
 * Remove, per (key, upto) pair, the key's outbox rows with seq <= upto and
 * record the highest removed sequence in para_sync.counters, in the
 * caller's transaction.  A pair with tids (the publisher, which read those
 * rows) removes exactly the rows there, each checked first, without an
 * index look-up; one without, or whose rows are not all there any more, by
 * the index.  acks is sorted in place.  Returns the number of rows removed.
 */
int64
outbox_remove(OutboxAck *acks, int n)
{
	const OutboxRelations *rels = outbox_relations();
	text	  **last_keys;
	int64	   *last_seqs;
	int			nlast = 0;
	int64		deleted = 0;
	Relation	heap;
	Relation	index;
	Snapshot	snapshot;
	BlockNumber nblocks;

	n = dedupe_acks(acks, n);
	last_keys = palloc(sizeof(text *) * Max(n, 1));
	last_seqs = palloc(sizeof(int64) * Max(n, 1));
	heap = table_open(rels->outbox, RowExclusiveLock);
	index = index_open(rels->outbox_pkey, RowExclusiveLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	nblocks = RelationGetNumberOfBlocks(heap);
	for (int i = 0; i < n; i++)
	{
		int64		highest = -1;

		if (acks[i].tids != NULL)
			highest = delete_by_tids(heap, snapshot, nblocks, &acks[i], &deleted);
		if (highest < 0)
			highest = delete_acked(heap, index, snapshot, acks[i].key,
								   acks[i].upto, &deleted);

		if (highest > 0)
		{
			last_keys[nlast] = acks[i].key;
			last_seqs[nlast] = highest;
			nlast++;
		}
	}
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	outbox_raise_counters(last_keys, last_seqs, nlast);
	pfree(last_keys);
	pfree(last_seqs);
	return deleted;
}

Datum
para_sync_ack(PG_FUNCTION_ARGS)
{
	ArrayType  *key_array;
	ArrayType  *seq_array;
	Datum	   *keys,
			   *seqs;
	bool	   *key_nulls,
			   *seq_nulls;
	int			nkeys,
				nseqs,
				nacks = 0;
	OutboxAck  *acks;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT64(0);
	key_array = PG_GETARG_ARRAYTYPE_P(0);
	seq_array = PG_GETARG_ARRAYTYPE_P(1);
	deconstruct_array(key_array, TEXTOID, -1, false, TYPALIGN_INT, &keys, &key_nulls, &nkeys);
	deconstruct_array(seq_array, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &seqs, &seq_nulls, &nseqs);
	if (nkeys != nseqs)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("keys and seqs must have the same length (%d and %d)", nkeys, nseqs)));

	/* nulls acknowledge nothing */
	acks = palloc(sizeof(OutboxAck) * Max(nkeys, 1));
	for (int i = 0; i < nkeys; i++)
	{
		if (key_nulls[i] || seq_nulls[i])
			continue;
		acks[nacks].key = DatumGetTextPP(keys[i]);
		acks[nacks].upto = DatumGetInt64(seqs[i]);
		acks[nacks].tids = NULL;
		nacks++;
	}
	PG_RETURN_INT64(outbox_remove(acks, nacks));
}
