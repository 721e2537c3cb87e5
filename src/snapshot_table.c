/*
 * snapshot_table.c — whole-table paging: para_sync.snapshot_page() and
 * para_sync.snapshot_table(), a page of a table's objects each with the
 * envelope snapshot(key) returns, read in one snapshot of the database
 * (rows as snapshot.c reads them: caller's privileges, synced columns only;
 * docs/protocol.md, "Loading a whole table").
 *
 * snapshot_page() pages in primary-key order: after_key (the last key of
 * the previous page) is parsed back into primary-key values (key_parse),
 * and the page is one index range scan of the primary key,
 * "WHERE (pk...) > (values) ORDER BY pk... LIMIT max_rows", so a page
 * costs O(max_rows) for every key type, and a client resumes from the last
 * key it got.
 *
 * snapshot_table() is the paging of 0.3, kept for its clients: by key text
 * in byte order, which is not the primary-key order in general (10 < 9 as
 * text, escaping moves bytes).  A page is the max_rows smallest keys after
 * after_key, selected with a bounded max-heap from candidate rows:
 *   - a single int2/int4/int8 key: all keys of one sign and one number of
 *     digits sort as their magnitudes do, so "keys > after_key" is one
 *     primary-key range per (sign, digits) group, found by binary search on
 *     the text.  Each group is read in primary-key order (an index range
 *     scan, LIMIT max_rows), longest numbers first: that group fills the
 *     page, and every other group is then cut to the keys below the heap's
 *     current maximum, so a page costs O(max_rows) rows, not O(table);
 *   - any other key: a full scan of the table per page (correct, O(table)
 *     per page).
 *
 * Both read a page's sequences with index probes of the outbox and the
 * counters per key (outbox_last_sequences), with the same snapshot as
 * the rows and without SERIALIZABLE predicate locks.
 */
#include "para_sync.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(para_sync_snapshot_table);
PG_FUNCTION_INFO_V1(para_sync_snapshot_page);

/* ---- snapshot_table(): a page of a table's objects in key order */

/* Index of SyncedTable.page_plans */
#define PAGE_PLAN_SCAN	0		/* every row */
#define PAGE_PLAN_ASC	1		/* integer key in [$1, $2], ascending, LIMIT $3 */
#define PAGE_PLAN_DESC	2		/* integer key in [$1, $2], descending, LIMIT $3 */
#define PAGE_PLAN_PK_FIRST	3	/* snapshot_page(): the first rows in key order */
#define PAGE_PLAN_PK_AFTER	4	/* snapshot_page(): rows after a key */

typedef struct PageRow
{
	char	   *key;
	int			key_len;
	char	   *value;			/* the encoded value map */
	int			value_len;
	char	   *scope;			/* the row's scope token (scope.c), or NULL */
} PageRow;

/*
 * A page being read: for snapshot_table(), the max_rows smallest keys after
 * `after` seen so far, as a max-heap; for snapshot_page(), the rows in the
 * order read (heap is then a plain array).
 */
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
	StringInfoData scope;
	const char *only_scope;		/* snapshot_page(scope => ...), or NULL */
} KeyPage;

