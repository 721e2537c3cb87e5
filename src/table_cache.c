/*
 * table_cache.c — per-backend cache of what para_sync knows about a synced
 * table: its sync name, schema version, subject layout, scope columns
 * (scope.c) and excluded columns
 * (from the registry, para_sync.tables, read by registry.c's
 * registry_lookup()), the synced columns with their value
 * codecs, and the primary-key columns.
 *
 * The capture trigger runs once per changed row, so everything that needs a
 * catalog or registry look-up is resolved once here.  The registry, not the
 * trigger definition, is the source of truth: a capture trigger that a table
 * owner attached by hand to an unregistered table cannot claim another
 * table's sync name.  Entries are invalidated through a relcache callback:
 * any ALTER TABLE, the trigger DDL of sync_table() and unsync_table(), and
 * every other registry change (set_schema_version(), set_subject_layout(),
 * the DDL guard's exclusion and schema_version updates) send a relcache
 * invalidation for the table.
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "access/genam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

typedef struct CacheEntry
{
	Oid			relid;			/* hash key */
	Oid			root;			/* a partition's synced root (partition.c), or 0 */
	MemoryContext cxt;			/* everything the entry points to */
	SyncedTable *table;
} CacheEntry;

static HTAB *table_cache = NULL;
static int	partition_entries = 0;	/* entries with a root: built ever */

/*
 * Calls that hold an entry across user code (snapshot(), the page
 * functions: their queries run row-level security policies, which may call
 * snapshot() after an invalidation and so rebuild the entry in use), and
 * the entries rebuilt meanwhile, freed once no such call runs.  A call that
 * fails leaves the count high until the transaction ends: entries then wait
 * a little longer, never less.
 */
static int	table_cache_users = 0;
static List *retired_tables = NIL;	/* in TopMemoryContext */

static void
free_table_memory(MemoryContext cxt, SyncedTable *table)
{
	if (table && table->snapshot_plan)
		SPI_freeplan((SPIPlanPtr) table->snapshot_plan);
	for (int i = 0; table && i < lengthof(table->page_plans); i++)
		if (table->page_plans[i])
			SPI_freeplan((SPIPlanPtr) table->page_plans[i]);
	MemoryContextDelete(cxt);
}

static void
free_retired_tables(void)
{
	ListCell   *lc;

	if (table_cache_users > 0)
		return;
	foreach(lc, retired_tables)
	{
		SyncedTable *table = lfirst(lc);

		free_table_memory(GetMemoryChunkContext(table), table);
	}
	list_free(retired_tables);
	retired_tables = NIL;
}

/* The caller keeps using the SyncedTable it got until table_cache_unuse(). */
void
table_cache_use(void)
{
	table_cache_users++;
}

void
table_cache_unuse(void)
{
	if (table_cache_users > 0)
		table_cache_users--;
}

static void
table_cache_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		table_cache_users = 0;
}

static void
invalidate_entry(CacheEntry *entry)
{
	if (entry->table != NULL)
		entry->table->valid = false;
}

static void
table_cache_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	CacheEntry *entry;

	if (table_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(table_cache, &relid, HASH_FIND, NULL);
		if (entry != NULL)
			invalidate_entry(entry);
		if (partition_entries == 0)
			return;
		/* a root's registration changed: its partitions' entries too */
		hash_seq_init(&status, table_cache);
		while ((entry = hash_seq_search(&status)) != NULL)
			if (entry->root == relid)
				invalidate_entry(entry);
		return;
	}
	hash_seq_init(&status, table_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		invalidate_entry(entry);
}

void
table_cache_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(CacheEntry);
	ctl.hcxt = CacheMemoryContext;
	table_cache = hash_create("para_sync table cache", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(table_cache_relcache_callback, (Datum) 0);
	RegisterXactCallback(table_cache_xact_callback, NULL);
}

