/*
 * snapshot.c — para_sync.snapshot(key) and para_sync.snapshot_table(): the
 * current value and sequence of one object, or of a page of a table's
 * objects in key order, read in one snapshot of the database.
 *
 * Rows are read with the caller's privileges, so row-level security and
 * column grants apply (only synced columns are selected); an invisible row
 * reads as nil in snapshot() and is absent from snapshot_table(), and so
 * does, in snapshot(), a row whose key is not exactly the one asked for.  The
 * sequence and the key's table are read as the extension owner, with the
 * same snapshot.  A key whose sync name has no table reads as nil at its
 * last sequence (schema_version empty).  See docs/protocol.md, "Snapshots"
 * and "Loading a whole table" rule 2.
 *
 * snapshot_table() pages by key text in byte order, which is not the
 * primary-key order in general (10 < 9 as text, escaping moves bytes).  A
 * page is the max_rows smallest keys after after_key, selected with a
 * bounded max-heap from candidate rows:
 *   - a single int2/int4/int8 key: all keys of one sign and one number of
 *     digits sort as their magnitudes do, so "keys > after_key" is one
 *     primary-key range per (sign, digits) group, found by binary search on
 *     the text.  Each group is read in primary-key order (an index range
 *     scan, LIMIT max_rows), longest numbers first: that group fills the
 *     page, and every other group is then cut to the keys below the heap's
 *     current maximum, so a page costs O(max_rows) rows, not O(table);
 *   - any other key: a full scan of the table per page (correct, O(table)
 *     per page: page such tables with a large max_rows).
 * The page's sequences come from one range scan each of the outbox and the
 * counters (sequence_store_last_sorted), with the same snapshot as the rows.
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
PG_FUNCTION_INFO_V1(para_sync_snapshot_table);



/* "SELECT <synced columns> FROM ONLY <tbl>" into sql. */
static void
append_select(StringInfo sql, SyncedTable *table, Relation rel)
{
	appendStringInfoString(sql, "SELECT ");
	for (int i = 0; i < table->ncolumns; i++)
		appendStringInfo(sql, "%s%s", i ? ", " : "",
						 quote_identifier(table->columns[i].name));
	if (table->ncolumns == 0)
		appendStringInfoString(sql, "1");
	appendStringInfo(sql, " FROM ONLY %s",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
}

static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *types)
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
	append_select(&sql, table, rel);
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
	table->snapshot_plan = keep_plan(sql.data, table->nkeys, types);
	return (SPIPlanPtr) table->snapshot_plan;
}

/*
 * The synced columns of an SPI result row (selected by append_select) into
 * values/nulls indexed by attribute number - 1, as row_encode_values and
 * key_build expect; the other attributes read as null.
 */
static void
tuple_values(SyncedTable *table, int natts, HeapTuple tuple, TupleDesc desc,
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

	values = palloc(sizeof(Datum) * natts);
	nulls = palloc(sizeof(bool) * natts);
	tuple_values(table, natts, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
				 values, nulls);
	initStringInfo(&row_key);
	key_build(&row_key, table, values, nulls);
	if (strcmp(row_key.data, key) != 0)
		return false;
	row_encode_values(value, table, values, nulls);
	return true;
}

/*
 * The snapshot envelope of key with value (NULL: nil), its sequence read
 * with the active snapshot, the one the value was read with.
 */
static bytea *
snapshot_envelope(SyncedTable *table, const char *key, int key_len,
				  StringInfo value)
{
	int64		seq = sequence_store_last(key, key_len, false);

	return envelope_build(key, key_len, value, table->schema_version,
						  (uint64) seq, PSYNC_OP_SNAPSHOT, false, 0);
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

	if (IsInParallelMode() || sequence_store_last(key, key_len, false) == 0)
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
		int64		seq = sequence_store_last(key, key_len, false);

		MemoryContextSwitchTo(caller_cxt);
		envelope = envelope_build(key, key_len, NULL, "", (uint64) seq,
								  PSYNC_OP_SNAPSHOT, false, 0);
		SPI_finish();
		PG_RETURN_BYTEA_P(envelope);
	}
	table = table_cache_get(rel);
	key_datums = palloc(sizeof(Datum) * table->nkeys);

	/* value and sequence are read with the same (active) snapshot */
	initStringInfo(&value);
	found = parse_table_key(key, key_len, table, key_datums) &&
		read_row(table, rel, key_datums, key, &value);

	MemoryContextSwitchTo(caller_cxt);
	envelope = snapshot_envelope(table, key, key_len, found ? &value : NULL);
	table_close(rel, AccessShareLock);
	SPI_finish();
	PG_RETURN_BYTEA_P(envelope);
}

