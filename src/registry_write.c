/*
 * registry_write.c — the SQL functions that write the registry: behind
 * sync_table(), set_schema_version() and unsync_table()
 * (para_sync.registry_write()), and set_subject_layout().
 *
 * They run with the caller's rights and first check that the caller owns
 * the table (registry_check.c, which also says which tables may be synced;
 * and, for a new sync name, that the caller may use it: sync_names.c);
 * unsync publishes a delete for every row first, and a new registration
 * announces rows whose keys have a history (lifecycle.c); the statements
 * on para_sync.tables are registry.c's, run as the extension owner
 * (catalog.c).  That keeps the SQL wrappers SECURITY INVOKER (so the
 * caller's own identity is what is checked) while table owners need no
 * privilege on para_sync's tables.
 *
 * This file calls out to those modules; registry.c calls none of them
 * back, so the registry's statements are a leaf that the capture trigger's
 * cache (table_cache.c), type_trust.c and sync_names.c can read.
 */
#include "para_sync.h"

#include "access/relation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(para_sync_registry_write);
PG_FUNCTION_INFO_V1(para_sync_set_subject_layout);

/*
 * Registered means captured: the capture and TRUNCATE triggers are created
 * here, with the registration, firing ALWAYS (replica mode and logical
 * replication apply are captured too), so that no caller of the registry
 * functions can leave a table registered but uncaptured.  As the caller,
 * who owns the table; called once the table is no longer open here
 * (ALTER TABLE refuses a table in use), still locked.
 */
static void
install_capture_triggers(Oid relid)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	char	   *qname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												   get_rel_name(relid));
	const char *const triggers[] = {"para_sync_capture", "para_sync_no_truncate"};

	if (SPI_execute_with_args("SELECT para_sync.install_triggers($1)", 1, types, args,
							  NULL, false, 0) < 0)
		elog(ERROR, "para_sync could not create the triggers of %s", qname);
	for (int i = 0; i < lengthof(triggers); i++)
		if (SPI_execute(psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER %s", qname, triggers[i]),
						false, 0) < 0)
			elog(ERROR, "para_sync could not enable trigger %s of %s", triggers[i], qname);
	/* PostgreSQL clones the capture trigger to partitions, not this one */
	partition_install_truncate_triggers(relid);
}

static void
require_schema_version(text *version)
{
	if (version == NULL || VARSIZE_ANY_EXHDR(version) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema_version must not be empty")));
	/* every envelope carries it, and clients refuse longer ones */
	if (VARSIZE_ANY_EXHDR(version) > PSYNC_MAX_SCHEMA_VERSION_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema_version is too long (%d bytes)",
						(int) VARSIZE_ANY_EXHDR(version)),
				 errdetail("A schema_version is at most %d bytes.",
						   PSYNC_MAX_SCHEMA_VERSION_LEN),
				 errhint("Use a short version label such as '3.1'.")));
}

static void
not_synced(Relation rel)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("table \"%s\" is not synced", RelationGetRelationName(rel)),
			 errhint("See para_sync.synced_tables for the synced tables.")));
}

/* sync_table(): checks, the sync name's claim, the row, then the rows announced. */
static void
write_insert(Relation rel, text *name, text *version, Datum excluded)
{
	char	   *sync_name = text_to_cstring(name);

	/* the same checks as check_syncable(), for callers that skipped it */
	outbox_require_updated_schema();
	registry_check_table(rel, DatumGetArrayTypeP(excluded));

	if (!psync_sync_name_is_valid(sync_name, strlen(sync_name)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid sync name \"%s\"", sync_name),
				 errhint("A sync name is 1 to 63 characters of A-Z, a-z, 0-9, \"_\" and \"-\"; pass name => '...' to choose one.")));
	require_schema_version(version);

	if (registry_relid_taken(RelationGetRelid(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already synced", RelationGetRelationName(rel)),
				 errhint("Use para_sync.set_schema_version() to change its schema version, or para_sync.unsync_table() first.")));
	if (registry_name_taken(name))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("sync name \"%s\" is already in use", sync_name),
				 errhint("Pass name => '...' to sync_table() to choose another sync name.")));

	/* the name stays bound to whoever claimed it first */
	sync_names_claim(sync_name, rel->rd_rel->relowner);

	registry_insert(RelationGetRelid(rel), name, version, excluded);

	/* rows whose keys were published before get their content again */
	CacheInvalidateRelcache(rel);
	CommandCounterIncrement();
	lifecycle_announce_rows(rel);
}

