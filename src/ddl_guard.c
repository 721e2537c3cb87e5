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
 */
#include "para_sync.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "parser/parse_type.h"
#include "tcop/deparse_utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(para_sync_ddl_guard);

#define UNSYNC_HINT "Call para_sync.unsync_table() first, make the change, then tag the table again with para_sync.sync_table()."

/* Tables whose schema_version the current command already bumped. */
static List *bumped_in_command = NIL;

/* ------------------------------------------------------------------------
 * Registry access (as the extension owner, with a fresh snapshot)
 * ------------------------------------------------------------------------ */

/* Is para_sync installed and its registry readable?  (Not during DROP.) */
static Oid
guard_namespace(void)
{
	return get_namespace_oid("para_sync", true);
}

static bool
is_excluded(Registration *reg, const char *column)
{
	Datum	   *names;
	int			n;

	deconstruct_array(reg->excluded, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n);
	for (int i = 0; i < n; i++)
		if (strcmp(TextDatumGetCString(names[i]), column) == 0)
			return true;
	return false;
}

/* reg's exclusion list with old renamed to new_name (or removed if NULL). */
static ArrayType *
excluded_replace(Registration *reg, const char *old, const char *new_name)
{
	Datum	   *names;
	Datum	   *out;
	int			n,
				m = 0;

	deconstruct_array(reg->excluded, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n);
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
static void
bump_schema_version(Oid relid, Registration *reg)
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
 * Catalog helpers
 * ------------------------------------------------------------------------ */

/* relid and, when recursing, every table that inherits from it. */
static List *
with_descendants(Oid relid, bool recurse)
{
	if (!recurse || !OidIsValid(relid))
		return list_make1_oid(relid);
	return find_all_inheritors(relid, NoLock, NULL);
}

/* The primary-key constraint's tuple fields of relid; false if none. */
static bool
primary_key_of(Oid relid, char **conname, Oid *index, bool *deferrable)
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

/* Is column name of relid part of its primary key? */
static bool
is_key_column_name(Oid relid, const char *name)
{
	Oid			index;
	AttrNumber	attnum = get_attnum(relid, name);
	HeapTuple	tup;
	bool		result = false;

	if (attnum == InvalidAttrNumber || !primary_key_of(relid, NULL, &index, NULL))
		return false;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(index));
	if (!HeapTupleIsValid(tup))
		return false;
	{
		Form_pg_index idx = (Form_pg_index) GETSTRUCT(tup);

		for (int i = 0; i < idx->indnkeyatts; i++)
			if (idx->indkey.values[i] == attnum)
				result = true;
	}
	ReleaseSysCache(tup);
	return result;
}

/* Is trigger name on relid one of para_sync's (its function is ours)? */
static bool
is_para_sync_trigger(Oid relid, const char *name)
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

static Oid
resolve(RangeVar *rv)
{
	if (rv == NULL)
		return InvalidOid;
	return RangeVarGetRelid(rv, NoLock, true);
}

/* ------------------------------------------------------------------------
 * ddl_command_start
 * ------------------------------------------------------------------------ */

static void
refuse_internal(Oid relid)
{
	Oid			nsp = guard_namespace();

	if (OidIsValid(relid) && OidIsValid(nsp) && get_rel_namespace(relid) == nsp)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot change para_sync's internal table \"%s\"", get_rel_name(relid)),
				 errdetail("The capture trigger writes para_sync's tables directly: added indexes, triggers, rules and policies would not be maintained."),
				 errhint("Only ALTER TABLE ... SET/RESET (storage parameters) is allowed; query para_sync.status and para_sync.synced_tables instead.")));
}

static void
refuse_trigger_change(Oid relid, const char *trigger, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s trigger \"%s\" of synced table \"%s\"", what, trigger,
					get_rel_name(relid)),
			 errdetail("It captures every row change of the table; it stays ENABLE ALWAYS while the table is synced."),
			 errhint("%s", "Call para_sync.unsync_table() first if the table should stop being synced.")));
}

