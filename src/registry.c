/*
 * registry.c — the registry: every statement on para_sync.tables and
 * para_sync.sync_names, run as the extension owner (catalog.c).
 *
 * First the writes behind sync_table(), set_schema_version(),
 * set_subject_layout() and unsync_table(), whose SQL functions and checks
 * are registry_write.c's.  Then the registry's reads and writes for the
 * rest of the extension, each section headed by its users: the DDL guard
 * (ddl_guard*.c), DROP TABLE and TRUNCATE (lifecycle.c), snapshot(), DROP
 * EXTENSION, the capture trigger's cache (table_cache.c, with a prepared
 * plan re-planned when the registry or the outbox is altered), the
 * sql_drop check of dropped tables (lifecycle.c), and the sync names'
 * owners (sync_names.c decides, these functions read and write).
 *
 * A leaf of the registry's modules: it calls none of registry_write.c,
 * registry_check.c, sync_names.c or lifecycle.c, which call it.
 */
#include "para_sync.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

/* ---- writes: sync_table(), set_schema_version(), set_subject_layout(), unsync_table() (registry_write.c) */

/*
 * Run sql with args as the extension owner; returns SPI_processed.  Any
 * result but expect (an SPI_OK_ code) is an error.  Caller is in SPI.
 */
static uint64
run_as_owner_nulls(const char *sql, int nargs, Oid *types, Datum *args,
				   const char *nulls, int expect)
{
	int			rc = catalog_execute_as_owner(sql, nargs, types, args, nulls);

	if (rc != expect)
		elog(ERROR, "para_sync registry statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/* The same without NULL arguments. */
static uint64
run_as_owner(const char *sql, int nargs, Oid *types, Datum *args, int expect)
{
	return run_as_owner_nulls(sql, nargs, types, args, NULL, expect);
}

/* Is relid in para_sync.tables?  Caller is connected to SPI. */
bool
registry_relid_taken(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};

	return run_as_owner("SELECT 1 FROM para_sync.tables WHERE relid OPERATOR(pg_catalog.=) $1",
						1, types, args, SPI_OK_SELECT) > 0;
}

/* Is a table synced under name?  Caller is connected to SPI. */
bool
registry_name_taken(text *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {PointerGetDatum(name)};

	return run_as_owner("SELECT 1 FROM para_sync.tables WHERE sync_name OPERATOR(pg_catalog.=) $1",
						1, types, args, SPI_OK_SELECT) > 0;
}

/* sync_table()'s row.  Caller is connected to SPI. */
void
registry_insert(Oid relid, text *name, text *version, Datum excluded)
{
	Oid			types[4] = {OIDOID, TEXTOID, TEXTOID, TEXTARRAYOID};
	Datum		args[4];

	args[0] = ObjectIdGetDatum(relid);
	args[1] = PointerGetDatum(name);
	args[2] = PointerGetDatum(version);
	args[3] = excluded;
	run_as_owner("INSERT INTO para_sync.tables (relid, sync_name, schema_version, exclude_columns)"
				 " VALUES ($1, $2, $3, $4)", 4, types, args, SPI_OK_INSERT);
}

/* set_schema_version(); returns the rows updated (0: not synced).  In SPI. */
uint64
registry_set_version(Oid relid, text *version)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		args[2];

	args[0] = ObjectIdGetDatum(relid);
	args[1] = PointerGetDatum(version);
	return run_as_owner("UPDATE para_sync.tables SET schema_version = $2"
						" WHERE relid OPERATOR(pg_catalog.=) $1", 2, types, args,
						SPI_OK_UPDATE);
}

/* set_subject_layout(); returns the rows updated (0: not synced).  In SPI. */
uint64
registry_set_layout(Oid relid, Datum layout)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		args[2];

	args[0] = ObjectIdGetDatum(relid);
	args[1] = layout;
	return run_as_owner("UPDATE para_sync.tables SET subject_layout = $2"
						" WHERE relid OPERATOR(pg_catalog.=) $1", 2, types, args,
						SPI_OK_UPDATE);
}

/*
 * set_scope() and the DDL guard's renames (scope.c): columns is text[] or
 * NULL; returns the rows updated.  In SPI.
 */