static int
row_cmp(const PageRow *a, const PageRow *b)
{
	return key_cmp(a->key, a->key_len, b->key, b->key_len);
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

/*
 * The scope token of the row in pg->values (a copy in the current memory
 * context), or NULL for a table without a scope.
 */
static char *
page_row_scope(KeyPage *pg)
{
	resetStringInfo(&pg->scope);
	if (!scope_build(&pg->scope, pg->table, pg->values, pg->nulls))
		return NULL;
	return pnstrdup(pg->scope.data, pg->scope.len);
}

/* Consider one SPI result row (selected by append_select) for the page. */
static void
page_offer(KeyPage *pg, HeapTuple tuple, TupleDesc desc)
{
	MemoryContext old = MemoryContextSwitchTo(pg->row_cxt);
	PageRow    *bound = page_bound(pg);
	PageRow    *row;

	MemoryContextReset(pg->row_cxt);
	snapshot_tuple_values(pg->table, pg->natts, tuple, desc, pg->values, pg->nulls);
	resetStringInfo(&pg->key);
	key_build(&pg->key, pg->table, pg->values, pg->nulls);
	if ((pg->after != NULL &&
		 key_cmp(pg->key.data, pg->key.len, pg->after, pg->after_len) <= 0) ||
		(bound != NULL &&
		 key_cmp(pg->key.data, pg->key.len, bound->key, bound->key_len) >= 0))
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
		if (row->scope)
			pfree(row->scope);
	}
	else
		row = palloc(sizeof(PageRow));
	row->scope = page_row_scope(pg);
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
		snapshot_append_select(&sql, pg->table, rel);
		plan = snapshot_keep_plan(sql.data, 0, NULL);
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
		int			c = key_cmp(buf, len, t, tlen);

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
		snapshot_append_select(&sql, pg->table, rel);
		appendStringInfo(&sql, " WHERE %s OPERATOR(pg_catalog.>=) $1"
						 " AND %s OPERATOR(pg_catalog.<=) $2"
						 " ORDER BY %s USING OPERATOR(pg_catalog.%s) LIMIT $3",
						 col, col, col, descending ? ">" : "<");
		plan = snapshot_keep_plan(sql.data, 3, types);
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

	c = key_cmp(after, Min(after_len, name_len), sync_name, name_len);
	if (c == 0 && after_len > name_len)
		c = (unsigned char) after[name_len] - (unsigned char) ':';
	if (c != 0 || after_len <= name_len)
		return c > 0 ? 1 : -1;
	*t = after + name_len + 1;
	*tlen = after_len - name_len - 1;
	return 0;
}

/*
 * The n rows of a page, in their order, into the result set, each with its
 * envelope: its sequence read with the snapshot the rows were read with.
 */
static void
page_emit(ReturnSetInfo *rsinfo, SyncedTable *table, PageRow **rows, int n)
{
	const char **keys = palloc(sizeof(char *) * Max(n, 1));
	int		   *key_lens = palloc(sizeof(int) * Max(n, 1));
	int64	   *seqs = palloc(sizeof(int64) * Max(n, 1));
	MemoryContext env_cxt;

	for (int i = 0; i < n; i++)
	{
		keys[i] = rows[i]->key;
		key_lens[i] = rows[i]->key_len;
	}
	outbox_last_sequences(n, keys, key_lens, seqs, false);
	env_cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync envelope",
									ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < n; i++)
	{
		PageRow    *row = rows[i];
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
		values[1] = PointerGetDatum(capture_envelope_build_scoped(row->key, row->key_len,
																  &value, table->schema_version,
																  (uint64) seqs[i],
																  PSYNC_OP_SNAPSHOT, false, 0,
																  row->scope));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(env_cxt);
	}
	MemoryContextDelete(env_cxt);
}

/* tbl not null, max_rows positive: the arguments both page functions check */
static void
page_check_args(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tbl must not be null")));
	if (PG_ARGISNULL(2) || PG_GETARG_INT32(2) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be positive"),
				 errhint("Pass the number of rows a page may hold, for example 1000.")));
}

/* The synced table relid, opened; an error when it is not synced. */
static Relation
page_table_open(Oid relid)
{
	Relation	rel = try_table_open(relid, AccessShareLock);

	/* a regclass any caller can write: 0 or the OID of a dropped table */
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid),
				 errhint("Pass a synced table, see para_sync.synced_tables.")));
	if (!registry_table_is_synced_in(relid, InvalidSnapshot))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced", RelationGetRelationName(rel)),
				 errhint("Tag it with para_sync.sync_table(), or see para_sync.synced_tables.")));
	return rel;
}

/* The page's memory, for rows of rel (page->table and max_rows set). */
static void
page_init(KeyPage *page, Relation rel)
{
	page->cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync page",
									  ALLOCSET_DEFAULT_SIZES);
	page->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync page row",
										  ALLOCSET_DEFAULT_SIZES);
	page->natts = RelationGetDescr(rel)->natts;
	page->values = palloc(sizeof(Datum) * page->natts);
	page->nulls = palloc(sizeof(bool) * page->natts);
	page->cap = Min(page->max_rows, 1024);
	page->heap = palloc(sizeof(PageRow *) * page->cap);
	initStringInfo(&page->key);
	initStringInfo(&page->value);
	initStringInfo(&page->scope);
}

