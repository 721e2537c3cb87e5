/*
 * row_encode.c — turns a row's datums into the MessagePack "value" map of an
 * envelope (docs/protocol.md, "Value mapping").
 *
 * Owns the type mapping: integers in their smallest encoding, floats as
 * floats, numeric as exact strings, text as str, bytea as bin, json and
 * jsonb as native msgpack structures (json_encode.c), timestamps as the
 * msgpack timestamp extension, arrays as arrays, anything else as its
 * setting-independent text (canonical_text.c).  The msgpack bytes are
 * written by msgpack-c's packer into a StringInfo (mp_sink.h); the envelope
 * around the value is built by capture_envelope.c.
 */
#include "para_sync.h"

#include <msgpack.h>

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

static void encode_datum(msgpack_packer *pk, const ValueCodec *codec, Datum value,
						 int depth);

static void
pack_cstring(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void
encode_int(msgpack_packer *pk, Oid typid, Datum value)
{
	switch (typid)
	{
		case INT2OID:
			msgpack_pack_int64(pk, DatumGetInt16(value));
			break;
		case INT4OID:
			msgpack_pack_int64(pk, DatumGetInt32(value));
			break;
		default:
			msgpack_pack_int64(pk, DatumGetInt64(value));
			break;
	}
}

/* ±infinity cannot be a msgpack timestamp: they travel as strings. */
static void
encode_timestamp(msgpack_packer *pk, Timestamp ts)
{
	msgpack_timestamp mts;
	int64		sec;
	int64		usec;

	if (TIMESTAMP_IS_NOBEGIN(ts))
	{
		pack_cstring(pk, "-infinity");
		return;
	}
	if (TIMESTAMP_IS_NOEND(ts))
	{
		pack_cstring(pk, "infinity");
		return;
	}
	/* seconds first: near the end of the range, microseconds overflow int64 */
	sec = ts / USECS_PER_SEC;
	usec = ts % USECS_PER_SEC;
	if (usec < 0)
	{
		sec -= 1;
		usec += USECS_PER_SEC;
	}
	mts.tv_sec = sec + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	mts.tv_nsec = (uint32) (usec * 1000);
	msgpack_pack_timestamp(pk, &mts);
}

/* One dimension of an array, recursing into the next; *pos walks elements. */
static void
encode_array_dim(msgpack_packer *pk, const ValueCodec *codec, int ndim,
				 const int *dims, Datum *elems, bool *nulls, int *pos, int depth)
{
	msgpack_pack_array(pk, dims[0]);
	for (int i = 0; i < dims[0]; i++)
	{
		if (ndim > 1)
			encode_array_dim(pk, codec, ndim - 1, dims + 1, elems, nulls, pos,
							 depth + 1);
		else
		{
			if (nulls[*pos])
				msgpack_pack_nil(pk);
			else
				encode_datum(pk, codec->element, elems[*pos], depth + 1);
			(*pos)++;
		}
	}
}

static void
encode_array(msgpack_packer *pk, const ValueCodec *codec, Datum value, int depth)
{
	ArrayType  *arr = DatumGetArrayTypeP(value);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			pos = 0;

	if (ARR_NDIM(arr) == 0)
	{
		msgpack_pack_array(pk, 0);
		return;
	}
	deconstruct_array(arr, ARR_ELEMTYPE(arr), codec->elmlen, codec->elmbyval,
					  codec->elmalign, &elems, &nulls, &nelems);
	encode_array_dim(pk, codec, ARR_NDIM(arr), ARR_DIMS(arr), elems, nulls, &pos, depth);
}

/* depth: the nesting level a container value would sit at (map = 1). */
static void
encode_datum(msgpack_packer *pk, const ValueCodec *codec, Datum value, int depth)
{
	switch (codec->kind)
	{
		case VK_INT:
			encode_int(pk, codec->typid, value);
			break;
		case VK_OID:
			msgpack_pack_uint32(pk, DatumGetObjectId(value));
			break;
		case VK_FLOAT4:
			msgpack_pack_float(pk, DatumGetFloat4(value));
			break;
		case VK_FLOAT8:
			msgpack_pack_double(pk, DatumGetFloat8(value));
			break;
		case VK_BOOL:
			if (DatumGetBool(value))
				msgpack_pack_true(pk);
			else
				msgpack_pack_false(pk);
			break;
		case VK_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				msgpack_pack_str_with_body(pk, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				break;
			}
		case VK_NAME:
			pack_cstring(pk, NameStr(*DatumGetName(value)));
			break;
		case VK_BYTEA:
			{
				bytea	   *b = DatumGetByteaPP(value);

				msgpack_pack_bin_with_body(pk, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
				break;
			}
		case VK_JSON:
			{
				text	   *json = DatumGetTextPP(value);

				json_encode_text(pk, VARDATA_ANY(json), VARSIZE_ANY_EXHDR(json), depth);
				break;
			}
		case VK_JSONB:
			json_encode_jsonb(pk, value, depth);
			break;
		case VK_TIMESTAMP:
			encode_timestamp(pk, DatumGetTimestamp(value));
			break;
		case VK_ARRAY:
			encode_array(pk, codec, value, depth);
			break;
		case VK_OUTPUT:
			pack_cstring(pk, canonical_text(codec->typid, value,
											(FmgrInfo *) &codec->output));
			break;
	}
}

/*
 * Append the value map of a row to buf.  values/nulls are indexed by
 * attribute number - 1 (a deformed heap tuple of the table).
 */
void
row_encode_values(StringInfo buf, SyncedTable *table, Datum *values, bool *nulls)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, buf, mp_sink_stringinfo);
	msgpack_pack_map(&pk, table->ncolumns);
	for (int i = 0; i < table->ncolumns; i++)
	{
		SyncedColumn *col = &table->columns[i];
		int			idx = col->attnum - 1;

		msgpack_pack_str_with_body(&pk, col->name, col->name_len);
		if (nulls[idx])
			msgpack_pack_nil(&pk);
		else
			encode_datum(&pk, &col->codec, values[idx], 2);
	}
}