/* ---- snapshot_table(): a page of a table's objects in key order */

/* Index of SyncedTable.page_plans */
#define PAGE_PLAN_SCAN	0		/* every row */
#define PAGE_PLAN_ASC	1		/* integer key in [$1, $2], ascending, LIMIT $3 */
#define PAGE_PLAN_DESC	2		/* integer key in [$1, $2], descending, LIMIT $3 */

typedef struct PageRow
{
	char	   *key;
	int			key_len;
	char	   *value;			/* the encoded value map */
	int			value_len;
} PageRow;

/* The max_rows smallest keys after `after` seen so far, as a max-heap. */
typedef struct KeyPage
{
	SyncedTable *table;
	const char *after;			/* NULL: from the first key */
	int			after_len;
	int			max_rows;
	PageRow   **heap;
	int			n;
	int			cap;
	MemoryContext cxt;			/* the rows */
	MemoryContext row_cxt;		/* scratch, reset per candidate row */
	int			natts;
	Datum	   *values;
	bool	   *nulls;
	StringInfoData key;
	StringInfoData value;
} KeyPage;

static int
bytes_cmp(const char *a, int alen, const char *b, int blen)
{
	int			c = memcmp(a, b, Min(alen, blen));

	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

static int
row_cmp(const PageRow *a, const PageRow *b)
{
	return bytes_cmp(a->key, a->key_len, b->key, b->key_len);
}

static int
row_qsort_cmp(const void *a, const void *b)
{
	return row_cmp(*(PageRow *const *) a, *(PageRow *const *) b);
}

static void
heap_sift_down(KeyPage *pg, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1;
		int			big = i;
		PageRow    *tmp;

		if (l < pg->n && row_cmp(pg->heap[l], pg->heap[big]) > 0)
			big = l;
		if (l + 1 < pg->n && row_cmp(pg->heap[l + 1], pg->heap[big]) > 0)
			big = l + 1;
		if (big == i)
			return;
		tmp = pg->heap[i];
		pg->heap[i] = pg->heap[big];
		pg->heap[big] = tmp;
		i = big;
	}
}

static void
heap_sift_up(KeyPage *pg, int i)
{
	while (i > 0)
	{
		int			parent = (i - 1) / 2;
		PageRow    *tmp;

		if (row_cmp(pg->heap[parent], pg->heap[i]) >= 0)
			return;
		tmp = pg->heap[i];
		pg->heap[i] = pg->heap[parent];
		pg->heap[parent] = tmp;
		i = parent;
	}
}

/* The largest key kept so far, once the page is full; else NULL. */
static PageRow *
page_bound(KeyPage *pg)
{
	return pg->n == pg->max_rows ? pg->heap[0] : NULL;
}

