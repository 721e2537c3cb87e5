/*
 * keymap.h — a small string-keyed hash map (internal to libparasync).
 *
 * Maps a key (bytes, not NUL-terminated) to a pointer.  Used by the
 * transports for "key → subscribers".  Not thread-safe: callers lock.
 */
#ifndef PSYNC_KEYMAP_H
#define PSYNC_KEYMAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct keymap_node keymap_node;

typedef struct keymap
{
	keymap_node **buckets;
	size_t		nbuckets;
	size_t		count;
} keymap;

bool		keymap_init(keymap *map);
void		keymap_free(keymap *map);
void	   *keymap_get(const keymap *map, const char *key, size_t len);
/* Insert (key must be absent).  The map copies the key.  false: no memory. */
bool		keymap_put(keymap *map, const char *key, size_t len, void *value);
/* Remove and return the value, or NULL when absent. */
void	   *keymap_remove(keymap *map, const char *key, size_t len);
/* Call fn for every value (the map must not change meanwhile). */
void		keymap_each(const keymap *map, void (*fn) (void *ctx, void *value),
						void *ctx);

#endif							/* PSYNC_KEYMAP_H */