static void
refuse_key_change(Oid relid, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s of synced table \"%s\"", what, get_rel_name(relid)),
			 errdetail("Object keys are made of the primary key; changing it would retire keys without publishing their deletion."),
			 errhint("%s", UNSYNC_HINT)));
}

static void
check_trigger_cmd(Oid relid, AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_EnableTrig:
		case AT_EnableReplicaTrig:
		case AT_DisableTrig:
			if (is_para_sync_trigger(relid, cmd->name))
				refuse_trigger_change(relid, cmd->name,
									  cmd->subtype == AT_DisableTrig ? "disable" : "change the firing mode of");
			break;
		case AT_EnableTrigAll:
		case AT_DisableTrigAll:
		case AT_EnableTrigUser:
		case AT_DisableTrigUser:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot %s all triggers of synced table \"%s\"",
							(cmd->subtype == AT_EnableTrigAll || cmd->subtype == AT_EnableTrigUser)
							? "enable" : "disable",
							get_rel_name(relid)),
					 errdetail("para_sync's capture trigger stays ENABLE ALWAYS while the table is synced; row changes made with it disabled would never be published."),
					 errhint("Enable or disable the table's other triggers by name, or call para_sync.unsync_table() first.")));
			break;
		default:
			break;
	}
}

/* One ALTER TABLE subcommand against synced table relid (top is the named table). */
static void
check_alter_cmd(Oid relid, bool top, Oid top_relid, AlterTableCmd *cmd)
{
	char	   *pkname;

	check_trigger_cmd(relid, cmd);
	switch (cmd->subtype)
	{
		case AT_DropConstraint:
		case AT_DropConstraintRecurse:
			if (primary_key_of(top_relid, &pkname, NULL, NULL) && strcmp(pkname, cmd->name) == 0)
				refuse_key_change(relid, "drop the primary key");
			break;
		case AT_AlterConstraint:
			if (primary_key_of(top_relid, &pkname, NULL, NULL) &&
				strcmp(pkname, castNode(Constraint, cmd->def)->conname) == 0)
				refuse_key_change(relid, "alter the primary key");
			break;
		case AT_DropColumn:
		case AT_DropColumnRecurse:
			if (is_key_column_name(relid, cmd->name))
				refuse_key_change(relid, psprintf("drop primary-key column \"%s\"", cmd->name));
			break;
		case AT_AlterColumnType:
			if (is_key_column_name(relid, cmd->name))
				refuse_key_change(relid, psprintf("change the type of primary-key column \"%s\"", cmd->name));
			break;
		case AT_SetUnLogged:
			if (top)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot make synced table \"%s\" unlogged", get_rel_name(relid)),
						 errdetail("Its rows would not survive a crash, but its published changes would."),
						 errhint("Call para_sync.unsync_table() first.")));
			break;
		default:
			break;
	}
}

static void
guard_alter_table(AlterTableStmt *stmt)
{
	Oid			relid = resolve(stmt->relation);
	ListCell   *lc;
	bool		only_options = true;

	if (!OidIsValid(relid))
		return;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype != AT_SetRelOptions && cmd->subtype != AT_ResetRelOptions)
			only_options = false;
	}
	if (!only_options)
		refuse_internal(relid);

	foreach(lc, with_descendants(relid, stmt->relation->inh))
	{
		Oid			target = lfirst_oid(lc);
		ListCell   *c;

		if (!registry_has(target))
			continue;
		foreach(c, stmt->cmds)
			check_alter_cmd(target, target == relid, relid, lfirst_node(AlterTableCmd, c));
	}
}

/* The table and last name of a qualified "schema.table.object" list. */
static Oid
owner_table(List *names, char **object)
{
	List	   *relname = list_copy(names);

	*object = strVal(llast(names));
	relname = list_truncate(relname, list_length(relname) - 1);
	if (relname == NIL)
		return InvalidOid;
	return resolve(makeRangeVarFromNameList(relname));
}

