/*
 * sequence_store.c — the per-object sequence counters and the outbox.
 *
 * An object's last sequence is the highest seq of its rows still in
 * para_sync.outbox, or, once they were all consumed, its row in
 * para_sync.counters (written by para_sync.ack(), off the write path).  So a
 * change costs one read of two indexes and one outbox insert: the counter
 * travels in the outbox row itself.
 *
 * Writers of one object are serialized by the row lock or unique-index
 * check on the synced table itself (the capture trigger fires AFTER ROW),
 * so the next writer reads the counter only after the previous one
 * committed or rolled back.  The read uses a fresh snapshot so that it sees
 * that commit even under REPEATABLE READ.  The outbox primary key (key, seq)
 * is the safety net: a duplicate sequence can never be stored.
 *
 * The statements run as the extension owner (table writers have no
 * privileges on para_sync's tables) through SPI plans prepared once.
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

static SPIPlanPtr last_seq_plan = NULL;
static SPIPlanPtr append_plan = NULL;
static Oid	internal_owner = InvalidOid;

static Oid
relation_owner(Oid relid)
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
Oid
para_sync_internal_owner(void)
{
	if (!OidIsValid(internal_owner))
	{
		Oid			nsp = get_namespace_oid("para_sync", false);
		Oid			outbox = get_relname_relid("outbox", nsp);

		if (!OidIsValid(outbox))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("para_sync.outbox does not exist"),
					 errhint("Run CREATE EXTENSION para_sync in this database.")));
		internal_owner = relation_owner(outbox);
	}
	return internal_owner;
}

/* Forget plans and owner (after the extension was dropped or re-created). */
void
sequence_store_reset_plans(void)
{
	internal_owner = InvalidOid;
	if (last_seq_plan)
		SPI_freeplan(last_seq_plan);
	if (append_plan)
		SPI_freeplan(append_plan);
	last_seq_plan = append_plan = NULL;
}

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

static void
prepare_plans(void)
{
	Oid			last_types[1] = {TEXTOID};
	Oid			append_types[5] = {TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID, BYTEAOID};

	if (last_seq_plan == NULL)
		last_seq_plan = prepare_kept(
			"SELECT COALESCE("
			"(SELECT o.seq FROM para_sync.outbox o"
			"  WHERE o.key OPERATOR(pg_catalog.=) $1 COLLATE \"C\""
			"  ORDER BY o.key, o.seq DESC LIMIT 1),"
			" (SELECT c.seq FROM para_sync.counters c"
			"  WHERE c.key OPERATOR(pg_catalog.=) $1 COLLATE \"C\"),"
			" 0)", 1, last_types);
	if (append_plan == NULL)
		append_plan = prepare_kept(
			"INSERT INTO para_sync.outbox (key, seq, txid, queued_at, envelope)"
			" VALUES ($1, $2, $3, $4, $5)", 5, append_types);
}

void
become_internal_owner(OwnerSwitch *sw)
{
	Oid			owner = para_sync_internal_owner();

	GetUserIdAndSecContext(&sw->saved_user, &sw->saved_context);
	SetUserIdAndSecContext(owner, sw->saved_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
restore_user(const OwnerSwitch *sw)
{
	SetUserIdAndSecContext(sw->saved_user, sw->saved_context);
}

/*
 * The last sequence of key (0 if never seen).  latest: read with a fresh
 * snapshot (the capture trigger); otherwise with the active snapshot, so
 * that snapshot() reads value and sequence consistently.  Caller is
 * connected to SPI.
 */
int64
sequence_store_last(const char *key, int key_len, bool latest)
{
	Datum		arg = PointerGetDatum(cstring_to_text_with_len(key, key_len));
	OwnerSwitch sw;
	int			rc;
	bool		isnull;
	int64		seq;

	prepare_plans();
	become_internal_owner(&sw);
	if (latest)
		rc = SPI_execute_snapshot(last_seq_plan, &arg, NULL, GetLatestSnapshot(),
								  InvalidSnapshot, true, false, 1);
	else
		rc = SPI_execute_plan(last_seq_plan, &arg, NULL, true, 1);
	restore_user(&sw);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "para_sync: sequence look-up failed: %s",
			 SPI_result_code_string(rc));
	seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return seq;
}

/* Store one envelope in the outbox, in the current transaction. */
void
sequence_store_append(const char *key, int key_len, int64 seq, int64 txid,
					  bytea *envelope)
{
	Datum		args[5];
	OwnerSwitch sw;
	int			rc;

	prepare_plans();
	args[0] = PointerGetDatum(cstring_to_text_with_len(key, key_len));
	args[1] = Int64GetDatum(seq);
	args[2] = Int64GetDatum(txid);
	args[3] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	args[4] = PointerGetDatum(envelope);
	become_internal_owner(&sw);
	rc = SPI_execute_plan(append_plan, args, NULL, false, 0);
	restore_user(&sw);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "para_sync: outbox insert failed: %s",
			 SPI_result_code_string(rc));
	/* later look-ups in this transaction must see this row */
	CommandCounterIncrement();
}
