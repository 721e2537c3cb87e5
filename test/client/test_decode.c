/*
 * test_decode.c — psync_envelope_decode: round trips and every kind of
 * malformed input (truncation, bad types, trailing bytes, depth, huge
 * lengths, bad keys and UTF-8, missing/wrong fields, bad sequences), and
 * the key grammar against the shared lists of test/key_cases*.txt.
 */
#include "harness.h"
#include "key_cases.h"

/* A raw msgpack builder for hand-made (often broken) envelopes. */
typedef struct raw
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
} raw;

static void
raw_init(raw *r)
{
	msgpack_sbuffer_init(&r->sb);
	msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
}

static void
raw_str(raw *r, const char *s)
{
	msgpack_pack_str_with_body(&r->pk, s, strlen(s));
}

static void
raw_bytes(raw *r, const void *b, size_t n)
{
	msgpack_sbuffer_write(&r->sb, b, n);
}

static psync_decode_error
raw_decode(raw *r, psync_envelope *env)
{
	psync_decode_error e = psync_envelope_decode(r->sb.data, r->sb.size, env);

	msgpack_sbuffer_destroy(&r->sb);
	return e;
}

/* Envelope with the four required fields, then `extra` more pairs by caller. */
static void
raw_basic(raw *r, int extra, const char *key, const char *op)
{
	raw_init(r);
	msgpack_pack_map(&r->pk, 5 + extra);
	raw_str(r, "key");
	raw_str(r, key);
	raw_str(r, "value");
	msgpack_pack_nil(&r->pk);
	raw_str(r, "schema_version");
	raw_str(r, "1");
	raw_str(r, "sequence");
	msgpack_pack_uint64(&r->pk, 7);
	raw_str(r, "op");
	raw_str(r, op);
}

static void
roundtrip_keeps_every_field(void)
{
	psync_envelope in = test_envelope("users:123", 42, "ada");
	test_buf	b = test_encode(&in);
	psync_envelope out;

	CHECK_EQ_INT(psync_envelope_decode(b.data, b.len, &out), PSYNC_DECODE_OK);
	CHECK(out.key_len == 9 && memcmp(out.key, "users:123", 9) == 0);
	CHECK(out.has_value && out.value_len == in.value_len &&
		  memcmp(out.value, in.value, in.value_len) == 0);
	CHECK(out.schema_version_len == 1 && out.schema_version[0] == '1');
	CHECK_EQ_INT(out.sequence, 42);
	CHECK_EQ_INT(out.op, PSYNC_OP_UPSERT);
	CHECK(out.has_txid && out.txid == 1042);
	/* zero-copy: pointers into the input */
	CHECK((const char *) out.key > b.data && (const char *) out.key < b.data + b.len);
	free(b.data);
}

static void
roundtrip_snapshot_nil_and_refetch(void)
{
	psync_envelope in = test_envelope("mail:a%40b%2Ecom", 0, "x");
	psync_envelope out;
	test_buf	b;

	in.op = PSYNC_OP_SNAPSHOT;
	in.has_txid = false;
	in.value = (const uint8_t *) "\xc0";
	in.value_len = 1;
	b = test_encode(&in);
	CHECK_EQ_INT(psync_envelope_decode(b.data, b.len, &out), PSYNC_DECODE_OK);
	CHECK(!out.has_txid && out.op == PSYNC_OP_SNAPSHOT && out.value_len == 1 &&
		  out.value[0] == 0xc0 && out.sequence == 0);
	free(b.data);

	in.op = PSYNC_OP_REFETCH;
	in.has_value = false;
	in.sequence = PSYNC_MAX_SEQUENCE;
	b = test_encode(&in);
	CHECK_EQ_INT(psync_envelope_decode(b.data, b.len, &out), PSYNC_DECODE_OK);
	CHECK(!out.has_value && out.value == NULL && out.sequence == PSYNC_MAX_SEQUENCE);
	free(b.data);

	in.op = PSYNC_OP_UPSERT;	/* value may be absent only for refetch and reload */
	b = test_encode(&in);
	CHECK_EQ_INT(psync_envelope_decode(b.data, b.len, &out), PSYNC_DECODE_MISSING_FIELD);
	free(b.data);
}

