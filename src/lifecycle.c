/*
 * lifecycle.c — what replicas see when rows leave a synced table without
 * row triggers: unsync_table(), DROP TABLE and TRUNCATE.
 *
 * Tagging a table with rows under a sync name whose keys have a history
 * publishes an upsert for each such row (lifecycle_announce_rows()), so no
 * key's last delete stays next to a row under the same sequence.
 *
 * The three removals go through lifecycle_retire_rows(), which appends a delete
 * envelope for every row of the table, through the same envelope and outbox
 * code as the capture trigger, in the caller's transaction.  The rows'
 * sequences come from the last sequences of the table's sync name, read in
 * one pass (outbox_name_seqs.c) unless the name has many more keys than the
 * table can hold rows; then from each row's own look-up.  So the last
 * envelope of every key is a delete, which is exactly what snapshot() reads
 * once the table is gone, untagged or empty: value nil at the key's last
 * sequence.
 *
 *   unsync_table()   registry_write.c calls lifecycle_retire_rows() before it
 *                    removes the registry row (under ShareRowExclusiveLock).
 *   TRUNCATE         a BEFORE TRUNCATE statement trigger (each partition
 *                    of a synced root has its own, partition.c); TRUNCATE
 *                    already holds ACCESS EXCLUSIVE on every table it
 *                    empties.
 *   DROP TABLE       a ddl_command_start event trigger locks each synced
 *                    table the statement names (as DROP itself would), or
 *                    partition of a synced root (its parent first), and
 *                    retires its rows while they still exist: each leaf
 *                    once per statement, however the names overlap (a
 *                    root and its partitions, a table named twice).
 *   other drops      (DROP SCHEMA ... CASCADE, DROP OWNED, a parent's
 *                    DROP ... CASCADE, DROP EXTENSION of an extension that
 *                    owns the table) remove a synced table only once its
 *                    rows can no longer be read: an sql_drop event trigger
 *                    refuses them with a hint.
 *
 * A partitioned table's rows are its leaf partitions' (partition.c).
 *
 * Rows are read with a fresh snapshot: all writers of the table are locked
 * out at that point, so it sees exactly the committed rows plus the
 * transaction's own, and no row-level security applies (the deletes concern
 * every replica, not only what the caller may see).
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(para_sync_capture_truncate);
PG_FUNCTION_INFO_V1(para_sync_refuse_truncate);
PG_FUNCTION_INFO_V1(para_sync_retire_dropped_tables);
PG_FUNCTION_INFO_V1(para_sync_check_dropped_tables);


/*
 * The cache entry of rel, for its first row.  Without a primary key the
 * rows' keys cannot be built: refuse rather than leave them on replicas.
 */
