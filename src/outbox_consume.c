/*
 * outbox_consume.c — para_sync.consume() and para_sync.ack(): the outbox's
 * consume step, in C.
 *
 * consume() walks the outbox primary key (key, seq) from after_key and wraps
 * around, so a batch is in per-key sequence order and a large backlog is
 * drained fairly across keys.  ack() deletes, per key, the rows up to the
 * acknowledged sequence and records the highest deleted sequence in
 * para_sync.counters, in the caller's transaction, where the capture
 * trigger will find it once the key has no outbox rows left.
 *
 * Both use the btree directly, so their cost does not depend on planner
 * statistics of a table that swings between empty and millions of rows.
 * They assume a single consumer at a time (the publisher).
 */
#include "para_sync.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(para_sync_consume);
PG_FUNCTION_INFO_V1(para_sync_ack);

/*
 * Append up to limit rows whose key compares to bound by strategy (>= or <)
 * to the result tuplestore, in index order.  Returns the number appended.
 */
static int
consume_range(ReturnSetInfo *rsinfo, Relation heap, Relation index,
			  text *bound, StrategyNumber strategy, RegProcedure cmp, int limit)
{
	ScanKeyData skey;
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	int			n = 0;

	ScanKeyEntryInitialize(&skey, 0, 1, strategy, InvalidOid, C_COLLATION_OID,
						   cmp, PointerGetDatum(bound));
	scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	while (n < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = slot_getattr(slot, 1, &nulls[0]);
		values[1] = slot_getattr(slot, 2, &nulls[1]);
		values[2] = PointerGetDatum(PG_DETOAST_DATUM_COPY(slot_getattr(slot, 5, &nulls[2])));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		n++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return n;
}

Datum
para_sync_consume(PG_FUNCTION_ARGS)
{
	int32		limit = PG_GETARG_INT32(0);
	text	   *after_key = PG_ARGISNULL(1) ? cstring_to_text("") : PG_GETARG_TEXT_PP(1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const StoreRelations *rels = store_relations();
	Relation	heap;
	Relation	index;
	int			n;

	if (limit < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must not be negative")));
	InitMaterializedSRF(fcinfo, 0);
	heap = table_open(rels->outbox, AccessShareLock);
	index = index_open(rels->outbox_pkey, AccessShareLock);
	n = consume_range(rsinfo, heap, index, after_key, BTGreaterEqualStrategyNumber,
					  F_TEXT_GE, limit);
	if (n < limit)
		consume_range(rsinfo, heap, index, after_key, BTLessStrategyNumber,
					  F_TEXT_LT, limit - n);
	index_close(index, NoLock);
	table_close(heap, NoLock);
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

/* counters[key] = greatest(counters[key], seq) for every pair, as owner. */
static void
remember_last_sequences(Datum *keys, Datum *seqs, int n)
{
	static const char *sql =
		"INSERT INTO para_sync.counters AS c (key, seq)"
		" SELECT k, pg_catalog.max(s)"
		"   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS a(k, s)"
		"  GROUP BY k"
		" ON CONFLICT (key) DO UPDATE SET seq = pg_catalog.int8larger(c.seq, excluded.seq)";
	Oid			types[2] = {TEXTARRAYOID, INT8ARRAYOID};
	Datum		args[2];
	OwnerSwitch sw;
	int			rc;

	if (n == 0)
		return;
	args[0] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(seqs, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	become_internal_owner(&sw);
	rc = SPI_execute_with_args(sql, 2, types, args, NULL, false, 0);
	restore_user(&sw);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "para_sync: recording last sequences failed: %s",
			 SPI_result_code_string(rc));
	SPI_finish();
}

typedef struct AckedKey
{
	text	   *key;
	int64		upto;
} AckedKey;

static int
acked_key_cmp(const void *a, const void *b)
{
	const AckedKey *x = a;
	const AckedKey *y = b;
	int			xlen = VARSIZE_ANY_EXHDR(x->key);
	int			ylen = VARSIZE_ANY_EXHDR(y->key);
	int			c = memcmp(VARDATA_ANY(x->key), VARDATA_ANY(y->key), Min(xlen, ylen));

	return c != 0 ? c : (xlen > ylen) - (xlen < ylen);
}

/* The (key, highest acked seq) pairs, one per key, nulls skipped. */
static int
collect_acks(Datum *keys, bool *key_nulls, Datum *seqs, bool *seq_nulls,
			 int n, AckedKey **result)
{
	AckedKey   *acks = palloc(sizeof(AckedKey) * Max(n, 1));
	int			count = 0,
				unique = 0;

	for (int i = 0; i < n; i++)
	{
		if (key_nulls[i] || seq_nulls[i])
			continue;
		acks[count].key = DatumGetTextPP(keys[i]);
		acks[count].upto = DatumGetInt64(seqs[i]);
		count++;
	}
	qsort(acks, count, sizeof(AckedKey), acked_key_cmp);
	for (int i = 0; i < count; i++)
	{
		if (unique > 0 && acked_key_cmp(&acks[unique - 1], &acks[i]) == 0)
			acks[unique - 1].upto = Max(acks[unique - 1].upto, acks[i].upto);
		else
			acks[unique++] = acks[i];
	}
	*result = acks;
	return unique;
}

Datum
para_sync_ack(PG_FUNCTION_ARGS)
{
	ArrayType  *key_array;
	ArrayType  *seq_array;
	const StoreRelations *rels = store_relations();
	Datum	   *keys,
			   *seqs,
			   *last_keys,
			   *last_seqs;
	bool	   *key_nulls,
			   *seq_nulls;
	int			nkeys,
				nseqs,
				nacks,
				nlast = 0;
	AckedKey   *acks;
	int64		deleted = 0;
	Relation	heap;
	Relation	index;
	Snapshot	snapshot;

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

	nacks = collect_acks(keys, key_nulls, seqs, seq_nulls, nkeys, &acks);
	last_keys = palloc(sizeof(Datum) * Max(nacks, 1));
	last_seqs = palloc(sizeof(Datum) * Max(nacks, 1));
	heap = table_open(rels->outbox, RowExclusiveLock);
	index = index_open(rels->outbox_pkey, RowExclusiveLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	for (int i = 0; i < nacks; i++)
	{
		int64		highest = delete_acked(heap, index, snapshot, acks[i].key,
										   acks[i].upto, &deleted);

		if (highest > 0)
		{
			last_keys[nlast] = PointerGetDatum(acks[i].key);
			last_seqs[nlast] = Int64GetDatum(highest);
			nlast++;
		}
	}
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	remember_last_sequences(last_keys, last_seqs, nlast);
	PG_RETURN_INT64(deleted);
}
