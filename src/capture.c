/*
 * capture.c — the capture trigger of synced tables.
 *
 * Fires AFTER each inserted, updated or deleted row, so that the synced
 * table's own row lock or unique check has already serialized writers of the
 * same object.  For each change of an object it decides what to publish
 * and encodes the value; the statement's changes are then numbered (the
 * next per-object sequence) and appended to the outbox together, in the
 * writer's transaction, when the statement ends (outbox_batch.c)
 * (docs/protocol.md, "Sequences" rules 1 to 5):
 *   INSERT            upsert of the new key
 *   DELETE            delete of the old key (value nil)
 *   UPDATE, same key  upsert, unless no synced column changed (then nothing)
 *   UPDATE, new key   delete of the old key, then upsert of the new one
 *   UPDATE, new scope delete of the key in its old scope, then upsert in the
 *                     new one (a table with a scope, scope.c)
 *
 * A trigger of the user (or a foreign-key action) can change a row again
 * before this trigger's event for it fires: the statement that did so ran,
 * and captured its own change, inside the outer statement's AFTER triggers.
 * The outer event's row is then an old version, and capturing it would
 * publish stale content after the newer one.  Such an event is captured
 * against the row's latest version instead (latest_version()).  Likewise a
 * key that such a statement gave to a row again before the event deleting
 * it was captured gets that row's content, not a delete (capture_delete()).
 *
 * The next sequence usually comes from the sequence cache (seq_cache.c):
 * a change passes the version its statement replaced or deleted (replaced,
 * whose creator vouches for a cache entry) and the version whose content it
 * publishes (holder, which becomes the entry's voucher).  Changes made by
 * key_upgrade.c pass neither: always looked up, and the key's entry is
 * forgotten.  lifecycle.c, numbering every row of a table, reads the
 * name's last sequences in one pass (outbox_name_seqs.c), or else passes
 * the version it retires as replaced.
 */
#include "para_sync.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(para_sync_capture);

bool		para_sync_xact_wrote_envelopes = false;

/* A deformed row of the synced table. */
typedef struct RowImage
{
	Datum	   *values;
	bool	   *nulls;
	char	   *scope;			/* its scope token once built (row_scope()) */
} RowImage;

static void
row_deform(RowImage *row, HeapTuple tuple, TupleDesc desc)
{
	row->values = palloc(sizeof(Datum) * desc->natts);
	row->nulls = palloc(sizeof(bool) * desc->natts);
	row->scope = NULL;
	heap_deform_tuple(tuple, desc, row->values, row->nulls);
}

/*
 * The row's scope token (scope.c), built on first use and kept with the
 * row (an UPDATE compares the old and new rows' tokens, then publishes
 * them); NULL for a table without a scope.
 */
static const char *
row_scope(SyncedTable *table, RowImage *row)
{
	StringInfoData scope;

	if (row->scope != NULL || table->nscope == 0)
		return row->scope;
	initStringInfo(&scope);
	scope_build(&scope, table, row->values, row->nulls);
	row->scope = scope.data;
	return row->scope;
}

/* Did any synced column change between old and new? */
static bool
synced_columns_differ(SyncedTable *table, TupleDesc desc,
					  const RowImage *old_row, const RowImage *new_row)
{
	for (int i = 0; i < table->ncolumns; i++)
	{
		int			idx = table->columns[i].attnum - 1;
		Form_pg_attribute att = TupleDescAttr(desc, idx);

		if (old_row->nulls[idx] != new_row->nulls[idx])
			return true;
		if (old_row->nulls[idx])
			continue;
		if (!datumIsEqual(old_row->values[idx], new_row->values[idx],
						  att->attbyval, att->attlen))
			return true;
	}
	return false;
}

/*
 * Append the next envelope of the object (key) to the outbox: an upsert of
 * row, or a delete (row: the row that leaves, whose scope the delete
 * carries).  replaced: the version
 * with this key that the triggering statement updated or deleted, or NULL;
 * holder: the version whose content this is, or NULL (outbox_append.c).
 * in_trigger: a trigger event's change, left pending and numbered and
 * written with the statement's others when it ends (outbox_batch.c), so
 * that every event of a statement runs under the statement's command id;
 * the rest are appended at once (outbox_append(), which advances the
 * command counter).  last_seq: the key's last sequence when the caller
 * knows it (outbox_name_seqs.c), else -1.
 */