static SyncedTable *
retiring_table(Relation rel)
{
	if (!OidIsValid(RelationGetPrimaryKeyIndex(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot publish the removal of the rows of synced table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("The table has no primary key, so the keys of its rows are unknown."),
				 errhint("Add the primary key back with ALTER TABLE ... ADD PRIMARY KEY first.")));
	return table_cache_get(rel);
}

/* What publish_rows() appends for each row. */
typedef enum RowsPublished
{
	ROWS_DELETE,				/* a delete */
	ROWS_ANNOUNCE,				/* an upsert if the key has a history */
	ROWS_UPSERT					/* an upsert (ATTACH PARTITION, partition.c) */
} RowsPublished;

/* One publishing of a table's rows (all its leaves for a partitioned one). */
typedef struct RowsRun
{
	RowsPublished what;
	bool		read;			/* seqs read (at the first row) */
	OutboxNameSeqs *seqs;		/* the name's last sequences, or NULL */
	int64		max_keys;		/* read them only if the name has at most as many keys */
	List	  **done;			/* unless NULL, the leaves published already in this
								 * statement: skipped; rel's leaves are added */
} RowsRun;

static void publish_rows(Relation rel, RowsRun *run);

/*
 * A partitioned table (synced by its root, partition.c) has no rows of its
 * own: its leaf partitions' rows, each leaf locked as the caller locked rel
 * (writers of a partition itself do not lock the root).
 */
static void
publish_partition_rows(Relation rel, RowsRun *run)
{
	ListCell   *lc;

	foreach(lc, partition_leaves(RelationGetRelid(rel), ShareRowExclusiveLock))
	{
		Relation	leaf = table_open(lfirst_oid(lc), NoLock);

		publish_rows(leaf, run);
		table_close(leaf, NoLock);
	}
}

/*
 * The envelope of one row whose key is key, numbered from the name's last
 * sequences read in one pass, or, when they were not read (too many for
 * the table or for memory), by the row's own look-up (a delete through the
 * sequence cache: the version retired is visible to this scan and the
 * table's writers are locked out).
 */
static void
publish_row(SyncedTable *table, RowsRun *run, StringInfo key, TupleTableSlot *slot)
{
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;
	psync_op	op = run->what == ROWS_DELETE ? PSYNC_OP_DELETE : PSYNC_OP_UPSERT;
	int64		last;

	if (run->seqs != NULL)
		last = outbox_name_seqs_last(run->seqs, key->data, key->len);
	else if (run->what == ROWS_ANNOUNCE)
		last = outbox_last_sequence(key->data, key->len, true);
	else
	{
		capture_emit_change(table, key, values, nulls, op,
							op == PSYNC_OP_DELETE ? ExecFetchSlotHeapTuple(slot, false, NULL) : NULL);
		return;
	}
	if (run->what == ROWS_ANNOUNCE && last == 0)
		return;
	last = capture_emit_after(table, key, values, nulls, op, last);
	if (run->seqs != NULL)
		outbox_name_seqs_appended(run->seqs, key->data, key->len, last);
}

/*
 * Append an envelope for rows of synced table rel (or of a partition of
 * one), as run->what says.
 * The caller holds a lock that keeps writers out (ShareRowExclusiveLock or
 * stronger).
 *
 * In a SERIALIZABLE transaction a sequential scan under an MVCC snapshot
 * would take a predicate lock on the whole table, which a plain TRUNCATE or
 * DROP does not: later writers of the table could then fail.  So there the
 * scan runs under SnapshotAny (no predicate locks) and each tuple is checked
 * against the snapshot here, as outbox_append.c does for its reads.
 */
static void
publish_rows(Relation rel, RowsRun *run)
{
	SyncedTable *table = NULL;
	Snapshot	snapshot;
	bool		filter = IsolationIsSerializable();
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext row_cxt;

	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		publish_partition_rows(rel, run);
		return;
	}
	if (run->done != NULL)
	{
		if (list_member_oid(*run->done, RelationGetRelid(rel)))
			return;
		*run->done = lappend_oid(*run->done, RelationGetRelid(rel));
	}
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, filter ? SnapshotAny : snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync lifecycle rows",
									ALLOCSET_DEFAULT_SIZES);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		MemoryContext old;
		StringInfoData key;

		CHECK_FOR_INTERRUPTS();
		if (filter && !table_tuple_satisfies_snapshot(rel, slot, snapshot))
			continue;
		if (table == NULL)
			table = retiring_table(rel);
		if (!run->read)
		{
			run->seqs = outbox_name_seqs_read(table->sync_name, run->max_keys);
			run->read = true;
		}
		old = MemoryContextSwitchTo(row_cxt);
		slot_getallattrs(slot);
		initStringInfo(&key);
		key_build(&key, table, slot->tts_values, slot->tts_isnull);
		publish_row(table, run, &key, slot);
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_cxt);
	}
	MemoryContextDelete(row_cxt);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
}

/*
 * At most how many rows rel holds (all its leaves for a partitioned table):
 * its pages full of the smallest tuples.  Reading its name's last sequences
 * in one pass pays only when the name has not many more keys than that (a
 * small partition of a big root is numbered row by row).
 */
static int64
rows_at_most(Relation rel)
{
	ListCell   *lc;
	int64		n = 0;

	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return (int64) RelationGetNumberOfBlocks(rel) * MaxHeapTuplesPerPage;
	foreach(lc, partition_leaves(RelationGetRelid(rel), ShareRowExclusiveLock))
	{
		Relation	leaf = table_open(lfirst_oid(lc), NoLock);

		n += rows_at_most(leaf);
		table_close(leaf, NoLock);
	}
	return n;
}

/* publish_rows() of rel, what for each row; done as in RowsRun. */
static void
publish_all_rows(Relation rel, RowsPublished what, List **done)
{
	RowsRun		run = {what, false, NULL, 2 * rows_at_most(rel) + 1024, done};

	publish_rows(rel, &run);
	outbox_name_seqs_free(run.seqs);
}

/* A delete envelope for every row of synced table rel. */
void
lifecycle_retire_rows(Relation rel)
{
	publish_all_rows(rel, ROWS_DELETE, NULL);
}

/* An upsert envelope for every row of rel, a table just attached to a synced root. */
void
lifecycle_publish_rows(Relation rel)
{
	publish_all_rows(rel, ROWS_UPSERT, NULL);
}

/*
 * sync_table() of a table that has rows, under a sync name whose keys may
 * have a history (the table was synced before, or another table under the
 * name was dropped or untagged): a key's last envelope is then a delete, at
 * the key's last sequence, while snapshot() would now return the row under
 * that same sequence.  Each such row gets an upsert under the next one.
 * Keys without a history stay at sequence 0 (nothing was ever published).
 */
void
lifecycle_announce_rows(Relation rel)
{
	if (outbox_name_has_history(table_cache_get(rel)->sync_name))
		publish_all_rows(rel, ROWS_ANNOUNCE, NULL);
}

/*
 * BEFORE TRUNCATE ... FOR EACH STATEMENT: a delete for every row the
 * TRUNCATE removes.  TRUNCATE fires this for each synced table it empties,
 * including those it reaches through CASCADE or inheritance.
 */
