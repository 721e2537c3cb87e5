/*
 * json_encode.c — json and jsonb values as MessagePack (docs/protocol.md,
 * "Value mapping"): the one home of JSON encoding.  row_encode.c calls it
 * for json and jsonb columns; it calls nothing of row_encode.c.
 *
 * jsonb is walked with its iterator: objects as maps, arrays as arrays,
 * strings as str, true/false/null as bool/nil, and numbers as an int when
 * integral and within 64 bits, else float 64 (pack_numeric).
 *
 * A json column keeps the text exactly as written: duplicate object keys,
 * key order, "\u0000" escapes and numbers of any size are all valid json
 * (but not jsonb).  Re-parsing it as jsonb would refuse or rewrite such
 * values, so a write that works on a plain table would fail or change on a
 * synced one.  This module walks the text itself instead:
 *
 *   object   map, with every key/value pair as written (duplicates kept, in
 *            order)
 *   array    array
 *   string   str, escapes decoded to UTF-8 ("\u0000" is a NUL byte; a lone
 *            surrogate escape, which has no UTF-8 form, becomes U+FFFD)
 *   number   int when integral and within 64 bits, else float 64, as for
 *            jsonb
 *   true, false, null   bool, nil
 *
 * The text of a json datum was validated by json_in (or built by a json
 * function), so a flat scan suffices; it is still bounds-checked, and the
 * bracket structure is checked in the first pass, so a damaged datum is an
 * error, never a bad read.  Pass one counts the members of every container
 * (MessagePack headers come first) and the nesting depth; pass two emits.
 *
 * A value nested deeper than clients decode (PSYNC_DECODE_MAX_DEPTH, the
 * envelope's value map being level 1), json or jsonb, is sent as its JSON
 * text, a str: the write succeeds and the value survives, in a form every
 * client can read.
 */
#include "para_sync.h"

#include <errno.h>
#include <math.h>

#include <msgpack.h>

#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

typedef struct JsonShape
{
	int		   *counts;			/* members of each container, in order */
	int			ncounts;
	int			capacity;
	int			max_depth;		/* deepest container nesting of the value */
} JsonShape;

static void
json_damaged(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("malformed json datum")));
}

static inline bool
json_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* End of the string token starting at the opening quote p. */
static const char *
json_string_end(const char *p, const char *end)
{
	for (p++; p < end; p++)
	{
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	json_damaged();
	return NULL;
}

/* End of a number or literal token starting at p. */
static const char *
json_bare_end(const char *p, const char *end)
{
	while (p < end && !json_is_space(*p) && *p != ',' && *p != ':' &&
		   *p != ']' && *p != '}' && *p != '[' && *p != '{' && *p != '"')
		p++;
	return p;
}

/* Pass one: member counts of every container, and the nesting depth. */
static void
json_measure(const char *p, const char *end, JsonShape *shape)
{
	int			stack_size = 64;
	int		   *stack = palloc(sizeof(int) * stack_size);	/* count slots */
	char	   *opener = palloc(stack_size);
	int			top = 0;

	shape->capacity = 16;
	shape->counts = palloc(sizeof(int) * shape->capacity);
	shape->ncounts = 0;
	shape->max_depth = 0;
	while (p < end)
	{
		char		c = *p;

		CHECK_FOR_INTERRUPTS();
		if (json_is_space(c) || c == ':')
		{
			p++;
			continue;
		}
		if (c == '}' || c == ']')
		{
			if (top == 0 || opener[top - 1] != (c == '}' ? '{' : '['))
				json_damaged();
			top--;
			p++;
			continue;
		}
		if (c == ',')
		{
			if (top == 0)
				json_damaged();
			shape->counts[stack[top - 1]]++;
			p++;
			continue;
		}
		/* the start of a value (or of an object key) */
		if (top > 0 && shape->counts[stack[top - 1]] == 0)
			shape->counts[stack[top - 1]] = 1;
		if (c == '{' || c == '[')
		{
			if (shape->ncounts == shape->capacity)
			{
				shape->capacity *= 2;
				shape->counts = repalloc(shape->counts, sizeof(int) * shape->capacity);
			}
			if (top == stack_size)
			{
				stack_size *= 2;
				stack = repalloc(stack, sizeof(int) * stack_size);
				opener = repalloc(opener, stack_size);
			}
			shape->counts[shape->ncounts] = 0;
			opener[top] = c;
			stack[top++] = shape->ncounts++;
			if (top > shape->max_depth)
				shape->max_depth = top;
			p++;
		}
		else if (c == '"')
			p = json_string_end(p, end);
		else
		{
			const char *e = json_bare_end(p, end);

			if (e == p)
				json_damaged();
			p = e;
		}
	}
	if (top != 0)
		json_damaged();
	pfree(stack);
	pfree(opener);
}

static int
hex4(const char *p)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
	{
		char		c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			json_damaged();
	}
	return v;
}