uint64
registry_set_scope(Oid relid, Datum columns, bool isnull)
{
	Oid			types[2] = {OIDOID, TEXTARRAYOID};
	Datum		args[2];
	char		nulls[2] = {' ', isnull ? 'n' : ' '};

	args[0] = ObjectIdGetDatum(relid);
	args[1] = columns;
	return run_as_owner_nulls("UPDATE para_sync.tables SET scope_columns = $2"
							  " WHERE relid OPERATOR(pg_catalog.=) $1", 2, types, args,
							  nulls, SPI_OK_UPDATE);
}

/* unsync_table()'s delete; returns the rows deleted (0: not synced).  In SPI. */
uint64
registry_delete(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};

	return run_as_owner("DELETE FROM para_sync.tables WHERE relid OPERATOR(pg_catalog.=) $1",
						1, types, args, SPI_OK_DELETE);
}

/* ---- reading the registry (the DDL guard, DROP TABLE, TRUNCATE, snapshot(), DROP EXTENSION) */

static SPIPlanPtr synced_plan = NULL;
static SPIPlanPtr table_by_name_plan = NULL;

/* The relids of every synced table, into *n.  Caller is connected to SPI. */
Oid *
registry_synced_relids(uint64 *n)
{
	OwnerSwitch sw;
	int			rc;
	Oid		   *relids;

	catalog_become_owner(&sw);
	rc = SPI_execute("SELECT t.relid::pg_catalog.oid FROM para_sync.tables t", true, 0);
	catalog_restore_user(&sw);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync registry read failed: %s", SPI_result_code_string(rc));
	*n = SPI_processed;
	relids = palloc(sizeof(Oid) * (*n + 1));
	for (uint64 i = 0; i < *n; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 1, &isnull));
	}
	return relids;
}

/* registry_foreach_synced(): see para_sync.h */
void
registry_foreach_synced(registry_table_fn fn, void *arg)
{
	uint64		n;
	Oid		   *relids = registry_synced_relids(&n);

	for (uint64 i = 0; i < n; i++)
	{
		Relation	rel = try_relation_open(relids[i], AccessShareLock);
		Registration *reg = rel ? registry_get(relids[i]) : NULL;

		CHECK_FOR_INTERRUPTS();
		if (reg != NULL)
			fn(rel, reg, arg);
		if (rel != NULL)
			relation_close(rel, AccessShareLock);
	}
	pfree(relids);
}

/* Does para_sync.tables exist (it does not while DROP EXTENSION runs)? */
bool
registry_exists(void)
{
	Oid			nsp = get_namespace_oid("para_sync", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("tables", nsp));
}

