/*
 * snapshot.c — para_sync.snapshot(key): the current value and sequence of
 * one object, read in one snapshot of the database; and the row-reading
 * helpers it shares with snapshot_table.c (the select list of the synced
 * columns, kept plans, an SPI row as values/nulls by attribute number).
 *
 * Rows are read with the caller's privileges, so row-level security and
 * column grants apply (only synced columns are selected); an invisible row
 * reads as nil, and so does a row whose key is not exactly the one asked
 * for.  The sequence and the key's table are read as the extension owner,
 * with the same snapshot.  A key whose sync name has no table reads as nil
 * at its last sequence (schema_version empty).  A row of a table with a
 * scope carries the scope it is in now (scope.c).  See docs/protocol.md,
 * "Snapshots".
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "access/table.h"
#include "catalog/pg_namespace.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(para_sync_snapshot);



/*
 * "SELECT <synced columns> FROM ONLY <tbl>" into sql; a partitioned table
 * (synced by its root, partition.c) is read with its partitions.
 */
void
snapshot_append_select(StringInfo sql, SyncedTable *table, Relation rel)
{
	appendStringInfoString(sql, "SELECT ");
	for (int i = 0; i < table->ncolumns; i++)
		appendStringInfo(sql, "%s%s", i ? ", " : "",
						 quote_identifier(table->columns[i].name));
	if (table->ncolumns == 0)
		appendStringInfoString(sql, "1");
	appendStringInfo(sql, " FROM %s%s",
					 rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
}

SPIPlanPtr
snapshot_keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "could not prepare para_sync snapshot query \"%s\"", sql);
	return plan;
}

/*
 * "SELECT synced columns FROM ONLY tbl WHERE pk1 = $1 AND ...", kept.
 *
 * The equality is the key's btree equality, named as pg_catalog's "=":
 * type_trust.c lets only built-in key types with their default operator
 * class through, whose equality operators all live in pg_catalog, where no
 * user can add an operator.  The check below keeps it that way: an operator
 * from any other schema is never resolved by name.
 */
static SPIPlanPtr
row_plan(SyncedTable *table, Relation rel)
{
	StringInfoData sql;
	Oid		   *types;

	if (table->snapshot_plan != NULL)
		return (SPIPlanPtr) table->snapshot_plan;

	initStringInfo(&sql);
	snapshot_append_select(&sql, table, rel);
	appendStringInfoString(&sql, " WHERE ");
	types = palloc(sizeof(Oid) * table->nkeys);
	for (int i = 0; i < table->nkeys; i++)
	{
		KeyColumn  *key = &table->keys[i];
		HeapTuple	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(key->eq_opr));
		Form_pg_operator op;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for operator %u", key->eq_opr);
		op = (Form_pg_operator) GETSTRUCT(tup);
		if (op->oprnamespace != PG_CATALOG_NAMESPACE || strcmp(NameStr(op->oprname), "=") != 0)
			elog(ERROR, "para_sync: equality operator %u of key column %d is not pg_catalog.=",
				 key->eq_opr, key->attnum);
		ReleaseSysCache(tup);
		types[i] = key->base_typid;	/* key_parse() yields base-type datums */
		appendStringInfo(&sql, "%s%s OPERATOR(pg_catalog.=) $%d",
						 i ? " AND " : "",
						 quote_identifier(get_attname(RelationGetRelid(rel), key->attnum, false)),
						 i + 1);
	}
	table->snapshot_plan = snapshot_keep_plan(sql.data, table->nkeys, types);
	return (SPIPlanPtr) table->snapshot_plan;
}

/*
 * The synced columns of an SPI result row (selected by append_select) into
 * values/nulls indexed by attribute number - 1, as row_encode_values and
 * key_build expect; the other attributes read as null.
 */
void
snapshot_tuple_values(SyncedTable *table, int natts, HeapTuple tuple, TupleDesc desc,
			 Datum *values, bool *nulls)
{
	memset(values, 0, sizeof(Datum) * natts);
	memset(nulls, true, sizeof(bool) * natts);
	for (int i = 0; i < table->ncolumns; i++)
	{
		int			idx = table->columns[i].attnum - 1;

		values[idx] = SPI_getbinval(tuple, desc, i + 1, &nulls[idx]);
	}
}

/*
 * Encode the row whose key is exactly key (if any, and if the caller may
 * see it) as a value map into value.  The row found by key equality must
 * also have exactly this key: "num:1%2E00" finds the row 1.0 (1.00 = 1.0),
 * but that row's key is "num:1", so "num:1%2E00" reads as nil.
 */
