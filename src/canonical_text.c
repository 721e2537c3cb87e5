/*
 * canonical_text.c — text forms that do not depend on session settings.
 *
 * Object keys must be the same whichever session writes or reads them, and
 * envelope values should not change with a writer's DateStyle.  Output
 * functions of dates, times, intervals, floats and bytea follow DateStyle,
 * TimeZone, IntervalStyle, extra_float_digits and bytea_output, so for those
 * types this module renders a fixed form instead: ISO 8601 (timestamptz in
 * UTC), postgres-style intervals, shortest exact floats, hex bytea.  Every
 * form is accepted back by the type's input function in any session.
 * Other types use their output function.
 */
#include "para_sync.h"

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

static char *
canonical_bytea(Datum value)
{
	static const char hex[] = "0123456789abcdef";
	bytea	   *b = DatumGetByteaPP(value);
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(b);
	size_t		len = VARSIZE_ANY_EXHDR(b);
	char	   *out = palloc(2 * len + 3);
	char	   *o = out;

	*o++ = '\\';
	*o++ = 'x';
	for (size_t i = 0; i < len; i++)
	{
		*o++ = hex[p[i] >> 4];
		*o++ = hex[p[i] & 0xF];
	}
	*o = '\0';
	return out;
}

static char *
canonical_interval(Datum value)
{
	struct pg_itm itm;
	char		buf[MAXDATELEN + 1];

	interval2itm(*DatumGetIntervalP(value), &itm);
	EncodeInterval(&itm, INTSTYLE_POSTGRES, buf);
	return pstrdup(buf);
}

/* The canonical text of value, of base type typid; output is the fallback. */
char *
canonical_text(Oid typid, Datum value, FmgrInfo *output)
{
	static const int utc = 0;
	char		buf[MAXDATELEN + 1];

	switch (typid)
	{
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return pstrdup(JsonEncodeDateTime(buf, value, typid, &utc));
		case INTERVALOID:
			return canonical_interval(value);
		case FLOAT4OID:
			float_to_shortest_decimal_buf(DatumGetFloat4(value), buf);
			return pstrdup(buf);
		case FLOAT8OID:
			double_to_shortest_decimal_buf(DatumGetFloat8(value), buf);
			return pstrdup(buf);
		case BYTEAOID:
			return canonical_bytea(value);
		default:
			return OutputFunctionCall(output, value);
	}
}