Datum
para_sync_capture_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync truncate capture must be a BEFORE TRUNCATE trigger")));
	rel = trigdata->tg_relation;
	/* a partitioned table's partitions each fire their own (partition.c) */
	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		partition_truncate_leaves_without_trigger(rel);
		return PointerGetDatum(NULL);
	}
	/* a partition's, left behind by unsync_table() or DETACH of its root */
	if (rel->rd_rel->relispartition && !registry_table_is_synced(RelationGetRelid(rel)) &&
		!OidIsValid(partition_synced_root(RelationGetRelid(rel))))
		return PointerGetDatum(NULL);
	lifecycle_retire_rows(rel);
	return PointerGetDatum(NULL);
}

/* The 0.1 name of the same trigger function (its triggers still call it). */
Datum
para_sync_refuse_truncate(PG_FUNCTION_ARGS)
{
	return para_sync_capture_truncate(fcinfo);
}

static void
callback_require_owner(const RangeVar *relation, Oid relid, Oid old_relid,
					   void *arg)
{
	char		relkind;

	if (!OidIsValid(relid))
		return;
	relkind = get_rel_relkind(relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(relkind),
					   relation->relname);
	/* a partition: its parent first, as DROP locks them */
	if (relid != old_relid && get_rel_relispartition(relid))
		LockRelationOid(get_partition_parent(relid, true), AccessExclusiveLock);
}

/*
 * Retire the rows of the table named by names, if it is synced or a
 * partition of a synced root, but not those of the leaves in *retired, the
 * leaves whose rows this statement retired already (through an earlier
 * name: the table itself, its root or a partitioned ancestor); its own are
 * added to *retired.  The table is locked all the same.
 */
static void
retire_named_table(List *names, List **retired)
{
	RangeVar   *rv = makeRangeVarFromNameList(names);
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);
	Relation	rel;

	if (!OidIsValid(relid) || (get_rel_relkind(relid) != RELKIND_RELATION &&
							   get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE))
		return;

	/*
	 * Lock it as DROP will (owner checked first, name resolved again) before
	 * asking whether it is synced: a sync_table() that commits while DROP
	 * waits for the lock must not leave its rows' envelopes without deletes.
	 */
	relid = RangeVarGetRelidExtended(rv, AccessExclusiveLock, RVR_MISSING_OK,
									 callback_require_owner, NULL);
	if (!OidIsValid(relid))
		return;
	/* a partition of a synced root (partition.c): its rows are the root's */
	if (!registry_table_is_synced(relid))
	{
		if (OidIsValid(partition_synced_root(relid)))
		{
			rel = table_open(relid, NoLock);
			publish_all_rows(rel, ROWS_DELETE, retired);
			table_close(rel, NoLock);
		}
		return;
	}
	/* the registry row must also be one this transaction can delete */
	if (IsolationUsesXactSnapshot() && !registry_table_is_synced_in(relid, InvalidSnapshot))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent para_sync.sync_table() of table \"%s\"",
						get_rel_name(relid)),
				 errhint("Retry the transaction.")));
	rel = table_open(relid, NoLock);
	publish_all_rows(rel, ROWS_DELETE, retired);
	table_close(rel, NoLock);
}

/*
 * ddl_command_start of DROP TABLE: a delete for every row of each synced
 * table the statement names, while the rows still exist; one per row,
 * whatever the order and overlap of the names (a DROP TABLE of a root and
 * one of its partitions reaches the partition's rows through both).  If the
 * DROP then fails, the deletes roll back with it.
 */
Datum
para_sync_retire_dropped_tables(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	DropStmt   *stmt;
	List	   *retired = NIL;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.retire_dropped_tables() must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (!IsA(trigdata->parsetree, DropStmt))
		PG_RETURN_VOID();
	stmt = (DropStmt *) trigdata->parsetree;
	if (stmt->removeType != OBJECT_TABLE || !registry_exists())
		PG_RETURN_VOID();
	foreach(lc, stmt->objects)
		retire_named_table(lfirst_node(List, lc), &retired);
	list_free(retired);
	PG_RETURN_VOID();
}

/*
 * sql_drop: refuse to drop a synced table other than by naming it in DROP
 * TABLE (whose ddl_command_start trigger above retired its rows).  Must run
 * before para_sync_forget_dropped_tables removes the registry rows, which
 * event trigger name order guarantees.
 */
Datum
para_sync_check_dropped_tables(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	bool		drop_table;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.check_dropped_tables() must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	drop_table = trigdata->tag == CMDTAG_DROP_TABLE;
	if (!registry_exists())
		PG_RETURN_VOID();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	foreach(lc, registry_dropped_tables())
	{
		DroppedTable *dropped = lfirst(lc);

		if (drop_table && dropped->original)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop synced table %s indirectly", dropped->identity),
				 errdetail("Its rows could no longer be published as deletes under sync name \"%s\".",
						   dropped->sync_name),
				 errhint("Drop it with DROP TABLE first, or stop syncing it with para_sync.unsync_table().")));
	}
	SPI_finish();
	PG_RETURN_VOID();
}
