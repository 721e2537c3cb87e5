/*
 * key_escape.c — escaping of object-key parts (docs/protocol.md, "Objects and keys").
 *
 * Owns the one rule that keeps every key a valid NATS subject token: only
 * [A-Za-z0-9_-] pass through, every other byte (including '.', '*', '>',
 * ':', '%', whitespace, control and non-ASCII UTF-8 bytes) becomes %XX.
 * Pure C, shared by the extension and libparasync.
 */
#include "para_sync/key.h"

static const char hex_upper[] = "0123456789ABCDEF";

bool
psync_key_byte_is_plain(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '_' || c == '-';
}

size_t
psync_key_escape(const char *in, size_t len, char *out)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) in[i];

		if (psync_key_byte_is_plain(c))
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

long
psync_key_unescape(const char *in, size_t len, char *out)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) in[i];

		if (c == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= len)
				return -1;
			hi = hex_value((unsigned char) in[i + 1]);
			lo = hex_value((unsigned char) in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			/* a plain byte is never escaped: reject non-canonical keys */
			if (psync_key_byte_is_plain((unsigned char) ((hi << 4) | lo)))
				return -1;
			out[n++] = (char) ((hi << 4) | lo);
			i += 2;
		}
		else if (psync_key_byte_is_plain(c))
			out[n++] = (char) c;
		else
			return -1;
	}
	return (long) n;
}

bool
psync_sync_name_is_valid(const char *name, size_t len)
{
	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!psync_key_byte_is_plain((unsigned char) name[i]))
			return false;
	return true;
}
