/*
 * ddl_guard_start.c — the DDL guard at ddl_command_start (ddl_guard.c says
 * why): refuses, from the parse tree and before anything changes, ALTER
 * TABLE that disables or re-fires para_sync's triggers, drops or retypes
 * primary-key columns or the primary key, drops or retypes scope columns
 * (scope.c), or sets a synced table UNLOGGED;
 * creating, replacing or renaming para_sync's triggers, or making them
 * depend on an extension; moving a synced table into schema para_sync or
 * renaming that schema; and indexes, rules, policies, triggers, children
 * and most ALTER TABLE on para_sync's internal tables.  ALTER TYPE goes to
 * ddl_guard_types.c, DROP to ddl_guard_drop.c.
 */
#include "ddl_guard.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_proc.h"
#include "commands/extension.h"
#include "parser/parse_func.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* Is column name of relid part of its primary key? */
static bool
is_key_column_name(Oid relid, const char *name)
{
	Oid			index;
	AttrNumber	attnum = get_attnum(relid, name);
	HeapTuple	tup;
	bool		result = false;

	if (attnum == InvalidAttrNumber || !ddl_guard_primary_key_of(relid, NULL, &index, NULL))
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

static void
refuse_internal(Oid relid)
{
	Oid			nsp = ddl_guard_namespace();

	if (OidIsValid(relid) && OidIsValid(nsp) && get_rel_namespace(relid) == nsp)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot change para_sync's internal table \"%s\"", get_rel_name(relid)),
				 errdetail("The capture trigger writes para_sync's tables directly: added indexes, triggers, rules and policies would not be maintained."),
				 errhint("Only ALTER TABLE ... SET/RESET (storage parameters) is allowed; query para_sync.status and para_sync.synced_tables instead.")));
}

static void
check_trigger_cmd(Oid relid, AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_EnableTrig:
		case AT_EnableReplicaTrig:
		case AT_DisableTrig:
			if (ddl_guard_is_para_sync_trigger(relid, cmd->name))
				ddl_guard_refuse_trigger_change(relid, cmd->name,
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
			if (ddl_guard_primary_key_of(top_relid, &pkname, NULL, NULL) && strcmp(pkname, cmd->name) == 0)
				ddl_guard_refuse_key_change(relid, "drop the primary key");
			break;
		case AT_AlterConstraint:
			if (ddl_guard_primary_key_of(top_relid, &pkname, NULL, NULL) &&
				strcmp(pkname, castNode(Constraint, cmd->def)->conname) == 0)
				ddl_guard_refuse_key_change(relid, "alter the primary key");
			break;
		case AT_DropColumn:
		case AT_DropColumnRecurse:
			if (is_key_column_name(relid, cmd->name))
				ddl_guard_refuse_key_change(relid, psprintf("drop primary-key column \"%s\"", cmd->name));
			scope_guard_column(relid, cmd->name, "drop");
			break;
		case AT_AlterColumnType:
			if (is_key_column_name(relid, cmd->name))
				ddl_guard_refuse_key_change(relid, psprintf("change the type of primary-key column \"%s\"", cmd->name));
			scope_guard_column(relid, cmd->name, "change the type of");
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
	Oid			relid = ddl_guard_resolve(stmt->relation);
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

	foreach(lc, ddl_guard_with_descendants(relid, stmt->relation->inh))
	{
		Oid			target = lfirst_oid(lc);
		ListCell   *c;

		if (!registry_has(target))
			continue;
		foreach(c, stmt->cmds)
			check_alter_cmd(target, target == relid, relid, lfirst_node(AlterTableCmd, c));
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

/* CREATE TABLE ... INHERITS: no child of para_sync's internal tables. */
static void
guard_create_table(CreateStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->inhRelations)
		refuse_internal(ddl_guard_resolve(lfirst_node(RangeVar, lc)));
}

/* CREATE [OR REPLACE] TRIGGER */
static void
guard_create_trigger(CreateTrigStmt *stmt)
{
	Oid			relid = ddl_guard_resolve(stmt->relation);

	refuse_internal(relid);
	if (!OidIsValid(relid) || !registry_has(relid))
		return;
	if (stmt->replace && ddl_guard_is_para_sync_trigger(relid, stmt->trigname))
		ddl_guard_refuse_trigger_change(relid, stmt->trigname, "replace");
	check_trigger_function(relid, stmt);
}

/* ALTER ... RENAME */
static void
guard_rename(RenameStmt *stmt)
{
	Oid			relid = ddl_guard_resolve(stmt->relation);

	refuse_internal(relid);
	if (stmt->renameType == OBJECT_ATTRIBUTE && OidIsValid(relid) &&
		get_rel_relkind(relid) == RELKIND_COMPOSITE_TYPE)
		ddl_guard_refuse_typed_table_change(get_rel_type_id(relid));
	if (stmt->renameType == OBJECT_SCHEMA && strcmp(stmt->subname, "para_sync") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot rename schema para_sync"),
				 errdetail("para_sync's functions and triggers refer to it by name.")));
	if (stmt->renameType == OBJECT_TRIGGER && OidIsValid(relid) &&
		registry_has(relid) && ddl_guard_is_para_sync_trigger(relid, stmt->subname))
		ddl_guard_refuse_trigger_change(relid, stmt->subname, "rename");
}

/* ALTER ... SET SCHEMA */
static void
guard_set_schema(AlterObjectSchemaStmt *stmt)
{
	Oid			relid = ddl_guard_resolve(stmt->relation);

	refuse_internal(relid);
	if (OidIsValid(relid) && strcmp(stmt->newschema, "para_sync") == 0 &&
		registry_has(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot move synced table \"%s\" into schema para_sync",
						get_rel_name(relid)),
				 errhint("Schema para_sync holds para_sync's own objects only.")));
}

