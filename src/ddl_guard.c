/*
 * ddl_guard.c — event triggers that keep synced tables capturable and
 * para_sync's own tables intact across DDL.
 *
 * One C function, para_sync.ddl_guard(), serves three event triggers:
 *
 *   ddl_command_start  refuses, from the parse tree and before anything
 *                      changes, DDL that would let row changes of a synced
 *                      table go unpublished or change what its keys mean:
 *                      disabling, re-firing, renaming, replacing or
 *                      dropping para_sync's triggers, making them depend on
 *                      an extension (dropped with it), or adding a second
 *                      one; dropping or retyping
 *                      primary-key columns or the primary key; SET UNLOGGED;
 *                      moving the table into schema para_sync; renaming
 *                      a label of an enum, or adding or dropping an
 *                      attribute of a composite type, that a synced column
 *                      prints.  Also DDL on
 *                      para_sync's internal tables (the capture path writes
 *                      their heap and primary key directly and would not
 *                      maintain an added index or fire an added trigger),
 *                      and DROP EXTENSION / DROP SCHEMA para_sync while
 *                      tables are synced or envelopes are unpublished.
 *   ddl_command_end    follows column changes: a renamed excluded column
 *                      stays excluded under its new name; a column added,
 *                      retyped or renamed in the envelope bumps the table's
 *                      schema_version ("3" -> "3+1" -> "3+2") and appends
 *                      the table's reload event (table_event.c); a
 *                      deferrable primary key, and a synced column added or
 *                      retyped to a type printing catalog names
 *                      (type_trust.c), are refused.
 *   sql_drop           a dropped excluded column leaves the exclusion list
 *                      (a new column of that name is synced); a dropped
 *                      synced column bumps schema_version (and appends the
 *                      reload event); a drop that took
 *                      the primary key with it is refused.
 *
 * The guard decides by the registry (para_sync.tables, read and updated
 * through registry.c's registry_get()/registry_has()/registry_update()) and
 * only for tables the caller owns (others get PostgreSQL's own ownership
 * error).
 * para_sync's own trigger DDL never trips it: sync_table() creates the
 * triggers (never refused; a fresh table has none to drop) and makes the
 * capture trigger ALWAYS, unsync_table() unregisters the table before
 * dropping them, and pg_restore re-creates them under their own
 * "para_sync_" names.  Nothing is checked while an
 * extension script runs (creating_extension).  Event triggers do not fire in
 * single-user mode and a superuser can disable them: the guard protects
 * against mistakes, not against a superuser determined to bypass it.
 *
 * The family (declarations in ddl_guard.h):
 *
 *   ddl_guard.c        the entry point and what the events share: the
 *                      schema_version bump, exclusion lists, primary key and
 *                      trigger look-ups, the refusals' wording
 *   ddl_guard_start.c  ddl_command_start: ALTER TABLE, triggers, renames,
 *                      para_sync's internal tables
 *   ddl_guard_types.c  ddl_command_start of ALTER TYPE: enum labels and
 *                      composite types that synced columns print
 *   ddl_guard_drop.c   DROP TRIGGER / INDEX / EXTENSION / SCHEMA
 *                      (ddl_command_start) and sql_drop's dropped columns
 *   ddl_guard_alter.c  ddl_command_end: column changes of ALTER TABLE
 */
#include "ddl_guard.h"

#include "access/genam.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(para_sync_ddl_guard);

/* Tables whose schema_version the current command already bumped. */
static List *bumped_in_command = NIL;

/* Is para_sync installed and its registry readable?  (Not during DROP.) */
Oid
ddl_guard_namespace(void)
{
	return get_namespace_oid("para_sync", true);
}

/* ------------------------------------------------------------------------
 * Column-name lists (exclusions, scope columns) and schema_version (read
 * through registry.c)
 * ------------------------------------------------------------------------ */

/* Is column in names (a registry text[] of column names, or NULL)? */
bool
ddl_guard_names_contain(ArrayType *names_array, const char *column)
{
	Datum	   *names;
	int			n;

	if (names_array == NULL)
		return false;
	deconstruct_array(names_array, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n);
	for (int i = 0; i < n; i++)
		if (strcmp(TextDatumGetCString(names[i]), column) == 0)
			return true;
	return false;
}

/* names (a registry text[] of column names) with old renamed to new_name (or removed if NULL). */
ArrayType *
ddl_guard_names_replace(ArrayType *names_array, const char *old, const char *new_name)
{
	Datum	   *names;
	Datum	   *out;
	int			n,
				m = 0;

	deconstruct_array(names_array, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n);
	out = palloc(sizeof(Datum) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		if (strcmp(TextDatumGetCString(names[i]), old) != 0)
			out[m++] = names[i];
		else if (new_name != NULL)
			out[m++] = CStringGetTextDatum(new_name);
	}
	return construct_array(out, m, TEXTOID, -1, false, TYPALIGN_INT);
}

