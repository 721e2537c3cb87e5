/*
 * keys.c — object keys of synced rows (docs/protocol.md), server side: the
 * one home of a key's text.
 *
 * Builds "<sync name>:<pk1>[:<pk2>...]" from a row, each part the key
 * column's text (key_part_text) escaped by the shared key_escape.c, and
 * parses a key back into the primary-key datums that snapshot() looks up.
 * The calls form a tree: keys.c → canonical_text.c (one value's
 * setting-independent text, a leaf) and → src/common/key_escape.c; neither
 * calls back.  key_upgrade.c asks for the key version 0.1 gave a row
 * (key_build_legacy).
 *
 * A key is a function of the key's value: values that the primary key's
 * equality calls equal get one text, whatever the session settings
 * (canonical_text.c) and whatever form they were written in.  On top of the
 * setting-independent text, key parts therefore drop what equality ignores:
 * numeric trailing fractional zeros (1.0 = 1.00 = 1), the sign of a float
 * zero (-0 = 0), trailing blanks of char(n), and the split of an interval
 * into months, days and time ('1 mon' = '30 days', '1 day' = '24 hours':
 * the interval is re-split from its total length the way interval equality
 * measures it).  type_trust.c refuses key types where this is not possible.
 */
#include "para_sync.h"

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

/*
 * The interval with the same total length (months of 30 days, days of 24
 * hours, as interval equality counts) split the one canonical way: as many
 * whole months as fit, then whole days, then time, all of one sign.
 */
static Interval *
interval_canonical(const Interval *iv)
{
	int128		total = (int128) iv->month * 30 * USECS_PER_DAY +
		(int128) iv->day * USECS_PER_DAY + iv->time;
	int128		months = total / ((int128) 30 * USECS_PER_DAY);
	int128		days;
	int128		rest;
	Interval   *result = palloc(sizeof(Interval));

	/* keep months and days inside int32; what does not fit stays in time */
	if (months > PG_INT32_MAX)
		months = PG_INT32_MAX;
	if (months < PG_INT32_MIN)
		months = PG_INT32_MIN;
	rest = total - months * 30 * USECS_PER_DAY;
	days = rest / USECS_PER_DAY;
	if (days > PG_INT32_MAX)
		days = PG_INT32_MAX;
	if (days < PG_INT32_MIN)
		days = PG_INT32_MIN;
	rest -= days * USECS_PER_DAY;
	result->month = (int32) months;
	result->day = (int32) days;
	if (rest > PG_INT64_MAX || rest < PG_INT64_MIN)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("interval key value out of range")));
	result->time = (int64) rest;
	return result;
}

/*
 * The text of one primary-key value (before escaping); legacy: as version
 * 0.1 gave it, the setting-independent text alone.
 */
static char *
key_part_text(const KeyColumn *col, Datum value, bool legacy)
{
	if (legacy)
		return canonical_text(col->base_typid, value, (FmgrInfo *) &col->output);
	switch (col->base_typid)
	{
		case NUMERICOID:
			return numeric_normalize(DatumGetNumeric(value));
		case FLOAT4OID:
			if (DatumGetFloat4(value) == 0)
				return pstrdup("0");
			break;
		case FLOAT8OID:
			if (DatumGetFloat8(value) == 0)
				return pstrdup("0");
			break;
		case BPCHAROID:
			{
				text	   *t = DatumGetTextPP(value);
				int			len = VARSIZE_ANY_EXHDR(t);

				while (len > 0 && VARDATA_ANY(t)[len - 1] == ' ')
					len--;
				return pnstrdup(VARDATA_ANY(t), len);
			}
		case INTERVALOID:
			value = IntervalPGetDatum(interval_canonical(DatumGetIntervalP(value)));
			break;
		default:
			break;
	}
	return canonical_text(col->base_typid, value, (FmgrInfo *) &col->output);
}

/*
 * The text of one value of a column keyed like a primary-key column, before
 * escaping: a scope part (scope.c) is exactly a key part.
 */
char *
key_column_text(const KeyColumn *col, Datum value)
{
	return key_part_text(col, value, false);
}

static void
key_too_long(SyncedTable *table, int len)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("para_sync key of table \"%s\" is too long (%d bytes)",
					table->sync_name, len),
			 errdetail("Keys are limited to %d bytes after escaping.", PSYNC_MAX_KEY_LEN),
			 errhint("Use shorter primary-key values for synced tables.")));
}

/*
 * Keys in byte order, the order of the outbox's and the counters' primary
 * keys (COLLATE "C"): <0, 0 or >0 as key a sorts before, with or after b.
 */
