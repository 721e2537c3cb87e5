/*
 * row_encode.c — turns a row's datums into the MessagePack "value" map of an
 * envelope (docs/protocol.md), and builds the envelope bytea around it.
 *
 * Owns the type mapping: integers in their smallest encoding, floats as
 * floats, numeric as exact strings, text as str, bytea as bin, json/jsonb as
 * native msgpack structures (json from its own text, json_encode.c), timestamps as the msgpack timestamp extension,
 * arrays as arrays, anything else through the type's output function.  The
 * msgpack bytes are written by msgpack-c's packer into a StringInfo; the
 * envelope header itself is the shared codec's job (envelope.c).
 */
#include "para_sync.h"

#include <math.h>

#include <msgpack.h>

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

int
msgpack_buffer_write(void *data, const char *bytes, size_t len)
{
	appendBinaryStringInfo((StringInfo) data, bytes, (int) len);
	return 0;
}

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

/* A JSON number: an int when it is integral and fits 64 bits, else a float. */
void
json_encode_number(msgpack_packer *pk, Numeric num)
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

static void
encode_jsonb_scalar(msgpack_packer *pk, const JsonbValue *v)
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
			json_encode_number(pk, v->val.numeric);
			break;
		default:
			elog(ERROR, "unexpected jsonb scalar type %d", (int) v->type);
	}
}

/*
 * A jsonb value whose outermost container sits at nesting level depth of
 * the value.  A value nested deeper than clients decode goes out as its
 * JSON text instead (json_encode.c explains why): the bytes packed so far
 * are taken back.
 */
static void
encode_jsonb(msgpack_packer *pk, Jsonb *jb, int depth)
{
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
				encode_jsonb_scalar(pk, &v);
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
		pack_cstring(pk, text);
	}
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
			encode_jsonb(pk, DatumGetJsonbP(value), depth);
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

	msgpack_packer_init(&pk, buf, msgpack_buffer_write);
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

/*
 * The envelope as a bytea, encoded by the shared codec straight behind the
 * varlena header (no extra copy).  value NULL means nil; a reload (a
 * table-level event, docs/protocol.md) has no value field.  Every envelope
 * the server writes (outbox, snapshot(), snapshot_table()) is built here, so
 * its key is checked here, by the validator libparasync uses.
 */
bytea *
envelope_build(const char *key, int key_len, StringInfo value,
			   const char *schema_version, uint64 sequence, psync_op op,
			   bool has_txid, uint64 txid)
{
	static const uint8 nil = 0xc0;
	StringInfoData out;
	psync_envelope env = {0};

	/* the one key grammar clients accept (key_escape.c): never send another */
	if (!(op == PSYNC_OP_RELOAD ? psync_sync_name_is_valid(key, key_len)
		  : psync_key_is_valid(key, key_len)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("para_sync built an invalid key \"%.*s\"", key_len, key),
				 errdetail("Clients refuse keys outside the grammar of docs/protocol.md.")));
	initStringInfo(&out);
	appendStringInfoSpaces(&out, VARHDRSZ);
	env.key = key;
	env.key_len = key_len;
	env.has_value = op != PSYNC_OP_RELOAD;
	env.value = value ? (const uint8_t *) value->data : &nil;
	env.value_len = value ? value->len : 1;
	env.schema_version = schema_version;
	env.schema_version_len = strlen(schema_version);
	env.sequence = sequence;
	env.op = op;
	env.has_txid = has_txid;
	env.txid = txid;
	if (psync_envelope_encode(&env, msgpack_buffer_write, &out) != 0)
		elog(ERROR, "could not encode para_sync envelope");
	SET_VARSIZE(out.data, out.len);
	return (bytea *) out.data;
}
