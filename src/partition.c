/*
 * partition.c — partitioned tables, synced by their root: the one home of
 * "which synced root does this relation belong to".
 *
 * sync_table() of a partitioned table registers the root alone.  Its
 * capture trigger is a row trigger of the root, which PostgreSQL clones to
 * every partition, present and future, sub-partitions included (and keeps
 * ENABLE ALWAYS on the clones); the trigger fires on the partition that
 * holds the row, and its cache entry (table_cache.c) is the root's
 * registration: keys <sync name>:<root's primary key>, values in the root's
 * column names and order, whatever attribute numbers the partition has.  A
 * cross-partition UPDATE fires DELETE on the source partition and INSERT on
 * the target: a delete of the old key and an upsert of the new one (the
 * partition key is part of the primary key, so the key changes).
 *
 * TRUNCATE fires statement triggers only on the tables it names and those
 * it reaches by recursion, and PostgreSQL does not clone statement
 * triggers: every partition therefore gets its own para_sync_no_truncate
 * trigger, at sync_table() and when it is created (CREATE SCHEMA elements
 * included) or attached later (partition_ddl_end()), dropped again by
 * DETACH and unsync_table(); a TRUNCATE of the root fires each leaf's, so
 * the root's own does nothing (lifecycle.c).  A trigger of that name is
 * never trusted by its name: it must be para_sync's, ENABLE ALWAYS
 * (truncate_trigger_state()).
 *
 * The ALTER TABLE event triggers take no lock for a role that does not own
 * the table named (ALTER TABLE refuses it before locking), and ask the
 * registry only once the parent is locked as ALTER TABLE will lock it.
 *
 * ALTER TABLE ... ATTACH PARTITION of a table with rows publishes an upsert
 * per row (at ddl_command_end, once the rows are the root's);
 * DETACH PARTITION and DROP TABLE of a partition a delete per row (at
 * ddl_command_start, lifecycle.c, while the rows are still the root's).
 * Refused, with a hint: dropping a partition of a synced root other than
 * by DROP TABLE (DROP SCHEMA ... CASCADE, DROP OWNED: by then its rows can
 * no longer be read; partition_check_dropped()), DETACH ... CONCURRENTLY (its rows would leave the
 * root in a transaction of its own, unpublished), disabling para_sync's
 * triggers on a partition, attaching a table synced on its own, tagging a
 * partition of a synced root, tagging a root one of whose partitions is
 * synced on its own, renaming or replacing para_sync's triggers on a
 * partition, making an extension own them (or creating one that is not
 * para_sync's), and unlogged partitions (created, attached or set so).
 */
#include "para_sync.h"

#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(para_sync_partition_ddl_start);
PG_FUNCTION_INFO_V1(para_sync_partition_ddl_end);
PG_FUNCTION_INFO_V1(para_sync_partition_check_dropped);

#define TRUNCATE_TRIGGER "para_sync_no_truncate"

/*
 * The synced table relid's rows belong to, if relid is a partition of one
 * (at any depth): the nearest partitioned ancestor in the registry, or
 * InvalidOid.  Read with a fresh snapshot, as registry_table_is_synced().
 */
Oid
partition_synced_root(Oid relid)
{
	List	   *ancestors;
	ListCell   *lc;
	Oid			root = InvalidOid;

	if (!get_rel_relispartition(relid))
		return InvalidOid;
	ancestors = get_partition_ancestors(relid);
	foreach(lc, ancestors)
	{
		if (registry_table_is_synced(lfirst_oid(lc)))
		{
			root = lfirst_oid(lc);
			break;
		}
	}
	list_free(ancestors);
	return root;
}

/*
 * The registration a partition's rows are captured under, and its root
 * (*root), or NULL: the capture trigger's cache (table_cache.c), which is
 * where the partition-to-root mapping is cached (invalidated with the
 * partition's and the root's relcache entries).  Caller is connected to SPI.
 */
