/*
 * watch_json.h — MessagePack value → one-line JSON text, for para-sync-watch.
 */
#ifndef PSYNC_WATCH_JSON_H
#define PSYNC_WATCH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct json_text
{
	char	   *data;			/* NUL-terminated */
	size_t		len;
	size_t		cap;
} json_text;

/*
 * Render msgpack[0..len) into out (reusing its buffer).  Timestamps become
 * ISO-8601 strings, bin becomes "\\x<hex>", other extensions "ext:<type>".
 * Returns false on malformed input or out of memory.
 */
bool		msgpack_to_json(const uint8_t *msgpack, size_t len, json_text *out);

#endif							/* PSYNC_WATCH_JSON_H */
