/*
 * ddl_guard_drop.c — the DDL guard and DROP (ddl_guard.c says why).
 *
 * At ddl_command_start: DROP TRIGGER of para_sync's trigger and DROP INDEX
 * of the primary key of a synced table are refused, and DROP EXTENSION /
 * DROP SCHEMA para_sync while tables are synced or envelopes unpublished
 * (with a warning that every object's last sequence goes; the outbox and
 * the counters are counted by outbox_backlog.c).  At sql_drop: a
 * dropped excluded column leaves the exclusion list, a dropped synced
 * column bumps schema_version, and a drop that took the primary key or a
 * scope column (scope.c) with it is refused.  (Dropping whole synced tables is lifecycle.c's.)
 */
#include "ddl_guard.h"

#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/syscache.h"

/* ------------------------------------------------------------------------
 * DROP statements (ddl_command_start)
 * ------------------------------------------------------------------------ */

/* The table and last name of a qualified "schema.table.object" list. */
static Oid
owner_table(List *names, char **object)
{
	List	   *relname = list_copy(names);

	*object = strVal(llast(names));
	relname = list_truncate(relname, list_length(relname) - 1);
	if (relname == NIL)
		return InvalidOid;
	return ddl_guard_resolve(makeRangeVarFromNameList(relname));
}

/* DROP EXTENSION / DROP SCHEMA para_sync */
static void
guard_drop_extension(void)
{
	int64		tables,
				counters;
	bool		backlog;

	if (!OidIsValid(get_extension_oid("para_sync", true)))
		return;
	tables = registry_count();
	outbox_backlog_at_drop(&backlog, &counters);
	if (tables > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop extension para_sync while %lld tables are synced", (long long) tables),
				 errdetail("Their changes would stop being captured and every object's sequence would restart at 1, which clients ignore as stale."),
				 errhint("Call para_sync.unsync_table() for each table in para_sync.synced_tables first.")));
	if (backlog)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("cannot drop extension para_sync while envelopes are unpublished"),
				 errdetail("para_sync.outbox still holds envelopes that no client has received."),
				 errhint("Let the publisher drain the outbox (see para_sync.status) first.")));
	/* (objects only: a sync name's own counter numbers its table events) */
	if (counters > 0)
		ereport(WARNING,
				(errmsg("dropping para_sync discards the last sequence of %lld objects", (long long) counters),
				 errdetail("If para_sync is created again, every object starts again at sequence 1 and clients ignore those envelopes as stale."),
				 errhint("Rebuild every client replica from snapshots after re-creating the extension.")));
}

/* DROP TRIGGER of para_sync's trigger on a synced table */
static void
guard_drop_trigger(List *names)
{
	char	   *trigger;
	Oid			relid = owner_table(names, &trigger);

	if (OidIsValid(relid) && registry_has(relid) && ddl_guard_is_para_sync_trigger(relid, trigger))
		ddl_guard_refuse_trigger_change(relid, trigger, "drop");
}

/* DROP INDEX of a synced table's primary key */
static void
guard_drop_index(List *names)
{
	Oid			index = ddl_guard_resolve(makeRangeVarFromNameList(names));
	Oid			relid = OidIsValid(index) ? IndexGetRelation(index, true) : InvalidOid;
	Oid			pk;

	if (OidIsValid(relid) && registry_has(relid) &&
		ddl_guard_primary_key_of(relid, NULL, &pk, NULL) && pk == index)
		ddl_guard_refuse_key_change(relid, "drop the primary key");
}

/* ddl_command_start of DROP (tables: lifecycle.c) */
void
ddl_guard_drop(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType == OBJECT_EXTENSION || stmt->removeType == OBJECT_SCHEMA)
	{
		foreach(lc, stmt->objects)
			if (strcmp(strVal(lfirst(lc)), "para_sync") == 0)
				guard_drop_extension();
		return;
	}
	foreach(lc, stmt->objects)
	{
		if (stmt->removeType == OBJECT_TRIGGER)
			guard_drop_trigger(lfirst_node(List, lc));
		else if (stmt->removeType == OBJECT_INDEX)
			guard_drop_index(lfirst_node(List, lc));
	}
}

/* ------------------------------------------------------------------------
 * sql_drop: dropped columns of synced tables
 * ------------------------------------------------------------------------ */

static void
column_dropped(Oid relid, const char *column)
{
	Registration *reg = registry_get(relid);

	if (reg == NULL)
		return;
	/* a DROP TYPE/DOMAIN/COLLATION ... CASCADE took a scope column with it */
	scope_guard_column(relid, column, "drop");
	if (!ddl_guard_primary_key_of(relid, NULL, NULL, NULL))
		ddl_guard_refuse_key_change(relid, "drop the primary key");
	if (ddl_guard_names_contain(reg->excluded, column))
		registry_update(relid, reg->schema_version, ddl_guard_names_replace(reg->excluded, column, NULL));
	else
		ddl_guard_bump_schema_version(relid, reg);
}

void
ddl_guard_sql_drop(void)
{
	int			n;
	Oid		   *relids;
	char	  **columns;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT d.objid, d.address_names[pg_catalog.array_upper(d.address_names, 1)]"
					" FROM pg_catalog.pg_event_trigger_dropped_objects() d"
					" WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
					"   AND d.objsubid OPERATOR(pg_catalog.>) 0", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the dropped objects");
	n = SPI_processed;
	relids = palloc(sizeof(Oid) * (n + 1));
	columns = palloc(sizeof(char *) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		columns[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
	}
	for (int i = 0; i < n; i++)
		if (columns[i] != NULL && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relids[i])))
			column_dropped(relids[i], columns[i]);
	SPI_finish();
}
