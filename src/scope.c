/*
 * scope.c — scopes (docs/protocol.md, "Scopes"): the one home of a row's
 * scope token, and para_sync.set_scope().
 *
 * A table with a scope publishes each change on
 * <prefix>.<sync name>.<scope>.<key>, where the scope is one subject token
 * made of the row's scope columns, in set_scope()'s order, each written as
 * a key part (keys.c's canonical text, escaped by src/common/key_escape.c),
 * a SQL NULL as "%00", the parts joined by ':'; a token that would be empty
 * (one column holding '') is "%" alone.  psync_scope_is_valid()
 * (key_escape.c) is the grammar both the server and libparasync check.
 *
 * The registry keeps the scope columns by name, and the DDL guard follows
 * their renames (scope_follow_rename()) and refuses DROP COLUMN and ALTER
 * TYPE of them: a name, unlike an attribute number, survives pg_dump's
 * restore, which renumbers the columns after a dropped one.  table_cache.c
 * loads them through scope_load() as KeyColumns, typed
 * like primary-key columns.  capture.c asks scope_build() for the token of
 * each change (a move between scopes is a delete in the old scope and an
 * upsert in the new one); snapshot.c and snapshot_table.c add it to their
 * envelopes, and snapshot_page(scope => ...) reads one scope through
 * scope_parse().
 */
#include "para_sync.h"
#include "ddl_guard.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "catalog/pg_index.h"
#include "commands/defrem.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(para_sync_set_scope);

/* Most scope columns a table may have. */
#define SCOPE_MAX_COLUMNS 8

/*
 * The scope token of a row (values/nulls by attribute number) into scope;
 * false when table has no scope.  A token longer than PSYNC_MAX_SCOPE_LEN
 * fails the write, as a key too long does.
 */
bool
scope_build(StringInfo scope, SyncedTable *table, Datum *values, bool *nulls)
{
	if (table->nscope == 0)
		return false;
	if (values == NULL)
		elog(ERROR, "para_sync: no row to take the scope of table \"%s\" from",
			 table->sync_name);
	for (int i = 0; i < table->nscope; i++)
	{
		KeyColumn  *col = &table->scope[i];
		int			idx = col->attnum - 1;

		if (i > 0)
			appendStringInfoChar(scope, ':');
		if (nulls[idx])
			appendStringInfoString(scope, "%00");
		else
			key_append_escaped(scope, key_column_text(col, values[idx]));
		if (scope->len > PSYNC_MAX_SCOPE_LEN)
			break;
	}
	if (scope->len == 0)
		appendStringInfoChar(scope, '%');	/* one column holding '' */
	if (scope->len > PSYNC_MAX_SCOPE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("para_sync scope of table \"%s\" is too long (more than %d bytes)",
						table->sync_name, PSYNC_MAX_SCOPE_LEN),
				 errdetail("A scope is one subject token of at most %d bytes after escaping.",
						   PSYNC_MAX_SCOPE_LEN),
				 errhint("Use shorter values in the scope columns, or another scope with para_sync.set_scope().")));
	return true;
}

/* Why attnum of rel cannot be a scope column, or NULL. */
static const char *
column_problem(Relation rel, AttrNumber attnum)
{
	Form_pg_attribute att;

	if (attnum <= 0 || attnum > RelationGetDescr(rel)->natts)
		return "It is not a column of the table.";
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	if (att->attisdropped)
		return "The column was dropped.";
	return type_trust_scope_problem(att->atttypid, att->attcollation);
}

/*
 * The table's scope columns (text[] of column names, NULL: none) into
 * table->scope, allocated in cxt.  A column that can no longer be one (only
 * a change the DDL guard did not see) fails the write.
 */
