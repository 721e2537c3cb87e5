/*
 * para_sync/envelope.h — the para_sync envelope codec (wire format, SPEC §3).
 *
 * One module, shared by the PostgreSQL extension (which encodes) and by
 * libparasync (which decodes and, for in-process publishers, encodes).  It
 * depends only on libc and msgpack-c: no PostgreSQL headers and no
 * PostgreSQL memory calls, so the server wraps it with its own buffers.
 *
 * An envelope is a MessagePack map with string keys:
 *   key            str
 *   value          map, nil, or absent (op refetch): carried as raw msgpack
 *   schema_version str
 *   sequence       uint
 *   op             str: "upsert" | "delete" | "snapshot" | "refetch"
 *   txid           uint (absent in snapshots)
 */
#ifndef PARA_SYNC_ENVELOPE_H
#define PARA_SYNC_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest key the server accepts (bytes, after escaping). */
#define PSYNC_MAX_KEY_LEN 1024

typedef enum psync_op
{
	PSYNC_OP_UPSERT = 0,
	PSYNC_OP_DELETE,
	PSYNC_OP_SNAPSHOT,
	PSYNC_OP_REFETCH
} psync_op;

/*
 * A decoded (or to-be-encoded) envelope.  Every pointer refers into the
 * buffer that was decoded (or is owned by the caller when encoding): the
 * codec never allocates.
 *
 * value/value_len is the raw MessagePack encoding of the value (a map, or
 * the single byte 0xc0 for nil).  has_value is false only when the field is
 * absent (op refetch).
 */
typedef struct psync_envelope
{
	const char *key;
	size_t		key_len;
	const uint8_t *value;
	size_t		value_len;
	bool		has_value;
	const char *schema_version;
	size_t		schema_version_len;
	uint64_t	sequence;
	psync_op	op;
	bool		has_txid;
	uint64_t	txid;
} psync_envelope;

/* Sink for encoded bytes; returns 0 on success (msgpack_packer_write shape). */
typedef int (*psync_write_fn) (void *ctx, const char *buf, size_t len);

/* Text form of an op ("upsert", ...); NULL for an out-of-range value. */
const char *psync_op_name(psync_op op);

/*
 * Encode env through write(ctx, ...).  Returns 0 on success, -1 when the
 * sink failed or env is invalid (key missing, value not valid msgpack is
 * NOT checked: the encoder trusts value bytes it is given).
 */
int			psync_envelope_encode(const psync_envelope *env,
								  psync_write_fn write, void *ctx);

#ifdef __cplusplus
}
#endif

#endif							/* PARA_SYNC_ENVELOPE_H */