static void
codec_init(ValueCodec *codec, Oid typid, MemoryContext cxt)
{
	Oid			base = getBaseType(typid);
	Oid			element;

	memset(codec, 0, sizeof(*codec));
	codec->typid = base;
	switch (base)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			codec->kind = VK_INT;
			return;
		case OIDOID:
			codec->kind = VK_OID;
			return;
		case FLOAT4OID:
			codec->kind = VK_FLOAT4;
			return;
		case FLOAT8OID:
			codec->kind = VK_FLOAT8;
			return;
		case BOOLOID:
			codec->kind = VK_BOOL;
			return;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			codec->kind = VK_TEXT;
			return;
		case NAMEOID:
			codec->kind = VK_NAME;
			return;
		case BYTEAOID:
			codec->kind = VK_BYTEA;
			return;
		case JSONOID:
			codec->kind = VK_JSON;
			return;
		case JSONBOID:
			codec->kind = VK_JSONB;
			return;
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			codec->kind = VK_TIMESTAMP;
			return;
		default:
			break;
	}

	element = get_element_type(base);
	if (OidIsValid(element))
	{
		codec->kind = VK_ARRAY;
		codec->element = MemoryContextAlloc(cxt, sizeof(ValueCodec));
		codec_init(codec->element, element, cxt);
		get_typlenbyvalalign(element, &codec->elmlen, &codec->elmbyval,
							 &codec->elmalign);
		return;
	}
	/* citext and other base types stored as text (never decided by name) */
	if (type_trust_is_text_like(base))
	{
		codec->kind = VK_TEXT;
		return;
	}

	{
		Oid			output_fn;
		bool		is_varlena;

		codec->kind = VK_OUTPUT;
		getTypeOutputInfo(base, &output_fn, &is_varlena);
		fmgr_info_cxt(output_fn, &codec->output, cxt);
	}
}

static bool
column_is_excluded(const char *name, Datum *excluded, int nexcluded)
{
	for (int i = 0; i < nexcluded; i++)
		if (strcmp(TextDatumGetCString(excluded[i]), name) == 0)
			return true;
	return false;
}

/*
 * The synced columns, in the order and with the names of names_from's
 * columns (rel's own, or a partition's root's: the envelope is the
 * root's), at rel's attribute numbers.
 */
static void
load_columns(SyncedTable *table, Relation rel, Relation names_from,
			 Datum *excluded, int nexcluded, MemoryContext cxt)
{
	TupleDesc	desc = RelationGetDescr(names_from);

	table->columns = MemoryContextAllocZero(cxt, sizeof(SyncedColumn) * desc->natts);
	table->ncolumns = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		SyncedColumn *col;

		if (att->attisdropped || column_is_excluded(NameStr(att->attname), excluded, nexcluded))
			continue;
		col = &table->columns[table->ncolumns++];
		col->attnum = names_from == rel ? att->attnum :
			get_attnum(RelationGetRelid(rel), NameStr(att->attname));
		if (col->attnum == InvalidAttrNumber)
			elog(ERROR, "column \"%s\" of partition \"%s\" not found",
				 NameStr(att->attname), RelationGetRelationName(rel));
		col->name = MemoryContextStrdup(cxt, NameStr(att->attname));
		col->name_len = strlen(col->name);
		codec_init(&col->codec, att->atttypid, cxt);
	}
}

static void
load_keys(SyncedTable *table, Relation rel, MemoryContext cxt)
{
	Oid			pk_oid = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	TupleDesc	desc = RelationGetDescr(rel);

	if (!OidIsValid(pk_oid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("synced table \"%s\" has no primary key",
						RelationGetRelationName(rel)),
				 errhint("Add a primary key, or stop syncing the table with para_sync.unsync_table().")));

	index = index_open(pk_oid, AccessShareLock);
	table->nkeys = index->rd_index->indnkeyatts;
	table->keys = MemoryContextAllocZero(cxt, sizeof(KeyColumn) * table->nkeys);
	for (int i = 0; i < table->nkeys; i++)
	{
		KeyColumn  *key = &table->keys[i];
		Form_pg_attribute att;
		Oid			output_fn;
		bool		is_varlena;

		/* a key type ALTERed in after tagging is refused here too */
		type_trust_check_key(rel, index, i);
		key->attnum = index->rd_index->indkey.values[i];
		att = TupleDescAttr(desc, key->attnum - 1);
		key->typid = att->atttypid;
		key->base_typid = getBaseType(att->atttypid);
		getTypeOutputInfo(key->typid, &output_fn, &is_varlena);
		fmgr_info_cxt(output_fn, &key->output, cxt);
		/*
		 * Keys given to snapshot() are parsed by the base type's input: a
		 * domain's CHECK constraints may call functions of the table owner's,
		 * which must not run as whoever calls snapshot().
		 */
		getTypeInputInfo(key->base_typid, &key->input_fn, &key->typioparam);
		key->eq_opr = get_opfamily_member(index->rd_opfamily[i],
										  index->rd_opcintype[i],
										  index->rd_opcintype[i],
										  BTEqualStrategyNumber);
	}
	index_close(index, AccessShareLock);
}