static void
append_utf8(StringInfo buf, pg_wchar cp)
{
	unsigned char utf8[8];

	unicode_to_utf8(cp, utf8);
	appendBinaryStringInfo(buf, (char *) utf8, pg_utf_mblen(utf8));
}

/* A string token [p, e) (quotes included) as a str, escapes decoded. */
static void
pack_json_string(msgpack_packer *pk, const char *p, const char *e,
				 StringInfo scratch)
{
	const char *s = p + 1;
	const char *stop = e - 1;

	if (memchr(s, '\\', stop - s) == NULL)
	{
		msgpack_pack_str_with_body(pk, s, stop - s);
		return;
	}
	resetStringInfo(scratch);
	while (s < stop)
	{
		char		c = *s++;

		if (c != '\\')
		{
			appendStringInfoChar(scratch, c);
			continue;
		}
		if (s >= stop)
			json_damaged();
		c = *s++;
		switch (c)
		{
			case 'b': appendStringInfoChar(scratch, '\b'); break;
			case 'f': appendStringInfoChar(scratch, '\f'); break;
			case 'n': appendStringInfoChar(scratch, '\n'); break;
			case 'r': appendStringInfoChar(scratch, '\r'); break;
			case 't': appendStringInfoChar(scratch, '\t'); break;
			case 'u':
				{
					pg_wchar	cp;

					if (stop - s < 4)
						json_damaged();
					cp = hex4(s);
					s += 4;
					if (cp >= 0xD800 && cp <= 0xDBFF && stop - s >= 6 &&
						s[0] == '\\' && s[1] == 'u')
					{
						int			lo = hex4(s + 2);

						if (lo >= 0xDC00 && lo <= 0xDFFF)
						{
							cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
							s += 6;
						}
					}
					if (cp >= 0xD800 && cp <= 0xDFFF)
						cp = 0xFFFD;	/* a lone surrogate has no UTF-8 form */
					if (cp == 0)
						appendStringInfoCharMacro(scratch, '\0');
					else
						append_utf8(scratch, cp);
					break;
				}
			default:			/* " \ / */
				appendStringInfoChar(scratch, c);
				break;
		}
	}
	msgpack_pack_str_with_body(pk, scratch->data, scratch->len);
}

/* A JSON number: an int when it is integral and fits 64 bits, else a float. */
static void
pack_numeric(msgpack_packer *pk, Numeric num)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out,
														   NumericGetDatum(num)));
	char	   *end;

	if (strpbrk(text, ".eE") == NULL)
	{
		errno = 0;
		if (text[0] == '-')
		{
			long long	as_int = strtoll(text, &end, 10);

			if (errno == 0 && *end == '\0')
			{
				msgpack_pack_int64(pk, as_int);
				return;
			}
		}
		else
		{
			unsigned long long as_uint = strtoull(text, &end, 10);

			if (errno == 0 && *end == '\0')
			{
				msgpack_pack_uint64(pk, as_uint);
				return;
			}
		}
	}
	msgpack_pack_double(pk, strtod(text, NULL));
}

/* A number token, as jsonb numbers are sent (pack_numeric). */
static void
pack_json_number(msgpack_packer *pk, const char *p, const char *e)
{
	int			len = e - p;
	char	   *text = pnstrdup(p, len);
	const char *exp = strpbrk(text, "eE");
	long		exponent = exp ? strtol(exp + 1, NULL, 10) : 0;
	char	   *end;

	if (strpbrk(text, ".eE") == NULL && len < 32)
	{
		errno = 0;
		if (text[0] == '-')
		{
			long long	v = strtoll(text, &end, 10);

			if (errno == 0 && *end == '\0')
			{
				msgpack_pack_int64(pk, v);
				return;
			}
		}
		else
		{
			unsigned long long v = strtoull(text, &end, 10);

			if (errno == 0 && *end == '\0')
			{
				msgpack_pack_uint64(pk, v);
				return;
			}
		}
	}
	/* numeric_in takes any json number of moderate size and exponent */
	if (len <= 1000 && exponent >= -1000 && exponent <= 1000)
	{
		pack_numeric(pk, DatumGetNumeric(DirectFunctionCall3(numeric_in,
																   CStringGetDatum(text),
																   ObjectIdGetDatum(InvalidOid),
																   Int32GetDatum(-1))));
		return;
	}
	msgpack_pack_double(pk, strtod(text, NULL));	/* may be ±inf or 0 */
}