/* A table event: key a sync name, op reload, no value. */
static void
roundtrip_table_reload(void)
{
	psync_envelope in = test_envelope("users", 3, "");
	psync_envelope out;
	test_buf	b;

	in.op = PSYNC_OP_RELOAD;
	in.has_value = false;
	in.schema_version = "1+2";
	in.schema_version_len = 3;
	b = test_encode(&in);
	CHECK_EQ_INT(psync_envelope_decode(b.data, b.len, &out), PSYNC_DECODE_OK);
	CHECK(out.op == PSYNC_OP_RELOAD && !out.has_value && out.sequence == 3 &&
		  out.key_len == 5 && memcmp(out.key, "users", 5) == 0 &&
		  out.schema_version_len == 3 && out.has_txid);
	CHECK(strcmp(psync_op_name(PSYNC_OP_RELOAD), "reload") == 0);
	free(b.data);
}

/* Every type the server's row encoder writes, nested. */
static void
value_with_every_server_type(void)
{
	raw			v;
	msgpack_timestamp ts = {1700000000, 123000};
	psync_envelope in = test_envelope("t:1", 1, "x");
	psync_envelope out;
	test_buf	b;

	raw_init(&v);
	msgpack_pack_map(&v.pk, 12);
	raw_str(&v, "i");
	msgpack_pack_int64(&v.pk, -5);
	raw_str(&v, "big");
	msgpack_pack_int64(&v.pk, INT64_MIN);
	raw_str(&v, "u");
	msgpack_pack_uint64(&v.pk, UINT64_MAX);
	raw_str(&v, "f4");
	msgpack_pack_float(&v.pk, 1.5f);
	raw_str(&v, "f8");
	msgpack_pack_double(&v.pk, 2.25);
	raw_str(&v, "b");
	msgpack_pack_true(&v.pk);
	raw_str(&v, "s");
	raw_str(&v, "héllo");
	raw_str(&v, "bin");
	msgpack_pack_bin_with_body(&v.pk, "\x00\x01\x02", 3);
	raw_str(&v, "ts");
	msgpack_pack_timestamp(&v.pk, &ts);
	raw_str(&v, "arr");
	msgpack_pack_array(&v.pk, 3);
	msgpack_pack_nil(&v.pk);
	msgpack_pack_int64(&v.pk, 1);
	msgpack_pack_array(&v.pk, 0);
	raw_str(&v, "json");
	msgpack_pack_map(&v.pk, 1);
	raw_str(&v, "k");
	msgpack_pack_map(&v.pk, 0);
	raw_str(&v, "long");
	{
		char		s[70000];

		memset(s, 'a', sizeof(s));
		msgpack_pack_str_with_body(&v.pk, s, sizeof(s));
	}
	in.value = (const uint8_t *) v.sb.data;
	in.value_len = v.sb.size;
	b = test_encode(&in);
	CHECK_EQ_INT(psync_envelope_decode(b.data, b.len, &out), PSYNC_DECODE_OK);
	CHECK(out.value_len == v.sb.size && memcmp(out.value, v.sb.data, v.sb.size) == 0);
	CHECK_EQ_INT(psync_msgpack_validate(v.sb.data, v.sb.size, 4), PSYNC_DECODE_OK);
	free(b.data);
	msgpack_sbuffer_destroy(&v.sb);
}

static void
every_truncation_is_an_error(void)
{
	psync_envelope in = test_envelope("users:123", 42, "ada");
	test_buf	b = test_encode(&in);
	psync_envelope out;
	int			bad = 0;

	for (size_t n = 0; n < b.len; n++)
	{
		char	   *copy = malloc(n ? n : 1);	/* exact size: ASan sees overreads */

		memcpy(copy, b.data, n);
		if (psync_envelope_decode(copy, n, &out) == PSYNC_DECODE_OK)
			bad++;
		free(copy);
	}
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(psync_envelope_decode(NULL, 0, &out), PSYNC_DECODE_TRUNCATED);
	CHECK(out.key == NULL && out.value == NULL);	/* zeroed on error */
	free(b.data);
}

static void
trailing_bytes_rejected(void)
{
	psync_envelope in = test_envelope("users:1", 1, "a");
	test_buf	b = test_encode(&in);
	psync_envelope out;

	test_buf_write(&b, "\xc0", 1);
	CHECK_EQ_INT(psync_envelope_decode(b.data, b.len, &out), PSYNC_DECODE_TRAILING_BYTES);
	free(b.data);
}