/* How many tables are synced (DROP EXTENSION).  Caller is connected to SPI. */
int64
registry_count(void)
{
	bool		isnull;

	run_as_owner("SELECT pg_catalog.count(*) FROM para_sync.tables", 0, NULL, NULL,
				 SPI_OK_SELECT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}

/*
 * Is relid in the registry as of snapshot (InvalidSnapshot: the current
 * one)?  Read as the extension owner.
 */
bool
registry_table_is_synced_in(Oid relid, Snapshot snapshot)
{
	Datum		arg = ObjectIdGetDatum(relid);
	OwnerSwitch sw;
	int			rc;
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (synced_plan == NULL)
	{
		Oid			types[1] = {OIDOID};
		SPIPlanPtr	plan = SPI_prepare("SELECT 1 FROM para_sync.tables t"
									   " WHERE t.relid OPERATOR(pg_catalog.=) $1",
									   1, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare para_sync registry look-up");
		synced_plan = plan;
	}
	catalog_become_owner(&sw);
	rc = SPI_execute_snapshot(synced_plan, &arg, NULL, snapshot, InvalidSnapshot,
							  true, false, 1);
	catalog_restore_user(&sw);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync registry look-up failed: %s", SPI_result_code_string(rc));
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * The snapshot the registry is read with for the capture: a fresh one, see
 * registry_table_is_synced() and registry_lookup().  In parallel mode (a
 * parallel query calling snapshot(), which is PARALLEL RESTRICTED: it runs
 * in the leader) no fresh snapshot may be taken and nothing is written:
 * the query's own.  table_cache.c keeps an entry built then for parallel
 * mode only.
 */
static Snapshot
registry_snapshot(void)
{
	return IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot();
}

/*
 * Is relid synced now?  Read with a fresh snapshot, as table_cache.c reads
 * the registry: the caller holds a lock that keeps sync_table() and
 * unsync_table() of the table out, and a tagging that committed while it
 * waited for that lock counts, whatever the transaction's snapshot.
 */
bool
registry_table_is_synced(Oid relid)
{
	return registry_table_is_synced_in(relid, registry_snapshot());
}

/*
 * The statement reading relid's ($1) registry row for registration_read(),
 * for the registry's version: one without subject_layout (0.1, before the
 * update) is all 'key'; one without scope_columns (0.3) has no scopes.
 */
static const char *
registration_select(Oid registry)
{
	if (get_attnum(registry, "scope_columns") != InvalidAttrNumber)
		return "SELECT t.schema_version, t.exclude_columns, t.sync_name,"
			" t.subject_layout OPERATOR(pg_catalog.=) 'table', t.scope_columns"
			" FROM para_sync.tables t WHERE t.relid OPERATOR(pg_catalog.=) $1";
	if (get_attnum(registry, "subject_layout") != InvalidAttrNumber)
		return "SELECT t.schema_version, t.exclude_columns, t.sync_name,"
			" t.subject_layout OPERATOR(pg_catalog.=) 'table'"
			" FROM para_sync.tables t WHERE t.relid OPERATOR(pg_catalog.=) $1";
	return "SELECT t.schema_version, t.exclude_columns, t.sync_name, false"
		" FROM para_sync.tables t WHERE t.relid OPERATOR(pg_catalog.=) $1";
}

/*
 * A registry row (schema_version, exclude_columns, sync_name, is 'table'
 * [, scope_columns]), copied into cxt.
 */
static Registration *
registration_read(HeapTuple row, TupleDesc desc, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Registration *reg = palloc(sizeof(Registration));
	bool		isnull;

	reg->schema_version = TextDatumGetCString(SPI_getbinval(row, desc, 1, &isnull));
	reg->excluded = DatumGetArrayTypePCopy(SPI_getbinval(row, desc, 2, &isnull));
	reg->sync_name = TextDatumGetCString(SPI_getbinval(row, desc, 3, &isnull));
	reg->layout = DatumGetBool(SPI_getbinval(row, desc, 4, &isnull)) ?
		PSYNC_LAYOUT_TABLE : PSYNC_LAYOUT_KEY;
	/* scope columns (0.4; NULL: none) imply per-table subjects (scope.c) */
	reg->scope_columns = NULL;
	if (desc->natts >= 5)
	{
		Datum		scope = SPI_getbinval(row, desc, 5, &isnull);

		if (!isnull)
		{
			reg->scope_columns = DatumGetArrayTypePCopy(scope);
			reg->layout = PSYNC_LAYOUT_TABLE;
		}
	}
	MemoryContextSwitchTo(old);
	return reg;
}

/*
 * The registry row of relid, or NULL (the DDL guard, ddl_guard*.c, and
 * type_trust.c).  Caller is connected to SPI.
 */
Registration *
registry_get(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	OwnerSwitch sw;
	int			rc;
	Oid			registry = get_relname_relid("tables", get_namespace_oid("para_sync", true));

	catalog_become_owner(&sw);
	rc = SPI_execute_with_args(registration_select(registry), 1, types, args, NULL, false, 1);
	catalog_restore_user(&sw);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync registry look-up failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return NULL;
	return registration_read(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							 CurTransactionContext);
}

/*
 * Is relid synced, and would the command get past PostgreSQL's own
 * ownership check?  (Others get PostgreSQL's "must be owner" error.)
 */
bool
registry_has(Oid relid)
{
	/* (inheritors are listed without locks: one may be gone by now) */
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)) ||
		!pg_class_ownercheck(relid, GetUserId()))
		return false;
	return registry_get(relid) != NULL;
}

void
registry_update(Oid relid, const char *schema_version, ArrayType *excluded)
{
	Oid			types[3] = {OIDOID, TEXTOID, TEXTARRAYOID};
	Datum		args[3];
	OwnerSwitch sw;
	int			rc;

	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(schema_version);
	args[2] = PointerGetDatum(excluded);
	catalog_become_owner(&sw);
	rc = SPI_execute_with_args("UPDATE para_sync.tables SET schema_version = $2, exclude_columns = $3"
							   " WHERE relid OPERATOR(pg_catalog.=) $1",
							   3, types, args, NULL, false, 0);
	catalog_restore_user(&sw);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "para_sync registry update failed: %s", SPI_result_code_string(rc));
	/* every backend rebuilds its table cache entry */
	CacheInvalidateRelcacheByRelid(relid);
}

/* The table registered under sync_name, or InvalidOid (snapshot()). */
Oid
registry_table_by_name(const char *sync_name, int len)
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
	catalog_become_owner(&sw);
	rc = SPI_execute_plan(table_by_name_plan, &arg, NULL, true, 1);
	catalog_restore_user(&sw);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync registry look-up failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
		relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	return relid;
}