/* set_schema_version(): the table's new schema_version. */
static void
write_set_version(Relation rel, text *version)
{
	require_schema_version(version);
	if (registry_set_version(RelationGetRelid(rel), version) == 0)
		not_synced(rel);
	/* every backend reloads the registration (the triggers stay as they are) */
	CacheInvalidateRelcache(rel);
}

/* unsync_table(): a delete for every row, then the registry row goes. */
static void
write_delete(Relation rel)
{
	/* replicas must not keep rows that snapshot() no longer returns */
	if (!registry_table_is_synced(RelationGetRelid(rel)))
		not_synced(rel);
	lifecycle_retire_rows(rel);
	if (registry_delete(RelationGetRelid(rel)) == 0)
		not_synced(rel);
	/* a partitioned table's partitions' own truncate triggers (partition.c) */
	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		CommandCounterIncrement();
		partition_drop_truncate_triggers(RelationGetRelid(rel));
	}
}

Datum
para_sync_registry_write(PG_FUNCTION_ARGS)
{
	char	   *action;
	Relation	rel;
	Oid			relid;
	text	   *name = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	text	   *version = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("action and table must not be null")));
	action = text_to_cstring(PG_GETARG_TEXT_PP(0));
	rel = relation_open(PG_GETARG_OID(1), ShareRowExclusiveLock);
	registry_check_owner(rel);
	relid = RelationGetRelid(rel);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (strcmp(action, "insert") == 0)
	{
		if (name == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("sync name must not be null")));
		write_insert(rel, name, version,
						PG_ARGISNULL(4) ? PointerGetDatum(construct_empty_array(TEXTOID))
						: PG_GETARG_DATUM(4));
	}
	else if (strcmp(action, "update") == 0)
		write_set_version(rel, version);
	else if (strcmp(action, "delete") == 0)
		write_delete(rel);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown registry action \"%s\"", action)));
	relation_close(rel, NoLock);
	if (strcmp(action, "insert") == 0)
		install_capture_triggers(relid);
	SPI_finish();
	if (name == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(name);
}

/*
 * set_subject_layout(tbl, layout): the subjects of the table's envelopes
 * from now on ('key': <prefix>.<key>, 'table': <prefix>.<sync name>.<key>;
 * docs/protocol.md, "Subjects").  Each envelope keeps the layout its change
 * was captured under: the lock below orders the switch with the table's
 * writers, and the outbox row carries the layout (outbox_append.c).
 */
Datum
para_sync_set_subject_layout(PG_FUNCTION_ARGS)
{
	Relation	rel;
	char	   *layout;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table and subject layout must not be null"),
				 errhint("The subject layout is 'key' or 'table'.")));
	layout = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strcmp(layout, "key") != 0 && strcmp(layout, "table") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid subject layout \"%s\"", layout),
				 errhint("The subject layout is 'key' (<prefix>.<key>) or 'table' (<prefix>.<sync name>.<key>).")));
	rel = relation_open(PG_GETARG_OID(0), ShareRowExclusiveLock);
	registry_check_owner(rel);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (registry_set_layout(RelationGetRelid(rel), PG_GETARG_DATUM(1)) == 0)
		not_synced(rel);
	SPI_finish();
	/* every backend reloads the registration before its next capture */
	CacheInvalidateRelcache(rel);
	relation_close(rel, NoLock);
	PG_RETURN_VOID();
}