static void
invalid_type_byte_rejected(void)
{
	raw			r;
	psync_envelope out;

	raw_basic(&r, 1, "users:1", "upsert");
	raw_str(&r, "extra");
	raw_bytes(&r, "\xc1", 1);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_INVALID_TYPE);

	/* 0xc1 inside the value map */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 4);
	raw_str(&r, "key");
	raw_str(&r, "users:1");
	raw_str(&r, "value");
	raw_bytes(&r, "\x81\xa1x\xc1", 4);
	raw_str(&r, "schema_version");
	raw_str(&r, "1");
	raw_str(&r, "sequence");
	msgpack_pack_uint64(&r.pk, 1);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_INVALID_TYPE);

	/* timestamp extension with a length a timestamp never has */
	raw_basic(&r, 1, "users:1", "upsert");
	raw_str(&r, "extra");
	raw_bytes(&r, "\xd5\xff\x00\x00", 4);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_INVALID_TYPE);
}

static void
nesting_limit(void)
{
	for (int depth = PSYNC_DECODE_MAX_DEPTH; depth <= PSYNC_DECODE_MAX_DEPTH + 1; depth++)
	{
		raw			r;
		psync_envelope out;

		raw_init(&r);
		msgpack_pack_map(&r.pk, 5);
		raw_str(&r, "key");
		raw_str(&r, "t:1");
		raw_str(&r, "schema_version");
		raw_str(&r, "1");
		raw_str(&r, "sequence");
		msgpack_pack_uint64(&r.pk, 1);
		raw_str(&r, "op");
		raw_str(&r, "upsert");
		raw_str(&r, "value");
		/* depth containers: the value map, then depth-1 arrays */
		msgpack_pack_map(&r.pk, 1);
		raw_str(&r, "a");
		for (int i = 1; i < depth; i++)
			msgpack_pack_array(&r.pk, 1);
		msgpack_pack_nil(&r.pk);
		CHECK_EQ_INT(raw_decode(&r, &out), depth <= PSYNC_DECODE_MAX_DEPTH ?
					 PSYNC_DECODE_OK : PSYNC_DECODE_TOO_DEEP);
	}
	/* a million nested arrays: rejected without recursing a million times */
	{
		size_t		n = 1000000;
		char	   *deep = malloc(n);
		psync_envelope out;

		memset(deep, 0x91, n);
		CHECK_EQ_INT(psync_msgpack_validate(deep, n, PSYNC_DECODE_MAX_DEPTH), PSYNC_DECODE_TOO_DEEP);
		deep[0] = (char) 0x81;
		CHECK(psync_envelope_decode(deep, n, &out) != PSYNC_DECODE_OK);
		free(deep);
	}
}

static void
huge_declared_lengths(void)
{
	static const char *const cases[] = {
		"\xdb\xff\xff\xff\xff",	/* str32 of 4 GiB */
		"\xc6\xff\xff\xff\xff",	/* bin32 */
		"\xdd\xff\xff\xff\xff",	/* array32 of 4G items */
		"\xdf\xff\xff\xff\xff",	/* map32 */
		"\xc9\xff\xff\xff\xff\x01",	/* ext32 */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		raw			r;
		psync_envelope out;

		raw_basic(&r, 1, "users:1", "upsert");
		raw_str(&r, "extra");
		raw_bytes(&r, cases[i], cases[i][0] == '\xc9' ? 6 : 5);
		CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_TRUNCATED);
	}
	/* the envelope map itself claiming 4G fields */
	{
		psync_envelope out;

		CHECK_EQ_INT(psync_envelope_decode("\xdf\xff\xff\xff\xff\xa3key", 9, &out),
					 PSYNC_DECODE_TRUNCATED);
	}
}

