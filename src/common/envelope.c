/*
 * envelope.c — the para_sync envelope codec, shared by server and client.
 *
 * Owns the wire format of docs/protocol.md ("The envelope"): field names,
 * their order, and the smallest-encoding rule for integers (msgpack-c's
 * packer already picks the smallest form), and the strict decoder, which
 * reads MessagePack through mp_reader.h.  It must stay free of PostgreSQL
 * headers: the extension links it into para_sync.so and libparasync links
 * the very same object.
 */
#include "para_sync/envelope.h"
#include "para_sync/key.h"
#include "mp_reader.h"

#include <stddef.h>
#include <string.h>

#include <msgpack.h>

static const char *const op_names[] = {
	[PSYNC_OP_UPSERT] = "upsert",
	[PSYNC_OP_DELETE] = "delete",
	[PSYNC_OP_SNAPSHOT] = "snapshot",
	[PSYNC_OP_REFETCH] = "refetch",
	[PSYNC_OP_RELOAD] = "reload",
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

/* The struct a program built before the scope members passes. */
#define ENVELOPE_SIZE_BEFORE_SCOPE offsetof(psync_envelope, scope)

static int
encode_envelope(const psync_envelope *env, psync_write_fn write, void *ctx)
{
	msgpack_packer pk;
	const char *op = psync_op_name(env->op);
	size_t		nfields = 4 + (env->has_value ? 1 : 0) + (env->has_txid ? 1 : 0) +
		(env->scope != NULL ? 1 : 0);

	if (op == NULL || env->key == NULL || env->schema_version == NULL)
		return -1;
	if (env->scope != NULL && !psync_scope_is_valid(env->scope, env->scope_len))
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
	if (env->scope != NULL &&
		pack_field_str(&pk, "scope", env->scope, env->scope_len) != 0)
		return -1;
	return 0;
}

int
psync_envelope_encode_sized(const psync_envelope *env, size_t env_size,
							psync_write_fn write, void *ctx)
{
	psync_envelope full;

	if (env == NULL || env_size < ENVELOPE_SIZE_BEFORE_SCOPE)
		return -1;
	if (env_size >= sizeof(full))
		return encode_envelope(env, write, ctx);
	memset(&full, 0, sizeof(full));
	memcpy(&full, env, env_size);
	return encode_envelope(&full, write, ctx);
}

/* The symbol of the first ABI: its callers' struct ends before scope. */
#undef psync_envelope_encode
int
psync_envelope_encode(const psync_envelope *env, psync_write_fn write, void *ctx)
{
	return psync_envelope_encode_sized(env, ENVELOPE_SIZE_BEFORE_SCOPE, write, ctx);
}

/* ------------------------------------------------------------------------
 * Decoding: a strict, allocation-free, bounded-depth MessagePack walker,
 * on the one MessagePack reader (mp_reader.h, which envelope_json.c in the
 * server uses too).
 *
 * Every item is checked against the bytes that remain before it is read, and
 * every container element costs at least one input byte, so a declared count
 * or length larger than the input is reported as truncation at once: the walk
 * is O(len) whatever the input claims.
 * ------------------------------------------------------------------------
 */

static const char *const decode_error_texts[] = {
	[PSYNC_DECODE_OK] = "ok",
	[PSYNC_DECODE_TRUNCATED] = "truncated input or declared length beyond the input",
	[PSYNC_DECODE_INVALID_TYPE] = "invalid MessagePack type byte or extension",
	[PSYNC_DECODE_TRAILING_BYTES] = "trailing bytes after the envelope",
	[PSYNC_DECODE_TOO_DEEP] = "value nested too deeply",
	[PSYNC_DECODE_NOT_A_MAP] = "envelope is not a map",
	[PSYNC_DECODE_BAD_FIELD_NAME] = "envelope field name is not a string",
	[PSYNC_DECODE_DUPLICATE_FIELD] = "duplicate envelope field",
	[PSYNC_DECODE_MISSING_FIELD] = "required envelope field missing",
	[PSYNC_DECODE_WRONG_TYPE] = "envelope field has the wrong type",
	[PSYNC_DECODE_BAD_KEY] = "invalid key",
	[PSYNC_DECODE_BAD_UTF8] = "invalid UTF-8",
	[PSYNC_DECODE_BAD_OP] = "unknown op",
	[PSYNC_DECODE_BAD_SEQUENCE] = "sequence negative or out of range",
	[PSYNC_DECODE_TOO_LARGE] = "field longer than its limit",
	[PSYNC_DECODE_BAD_SCOPE] = "invalid scope",
};

const char *
psync_decode_error_text(psync_decode_error err)
{
	if ((int) err < 0 ||
		(size_t) err >= sizeof(decode_error_texts) / sizeof(decode_error_texts[0]))
		return "unknown decode error";
	return decode_error_texts[err];
}

/* An error of the reader (mp_reader.h) as a decode error. */
static inline psync_decode_error
mp_error(mp_status st)
{
	switch (st)
	{
		case MP_OK:
			return PSYNC_DECODE_OK;
		case MP_INCOMPLETE:
		case MP_PAST_END:
			return PSYNC_DECODE_TRUNCATED;
		default:				/* 0xc1, a timestamp of another length */
			return PSYNC_DECODE_INVALID_TYPE;
	}
}

/* Hard cap on max_depth: the walker's explicit stack lives on the C stack. */
#define MP_DEPTH_CAP 64

/*
 * Skip one item and all it contains.  Iterative, with an explicit stack of
 * "items left" per open container: depth is bounded by max_depth, and every
 * element costs at least one byte, so a count beyond the input is truncation.
 */
static psync_decode_error
mp_skip_item(mp_reader *r, int depth, int max_depth)
{
	uint64_t	stack[MP_DEPTH_CAP];
	int			top = 0;
	uint64_t	left = 1;		/* items left in the innermost container */

	if (max_depth > MP_DEPTH_CAP)
		max_depth = MP_DEPTH_CAP;
	for (;;)
	{
		uint64_t	items;
		bool		container;
		mp_status	st;

		while (left == 0)
		{
			if (top == 0)
				return PSYNC_DECODE_OK;
			left = stack[--top];
		}
		left--;
		if ((st = mp_skip(r, &container, &items)) != MP_OK)
			return mp_error(st);
		if (!container)
			continue;
		if (depth + top >= max_depth)
			return PSYNC_DECODE_TOO_DEEP;
		if (items > mp_left(r))
			return PSYNC_DECODE_TRUNCATED;
		stack[top++] = left;
		left = items;
	}
}

psync_decode_error
psync_msgpack_validate(const void *buf, size_t len, int max_depth)
{
	mp_reader	r = {(const uint8_t *) buf, (const uint8_t *) buf + len};
	psync_decode_error err;

	if (buf == NULL)
		return PSYNC_DECODE_TRUNCATED;
	err = mp_skip_item(&r, 0, max_depth);
	if (err == PSYNC_DECODE_OK && r.p != r.end)
		err = PSYNC_DECODE_TRAILING_BYTES;
	return err;
}

/* Read a str header and body; non-str types are WRONG_TYPE. */
static inline psync_decode_error
mp_read_str(mp_reader *r, const char **s, size_t *len)
{
	mp_item		it = {.data = NULL};	/* gcc cannot see mp_next() set it */
	mp_status	st;

	if (mp_left(r) < 1)
		return PSYNC_DECODE_TRUNCATED;
	if (mp_peek(r) != MP_STR)
		return PSYNC_DECODE_WRONG_TYPE;
	if ((st = mp_next(r, &it)) != MP_OK)
		return mp_error(st);
	*s = (const char *) it.data;
	*len = (size_t) it.len;
	return PSYNC_DECODE_OK;
}

/*
 * Read a non-negative integer.  The server writes the uint family; a
 * non-negative value in the int family (other encoders) is accepted too.
 */
static psync_decode_error
mp_read_uint(mp_reader *r, uint64_t *v)
{
	mp_item		it;
	mp_kind		kind = mp_peek(r);
	mp_status	st;

	if (mp_left(r) < 1)
		return PSYNC_DECODE_TRUNCATED;
	if (kind != MP_UINT && kind != MP_INT)
		return PSYNC_DECODE_WRONG_TYPE;
	if ((st = mp_next(r, &it)) != MP_OK)
		return mp_error(st);
	if (kind == MP_UINT)
		*v = it.u;
	else if (it.i < 0)
		return PSYNC_DECODE_BAD_SEQUENCE;
	else
		*v = (uint64_t) it.i;
	return PSYNC_DECODE_OK;
}

static bool
utf8_is_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = p[i];
		size_t		n;
		uint32_t	cp;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++)
		{
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
			(n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += n + 1;
	}
	return true;
}