/* "3" -> "3+1", "3+1" -> "3+2". */
static char *
bumped_version(const char *version)
{
	const char *plus = strrchr(version, '+');
	long		generation = 0;

	if (plus != NULL && plus[1] != '\0' && strspn(plus + 1, "0123456789") == strlen(plus + 1) &&
		strlen(plus + 1) < 10)
		generation = strtol(plus + 1, NULL, 10);
	else
		plus = version + strlen(version);
	return psprintf("%.*s+%ld", (int) (plus - version), version, generation + 1);
}

/*
 * Bump the schema_version of synced table relid, once per command, and
 * append the table's reload event (table_event.c): the command changed what
 * snapshot() returns for every row without a row change.
 */
void
ddl_guard_bump_schema_version(Oid relid, Registration *reg)
{
	char	   *version;

	if (list_member_oid(bumped_in_command, relid))
		return;
	version = bumped_version(reg->schema_version);
	if (strlen(version) > PSYNC_MAX_SCHEMA_VERSION_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("schema_version of synced table \"%s\" would exceed %d bytes",
						get_rel_name(relid), PSYNC_MAX_SCHEMA_VERSION_LEN),
				 errdetail("This change of its columns bumps it to \"%s...\".",
						   pnstrdup(version, 32)),
				 errhint("Call para_sync.set_schema_version() with a shorter version first.")));
	registry_update(relid, version, reg->excluded);
	reg->schema_version = version;
	table_event_reload(reg->sync_name, version, reg->layout);
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		bumped_in_command = lappend_oid(bumped_in_command, relid);
		MemoryContextSwitchTo(old);
	}
	ereport(NOTICE,
			(errmsg("schema_version of synced table \"%s\" is now \"%s\"",
					get_rel_name(relid), version),
			 errdetail("The columns its envelopes carry changed."),
			 errhint("Call para_sync.set_schema_version() to choose a version of your own.")));
}

/* ------------------------------------------------------------------------
 * Catalog look-ups
 * ------------------------------------------------------------------------ */

/* relid and, when recursing, every table that inherits from it. */
List *
ddl_guard_with_descendants(Oid relid, bool recurse)
{
	if (!recurse || !OidIsValid(relid))
		return list_make1_oid(relid);
	return find_all_inheritors(relid, NoLock, NULL);
}

/* The primary-key constraint's tuple fields of relid; false if none. */
bool
ddl_guard_primary_key_of(Oid relid, char **conname, Oid *index, bool *deferrable)
{
	Relation	rel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	ScanKeyInit(&key, Anum_pg_constraint_conrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, ConstraintRelidTypidNameIndexId, true, NULL, 1, &key);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);

		if (con->contype != CONSTRAINT_PRIMARY)
			continue;
		if (conname)
			*conname = pstrdup(NameStr(con->conname));
		if (index)
			*index = con->conindid;
		if (deferrable)
			*deferrable = con->condeferrable;
		found = true;
		break;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* Is trigger name on relid one of para_sync's (its function is ours)? */
bool
ddl_guard_is_para_sync_trigger(Oid relid, const char *name)
{
	Relation	rel;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			func = InvalidOid;
	Oid			ext = get_extension_oid("para_sync", true);

	if (!OidIsValid(ext))
		return false;
	rel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(name));
	scan = systable_beginscan(rel, TriggerRelidNameIndexId, true, NULL, 2, keys);
	if ((tup = systable_getnext(scan)) != NULL)
		func = ((Form_pg_trigger) GETSTRUCT(tup))->tgfoid;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return OidIsValid(func) && getExtensionOfObject(ProcedureRelationId, func) == ext;
}

/* The relation rv names, or InvalidOid (no lock: the command takes its own). */
Oid
ddl_guard_resolve(RangeVar *rv)
{
	if (rv == NULL)
		return InvalidOid;
	return RangeVarGetRelid(rv, NoLock, true);
}

/* ------------------------------------------------------------------------
 * Refusals shared by the events
 * ------------------------------------------------------------------------ */

void
ddl_guard_refuse_trigger_change(Oid relid, const char *trigger, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s trigger \"%s\" of synced table \"%s\"", what, trigger,
					get_rel_name(relid)),
			 errdetail("It captures every row change of the table; it stays ENABLE ALWAYS while the table is synced."),
			 errhint("%s", "Call para_sync.unsync_table() first if the table should stop being synced.")));
}

void
ddl_guard_refuse_key_change(Oid relid, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s of synced table \"%s\"", what, get_rel_name(relid)),
			 errdetail("Object keys are made of the primary key; changing it would retire keys without publishing their deletion."),
			 errhint("%s", UNSYNC_HINT)));
}

/* ------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------ */

Datum
para_sync_ddl_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.ddl_guard() must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (creating_extension || !OidIsValid(ddl_guard_namespace()))
		PG_RETURN_VOID();

	if (strcmp(trigdata->event, "ddl_command_start") == 0)
	{
		list_free(bumped_in_command);
		bumped_in_command = NIL;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ddl_guard_command_start(trigdata->parsetree);
		SPI_finish();
	}
	else if (strcmp(trigdata->event, "ddl_command_end") == 0)
	{
		if (trigdata->tag == CMDTAG_ALTER_TABLE)
			ddl_guard_command_end();
	}
	else if (strcmp(trigdata->event, "sql_drop") == 0)
		ddl_guard_sql_drop();
	PG_RETURN_VOID();
}