Registration *
partition_lookup(Oid relid, Oid *root)
{
	List	   *ancestors;
	ListCell   *lc;
	Registration *reg = NULL;

	*root = InvalidOid;
	if (!get_rel_relispartition(relid))
		return NULL;
	ancestors = get_partition_ancestors(relid);
	foreach(lc, ancestors)
	{
		reg = registry_lookup(lfirst_oid(lc));
		if (reg != NULL)
		{
			*root = lfirst_oid(lc);
			break;
		}
	}
	list_free(ancestors);
	return reg;
}

/* The leaf partitions (tables with rows) under partitioned relid, locked. */
List *
partition_leaves(Oid relid, LOCKMODE lockmode)
{
	List	   *all = find_all_inheritors(relid, lockmode, NULL);
	List	   *leaves = NIL;
	ListCell   *lc;

	foreach(lc, all)
		if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
			leaves = lappend_oid(leaves, lfirst_oid(lc));
	list_free(all);
	return leaves;
}

/*
 * Unlogged partitions of root (relid and those under it): their rows would
 * not survive a crash, but their published changes would.
 */
static void
refuse_unlogged(Oid relid, Oid root, bool tagging)
{
	List	   *all = find_all_inheritors(relid, NoLock, NULL);
	ListCell   *lc;

	foreach(lc, all)
		if (get_rel_persistence(lfirst_oid(lc)) != RELPERSISTENCE_PERMANENT)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 tagging ?
					 errmsg("cannot sync partitioned table \"%s\": its partition \"%s\" is unlogged",
							get_rel_name(root), get_rel_name(lfirst_oid(lc))) :
					 errmsg("synced table \"%s\" cannot have unlogged partition \"%s\"",
							get_rel_name(root), get_rel_name(lfirst_oid(lc))),
					 errdetail("Its rows would not survive a crash, but their published changes would."),
					 errhint("Make the table logged with ALTER TABLE ... SET LOGGED first.")));
	list_free(all);
}

/* The first of relid and its partitions that is synced on its own, or InvalidOid. */
static Oid
synced_member(Oid relid)
{
	List	   *all = find_all_inheritors(relid, NoLock, NULL);
	ListCell   *lc;

	foreach(lc, all)
		if (registry_table_is_synced(lfirst_oid(lc)))
			return lfirst_oid(lc);
	return InvalidOid;
}

/*
 * Tagging a partitioned table reads and gives a trigger to every partition:
 * each must be the caller's (PostgreSQL's own refusal would name the
 * partition but not why).
 */
static void
refuse_foreign_partitions(List *parts)
{
	ListCell   *lc;

	foreach(lc, parts)
	{
		Oid			part = lfirst_oid(lc);

		if (!pg_class_ownercheck(part, GetUserId()))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of partition \"%s\" to sync its partitioned table",
							get_rel_name(part)),
					 errdetail("para_sync gives every partition of a synced table a trigger that publishes the rows a TRUNCATE of it removes; the partition is owned by role \"%s\".",
							   GetUserNameFromId(catalog_relation_owner(part), false)),
					 errhint("Give the partition to the root's owner (ALTER TABLE ... OWNER TO), or let a superuser call para_sync.sync_table().")));
	}
}

/*
 * sync_table() of rel (registry_check.c): not a partition of a synced root;
 * and, for a partitioned table, none of its partitions synced on its own.
 * A partitioned rel's partitions are locked as rel is (no direct writer of
 * a partition slips between the rows announced and the triggers).
 */
void
partition_check_syncable(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			root = partition_synced_root(relid);
	Oid			member;
	List	   *parts;

	if (OidIsValid(root))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot sync partition \"%s\" of synced table \"%s\"",
						RelationGetRelationName(rel), get_rel_name(root)),
				 errdetail("Its rows are synced already, keyed by the sync name of \"%s\".",
						   get_rel_name(root)),
				 errhint("Read its rows through the root's sync name, or call para_sync.unsync_table() on \"%s\" first.",
						 get_rel_name(root))));
	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return;
	parts = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	refuse_foreign_partitions(parts);
	list_free(parts);
	refuse_unlogged(relid, relid, true);
	member = synced_member(relid);
	if (OidIsValid(member) && member != relid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot sync partitioned table \"%s\": its partition \"%s\" is synced on its own",
						RelationGetRelationName(rel), get_rel_name(member)),
				 errdetail("A row would have two keys, one under each sync name."),
				 errhint("Call para_sync.unsync_table() on \"%s\" first.", get_rel_name(member))));
}

