/*
 * envelope.c — the para_sync envelope codec, shared by server and client.
 *
 * Owns the wire format of SPEC §3: field names, their order, and the
 * smallest-encoding rule for integers (msgpack-c's packer already picks the
 * smallest form).  It must stay free of PostgreSQL headers: the extension
 * links it into para_sync.so and libparasync links the very same object.
 */
#include "para_sync/envelope.h"

#include <string.h>

#include <msgpack.h>

static const char *const op_names[] = {
	[PSYNC_OP_UPSERT] = "upsert",
	[PSYNC_OP_DELETE] = "delete",
	[PSYNC_OP_SNAPSHOT] = "snapshot",
	[PSYNC_OP_REFETCH] = "refetch",
};

const char *
psync_op_name(psync_op op)
{
	if ((int) op < 0 || (size_t) op >= sizeof(op_names) / sizeof(op_names[0]))
		return NULL;
	return op_names[op];
}

static int
pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t		len = strlen(s);

	return msgpack_pack_str_with_body(pk, s, len);
}

static int
pack_field_str(msgpack_packer *pk, const char *name, const char *s, size_t len)
{
	if (pack_cstr(pk, name) != 0)
		return -1;
	return msgpack_pack_str_with_body(pk, s, len);
}

int
psync_envelope_encode(const psync_envelope *env, psync_write_fn write, void *ctx)
{
	msgpack_packer pk;
	const char *op = psync_op_name(env->op);
	size_t		nfields = 4 + (env->has_value ? 1 : 0) + (env->has_txid ? 1 : 0);

	if (op == NULL || env->key == NULL || env->schema_version == NULL)
		return -1;
	if (env->has_value && (env->value == NULL || env->value_len == 0))
		return -1;

	msgpack_packer_init(&pk, ctx, write);
	if (msgpack_pack_map(&pk, nfields) != 0)
		return -1;
	if (pack_field_str(&pk, "key", env->key, env->key_len) != 0)
		return -1;
	if (env->has_value)
	{
		if (pack_cstr(&pk, "value") != 0 ||
			write(ctx, (const char *) env->value, env->value_len) != 0)
			return -1;
	}
	if (pack_field_str(&pk, "schema_version", env->schema_version,
					   env->schema_version_len) != 0)
		return -1;
	if (pack_cstr(&pk, "sequence") != 0 ||
		msgpack_pack_uint64(&pk, env->sequence) != 0)
		return -1;
	if (pack_field_str(&pk, "op", op, strlen(op)) != 0)
		return -1;
	if (env->has_txid)
	{
		if (pack_cstr(&pk, "txid") != 0 ||
			msgpack_pack_uint64(&pk, env->txid) != 0)
			return -1;
	}
	return 0;
}
