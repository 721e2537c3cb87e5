/*
 * key_escape.c — the key grammar (docs/protocol.md, "Objects and keys").
 *
 * Owns the one rule that keeps every key a valid NATS subject token: only
 * [A-Za-z0-9_-] pass through, every other byte (including '.', '*', '>',
 * ':', '%', whitespace, control and non-ASCII UTF-8 bytes) becomes %XX.
 * And the one validator of whole keys, psync_key_is_valid(), which the
 * extension (every envelope it writes, every key snapshot() is asked for)
 * and libparasync (every key it decodes or subscribes to) both use, so the
 * two accept exactly the same keys.  Likewise psync_scope_is_valid(), the
 * one validator of scope tokens (keys.c's parts, with "%00" for a NULL and
 * "%" alone for one empty text).  Pure C, shared by both.
 */
#include "para_sync/key.h"

#include <string.h>

#include "para_sync/envelope.h"

static const char hex_upper[] = "0123456789ABCDEF";

/*
 * The class of each byte in a key: 1 plain [A-Za-z0-9_-], 2 ':', 3 '%',
 * 0 never in a key.  A lookup per byte keeps psync_key_is_valid() as fast
 * as the byte check it replaced on the decoder's path.
 */
enum
{
	KEY_BYTE_BAD, KEY_BYTE_PLAIN, KEY_BYTE_COLON, KEY_BYTE_PERCENT
};
static const unsigned char key_byte_class[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 0, 0, 0, 0, 0,
	0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,
	0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Inlined below: calls to the exported function could not be (-fPIC). */
static inline bool
is_plain(unsigned char c)
{
	return key_byte_class[c] == KEY_BYTE_PLAIN;
}

bool
psync_key_byte_is_plain(unsigned char c)
{
	return is_plain(c);
}

size_t
psync_key_escape(const char *in, size_t len, char *out)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) in[i];

		if (is_plain(c))
			out[n++] = (char) c;
		else
		{
			out[n++] = '%';
			out[n++] = hex_upper[c >> 4];
			out[n++] = hex_upper[c & 0x0F];
		}
	}
	return n;
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;					/* lower-case hex is never produced */
}

/*
 * The byte escaped by the "%XX" at in[i] (in[i] is '%'), or -1 when it is not
 * one escaping produces: truncated, lower-case hex, a plain byte (keys are
 * canonical) or 00 (no key value holds a NUL byte).
 */
static inline int
escaped_byte(const char *in, size_t len, size_t i)
{
	int			hi,
				lo,
				c;

	if (len - i < 3)
		return -1;
	hi = hex_value((unsigned char) in[i + 1]);
	lo = hex_value((unsigned char) in[i + 2]);
	if (hi < 0 || lo < 0)
		return -1;
	c = (hi << 4) | lo;
	if (c == 0 || is_plain((unsigned char) c))
		return -1;
	return c;
}

long
psync_key_unescape(const char *in, size_t len, char *out)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) in[i];

		if (c == '%')
		{
			int			b = escaped_byte(in, len, i);

			if (b < 0)
				return -1;
			out[n++] = (char) b;
			i += 2;
		}
		else if (is_plain(c))
			out[n++] = (char) c;
		else
			return -1;
	}
	return (long) n;
}

static inline bool
sync_name_is_valid(const char *name, size_t len)
{
	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_plain((unsigned char) name[i]))
			return false;
	return true;
}

bool
psync_sync_name_is_valid(const char *name, size_t len)
{
	return sync_name_is_valid(name, len);
}

bool
psync_key_is_valid(const char *key, size_t len)
{
	size_t		i = 0;

	if (key == NULL || len > PSYNC_MAX_KEY_LEN)
		return false;
	/* the sync name: 1..63 plain bytes, then ':' */
	while (i < len && key_byte_class[(unsigned char) key[i]] == KEY_BYTE_PLAIN)
		i++;
	if (i == 0 || i > 63 || i == len || key[i] != ':')
		return false;
	/* the parts: plain bytes, %XX, and the ':' before each (parts may be empty) */
	for (i++; i < len; i++)
	{
		unsigned char cls = key_byte_class[(unsigned char) key[i]];

		if (cls == KEY_BYTE_PLAIN || cls == KEY_BYTE_COLON)
			continue;
		if (cls != KEY_BYTE_PERCENT || escaped_byte(key, len, i) < 0)
			return false;
		i += 2;
	}
	return true;
}

bool
psync_key_in_table(const char *key, size_t len, const char *sync_name,
				   size_t name_len)
{
	return len > name_len && key[name_len] == ':' &&
		memcmp(key, sync_name, name_len) == 0;
}

bool
psync_scope_is_valid(const char *scope, size_t len)
{
	if (scope == NULL || len == 0 || len > PSYNC_MAX_SCOPE_LEN)
		return false;
	if (len == 1 && scope[0] == '%')
		return true;			/* one scope column holding '' */
	for (size_t i = 0; i < len; i++)
	{
		unsigned char cls = key_byte_class[(unsigned char) scope[i]];

		if (cls == KEY_BYTE_PLAIN || cls == KEY_BYTE_COLON)
			continue;
		if (cls != KEY_BYTE_PERCENT)
			return false;
		/* "%00" (a NULL) is a whole part: between colons or the ends */
		if (len - i >= 3 && scope[i + 1] == '0' && scope[i + 2] == '0' &&
			(i == 0 || scope[i - 1] == ':') && (i + 3 == len || scope[i + 3] == ':'))
		{
			i += 2;
			continue;
		}
		if (escaped_byte(scope, len, i) < 0)
			return false;
		i += 2;
	}
	return true;
}
