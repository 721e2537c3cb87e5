/*
 * capture.c — the capture trigger of synced tables.
 *
 * Fires AFTER each inserted, updated or deleted row, so that the synced
 * table's own row lock or unique check has already serialized writers of the
 * same object.  For each change of an object it takes the next per-object
 * sequence, encodes the envelope, and appends it to the outbox in the
 * writer's transaction (docs/protocol.md, "Sequences"):
 *   INSERT            upsert of the new key
 *   DELETE            delete of the old key (value nil)
 *   UPDATE, same key  upsert, unless no synced column changed (then nothing)
 *   UPDATE, new key   delete of the old key, then upsert of the new one
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(para_sync_capture);

bool		para_sync_xact_wrote_envelopes = false;

/* A deformed row of the synced table. */
typedef struct RowImage
{
	Datum	   *values;
	bool	   *nulls;
} RowImage;

static void
row_deform(RowImage *row, HeapTuple tuple, TupleDesc desc)
{
	row->values = palloc(sizeof(Datum) * desc->natts);
	row->nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(tuple, desc, row->values, row->nulls);
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
 * the row values/nulls, or a delete (values NULL).  replaced: the row
 * version holding key that this change replaces or deletes (NULL if none);
 * holder: the version holding key afterwards (NULL if none).  They let the
 * sequence cache skip the look-up (seq_cache.c).
 */
static void
emit_change_versions(SyncedTable *table, StringInfo key, Datum *values,
					 bool *nulls, psync_op op, HeapTuple replaced,
					 HeapTuple holder)
{
	StringInfoData value;
	int64		seq;
	uint64		txid = U64FromFullTransactionId(GetTopFullTransactionId());
	bytea	   *envelope;

	seq = sequence_store_next(key->data, key->len, replaced);
	if (values != NULL)
	{
		initStringInfo(&value);
		row_encode_values(&value, table, values, nulls);
	}
	envelope = envelope_build(key->data, key->len, values ? &value : NULL,
							  table->schema_version, (uint64) seq, op,
							  true, txid);
	sequence_store_append_version(key->data, key->len, seq, (int64) txid,
								  envelope, holder);
	para_sync_xact_wrote_envelopes = true;
}

/*
 * The same with no row version to go by (the look-up is always made).
 * Also used by lifecycle.c to retire every row of a table.
 */
void
capture_emit_change(SyncedTable *table, StringInfo key, Datum *values,
					bool *nulls, psync_op op)
{
	emit_change_versions(table, key, values, nulls, op, NULL, NULL);
}

static void
emit_change(SyncedTable *table, StringInfo key, const RowImage *row, psync_op op,
			HeapTuple replaced, HeapTuple holder)
{
	emit_change_versions(table, key, row ? row->values : NULL,
						 row ? row->nulls : NULL, op, replaced, holder);
}

static void
capture_update(SyncedTable *table, TupleDesc desc, HeapTuple old_tuple,
			   HeapTuple new_tuple)
{
	RowImage	old_row,
				new_row;
	StringInfoData old_key,
				new_key;

	row_deform(&old_row, old_tuple, desc);
	row_deform(&new_row, new_tuple, desc);
	initStringInfo(&old_key);
	initStringInfo(&new_key);
	key_build(&old_key, table, old_row.values, old_row.nulls);
	key_build(&new_key, table, new_row.values, new_row.nulls);

	if (old_key.len != new_key.len ||
		memcmp(old_key.data, new_key.data, old_key.len) != 0)
	{
		emit_change(table, &old_key, NULL, PSYNC_OP_DELETE, old_tuple, NULL);
		emit_change(table, &new_key, &new_row, PSYNC_OP_UPSERT, NULL, new_tuple);
	}
	else if (synced_columns_differ(table, desc, &old_row, &new_row))
		emit_change(table, &new_key, &new_row, PSYNC_OP_UPSERT, old_tuple,
					new_tuple);
}

static void
capture_one(SyncedTable *table, TupleDesc desc, HeapTuple tuple, psync_op op)
{
	RowImage	row;
	StringInfoData key;

	row_deform(&row, tuple, desc);
	initStringInfo(&key);
	key_build(&key, table, row.values, row.nulls);
	if (op == PSYNC_OP_DELETE)
		emit_change(table, &key, NULL, op, tuple, NULL);
	else
		emit_change(table, &key, &row, op, NULL, tuple);
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
		capture_one(table, desc, trigdata->tg_trigtuple, PSYNC_OP_UPSERT);
	else if (TRIGGER_FIRED_BY_DELETE(event))
		capture_one(table, desc, trigdata->tg_trigtuple, PSYNC_OP_DELETE);
	else if (TRIGGER_FIRED_BY_UPDATE(event))
		capture_update(table, desc, trigdata->tg_trigtuple,
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
	StringInfoData key;

	initStringInfo(&key);
	key_build(&key, table, values, nulls);
	capture_emit_change(table, old_key, NULL, NULL, PSYNC_OP_DELETE);
	capture_emit_change(table, &key, values, nulls, PSYNC_OP_UPSERT);
}
