/*
 * fuzz_decode.c — libFuzzer harness for psync_envelope_decode.
 *
 * Any input must decode or fail cleanly: no crash, no out-of-bounds read
 * (ASan), no undefined behaviour (UBSan), no hang (libFuzzer -timeout), no
 * growth (the decoder never allocates).  On success the result must be
 * self-consistent: pointers inside the input, value a well-formed item, key
 * valid, and re-encoding then decoding gives the same envelope.
 */
#include <stdlib.h>
#include <string.h>

#include "para_sync/envelope.h"

typedef struct sink
{
	uint8_t		buf[1 << 16];
	size_t		len;
} sink;

static int
sink_write(void *ctx, const char *bytes, size_t len)
{
	sink	   *s = ctx;

	if (s->len + len > sizeof(s->buf))
		return -1;
	memcpy(s->buf + s->len, bytes, len);
	s->len += len;
	return 0;
}

static void
check_inside(const void *p, size_t n, const uint8_t *data, size_t size)
{
	if (n > 0 && ((const uint8_t *) p < data || (const uint8_t *) p + n > data + size))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	psync_envelope env,
				again;
	static sink s;

	if (psync_envelope_decode(data, size, &env) != PSYNC_DECODE_OK)
		return 0;
	check_inside(env.key, env.key_len, data, size);
	check_inside(env.schema_version, env.schema_version_len, data, size);
	if (env.has_value)
	{
		check_inside(env.value, env.value_len, data, size);
		if (psync_msgpack_validate(env.value, env.value_len, PSYNC_DECODE_MAX_DEPTH) != PSYNC_DECODE_OK)
			abort();
	}
	if (!psync_envelope_key_is_valid(env.key, env.key_len) || env.sequence > PSYNC_MAX_SEQUENCE)
		abort();
	/* round trip: what decoded must encode and decode to the same fields */
	s.len = 0;
	if (psync_envelope_encode(&env, sink_write, &s) != 0)
		return 0;				/* larger than the sink */
	if (psync_envelope_decode(s.buf, s.len, &again) != PSYNC_DECODE_OK ||
		again.sequence != env.sequence || again.op != env.op ||
		again.has_txid != env.has_txid || again.txid != env.txid ||
		again.key_len != env.key_len || memcmp(again.key, env.key, env.key_len) != 0 ||
		again.value_len != env.value_len ||
		(env.has_value && memcmp(again.value, env.value, env.value_len) != 0))
		abort();
	return 0;
}
