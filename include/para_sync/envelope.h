/*
 * para_sync/envelope.h — the para_sync envelope codec (wire format, docs/protocol.md).
 *
 * One module, shared by the PostgreSQL extension (which encodes) and by
 * libparasync (which decodes and, for in-process publishers, encodes).  It
 * depends only on libc and msgpack-c: no PostgreSQL headers and no
 * PostgreSQL memory calls, so the server wraps it with its own buffers.
 *
 * An envelope is a MessagePack map with string keys:
 *   key            str
 *   value          map, nil, or absent (ops refetch and reload): raw msgpack
 *   schema_version str
 *   sequence       uint
 *   op             str: "upsert" | "delete" | "snapshot" | "refetch" | "reload"
 *                  (reload: a table-level event, its key a sync name)
 *   txid           uint (absent in snapshots)
 *   scope          str, last: the row's scope token, only for tables with a
 *                  scope (para_sync.set_scope(); docs/protocol.md, "Scopes")
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
	PSYNC_OP_REFETCH,
	PSYNC_OP_RELOAD				/* table-level: key is a sync name, no value */
} psync_op;

/*
 * A decoded (or to-be-encoded) envelope.  Every pointer refers into the
 * buffer that was decoded (or is owned by the caller when encoding): the
 * codec never allocates.
 *
 * value/value_len is the raw MessagePack encoding of the value (a map, or
 * the single byte 0xc0 for nil).  has_value is false only when the field is
 * absent (ops refetch and reload).
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
	/*
	 * The row's scope token (psync_scope_is_valid), or NULL: no scope field
	 * (a table without a scope, a deleted row's snapshot).  Added after the
	 * first ABI: the codec functions are macros passing
	 * sizeof(psync_envelope) (see psync_envelope_decode_sized).
	 */
	const char *scope;
	size_t		scope_len;
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

/*
 * The exported forms: env_size is the caller's sizeof(psync_envelope), so
 * a program built before the scope members existed (it calls the plain
 * symbols above, which stand for the struct without them) is read and
 * written only within its struct.  The macros pass the current size.
 */
int			psync_envelope_encode_sized(const psync_envelope *env, size_t env_size,
										psync_write_fn write, void *ctx);
#define psync_envelope_encode(env, write, ctx) \
	psync_envelope_encode_sized((env), sizeof(*(env)), (write), (ctx))

/* ---- Decoding (used by libparasync; the server only encodes) ---- */

/* Deepest nesting of arrays/maps accepted inside a value (the value map is depth 1). */
#define PSYNC_DECODE_MAX_DEPTH 32
/* Longest schema_version accepted, in bytes. */
#define PSYNC_MAX_SCHEMA_VERSION_LEN 255
/* Largest sequence accepted: it must fit a PostgreSQL bigint. */
#define PSYNC_MAX_SEQUENCE ((uint64_t) INT64_MAX)

typedef enum psync_decode_error
{
	PSYNC_DECODE_OK = 0,
	PSYNC_DECODE_TRUNCATED,		/* input ends inside an item, or a declared
								 * length/count exceeds the input */
	PSYNC_DECODE_INVALID_TYPE,	/* 0xc1, or a malformed extension */
	PSYNC_DECODE_TRAILING_BYTES,	/* bytes after the envelope map */
	PSYNC_DECODE_TOO_DEEP,		/* nesting beyond PSYNC_DECODE_MAX_DEPTH */
	PSYNC_DECODE_NOT_A_MAP,		/* the envelope is not a map */
	PSYNC_DECODE_BAD_FIELD_NAME,	/* a field name that is not a string */
	PSYNC_DECODE_DUPLICATE_FIELD,
	PSYNC_DECODE_MISSING_FIELD,
	PSYNC_DECODE_WRONG_TYPE,	/* a known field with the wrong msgpack type */
	PSYNC_DECODE_BAD_KEY,		/* not a key of the grammar (psync_key_is_valid) */
	PSYNC_DECODE_BAD_UTF8,		/* schema_version or a field name not UTF-8 */
	PSYNC_DECODE_BAD_OP,		/* op not one of the five names */
	PSYNC_DECODE_BAD_SEQUENCE,	/* negative or above PSYNC_MAX_SEQUENCE */
	PSYNC_DECODE_TOO_LARGE,		/* schema_version beyond its limit */
	PSYNC_DECODE_BAD_SCOPE		/* scope not a token of the grammar (psync_scope_is_valid) */
} psync_decode_error;

/*
 * True for a key as it travels on the wire (the grammar of docs/protocol.md,
 * always one subject token): an object's key, psync_key_is_valid() of
 * para_sync/key.h (a sync name, then ':'-prefixed escaped parts, possibly
 * empty; at most PSYNC_MAX_KEY_LEN bytes), or a table event's key, the sync
 * name alone (psync_sync_name_is_valid()).  The decoder also requires that a
 * table event's key carries op reload and an object's key any other op.
 */
bool		psync_envelope_key_is_valid(const char *key, size_t len);

/* Static English text for an error code ("truncated input", ...). */
const char *psync_decode_error_text(psync_decode_error err);

/*
 * Decode one envelope from buf[0..len) into *out, without allocating.
 *
 * Strict and bounded: the whole input must be exactly one envelope map; every
 * byte of the value is walked and its MessagePack structure validated (depth
 * at most PSYNC_DECODE_MAX_DEPTH, every declared length inside the input), so
 * the work is O(len) and malformed input of any kind is an error, never a
 * crash.  key must be valid (psync_envelope_key_is_valid);
 * schema_version valid UTF-8; sequence a non-negative int <= PSYNC_MAX_SEQUENCE;
 * value a map or nil, absent only for ops "refetch" and "reload"; scope, when
 * present, a token of psync_scope_is_valid() (para_sync/key.h).  Field order is free and
 * unknown fields (with valid msgpack values) are skipped, so newer servers can
 * add fields.  On success out's pointers refer into buf; on error *out is
 * zeroed.
 */
psync_decode_error psync_envelope_decode(const void *buf, size_t len,
										 psync_envelope *out);
psync_decode_error psync_envelope_decode_sized(const void *buf, size_t len,
											   psync_envelope *out, size_t out_size);
#define psync_envelope_decode(buf, len, out) \
	psync_envelope_decode_sized((buf), (len), (out), sizeof(*(out)))

/*
 * Validate that buf[0..len) is exactly one well-formed MessagePack item of
 * nesting depth at most max_depth.  Same rules as the value walk above.
 */
psync_decode_error psync_msgpack_validate(const void *buf, size_t len,
										  int max_depth);

#ifdef __cplusplus
}
#endif

#endif							/* PARA_SYNC_ENVELOPE_H */