static void
emit_versions(SyncedTable *table, StringInfo key, RowImage *row,
			  psync_op op, HeapTuple replaced, HeapTuple holder, bool in_trigger,
			  int64 last_seq)
{
	StringInfoData value;
	const char *scope;
	bool		has_value = op != PSYNC_OP_DELETE;
	int64		seq;
	uint64		txid = U64FromFullTransactionId(GetTopFullTransactionId());
	bytea	   *envelope;

	/* a delete's row (the one that leaves) gives its scope, not a value */
	scope = row_scope(table, row);
	if (has_value)
	{
		initStringInfo(&value);
		row_encode_values(&value, table, row->values, row->nulls);
	}
	para_sync_xact_wrote_envelopes = true;
	if (in_trigger)
	{
		/* numbered and written with the statement's others (outbox_batch.c) */
		outbox_batch_add(key->data, key->len, has_value ? &value : NULL,
						 table->schema_version, op, txid, table->subject_layout,
						 scope, replaced, holder);
		return;
	}
	seq = last_seq >= 0 ? last_seq + 1 : outbox_next_sequence(key->data, key->len, replaced);
	envelope = capture_envelope_build_scoped(key->data, key->len,
											 has_value ? &value : NULL,
											 table->schema_version, (uint64) seq, op,
											 true, txid, scope);
	outbox_append(key->data, key->len, seq, (int64) txid, envelope,
				  table->subject_layout, scope, holder);
}

/*
 * The same outside a trigger event.  replaced: NULL (the sequence is looked
 * up), or the version of the row whose key is key that the caller removes:
 * one visible to it, that nobody else can change meanwhile (lifecycle.c
 * retiring every row of a table under a lock that keeps writers out), so
 * its creator may vouch for the cached sequence as a trigger's old tuple's
 * does (seq_cache.c).
 */
void
capture_emit_change(SyncedTable *table, StringInfo key, Datum *values,
					bool *nulls, psync_op op, HeapTuple replaced)
{
	RowImage	row = {values, nulls, NULL};

	emit_versions(table, key, &row, op, replaced, NULL, false, -1);
}

/*
 * The same when the caller read the key's last sequence itself
 * (lifecycle.c, through outbox_name_seqs.c); returns the sequence appended.
 */
int64
capture_emit_after(SyncedTable *table, StringInfo key, Datum *values,
				   bool *nulls, psync_op op, int64 last_seq)
{
	RowImage	row = {values, nulls, NULL};

	emit_versions(table, key, &row, op, NULL, NULL, false, last_seq);
	return last_seq + 1;
}

static void
emit_change(SyncedTable *table, StringInfo key, RowImage *row, psync_op op,
			HeapTuple replaced, HeapTuple holder)
{
	emit_versions(table, key, row, op, replaced, holder, true, -1);
}

/*
 * Was tuple (as the trigger manager read it from the table) updated or
 * deleted since, by this transaction?  Only statements run from AFTER
 * triggers of the statement that wrote it can have done that.
 */
static bool
superseded_by_us(HeapTuple tuple)
{
	HeapTupleHeader header = tuple->t_data;

	if ((header->t_infomask & HEAP_XMAX_INVALID) ||
		HEAP_XMAX_IS_LOCKED_ONLY(header->t_infomask))
		return false;
	return TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetUpdateXid(header));
}

/*
 * The latest version of a superseded tuple, as this transaction sees it
 * now, or NULL when the row was deleted.
 */
static HeapTuple
latest_version(Relation rel, HeapTuple tuple)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan_tid(rel, snapshot);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ItemPointerData tid = tuple->t_self;
	HeapTuple	latest = NULL;

	table_tuple_get_latest_tid(scan, &tid);
	if (table_tuple_fetch_row_version(rel, &tid, snapshot, slot))
		latest = ExecCopySlotHeapTuple(slot);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	return latest;
}

