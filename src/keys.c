/*
 * keys.c — object keys of synced rows (docs/protocol.md), server side.
 *
 * Builds "<sync name>:<pk1>[:<pk2>...]" from a row, each part the key
 * column's text output escaped by the shared key_escape.c, and parses a key
 * back into the primary-key datums that snapshot() looks up.
 */
#include "para_sync.h"

#include "utils/builtins.h"

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

void
key_build(StringInfo key, SyncedTable *table, Datum *values, bool *nulls)
{
	appendStringInfoString(key, table->sync_name);
	for (int i = 0; i < table->nkeys; i++)
	{
		KeyColumn  *col = &table->keys[i];
		int			idx = col->attnum - 1;
		char	   *text;
		size_t		len;

		/* a primary key is never null; be defensive all the same */
		if (nulls[idx])
			elog(ERROR, "primary-key column %d of \"%s\" is null",
				 col->attnum, table->sync_name);
		text = canonical_text(col->base_typid, values[idx], &col->output);
		len = strlen(text);
		enlargeStringInfo(key, (int) PSYNC_KEY_ESCAPED_MAX(len) + 1);
		key->data[key->len++] = ':';
		key->len += (int) psync_key_escape(text, len, key->data + key->len);
		key->data[key->len] = '\0';
		if (key->len > PSYNC_MAX_KEY_LEN)
			key_too_long(table, key->len);
	}
}

static void
bad_key(const char *key, const char *detail)
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
			bad_key(key, psprintf("Table \"%s\" has %d primary-key columns.",
								  table->sync_name, table->nkeys));
		start = p + 1;
		end = strchr(start, ':');
		if (end == NULL)
			end = start + strlen(start);
		raw = palloc(end - start + 1);
		len = psync_key_unescape(start, end - start, raw);
		if (len < 0)
			bad_key(key, "A key part is not canonically escaped.");
		raw[len] = '\0';
		if (strlen(raw) != (size_t) len)
			bad_key(key, "A key part contains a NUL byte.");
		datums[i] = OidInputFunctionCall(col->input_fn, raw, col->typioparam, -1);
		p = (*end == ':') ? end : NULL;
	}
	if (p != NULL)
		bad_key(key, psprintf("Table \"%s\" has %d primary-key columns.",
							  table->sync_name, table->nkeys));
}