/*
 * The prologue of both page functions: arguments checked, the result set
 * made, SPI connected, the synced table opened and its cache entry pinned
 * (the page's query runs policies: user code).  Returns the table.
 */
static Relation
page_begin(FunctionCallInfo fcinfo, KeyPage *page)
{
	Relation	rel;

	page_check_args(fcinfo);
	memset(page, 0, sizeof(*page));
	page->max_rows = PG_GETARG_INT32(2);
	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rel = page_table_open(PG_GETARG_OID(0));
	page->table = table_cache_get(rel);
	table_cache_use();
	return rel;
}

/* The epilogue of both: the page's rows returned, everything released. */
static void
page_end(FunctionCallInfo fcinfo, KeyPage *page, Relation rel,
		 MemoryContext caller_cxt)
{
	page_emit((ReturnSetInfo *) fcinfo->resultinfo, page->table, page->heap, page->n);
	table_cache_unuse();
	table_close(rel, AccessShareLock);
	SPI_finish();
	MemoryContextSwitchTo(caller_cxt);
}

Datum
para_sync_snapshot_table(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	KeyPage		page;
	Relation	rel = page_begin(fcinfo, &page);
	const char *t = NULL;
	int			tlen = 0;
	int			position = -1;

	if (!PG_ARGISNULL(1))
	{
		text	   *after = PG_GETARG_TEXT_PP(1);

		page.after = VARDATA_ANY(after);
		page.after_len = VARSIZE_ANY_EXHDR(after);
		position = after_key_position(page.table->sync_name, page.after, page.after_len,
									  &t, &tlen);
	}
	if (position <= 0)
	{
		page_init(&page, rel);
		if (position < 0)
			page.after = NULL;	/* every key is after it */
		if (int_keyed(page.table))
			page_scan_ints(&page, rel, t, tlen);
		else
			page_scan_all(&page, rel);
	}

	/* the page in key order */
	qsort(page.heap, page.n, sizeof(PageRow *), row_qsort_cmp);
	page_end(fcinfo, &page, rel, caller_cxt);
	return (Datum) 0;
}

/* ---- snapshot_page(): a page of a table's objects in primary-key order */

static const char *
key_column_name(SyncedTable *table, Relation rel, int i)
{
	return quote_identifier(get_attname(RelationGetRelid(rel), table->keys[i].attnum, false));
}

/*
 * "<select> [WHERE (k1, k2...) > ($1, $2...)] ORDER BY k1, k2... LIMIT $n",
 * kept: the primary key's index order, read as one index range scan.  The
 * operators are pg_catalog's < and >, the btree order of each key column's
 * default operator class (type_trust.c admits no other; equality is checked
 * the same way in snapshot.c), compared under the column's collation, which
 * is the primary-key index's too.  Parameters have the key columns' base
 * types, as key_parse() yields them.
 */