static void
guard_drop_extension(void)
{
	OwnerSwitch sw;
	int64		tables,
				backlog,
				counters;
	bool		isnull;

	if (!OidIsValid(get_extension_oid("para_sync", true)))
		return;
	tables = registry_count();
	become_internal_owner(&sw);
	if (SPI_execute("SELECT (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM para_sync.outbox LIMIT 1) o),"
					" (SELECT pg_catalog.count(*) FROM para_sync.counters c"
					"   WHERE pg_catalog.strpos(c.key, ':') OPERATOR(pg_catalog.>) 0)", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "para_sync outbox look-up failed");
	restore_user(&sw);
	backlog = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	counters = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

	if (tables > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop extension para_sync while %lld tables are synced", (long long) tables),
				 errdetail("Their changes would stop being captured and every object's sequence would restart at 1, which clients ignore as stale."),
				 errhint("Call para_sync.unsync_table() for each table in para_sync.synced_tables first.")));
	if (backlog > 0)
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

static void
guard_drop(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType == OBJECT_EXTENSION || stmt->removeType == OBJECT_SCHEMA)
	{
		foreach(lc, stmt->objects)
			if (strcmp(strVal(lfirst(lc)), "para_sync") == 0)
				guard_drop_extension();
		return;
	}
	if (stmt->removeType != OBJECT_TRIGGER && stmt->removeType != OBJECT_INDEX)
		return;
	foreach(lc, stmt->objects)
	{
		List	   *names = lfirst_node(List, lc);

		if (stmt->removeType == OBJECT_TRIGGER)
		{
			char	   *trigger;
			Oid			relid = owner_table(names, &trigger);

			if (OidIsValid(relid) && registry_has(relid) && is_para_sync_trigger(relid, trigger))
				refuse_trigger_change(relid, trigger, "drop");
		}
		else
		{
			Oid			index = resolve(makeRangeVarFromNameList(names));
			Oid			relid = OidIsValid(index) ? IndexGetRelation(index, true) : InvalidOid;
			Oid			pk;

			if (OidIsValid(relid) && registry_has(relid) &&
				primary_key_of(relid, NULL, &pk, NULL) && pk == index)
				refuse_key_change(relid, "drop the primary key");
		}
	}
}

/*
 * A second trigger running para_sync's functions on a synced table would
 * capture every change twice.  para_sync names its own triggers
 * "para_sync_..." (as pg_restore re-creates them).
 */
static void
check_trigger_function(Oid relid, CreateTrigStmt *stmt)
{
	Oid			func = LookupFuncName(stmt->funcname, 0, NULL, true);
	Oid			ext = get_extension_oid("para_sync", true);

	if (OidIsValid(func) && OidIsValid(ext) &&
		getExtensionOfObject(ProcedureRelationId, func) == ext &&
		strncmp(stmt->trigname, "para_sync_", strlen("para_sync_")) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot create trigger \"%s\" with para_sync's function on synced table \"%s\"",
						stmt->trigname, get_rel_name(relid)),
				 errdetail("para_sync.sync_table() installed the table's capture trigger; a second one would capture every change twice."),
				 errhint("Leave para_sync's triggers to para_sync.sync_table() and para_sync.unsync_table().")));
}

/*
 * Some ALTER TYPE commands change the text of stored values without changing
 * a row, so no capture trigger fires: renaming an enum label, and adding or
 * dropping an attribute of a composite type (its values print one field
 * more or less).  Refuse them while a synced column (of any table, whoever
 * owns it) prints the type.  what names the command, hint says what to do.
 */
