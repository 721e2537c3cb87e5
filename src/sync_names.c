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
 */
#include "para_sync.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(para_sync_release_sync_name);

/* Run sql as the extension owner; returns SPI_processed.  Caller is in SPI. */
static uint64
run_internal(const char *sql, int nargs, Oid *types, Datum *args, int expect)
{
	OwnerSwitch sw;
	int			rc;

	become_internal_owner(&sw);
	rc = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);
	restore_user(&sw);
	if (rc != expect)
		elog(ERROR, "para_sync sync-name statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

static Oid
result_owner(void)
{
	bool		isnull;

	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
}

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
sync_name_claim(const char *sync_name, Oid table_owner)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	Oid			owner;

	require_updated_schema();
	args[0] = CStringGetTextDatum(sync_name);
	args[1] = ObjectIdGetDatum(table_owner);
	run_internal("INSERT INTO para_sync.sync_names (sync_name, owner)"
				 " VALUES ($1, $2::pg_catalog.regrole)"
				 " ON CONFLICT (sync_name) DO NOTHING",
				 2, types, args, SPI_OK_INSERT);
	if (run_internal("SELECT n.owner::pg_catalog.oid FROM para_sync.sync_names n"
					 " WHERE n.sync_name OPERATOR(pg_catalog.=) $1 FOR SHARE",
					 1, types, args, SPI_OK_SELECT) != 1)
		elog(ERROR, "sync name \"%s\" vanished while it was claimed", sync_name);
	owner = result_owner();
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
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	Oid			owner;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	require_updated_schema();
	args[0] = PG_GETARG_DATUM(0);
	/* delete first: waits for a concurrent sync_table() of the name */
	if (run_internal("DELETE FROM para_sync.sync_names n"
					 " WHERE n.sync_name OPERATOR(pg_catalog.=) $1"
					 " RETURNING n.owner::pg_catalog.oid",
					 1, types, args, SPI_OK_DELETE_RETURNING) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sync name \"%s\" is not claimed", sync_name),
				 errhint("See para_sync.sync_names for the claimed sync names.")));
	owner = result_owner();
	if (!has_privs_of_role(GetUserId(), owner))
		not_name_owner(sync_name, owner);
	if (run_internal("SELECT 1 FROM para_sync.tables t"
					 " WHERE t.sync_name OPERATOR(pg_catalog.=) $1",
					 1, types, args, SPI_OK_SELECT) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("sync name \"%s\" is in use", sync_name),
				 errhint("Stop syncing its table with para_sync.unsync_table() first.")));
	SPI_finish();
	PG_RETURN_VOID();
}