static void
bad_keys_rejected(void)
{
	static const char *const bad[] = {"", "users.1", "users:*", "a>b", "a b", "caf\xc3\xa9:1",
	"users:\xff", "tab\t:1"};
	char		long_key[PSYNC_MAX_KEY_LEN + 2];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		raw			r;
		psync_envelope out;

		raw_basic(&r, 0, bad[i], "upsert");
		CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_BAD_KEY);
	}
	memset(long_key, 'k', sizeof(long_key));
	long_key[1] = ':';			/* a key has a sync name, then parts */
	long_key[PSYNC_MAX_KEY_LEN] = '\0';
	{
		raw			r;
		psync_envelope out;

		raw_basic(&r, 0, long_key, "upsert");
		CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_OK);
		long_key[PSYNC_MAX_KEY_LEN] = 'k';
		long_key[PSYNC_MAX_KEY_LEN + 1] = '\0';
		raw_basic(&r, 0, long_key, "upsert");
		CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_BAD_KEY);
	}
}

static void
count_event(void *ctx, const psync_event *event)
{
	(void) event;
	(*(int *) ctx)++;
}

/* Each part of a valid key case unescapes to the row's value; false if not. */
static bool
parts_match(const key_case *c, size_t nparts)
{
	const char *key = c->field[2];
	size_t		klen = c->len[2];
	const char *p = memchr(key, ':', klen) + 1;
	char		buf[PSYNC_MAX_KEY_LEN];

	for (size_t k = 0; k < nparts; k++)
	{
		const char *end = memchr(p, ':', klen - (size_t) (p - key));
		long		len;

		if (end == NULL)
			end = key + klen;
		len = psync_key_unescape(p, (size_t) (end - p), buf);
		if (len != (long) c->len[k] || memcmp(buf, c->field[k], c->len[k]) != 0)
			return false;
		p = end + 1;
	}
	return p == key + klen + 1;	/* no part left over */
}

/*
 * The keys the server gives the edge-case rows of test/key_cases.txt
 * (test/sql/keys.sql checks that against the same file) are all accepted:
 * decoded, split back into the row's values, subscribed and delivered to
 * their table's pattern.  The keys of test/key_cases_bad.txt, which
 * snapshot() refuses, are all refused.
 */
static void
shared_key_cases(void)
{
	key_case   *cases;
	size_t		n = key_cases_read(KEY_CASES_FILE, 3, &cases);

	CHECK(n >= 30);
	for (size_t i = 0; i < n; i++)
	{
		const key_case *c = &cases[i];
		const char *key = c->field[2];
		size_t		nparts = c->field[1] != NULL ? 2 : 1;
		const char *table = nparts == 1 ? "kc1" : "kc2";
		raw			r;
		psync_envelope out,
					env = test_envelope(key, 1, "x");
		psync_transport *t;
		psync_subscription_id a,
					b;
		int			calls = 0;

		if (!psync_key_is_valid(key, c->len[2]))
			fprintf(stderr, "  refused: %s\n", key);
		CHECK(psync_key_is_valid(key, c->len[2]));
		raw_basic(&r, 0, key, "upsert");
		CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_OK);
		CHECK(psync_key_in_table(key, c->len[2], table, 3));
		CHECK(parts_match(c, nparts));
		psync_inprocess_transport_new(&t);
		CHECK_EQ_INT(psync_transport_subscribe(t, key, count_event, &calls, &a), PSYNC_OK);
		CHECK_EQ_INT(psync_transport_subscribe(t, nparts == 1 ? "kc1:*" : "kc2:*",
											   count_event, &calls, &b), PSYNC_OK);
		CHECK_EQ_INT(psync_transport_publish(t, &env), PSYNC_OK);
		CHECK_EQ_INT(calls, 2);
		psync_transport_destroy(t);
	}
	key_cases_free(cases, n);

	n = key_cases_read(KEY_CASES_BAD_FILE, 1, &cases);
	CHECK(n >= 20);
	for (size_t i = 0; i < n; i++)
	{
		const char *key = cases[i].field[0];
		raw			r;
		psync_envelope out;
		psync_transport *t;
		psync_subscription_id a;
		int			calls = 0;

		if (psync_key_is_valid(key, cases[i].len[0]))
			fprintf(stderr, "  accepted: %s\n", key);
		CHECK(!psync_key_is_valid(key, cases[i].len[0]));
		raw_basic(&r, 0, key, "upsert");
		CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_BAD_KEY);
		/* "<table>:*" is no key, but a subscription's table pattern */
		if (cases[i].len[0] >= 2 && strcmp(key + cases[i].len[0] - 2, ":*") == 0)
			continue;
		psync_inprocess_transport_new(&t);
		CHECK_EQ_INT(psync_transport_subscribe(t, key, count_event, &calls, &a),
					 PSYNC_ERR_INVALID_ARGUMENT);
		psync_transport_destroy(t);
	}
	key_cases_free(cases, n);
}