static SPIPlanPtr
pk_page_plan(SyncedTable *table, Relation rel, bool after, const bool *scope_nulls)
{
	int			which = after ? PAGE_PLAN_PK_AFTER : PAGE_PLAN_PK_FIRST;
	int			nparams = 0;
	StringInfoData sql;
	Oid		   *types;
	SPIPlanPtr	plan;

	if (scope_nulls == NULL && table->page_plans[which] != NULL)
		return (SPIPlanPtr) table->page_plans[which];
	initStringInfo(&sql);
	snapshot_append_select(&sql, table, rel);
	types = palloc(sizeof(Oid) * (table->nscope + table->nkeys + 1));
	/*
	 * One scope: its columns' equality (pg_catalog's "=" of the default
	 * operator class, as for keys), IS NULL for a NULL part; with an index
	 * on (scope columns, primary key) still one index range scan.
	 */
	for (int i = 0; scope_nulls != NULL && i < table->nscope; i++)
	{
		const char *col = quote_identifier(get_attname(RelationGetRelid(rel),
													   table->scope[i].attnum, false));

		appendStringInfoString(&sql, i ? " AND " : " WHERE ");
		if (scope_nulls[i])
			appendStringInfo(&sql, "%s IS NULL", col);
		else
		{
			types[nparams] = table->scope[i].base_typid;
			appendStringInfo(&sql, "%s OPERATOR(pg_catalog.=) $%d", col, ++nparams);
		}
	}
	if (after)
	{
		appendStringInfoString(&sql, scope_nulls != NULL ? " AND ROW(" : " WHERE ROW(");
		for (int i = 0; i < table->nkeys; i++)
			appendStringInfo(&sql, "%s%s", i ? ", " : "", key_column_name(table, rel, i));
		appendStringInfoString(&sql, ") OPERATOR(pg_catalog.>) ROW(");
		for (int i = 0; i < table->nkeys; i++)
		{
			types[nparams] = table->keys[i].base_typid;
			appendStringInfo(&sql, "%s$%d", i ? ", " : "", ++nparams);
		}
		appendStringInfoChar(&sql, ')');
	}
	appendStringInfoString(&sql, " ORDER BY ");
	for (int i = 0; i < table->nkeys; i++)
		appendStringInfo(&sql, "%s%s USING OPERATOR(pg_catalog.<)", i ? ", " : "",
						 key_column_name(table, rel, i));
	appendStringInfo(&sql, " LIMIT $%d", nparams + 1);
	types[nparams] = INT8OID;
	/*
	 * Planned for each page's values: a generic plan would guess the LIMIT
	 * and the bound, and could sort the whole table instead.
	 */
	plan = SPI_prepare_cursor(sql.data, nparams + 1, types, CURSOR_OPT_CUSTOM_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare para_sync page query \"%s\"", sql.data);
	/* one scope's plan depends on its NULL parts: made per page, not kept */
	if (scope_nulls != NULL)
		return plan;
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not prepare para_sync page query \"%s\"", sql.data);
	table->page_plans[which] = plan;
	return plan;
}

/*
 * The primary-key values of after_key, a key of table (the last key of the
 * previous page), into datums; a clear error when it is not one.
 */
static void
pk_after_key(SyncedTable *table, Relation rel, text *after, Datum *datums)
{
	char	   *key = text_to_cstring(after);
	int			len = strlen(key);
	int			name_len = strlen(table->sync_name);

	if (len > PSYNC_MAX_KEY_LEN || !psync_key_is_valid(key, len) ||
		len <= name_len || strncmp(key, table->sync_name, name_len) != 0 ||
		key[name_len] != ':')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_key \"%.*s\" is not a key of table \"%s\"",
						Min(len, 200), key, RelationGetRelationName(rel)),
				 errdetail("Keys of the table start with \"%s:\" (docs/protocol.md, \"Objects and keys\").",
						   table->sync_name),
				 errhint("Pass the last key of the previous page, or NULL for the first page.")));
	key_parse(key, table, datums);
}

/*
 * Copy one SPI result row (selected by snapshot_append_select) into a
 * PageRow; NULL when a page of one scope got a row whose own scope token is
 * not the one asked for (a token in another form than the canonical one,
 * "1%2E00" for 1: the same values, another token).
 */
static PageRow *
pk_page_row(KeyPage *pg, HeapTuple tuple, TupleDesc desc)
{
	MemoryContext old = MemoryContextSwitchTo(pg->row_cxt);
	PageRow    *row;

	MemoryContextReset(pg->row_cxt);
	snapshot_tuple_values(pg->table, pg->natts, tuple, desc, pg->values, pg->nulls);
	resetStringInfo(&pg->scope);
	if (scope_build(&pg->scope, pg->table, pg->values, pg->nulls) &&
		pg->only_scope != NULL && strcmp(pg->scope.data, pg->only_scope) != 0)
	{
		MemoryContextSwitchTo(old);
		return NULL;
	}
	resetStringInfo(&pg->key);
	key_build(&pg->key, pg->table, pg->values, pg->nulls);
	resetStringInfo(&pg->value);
	row_encode_values(&pg->value, pg->table, pg->values, pg->nulls);
	MemoryContextSwitchTo(pg->cxt);
	row = palloc(sizeof(PageRow));
	row->key = pnstrdup(pg->key.data, pg->key.len);
	row->key_len = pg->key.len;
	row->value = palloc(pg->value.len);
	memcpy(row->value, pg->value.data, pg->value.len);
	row->value_len = pg->value.len;
	row->scope = pg->table->nscope > 0 ? pnstrdup(pg->scope.data, pg->scope.len) : NULL;
	MemoryContextSwitchTo(old);
	return row;
}

