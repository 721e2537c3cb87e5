/*
 * registry_check.c — may this table be synced?  The checks behind
 * check_syncable() that sync_table() runs before it writes the registry
 * (registry_write.c runs them again when it writes): the caller owns the
 * table; it is an ordinary or partitioned, logged table outside schema
 * para_sync, not a partition of a synced table nor a root with a partition
 * synced on its own (partition.c); it has a primary key that is not
 * deferrable, whose column types have one key text per value
 * (type_trust.c); the excluded columns exist and are not key columns; no
 * synced column prints catalog names (type_trust.c).
 * Catalog reads only: the registry's statements are registry.c's.
 */
#include "para_sync.h"

#include "access/genam.h"
#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(para_sync_check_syncable);

/* The caller owns rel, or gets PostgreSQL's own "must be owner" error. */
void
registry_check_owner(Relation rel)
{
	if (!pg_class_ownercheck(RelationGetRelid(rel), GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER,
					   get_relkind_objtype(rel->rd_rel->relkind),
					   RelationGetRelationName(rel));
}

static void
require_plain_table(Relation rel)
{
	const char *name = RelationGetRelationName(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", name),
				 errhint("Only ordinary and partitioned tables can be synced.")));
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot sync temporary or unlogged table \"%s\"", name),
				 errdetail("Its rows do not survive a crash, but its published changes would.")));
	if (RelationGetNamespace(rel) == get_namespace_oid("para_sync", false))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot sync para_sync's own table \"%s\"", name)));
}

static Oid
deferrable_primary_key(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			result = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		bool		primary = index->rd_index->indisprimary;

		index_close(index, AccessShareLock);
		if (primary)
		{
			result = lfirst_oid(lc);
			break;
		}
	}
	list_free(indexes);
	return result;
}

/* Primary-key index of rel, checked usable; caller closes it. */
static Relation
open_primary_key(Relation rel)
{
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	Relation	index;

	/* the relcache leaves deferrable primary keys out of rd_pkindex */
	if (!OidIsValid(pk))
		pk = deferrable_primary_key(rel);
	if (!OidIsValid(pk))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no primary key", RelationGetRelationName(rel)),
				 errhint("Synced objects are keyed by the primary key: add one with ALTER TABLE ... ADD PRIMARY KEY.")));
	index = index_open(pk, AccessShareLock);
	if (!index->rd_index->indimmediate)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("primary key of table \"%s\" is deferrable", RelationGetRelationName(rel)),
				 errdetail("Per-object sequences rely on the primary key serializing writers of one object."),
				 errhint("Make the primary key NOT DEFERRABLE.")));
	return index;
}

static bool
is_key_column(Relation index, AttrNumber attnum)
{
	for (int i = 0; i < index->rd_index->indnkeyatts; i++)
		if (index->rd_index->indkey.values[i] == attnum)
			return true;
	return false;
}

static void
check_excluded_columns(Relation rel, Relation index, ArrayType *excluded)
{
	Datum	   *names;
	bool	   *nulls;
	int			n;

	deconstruct_array(excluded, TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *name;
		AttrNumber	attnum;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("excluded column names must not be null")));
		name = TextDatumGetCString(names[i]);
		attnum = get_attnum(RelationGetRelid(rel), name);
		if (attnum == InvalidAttrNumber || attnum < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of table \"%s\" does not exist", name,
							RelationGetRelationName(rel))));
		if (is_key_column(index, attnum))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot exclude primary-key column \"%s\"", name),
					 errdetail("Primary-key columns make up the object key.")));
	}
}

/*
 * Everything sync_table() requires of rel besides a valid name: a plain,
 * logged table with an immediate primary key, and excluded columns that
 * exist and are not key columns.  Returns the key column names.
 */
ArrayType *
registry_check_table(Relation rel, ArrayType *excluded)
{
	Relation	index;
	Datum	   *key_names;
	int			nkeys;

	require_plain_table(rel);
	partition_check_syncable(rel);
	index = open_primary_key(rel);
	check_excluded_columns(rel, index, excluded);
	type_trust_check_columns(rel, excluded);
	nkeys = index->rd_index->indnkeyatts;
	key_names = palloc(sizeof(Datum) * nkeys);
	for (int i = 0; i < nkeys; i++)
		type_trust_check_key(rel, index, i);
	for (int i = 0; i < nkeys; i++)
		key_names[i] = CStringGetTextDatum(get_attname(RelationGetRelid(rel),
													   index->rd_index->indkey.values[i],
													   false));
	index_close(index, AccessShareLock);
	return construct_array(key_names, nkeys, TEXTOID, -1, false, TYPALIGN_INT);
}

Datum
para_sync_check_syncable(PG_FUNCTION_ARGS)
{
	Relation	rel = relation_open(PG_GETARG_OID(0), AccessShareLock);
	ArrayType  *keys;

	outbox_require_updated_schema();
	registry_check_owner(rel);
	keys = registry_check_table(rel, PG_GETARG_ARRAYTYPE_P(1));
	relation_close(rel, AccessShareLock);
	PG_RETURN_ARRAYTYPE_P(keys);
}