/*
 * A key as it travels (docs/protocol.md grammar, the server's own check): an
 * object's key, or a table event's, which is the sync name alone.
 */
bool
psync_envelope_key_is_valid(const char *s, size_t len)
{
	return psync_key_is_valid(s, len) || psync_sync_name_is_valid(s, len);
}

static bool
parse_op(const char *s, size_t len, psync_op *op)
{
	for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
	{
		if (strlen(op_names[i]) == len && memcmp(op_names[i], s, len) == 0)
		{
			*op = (psync_op) i;
			return true;
		}
	}
	return false;
}

enum envelope_field
{
	FIELD_KEY = 1 << 0,
	FIELD_VALUE = 1 << 1,
	FIELD_SCHEMA_VERSION = 1 << 2,
	FIELD_SEQUENCE = 1 << 3,
	FIELD_OP = 1 << 4,
	FIELD_TXID = 1 << 5,
	FIELD_SCOPE = 1 << 6,
	FIELD_UNKNOWN = 0
};

/* The field names have distinct lengths but value/scope: a memcmp or two decide. */
static enum envelope_field
field_of(const char *name, size_t len)
{
	const char *expect;
	enum envelope_field field;

	switch (len)
	{
		case 3: expect = "key"; field = FIELD_KEY; break;
		case 5:
			if (memcmp(name, "scope", 5) == 0)
				return FIELD_SCOPE;
			expect = "value"; field = FIELD_VALUE; break;
		case 14: expect = "schema_version"; field = FIELD_SCHEMA_VERSION; break;
		case 8: expect = "sequence"; field = FIELD_SEQUENCE; break;
		case 2: expect = "op"; field = FIELD_OP; break;
		case 4: expect = "txid"; field = FIELD_TXID; break;
		default: return FIELD_UNKNOWN;
	}
	return memcmp(name, expect, len) == 0 ? field : FIELD_UNKNOWN;
}