/* Consider one SPI result row (selected by append_select) for the page. */
static void
page_offer(KeyPage *pg, HeapTuple tuple, TupleDesc desc)
{
	MemoryContext old = MemoryContextSwitchTo(pg->row_cxt);
	PageRow    *bound = page_bound(pg);
	PageRow    *row;

	MemoryContextReset(pg->row_cxt);
	tuple_values(pg->table, pg->natts, tuple, desc, pg->values, pg->nulls);
	resetStringInfo(&pg->key);
	key_build(&pg->key, pg->table, pg->values, pg->nulls);
	if ((pg->after != NULL &&
		 bytes_cmp(pg->key.data, pg->key.len, pg->after, pg->after_len) <= 0) ||
		(bound != NULL &&
		 bytes_cmp(pg->key.data, pg->key.len, bound->key, bound->key_len) >= 0))
	{
		MemoryContextSwitchTo(old);
		return;
	}
	resetStringInfo(&pg->value);
	row_encode_values(&pg->value, pg->table, pg->values, pg->nulls);

	MemoryContextSwitchTo(pg->cxt);
	if (bound != NULL)
	{
		/* replace the largest key */
		row = bound;
		pfree(row->key);
		pfree(row->value);
	}
	else
		row = palloc(sizeof(PageRow));
	row->key = pnstrdup(pg->key.data, pg->key.len);
	row->key_len = pg->key.len;
	row->value = palloc(pg->value.len);
	memcpy(row->value, pg->value.data, pg->value.len);
	row->value_len = pg->value.len;
	if (bound != NULL)
		heap_sift_down(pg, 0);
	else
	{
		if (pg->n == pg->cap)
		{
			pg->cap *= 2;
			pg->heap = repalloc_huge(pg->heap, sizeof(PageRow *) * pg->cap);
		}
		pg->heap[pg->n++] = row;
		heap_sift_up(pg, pg->n - 1);
	}
	MemoryContextSwitchTo(old);
}

/* Offer every row of the current SPI result, then free it. */
static void
page_offer_result(KeyPage *pg)
{
	SPITupleTable *tuptable = SPI_tuptable;
	uint64		n = SPI_processed;

	for (uint64 i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		page_offer(pg, tuptable->vals[i], tuptable->tupdesc);
	}
	SPI_freetuptable(tuptable);
}

/* Generic candidates: every row of the table. */
static void
page_scan_all(KeyPage *pg, Relation rel)
{
	SPIPlanPtr	plan = (SPIPlanPtr) pg->table->page_plans[PAGE_PLAN_SCAN];
	Portal		portal;

	if (plan == NULL)
	{
		StringInfoData sql;

		initStringInfo(&sql);
		append_select(&sql, pg->table, rel);
		plan = keep_plan(sql.data, 0, NULL);
		pg->table->page_plans[PAGE_PLAN_SCAN] = plan;
	}
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		page_offer_result(pg);
	}
	SPI_cursor_close(portal);
}

/* ---- integer keys: (sign, digits) groups */

/* The key text (after "<sync name>:") of the integer -m (neg) or m. */
static int
int_text(bool neg, uint64 m, char *buf)
{
	return snprintf(buf, 24, "%s%llu", neg ? "-" : "", (unsigned long long) m);
}

/*
 * Within a group (text of equal length, so text order is magnitude order),
 * the first magnitude in [lo, hi] whose text compares to t as wanted
 * (> t when after, else >= t), or hi + 1 when none does.
 */
static uint64
int_group_search(bool neg, uint64 lo, uint64 hi, const char *t, int tlen,
				 bool after)
{
	uint64		l = lo;
	uint64		h = hi + 1;		/* hi < UINT64_MAX: magnitudes are <= 2^63 */

	while (l < h)
	{
		uint64		mid = l + (h - l) / 2;
		char		buf[24];
		int			len = int_text(neg, mid, buf);
		int			c = bytes_cmp(buf, len, t, tlen);

		if (after ? c > 0 : c >= 0)
			h = mid;
		else
			l = mid + 1;
	}
	return l;
}

static int64
int_value(bool neg, uint64 m)
{
	if (!neg)
		return (int64) m;
	if (m == (uint64) PG_INT64_MAX + 1)
		return PG_INT64_MIN;
	return -(int64) m;
}

static SPIPlanPtr
int_range_plan(KeyPage *pg, Relation rel, bool descending)
{
	int			which = descending ? PAGE_PLAN_DESC : PAGE_PLAN_ASC;
	SPIPlanPtr	plan = (SPIPlanPtr) pg->table->page_plans[which];

	if (plan == NULL)
	{
		Oid			types[3] = {INT8OID, INT8OID, INT8OID};
		const char *col = quote_identifier(get_attname(RelationGetRelid(rel),
													   pg->table->keys[0].attnum, false));
		StringInfoData sql;

		initStringInfo(&sql);
		append_select(&sql, pg->table, rel);
		appendStringInfo(&sql, " WHERE %s OPERATOR(pg_catalog.>=) $1"
						 " AND %s OPERATOR(pg_catalog.<=) $2"
						 " ORDER BY %s USING OPERATOR(pg_catalog.%s) LIMIT $3",
						 col, col, col, descending ? ">" : "<");
		plan = keep_plan(sql.data, 3, types);
		pg->table->page_plans[which] = plan;
	}
	return plan;
}