static void
schema_version_checked(void)
{
	raw			r;
	psync_envelope out;
	char		sv[PSYNC_MAX_SCHEMA_VERSION_LEN + 2];
	static const char *const bad_utf8[] = {"\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf5\x80\x80\x80", "\x80"};

	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
	{
		raw_init(&r);
		msgpack_pack_map(&r.pk, 4);
		raw_str(&r, "key");
		raw_str(&r, "users:1");
		raw_str(&r, "schema_version");
		raw_str(&r, bad_utf8[i]);
		raw_str(&r, "sequence");
		msgpack_pack_uint64(&r.pk, 1);
		raw_str(&r, "op");
		raw_str(&r, "refetch");
		CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_BAD_UTF8);
	}
	memset(sv, 'v', sizeof(sv));
	sv[PSYNC_MAX_SCHEMA_VERSION_LEN + 1] = '\0';
	raw_init(&r);
	msgpack_pack_map(&r.pk, 4);
	raw_str(&r, "key");
	raw_str(&r, "users:1");
	raw_str(&r, "schema_version");
	raw_str(&r, sv);
	raw_str(&r, "sequence");
	msgpack_pack_uint64(&r.pk, 1);
	raw_str(&r, "op");
	raw_str(&r, "refetch");
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_TOO_LARGE);
}

static void
missing_fields(void)
{
	static const char *const fields[] = {"key", "schema_version", "sequence", "op"};

	for (size_t skip = 0; skip < 4; skip++)
	{
		raw			r;
		psync_envelope out;

		raw_init(&r);
		msgpack_pack_map(&r.pk, 4);
		raw_str(&r, "value");
		msgpack_pack_nil(&r.pk);
		for (size_t i = 0; i < 4; i++)
		{
			if (i == skip)
				continue;
			raw_str(&r, fields[i]);
			if (i == 2)
				msgpack_pack_uint64(&r.pk, 3);
			else
				raw_str(&r, i == 0 ? "users:1" : i == 3 ? "upsert" : "1");
		}
		CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_MISSING_FIELD);
	}
}

static void
wrongly_typed_fields(void)
{
	raw			r;
	psync_envelope out;

	/* key as an int */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_str(&r, "key");
	msgpack_pack_int(&r.pk, 5);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_WRONG_TYPE);
	/* sequence as a string */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_str(&r, "sequence");
	raw_str(&r, "5");
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_WRONG_TYPE);
	/* sequence as a float */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_str(&r, "sequence");
	msgpack_pack_double(&r.pk, 5.0);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_WRONG_TYPE);
	/* value as an array, a string */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_str(&r, "value");
	msgpack_pack_array(&r.pk, 0);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_WRONG_TYPE);
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_str(&r, "value");
	raw_str(&r, "{}");
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_WRONG_TYPE);
	/* op as an int; unknown op */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_str(&r, "op");
	msgpack_pack_int(&r.pk, 0);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_WRONG_TYPE);
	raw_basic(&r, 0, "users:1", "insert");
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_BAD_OP);
	/* txid negative */
	raw_basic(&r, 1, "users:1", "upsert");
	raw_str(&r, "txid");
	msgpack_pack_int64(&r.pk, -1);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_WRONG_TYPE);
	/* field name not a string */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	msgpack_pack_int(&r.pk, 1);
	msgpack_pack_int(&r.pk, 1);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_BAD_FIELD_NAME);
	/* not a map */
	raw_init(&r);
	msgpack_pack_array(&r.pk, 0);
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_NOT_A_MAP);
	/* duplicate field */
	raw_basic(&r, 1, "users:1", "upsert");
	raw_str(&r, "op");
	raw_str(&r, "delete");
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_DUPLICATE_FIELD);
}

