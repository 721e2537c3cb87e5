/*
 * sync_names.c — a sync name stays bound to the role that first tagged a
 * table under it.
 *
 * Keys and subjects carry only the sync name, so whoever tags a table under
 * a name speaks for every key of that name: its sequences continue, and
 * replicas apply what it writes.  para_sync.sync_names therefore records an
 * owner role for every name ever used (the table's owner when the name was
 * first claimed).  The claim survives unsync_table() and DROP TABLE; only
 * the owner role (or a member of it, or a superuser) may tag a table under
 * the name again or release it with para_sync.release_sync_name(), and only
 * while no table uses it.  The owner is a regrole, so pg_dump writes it by
 * name and a restore maps it to the role of that name.
 *
 * An owner role is treated like the owner of PostgreSQL objects:
 *
 *   - DROP ROLE is refused while the role owns sync names in the current
 *     database (DEPENDENT_OBJECTS_STILL_EXIST, the names in the detail);
 *   - REASSIGN OWNED BY a TO b passes a's names in the current database
 *     to b;
 *   - DROP OWNED BY a releases a's names in the current database, but a
 *     name still used by a synced table passes to that table's owner.
 *
 * A ProcessUtility hook (chained like pg_stat_statements does) does that
 * for DROP ROLE and REASSIGN OWNED, an event trigger for DROP OWNED (it
 * must run also where no hook is loaded, see below), in the database it
 * runs in; para_sync cannot read other databases.  For
 * those, every owner also holds SELECT on para_sync.sync_names, granted
 * and revoked by the table's trigger (para_sync--0.2--0.3.sql) as names
 * come and go: a privilege PostgreSQL itself tracks cluster-wide, so DROP
 * ROLE in any database is refused while the role owns sync names anywhere
 * ("privileges for table para_sync.sync_names" / "1 object in database
 * ...").  A name can thus never be left bound to a dropped role whose OID a
 * later role might reuse.
 *
 * This file decides; the statements on para_sync.sync_names (and
 * para_sync.tables) that carry the decisions out are registry.c's.
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(para_sync_release_sync_name);

static void
not_name_owner(const char *sync_name, Oid owner)
{
	char	   *owner_name = GetUserNameFromId(owner, true);

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("sync name \"%s\" belongs to role \"%s\"", sync_name,
					owner_name ? owner_name : psprintf("%u", owner)),
			 errdetail("A sync name stays bound to the role that first tagged a table under it, even after unsync_table() or DROP TABLE."),
			 errhint("Choose another name with name => '...', or have role \"%s\" or a superuser call para_sync.release_sync_name('%s').",
					 owner_name ? owner_name : psprintf("%u", owner), sync_name)));
}

/*
 * Claim sync_name for a table owned by table_owner, or check that the caller
 * may use the existing claim.  The claim row stays locked to the end of the
 * transaction, so a concurrent release_sync_name() waits for the tagging to
 * commit.  Caller is connected to SPI.
 */
void
sync_names_claim(const char *sync_name, Oid table_owner)
{
	Oid			owner;

	outbox_require_updated_schema();
	owner = registry_sync_name_claim(sync_name, table_owner);
	if (!has_privs_of_role(GetUserId(), owner))
		not_name_owner(sync_name, owner);
}

/*
 * release_sync_name(name): forget the claim on name, so that any table owner
 * may tag a table under it.  Needs the privileges of the owning role (or
 * superuser); refused while a table is synced under the name.  Every key of
 * the name keeps its sequence.
 */
Datum
para_sync_release_sync_name(PG_FUNCTION_ARGS)
{
	char	   *sync_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			owner;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	outbox_require_updated_schema();
	/* delete first: waits for a concurrent sync_table() of the name */
	owner = registry_sync_name_release(sync_name);
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sync name \"%s\" is not claimed", sync_name),
				 errhint("See para_sync.sync_names for the claimed sync names.")));
	if (!has_privs_of_role(GetUserId(), owner))
		not_name_owner(sync_name, owner);
	if (registry_sync_name_in_use(sync_name))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("sync name \"%s\" is in use", sync_name),
				 errhint("Stop syncing its table with para_sync.unsync_table() first.")));
	SPI_finish();
	PG_RETURN_VOID();
}

/* ------------------------------------------------------------------------
 * Owner roles: DROP ROLE, REASSIGN OWNED, DROP OWNED
 * ------------------------------------------------------------------------ */

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Does the current database have para_sync with sync names (0.2 on)? */
static bool
have_sync_names(void)
{
	return OidIsValid(get_extension_oid("para_sync", true)) &&
		!outbox_relations()->legacy_schema;
}