/*
 * The row whose primary key equals the key columns in values, as this
 * transaction sees it now (its own changes, and no SERIALIZABLE predicate
 * lock: the key was this transaction's to delete, so no other can have
 * given it to a row since), or NULL.
 */
static HeapTuple
row_with_key(Relation rel, SyncedTable *table, Datum *values)
{
	Relation	index = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	ScanKeyData *scankeys = palloc(sizeof(ScanKeyData) * table->nkeys);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	HeapTuple	found = NULL;

	for (int i = 0; i < table->nkeys; i++)
		ScanKeyEntryInitialize(&scankeys[i], 0, i + 1, BTEqualStrategyNumber,
							   index->rd_opcintype[i], index->rd_indcollation[i],
							   get_opcode(table->keys[i].eq_opr),
							   values[table->keys[i].attnum - 1]);
	scan = index_beginscan(rel, index, SnapshotSelf, table->nkeys, 0);
	index_rescan(scan, scankeys, table->nkeys, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
		found = ExecCopySlotHeapTuple(slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	return found;
}

/*
 * Does the update move the row to another scope (docs/protocol.md,
 * "Scopes")?  Compared by token, the scope's one text; the tokens stay
 * with the rows, for their envelopes.
 */
static bool
scope_moved(SyncedTable *table, RowImage *old_row, RowImage *new_row)
{
	if (table->nscope == 0)
		return false;
	return strcmp(row_scope(table, old_row), row_scope(table, new_row)) != 0;
}

/*
 * The key of old_tuple (deleted, or updated to another key) is gone: a
 * delete.  Unless this transaction wrote something since the statement that
 * removed it (old_tuple's cmax is not the current command), and that gave
 * the key to a row again, whose change was captured already: then replicas
 * need that row's content after this event, not a delete (and, when that
 * row is in another scope, a delete in the old scope before it, so that
 * subscribers of the old scope see the key leave).
 *
 * The capture's own appends do not advance the command counter, so the
 * events of one multi-row statement skip the look-up; any other statement
 * in between (a trigger's, a foreign-key action's: SPI advances the counter
 * after each) makes the events after it look up.  Within one statement the
 * primary key (never deferrable on a synced table) lets a row take a key
 * only after the row that held it left it, so the event giving the key
 * comes after the event taking it away, and needs no look-up here.
 */
static void
capture_delete(SyncedTable *table, Relation rel, StringInfo key,
			   HeapTuple old_tuple, RowImage *old_row)
{
	if (HeapTupleHeaderGetCmax(old_tuple->t_data) != GetCurrentCommandId(false))
	{
		HeapTuple	now = row_with_key(rel, table, old_row->values);

		if (now != NULL)
		{
			RowImage	row;

			row_deform(&row, now, RelationGetDescr(rel));
			if (scope_moved(table, old_row, &row))
			{
				/* the key is in another scope now: leave the old one first */
				emit_change(table, key, old_row, PSYNC_OP_DELETE, old_tuple, NULL);
				emit_change(table, key, &row, PSYNC_OP_UPSERT, NULL, now);
				return;
			}
			emit_change(table, key, &row, PSYNC_OP_UPSERT, old_tuple, now);
			return;
		}
	}
	emit_change(table, key, old_row, PSYNC_OP_DELETE, old_tuple, NULL);
}

static void capture_one(SyncedTable *table, TupleDesc desc, HeapTuple tuple);

/*
 * INSERT whose row was changed again before this event: the later change
 * is captured already, from this version on; what replicas still need is
 * the latest content (unchanged synced columns capture nothing), unless
 * the row is gone (its delete is captured).
 */
static void
capture_superseded_insert(SyncedTable *table, Relation rel, HeapTuple tuple)
{
	HeapTuple	latest = latest_version(rel, tuple);

	if (latest != NULL)
		capture_one(table, RelationGetDescr(rel), latest);
}

static void
capture_update(SyncedTable *table, Relation rel, HeapTuple old_tuple,
			   HeapTuple new_tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	RowImage	old_row,
				new_row;
	StringInfoData old_key,
				new_key;

	row_deform(&old_row, old_tuple, desc);
	initStringInfo(&old_key);
	key_build(&old_key, table, old_row.values, old_row.nulls);
	if (superseded_by_us(new_tuple))
	{
		/*
		 * Captured as old -> latest version: the later changes were captured
		 * from new_tuple on, but not the move away from the old key.
		 */
		HeapTuple	latest = latest_version(rel, new_tuple);

		if (latest == NULL)
		{
			row_deform(&new_row, new_tuple, desc);
			initStringInfo(&new_key);
			key_build(&new_key, table, new_row.values, new_row.nulls);
			if (old_key.len != new_key.len ||
				memcmp(old_key.data, new_key.data, old_key.len) != 0)
				capture_delete(table, rel, &old_key, old_tuple, &old_row);
			else if (scope_moved(table, &old_row, &new_row))
			{
				/* the later delete went to the new scope: leave the old one too */
				emit_change(table, &old_key, &old_row, PSYNC_OP_DELETE, NULL, NULL);
			}
			return;
		}
		new_tuple = latest;
	}
	row_deform(&new_row, new_tuple, desc);
	initStringInfo(&new_key);
	key_build(&new_key, table, new_row.values, new_row.nulls);

	if (old_key.len != new_key.len ||
		memcmp(old_key.data, new_key.data, old_key.len) != 0)
	{
		capture_delete(table, rel, &old_key, old_tuple, &old_row);
		emit_change(table, &new_key, &new_row, PSYNC_OP_UPSERT, NULL, new_tuple);
	}
	else if (scope_moved(table, &old_row, &new_row))
	{
		/* a move: a delete in the old scope, then an upsert in the new one */
		emit_change(table, &new_key, &old_row, PSYNC_OP_DELETE, old_tuple, NULL);
		emit_change(table, &new_key, &new_row, PSYNC_OP_UPSERT, NULL, new_tuple);
	}
	else if (synced_columns_differ(table, desc, &old_row, &new_row))
		emit_change(table, &new_key, &new_row, PSYNC_OP_UPSERT, old_tuple,
					new_tuple);
}

/* An upsert of tuple, whose key no version replaced by this event had. */
static void
capture_one(SyncedTable *table, TupleDesc desc, HeapTuple tuple)
{
	RowImage	row;
	StringInfoData key;

	row_deform(&row, tuple, desc);
	initStringInfo(&key);
	key_build(&key, table, row.values, row.nulls);
	emit_change(table, &key, &row, PSYNC_OP_UPSERT, NULL, tuple);
}

Datum
para_sync_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	SyncedTable *table;
	TriggerEvent event;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.capture() must be called as a trigger")));
	event = trigdata->tg_event;
	if (!TRIGGER_FIRED_AFTER(event) || !TRIGGER_FIRED_FOR_ROW(event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.capture() must be an AFTER ... FOR EACH ROW trigger")));

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	table = table_cache_get(rel);
	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		if (superseded_by_us(trigdata->tg_trigtuple))
			capture_superseded_insert(table, rel, trigdata->tg_trigtuple);
		else
			capture_one(table, desc, trigdata->tg_trigtuple);
	}
	else if (TRIGGER_FIRED_BY_DELETE(event))
	{
		RowImage	row;
		StringInfoData key;

		row_deform(&row, trigdata->tg_trigtuple, desc);
		initStringInfo(&key);
		key_build(&key, table, row.values, row.nulls);
		capture_delete(table, rel, &key, trigdata->tg_trigtuple, &row);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event))
		capture_update(table, rel, trigdata->tg_trigtuple,
					   trigdata->tg_newtuple);

	return PointerGetDatum(NULL);
}

/*
 * Move a row from an older key format's key to its key now (key_upgrade.c):
 * a delete of old_key, then an upsert of the row under its current key,
 * each under the usual sequence rules.
 */
void
capture_rekey(SyncedTable *table, StringInfo old_key, Datum *values, bool *nulls)
{
	RowImage	row = {values, nulls, NULL};
	StringInfoData key;

	initStringInfo(&key);
	key_build(&key, table, values, nulls);
	emit_versions(table, old_key, &row, PSYNC_OP_DELETE, NULL, NULL, false, -1);
	emit_versions(table, &key, &row, PSYNC_OP_UPSERT, NULL, NULL, false, -1);
}