void
scope_load(SyncedTable *table, Relation rel, ArrayType *columns, MemoryContext cxt)
{
	Datum	   *names;
	int			n;

	table->nscope = 0;
	table->scope = NULL;
	if (columns == NULL)
		return;
	deconstruct_array(columns, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n);
	table->scope = MemoryContextAllocZero(cxt, sizeof(KeyColumn) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		KeyColumn  *col = &table->scope[i];
		char	   *name = TextDatumGetCString(names[i]);
		const char *problem;
		Oid			output_fn;
		bool		is_varlena;
		Oid			opclass;

		col->attnum = get_attnum(RelationGetRelid(rel), name);
		problem = column_problem(rel, col->attnum);
		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("scope column \"%s\" of synced table \"%s\" cannot be a scope column",
							name, RelationGetRelationName(rel)),
					 errdetail("%s", problem),
					 errhint("Call para_sync.set_scope(tbl, NULL), or give the table another scope.")));
		col->typid = TupleDescAttr(RelationGetDescr(rel), col->attnum - 1)->atttypid;
		col->base_typid = getBaseType(col->typid);
		getTypeOutputInfo(col->typid, &output_fn, &is_varlena);
		fmgr_info_cxt(output_fn, &col->output, cxt);
		/* a scope given to snapshot_page() is read by the base type's input */
		getTypeInputInfo(col->base_typid, &col->input_fn, &col->typioparam);
		opclass = GetDefaultOpClass(col->base_typid, BTREE_AM_OID);
		col->eq_opr = get_opfamily_member(get_opclass_family(opclass),
										  get_opclass_input_type(opclass),
										  get_opclass_input_type(opclass),
										  BTEqualStrategyNumber);
	}
	table->nscope = n;
}

static void
refuse_token(const char *token, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid para_sync scope \"%.*s\"", 300, token),
			 errdetail("%s", detail),
			 errhint("A scope is the scope columns' values, each escaped as a key part (%%00 for NULL), joined by ':' (docs/protocol.md, \"Scopes\").")));
}

/* How many ':'-separated parts text has (an empty text is one empty part). */
static int
count_parts(const char *text)
{
	int			n = 1;

	for (; *text; text++)
		n += *text == ':';
	return n;
}

/*
 * Split a scope token of table into typed values (datums, nulls by scope
 * column), each through the base type's input function, as key_parse()
 * reads key parts.  A malformed token is an error (22023).
 */
void
scope_parse(const char *token, SyncedTable *table, Relation rel, Datum *datums,
			bool *nulls)
{
	int			len = strlen(token);
	const char *p = token;

	if (table->nscope == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" has no scope", RelationGetRelationName(rel)),
				 errdetail("Only a table given scope columns with para_sync.set_scope() can be read by scope."),
				 errhint("Pass scope => NULL, or see para_sync.synced_tables.scope_columns.")));
	if (!psync_scope_is_valid(token, len))
		refuse_token(token, psprintf("A scope is 1 to %d bytes of [A-Za-z0-9_-], ':' and %%XX (upper-case hex).",
									 PSYNC_MAX_SCOPE_LEN));
	if (strcmp(token, "%") == 0)
		p = "";
	/* the number of parts first: no part goes to a column it is not for */
	if (count_parts(p) != table->nscope)
		refuse_token(token, psprintf("Table \"%s\" has %d scope columns.",
									 RelationGetRelationName(rel), table->nscope));
	for (int i = 0; i < table->nscope; i++)
	{
		KeyColumn  *col = &table->scope[i];
		const char *end = strchr(p, ':');
		char	   *raw;
		long		raw_len;

		if (end == NULL)
			end = p + strlen(p);
		if (end - p == 3 && strncmp(p, "%00", 3) == 0)
		{
			nulls[i] = true;
			datums[i] = (Datum) 0;
		}
		else
		{
			raw = palloc(end - p + 1);
			raw_len = psync_key_unescape(p, end - p, raw);
			if (raw_len < 0)
				refuse_token(token, "A scope part is not canonically escaped.");
			raw[raw_len] = '\0';
			if (!pg_verifymbstr(raw, raw_len, true))
				refuse_token(token, psprintf("Scope part %d is not valid %s once unescaped.",
											 i + 1, GetDatabaseEncodingName()));
			nulls[i] = false;
			datums[i] = OidInputFunctionCall(col->input_fn, raw, col->typioparam, -1);
		}
		p = *end == ':' ? end + 1 : end;
	}
}

