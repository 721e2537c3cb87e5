/*
 * snapshot.c — para_sync.snapshot(key): an object's current value and
 * sequence, read in one snapshot of the database (docs/protocol.md).
 *
 * The row is read with the caller's privileges, so row-level security and
 * column grants apply (only synced columns are selected); an invisible row,
 * and a row whose key is not exactly the one asked for, read as nil.  The
 * sequence and the key's table are read as the extension owner, with the
 * same snapshot.  A key whose sync name has no table reads as nil at its
 * last sequence (schema_version empty).
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_operator.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(para_sync_snapshot);

static SPIPlanPtr table_by_name_plan = NULL;

/* The table registered under sync_name, or InvalidOid. */
static Oid
registered_table(const char *sync_name, int len)
{
	Datum		arg = PointerGetDatum(cstring_to_text_with_len(sync_name, len));
	OwnerSwitch sw;
	int			rc;
	bool		isnull;
	Oid			relid = InvalidOid;

	if (table_by_name_plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		table_by_name_plan = SPI_prepare(
			"SELECT t.relid FROM para_sync.tables t"
			" WHERE t.sync_name OPERATOR(pg_catalog.=) $1 COLLATE pg_catalog.\"C\"",
			1, types);
		if (table_by_name_plan == NULL || SPI_keepplan(table_by_name_plan) != 0)
			elog(ERROR, "could not prepare para_sync registry look-up");
	}
	become_internal_owner(&sw);
	rc = SPI_execute_plan(table_by_name_plan, &arg, NULL, true, 1);
	restore_user(&sw);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync registry look-up failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
		relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	return relid;
}

/*
 * "SELECT synced columns FROM ONLY tbl WHERE pk1 = $1 AND ...", kept.
 *
 * The equality is the key's btree equality, named as pg_catalog's "=":
 * type_trust.c lets only built-in key types with their default operator
 * class through, whose equality operators all live in
 * pg_catalog, where no user can add an operator.  The check below keeps it
 * that way: an operator from any other schema is never resolved by name.
 */
static SPIPlanPtr
row_plan(SyncedTable *table, Relation rel)
{
	StringInfoData sql;
	Oid		   *types;

	if (table->snapshot_plan != NULL)
		return (SPIPlanPtr) table->snapshot_plan;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < table->ncolumns; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "",
						 quote_identifier(table->columns[i].name));
	if (table->ncolumns == 0)
		appendStringInfoString(&sql, "1");
	appendStringInfo(&sql, " FROM ONLY %s WHERE ",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
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
	table->snapshot_plan = SPI_prepare(sql.data, table->nkeys, types);
	if (table->snapshot_plan == NULL || SPI_keepplan(table->snapshot_plan) != 0)
		elog(ERROR, "could not prepare para_sync snapshot query \"%s\"", sql.data);
	return (SPIPlanPtr) table->snapshot_plan;
}

/*
 * Encode the row whose key is exactly key (if any, and if the caller may
 * see it) as a value map into value.  The row found by key equality must
 * also have exactly this key: "num:1%2E00" finds the row 1.0 (1.00 = 1.0),
 * but that row's key is "num:1", so "num:1%2E00" reads as nil.
 */
static bool
read_row(SyncedTable *table, Relation rel, Datum *key_datums, const char *key,
		 StringInfo value)
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

	values = palloc0(sizeof(Datum) * natts);
	nulls = palloc(sizeof(bool) * natts);
	memset(nulls, true, sizeof(bool) * natts);
	for (int i = 0; i < table->ncolumns; i++)
	{
		int			idx = table->columns[i].attnum - 1;

		values[idx] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									i + 1, &nulls[idx]);
	}
	initStringInfo(&row_key);
	key_build(&row_key, table, values, nulls);
	if (strcmp(row_key.data, key) != 0)
		return false;
	row_encode_values(value, table, values, nulls);
	return true;
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
	bool		found;
	int64		seq;
	bytea	   *envelope;

	if (key_len > PSYNC_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("para_sync key is too long (%d bytes)", key_len),
				 errdetail("Keys are limited to %d bytes.", PSYNC_MAX_KEY_LEN)));
	if (colon == NULL || !psync_sync_name_is_valid(key, colon - key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid para_sync key \"%s\"", key),
				 errhint("A key is <sync name>:<primary key>[:<primary key>...], for example users:123.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	relid = registered_table(key, colon - key);
	rel = OidIsValid(relid) ? try_table_open(relid, AccessShareLock) : NULL;
	if (rel == NULL)
	{
		/*
		 * No table (dropped, untagged, or never tagged): the object does not
		 * exist.  Its last envelope was the delete that unsync_table(), DROP
		 * TABLE or TRUNCATE published, so nil at the last sequence matches it.
		 */
		seq = sequence_store_last(key, key_len, false);
		MemoryContextSwitchTo(caller_cxt);
		envelope = envelope_build(key, key_len, NULL, "", (uint64) seq,
								  PSYNC_OP_SNAPSHOT, false, 0);
		SPI_finish();
		PG_RETURN_BYTEA_P(envelope);
	}
	table = table_cache_get(rel);
	key_datums = palloc(sizeof(Datum) * table->nkeys);
	key_parse(key, table, key_datums);

	/* both reads below use the same (active) snapshot */
	seq = sequence_store_last(key, key_len, false);
	initStringInfo(&value);
	found = read_row(table, rel, key_datums, key, &value);

	MemoryContextSwitchTo(caller_cxt);
	envelope = envelope_build(key, key_len, found ? &value : NULL,
							  table->schema_version, (uint64) seq,
							  PSYNC_OP_SNAPSHOT, false, 0);
	table_close(rel, AccessShareLock);
	SPI_finish();
	PG_RETURN_BYTEA_P(envelope);
}