static void
sequence_range(void)
{
	struct
	{
		const char *bytes;
		size_t		len;
		psync_decode_error expect;
		uint64_t	value;
	}			cases[] = {
		{"\xff", 1, PSYNC_DECODE_BAD_SEQUENCE, 0},	/* -1 fixint */
		{"\xd0\x80", 2, PSYNC_DECODE_BAD_SEQUENCE, 0},	/* int8 -128 */
		{"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, PSYNC_DECODE_BAD_SEQUENCE, 0},
		{"\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9, PSYNC_DECODE_BAD_SEQUENCE, 0},	/* 2^63 */
		{"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, PSYNC_DECODE_BAD_SEQUENCE, 0},
		{"\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9, PSYNC_DECODE_OK, PSYNC_MAX_SEQUENCE},
		{"\xd1\x01\x00", 3, PSYNC_DECODE_OK, 256},	/* int16 256: other encoders */
		{"\xcd\x01\x00", 3, PSYNC_DECODE_OK, 256},
		{"\x05", 1, PSYNC_DECODE_OK, 5},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		raw			r;
		psync_envelope out;

		raw_init(&r);
		msgpack_pack_map(&r.pk, 4);
		raw_str(&r, "key");
		raw_str(&r, "users:1");
		raw_str(&r, "schema_version");
		raw_str(&r, "1");
		raw_str(&r, "op");
		raw_str(&r, "refetch");
		raw_str(&r, "sequence");
		raw_bytes(&r, cases[i].bytes, cases[i].len);
		CHECK_EQ_INT(raw_decode(&r, &out), cases[i].expect);
		if (cases[i].expect == PSYNC_DECODE_OK)
			CHECK(out.sequence == cases[i].value);
	}
}

/* Field order free, str8/map16 headers (msgpackr style), unknown fields skipped. */
static void
other_encoders_accepted(void)
{
	raw			r;
	psync_envelope out;

	raw_init(&r);
	raw_bytes(&r, "\xde\x00\x07", 3);	/* map16 with 7 fields */
	raw_str(&r, "op");
	raw_bytes(&r, "\xd9\x06upsert", 8);	/* str8 */
	raw_str(&r, "sequence");
	msgpack_pack_uint64(&r.pk, 9);
	raw_str(&r, "future_field");
	raw_bytes(&r, "\x92\x01\xa1x", 4);
	raw_str(&r, "txid");
	msgpack_pack_uint64(&r.pk, 77);
	raw_str(&r, "value");
	raw_bytes(&r, "\xde\x00\x01\xa1n\x01", 6);	/* map16 value */
	raw_str(&r, "schema_version");
	raw_str(&r, "3.1");
	raw_str(&r, "key");
	raw_str(&r, "orders:42:7");
	CHECK_EQ_INT(raw_decode(&r, &out), PSYNC_DECODE_OK);
	CHECK(out.sequence == 9 && out.txid == 77 && out.value_len == 6 && out.key_len == 11);
}

static void
error_texts_exist(void)
{
	for (int e = PSYNC_DECODE_OK; e <= PSYNC_DECODE_TOO_LARGE; e++)
		CHECK(psync_decode_error_text((psync_decode_error) e) != NULL &&
			  strcmp(psync_decode_error_text((psync_decode_error) e), "unknown decode error") != 0);
	CHECK(strcmp(psync_decode_error_text((psync_decode_error) 99), "unknown decode error") == 0);
	for (int s = PSYNC_OK; s <= PSYNC_ERR_SYSTEM; s++)
		CHECK(strcmp(psync_status_text((psync_status) s), "unknown status") != 0);
	CHECK(strcmp(psync_status_text((psync_status) -1), "unknown status") == 0);
}

int
main(void)
{
	RUN(roundtrip_keeps_every_field);
	RUN(roundtrip_snapshot_nil_and_refetch);
	RUN(roundtrip_table_reload);
	RUN(value_with_every_server_type);
	RUN(every_truncation_is_an_error);
	RUN(trailing_bytes_rejected);
	RUN(invalid_type_byte_rejected);
	RUN(nesting_limit);
	RUN(huge_declared_lengths);
	RUN(bad_keys_rejected);
	RUN(shared_key_cases);
	RUN(schema_version_checked);
	RUN(missing_fields);
	RUN(wrongly_typed_fields);
	RUN(sequence_range);
	RUN(other_encoders_accepted);
	RUN(error_texts_exist);
	return harness_finish();
}