/* The value: a map (validated to the depth limit) or nil. */
static psync_decode_error
decode_value(mp_reader *r, psync_envelope *out)
{
	const uint8_t *start = r->p;
	mp_kind		kind = mp_peek(r);
	psync_decode_error err;

	if (mp_left(r) < 1)
		return PSYNC_DECODE_TRUNCATED;
	if (kind != MP_NIL && kind != MP_MAP)
		return PSYNC_DECODE_WRONG_TYPE;
	err = mp_skip_item(r, 0, PSYNC_DECODE_MAX_DEPTH);
	if (err != PSYNC_DECODE_OK)
		return err;
	out->value = start;
	out->value_len = (size_t) (r->p - start);
	out->has_value = true;
	return PSYNC_DECODE_OK;
}

static psync_decode_error
decode_field(mp_reader *r, enum envelope_field field, psync_envelope *out)
{
	const char *s;
	size_t		len;
	psync_decode_error err;

	switch (field)
	{
		case FIELD_KEY:
			if ((err = mp_read_str(r, &out->key, &out->key_len)) != PSYNC_DECODE_OK)
				return err;
			return psync_envelope_key_is_valid(out->key, out->key_len) ? PSYNC_DECODE_OK : PSYNC_DECODE_BAD_KEY;
		case FIELD_VALUE:
			return decode_value(r, out);
		case FIELD_SCHEMA_VERSION:
			if ((err = mp_read_str(r, &s, &len)) != PSYNC_DECODE_OK)
				return err;
			if (len > PSYNC_MAX_SCHEMA_VERSION_LEN)
				return PSYNC_DECODE_TOO_LARGE;
			if (!utf8_is_valid(s, len))
				return PSYNC_DECODE_BAD_UTF8;
			out->schema_version = s;
			out->schema_version_len = len;
			return PSYNC_DECODE_OK;
		case FIELD_SEQUENCE:
			if ((err = mp_read_uint(r, &out->sequence)) != PSYNC_DECODE_OK)
				return err;
			return out->sequence <= PSYNC_MAX_SEQUENCE ? PSYNC_DECODE_OK : PSYNC_DECODE_BAD_SEQUENCE;
		case FIELD_OP:
			if ((err = mp_read_str(r, &s, &len)) != PSYNC_DECODE_OK)
				return err;
			return parse_op(s, len, &out->op) ? PSYNC_DECODE_OK : PSYNC_DECODE_BAD_OP;
		case FIELD_TXID:
			if ((err = mp_read_uint(r, &out->txid)) != PSYNC_DECODE_OK)
				return err == PSYNC_DECODE_BAD_SEQUENCE ? PSYNC_DECODE_WRONG_TYPE : err;
			out->has_txid = true;
			return PSYNC_DECODE_OK;
		case FIELD_SCOPE:
			if ((err = mp_read_str(r, &s, &len)) != PSYNC_DECODE_OK)
				return err;
			if (!psync_scope_is_valid(s, len))
				return PSYNC_DECODE_BAD_SCOPE;
			out->scope = s;
			out->scope_len = len;
			return PSYNC_DECODE_OK;
		case FIELD_UNKNOWN:
			break;
	}
	return mp_skip_item(r, 0, PSYNC_DECODE_MAX_DEPTH);
}