/*
 * The rows of the page, in primary-key order, into pg->heap (here a plain
 * array in page order): at most max_rows rows after the primary-key values
 * after_datums (NULL: from the first), fetched through a cursor.
 */
static void
pk_page_read(KeyPage *pg, Relation rel, Datum *after_datums, Datum *scope_datums,
			 bool *scope_nulls)
{
	int			nkeys = pg->table->nkeys;
	Datum	   *args = palloc(sizeof(Datum) * (pg->table->nscope + nkeys + 1));
	int			nargs = 0;
	SPIPlanPtr	plan;
	Portal		portal;

	for (int i = 0; scope_nulls != NULL && i < pg->table->nscope; i++)
		if (!scope_nulls[i])
			args[nargs++] = scope_datums[i];
	if (after_datums != NULL)
		for (int i = 0; i < nkeys; i++)
			args[nargs++] = after_datums[i];
	args[nargs] = Int64GetDatum(pg->max_rows);
	plan = pk_page_plan(pg->table, rel, after_datums != NULL, scope_nulls);
	portal = SPI_cursor_open(NULL, plan, args, NULL, true);
	for (;;)
	{
		SPITupleTable *tuptable;

		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		tuptable = SPI_tuptable;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			PageRow    *row;

			CHECK_FOR_INTERRUPTS();
			if (pg->n == pg->cap)
			{
				pg->cap *= 2;
				pg->heap = repalloc_huge(pg->heap, sizeof(PageRow *) * pg->cap);
			}
			row = pk_page_row(pg, tuptable->vals[i], tuptable->tupdesc);
			if (row != NULL)
				pg->heap[pg->n++] = row;
		}
		SPI_freetuptable(tuptable);
	}
	SPI_cursor_close(portal);
	if (scope_nulls != NULL)
		SPI_freeplan(plan);
}

/*
 * para_sync.snapshot_page(tbl, after_key, max_rows, scope): the page after
 * after_key in primary-key order, of one scope's rows when scope is given
 * (a token of docs/protocol.md, "Scopes", read back into the scope columns'
 * values: scope.c).  Every key type costs O(max_rows) per page: one index
 * range scan for the rows (for one scope, given an index on the scope
 * columns and the primary key: set_scope() says which), index probes for
 * the sequences.
 */
Datum
para_sync_snapshot_page(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	KeyPage		page;
	Relation	rel = page_begin(fcinfo, &page);
	Datum	   *after_datums = NULL;
	Datum	   *scope_datums = NULL;
	bool	   *scope_nulls = NULL;

	if (!PG_ARGISNULL(1))
	{
		after_datums = palloc(sizeof(Datum) * page.table->nkeys);
		pk_after_key(page.table, rel, PG_GETARG_TEXT_PP(1), after_datums);
	}
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
	{
		page.only_scope = text_to_cstring(PG_GETARG_TEXT_PP(3));
		scope_datums = palloc(sizeof(Datum) * Max(page.table->nscope, 1));
		scope_nulls = palloc(sizeof(bool) * Max(page.table->nscope, 1));
		scope_parse(page.only_scope, page.table, rel, scope_datums, scope_nulls);
	}
	page_init(&page, rel);
	pk_page_read(&page, rel, after_datums, scope_datums, scope_nulls);
	page_end(fcinfo, &page, rel, caller_cxt);
	return (Datum) 0;
}
