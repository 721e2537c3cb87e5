/*
 * envelope_json.c — para_sync.envelope_to_jsonb(bytea): any envelope (or
 * any MessagePack value) as jsonb, for people and for the regression tests.
 *
 * msgpack → JSON text → jsonb.  bin becomes "\x<hex>", the timestamp
 * extension an ISO-8601 UTC string, other extensions {"ext": n, "hex": ...},
 * a NUL byte in a str the six characters \u0000 (jsonb has no U+0000).
 * Input that is not exactly one valid MessagePack value is an error.  The
 * bytes are read with the MessagePack reader the envelope decoder uses
 * (src/common/mp_reader.h); the walk keeps its own stack on the heap, so
 * any nesting that capture writes (or the bytes hold) converts (the
 * decoder's walk stops at 64 levels, msgpack-c's unpacker at 32).
 */
#include "para_sync.h"

#include "common/mp_reader.h"

#include <math.h>

#include "miscadmin.h"
#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/json.h"

PG_FUNCTION_INFO_V1(para_sync_envelope_to_jsonb);

/* An open array or map of the walk: items left, and map or array. */
typedef struct Frame
{
	uint64		left;			/* items still to read (maps: keys + values) */
	bool		map;
	bool		first;
} Frame;

static void convert(StringInfo out, mp_reader *r);

static void
bad_msgpack(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid para_sync envelope"),
			 errdetail("%s", detail)));
}

/*
 * A JSON string of len bytes.  jsonb cannot hold U+0000: a NUL byte shows
 * as the six characters \u0000.
 */
static void
append_json_string(StringInfo out, const char *s, size_t len)
{
	appendStringInfoChar(out, '"');
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		switch (c)
		{
			case '"': appendStringInfoString(out, "\\\""); break;
			case '\\': appendStringInfoString(out, "\\\\"); break;
			case '\b': appendStringInfoString(out, "\\b"); break;
			case '\f': appendStringInfoString(out, "\\f"); break;
			case '\n': appendStringInfoString(out, "\\n"); break;
			case '\r': appendStringInfoString(out, "\\r"); break;
			case '\t': appendStringInfoString(out, "\\t"); break;
			case '\0': appendStringInfoString(out, "\\\\u0000"); break;
			default:
				if (c < 0x20)
					appendStringInfo(out, "\\u%04x", c);
				else
					appendStringInfoCharMacro(out, (char) c);
		}
	}
	appendStringInfoChar(out, '"');
}

static void
append_hex(StringInfo out, const char *prefix, const uint8 *bytes, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	appendStringInfo(out, "\"%s", prefix);
	for (size_t i = 0; i < len; i++)
	{
		appendStringInfoChar(out, hex[bytes[i] >> 4]);
		appendStringInfoChar(out, hex[bytes[i] & 0xF]);
	}
	appendStringInfoChar(out, '"');
}

/* The timestamp extension (type -1) of 4, 8 or 12 bytes, as ISO 8601 UTC. */
static void
append_timestamp(StringInfo out, const uint8 *data, size_t len)
{
	int64		sec;
	uint32		nsec;
	int128		wide;
	Timestamp	pg_ts;
	struct pg_tm tm;
	fsec_t		fsec;
	char		buf[MAXDATELEN + 1];

	if (len == 4)
	{
		sec = (int64) mp_be(data, 4);
		nsec = 0;
	}
	else if (len == 8)
	{
		uint64		v = mp_be(data, 8);

		nsec = (uint32) (v >> 34);
		sec = (int64) (v & UINT64CONST(0x3ffffffff));
	}
	else
	{
		/* 12 bytes: the reader took no other length (MP_BAD_TIMESTAMP) */
		nsec = (uint32) mp_be(data, 4);
		sec = (int64) mp_be(data + 4, 8);
	}
	wide = (int128) sec * USECS_PER_SEC + nsec / 1000 -
		(int128) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	if (nsec >= 1000000000 || wide < PG_INT64_MIN || wide > PG_INT64_MAX ||
		!IS_VALID_TIMESTAMP((Timestamp) wide))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("msgpack timestamp out of range")));
	pg_ts = (Timestamp) wide;
	if (timestamp2tm(pg_ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("msgpack timestamp out of range")));
	EncodeDateTime(&tm, fsec, false, 0, NULL, USE_XSD_DATES, buf);
	appendStringInfo(out, "\"%sZ\"", buf);
}