/* ---- the capture trigger's look-up (table_cache.c) */

static SPIPlanPtr lookup_plan = NULL;
static Oid	lookup_plan_registry = InvalidOid;	/* para_sync.tables, when planned */
static Oid	lookup_plan_outbox = InvalidOid;	/* para_sync.outbox, when planned */
static bool lookup_plan_stale = false;	/* either was altered */

static void
registry_relcache_callback(Datum arg, Oid relid)
{
	if (relid == lookup_plan_registry || relid == lookup_plan_outbox || !OidIsValid(relid))
		lookup_plan_stale = true;
}

/* Called from _PG_init. */
void
registry_init(void)
{
	CacheRegisterRelcacheCallback(registry_relcache_callback, (Datum) 0);
}

/*
 * The look-up's plan, for the registry's version (registration_select());
 * an ALTER of the registry or the outbox (the update adding the columns)
 * makes us plan again.
 */
static SPIPlanPtr
registry_lookup_plan(void)
{
	Oid			types[1] = {OIDOID};

	if (lookup_plan != NULL && !lookup_plan_stale)
		return lookup_plan;
	if (lookup_plan != NULL)
		SPI_freeplan(lookup_plan);
	lookup_plan = NULL;
	lookup_plan_stale = false;
	lookup_plan_registry = get_relname_relid("tables", get_namespace_oid("para_sync", false));
	lookup_plan_outbox = outbox_relations()->outbox;
	lookup_plan = SPI_prepare(registration_select(lookup_plan_registry), 1, types);
	if (lookup_plan == NULL || SPI_keepplan(lookup_plan) != 0)
		elog(ERROR, "could not prepare para_sync registry look-up");
	return lookup_plan;
}

/*
 * The registry row of relid as the capture trigger's cache reads it, or
 * NULL; allocated in the caller's memory context.  Caller is connected to
 * SPI.
 */
Registration *
registry_lookup(Oid relid)
{
	Datum		arg = ObjectIdGetDatum(relid);
	SPIPlanPtr	plan = registry_lookup_plan();
	OwnerSwitch sw;
	int			rc;

	catalog_become_owner(&sw);
	/*
	 * A fresh snapshot, as for sequences: a REPEATABLE READ writer must see
	 * the registry as of the catalogs it was just invalidated by (e.g. an
	 * excluded column renamed by a transaction that committed after its
	 * snapshot was taken).
	 */
	rc = SPI_execute_snapshot(plan, &arg, NULL, registry_snapshot(),
							  InvalidSnapshot, true, false, 1);
	catalog_restore_user(&sw);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync registry look-up failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		return NULL;
	return registration_read(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							 CurrentMemoryContext);
}

/* ---- synced tables among the dropped objects (lifecycle.c) */

static SPIPlanPtr dropped_plan = NULL;

/*
 * The synced tables an sql_drop event trigger's command dropped, as a List
 * of DroppedTable.  Read with a fresh snapshot: a table tagged while the
 * drop waited for its lock counts.  Caller is connected to SPI.
 */
List *
registry_dropped_tables(void)
{
	OwnerSwitch sw;
	int			rc;
	List	   *dropped = NIL;

	if (dropped_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(
			"SELECT d.original, d.object_identity, t.sync_name"
			"  FROM pg_catalog.pg_event_trigger_dropped_objects() d"
			"  JOIN para_sync.tables t"
			"    ON t.relid OPERATOR(pg_catalog.=) d.objid"
			" WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
			"   AND d.objsubid OPERATOR(pg_catalog.=) 0", 0, NULL);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare para_sync dropped-table look-up");
		dropped_plan = plan;
	}
	catalog_become_owner(&sw);
	rc = SPI_execute_snapshot(dropped_plan, NULL, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 0);
	catalog_restore_user(&sw);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync dropped-table look-up failed: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		DroppedTable *table = palloc(sizeof(DroppedTable));
		bool		isnull;

		table->original = DatumGetBool(SPI_getbinval(row, desc, 1, &isnull));
		table->identity = SPI_getvalue(row, desc, 2);
		table->sync_name = SPI_getvalue(row, desc, 3);
		dropped = lappend(dropped, table);
	}
	return dropped;
}

/* ---- para_sync.sync_names: who owns a sync name (sync_names.c) */

