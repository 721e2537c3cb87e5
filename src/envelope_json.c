/*
 * envelope_json.c — para_sync.envelope_to_jsonb(bytea): any envelope (or
 * any MessagePack value) as jsonb, for people and for the regression tests.
 *
 * msgpack → JSON text → jsonb.  bin becomes "\x<hex>", the timestamp
 * extension an ISO-8601 UTC string, other extensions {"ext": n, "hex": ...},
 * a NUL byte in a str the six characters \u0000 (jsonb has no U+0000).
 * Input that is not exactly one valid MessagePack value is an error.  The
 * walk is iterative, so any nesting that capture writes (or the bytes hold)
 * converts; msgpack-c's unpacker stops at 32 levels, so it is not used.
 */
#include "para_sync.h"

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

static const uint8 *convert(StringInfo out, const uint8 *p, const uint8 *end);

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

static uint64
read_be(const uint8 *p, int n)
{
	uint64		v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
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
		sec = (int64) read_be(data, 4);
		nsec = 0;
	}
	else if (len == 8)
	{
		uint64		v = read_be(data, 8);

		nsec = (uint32) (v >> 34);
		sec = (int64) (v & UINT64CONST(0x3ffffffff));
	}
	else if (len == 12)
	{
		nsec = (uint32) read_be(data, 4);
		sec = (int64) read_be(data + 4, 8);
	}
	else
	{
		bad_msgpack("A timestamp extension is 4, 8 or 12 bytes long.");
		return;
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

/*
 * A map key at *p as a JSON object key: a str as itself, anything else
 * rendered as JSON and that text used as the key.
 */
static void
append_key(StringInfo out, const uint8 **p, const uint8 *end)
{
	const uint8 *q = *p;
	uint64		n;

	if (q < end && *q >= 0xa0 && *q <= 0xbf)
	{
		n = *q++ & 0x1f;
	}
	else if (q < end && *q >= 0xd9 && *q <= 0xdb)
	{
		int			w = 1 << (*q - 0xd9);

		q++;
		if (end - q < w)
			bad_msgpack("The bytes are not one complete MessagePack value.");
		n = read_be(q, w);
		q += w;
	}
	else
	{
		StringInfoData key;

		check_stack_depth();
		initStringInfo(&key);
		*p = convert(&key, q, end);
		append_json_string(out, key.data, key.len);
		pfree(key.data);
		return;
	}
	if ((uint64) (end - q) < n)
		bad_msgpack("A length runs past the end of the bytes.");
	append_json_string(out, (const char *) q, n);
	*p = q + n;
}

/*
 * Convert the one MessagePack item at [p, end) to JSON text in out; returns
 * where it ends.  Iterative, with an explicit stack on the heap: any nesting
 * the input holds is converted (memory is the only bound, and every
 * container costs at least one input byte).  A map key that is not a str is
 * rendered as JSON into a string of its own.
 */
static const uint8 *
convert(StringInfo out, const uint8 *p, const uint8 *end)
{
	int			cap = 32;
	Frame	   *stack = palloc(sizeof(Frame) * cap);
	int			top = 0;

	for (;;)
	{
		uint8		b;
		uint64		n = 0;
		bool		container = false;
		bool		is_map = false;

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
				append_key(out, &p, end);
				appendStringInfoString(out, ": ");
				f->left--;
			}
			f->left--;
		}
		if (p >= end)
			bad_msgpack("The bytes are not one complete MessagePack value.");
		b = *p++;
		if (b <= 0x7f)
			appendStringInfo(out, "%d", (int) b);
		else if (b >= 0xe0)
			appendStringInfo(out, "%d", (int) (int8) b);
		else if (b <= 0x8f)
		{
			n = b & 0x0f;
			container = is_map = true;
		}
		else if (b <= 0x9f)
		{
			n = b & 0x0f;
			container = true;
		}
		else if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb) || (b >= 0xc4 && b <= 0xc6))
		{
			bool		bin = b >= 0xc4 && b <= 0xc6;
			int			w = b <= 0xbf ? 0 : 1 << (bin ? b - 0xc4 : b - 0xd9);

			if (w == 0)
				n = b & 0x1f;
			else
			{
				if ((size_t) (end - p) < (size_t) w)
					bad_msgpack("The bytes are not one complete MessagePack value.");
				n = read_be(p, w);
				p += w;
			}
			if ((uint64) (end - p) < n)
				bad_msgpack("A length runs past the end of the bytes.");
			if (bin)
				append_hex(out, "\\\\x", p, n);
			else
				append_json_string(out, (const char *) p, n);
			p += n;
		}
		else
		{
			switch (b)
			{
				case 0xc0:
					appendStringInfoString(out, "null");
					break;
				case 0xc2:
				case 0xc3:
					appendStringInfoString(out, b == 0xc3 ? "true" : "false");
					break;
				case 0xca:
				case 0xcb:
					{
						int			w = b == 0xca ? 4 : 8;
						uint64		v;

						if (end - p < w)
							bad_msgpack("The bytes are not one complete MessagePack value.");
						v = read_be(p, w);
						p += w;
						if (w == 4)
						{
							uint32		v32 = (uint32) v;
							float		f;

							memcpy(&f, &v32, 4);
							append_float(out, f);
						}
						else
						{
							double		d;

							memcpy(&d, &v, 8);
							append_float(out, d);
						}
						break;
					}
				case 0xcc: case 0xcd: case 0xce: case 0xcf:
				case 0xd0: case 0xd1: case 0xd2: case 0xd3:
					{
						int			w = 1 << ((b - 0xcc) & 3);
						uint64		v;

						if (end - p < w)
							bad_msgpack("The bytes are not one complete MessagePack value.");
						v = read_be(p, w);
						p += w;
						if (b <= 0xcf)
							appendStringInfo(out, UINT64_FORMAT, v);
						else
							appendStringInfo(out, INT64_FORMAT,
											 w == 8 ? (int64) v :
											 (int64) (v << (64 - 8 * w)) >> (64 - 8 * w));
						break;
					}
				case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
				case 0xc7: case 0xc8: case 0xc9:
					{
						int8		type;

						if (b >= 0xd4)
							n = (uint64) 1 << (b - 0xd4);
						else
						{
							int			w = 1 << (b - 0xc7);

							if (end - p < w)
								bad_msgpack("The bytes are not one complete MessagePack value.");
							n = read_be(p, w);
							p += w;
						}
						if (p >= end || (uint64) (end - p - 1) < n)
							bad_msgpack("A length runs past the end of the bytes.");
						type = (int8) *p++;
						if (type == -1)
							append_timestamp(out, p, n);
						else
						{
							appendStringInfo(out, "{\"ext\": %d, \"hex\": ", (int) type);
							append_hex(out, "", p, n);
							appendStringInfoChar(out, '}');
						}
						p += n;
						break;
					}
				case 0xdc: case 0xdd: case 0xde: case 0xdf:
					{
						int			w = (b == 0xdc || b == 0xde) ? 2 : 4;

						if (end - p < w)
							bad_msgpack("The bytes are not one complete MessagePack value.");
						n = read_be(p, w);
						p += w;
						container = true;
						is_map = b >= 0xde;
						break;
					}
				default:		/* 0xc1 */
					bad_msgpack("0xc1 is not a MessagePack type.");
			}
		}
		if (container)
		{
			if (is_map)
				n *= 2;		/* keys and values */
			/* every item costs at least one byte */
			if (n > (uint64) (end - p))
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
		/* close finished containers */
		while (top > 0 && stack[top - 1].left == 0)
			appendStringInfoChar(out, stack[--top].map ? '}' : ']');
		if (top == 0)
			break;
	}
	pfree(stack);
	return p;
}

Datum
para_sync_envelope_to_jsonb(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	const uint8 *data = (const uint8 *) VARDATA_ANY(raw);
	size_t		len = VARSIZE_ANY_EXHDR(raw);
	const uint8 *after;
	StringInfoData json;

	initStringInfo(&json);
	after = convert(&json, data, data + len);
	if (after != data + len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid para_sync envelope"),
				 errdetail("%zu trailing bytes after the MessagePack value.",
						   (size_t) (data + len - after))));
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}