/* para_sync.refuse_truncate(), the function of para_sync's truncate triggers */
static Oid
truncate_trigger_function(void)
{
	return LookupFuncName(list_make2(makeString("para_sync"), makeString("refuse_truncate")),
						  0, NULL, true);
}

/*
 * The firing mode (tgenabled) of relid's para_sync_no_truncate trigger, if
 * it is para_sync's: para_sync.refuse_truncate() BEFORE TRUNCATE FOR EACH
 * STATEMENT, without WHEN.  '\0' if relid has no trigger of that name, 'X'
 * if it has one that is not para_sync's (a trigger is never trusted by its
 * name: the table owner may have created it, before attaching the table).
 */
static char
truncate_trigger_state(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TriggerDesc *trigdesc = rel->trigdesc;
	Oid			func = truncate_trigger_function();
	char		state = '\0';

	for (int i = 0; trigdesc && i < trigdesc->numtriggers; i++)
	{
		Trigger    *trig = &trigdesc->triggers[i];

		if (strcmp(trig->tgname, TRUNCATE_TRIGGER) != 0)
			continue;
		if (trig->tgfoid == func && trig->tgqual == NULL &&
			trig->tgtype == (TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_TRUNCATE))
			state = trig->tgenabled;
		else
			state = 'X';
	}
	table_close(rel, AccessShareLock);
	return state;
}

/* Does relid have a trigger named para_sync_no_truncate (para_sync's or not)? */
static bool
has_truncate_trigger(Oid relid)
{
	return truncate_trigger_state(relid) != '\0';
}

/* Does relid's own para_sync_no_truncate trigger fire in this session? */
static bool
truncate_trigger_fires(Oid relid)
{
	char		state = truncate_trigger_state(relid);

	return state == TRIGGER_FIRES_ALWAYS ||
		(state == TRIGGER_FIRES_ON_ORIGIN &&
		 SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA) ||
		(state == TRIGGER_FIRES_ON_REPLICA &&
		 SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA);
}

/*
 * Partition part's truncate trigger: created, or made ENABLE ALWAYS; a
 * trigger of that name that is not para_sync's is refused.  Caller is
 * connected to SPI.
 */
static void
install_truncate_trigger(Oid part)
{
	char		state = truncate_trigger_state(part);
	char	   *qname;

	if (state == TRIGGER_FIRES_ALWAYS)
		return;
	if (state == 'X')
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("partition \"%s\" has a trigger \"%s\" that is not para_sync's",
						get_rel_name(part), TRUNCATE_TRIGGER),
				 errdetail("para_sync publishes the rows a TRUNCATE of a partition of a synced table removes through a trigger of that name."),
				 errhint("Drop or rename that trigger of \"%s\" first.", get_rel_name(part))));
	qname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(part)),
									   get_rel_name(part));
	if ((state == '\0' &&
		 SPI_execute(psprintf("CREATE TRIGGER " TRUNCATE_TRIGGER " BEFORE TRUNCATE ON %s"
							  " FOR EACH STATEMENT EXECUTE FUNCTION para_sync.refuse_truncate()",
							  qname), false, 0) < 0) ||
		SPI_execute(psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER " TRUNCATE_TRIGGER,
							 qname), false, 0) < 0)
		elog(ERROR, "para_sync could not create the truncate trigger of %s", qname);
}

/*
 * Every partition under partitioned relid (at any depth) gets the truncate
 * trigger, ENABLE ALWAYS, unless it has it (pg_restore re-creates them;
 * one disabled or in another firing mode is made ENABLE ALWAYS).  A
 * partition with a trigger of that name that is not para_sync's is
 * refused: its TRUNCATE would publish nothing.  As the caller, who owns
 * the root (partitions have the root's owner, or the caller could not have
 * attached or created them).  Caller is connected to SPI.
 */