/* The owner oid in the first row of the last statement's result. */
static Oid
result_owner(void)
{
	bool		isnull;

	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Claim sync_name for table_owner unless it is claimed already; returns the
 * name's owner.  The claim row stays locked (FOR SHARE) to the end of the
 * transaction.  Caller is connected to SPI.
 */
Oid
registry_sync_name_claim(const char *sync_name, Oid table_owner)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		args[2];

	args[0] = CStringGetTextDatum(sync_name);
	args[1] = ObjectIdGetDatum(table_owner);
	run_as_owner("INSERT INTO para_sync.sync_names (sync_name, owner)"
				 " VALUES ($1, $2::pg_catalog.regrole)"
				 " ON CONFLICT (sync_name) DO NOTHING",
				 2, types, args, SPI_OK_INSERT);
	if (run_as_owner("SELECT n.owner::pg_catalog.oid FROM para_sync.sync_names n"
					 " WHERE n.sync_name OPERATOR(pg_catalog.=) $1 FOR SHARE",
					 1, types, args, SPI_OK_SELECT) != 1)
		elog(ERROR, "sync name \"%s\" vanished while it was claimed", sync_name);
	return result_owner();
}

/*
 * Delete the claim on sync_name (waiting for a concurrent claim to commit);
 * returns its owner, InvalidOid if it was not claimed.  Caller is connected
 * to SPI.
 */
Oid
registry_sync_name_release(const char *sync_name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(sync_name)};

	if (run_as_owner("DELETE FROM para_sync.sync_names n"
					 " WHERE n.sync_name OPERATOR(pg_catalog.=) $1"
					 " RETURNING n.owner::pg_catalog.oid",
					 1, types, args, SPI_OK_DELETE_RETURNING) != 1)
		return InvalidOid;
	return result_owner();
}

/*
 * Is a table synced under sync_name?  Read with a new snapshot, so a
 * tagging that release waited for counts.  Caller is connected to SPI.
 */
bool
registry_sync_name_in_use(const char *sync_name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(sync_name)};

	return run_as_owner("SELECT 1 FROM para_sync.tables t"
						" WHERE t.sync_name OPERATOR(pg_catalog.=) $1",
						1, types, args, SPI_OK_SELECT) > 0;
}

/*
 * The sync names role owns, in name order (a List of char *).  Caller is
 * connected to SPI.
 */
List *
registry_sync_names_of_role(Oid role)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(role)};
	uint64		n;
	List	   *names = NIL;

	n = run_as_owner("SELECT n.sync_name FROM para_sync.sync_names n"
					 " WHERE n.owner::pg_catalog.oid OPERATOR(pg_catalog.=) $1"
					 " ORDER BY n.sync_name",
					 1, types, args, SPI_OK_SELECT);
	for (uint64 i = 0; i < n; i++)
		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc, 1));
	return names;
}

/*
 * REASSIGN OWNED: the sync names of roles (oid[]) pass to new_owner.
 * Caller is connected to SPI.
 */
void
registry_sync_names_reassign(ArrayType *roles, Oid new_owner)
{
	Oid			types[2] = {OIDOID, OIDARRAYOID};
	Datum		args[2];

	args[0] = ObjectIdGetDatum(new_owner);
	args[1] = PointerGetDatum(roles);
	run_as_owner("UPDATE para_sync.sync_names n SET owner = $1::pg_catalog.regrole"
				 " WHERE n.owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($2)",
				 2, types, args, SPI_OK_UPDATE);
}

/*
 * DROP OWNED: the sync names of roles (oid[]) are released, but a name a
 * synced table still uses passes to that table's owner.  Caller is
 * connected to SPI.
 */
void
registry_sync_names_drop_owned(ArrayType *roles)
{
	Oid			types[1] = {OIDARRAYOID};
	Datum		args[1] = {PointerGetDatum(roles)};

	run_as_owner("UPDATE para_sync.sync_names n SET owner = c.relowner::pg_catalog.regrole"
				 " FROM para_sync.tables t, pg_catalog.pg_class c"
				 " WHERE t.sync_name OPERATOR(pg_catalog.=) n.sync_name"
				 "   AND c.oid OPERATOR(pg_catalog.=) t.relid::pg_catalog.oid"
				 "   AND n.owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1)",
				 1, types, args, SPI_OK_UPDATE);
	run_as_owner("DELETE FROM para_sync.sync_names n"
				 " WHERE n.owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1)",
				 1, types, args, SPI_OK_DELETE);
}
