/*
 * canonical_text.c — one value's text, in a form that does not depend on
 * session settings.  A leaf: keys.c (key parts) and row_encode.c (values
 * sent as text) call it; it calls no other para_sync module.
 *
 * Object keys must be the same whichever session writes or reads them, and
 * envelope values should not change with a writer's DateStyle.  Output
 * functions of dates, times, intervals, floats and bytea follow DateStyle,
 * TimeZone, IntervalStyle, extra_float_digits and bytea_output, so for those
 * types this module renders a fixed form instead: ISO 8601 (timestamptz in
 * UTC), postgres-style intervals, shortest exact floats, hex bytea.  Every
 * form is accepted back by the type's input function in any session.
 *
 * Other types use their output function.  Many of those follow the same
 * settings through the types they are made of (ranges and composites of
 * timestamps, geometric types of floats, money with lc_monetary, regclass
 * with search_path), and a type para_sync does not know may read any
 * setting: so unless the type is known to print the same in every session,
 * its output function runs under fixed settings (output_settings below).
 */
#include "para_sync.h"

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
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

/*
 * The settings an output function runs under when its type is not known to
 * print the same in every session: the forms the cases below use.
 */
static const char *const output_settings[][2] = {
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
	{"lc_monetary", "C"},
	{"search_path", "pg_catalog"},
};

/* Does the output of type typid depend on no setting? */
static bool
output_is_setting_free(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
		case CHAROID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case NUMERICOID:
		case UUIDOID:
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
		case INETOID:
		case CIDROID:
		case MACADDROID:
		case MACADDR8OID:
		case BITOID:
		case VARBITOID:
		case PG_LSNOID:
			return true;
		default:
			return type_is_enum(typid);
	}
}

/* The output of value under output_settings. */
static char *
output_with_fixed_settings(Datum value, FmgrInfo *output)
{
	int			nest = NewGUCNestLevel();
	char	   *text;

	for (int i = 0; i < lengthof(output_settings); i++)
		(void) set_config_option(output_settings[i][0], output_settings[i][1],
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	text = OutputFunctionCall(output, value);
	AtEOXact_GUC(true, nest);
	return text;
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
			if (output_is_setting_free(typid))
				return OutputFunctionCall(output, value);
			return output_with_fixed_settings(value, output);
	}
}