int
key_cmp(const char *a, int alen, const char *b, int blen)
{
	int			c = memcmp(a, b, Min(alen, blen));

	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

/* Append text, escaped as a key part (src/common/key_escape.c), to buf. */
void
key_append_escaped(StringInfo buf, const char *text)
{
	size_t		len = strlen(text);

	enlargeStringInfo(buf, (int) PSYNC_KEY_ESCAPED_MAX(len) + 1);
	buf->len += (int) psync_key_escape(text, len, buf->data + buf->len);
	buf->data[buf->len] = '\0';
}

/*
 * Build the key into key; legacy renders each part as version 0.1 did (the
 * setting-independent text, without dropping what equality ignores), and
 * returns false instead of an error when that key would be too long.
 */
static bool
key_build_with(StringInfo key, SyncedTable *table, Datum *values, bool *nulls,
			   bool legacy)
{
	appendStringInfoString(key, table->sync_name);
	for (int i = 0; i < table->nkeys; i++)
	{
		KeyColumn  *col = &table->keys[i];
		int			idx = col->attnum - 1;

		/* a primary key is never null; be defensive all the same */
		if (nulls[idx])
			elog(ERROR, "primary-key column %d of \"%s\" is null",
				 col->attnum, table->sync_name);
		appendStringInfoChar(key, ':');
		key_append_escaped(key, key_part_text(col, values[idx], legacy));
		if (key->len > PSYNC_MAX_KEY_LEN)
		{
			if (legacy)
				return false;
			key_too_long(table, key->len);
		}
	}
	return true;
}

/*
 * The row's key.  While the installed schema is still 0.1 (a newer library
 * before ALTER EXTENSION UPDATE: outbox_append.c), it is the key 0.1 gave
 * (too long a 0.1 key is an error, as it was), so that every key the update
 * moves (key_upgrade.c) is one that 0.1 or this window really published.
 */
void
key_build(StringInfo key, SyncedTable *table, Datum *values, bool *nulls)
{
	bool		legacy = outbox_relations()->legacy_schema;

	if (!key_build_with(key, table, values, nulls, legacy))
		key_too_long(table, key->len);
}

/*
 * The key version 0.1 gave this row (numeric 1.0 was "1%2E0", not "1"), if
 * it differs from today's and could have been written; false otherwise.
 */
bool
key_build_legacy(StringInfo key, SyncedTable *table, Datum *values, bool *nulls)
{
	StringInfoData now;

	if (!key_build_with(key, table, values, nulls, true))
		return false;
	initStringInfo(&now);
	key_build_with(&now, table, values, nulls, false);
	return strcmp(now.data, key->data) != 0;
}

/*
 * Refuse key, given to snapshot(): not of the key grammar (psync_key_is_valid,
 * the check libparasync makes too) or not of its table's key shape.
 */
void
key_refuse(const char *key, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid para_sync key \"%s\"", key),
			 errdetail("%s", detail),
			 errhint("A key is <sync name>:<primary key>[:<primary key>...], each part escaped as %%XX outside [A-Za-z0-9_-].")));
}

/*
 * Split key (whose sync-name part was already matched to table) into the
 * primary-key datums, through each key column's input function.
 */
void
key_parse(const char *key, SyncedTable *table, Datum *datums)
{
	const char *p = strchr(key, ':');

	for (int i = 0; i < table->nkeys; i++)
	{
		KeyColumn  *col = &table->keys[i];
		const char *start;
		const char *end;
		char	   *raw;
		long		len;

		if (p == NULL)
			key_refuse(key, psprintf("Table \"%s\" has %d primary-key columns.",
								  table->sync_name, table->nkeys));
		start = p + 1;
		end = strchr(start, ':');
		if (end == NULL)
			end = start + strlen(start);
		raw = palloc(end - start + 1);
		len = psync_key_unescape(start, end - start, raw);
		if (len < 0)
			key_refuse(key, "A key part is not canonically escaped.");
		raw[len] = '\0';			/* unescaping never yields a NUL byte */
		if (!pg_verifymbstr(raw, len, true))
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("invalid para_sync key \"%s\"", key),
					 errdetail("Key part %d is not valid %s once unescaped.",
							   i + 1, GetDatabaseEncodingName()),
					 errhint("Escape each byte of the key's UTF-8 text as %%XX outside [A-Za-z0-9_-].")));
		datums[i] = OidInputFunctionCall(col->input_fn, raw, col->typioparam, -1);
		p = (*end == ':') ? end : NULL;
	}
	if (p != NULL)
		key_refuse(key, psprintf("Table \"%s\" has %d primary-key columns.",
							  table->sync_name, table->nkeys));
}