static void
refuse_type_change(Oid type, const char *what, const char *hint)
{
	Oid		   *relids;
	uint64		n;

	relids = registry_synced_relids(&n);
	for (uint64 i = 0; i < n; i++)
	{
		Relation	rel = try_relation_open(relids[i], AccessShareLock);
		Registration *reg = rel ? registry_get(relids[i]) : NULL;
		TupleDesc	desc;

		if (reg == NULL)
		{
			if (rel)
				relation_close(rel, AccessShareLock);
			continue;
		}
		desc = RelationGetDescr(rel);
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);

			if (att->attisdropped || is_excluded(reg, NameStr(att->attname)) ||
				!type_prints_type(att->atttypid, type))
				continue;
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot %s of type %s while synced column \"%s\" of table \"%s\" uses it",
							what, format_type_be(type), NameStr(att->attname),
							RelationGetRelationName(rel)),
					 errdetail("It would change the stored values without capturing a change, so replicas would keep the old values under the same sequence."),
					 errhint("%s", hint)));
		}
		relation_close(rel, AccessShareLock);
	}
}

/*
 * ALTER TYPE ... ADD|DROP|ALTER|RENAME ATTRIBUTE ... CASCADE changes the
 * columns of tables typed by the composite type (CREATE TABLE ... OF type)
 * under the tag ALTER TYPE, which the column-following triggers do not see:
 * refused while such a table is synced.
 */
static void
refuse_typed_table_change(Oid type)
{
	uint64		n;
	Oid		   *relids = registry_synced_relids(&n);

	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relids[i]));
		bool		typed;

		if (!HeapTupleIsValid(tup))
			continue;
		typed = ((Form_pg_class) GETSTRUCT(tup))->reloftype == type;
		ReleaseSysCache(tup);
		if (typed)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot change the attributes of type %s while synced table \"%s\" is typed by it",
							format_type_be(type), get_rel_name(relids[i])),
					 errdetail("The change would reach the table's columns without para_sync following it (excluded columns, schema_version)."),
					 errhint("%s", UNSYNC_HINT)));
	}
}

/* ALTER TYPE ... RENAME VALUE */
static void
guard_enum_rename(AlterEnumStmt *stmt)
{
	Oid			type;

	if (stmt->oldVal == NULL)
		return;
	type = LookupTypeNameOid(NULL, makeTypeNameFromNameList(stmt->typeName), true);
	if (OidIsValid(type))
		refuse_type_change(type, "rename a value",
						   "Add the new label with ALTER TYPE ... ADD VALUE and UPDATE the rows to it (the updates are captured).");
}

/* ALTER TYPE ... ADD|DROP ATTRIBUTE of a composite type */
static void
guard_alter_composite(AlterTableStmt *stmt)
{
	Oid			relid = resolve(stmt->relation);
	ListCell   *lc;

	if (!OidIsValid(relid) || get_rel_relkind(relid) != RELKIND_COMPOSITE_TYPE)
		return;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype == AT_AddColumn || cmd->subtype == AT_DropColumn ||
			cmd->subtype == AT_AlterColumnType)
			refuse_typed_table_change(get_rel_type_id(relid));
		if (cmd->subtype == AT_AddColumn || cmd->subtype == AT_DropColumn)
			refuse_type_change(get_rel_type_id(relid), "add or drop an attribute",
							   "Create a new type and change the column to it with ALTER TABLE ... ALTER COLUMN ... TYPE (which bumps schema_version), or stop syncing the table with para_sync.unsync_table() first.");
	}
}

