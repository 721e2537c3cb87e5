/*
 * key_upgrade.c — para_sync.rekey_legacy(): retires the keys that version
 * 0.1 gave to rows whose key text now differs.  The function exists only
 * while the 0.1 → 0.2 upgrade script runs it.
 *
 * Version 0.1 keyed rows by the setting-independent text of their primary
 * key, which kept what equality ignores: numeric 1.0 was "1%2E0" and 1.00
 * "1%2E00", float -0 "-0", char(n) kept its blanks, interval '30 days' and
 * '1 mon' differed.  Keys are now one per value (keys.c).  Without a step
 * in between, the next change of such a row would go out under its new key
 * while replicas kept the old object forever.  The upgrade script therefore
 * calls this once (a fresh install has no synced table yet): for every row of every synced table whose 0.1 key differs
 * from its key now, a delete of the old key and an upsert of the new one,
 * in the upgrading transaction, under the usual sequence rules.  Only tables
 * whose key has a numeric, float, char(n) or interval column are scanned;
 * each is locked against writers (SHARE ROW EXCLUSIVE) while it is.
 *
 * A synced table whose primary-key type 0.2 refuses (type_trust.c) stops
 * the upgrade with an error naming it: updating would leave the table
 * registered but unwritable, so its owner untags it first, in 0.1.
 */
#include "para_sync.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(para_sync_rekey_legacy);

/*
 * Refuse the upgrade while rel's key has a type 0.2 refuses: its writes
 * would fail from the moment the upgrade commits.
 */
static void
refuse_unusable_key(Relation rel, int keyno)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot update para_sync: synced table %s has a primary key that para_sync 0.2 refuses",
					quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											   RelationGetRelationName(rel))),
			 errdetail("Key column %d has a type (or collation or operator class) whose equal values can have different key texts; after the update, every write to the table would fail.",
					   keyno + 1),
			 errhint("Untag the table first with SELECT para_sync.unsync_table('%s'); (or give it another primary key), then run ALTER EXTENSION para_sync UPDATE again.",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)))));
}

/* Does rel have a key whose text changed from 0.1 for some values? */
static bool
key_format_changed(Relation rel)
{
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	bool		changed = false;

	if (!OidIsValid(pk))
		return false;
	index = index_open(pk, AccessShareLock);
	for (int i = 0; i < index->rd_index->indnkeyatts; i++)
	{
		AttrNumber	attnum = index->rd_index->indkey.values[i];

		if (!type_trust_key_ok(rel, index, i))
			refuse_unusable_key(rel, i);
		switch (getBaseType(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid))
		{
			case NUMERICOID:
			case FLOAT4OID:
			case FLOAT8OID:
			case BPCHAROID:
			case INTERVALOID:
				changed = true;
				break;
			default:
				break;
		}
	}
	index_close(index, AccessShareLock);
	return changed;
}

/* Move every row of rel whose 0.1 key differs; returns how many. */
static int64
rekey_table(Relation rel)
{
	SyncedTable *table = table_cache_get(rel);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext,
												  "para_sync rekey row",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(row_cxt);
	int64		moved = 0;

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		StringInfoData old_key;

		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(slot);
		initStringInfo(&old_key);
		if (key_build_legacy(&old_key, table, slot->tts_values, slot->tts_isnull))
		{
			capture_rekey(table, &old_key, slot->tts_values, slot->tts_isnull);
			moved++;
		}
		MemoryContextReset(row_cxt);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(row_cxt);
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return moved;
}

Datum
para_sync_rekey_legacy(PG_FUNCTION_ARGS)
{
	uint64		ntables;
	Oid		   *relids;
	int64		moved = 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	relids = registry_synced_relids(&ntables);
	for (uint64 i = 0; i < ntables; i++)
	{
		Relation	rel = try_table_open(relids[i], ShareRowExclusiveLock);

		if (rel == NULL)
			continue;
		if (key_format_changed(rel))
			moved += rekey_table(rel);
		table_close(rel, NoLock);
	}
	SPI_finish();
	PG_RETURN_INT64(moved);
}