void
partition_install_truncate_triggers(Oid relid)
{
	List	   *all;
	ListCell   *lc;

	if (get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE && !get_rel_relispartition(relid))
		return;
	all = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	foreach(lc, all)
		if (get_rel_relispartition(lfirst_oid(lc)))
			install_truncate_trigger(lfirst_oid(lc));
	list_free(all);
}

/*
 * relid and every partition under it lose the truncate trigger, once
 * their rows are no synced root's: after DETACH PARTITION, or unsync_table()
 * of the root.  Tables synced on their own keep theirs.  Caller is
 * connected to SPI.
 */
void
partition_drop_truncate_triggers(Oid relid)
{
	List	   *all = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	ListCell   *lc;

	foreach(lc, all)
	{
		Oid			part = lfirst_oid(lc);

		if (!has_truncate_trigger(part) || registry_table_is_synced(part) ||
			OidIsValid(partition_synced_root(part)))
			continue;
		if (SPI_execute(psprintf("DROP TRIGGER " TRUNCATE_TRIGGER " ON %s",
								 quote_qualified_identifier(get_namespace_name(get_rel_namespace(part)),
															get_rel_name(part))),
						false, 0) < 0)
			elog(ERROR, "para_sync could not drop the truncate trigger of %s", get_rel_name(part));
	}
	list_free(all);
}

/*
 * TRUNCATE of partitioned rel (its truncate trigger, lifecycle.c): each
 * leaf's own trigger publishes its deletes; a leaf without one that fires
 * (created while event triggers were off) gets them here, never silently
 * none.
 */
void
partition_truncate_leaves_without_trigger(Relation rel)
{
	ListCell   *lc;

	foreach(lc, partition_leaves(RelationGetRelid(rel), AccessExclusiveLock))
	{
		Relation	leaf;

		if (truncate_trigger_fires(lfirst_oid(lc)))
			continue;
		leaf = table_open(lfirst_oid(lc), NoLock);
		lifecycle_retire_rows(leaf);
		table_close(leaf, NoLock);
	}
}

/* ---- the event triggers: ALTER TABLE ... ATTACH / DETACH PARTITION, CREATE TABLE ... PARTITION OF */

/* Is name one of para_sync's triggers? */
static bool
is_para_sync_trigger(const char *name)
{
	return name != NULL && (strcmp(name, "para_sync_capture") == 0 ||
							strcmp(name, TRUNCATE_TRIGGER) == 0);
}

static void
refuse_trigger_change(Oid relid, Oid root, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s triggers of partition \"%s\" of synced table \"%s\"",
					what, get_rel_name(relid), get_rel_name(root)),
			 errdetail("para_sync's triggers capture every row change of the partition; they stay ENABLE ALWAYS while its root is synced."),
			 errhint("Call para_sync.unsync_table() on \"%s\" first.", get_rel_name(root))));
}

/* The table a PartitionCmd names, locked with lockmode (after its new or old parent). */
static Oid
partition_of_cmd(AlterTableCmd *cmd, LOCKMODE lockmode)
{
	PartitionCmd *pc = castNode(PartitionCmd, cmd->def);

	return RangeVarGetRelid(pc->name, lockmode, true);
}

/*
 * The synced root whose rows parent's partitions hold (parent itself, or
 * an ancestor), asked once parent is locked with lockmode, as ALTER TABLE
 * will lock it: a sync_table() that commits while we wait is seen.  Only
 * for parent's owner (ALTER TABLE checks ownership before it locks; a
 * statement of anyone else must not lock the table first), else
 * InvalidOid: ALTER TABLE refuses the statement itself.
 */
static Oid
locked_synced_root(Oid parent, LOCKMODE lockmode)
{
	if (!pg_class_ownercheck(parent, GetUserId()))
		return InvalidOid;
	LockRelationOid(parent, lockmode);
	return registry_table_is_synced(parent) ? parent : partition_synced_root(parent);
}

/*
 * DETACH PARTITION of a partition of a synced root: a delete for each of
 * its rows, while they are still the root's (lifecycle.c).  Locks as DETACH
 * will, parent first.
 */