static bool
read_row(SyncedTable *table, Relation rel, Datum *key_datums, const char *key,
		 StringInfo value, StringInfo scope)
{
	int			natts = RelationGetDescr(rel)->natts;
	Datum	   *values;
	bool	   *nulls;
	StringInfoData row_key;
	int			rc;

	rc = SPI_execute_plan(row_plan(table, rel), key_datums, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync snapshot query failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;

	values = palloc(sizeof(Datum) * natts);
	nulls = palloc(sizeof(bool) * natts);
	snapshot_tuple_values(table, natts, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
				 values, nulls);
	initStringInfo(&row_key);
	key_build(&row_key, table, values, nulls);
	if (strcmp(row_key.data, key) != 0)
		return false;
	row_encode_values(value, table, values, nulls);
	/* the scope the row is in now (scope.c), if the table has one */
	scope_build(scope, table, values, nulls);
	return true;
}

/*
 * The snapshot envelope of key with value (NULL: nil), its sequence read
 * with the active snapshot, the one the value was read with.
 */
static bytea *
snapshot_envelope(SyncedTable *table, const char *key, int key_len,
				  StringInfo value, StringInfo scope)
{
	int64		seq = outbox_last_sequence(key, key_len, false);

	return capture_envelope_build_scoped(key, key_len, value, table->schema_version,
										 (uint64) seq, PSYNC_OP_SNAPSHOT, false, 0,
										 value != NULL && scope->len > 0 ? scope->data : NULL);
}

/*
 * Parse key into datums of table's key columns; false when the key does
 * not fit them.  A key with a history (a sequence) may come from an earlier
 * table under the sync name with another key shape (dropped, re-created with
 * other key types): its last envelope was a delete, so it reads as nil at
 * that sequence rather than as an error clients could never get past.  A key
 * without a history keeps the error (a malformed request).  A parallel
 * operation cannot start the subtransaction that catches it.
 */
static bool
parse_table_key(const char *key, int key_len, SyncedTable *table, Datum *datums)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool fits = true;

	if (IsInParallelMode() || outbox_last_sequence(key, key_len, false) == 0)
	{
		key_parse(key, table, datums);
		return true;
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		key_parse(key, table, datums);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* only a value the key types cannot read: class 22 (22023, 22P02, ...) */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			ReThrowError(edata);
		FlushErrorState();
		fits = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return fits;
}

Datum
para_sync_snapshot(PG_FUNCTION_ARGS)
{
	text	   *key_text = PG_GETARG_TEXT_PP(0);
	char	   *key = text_to_cstring(key_text);
	int			key_len = strlen(key);
	const char *colon = strchr(key, ':');
	MemoryContext caller_cxt = CurrentMemoryContext;
	Oid			relid;
	Relation	rel;
	SyncedTable *table;
	Datum	   *key_datums;
	StringInfoData value;
	StringInfoData scope;
	bool		found;
	bytea	   *envelope;

	if (key_len > PSYNC_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("para_sync key is too long (%d bytes)", key_len),
				 errdetail("Keys are limited to %d bytes.", PSYNC_MAX_KEY_LEN)));
	if (!psync_key_is_valid(key, key_len))
		key_refuse(key, "A key is a sync name (1 to 63 bytes of [A-Za-z0-9_-]), then parts, each after a ':', possibly empty, made of [A-Za-z0-9_-] and %XX (upper-case hex) for any other byte but 00.");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	relid = registry_table_by_name(key, colon - key);
	rel = OidIsValid(relid) ? try_table_open(relid, AccessShareLock) : NULL;
	if (rel == NULL)
	{
		/*
		 * No table (dropped, untagged, or never tagged): the object does not
		 * exist.  Its last envelope was the delete that unsync_table(), DROP
		 * TABLE or TRUNCATE published, so nil at the last sequence matches it.
		 */
		int64		seq = outbox_last_sequence(key, key_len, false);

		MemoryContextSwitchTo(caller_cxt);
		envelope = capture_envelope_build(key, key_len, NULL, "", (uint64) seq,
								  PSYNC_OP_SNAPSHOT, false, 0);
		SPI_finish();
		PG_RETURN_BYTEA_P(envelope);
	}
	table = table_cache_get(rel);
	table_cache_use();			/* read_row() runs policies: user code */
	key_datums = palloc(sizeof(Datum) * table->nkeys);

	/* value and sequence are read with the same (active) snapshot */
	initStringInfo(&value);
	initStringInfo(&scope);
	found = parse_table_key(key, key_len, table, key_datums) &&
		read_row(table, rel, key_datums, key, &value, &scope);

	MemoryContextSwitchTo(caller_cxt);
	envelope = snapshot_envelope(table, key, key_len, found ? &value : NULL, &scope);
	table_cache_unuse();
	table_close(rel, AccessShareLock);
	SPI_finish();
	PG_RETURN_BYTEA_P(envelope);
}
