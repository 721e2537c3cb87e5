/*
 * envelope_json.c — para_sync.envelope_to_jsonb(bytea): any envelope (or
 * any MessagePack value) as jsonb, for people and for the regression tests.
 *
 * msgpack → JSON text → jsonb.  bin becomes "\x<hex>", the timestamp
 * extension an ISO-8601 UTC string, other extensions {"ext": n, "hex": ...}.
 * Input that is not exactly one valid MessagePack value is an error.
 */
#include "para_sync.h"

#include <math.h>

#include <msgpack.h>

#include "miscadmin.h"
#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/json.h"

PG_FUNCTION_INFO_V1(para_sync_envelope_to_jsonb);

#define MAX_DEPTH 64

static void append_object(StringInfo out, const msgpack_object *o, int depth);

static void
append_json_string(StringInfo out, const char *s, size_t len)
{
	char	   *copy = pnstrdup(s, len);

	escape_json(out, copy);
	pfree(copy);
}

static void
append_hex(StringInfo out, const char *prefix, const char *bytes, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	appendStringInfo(out, "\"%s", prefix);
	for (size_t i = 0; i < len; i++)
	{
		appendStringInfoChar(out, hex[((unsigned char) bytes[i]) >> 4]);
		appendStringInfoChar(out, hex[((unsigned char) bytes[i]) & 0xF]);
	}
	appendStringInfoChar(out, '"');
}

static void
append_timestamp(StringInfo out, const msgpack_object *o)
{
	msgpack_timestamp ts;
	Timestamp	pg_ts;
	struct pg_tm tm;
	fsec_t		fsec;
	char		buf[MAXDATELEN + 1];

	if (!msgpack_object_to_timestamp(o, &ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid msgpack timestamp extension")));
	pg_ts = (Timestamp) ts.tv_sec * USECS_PER_SEC + ts.tv_nsec / 1000 -
		(Timestamp) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
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

static void
append_object(StringInfo out, const msgpack_object *o, int depth)
{
	if (depth > MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("msgpack value nested deeper than %d levels", MAX_DEPTH)));
	check_stack_depth();
	switch (o->type)
	{
		case MSGPACK_OBJECT_NIL:
			appendStringInfoString(out, "null");
			break;
		case MSGPACK_OBJECT_BOOLEAN:
			appendStringInfoString(out, o->via.boolean ? "true" : "false");
			break;
		case MSGPACK_OBJECT_POSITIVE_INTEGER:
			appendStringInfo(out, UINT64_FORMAT, (uint64) o->via.u64);
			break;
		case MSGPACK_OBJECT_NEGATIVE_INTEGER:
			appendStringInfo(out, INT64_FORMAT, (int64) o->via.i64);
			break;
		case MSGPACK_OBJECT_FLOAT32:
		case MSGPACK_OBJECT_FLOAT64:
			append_float(out, o->via.f64);
			break;
		case MSGPACK_OBJECT_STR:
			append_json_string(out, o->via.str.ptr, o->via.str.size);
			break;
		case MSGPACK_OBJECT_BIN:
			append_hex(out, "\\\\x", o->via.bin.ptr, o->via.bin.size);
			break;
		case MSGPACK_OBJECT_EXT:
			if (o->via.ext.type == -1)
				append_timestamp(out, o);
			else
			{
				appendStringInfo(out, "{\"ext\": %d, \"hex\": ", (int) o->via.ext.type);
				append_hex(out, "", o->via.ext.ptr, o->via.ext.size);
				appendStringInfoChar(out, '}');
			}
			break;
		case MSGPACK_OBJECT_ARRAY:
			appendStringInfoChar(out, '[');
			for (uint32 i = 0; i < o->via.array.size; i++)
			{
				if (i > 0)
					appendStringInfoString(out, ", ");
				append_object(out, &o->via.array.ptr[i], depth + 1);
			}
			appendStringInfoChar(out, ']');
			break;
		case MSGPACK_OBJECT_MAP:
			appendStringInfoChar(out, '{');
			for (uint32 i = 0; i < o->via.map.size; i++)
			{
				const msgpack_object_kv *kv = &o->via.map.ptr[i];

				if (i > 0)
					appendStringInfoString(out, ", ");
				if (kv->key.type == MSGPACK_OBJECT_STR)
					append_json_string(out, kv->key.via.str.ptr, kv->key.via.str.size);
				else
				{
					StringInfoData k;

					initStringInfo(&k);
					append_object(&k, &kv->key, depth + 1);
					escape_json(out, k.data);
				}
				appendStringInfoString(out, ": ");
				append_object(out, &kv->val, depth + 1);
			}
			appendStringInfoChar(out, '}');
			break;
	}
}

Datum
para_sync_envelope_to_jsonb(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	const char *data = VARDATA_ANY(raw);
	size_t		len = VARSIZE_ANY_EXHDR(raw);
	size_t		off = 0;
	msgpack_unpacked unpacked;
	msgpack_unpack_return rc;
	StringInfoData json;

	msgpack_unpacked_init(&unpacked);
	rc = msgpack_unpack_next(&unpacked, data, len, &off);
	if (rc != MSGPACK_UNPACK_SUCCESS || off != len)
	{
		msgpack_unpacked_destroy(&unpacked);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid para_sync envelope"),
				 errdetail(rc == MSGPACK_UNPACK_SUCCESS
						   ? "%zu trailing bytes after the MessagePack value."
						   : "The bytes are not one complete MessagePack value.",
						   len - off)));
	}
	initStringInfo(&json);
	PG_TRY();
	{
		append_object(&json, &unpacked.data, 0);
	}
	PG_FINALLY();
	{
		msgpack_unpacked_destroy(&unpacked);
	}
	PG_END_TRY();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}