static void
detach_start(Oid parent, AlterTableCmd *cmd)
{
	PartitionCmd *pc = castNode(PartitionCmd, cmd->def);
	Oid			root;
	Oid			part;
	Relation	rel;

	root = locked_synced_root(parent, pc->concurrent || cmd->subtype != AT_DetachPartition ?
							  ShareUpdateExclusiveLock : AccessExclusiveLock);
	if (!OidIsValid(root))
		return;
	if (pc->concurrent)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot detach a partition of synced table \"%s\" concurrently",
						get_rel_name(root)),
				 errdetail("DETACH PARTITION ... CONCURRENTLY removes the rows from the root in a transaction of its own, where their deletes could not be published."),
				 errhint("Use DETACH PARTITION without CONCURRENTLY.")));
	if (cmd->subtype != AT_DetachPartition)
		return;
	part = partition_of_cmd(cmd, AccessExclusiveLock);
	if (!OidIsValid(part) || get_partition_parent(part, true) != parent)
		return;
	rel = relation_open(part, NoLock);
	lifecycle_retire_rows(rel);
	relation_close(rel, NoLock);
}

/* ATTACH PARTITION to a synced root: the attached table is not synced on its own. */
static void
attach_start(Oid parent, AlterTableCmd *cmd)
{
	/* locked as ATTACH will lock them: a tagging of part waits, or is seen */
	Oid			root = locked_synced_root(parent, ShareUpdateExclusiveLock);
	Oid			part;
	Oid			member;

	if (!OidIsValid(root))
		return;
	part = partition_of_cmd(cmd, AccessExclusiveLock);
	if (!OidIsValid(part))
		return;
	member = synced_member(part);
	if (OidIsValid(member))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot attach \"%s\" to synced table \"%s\": \"%s\" is synced on its own",
						get_rel_name(part), get_rel_name(root), get_rel_name(member)),
				 errdetail("Its rows would have two keys, one under each sync name."),
				 errhint("Call para_sync.unsync_table() on \"%s\" first.", get_rel_name(member))));
	refuse_unlogged(part, root, false);
}

/* ddl_command_start of ALTER TABLE on relid, a partitioned table or a partition. */
static void
alter_start(AlterTableStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	Oid			root;
	ListCell   *lc;

	if (!OidIsValid(relid) || stmt->objtype != OBJECT_TABLE)
		return;
	root = partition_synced_root(relid);
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		switch (cmd->subtype)
		{
			case AT_AttachPartition:
				attach_start(relid, cmd);
				break;
			case AT_DetachPartition:
			case AT_DetachPartitionFinalize:
				detach_start(relid, cmd);
				break;
			case AT_EnableTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
				if (OidIsValid(root) && is_para_sync_trigger(cmd->name))
					refuse_trigger_change(relid, root, cmd->subtype == AT_DisableTrig ?
										  "disable" : "change the firing mode of");
				break;
			case AT_SetUnLogged:
				if (OidIsValid(root))
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot make partition \"%s\" of synced table \"%s\" unlogged",
									get_rel_name(relid), get_rel_name(root)),
							 errdetail("Its rows would not survive a crash, but their published changes would."),
							 errhint("Call para_sync.unsync_table() on \"%s\" first.", get_rel_name(root))));
				break;
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
				if (OidIsValid(root))
					refuse_trigger_change(relid, root, "enable or disable all");
				break;
			default:
				break;
		}
	}
}

/*
 * The table rv names, if it is a partition of a synced root: then its root
 * too.  Not locked: the statement itself locks it later.
 */
static bool
named_synced_partition(RangeVar *rv, Oid *relid, Oid *root)
{
	*relid = RangeVarGetRelid(rv, NoLock, true);
	*root = OidIsValid(*relid) ? partition_synced_root(*relid) : InvalidOid;
	return OidIsValid(*root);
}

/* DROP TRIGGER para_sync_no_truncate of a partition of a synced root. */
static void
drop_start(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_TRIGGER)
		return;
	foreach(lc, stmt->objects)
	{
		List	   *names = lfirst_node(List, lc);
		RangeVar   *rv;
		Oid			relid,
					root;

		if (list_length(names) < 2 || !is_para_sync_trigger(strVal(llast(names))))
			continue;
		rv = makeRangeVarFromNameList(list_truncate(list_copy(names), list_length(names) - 1));
		if (named_synced_partition(rv, &relid, &root))
			refuse_trigger_change(relid, root, "drop");
	}
}