/*
 * Integer candidates.  Key texts of one sign and one number of digits all
 * have the same length, so among them text order is the order of
 * magnitudes: "text > t" holds on a suffix of the group, found by binary
 * search, and the group is read as one primary-key range.  t is the
 * after-key's text past "<sync name>:" (NULL: no lower bound).
 */
static void
page_scan_ints(KeyPage *pg, Relation rel, const char *t, int tlen)
{
	static const uint64 pow10[20] = {
		UINT64CONST(1), UINT64CONST(10), UINT64CONST(100), UINT64CONST(1000),
		UINT64CONST(10000), UINT64CONST(100000), UINT64CONST(1000000),
		UINT64CONST(10000000), UINT64CONST(100000000), UINT64CONST(1000000000),
		UINT64CONST(10000000000), UINT64CONST(100000000000),
		UINT64CONST(1000000000000), UINT64CONST(10000000000000),
		UINT64CONST(100000000000000), UINT64CONST(1000000000000000),
		UINT64CONST(10000000000000000), UINT64CONST(100000000000000000),
		UINT64CONST(1000000000000000000), UINT64CONST(10000000000000000000)};
	Oid			typid = pg->table->keys[0].base_typid;
	uint64		max_pos = typid == INT2OID ? PG_INT16_MAX :
		typid == INT4OID ? PG_INT32_MAX : PG_INT64_MAX;
	uint64		max_neg = max_pos + 1;
	int			prefix_len = strlen(pg->table->sync_name) + 1;

	/*
	 * Negative keys ("-...") sort first, so their groups go first; within a
	 * sign the longest numbers go first: their group holds most of the
	 * keys next to any after_key, so the page fills at once and the shorter
	 * groups are cut to the few keys below its largest.
	 */
	for (int sign = 1; sign >= 0; sign--)
	{
		bool		neg = sign == 1;
		uint64		top = neg ? max_neg : max_pos;

		for (int digits = 19; digits >= 1; digits--)
		{
			uint64		lo = digits == 1 ? (neg ? 1 : 0) : pow10[digits - 1];
			uint64		hi = Min(top, pow10[digits] - 1);
			uint64		first = lo;
			uint64		last = hi;
			PageRow    *bound = page_bound(pg);
			Datum		args[3];
			int			rc;

			if (lo > top)
				continue;
			if (t != NULL)
				first = int_group_search(neg, lo, hi, t, tlen, true);
			/* once the page is full, only keys below its largest can enter */
			if (bound != NULL && first <= hi)
				last = int_group_search(neg, first, hi, bound->key + prefix_len,
										bound->key_len - prefix_len, false) - 1;
			if (first > hi || last < first || last > hi)
				continue;
			CHECK_FOR_INTERRUPTS();
			args[0] = Int64GetDatum(neg ? int_value(true, last) : (int64) first);
			args[1] = Int64GetDatum(neg ? int_value(true, first) : (int64) last);
			args[2] = Int64GetDatum(pg->max_rows);
			rc = SPI_execute_plan(int_range_plan(pg, rel, neg), args, NULL, true, 0);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "para_sync snapshot_table query failed: %s",
					 SPI_result_code_string(rc));
			page_offer_result(pg);
		}
	}
}

static bool
int_keyed(SyncedTable *table)
{
	Oid			typid;

	if (table->nkeys != 1)
		return false;
	typid = table->keys[0].base_typid;
	return typid == INT2OID || typid == INT4OID || typid == INT8OID;
}

/*
 * Where after_key stands against "<sync name>:", the prefix of every key
 * of the table: -1 before all keys, 1 after all, 0 among them (then *t is
 * its text past the prefix).
 */