static psync_decode_error
decode_map_header(mp_reader *r, uint64_t *count)
{
	mp_item		it = {.len = 0};	/* as in mp_read_str */
	mp_status	st;

	if (mp_left(r) < 1)
		return PSYNC_DECODE_TRUNCATED;
	if (mp_peek(r) != MP_MAP)
		return PSYNC_DECODE_NOT_A_MAP;
	if ((st = mp_next(r, &it)) != MP_OK)
		return mp_error(st);
	*count = it.len;
	return PSYNC_DECODE_OK;
}

static psync_decode_error
decode_envelope(mp_reader *r, psync_envelope *out)
{
	uint64_t	count;
	unsigned	seen = 0;
	const unsigned required = FIELD_KEY | FIELD_SCHEMA_VERSION | FIELD_SEQUENCE | FIELD_OP;
	psync_decode_error err = decode_map_header(r, &count);

	if (err != PSYNC_DECODE_OK)
		return err;
	if (count * 2 > mp_left(r))
		return PSYNC_DECODE_TRUNCATED;
	for (uint64_t i = 0; i < count; i++)
	{
		const char *name;
		size_t		name_len;
		enum envelope_field field;

		err = mp_read_str(r, &name, &name_len);
		if (err == PSYNC_DECODE_WRONG_TYPE)
			return PSYNC_DECODE_BAD_FIELD_NAME;
		if (err != PSYNC_DECODE_OK)
			return err;
		field = field_of(name, name_len);
		if (field == FIELD_UNKNOWN && !utf8_is_valid(name, name_len))
			return PSYNC_DECODE_BAD_UTF8;
		if (seen & field)
			return PSYNC_DECODE_DUPLICATE_FIELD;
		seen |= field;
		if ((err = decode_field(r, field, out)) != PSYNC_DECODE_OK)
			return err;
	}
	if (r->p != r->end)
		return PSYNC_DECODE_TRAILING_BYTES;
	if ((seen & required) != required)
		return PSYNC_DECODE_MISSING_FIELD;
	if (!(seen & FIELD_VALUE) && out->op != PSYNC_OP_REFETCH && out->op != PSYNC_OP_RELOAD)
		return PSYNC_DECODE_MISSING_FIELD;
	/* a table's key carries only its events (reload), an object's key the rest */
	if ((memchr(out->key, ':', out->key_len) == NULL) != (out->op == PSYNC_OP_RELOAD))
		return PSYNC_DECODE_BAD_KEY;
	return PSYNC_DECODE_OK;
}

static psync_decode_error
decode_full(const void *buf, size_t len, psync_envelope *out)
{
	mp_reader	r = {(const uint8_t *) buf, (const uint8_t *) buf + len};
	psync_decode_error err;

	memset(out, 0, sizeof(*out));
	if (buf == NULL)
		return PSYNC_DECODE_TRUNCATED;
	err = decode_envelope(&r, out);
	if (err != PSYNC_DECODE_OK)
		memset(out, 0, sizeof(*out));
	return err;
}

psync_decode_error
psync_envelope_decode_sized(const void *buf, size_t len, psync_envelope *out,
							size_t out_size)
{
	psync_envelope full;
	psync_decode_error err;

	if (out_size >= sizeof(full))
		return decode_full(buf, len, out);
	err = decode_full(buf, len, &full);
	memcpy(out, &full, out_size);	/* an older caller's struct: its members */
	return err;
}

/* The symbol of the first ABI: its callers' struct ends before scope. */
#undef psync_envelope_decode
psync_decode_error
psync_envelope_decode(const void *buf, size_t len, psync_envelope *out)
{
	return psync_envelope_decode_sized(buf, len, out, ENVELOPE_SIZE_BEFORE_SCOPE);
}