static void
append_float(StringInfo out, double d)
{
	if (isnan(d) || isinf(d))
		appendStringInfo(out, "\"%s\"", isnan(d) ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"));
	else
		appendStringInfoString(out, float8out_internal(d));
}

/* The next item's head (mp_next), or the error that says why not. */
static void
read_item(mp_reader *r, mp_item *it)
{
	switch (mp_next(r, it))
	{
		case MP_OK:
			return;
		case MP_INCOMPLETE:
			bad_msgpack("The bytes are not one complete MessagePack value.");
			break;
		case MP_PAST_END:
			bad_msgpack("A length runs past the end of the bytes.");
			break;
		case MP_NOT_A_TYPE:
			bad_msgpack("0xc1 is not a MessagePack type.");
			break;
		case MP_BAD_TIMESTAMP:
			bad_msgpack("A timestamp extension is 4, 8 or 12 bytes long.");
			break;
	}
}

/*
 * A map key as a JSON object key: a str as itself, anything else rendered
 * as JSON and that text used as the key.
 */
static void
append_key(StringInfo out, mp_reader *r)
{
	StringInfoData key;

	if (mp_peek(r) == MP_STR)
	{
		mp_item		it;

		read_item(r, &it);
		append_json_string(out, (const char *) it.data, it.len);
		return;
	}
	check_stack_depth();
	initStringInfo(&key);
	convert(&key, r);
	append_json_string(out, key.data, key.len);
	pfree(key.data);
}

/* A scalar item (not an array or map) as JSON text. */
static void
append_scalar(StringInfo out, const mp_item *it)
{
	switch (it->kind)
	{
		case MP_NIL:
			appendStringInfoString(out, "null");
			break;
		case MP_BOOL:
			appendStringInfoString(out, it->boolean ? "true" : "false");
			break;
		case MP_UINT:
			appendStringInfo(out, UINT64_FORMAT, it->u);
			break;
		case MP_INT:
			appendStringInfo(out, INT64_FORMAT, it->i);
			break;
		case MP_FLOAT32:
		case MP_FLOAT64:
			append_float(out, it->f);
			break;
		case MP_STR:
			append_json_string(out, (const char *) it->data, it->len);
			break;
		case MP_BIN:
			append_hex(out, "\\\\x", it->data, it->len);
			break;
		case MP_EXT:
			if (it->ext_type == -1)
				append_timestamp(out, it->data, it->len);
			else
			{
				appendStringInfo(out, "{\"ext\": %d, \"hex\": ", (int) it->ext_type);
				append_hex(out, "", it->data, it->len);
				appendStringInfoChar(out, '}');
			}
			break;
		default:
			elog(ERROR, "unexpected MessagePack item kind %d", (int) it->kind);
	}
}

/*
 * Convert the one MessagePack item at r to JSON text in out; r then stands
 * after it.  Iterative, with an explicit stack on the heap: any nesting the
 * input holds is converted (memory is the only bound, and every container
 * costs at least one input byte).  A map key that is not a str is rendered
 * as JSON into a string of its own.
 */
static void
convert(StringInfo out, mp_reader *r)
{
	int			cap = 32;
	Frame	   *stack = palloc(sizeof(Frame) * cap);
	int			top = 0;

	for (;;)
	{
		mp_item		it;
		uint64		n;

		CHECK_FOR_INTERRUPTS();
		/* the separator, and the key of a map entry */
		if (top > 0)
		{
			Frame	   *f = &stack[top - 1];

			if (!f->first)
				appendStringInfoString(out, ", ");
			f->first = false;
			if (f->map)
			{
				/* the key, then fall through to its value */
				append_key(out, r);
				appendStringInfoString(out, ": ");
				f->left--;
			}
			f->left--;
		}
		read_item(r, &it);
		if (it.kind == MP_ARRAY || it.kind == MP_MAP)
		{
			bool		is_map = it.kind == MP_MAP;

			n = is_map ? it.len * 2 : it.len;	/* maps: keys and values */
			/* every item costs at least one byte */
			if (n > (uint64) mp_left(r))
				bad_msgpack("A count runs past the end of the bytes.");
			if (top == cap)
			{
				cap *= 2;
				stack = repalloc(stack, sizeof(Frame) * cap);
			}
			stack[top].left = n;
			stack[top].map = is_map;
			stack[top].first = true;
			top++;
			appendStringInfoChar(out, is_map ? '{' : '[');
		}
		else
			append_scalar(out, &it);
		/* close finished containers */
		while (top > 0 && stack[top - 1].left == 0)
			appendStringInfoChar(out, stack[--top].map ? '}' : ']');
		if (top == 0)
			break;
	}
	pfree(stack);
}

Datum
para_sync_envelope_to_jsonb(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	const uint8 *data = (const uint8 *) VARDATA_ANY(raw);
	size_t		len = VARSIZE_ANY_EXHDR(raw);
	mp_reader	r = {data, data + len};
	StringInfoData json;

	initStringInfo(&json);
	convert(&json, &r);
	if (r.p != r.end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid para_sync envelope"),
				 errdetail("%zu trailing bytes after the MessagePack value.",
						   mp_left(&r))));
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}
