/*
 * table_event.c — table-level events: one envelope for a whole table.
 *
 * Column DDL (the DDL guard, ddl_guard*.c) changes what snapshot() returns
 * for every row of a synced table without a row change: ADD COLUMN, DROP
 * COLUMN, ALTER COLUMN ... TYPE ... USING, a renamed column.  Rewriting one envelope per
 * row would cost a 100M-row table 100M outbox rows inside the DDL; instead
 * the DDL's transaction appends one envelope for the table (docs/protocol.md,
 * "Table events" rules 1, 2, 3 and 5):
 *
 *   key             the sync name (no colon: never an object's key)
 *   schema_version  the table's new version
 *   sequence        the next number of the sync name's own counter, kept
 *                   like any key's (outbox, then para_sync.counters)
 *   op              "reload", no value
 *   txid            the DDL's transaction
 *
 * It goes through outbox_append() like a row change, so it is
 * published only once the DDL committed and is durable, on the subject its
 * key gets in the table's layout (<prefix>.<sync name>, or
 * <prefix>.<sync name>.<sync name>).  The DDL's lock on the table orders
 * the appends of one sync name.
 */
#include "para_sync.h"

#include "access/xact.h"

/* Append the reload event of sync_name, now at schema_version, to the outbox. */
void
table_event_reload(const char *sync_name, const char *schema_version, char layout)
{
	int			len = strlen(sync_name);
	uint64		txid = U64FromFullTransactionId(GetTopFullTransactionId());
	int64		seq = outbox_next_sequence(sync_name, len, NULL);
	bytea	   *envelope;

	envelope = capture_envelope_build(sync_name, len, NULL, schema_version, (uint64) seq,
							  PSYNC_OP_RELOAD, true, txid);
	outbox_append(sync_name, len, seq, (int64) txid, envelope, layout, NULL, NULL);
	para_sync_xact_wrote_envelopes = true;
}