/* Pass two: emit, with the container counts of pass one. */
static void
json_emit(msgpack_packer *pk, const char *p, const char *end,
		  const JsonShape *shape)
{
	int			next = 0;
	StringInfoData scratch;

	initStringInfo(&scratch);
	while (p < end)
	{
		char		c = *p;
		const char *e;

		CHECK_FOR_INTERRUPTS();
		switch (c)
		{
			case ' ': case '\t': case '\n': case '\r':
			case ':': case ',': case '}': case ']':
				p++;
				break;
			case '{':
				msgpack_pack_map(pk, shape->counts[next++]);
				p++;
				break;
			case '[':
				msgpack_pack_array(pk, shape->counts[next++]);
				p++;
				break;
			case '"':
				e = json_string_end(p, end);
				pack_json_string(pk, p, e, &scratch);
				p = e;
				break;
			default:
				e = json_bare_end(p, end);
				if (e - p == 4 && memcmp(p, "true", 4) == 0)
					msgpack_pack_true(pk);
				else if (e - p == 5 && memcmp(p, "false", 5) == 0)
					msgpack_pack_false(pk);
				else if (e - p == 4 && memcmp(p, "null", 4) == 0)
					msgpack_pack_nil(pk);
				else if (e > p && (*p == '-' || (*p >= '0' && *p <= '9')))
					pack_json_number(pk, p, e);
				else
					json_damaged();
				p = e;
				break;
		}
	}
	pfree(scratch.data);
}

/*
 * Pack json text [json, json + len) whose outermost container would sit at
 * nesting level depth of the envelope's value (the value map is level 1).
 */
void
json_encode_text(msgpack_packer *pk, const char *json, int len, int depth)
{
	JsonShape	shape;

	json_measure(json, json + len, &shape);
	if (shape.max_depth > 0 && depth - 1 + shape.max_depth > PSYNC_DECODE_MAX_DEPTH)
		msgpack_pack_str_with_body(pk, json, len);
	else
		json_emit(pk, json, json + len, &shape);
	pfree(shape.counts);
}

static void
pack_jsonb_scalar(msgpack_packer *pk, const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			msgpack_pack_nil(pk);
			break;
		case jbvBool:
			if (v->val.boolean)
				msgpack_pack_true(pk);
			else
				msgpack_pack_false(pk);
			break;
		case jbvString:
			msgpack_pack_str_with_body(pk, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			pack_numeric(pk, v->val.numeric);
			break;
		default:
			elog(ERROR, "unexpected jsonb scalar type %d", (int) v->type);
	}
}

/*
 * Pack a jsonb datum whose outermost container would sit at nesting level
 * depth of the envelope's value (the value map is level 1).  A value nested
 * deeper than clients decode goes out as its JSON text instead (see the
 * header comment): pk must write into a StringInfo, whose bytes packed so
 * far for this value are taken back.
 */
void
json_encode_jsonb(msgpack_packer *pk, Datum value, int depth)
{
	Jsonb	   *jb = DatumGetJsonbP(value);
	StringInfo	buf = (StringInfo) pk->data;
	int			mark = buf->len;
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken token;
	int			open = 0;		/* containers open, the raw-scalar wrapper too */
	bool		raw_scalar = false;

	while ((token = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (token)
		{
			case WJB_BEGIN_OBJECT:
				if (depth + open - raw_scalar > PSYNC_DECODE_MAX_DEPTH)
					goto too_deep;
				open++;
				msgpack_pack_map(pk, v.val.object.nPairs);
				break;
			case WJB_BEGIN_ARRAY:
				/* a top-level scalar is stored as a one-element raw array */
				if (open == 0 && v.val.array.rawScalar)
				{
					raw_scalar = true;
					open++;
					break;
				}
				if (depth + open - raw_scalar > PSYNC_DECODE_MAX_DEPTH)
					goto too_deep;
				open++;
				msgpack_pack_array(pk, v.val.array.nElems);
				break;
			case WJB_KEY:
			case WJB_VALUE:
			case WJB_ELEM:
				pack_jsonb_scalar(pk, &v);
				break;
			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				/* (v is not filled in for end tokens) */
				open--;
				break;
			default:
				elog(ERROR, "unexpected jsonb token %d", (int) token);
		}
	}
	return;

too_deep:
	{
		char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

		buf->len = mark;
		buf->data[mark] = '\0';
		msgpack_pack_str_with_body(pk, text, strlen(text));
	}
}
