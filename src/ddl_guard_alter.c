/*
 * ddl_guard_alter.c — the DDL guard at ddl_command_end of ALTER TABLE
 * (ddl_guard.c says why): follows the column changes of synced tables.  A
 * renamed excluded column stays excluded under its new name; a column
 * added, retyped or renamed in the envelope bumps schema_version and
 * appends the table's reload event; a deferrable primary key, and a synced
 * column added or retyped to a type printing catalog names (type_trust.c),
 * are refused.
 */
#include "ddl_guard.h"

#include "access/relation.h"
#include "executor/spi.h"
#include "tcop/deparse_utility.h"
#include "utils/lsyscache.h"

static void
check_primary_key_immediate(Oid relid)
{
	bool		deferrable;

	if (ddl_guard_primary_key_of(relid, NULL, NULL, &deferrable) && deferrable)
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
	if (column != NULL && ddl_guard_names_contain(reg->excluded, column))
		return;
	rel = relation_open(relid, AccessShareLock);
	type_trust_check_columns(rel, reg->excluded);
	relation_close(rel, AccessShareLock);
	ddl_guard_bump_schema_version(relid, reg);
}

static void
column_renamed(Oid relid, const char *old, const char *new_name)
{
	Registration *reg = registry_get(relid);

	if (reg == NULL)
		return;
	scope_follow_rename(relid, old, new_name);
	if (ddl_guard_names_contain(reg->excluded, old))
		registry_update(relid, reg->schema_version, ddl_guard_names_replace(reg->excluded, old, new_name));
	else
		ddl_guard_bump_schema_version(relid, reg);
}

/* One collected subcommand of ALTER TABLE cmd. */
static void
follow_subcommand(CollectedCommand *cmd, CollectedATSubcmd *sub)
{
	AlterTableCmd *at = (AlterTableCmd *) sub->parsetree;
	Oid			relid = cmd->d.alterTable.objectId;
	ListCell   *t;

	if (!IsA(at, AlterTableCmd))
		return;
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
			foreach(t, ddl_guard_with_descendants(relid, true))
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
			foreach(t, ddl_guard_with_descendants(cmd->d.alterTable.objectId, true))
				if (registry_has(lfirst_oid(t)))
					check_primary_key_immediate(lfirst_oid(t));
			break;
		default:
			break;
	}
}

static void
follow_alter_table(CollectedCommand *cmd)
{
	ListCell   *lc;

	foreach(lc, cmd->d.alterTable.subcmds)
		follow_subcommand(cmd, lfirst(lc));
}

static void
follow_rename(RenameStmt *stmt, ObjectAddress *address)
{
	ListCell   *lc;

	if (stmt->renameType != OBJECT_COLUMN || address->classId != RelationRelationId)
		return;
	/* renameatt() recurses into inheritors without collecting them */
	foreach(lc, ddl_guard_with_descendants(address->objectId, stmt->relation && stmt->relation->inh))
		column_renamed(lfirst_oid(lc), stmt->subname, stmt->newname);
}

void
ddl_guard_command_end(void)
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