static int
after_key_position(const char *sync_name, const char *after, int after_len,
				   const char **t, int *tlen)
{
	int			name_len = strlen(sync_name);
	int			c;

	c = bytes_cmp(after, Min(after_len, name_len), sync_name, name_len);
	if (c == 0 && after_len > name_len)
		c = (unsigned char) after[name_len] - (unsigned char) ':';
	if (c != 0 || after_len <= name_len)
		return c > 0 ? 1 : -1;
	*t = after + name_len + 1;
	*tlen = after_len - name_len - 1;
	return 0;
}

Datum
para_sync_snapshot_table(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext caller_cxt = CurrentMemoryContext;
	MemoryContext env_cxt;
	Oid			relid;
	Relation	rel;
	KeyPage		page;
	const char *t = NULL;
	int			tlen = 0;
	int			position = -1;
	const char **keys;
	int		   *key_lens;
	int64	   *seqs;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tbl must not be null")));
	if (PG_ARGISNULL(2) || PG_GETARG_INT32(2) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be positive"),
				 errhint("Pass the number of rows a page may hold, for example 1000.")));
	relid = PG_GETARG_OID(0);
	memset(&page, 0, sizeof(page));
	page.max_rows = PG_GETARG_INT32(2);
	if (!PG_ARGISNULL(1))
	{
		text	   *after = PG_GETARG_TEXT_PP(1);

		page.after = VARDATA_ANY(after);
		page.after_len = VARSIZE_ANY_EXHDR(after);
	}
	InitMaterializedSRF(fcinfo, 0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rel = table_open(relid, AccessShareLock);
	if (!registry_table_is_synced_in(relid, InvalidSnapshot))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced", RelationGetRelationName(rel)),
				 errhint("Tag it with para_sync.sync_table(), or see para_sync.synced_tables.")));
	page.table = table_cache_get(rel);
	if (page.after != NULL)
		position = after_key_position(page.table->sync_name, page.after, page.after_len,
									  &t, &tlen);
	if (position <= 0)
	{
		page.cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync page",
									   ALLOCSET_DEFAULT_SIZES);
		page.row_cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync page row",
										   ALLOCSET_DEFAULT_SIZES);
		page.natts = RelationGetDescr(rel)->natts;
		page.values = palloc(sizeof(Datum) * page.natts);
		page.nulls = palloc(sizeof(bool) * page.natts);
		page.cap = Min(page.max_rows, 1024);
		page.heap = palloc(sizeof(PageRow *) * page.cap);
		initStringInfo(&page.key);
		initStringInfo(&page.value);
		if (position < 0)
			page.after = NULL;	/* every key is after it */
		if (int_keyed(page.table))
			page_scan_ints(&page, rel, t, tlen);
		else
			page_scan_all(&page, rel);
	}

	/* the page in key order, each row with its sequence (same snapshot) */
	qsort(page.heap, page.n, sizeof(PageRow *), row_qsort_cmp);
	keys = palloc(sizeof(char *) * Max(page.n, 1));
	key_lens = palloc(sizeof(int) * Max(page.n, 1));
	seqs = palloc(sizeof(int64) * Max(page.n, 1));
	for (int i = 0; i < page.n; i++)
	{
		keys[i] = page.heap[i]->key;
		key_lens[i] = page.heap[i]->key_len;
	}
	sequence_store_last_sorted(page.n, keys, key_lens, seqs);
	env_cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync envelope",
									ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < page.n; i++)
	{
		PageRow    *row = page.heap[i];
		MemoryContext old = MemoryContextSwitchTo(env_cxt);
		StringInfoData value;
		Datum		values[2];
		bool		nulls[2] = {false, false};

		CHECK_FOR_INTERRUPTS();
		value.data = row->value;
		value.len = row->value_len;
		value.maxlen = row->value_len;
		value.cursor = 0;
		values[0] = PointerGetDatum(cstring_to_text_with_len(row->key, row->key_len));
		values[1] = PointerGetDatum(envelope_build(row->key, row->key_len, &value,
												   page.table->schema_version,
												   (uint64) seqs[i], PSYNC_OP_SNAPSHOT,
												   false, 0));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(env_cxt);
	}
	table_close(rel, AccessShareLock);
	SPI_finish();
	MemoryContextSwitchTo(caller_cxt);
	return (Datum) 0;
}
