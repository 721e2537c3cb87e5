/*
 * ddl_guard_types.c — the DDL guard at ddl_command_start of ALTER TYPE
 * (ddl_guard.c says why).  Some ALTER TYPE commands change the text of
 * stored values, or the columns of typed tables, without a row change or a
 * collected ALTER TABLE: renaming an enum label, and adding, dropping,
 * retyping or renaming an attribute of a composite type.  They are refused
 * while a synced column prints the type, or a synced table is typed by it.
 */
#include "ddl_guard.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_class.h"
#include "nodes/makefuncs.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/*
 * Some ALTER TYPE commands change the text of stored values without changing
 * a row, so no capture trigger fires: renaming an enum label, and adding or
 * dropping an attribute of a composite type (its values print one field
 * more or less).  Refuse them while a synced column (of any table, whoever
 * owns it) prints the type.  what names the command, hint says what to do.
 */
typedef struct TypeChange
{
	Oid			type;
	const char *what;
	const char *hint;
} TypeChange;

/* refuse_type_change() for one synced table */
static void
refuse_if_column_prints(Relation rel, Registration *reg, void *arg)
{
	TypeChange *change = arg;
	TupleDesc	desc = RelationGetDescr(rel);

	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (att->attisdropped || ddl_guard_names_contain(reg->excluded, NameStr(att->attname)) ||
			!type_trust_prints_type(att->atttypid, change->type))
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s of type %s while synced column \"%s\" of table \"%s\" uses it",
						change->what, format_type_be(change->type), NameStr(att->attname),
						RelationGetRelationName(rel)),
				 errdetail("It would change the stored values without capturing a change, so replicas would keep the old values under the same sequence."),
				 errhint("%s", change->hint)));
	}
}

static void
refuse_type_change(Oid type, const char *what, const char *hint)
{
	TypeChange	change = {type, what, hint};

	registry_foreach_synced(refuse_if_column_prints, &change);
}

/*
 * ALTER TYPE ... ADD|DROP|ALTER|RENAME ATTRIBUTE ... CASCADE changes the
 * columns of tables typed by the composite type (CREATE TABLE ... OF type)
 * under the tag ALTER TYPE, which the column-following triggers do not see:
 * refused while such a table is synced.
 */
void
ddl_guard_refuse_typed_table_change(Oid type)
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
void
ddl_guard_enum_rename(AlterEnumStmt *stmt)
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
void
ddl_guard_alter_composite(AlterTableStmt *stmt)
{
	Oid			relid = ddl_guard_resolve(stmt->relation);
	ListCell   *lc;

	if (!OidIsValid(relid) || get_rel_relkind(relid) != RELKIND_COMPOSITE_TYPE)
		return;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype == AT_AddColumn || cmd->subtype == AT_DropColumn ||
			cmd->subtype == AT_AlterColumnType)
			ddl_guard_refuse_typed_table_change(get_rel_type_id(relid));
		if (cmd->subtype == AT_AddColumn || cmd->subtype == AT_DropColumn)
			refuse_type_change(get_rel_type_id(relid), "add or drop an attribute",
							   "Create a new type and change the column to it with ALTER TABLE ... ALTER COLUMN ... TYPE (which bumps schema_version), or stop syncing the table with para_sync.unsync_table() first.");
	}
}
