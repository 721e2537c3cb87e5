/*
 * catalog.c — acting as the extension owner.
 *
 * para_sync's own tables (registry, outbox, counters, sync names) are
 * owned by the extension owner; table writers and callers of the SQL
 * functions hold no privileges on them by design.  Internal statements run
 * as that owner: catalog_become_owner() switches the current user (with
 * SECURITY_RESTRICTED_OPERATION, as a SECURITY DEFINER function would) and
 * catalog_restore_user() switches back; catalog_execute_as_owner() runs one
 * SPI statement so.  The owner is looked up once per backend, from
 * para_sync.outbox's pg_class row, and forgotten whenever that relation
 * (or the whole relcache) is invalidated.
 */
#include "para_sync.h"

#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/inval.h"
#include "utils/syscache.h"

static Oid	internal_owner = InvalidOid;
static Oid	owner_read_from = InvalidOid;	/* the relation internal_owner came from */

/* para_sync.outbox was invalidated (ALTER ... OWNER, DROP): look the owner up again. */
static void
catalog_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == owner_read_from)
		internal_owner = InvalidOid;
}

void
catalog_init(void)
{
	CacheRegisterRelcacheCallback(catalog_relcache_callback, (Datum) 0);
}

/* The role that owns relation relid. */
Oid
catalog_relation_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* The role that owns para_sync's tables: internal statements run as it. */
static Oid
para_sync_internal_owner(void)
{
	if (!OidIsValid(internal_owner))
	{
		owner_read_from = outbox_relations()->outbox;
		internal_owner = catalog_relation_owner(owner_read_from);
	}
	return internal_owner;
}

void
catalog_become_owner(OwnerSwitch *sw)
{
	Oid			owner = para_sync_internal_owner();

	GetUserIdAndSecContext(&sw->saved_user, &sw->saved_context);
	SetUserIdAndSecContext(owner, sw->saved_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
catalog_restore_user(const OwnerSwitch *sw)
{
	SetUserIdAndSecContext(sw->saved_user, sw->saved_context);
}

/*
 * Run sql with args as the extension owner, in SPI (the caller connected);
 * returns SPI_execute_with_args()'s result code.
 */
int
catalog_execute_as_owner(const char *sql, int nargs, Oid *types, Datum *args,
						 const char *nulls)
{
	OwnerSwitch sw;
	int			rc;

	catalog_become_owner(&sw);
	rc = SPI_execute_with_args(sql, nargs, types, args, nulls, false, 0);
	catalog_restore_user(&sw);
	return rc;
}
