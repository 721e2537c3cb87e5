/*
 * harness.h — the tiny test harness of the client tests (TAP-like output).
 *
 * Each test program prints "ok - <case>" or "not ok - <case>" per case and
 * "skip - <why>" for cases it cannot run here; run-tests counts the lines.
 * Helpers to build envelopes with msgpack-c live here too.
 */
#ifndef PSYNC_TEST_HARNESS_H
#define PSYNC_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "para_sync/client.h"

static int	harness_case_failed;
static int	harness_passed;
static int	harness_failed;

#define CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			harness_case_failed = 1; \
		} \
	} while (0)

#define CHECK_EQ_INT(a, b) \
	do { \
		long long _a = (long long) (a), _b = (long long) (b); \
		if (_a != _b) \
		{ \
			fprintf(stderr, "  %s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
					__FILE__, __LINE__, #a, #b, _a, _b); \
			harness_case_failed = 1; \
		} \
	} while (0)

#define RUN(fn) harness_run(#fn, fn)

static inline void
harness_run(const char *name, void (*fn) (void))
{
	harness_case_failed = 0;
	fn();
	if (harness_case_failed)
		harness_failed++;
	else
		harness_passed++;
	printf("%s - %s\n", harness_case_failed ? "not ok" : "ok", name);
	fflush(stdout);
}

static inline int
harness_finish(void)
{
	printf("# %d passed, %d failed\n", harness_passed, harness_failed);
	return harness_failed ? 1 : 0;
}

/* A psync_free_fn for values made with malloc. */
static inline void
test_free_value(void *ctx, void *value)
{
	(void) ctx;
	free(value);
}

/* ---- building envelopes ---- */

typedef struct test_buf
{
	char	   *data;
	size_t		len;
} test_buf;

static inline int
test_buf_write(void *ctx, const char *bytes, size_t len)
{
	test_buf   *b = ctx;

	b->data = realloc(b->data, b->len + len);
	memcpy(b->data + b->len, bytes, len);
	b->len += len;
	return 0;
}

/*
 * A value map {"name": name, "n": n} as msgpack bytes, in one of 16 rotating
 * static buffers (so a test can hold several envelopes at once).
 */
static inline const uint8_t *
test_value(const char *name, long n, size_t *len)
{
	static __thread char ring[16][512];
	static __thread unsigned next;
	char	   *storage = ring[next++ % 16];
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "name", 4);
	msgpack_pack_str_with_body(&pk, name, strlen(name));
	msgpack_pack_str_with_body(&pk, "n", 1);
	msgpack_pack_int64(&pk, n);
	memcpy(storage, sb.data, sb.size);
	*len = sb.size;
	msgpack_sbuffer_destroy(&sb);
	return (const uint8_t *) storage;
}

/* An envelope view for key with value {"name": name, "n": seq}. */
static inline psync_envelope
test_envelope(const char *key, uint64_t seq, const char *name)
{
	psync_envelope env = {0};

	env.key = key;
	env.key_len = strlen(key);
	env.value = test_value(name, (long) seq, &env.value_len);
	env.has_value = true;
	env.schema_version = "1";
	env.schema_version_len = 1;
	env.sequence = seq;
	env.op = PSYNC_OP_UPSERT;
	env.has_txid = true;
	env.txid = 1000 + seq;
	return env;
}

/* A reload, the table's event: key table, no value, sequence 1. */
static inline psync_envelope
test_reload_event(const char *table, const char *schema_version)
{
	psync_envelope env = {0};

	env.key = table;
	env.key_len = strlen(table);
	env.schema_version = schema_version;
	env.schema_version_len = strlen(schema_version);
	env.sequence = 1;
	env.op = PSYNC_OP_RELOAD;
	return env;
}

/* Encoded bytes of env (caller frees .data). */
static inline test_buf
test_encode(const psync_envelope *env)
{
	test_buf	b = {NULL, 0};

	if (psync_envelope_encode(env, test_buf_write, &b) != 0)
	{
		free(b.data);
		b.data = NULL;
		b.len = 0;
	}
	return b;
}

/* The "name" string of a value map produced by test_value ("" if none). */
static inline void
test_value_name(const uint8_t *data, size_t len, char *out, size_t outlen)
{
	msgpack_unpacked u;

	out[0] = '\0';
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, (const char *) data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
		u.data.type == MSGPACK_OBJECT_MAP)
	{
		for (uint32_t i = 0; i < u.data.via.map.size; i++)
		{
			msgpack_object_kv *kv = &u.data.via.map.ptr[i];

			if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4 &&
				memcmp(kv->key.via.str.ptr, "name", 4) == 0 &&
				kv->val.type == MSGPACK_OBJECT_STR && kv->val.via.str.size < outlen)
			{
				memcpy(out, kv->val.via.str.ptr, kv->val.via.str.size);
				out[kv->val.via.str.size] = '\0';
			}
		}
	}
	msgpack_unpacked_destroy(&u);
}

/* A psync_parse_fn: the value's "name" (test_value_name) as a malloc'd string. */
static inline bool
test_name_parse(void *ctx, const uint8_t *mp, size_t len, const psync_envelope *env,
				void *recycled, void **out, const char **error)
{
	char		name[32];

	(void) ctx;
	(void) env;
	(void) recycled;
	(void) error;
	test_value_name(mp, len, name, sizeof(name));
	*out = strdup(name);
	return *out != NULL;
}

#endif							/* PSYNC_TEST_HARNESS_H */
