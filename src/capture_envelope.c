/*
 * capture_envelope.c — capture_envelope_build: every envelope the server writes
 * (capture.c's outbox rows, table_event.c's reload, snapshot() and
 * snapshot_table()) is built here, around a value map from row_encode.c,
 * by the shared codec (src/common/envelope.c), into a StringInfo
 * (mp_sink.h).  Its key is checked here, by the validator libparasync uses
 * (src/common/key_escape.c).  The one envelope built elsewhere is the
 * publisher's op refetch stand-in for an envelope too large to send
 * (publisher_batch.c), made from an outbox row's key and sequence.
 */
#include "para_sync.h"

/*
 * The envelope as a bytea, encoded by the shared codec straight behind the
 * varlena header (no extra copy).  value NULL means nil; a reload (a
 * table-level event, docs/protocol.md) has no value field.  scope: the
 * row's scope token (scope.c), the last field, or NULL for none.
 */
bytea *
capture_envelope_build_scoped(const char *key, int key_len, StringInfo value,
							  const char *schema_version, uint64 sequence, psync_op op,
							  bool has_txid, uint64 txid, const char *scope)
{
	static const uint8 nil = 0xc0;
	StringInfoData out;
	psync_envelope env = {0};

	/* the one key grammar clients accept (key_escape.c): never send another */
	if (!(op == PSYNC_OP_RELOAD ? psync_sync_name_is_valid(key, key_len)
		  : psync_key_is_valid(key, key_len)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("para_sync built an invalid key \"%.*s\"", key_len, key),
				 errdetail("Clients refuse keys outside the grammar of docs/protocol.md.")));
	initStringInfo(&out);
	appendStringInfoSpaces(&out, VARHDRSZ);
	env.key = key;
	env.key_len = key_len;
	env.has_value = op != PSYNC_OP_RELOAD;
	env.value = value ? (const uint8_t *) value->data : &nil;
	env.value_len = value ? value->len : 1;
	env.schema_version = schema_version;
	env.schema_version_len = strlen(schema_version);
	env.sequence = sequence;
	env.op = op;
	env.has_txid = has_txid;
	env.txid = txid;
	env.scope = scope;
	env.scope_len = scope ? strlen(scope) : 0;
	if (scope != NULL && !psync_scope_is_valid(scope, env.scope_len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("para_sync built an invalid scope \"%s\"", scope),
				 errdetail("Clients refuse scopes outside the grammar of docs/protocol.md.")));
	if (psync_envelope_encode(&env, mp_sink_stringinfo, &out) != 0)
		elog(ERROR, "could not encode para_sync envelope");
	SET_VARSIZE(out.data, out.len);
	return (bytea *) out.data;
}

/* The same for a table without a scope. */
bytea *
capture_envelope_build(const char *key, int key_len, StringInfo value,
			   const char *schema_version, uint64 sequence, psync_op op,
			   bool has_txid, uint64 txid)
{
	return capture_envelope_build_scoped(key, key_len, value, schema_version,
										 sequence, op, has_txid, txid, NULL);
}