/*
 * Read the registry row of rel (registry.c) into table (name, version,
 * layout) and return its excluded columns (valid until SPI_finish).  Caller
 * is connected to SPI.
 */
static void
load_registration(SyncedTable *table, Relation rel, MemoryContext cxt,
				  Datum **excluded, int *nexcluded, Oid *root)
{
	Registration *reg = registry_lookup(RelationGetRelid(rel));

	*root = InvalidOid;
	/* a partition is captured under its synced root's registration */
	if (reg == NULL)
		reg = partition_lookup(RelationGetRelid(rel), root);

	if (reg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced", RelationGetRelationName(rel)),
				 errdetail("A para_sync capture trigger is attached to a table that is not in para_sync.tables."),
				 errhint("Tag the table with para_sync.sync_table(), or drop the trigger.")));
	table->sync_name = MemoryContextStrdup(cxt, reg->sync_name);
	table->schema_version = MemoryContextStrdup(cxt, reg->schema_version);
	deconstruct_array(reg->excluded, TEXTOID, -1, false, TYPALIGN_INT,
					  excluded, NULL, nexcluded);
	table->subject_layout = reg->layout;
	scope_load(table, rel, reg->scope_columns, cxt);
}

static SyncedTable *
build_entry(CacheEntry *entry, Relation rel)
{
	MemoryContext cxt;
	SyncedTable *table;
	Datum	   *excluded;
	int			nexcluded;
	Relation	names_from = rel;

	if (entry->cxt != NULL && entry->table != NULL && table_cache_users > 0)
	{
		/* a call up the stack may still use it: free it later */
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		retired_tables = lappend(retired_tables, entry->table);
		MemoryContextSwitchTo(old);
	}
	else if (entry->cxt != NULL)
		free_table_memory(entry->cxt, entry->table);
	free_retired_tables();
	entry->cxt = NULL;
	entry->table = NULL;

	cxt = AllocSetContextCreate(CacheMemoryContext, "para_sync synced table",
								ALLOCSET_SMALL_SIZES);
	MemoryContextCopyAndSetIdentifier(cxt, RelationGetRelationName(rel));
	entry->cxt = cxt;
	table = MemoryContextAllocZero(cxt, sizeof(SyncedTable));
	table->relid = RelationGetRelid(rel);
	/* valid first: an invalidation that arrives while building clears it */
	table->valid = true;
	/* read with the query's snapshot, not a fresh one (registry.c) */
	table->parallel_only = IsInParallelMode();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	load_registration(table, rel, cxt, &excluded, &nexcluded, &entry->root);
	if (OidIsValid(entry->root))
	{
		/*
		 * Not locked: the root's columns cannot change, nor can the
		 * partition leave it, without a lock on the partition, which the
		 * caller holds.
		 */
		names_from = RelationIdGetRelation(entry->root);
		if (names_from == NULL)
			elog(ERROR, "could not open synced root %u of partition \"%s\"",
				 entry->root, RelationGetRelationName(rel));
		partition_entries++;
	}
	load_columns(table, rel, names_from, excluded, nexcluded, cxt);
	if (names_from != rel)
		RelationClose(names_from);
	SPI_finish();
	load_keys(table, rel, cxt);
	entry->table = table;
	return table;
}

/*
 * The cache entry of synced table rel, (re)built from the registry and the
 * catalogs when needed.
 */
SyncedTable *
table_cache_get(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	CacheEntry *entry;
	bool		found;

	entry = hash_search(table_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->root = InvalidOid;
		entry->cxt = NULL;
		entry->table = NULL;
	}
	if (entry->table != NULL && entry->table->valid &&
		(!entry->table->parallel_only || IsInParallelMode()))
		return entry->table;
	return build_entry(entry, rel);
}