/*
 * The DDL guard (ddl_guard_start.c): refuse to drop or retype (what) column
 * of synced table relid if it is one of its scope columns.  Caller is
 * connected to SPI.
 */
void
scope_guard_column(Oid relid, const char *column, const char *what)
{
	Registration *reg = registry_get(relid);

	if (reg != NULL && ddl_guard_names_contain(reg->scope_columns, column))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s scope column \"%s\" of synced table \"%s\"",
						what, column, get_rel_name(relid)),
				 errdetail("Every change of the table is published on the subject of its scope, made of this column's values."),
				 errhint("Call para_sync.set_scope(tbl, NULL) first (or give the table other scope columns).")));
}

/*
 * The DDL guard (ddl_guard_alter.c): column old of synced table relid was
 * renamed to new_name; a scope column stays one under its new name (so the
 * registry keeps names, as for exclude_columns, and pg_dump's restore, which
 * renumbers columns after a dropped one, finds them).  Caller is connected
 * to SPI.
 */
void
scope_follow_rename(Oid relid, const char *old, const char *new_name)
{
	Registration *reg = registry_get(relid);

	if (reg == NULL || !ddl_guard_names_contain(reg->scope_columns, old))
		return;
	registry_set_scope(relid, PointerGetDatum(ddl_guard_names_replace(reg->scope_columns, old,
																	  new_name)),
					   false);
	CacheInvalidateRelcacheByRelid(relid);
}

/* ---- set_scope() */

/* The attribute numbers named by columns (text[]), checked, as int2[]. */
static ArrayType *
scope_attnums(Relation rel, ArrayType *columns)
{
	Datum	   *names;
	bool	   *isnull;
	int			n;
	Datum	   *attnums;
	Registration *reg;

	if (ARR_NDIM(columns) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("scope columns must be a one-dimensional array")));
	deconstruct_array(columns, TEXTOID, -1, false, TYPALIGN_INT, &names, &isnull, &n);
	if (n > SCOPE_MAX_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("too many scope columns (%d)", n),
				 errdetail("A scope has 1 to %d columns.", SCOPE_MAX_COLUMNS),
				 errhint("Scope by fewer columns, for example a tenant id.")));
	reg = registry_get(RelationGetRelid(rel));
	attnums = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		char	   *name;
		AttrNumber	attnum;
		const char *problem;

		if (isnull[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a scope column name must not be null"),
					 errhint("Pass the names of the scope columns, or NULL for no scope.")));
		name = TextDatumGetCString(names[i]);
		attnum = get_attnum(RelationGetRelid(rel), name);
		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							name, RelationGetRelationName(rel)),
					 errhint("Pass the names of columns of the table.")));
		if (attnum < 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("system column \"%s\" cannot be a scope column", name),
					 errdetail("A row's scope is made of its own values."),
					 errhint("Pass ordinary columns of the table.")));
		problem = column_problem(rel, attnum);
		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of table \"%s\" has type %s, which cannot be a scope column",
							name, RelationGetRelationName(rel),
							format_type_be(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid)),
					 errdetail("%s", problem),
					 errhint("Scope by integer, numeric, text (deterministic collation), uuid, date/time, bytea or bool columns.")));
		if (reg != NULL && ddl_guard_names_contain(reg->excluded, name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" of table \"%s\" is excluded from sync",
							name, RelationGetRelationName(rel)),
					 errdetail("A scope column's values travel in every subject and envelope of the table."),
					 errhint("Scope by a synced column.")));
		for (int j = 0; j < i; j++)
			if (DatumGetInt16(attnums[j]) == attnum)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("column \"%s\" is named twice in the scope", name),
						 errhint("Name each scope column once.")));
		attnums[i] = Int16GetDatum(attnum);
	}
	return construct_array(attnums, n, INT2OID, 2, true, TYPALIGN_SHORT);
}