/*
 * CREATE [OR REPLACE] TRIGGER named as one of para_sync's on a partition of
 * a synced root: refused, unless it is exactly para_sync's truncate
 * trigger (pg_restore creates those once the registry is restored).
 */
static void
create_trigger_start(CreateTrigStmt *stmt)
{
	Oid			relid,
				root;

	if (!is_para_sync_trigger(stmt->trigname) ||
		!named_synced_partition(stmt->relation, &relid, &root))
		return;
	if (stmt->replace)
		refuse_trigger_change(relid, root, "replace");
	if (strcmp(stmt->trigname, TRUNCATE_TRIGGER) == 0 && !stmt->isconstraint &&
		!stmt->row && stmt->timing == TRIGGER_TYPE_BEFORE &&
		stmt->events == TRIGGER_TYPE_TRUNCATE && stmt->whenClause == NULL &&
		LookupFuncName(stmt->funcname, 0, NULL, true) == truncate_trigger_function())
		return;
	refuse_trigger_change(relid, root, "create");
}

/* ALTER TRIGGER para_sync_no_truncate ON a partition of a synced root RENAME. */
static void
rename_start(RenameStmt *stmt)
{
	Oid			relid,
				root;

	if (stmt->renameType == OBJECT_TRIGGER && is_para_sync_trigger(stmt->subname) &&
		named_synced_partition(stmt->relation, &relid, &root))
		refuse_trigger_change(relid, root, "rename");
}

/*
 * ALTER TRIGGER para_sync_... ON a partition of a synced root DEPENDS ON
 * EXTENSION: DROP EXTENSION would then drop the trigger, silently.
 */
static void
depends_start(AlterObjectDependsStmt *stmt)
{
	Oid			relid,
				root;

	if (stmt->objectType == OBJECT_TRIGGER && !stmt->remove && stmt->relation != NULL &&
		is_para_sync_trigger(strVal(llast(castNode(List, stmt->object)))) &&
		named_synced_partition(stmt->relation, &relid, &root))
		refuse_trigger_change(relid, root, "make an extension own");
}

Datum
para_sync_partition_ddl_start(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.partition_ddl_start() must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (creating_extension || !registry_exists())
		PG_RETURN_VOID();
	if (IsA(trigdata->parsetree, AlterTableStmt))
		alter_start((AlterTableStmt *) trigdata->parsetree);
	else if (IsA(trigdata->parsetree, DropStmt))
		drop_start((DropStmt *) trigdata->parsetree);
	else if (IsA(trigdata->parsetree, RenameStmt))
		rename_start((RenameStmt *) trigdata->parsetree);
	else if (IsA(trigdata->parsetree, CreateTrigStmt))
		create_trigger_start((CreateTrigStmt *) trigdata->parsetree);
	else if (IsA(trigdata->parsetree, AlterObjectDependsStmt))
		depends_start((AlterObjectDependsStmt *) trigdata->parsetree);
	PG_RETURN_VOID();
}

/*
 * A table that has just become a partition (CREATE TABLE ... PARTITION OF,
 * ATTACH PARTITION) of a synced root: its truncate triggers, and for an
 * attached table an upsert of each of its rows (lifecycle.c).  The capture
 * trigger PostgreSQL cloned already.
 */
static void
became_partition(Oid relid, bool attached)
{
	Relation	rel;
	Oid			root;

	if (!OidIsValid(relid) || !OidIsValid(root = partition_synced_root(relid)))
		return;
	refuse_unlogged(relid, root, false);
	partition_install_truncate_triggers(relid);
	if (!attached)
		return;
	rel = relation_open(relid, NoLock);
	lifecycle_publish_rows(rel);
	relation_close(rel, NoLock);
}

/*
 * CREATE SCHEMA ... CREATE TABLE ... PARTITION OF: the elements fire no
 * event triggers of their own, so each partition in the new schema is
 * looked at here.  Caller is connected to SPI.
 */
