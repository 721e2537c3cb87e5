/*
 * watch_json.c — MessagePack → JSON rendering for para-sync-watch.
 *
 * Owns how a row looks on a terminal: msgpack-c unpacks the value (already
 * validated by the decoder) and this file prints it as compact JSON, so that
 * the values people watch read like para_sync.snapshot_json().
 */
#include "watch_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

static bool
put(json_text *j, const char *s, size_t n)
{
	if (j->len + n + 1 > j->cap)
	{
		size_t		cap = (j->len + n + 1) * 2;
		char	   *data = realloc(j->data, cap);

		if (data == NULL)
			return false;
		j->data = data;
		j->cap = cap;
	}
	memcpy(j->data + j->len, s, n);
	j->len += n;
	j->data[j->len] = '\0';
	return true;
}

static bool
putf(json_text *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool
putf(json_text *j, const char *fmt, ...)
{
	char		buf[128];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return n >= 0 && put(j, buf, (size_t) n < sizeof(buf) ? (size_t) n : sizeof(buf) - 1);
}

static bool
put_string(json_text *j, const char *s, size_t n)
{
	if (!put(j, "\"", 1))
		return false;
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];
		bool		ok;

		if (c == '"' || c == '\\')
			ok = put(j, "\\", 1) && put(j, (const char *) &c, 1);
		else if (c < 0x20 || c == 0x7f)
			ok = putf(j, "\\u%04x", c);
		else
			ok = put(j, (const char *) &c, 1);
		if (!ok)
			return false;
	}
	return put(j, "\"", 1);
}

static bool
put_timestamp(json_text *j, const msgpack_object *o)
{
	msgpack_timestamp ts;
	struct tm	tm;
	time_t		secs;
	char		buf[64];

	if (!msgpack_object_to_timestamp(o, &ts))
		return put(j, "\"ext:-1\"", 8);
	secs = (time_t) ts.tv_sec;
	if (gmtime_r(&secs, &tm) == NULL)
		return put(j, "\"timestamp\"", 11);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	if (ts.tv_nsec != 0)
		return putf(j, "\"%s.%06" PRIu32 "Z\"", buf, ts.tv_nsec / 1000);
	return putf(j, "\"%sZ\"", buf);
}

static bool put_object(json_text *j, const msgpack_object *o);

static bool
put_map(json_text *j, const msgpack_object_map *m)
{
	if (!put(j, "{", 1))
		return false;
	for (uint32_t i = 0; i < m->size; i++)
	{
		const msgpack_object *k = &m->ptr[i].key;

		if (i > 0 && !put(j, ", ", 2))
			return false;
		if (k->type == MSGPACK_OBJECT_STR)
		{
			if (!put_string(j, k->via.str.ptr, k->via.str.size))
				return false;
		}
		else
		{
			json_text	inner = {0};
			bool		ok = put_object(&inner, k) && put_string(j, inner.data, inner.len);

			free(inner.data);
			if (!ok)
				return false;
		}
		if (!put(j, ": ", 2) || !put_object(j, &m->ptr[i].val))
			return false;
	}
	return put(j, "}", 1);
}

static bool
put_object(json_text *j, const msgpack_object *o)
{
	switch (o->type)
	{
		case MSGPACK_OBJECT_NIL:
			return put(j, "null", 4);
		case MSGPACK_OBJECT_BOOLEAN:
			return o->via.boolean ? put(j, "true", 4) : put(j, "false", 5);
		case MSGPACK_OBJECT_POSITIVE_INTEGER:
			return putf(j, "%" PRIu64, o->via.u64);
		case MSGPACK_OBJECT_NEGATIVE_INTEGER:
			return putf(j, "%" PRId64, o->via.i64);
		case MSGPACK_OBJECT_FLOAT32:
		case MSGPACK_OBJECT_FLOAT64:
			if (!isfinite(o->via.f64))
				return putf(j, "\"%g\"", o->via.f64);
			return putf(j, "%.17g", o->via.f64);
		case MSGPACK_OBJECT_STR:
			return put_string(j, o->via.str.ptr, o->via.str.size);
		case MSGPACK_OBJECT_BIN:
			if (!put(j, "\"\\\\x", 4))
				return false;
			for (uint32_t i = 0; i < o->via.bin.size; i++)
				if (!putf(j, "%02x", (unsigned char) o->via.bin.ptr[i]))
					return false;
			return put(j, "\"", 1);
		case MSGPACK_OBJECT_EXT:
			if (o->via.ext.type == -1)
				return put_timestamp(j, o);
			return putf(j, "\"ext:%d\"", o->via.ext.type);
		case MSGPACK_OBJECT_ARRAY:
			if (!put(j, "[", 1))
				return false;
			for (uint32_t i = 0; i < o->via.array.size; i++)
				if ((i > 0 && !put(j, ", ", 2)) || !put_object(j, &o->via.array.ptr[i]))
					return false;
			return put(j, "]", 1);
		case MSGPACK_OBJECT_MAP:
			return put_map(j, &o->via.map);
	}
	return false;
}

bool
msgpack_to_json(const uint8_t *msgpack, size_t len, json_text *out)
{
	msgpack_unpacked u;
	bool		ok;

	out->len = 0;
	if (!put(out, "", 0))
		return false;
	msgpack_unpacked_init(&u);
	ok = msgpack_unpack_next(&u, (const char *) msgpack, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
		put_object(out, &u.data);
	msgpack_unpacked_destroy(&u);
	return ok;
}