/* The names of the columns attnums (int2[]) of rel, as text[]. */
static ArrayType *
scope_names(Relation rel, ArrayType *attnums_array)
{
	Datum	   *attnums;
	int			n;

	deconstruct_array(attnums_array, INT2OID, 2, true, TYPALIGN_SHORT, &attnums, NULL, &n);
	for (int i = 0; i < n; i++)
		attnums[i] = CStringGetTextDatum(get_attname(RelationGetRelid(rel),
													 DatumGetInt16(attnums[i]), false));
	return construct_array(attnums, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * The columns an index must start with for one scope's pages to be O(page),
 * into cols (attribute numbers; returns how many): the scope columns, then
 * the primary-key columns that are not scope columns, in the key's order
 * (a scope column fixed by the page's WHERE orders nothing).
 */
static int
scope_index_columns(Relation rel, ArrayType *attnums_array, AttrNumber *cols, int *nscope)
{
	Datum	   *attnums;
	int			n;
	int			ncols;
	Relation	pk = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);

	deconstruct_array(attnums_array, INT2OID, 2, true, TYPALIGN_SHORT, &attnums, NULL, &n);
	for (int i = 0; i < n; i++)
		cols[i] = DatumGetInt16(attnums[i]);
	ncols = n;
	for (int i = 0; i < pk->rd_index->indnkeyatts; i++)
	{
		AttrNumber	attnum = pk->rd_index->indkey.values[i];
		bool		in_scope = false;

		for (int j = 0; j < n; j++)
			in_scope |= cols[j] == attnum;
		if (!in_scope)
			cols[ncols++] = attnum;
	}
	index_close(pk, AccessShareLock);
	*nscope = n;
	return ncols;
}

/*
 * Is there a btree index on (the scope columns in any order, then the
 * primary-key columns that are not scope columns), without a predicate or
 * expressions, which makes snapshot_page(scope => ...) read O(page)?
 */
static bool
has_scope_index(Relation rel, ArrayType *attnums_array)
{
	AttrNumber	cols[SCOPE_MAX_COLUMNS + INDEX_MAX_KEYS];
	int			n;
	int			ncols;
	List	   *indexes;
	ListCell   *lc;
	bool		found = false;

	if (!OidIsValid(RelationGetPrimaryKeyIndex(rel)))
		return false;
	ncols = scope_index_columns(rel, attnums_array, cols, &n);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		int2vector *keys = &index->rd_index->indkey;
		bool		fits = index->rd_rel->relam == BTREE_AM_OID &&
			heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			index->rd_index->indnkeyatts >= ncols;

		for (int i = 0; fits && i < n; i++)
		{
			bool		in_scope = false;

			for (int j = 0; j < n; j++)
				in_scope |= keys->values[i] == cols[j];
			fits = in_scope;
		}
		for (int i = n; fits && i < ncols; i++)
			fits = keys->values[i] == cols[i];
		index_close(index, AccessShareLock);
		if (fits)
		{
			found = true;
			break;
		}
	}
	list_free(indexes);
	return found;
}

/* The CREATE INDEX that makes one scope's pages O(page). */
static char *
scope_index_sql(Relation rel, ArrayType *attnums_array)
{
	StringInfoData sql;
	AttrNumber	cols[SCOPE_MAX_COLUMNS + INDEX_MAX_KEYS];
	int			n;
	int			ncols = scope_index_columns(rel, attnums_array, cols, &n);

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE INDEX ON %s (",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
	for (int i = 0; i < ncols; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "",
						 quote_identifier(get_attname(RelationGetRelid(rel), cols[i], false)));
	appendStringInfoString(&sql, ");");
	return sql.data;
}

/*
 * Refuse the scope (54000) when a row of rel already has a token too long:
 * that row could never be updated, deleted or retired (each change of it
 * is published in the scope it leaves), so unsync_table() and DROP TABLE
 * would fail too.  Reads every row: set_scope()'s lock keeps writers out,
 * the latest snapshot sees what committed before it, and row-level
 * security does not hide rows from the owner's check (as for foreign-key
 * checks).
 */
static void
check_rows(Relation rel)
{
	SyncedTable *table = table_cache_get(rel);
	int			natts = RelationGetDescr(rel)->natts;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync scope check",
												  ALLOCSET_DEFAULT_SIZES);
	StringInfoData sql;
	StringInfoData token;
	Oid			save_userid;
	int			save_sec;
	SPIPlanPtr	plan;
	Portal		portal;

	table_cache_use();
	initStringInfo(&sql);
	snapshot_append_select(&sql, table, rel);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(save_userid, save_sec | SECURITY_NOFORCE_RLS);
	PushActiveSnapshot(GetLatestSnapshot());
	plan = SPI_prepare(sql.data, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare para_sync scope check \"%s\"", sql.data);
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(row_cxt);

			CHECK_FOR_INTERRUPTS();
			snapshot_tuple_values(table, natts, SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
								  values, nulls);
			initStringInfo(&token);
			scope_build(&token, table, values, nulls);	/* 54000 when too long */
			MemoryContextSwitchTo(old);
			MemoryContextReset(row_cxt);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_freeplan(plan);
	PopActiveSnapshot();
	SetUserIdAndSecContext(save_userid, save_sec);
	table_cache_unuse();
	MemoryContextDelete(row_cxt);
}

/*
 * set_scope(tbl, columns): the scope of the table's rows from now on
 * (NULL or an empty array: none).  Like set_subject_layout(): the table's
 * owner only, under the lock that orders it with the table's writers, so
 * each change is captured under one scope, which its outbox row keeps.
 */
Datum
para_sync_set_scope(PG_FUNCTION_ARGS)
{
	Relation	rel;
	ArrayType  *attnums = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tbl must not be null"),
				 errhint("Pass a synced table, see para_sync.synced_tables.")));
	rel = relation_open(PG_GETARG_OID(0), ShareRowExclusiveLock);
	registry_check_owner(rel);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!registry_table_is_synced(RelationGetRelid(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not synced", RelationGetRelationName(rel)),
				 errhint("Tag it with para_sync.sync_table() first, or see para_sync.synced_tables.")));
	if (!PG_ARGISNULL(1) && ArrayGetNItems(ARR_NDIM(PG_GETARG_ARRAYTYPE_P(1)),
										   ARR_DIMS(PG_GETARG_ARRAYTYPE_P(1))) > 0)
		attnums = scope_attnums(rel, PG_GETARG_ARRAYTYPE_P(1));
	registry_set_scope(RelationGetRelid(rel),
					   attnums ? PointerGetDatum(scope_names(rel, attnums)) : (Datum) 0,
					   attnums == NULL);
	/* every backend reloads the registration before its next capture */
	CacheInvalidateRelcache(rel);
	if (attnums != NULL)
	{
		CommandCounterIncrement();	/* this backend too, for the check */
		check_rows(rel);
	}
	SPI_finish();
	if (attnums != NULL && !has_scope_index(rel, attnums))
		ereport(NOTICE,
				(errmsg("table \"%s\" has no index on its scope columns and primary key",
						RelationGetRelationName(rel)),
				 errdetail("para_sync.snapshot_page(..., scope => ...) reads the whole table per page without one."),
				 errhint("%s", scope_index_sql(rel, attnums))));
	relation_close(rel, NoLock);
	PG_RETURN_VOID();
}