/*
 * ALTER TRIGGER ... DEPENDS ON EXTENSION: a trigger that depends on an
 * extension is dropped with it, silently: DROP EXTENSION would end capture.
 */
static void
guard_depends(AlterObjectDependsStmt *stmt)
{
	Oid			relid = ddl_guard_resolve(stmt->relation);
	const char *trigger;

	if (stmt->objectType != OBJECT_TRIGGER || stmt->remove ||
		!OidIsValid(relid) || !registry_has(relid))
		return;
	trigger = strVal(llast(castNode(List, stmt->object)));
	if (ddl_guard_is_para_sync_trigger(relid, trigger))
		ddl_guard_refuse_trigger_change(relid, trigger, "make an extension own");
}

/* ddl_command_start: one statement's parse tree.  Caller is connected to SPI. */
void
ddl_guard_command_start(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
			if (((AlterTableStmt *) parsetree)->objtype == OBJECT_TYPE)
				ddl_guard_alter_composite((AlterTableStmt *) parsetree);
			else
				guard_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_DropStmt:
			ddl_guard_drop((DropStmt *) parsetree);
			break;
		case T_IndexStmt:
			refuse_internal(ddl_guard_resolve(((IndexStmt *) parsetree)->relation));
			break;
		case T_RuleStmt:
			refuse_internal(ddl_guard_resolve(((RuleStmt *) parsetree)->relation));
			break;
		case T_CreatePolicyStmt:
			refuse_internal(ddl_guard_resolve(((CreatePolicyStmt *) parsetree)->table));
			break;
		case T_AlterPolicyStmt:
			refuse_internal(ddl_guard_resolve(((AlterPolicyStmt *) parsetree)->table));
			break;
		case T_CreateStmt:
			guard_create_table((CreateStmt *) parsetree);
			break;
		case T_CreateTrigStmt:
			guard_create_trigger((CreateTrigStmt *) parsetree);
			break;
		case T_RenameStmt:
			guard_rename((RenameStmt *) parsetree);
			break;
		case T_AlterObjectSchemaStmt:
			guard_set_schema((AlterObjectSchemaStmt *) parsetree);
			break;
		case T_AlterObjectDependsStmt:
			guard_depends((AlterObjectDependsStmt *) parsetree);
			break;
		case T_AlterEnumStmt:
			ddl_guard_enum_rename((AlterEnumStmt *) parsetree);
			break;
		default:
			break;
	}
}