static void
schema_created(CreateSchemaStmt *stmt)
{
	const char *name = stmt->schemaname ? stmt->schemaname : get_rolespec_name(stmt->authrole);
	Oid			nsp = get_namespace_oid(name, true);
	Datum		arg = ObjectIdGetDatum(nsp);
	Oid			argtype = OIDOID;
	List	   *parts = NIL;
	ListCell   *lc;
	int			rc;

	if (stmt->schemaElts == NIL || !OidIsValid(nsp))
		return;
	rc = SPI_execute_with_args("SELECT c.oid FROM pg_catalog.pg_class c"
							   " WHERE c.relnamespace OPERATOR(pg_catalog.=) $1 AND c.relispartition",
							   1, &argtype, &arg, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync partition look-up failed: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		parts = lappend_oid(parts, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																  SPI_tuptable->tupdesc, 1,
																  &isnull)));
	}
	foreach(lc, parts)
		became_partition(lfirst_oid(lc), false);
	list_free(parts);
}

Datum
para_sync_partition_ddl_end(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *tree;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.partition_ddl_end() must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	tree = trigdata->parsetree;
	if (creating_extension || !registry_exists())
		PG_RETURN_VOID();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (IsA(tree, CreateStmt) && ((CreateStmt *) tree)->partbound != NULL)
		became_partition(RangeVarGetRelid(((CreateStmt *) tree)->relation, NoLock, true), false);
	else if (IsA(tree, CreateSchemaStmt))
		schema_created((CreateSchemaStmt *) tree);
	else if (IsA(tree, CreateTrigStmt))
	{
		/* para_sync's own truncate trigger, created by hand or pg_restore: ALWAYS */
		CreateTrigStmt *stmt = (CreateTrigStmt *) tree;
		Oid			relid,
					root;

		if (is_para_sync_trigger(stmt->trigname) &&
			named_synced_partition(stmt->relation, &relid, &root))
			install_truncate_trigger(relid);
	}
	else if (IsA(tree, AlterTableStmt))
	{
		ListCell   *lc;

		foreach(lc, ((AlterTableStmt *) tree)->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

			if (((AlterTableStmt *) tree)->objtype != OBJECT_TABLE)
				continue;
			if (cmd->subtype == AT_AttachPartition)
				became_partition(RangeVarGetRelid(castNode(PartitionCmd, cmd->def)->name,
												  NoLock, true), true);
			else if (cmd->subtype == AT_DetachPartition)
			{
				Oid			part = RangeVarGetRelid(castNode(PartitionCmd, cmd->def)->name,
													NoLock, true);

				if (OidIsValid(part))
					partition_drop_truncate_triggers(part);
			}
		}
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * sql_drop: a partition of a synced root dropped other than by DROP TABLE
 * (whose ddl_command_start published its deletes, lifecycle.c).  Such a
 * partition is a dropped table dropped with its clone of the capture
 * trigger; one synced on its own is lifecycle.c's to refuse.
 */
Datum
para_sync_partition_check_dropped(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	int			rc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.partition_check_dropped() must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (trigdata->tag == CMDTAG_DROP_TABLE || !registry_exists())
		PG_RETURN_VOID();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute("SELECT t.object_identity"
					 "  FROM pg_catalog.pg_event_trigger_dropped_objects() t"
					 "  JOIN pg_catalog.pg_event_trigger_dropped_objects() g"
					 "    ON g.object_type OPERATOR(pg_catalog.=) 'trigger'"
					 "   AND g.object_identity OPERATOR(pg_catalog.=)"
					 "       ('para_sync_capture on ' OPERATOR(pg_catalog.||) t.object_identity)"
					 " WHERE t.object_type OPERATOR(pg_catalog.=) 'table'"
					 " LIMIT 1", true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync dropped-partition look-up failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop partition %s of a synced table indirectly",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errdetail("Its rows could no longer be published as deletes under its root's sync name."),
				 errhint("Drop it with DROP TABLE, or detach it with ALTER TABLE ... DETACH PARTITION, first.")));
	SPI_finish();
	PG_RETURN_VOID();
}