static void
guard_command_start(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
			if (((AlterTableStmt *) parsetree)->objtype == OBJECT_TYPE)
				guard_alter_composite((AlterTableStmt *) parsetree);
			else
				guard_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_DropStmt:
			guard_drop((DropStmt *) parsetree);
			break;
		case T_IndexStmt:
			refuse_internal(resolve(((IndexStmt *) parsetree)->relation));
			break;
		case T_RuleStmt:
			refuse_internal(resolve(((RuleStmt *) parsetree)->relation));
			break;
		case T_CreatePolicyStmt:
			refuse_internal(resolve(((CreatePolicyStmt *) parsetree)->table));
			break;
		case T_AlterPolicyStmt:
			refuse_internal(resolve(((AlterPolicyStmt *) parsetree)->table));
			break;
		case T_CreateStmt:
			{
				ListCell   *lc;

				foreach(lc, ((CreateStmt *) parsetree)->inhRelations)
					refuse_internal(resolve(lfirst_node(RangeVar, lc)));
				break;
			}
		case T_CreateTrigStmt:
			{
				CreateTrigStmt *stmt = (CreateTrigStmt *) parsetree;
				Oid			relid = resolve(stmt->relation);

				refuse_internal(relid);
				if (!OidIsValid(relid) || !registry_has(relid))
					break;
				if (stmt->replace && is_para_sync_trigger(relid, stmt->trigname))
					refuse_trigger_change(relid, stmt->trigname, "replace");
				check_trigger_function(relid, stmt);
				break;
			}
		case T_RenameStmt:
			{
				RenameStmt *stmt = (RenameStmt *) parsetree;
				Oid			relid = resolve(stmt->relation);

				refuse_internal(relid);
				if (stmt->renameType == OBJECT_ATTRIBUTE && OidIsValid(relid) &&
					get_rel_relkind(relid) == RELKIND_COMPOSITE_TYPE)
					refuse_typed_table_change(get_rel_type_id(relid));
				if (stmt->renameType == OBJECT_SCHEMA && strcmp(stmt->subname, "para_sync") == 0)
					ereport(ERROR,
							(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
							 errmsg("cannot rename schema para_sync"),
							 errdetail("para_sync's functions and triggers refer to it by name.")));
				if (stmt->renameType == OBJECT_TRIGGER && OidIsValid(relid) &&
					registry_has(relid) && is_para_sync_trigger(relid, stmt->subname))
					refuse_trigger_change(relid, stmt->subname, "rename");
				break;
			}
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *stmt = (AlterObjectSchemaStmt *) parsetree;
				Oid			relid = resolve(stmt->relation);

				refuse_internal(relid);
				if (OidIsValid(relid) && strcmp(stmt->newschema, "para_sync") == 0 &&
					registry_has(relid))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("cannot move synced table \"%s\" into schema para_sync",
									get_rel_name(relid)),
							 errhint("Schema para_sync holds para_sync's own objects only.")));
				break;
			}
		case T_AlterObjectDependsStmt:
			{
				/*
				 * A trigger that depends on an extension is dropped with it,
				 * silently: DROP EXTENSION would end capture.
				 */
				AlterObjectDependsStmt *stmt = (AlterObjectDependsStmt *) parsetree;
				Oid			relid = resolve(stmt->relation);
				const char *trigger;

				if (stmt->objectType != OBJECT_TRIGGER || stmt->remove ||
					!OidIsValid(relid) || !registry_has(relid))
					break;
				trigger = strVal(llast(castNode(List, stmt->object)));
				if (is_para_sync_trigger(relid, trigger))
					refuse_trigger_change(relid, trigger, "make an extension own");
				break;
			}
		case T_AlterEnumStmt:
			guard_enum_rename((AlterEnumStmt *) parsetree);
			break;
		default:
			break;
	}
}

/* ------------------------------------------------------------------------
 * ddl_command_end: follow column changes of synced tables
 * ------------------------------------------------------------------------ */

static void
check_primary_key_immediate(Oid relid)
{
	bool		deferrable;

	if (primary_key_of(relid, NULL, NULL, &deferrable) && deferrable)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("primary key of synced table \"%s\" must not be deferrable", get_rel_name(relid)),
				 errdetail("Per-object sequences rely on the primary key serializing writers of one object."),
				 errhint("Make the primary key NOT DEFERRABLE.")));
}

/*
 * Column column of relid changed shape (added, retyped, renamed from; NULL:
 * some column was added).  A synced column may not have come to print
 * catalog names (type_trust.c).
 */
static void
column_changed(Oid relid, const char *column)
{
	Registration *reg = registry_get(relid);
	Relation	rel;

	if (reg == NULL)
		return;
	check_primary_key_immediate(relid);
	if (column != NULL && is_excluded(reg, column))
		return;
	rel = relation_open(relid, AccessShareLock);
	synced_columns_type_check(rel, reg->excluded);
	relation_close(rel, AccessShareLock);
	bump_schema_version(relid, reg);
}