/* The role OIDs of a list of RoleSpecs; missing roles are skipped. */
static ArrayType *
role_oids(List *roles)
{
	Datum	   *oids = palloc(sizeof(Datum) * (list_length(roles) + 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, roles)
	{
		Oid			role = get_rolespec_oid(lfirst(lc), true);

		if (OidIsValid(role))
			oids[n++] = ObjectIdGetDatum(role);
	}
	return construct_array(oids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT);
}

/* The detail's list of names: the first ten, and how many more. */
static char *
names_listed(List *names)
{
	StringInfoData out;
	ListCell   *lc;

	initStringInfo(&out);
	foreach(lc, names)
	{
		if (foreach_current_index(lc) == 10)
			break;
		appendStringInfo(&out, "%s\"%s\"", foreach_current_index(lc) > 0 ? ", " : "",
						 (char *) lfirst(lc));
	}
	if (list_length(names) > 10)
		appendStringInfo(&out, " and %llu more",
						 (unsigned long long) (list_length(names) - 10));
	return out.data;
}

/* May the current user drop roles (PostgreSQL 15's DROP ROLE check)? */
static bool
may_drop_roles(void)
{
	HeapTuple	tup;
	bool		may;

	if (superuser())
		return true;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (!HeapTupleIsValid(tup))
		return false;
	may = ((Form_pg_authid) GETSTRUCT(tup))->rolcreaterole;
	ReleaseSysCache(tup);
	return may;
}

/*
 * DROP ROLE: refused while a role owns sync names here.  A caller who may
 * not drop the role is left to PostgreSQL's own refusal (42501), which
 * names no sync name.
 */
static void
check_drop_role(DropRoleStmt *stmt)
{
	ListCell   *lc;

	if (!may_drop_roles())
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	foreach(lc, stmt->roles)
	{
		RoleSpec   *rs = lfirst(lc);
		Oid			role;
		List	   *names;

		if (rs->roletype != ROLESPEC_CSTRING)
			continue;			/* PostgreSQL refuses CURRENT_USER etc. */
		role = get_role_oid(rs->rolename, true);
		if (!OidIsValid(role) || (superuser_arg(role) && !superuser()))
			continue;
		names = registry_sync_names_of_role(role);
		if (names == NIL)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("role \"%s\" cannot be dropped because some objects depend on it",
						rs->rolename),
				 errdetail("owner of para_sync sync names %s in database \"%s\"",
						   names_listed(names), get_database_name(MyDatabaseId)),
				 errhint("Pass them to another role with REASSIGN OWNED BY %s TO ..., release them with DROP OWNED BY %s or para_sync.release_sync_name(), in every database where the role owns sync names.",
						 quote_identifier(rs->rolename), quote_identifier(rs->rolename))));
	}
	SPI_finish();
}

/* REASSIGN OWNED BY ... TO new: the roles' sync names here go to new. */
static void
follow_reassign_owned(ReassignOwnedStmt *stmt)
{
	Oid			new_owner = get_rolespec_oid(stmt->newrole, false);
	ArrayType  *roles = role_oids(stmt->roles);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	registry_sync_names_reassign(roles, new_owner);
	SPI_finish();
}

/*
 * DROP OWNED BY ...: the roles' sync names here are released, but a name a
 * synced table still uses passes to that table's owner (whose table speaks
 * for the name's keys now).
 */
static void
follow_drop_owned(DropOwnedStmt *stmt)
{
	ArrayType  *roles = role_oids(stmt->roles);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	registry_sync_names_drop_owned(roles);
	SPI_finish();
}

static void
sync_names_process_utility(PlannedStmt *pstmt, const char *queryString,
						   bool readOnlyTree, ProcessUtilityContext context,
						   ParamListInfo params, QueryEnvironment *queryEnv,
						   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		follow = false;

	switch (nodeTag(parsetree))
	{
		case T_DropRoleStmt:
			if (IsTransactionState() && have_sync_names())
				check_drop_role((DropRoleStmt *) parsetree);
			break;
		case T_ReassignOwnedStmt:
			follow = true;
			break;
		default:
			break;
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	/* PostgreSQL checked the caller's privileges over the roles */
	if (follow && have_sync_names())
		follow_reassign_owned((ReassignOwnedStmt *) parsetree);
}

/*
 * DROP OWNED follows from an event trigger (ddl_command_end, tag DROP
 * OWNED, para_sync--0.2--0.3.sql), not from the hook: DROP OWNED revokes
 * the owner's privilege on para_sync.sync_names, the one guard left against
 * a later DROP ROLE, so it must be followed in every session, also one that
 * has not loaded this library (no shared_preload_libraries) and so has no
 * hook; calling the trigger loads it.
 */
PG_FUNCTION_INFO_V1(para_sync_sync_names_drop_owned);

Datum
para_sync_sync_names_drop_owned(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("para_sync.sync_names_drop_owned() must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (IsA(trigdata->parsetree, DropOwnedStmt) && have_sync_names())
		follow_drop_owned((DropOwnedStmt *) trigdata->parsetree);
	PG_RETURN_VOID();
}

/* Called from _PG_init. */
void
sync_names_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = sync_names_process_utility;
}