static void
column_renamed(Oid relid, const char *old, const char *new_name)
{
	Registration *reg = registry_get(relid);

	if (reg == NULL)
		return;
	if (is_excluded(reg, old))
		registry_update(relid, reg->schema_version, excluded_replace(reg, old, new_name));
	else
		bump_schema_version(relid, reg);
}

static void
follow_alter_table(CollectedCommand *cmd)
{
	ListCell   *lc;

	foreach(lc, cmd->d.alterTable.subcmds)
	{
		CollectedATSubcmd *sub = lfirst(lc);
		AlterTableCmd *at = (AlterTableCmd *) sub->parsetree;
		Oid			relid = cmd->d.alterTable.objectId;
		ListCell   *t;

		if (!IsA(at, AlterTableCmd))
			continue;
		if (sub->address.classId == RelationRelationId && OidIsValid(sub->address.objectId))
			relid = sub->address.objectId;
		switch (at->subtype)
		{
			case AT_AddColumn:
			case AT_AddColumnRecurse:
				/* IF NOT EXISTS skipped it */
				if (!OidIsValid(sub->address.objectId))
					break;
				/* children get the column too, without a collected command */
				foreach(t, with_descendants(relid, true))
					column_changed(lfirst_oid(t), NULL);
				break;
			case AT_AlterColumnType:
				column_changed(relid, at->name);
				break;
			case AT_AddConstraint:
			case AT_AddConstraintRecurse:
			case AT_AddIndex:
			case AT_AddIndexConstraint:
				/* the address is the new index or constraint: check the table(s) */
				foreach(t, with_descendants(cmd->d.alterTable.objectId, true))
					if (registry_has(lfirst_oid(t)))
						check_primary_key_immediate(lfirst_oid(t));
				break;
			default:
				break;
		}
	}
}

static void
follow_rename(RenameStmt *stmt, ObjectAddress *address)
{
	ListCell   *lc;

	if (stmt->renameType != OBJECT_COLUMN || address->classId != RelationRelationId)
		return;
	/* renameatt() recurses into inheritors without collecting them */
	foreach(lc, with_descendants(address->objectId, stmt->relation && stmt->relation->inh))
		column_renamed(lfirst_oid(lc), stmt->subname, stmt->newname);
}

static void
guard_command_end(void)
{
	List	   *commands = NIL;
	ListCell   *lc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT command FROM pg_catalog.pg_event_trigger_ddl_commands()", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the collected DDL commands");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			commands = lappend(commands, DatumGetPointer(d));
	}
	foreach(lc, commands)
	{
		CollectedCommand *cmd = lfirst(lc);

		if (cmd->type == SCT_AlterTable && cmd->d.alterTable.classId == RelationRelationId)
			follow_alter_table(cmd);
		else if (cmd->type == SCT_Simple && cmd->parsetree && IsA(cmd->parsetree, RenameStmt))
			follow_rename((RenameStmt *) cmd->parsetree, &cmd->d.simple.address);
	}
	SPI_finish();
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
	if (!primary_key_of(relid, NULL, NULL, NULL))
		refuse_key_change(relid, "drop the primary key");
	if (is_excluded(reg, column))
		registry_update(relid, reg->schema_version, excluded_replace(reg, column, NULL));
	else
		bump_schema_version(relid, reg);
}

static void
guard_sql_drop(void)
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
	if (creating_extension || !OidIsValid(guard_namespace()))
		PG_RETURN_VOID();

	if (strcmp(trigdata->event, "ddl_command_start") == 0)
	{
		list_free(bumped_in_command);
		bumped_in_command = NIL;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		guard_command_start(trigdata->parsetree);
		SPI_finish();
	}
	else if (strcmp(trigdata->event, "ddl_command_end") == 0)
	{
		if (trigdata->tag == CMDTAG_ALTER_TABLE)
			guard_command_end();
	}
	else if (strcmp(trigdata->event, "sql_drop") == 0)
		guard_sql_drop();
	PG_RETURN_VOID();
}
